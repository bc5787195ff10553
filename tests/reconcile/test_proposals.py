"""Pull-request mode: new places go to review; what carries out the plan the
main branch holds goes there at once, so an approved job starts at its slot
whether or not a proposal waits for review."""

from __future__ import annotations

from datetime import timedelta

import pygit2
import pytest

from reconciler import ledger, messages, proposals, reconciling
from reconciler.gitrepo import FleetRepo
from reconciler.observing import DeclaredCapacity
from reconciler.rendering import job_path, render
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.fleet.helpers import appwrapper
from tests.fleet.test_companions import CONFIG, wrapping
from tests.reconcile.test_lifecycle import _edited, entries, step

BRANCH = "caspian/placement"


def test_a_job_started_where_main_planned_it_is_carried_out_and_a_new_place_is_proposed():
    first, files = step(template_files(), now=NOW)
    old = first.ledger
    planned = sorted(
        (e for e in old.entries if e.phase == "Planned"), key=lambda e: e.planned_start
    )
    due, edited = planned[0], planned[-1]
    # At the first one's start, with another's Job edited (so placed anew) and a job added.
    files = _edited(files, edited.source, "python:3.13-slim")
    files = {**files, "jobs/extra.yaml": appwrapper("extra").encode()}
    later, _ = step(files, now=due.planned_start)
    assert entries(later)[due.id].phase == "Dispatched"
    proposed = proposals.new_places(old, later.ledger)
    assert {edited.id, "batch/extra"} <= proposed and due.id not in proposed
    carried = proposals.carried_out(later, old=old)
    kept = entries(carried)
    assert kept[due.id] == entries(later)[due.id]  # started, as main planned it
    assert kept[edited.id] == entries(first)[edited.id]  # as main holds it, for now
    assert "batch/extra" not in kept  # placed once its proposal is merged
    assert set(carried.proposed) == proposed
    # Its Job stays as committed, old image and all, until the proposal is merged.
    rendered = render(carried, previous=files)
    path = job_path(entries(first)[edited.id])
    assert rendered[path] == files[path]
    assert b"extra" not in rendered[f"rendered/{due.spoke}/kustomization.yaml"]


def test_a_decision_that_places_nothing_anew_is_carried_out_whole():
    first, files = step(template_files(), now=NOW)
    later, _ = step(files, now=NOW + timedelta(minutes=15))
    assert proposals.new_places(first.ledger, later.ledger) == frozenset()
    assert proposals.carried_out(later, old=first.ledger) is later
    # Everything is new to an empty ledger.
    everything = {e.id for e in first.ledger.entries if e.spoke}
    assert proposals.new_places(ledger.Ledger(), first.ledger) == everything


def fleet(tmp_path, remote) -> FleetRepo:
    return FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")


def merge(remote) -> None:
    """The team merges the proposal (fast-forward)."""
    repo = pygit2.Repository(str(remote))
    repo.references["refs/heads/main"].set_target(repo.references[f"refs/heads/{BRANCH}"].target)


def test_an_approved_job_starts_at_its_slot_while_a_new_place_waits_for_review(
    remote, tmp_path
) -> None:
    repo = fleet(tmp_path, remote)
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    assert first.carried.commit is None and first.proposed.commit is not None
    merge(remote)
    placed = ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH))
    due = min((e for e in placed.entries if e.phase == "Planned"), key=lambda e: e.planned_start)
    gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
    user = gitutil.head(remote)
    both = reconciling.propose_once(repo, branch=BRANCH, now=due.planned_start, author=BOT)
    # Main: the approved job dispatched, on the user's commit; nothing placed anew.
    assert gitutil.head(remote) == both.carried.commit
    assert pygit2.Repository(str(remote))[both.carried.commit].parent_ids[0] == pygit2.Oid(hex=user)
    on_main = ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH)).by_id()
    assert on_main[due.id].phase == "Dispatched" and "batch/extra" not in on_main
    assert gitutil.message(remote).startswith("dispatch: 1 job")
    # The proposal, on top of it: the new job alone.
    proposal = pygit2.Repository(str(remote)).references[f"refs/heads/{BRANCH}"].target
    assert str(proposal) == both.proposed.commit
    assert both.proposed.input_commit == both.carried.commit
    assert set(both.proposed.changes) == {
        ledger.LEDGER_PATH,
        f"rendered/{entries(both.proposed.decision)['batch/extra'].spoke}/kustomization.yaml",
        job_path(entries(both.proposed.decision)["batch/extra"]),
    }
    assert both.proposed.message.startswith("place: 1 job")
    # Again at once: nothing more anywhere.
    again = reconciling.propose_once(repo, branch=BRANCH, now=due.planned_start, author=BOT)
    assert again.carried.commit is None and again.proposed.commit is None
    assert gitutil.head(remote) == both.carried.commit
    # Merged: main holds it all, and nothing is left to propose.
    merge(remote)
    done = reconciling.propose_once(repo, branch=BRANCH, now=due.planned_start, author=BOT)
    assert done.carried.commit is None and done.proposed is None


