"""The same random days as test_random_lifecycle.py, through the whole
reconcile: a bare fleet repo, user pushes between reconciles, and spokes
that list every Job of Caspian's (as the kube observer sees them), so that
Jobs Argo CD has not applied, or not resumed, are found from the branch's
history and requeued. After each reconcile: one more at the same time
commits nothing, the commit holds what the decision says, and a job
dispatched to a spoke that lacks its Job or its resume has left it once the
policy's requeueUnscheduled is past, where another spoke takes it."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet
from reconciler.gitrepo import FleetRepo
from reconciler.observing import DeclaredCapacity, Observer
from reconciler.reconciling import Outcome, reconcile_once
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.reconcile.test_random_lifecycle import (
    _as_seen,
    _check,
    _lost_runs_fail,
    _people,
    _unapplied_go,
    _World,
    day_seeds,
)

TURNS = 10


class _Seeing(DeclaredCapacity):
    """Declared capacity, with what the drawn spokes report over it."""

    def __init__(self) -> None:
        self.reported: dict[str, dict] = {}

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        declared = super().observe(fleet)
        return {
            name: state.model_copy(update=self.reported.get(name, {}))
            for name, state in declared.items()
        }


def _tip(remote) -> dict[str, bytes]:
    return {path: gitutil.read(remote, path) for path in gitutil.files(remote)}


def _start(seed: int, remote, tmp_path) -> tuple[_World, _Seeing, FleetRepo]:
    """The drawn world of `seed`, what it reports, and the fleet repo's mirror."""
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    return _World(random.Random(seed)), _Seeing(), repo


def _time_passes(remote, world: _World, seeing: _Seeing, *, at: datetime, turn: int) -> datetime:
    """The time to the next reconcile, drawn: the spokes do what they do with
    the branch meanwhile, people push, and `seeing` reports the spokes then."""
    later = at + timedelta(minutes=world.rng.choice((5, 15, 40, 90, 180)))
    files = _tip(remote)
    world.follow(files, now=later, since=at)
    edited = _people(files, world.rng, turn=turn)
    paths = set(files) | set(edited)
    changes = {p: edited.get(p) for p in paths if files.get(p) != edited.get(p)}
    if changes:
        gitutil.user_commit(remote, changes, f"turn {turn}")
    seeing.reported = world.states()
    return later


def _settled(repo: FleetRepo, remote, observer: Observer, *, at: datetime, turn: int) -> Outcome:
    """A reconcile at `at`, after which one more at the same time commits
    nothing and decides the same."""
    outcome = reconcile_once(repo, now=at, author=BOT, observer=observer)
    head = gitutil.head(remote)
    again = reconcile_once(repo, now=at, author=BOT, observer=observer)
    assert again.commit is None and gitutil.head(remote) == head, (turn, again.changes)
    assert again.decision.ledger == outcome.decision.ledger, turn
    return outcome


@pytest.mark.parametrize("seed", day_seeds(8))
def test_whatever_the_spokes_do_a_second_reconcile_commits_nothing(
    seed: int, remote, tmp_path
) -> None:
    world, seeing, repo = _start(seed, remote, tmp_path)
    outcome = reconcile_once(repo, now=NOW, author=BOT, observer=seeing)
    at = NOW
    for turn in range(TURNS):
        before = outcome.decision.ledger.by_id()
        at = _time_passes(remote, world, seeing, at=at, turn=turn)
        outcome = _settled(repo, remote, seeing, at=at, turn=turn)
        _check(outcome.decision, _tip(remote), before)
        _as_seen(outcome.decision, before, world)
        _unapplied_go(outcome.decision, before, world, now=at)
        _lost_runs_fail(outcome.decision, world, now=at)
