"""The random days of test_random_reconciles.py in pull-request mode: new
places go to a proposal branch that the team merges now and then, and the
rest goes to main at once. After each round: one more at the same time
pushes nothing, to main or to the proposal, and main's commit holds what its
ledger says."""

from __future__ import annotations

import pygit2
import pytest

from reconciler import ledger
from reconciler.reconciling import propose_once
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.reconcile.test_random_lifecycle import _check, day_seeds
from tests.reconcile.test_random_reconciles import TURNS, _start, _time_passes, _tip

BRANCH = "caspian/placement"


def _heads(remote) -> tuple[str, str | None]:
    branches = gitutil.branches(remote)
    return gitutil.head(remote), gitutil.head(remote, BRANCH) if BRANCH in branches else None


def _merged(remote) -> bool:
    """The team merges the open proposal where it can fast-forward main."""
    repo = pygit2.Repository(str(remote))
    proposal = repo.references.get(f"refs/heads/{BRANCH}")
    main = repo.references["refs/heads/main"]
    if proposal is None or not repo.descendant_of(proposal.target, main.target):
        return False
    main.set_target(proposal.target)
    return True


@pytest.mark.parametrize("seed", day_seeds(6))
def test_whatever_the_spokes_do_a_second_proposal_round_pushes_nothing(
    seed: int, remote, tmp_path
) -> None:
    world, seeing, repo = _start(seed, remote, tmp_path)
    propose_once(repo, branch=BRANCH, now=NOW, author=BOT, observer=seeing)
    at, merges = NOW, 0
    for turn in range(TURNS):
        # Now and then, and at every round from midday until one is merged:
        # a day on which none is merged would test too little.
        if world.rng.random() < 0.5 or (not merges and turn >= TURNS // 2):
            merges += _merged(remote)
        before = ledger.parse(_tip(remote).get(ledger.LEDGER_PATH)).by_id()
        at = _time_passes(remote, world, seeing, at=at, turn=turn)
        done = propose_once(repo, branch=BRANCH, now=at, author=BOT, observer=seeing)
        heads = _heads(remote)
        again = propose_once(repo, branch=BRANCH, now=at, author=BOT, observer=seeing)
        assert _heads(remote) == heads, (turn, again.carried.changes)
        _check(done.carried.decision, _tip(remote), before, every_job=False)
    assert merges, "no proposal was merged: the draws test too little"