def test_a_fresh_fleet_proposes_its_first_plan_and_commits_nothing_to_main(
    remote, tmp_path
) -> None:
    before = gitutil.head(remote)
    first = reconciling.propose_once(fleet(tmp_path, remote), branch=BRANCH, now=NOW, author=BOT)
    # Empty spoke directories and an empty ledger wait for the proposal.
    assert first.carried.commit is None and gitutil.head(remote) == before
    assert first.proposed.changes


class Reporting:
    """Declared spokes, where the given Jobs report the given phases."""

    def __init__(self, phases: dict[str, str]) -> None:
        self.phases = phases

    def observe(self, fleet):
        states = DeclaredCapacity().observe(fleet)
        return {
            name: state.model_copy(update={"jobs": self.phases}) for name, state in states.items()
        }


def test_what_the_spokes_report_is_recorded_on_main_without_review(remote, tmp_path) -> None:
    repo = fleet(tmp_path, remote)
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    merge(remote)
    started = next(
        e
        for e in ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH)).entries
        if e.phase == "Dispatched"
    )
    at = NOW + timedelta(minutes=5)  # the same slot: nothing else is due
    running = Reporting({started.job_key: "Running"})
    recorded = reconciling.propose_once(repo, branch=BRANCH, now=at, author=BOT, observer=running)
    assert recorded.carried.commit == gitutil.head(remote) and recorded.proposed is None
    assert set(recorded.carried.changes) == {ledger.LEDGER_PATH}
    assert gitutil.ledger(remote)[started.id]["phase"] == "Running"


def test_a_planned_job_its_spoke_runs_already_is_recorded_on_main_without_review(
    remote, tmp_path
) -> None:
    # Not a place Caspian chose: the spoke runs it, and main's suspend: true
    # would stop it at the next sync.
    repo = fleet(tmp_path, remote)
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    merge(remote)
    planned = max(
        (
            e
            for e in ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH)).entries
            if e.phase == "Planned"
        ),
        key=lambda e: e.planned_start,
    )
    at = NOW + timedelta(minutes=5)
    running = Reporting({planned.job_key: "Running"})
    recorded = reconciling.propose_once(repo, branch=BRANCH, now=at, author=BOT, observer=running)
    assert recorded.carried.commit == gitutil.head(remote)
    entry = gitutil.ledger(remote)[planned.id]
    assert (entry["phase"], entry["spoke"]) == ("Running", planned.spoke)
    assert b"suspend: false" in gitutil.read(remote, job_path(planned))
    assert "started outside Caspian: 1 job" in gitutil.message(remote).splitlines()[0]
    # The jobs the room it holds moves are for review; it is not.
    assert recorded.anew and planned.id not in recorded.anew
    tip = gitutil.head(remote, branch=BRANCH)
    on_branch = ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH, tip)).by_id()
    assert on_branch[planned.id].phase == "Running"


