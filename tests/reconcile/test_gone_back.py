"""A ledger that goes back to an older state by someone else's commit (a
revert of Caspian's commit, a merge that took an older side) loses Jobs that
run: Caspian stops rather than suspend or dispatch them again."""

from __future__ import annotations

from datetime import timedelta

import pygit2
import pytest

from reconciler import ledger
from reconciler.gitrepo import FleetRepo
from reconciler.ledger import Entry, Ledger
from reconciler.reconciling import plan, reconcile_once
from tests import gitutil
from tests.conftest import BOT, NOW

SPOKES = {"paris", "frankfurt"}


def _record(phase: str, **fields) -> Entry:
    return Entry(id="batch/etl", source="jobs/etl.yaml", phase=phase, job_name="etl-1", **fields)


def test_a_started_job_lost_by_another_hand_is_found():
    started = _record("Dispatched", spoke="paris")
    written = Ledger(entries=(started,))
    lost = [
        Ledger(),  # its record gone
        Ledger(entries=(_record("Planned", spoke="paris"),)),  # planned again, as before
        Ledger(entries=(_record("Pending"),)),
    ]
    for later in lost:
        assert ledger.went_back(written, later, spokes=SPOKES) == [started]
    kept = [
        Ledger(entries=(_record("Running", spoke="paris"),)),
        Ledger(entries=(_record("Succeeded", spoke="paris"),)),
        Ledger(entries=(_record("Cancelled", spoke="paris"),)),
        Ledger(entries=(_record("Suspended", spoke="paris"),)),  # stopped by its AppWrapper
        # Requeued off paris (a merged proposal, say): planned elsewhere.
        Ledger(entries=(_record("Planned", spoke="frankfurt", requeued_from=("paris",)),)),
        # Run again as a new Job after it failed.
        Ledger(
            entries=(
                _record("Planned", spoke="paris", retries=1).model_copy(
                    update={"job_name": "etl-1-r1"}
                ),
            )
        ),
    ]
    for later in kept:
        assert ledger.went_back(written, later, spokes=SPOKES) == []
    planned = Ledger(entries=(_record("Planned", spoke="paris"),))
    assert ledger.went_back(planned, Ledger(), spokes=SPOKES) == []  # it had not started
    # Moved off a spoke that left the fleet.
    assert ledger.went_back(written, lost[1], spokes={"frankfurt"}) == []


def _revert_head(remote) -> str:
    """A user reverts the tip: a commit with its parent's tree, as `git revert` makes."""
    repo = pygit2.Repository(str(remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    who = pygit2.Signature("Fleet User", "user@example.invalid")
    tree = tip.parents[0].tree.id
    return str(repo.create_commit("refs/heads/main", who, who, "Revert", tree, [tip.id]))


def test_a_revert_of_a_dispatch_stops_the_reconcile_until_the_ledger_is_restored(remote, tmp_path):
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    placed = reconcile_once(repo, now=NOW, author=BOT)
    started = sorted(e.id for e in placed.decision.ledger.entries if e.phase == "Dispatched")
    assert started
    written = gitutil.read(remote, ledger.LEDGER_PATH)
    _revert_head(remote)
    reverted = gitutil.head(remote)
    with pytest.raises(ledger.LedgerError) as stopped:
        reconcile_once(repo, now=NOW + timedelta(minutes=15), author=BOT)
    said = str(stopped.value)
    assert said.startswith(
        "status/placements.yaml went back to an older state in a commit Caspian did not make"
    )
    assert all(job_id in said for job_id in started)
    assert f"git checkout {placed.commit[:12]} -- status/placements.yaml" in said
    assert gitutil.head(remote) == reverted  # nothing committed
    # `caspian plan`, as CI runs it on a pull request's branch, says it too.
    with pytest.raises(ledger.LedgerError, match="went back to an older state"):
        plan(repo, now=NOW + timedelta(minutes=15), bot=BOT.email)
    assert plan(repo, now=NOW, bot="someone-else@example.invalid").changes
    # Restored as the message says: the Jobs are rendered again, none moved.
    gitutil.user_commit(remote, {ledger.LEDGER_PATH: written}, "restore the ledger")
    mended = reconcile_once(repo, now=NOW + timedelta(minutes=15), author=BOT)
    again = mended.decision.ledger.by_id()
    before = placed.decision.ledger.by_id()
    assert all(again[job_id] == before[job_id] for job_id in started)
    assert all(
        ledger.LEDGER_PATH not in path and path.startswith("rendered/") for path in mended.changes
    )


def _user_commits(remote, count: int, *, branch: str = "main") -> str:
    for index in range(count):
        gitutil.user_commit(remote, {f"docs/{branch}-{index}.md": b"x\n"}, branch=branch)
    return gitutil.head(remote, branch)


def test_caspians_last_commit_is_looked_for_within_its_lookback_and_no_further(remote, tmp_path):
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    placed = reconcile_once(repo, now=NOW, author=BOT)
    assert placed.commit is not None
    # A side branch of 30 commits, merged after 3 more on main: the walk goes
    # through both, newest first, with what lies `most` first parents back hidden.
    bare = pygit2.Repository(str(remote))
    bare.references.create("refs/heads/side", pygit2.Oid(hex=placed.commit))
    side = _user_commits(remote, 30, branch="side")
    main = _user_commits(remote, 3)
    who = pygit2.Signature("Fleet User", "user@example.invalid")
    tree = bare[side].peel(pygit2.Commit).tree.id
    parents = [pygit2.Oid(hex=main), pygit2.Oid(hex=side)]
    merge = str(bare.create_commit("refs/heads/main", who, who, "Merge side", tree, parents))
    repo.fetch_tip()
    found = repo.last_by(BOT.email, ledger.LEDGER_PATH, since=merge, most=40)
    assert found is not None and found[0] == placed.commit
    assert found[1] == gitutil.read(remote, ledger.LEDGER_PATH, placed.commit)
    # The 35th commit of the walk: within 35 it is found, within 34 it is not.
    assert repo.last_by(BOT.email, ledger.LEDGER_PATH, since=merge, most=35) is not None
    assert repo.last_by(BOT.email, ledger.LEDGER_PATH, since=merge, most=34) is None
    # From main's tip it is three first parents back, the 4th commit of the
    # walk: a bound one short would hide it.
    assert repo.last_by(BOT.email, ledger.LEDGER_PATH, since=main, most=4) is not None
    assert repo.last_by(BOT.email, ledger.LEDGER_PATH, since=main, most=3) is None