@pytest.mark.parametrize("most_rows", [200, 3])  # 3: the commit's table is cut to its changes
def test_the_pull_request_lists_the_jobs_placed_anew_and_fits_a_forge(
    remote, tmp_path, monkeypatch, most_rows
) -> None:
    monkeypatch.setattr(messages, "MOST_TABLE_ROWS", most_rows)
    repo = fleet(tmp_path, remote)
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    merge(remote)
    gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
    proposal = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    anew = proposal.anew
    assert anew == {"batch/extra"}
    title, body = reconciling.pull_request(proposal.proposed, anew=anew)
    assert title.startswith("place: 1 job")
    rows = [line for line in body.splitlines() if line.startswith("| ") and "/" in line]
    assert [row.split("|")[1].strip() for row in rows] == ["batch/extra"]
    assert "Placed anew, for review (1; the commit message lists every job)" in body
    assert body.startswith("Merge to approve these places. Close without merging to decline")
    assert body.endswith(f"Caspian-Plan-Id: {proposal.proposed.message.split()[-1]}\n```\n")
    # A fleet's worth of lines is cut, at a line, to what GitHub takes.
    said = proposal.proposed.message
    huge = said.replace("Solver:", "".join(f"- moved batch/job-{i}: ...\n" for i in range(9999)))
    _, cut = reconciling.pull_request(
        proposal.proposed.model_copy(update={"message": huge}), anew=anew
    )
    assert len(cut) <= 65_536 and cut.endswith(body[body.index("```") :])
    assert "more lines: the proposal's commit message has them all." in cut
    assert "\n- moved batch/job-0: ...\n" in cut and "batch/job-9998" not in cut


def test_a_new_spokes_empty_directory_waits_for_a_change_to_go_with(remote, tmp_path) -> None:
    repo = fleet(tmp_path, remote)
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    merge(remote)
    # A spoke that takes no work yet (cordoned, as it is being set up).
    oslo = gitutil.read(remote, "spokes/paris.yaml").replace(b"name: paris", b"name: oslo")
    oslo = oslo.replace(b"\nspec:\n", b"\nspec:\n  unschedulable: true\n")
    gitutil.user_commit(remote, {"spokes/oslo.yaml": oslo})
    user = gitutil.head(remote)
    # The same slot: nothing is due, and no job takes the new spoke.
    quiet = reconciling.propose_once(
        repo, branch=BRANCH, now=NOW + timedelta(minutes=5), author=BOT
    )
    assert quiet.carried.commit is None and quiet.proposed is None
    assert gitutil.head(remote) == user
    # A job added later is proposed with it.
    gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
    both = reconciling.propose_once(repo, branch=BRANCH, now=NOW + timedelta(minutes=5), author=BOT)
    assert "rendered/oslo/kustomization.yaml" in both.proposed.changes


def test_an_edit_of_a_wrapped_configmap_alone_goes_to_main_at_once():
    """Its place does not change, so there is nothing to review: the edit was
    the user's own commit to jobs/."""
    wrapped = {**template_files(), "jobs/trainer.yaml": wrapping(CONFIG).encode()}
    first, files = step(wrapped, now=NOW)
    edited = {**CONFIG, "data": {"config.yaml": "epochs: 4\n"}}
    files = {**files, "jobs/trainer.yaml": wrapping(edited).encode()}
    later, _ = step(files, now=NOW)
    assert "batch/trainer" not in proposals.new_places(first.ledger, later.ledger)
    carried = proposals.carried_out(later, old=first.ledger)
    path = job_path(entries(first)["batch/trainer"])
    assert b"epochs: 4" in render(carried, previous=files)[path]


class Unsynced:
    """Declared spokes that list every Job of Caspian's, and none there yet:
    Argo CD has not synced since the merge."""

    def observe(self, fleet):
        states = DeclaredCapacity().observe(fleet)
        return {n: s.model_copy(update={"listed": frozenset()}) for n, s in states.items()}


def test_a_proposal_merged_by_fast_forward_counts_from_when_main_took_it(remote, tmp_path) -> None:
    # Its commit keeps the time it was proposed; the branch took it hours later.
    repo = fleet(tmp_path, remote)
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    merged = NOW + timedelta(hours=2)
    merge(remote)
    unsynced = Unsynced()
    seen = merged + timedelta(minutes=1)
    first = reconciling.plan(repo, now=seen, bot=BOT.email, observer=unsynced)
    assert not first.decision.requeued
    assert "Down (no new work" not in first.message
    # Counted from when a reconcile first saw it there, the Jobs are late to arrive
    # past requeueUnscheduled (15m), as any others.
    later = reconciling.plan(
        repo, now=seen + timedelta(minutes=16), bot=BOT.email, observer=unsynced
    )
    assert later.decision.requeued
    why = next(iter(later.decision.requeued.values())).reason
    assert f"from {seen:%Y-%m-%dT%H:%M:%SZ} to " in why
