"""A reviewer who closes Caspian's pull request unmerged declines the new
places it proposed: each of those jobs keeps what the main branch holds for it
(unplaced, its planned place, its spoke) until its AppWrapper changes."""

from __future__ import annotations

from datetime import timedelta

import yaml

from reconciler import ledger, proposals, reconciling
from reconciler.ledger import Declined, Entry, Ledger
from reconciler.quantities import format_time
from reconciler.rendering import render_ledger
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.test_companions import CONFIG, wrapping
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_requeue import _first_dispatched, _waiting_since
from tests.reconcile.test_retry import _failed, _with_retry_limit

PULL = "pull request #7"


def _asks(files, *job_ids):
    jobs = {job.id: job.ask for job in reconciling.fleet_in(files, links=()).jobs}
    return {job_id: jobs[job_id] for job_id in job_ids}


def _declining(files, main, proposal, *job_ids):
    """`files` with `main` as its ledger, `proposal`'s places of `job_ids` declined."""
    held = proposals.declined(main, proposal, asks=_asks(files, *job_ids), pull=PULL, at=NOW)
    return {**files, ledger.LEDGER_PATH: render_ledger(held)}, held


def _marked(files, job_id):
    """`files` with the record of `job_id` declined, as its AppWrapper reads now."""
    old = ledger.parse(files[ledger.LEDGER_PATH])
    mark = Declined(pull=PULL, at=NOW, ask=_asks(files, job_id)[job_id])
    marked = [e.model_copy(update={"declined": mark}) if e.id == job_id else e for e in old.entries]
    return {**files, ledger.LEDGER_PATH: render_ledger(Ledger(entries=tuple(marked)))}


def test_declined_new_jobs_stay_unplaced_until_their_appwrapper_changes() -> None:
    proposed, _ = step(template_files(), now=NOW)
    files, held = _declining(
        template_files(), Ledger(), proposed.ledger, "batch/etl-daily", "batch/train-resnet"
    )
    assert {e.id for e in held.entries} == {"batch/etl-daily", "batch/train-resnet"}
    assert all(e.phase == "Pending" and e.spoke is None for e in held.entries)
    decision, files = step(files, now=NOW + timedelta(minutes=15))
    after = entries(decision)
    for job_id in ("batch/etl-daily", "batch/train-resnet"):
        assert after[job_id].phase == "Pending" and after[job_id].declined.pull == PULL
        assert after[job_id].reason == (
            f"its place was declined in {PULL} (closed unmerged, seen {format_time(NOW)}): "
            "it is proposed again once its AppWrapper changes"
        )
        assert job_id not in {a.id for a in decision.plan.assignments}
    placed = after["batch/eval-nightly"]  # not declined
    assert placed.phase in ("Planned", "Dispatched") and placed.declined is None
    assert_valid_plan(decision.instance, decision.plan)
    # Held at the next reconcile too; an edit to the AppWrapper (an annotation
    # only) lifts it, and its place is proposed again.
    again, files = step(files, now=NOW + timedelta(minutes=30))
    assert entries(again)["batch/etl-daily"].declined is not None
    doc = yaml.safe_load(files["jobs/etl-daily.yaml"])
    doc["metadata"].setdefault("annotations", {})["caspian.dev/complete-within"] = "20h"
    edited = {**files, "jobs/etl-daily.yaml": yaml.safe_dump(doc).encode()}
    lifted, _ = step(edited, now=NOW + timedelta(minutes=30))
    etl = entries(lifted)["batch/etl-daily"]
    assert etl.phase in ("Planned", "Dispatched") and etl.declined is None
    assert entries(lifted)["batch/train-resnet"].declined is not None


def test_a_declined_move_keeps_the_job_at_the_place_main_holds() -> None:
    decision, files = step(template_files(), now=NOW)
    job = entries(decision)["batch/backfill-eu"]
    assert job.phase == "Planned"
    # Main holds it two hours later than the plan would have it: the plan moves it back.
    later = job.planned_start + timedelta(hours=2)
    old = ledger.parse(files[ledger.LEDGER_PATH])
    there = job.model_copy(
        update={
            "planned_start": later,
            "planned_end": job.planned_end + (later - job.planned_start),
        }
    )
    shifted = Ledger(entries=tuple(there if e.id == job.id else e for e in old.entries))
    files = {**files, ledger.LEDGER_PATH: render_ledger(shifted)}
    moved, _ = step(files, now=NOW + timedelta(minutes=15))
    assert entries(moved)[job.id].planned_start != later
    # Declined, that move is not made: it stays where main holds it, room and all.
    kept, _ = step(_marked(files, job.id), now=NOW + timedelta(minutes=15))
    entry = entries(kept)[job.id]
    assert (entry.phase, entry.spoke, entry.planned_start) == ("Planned", job.spoke, later)
    assert entry.declined.pull == PULL
    assert_valid_plan(kept.instance, kept.plan)
    # Where that spoke is cordoned, the place cannot be kept: it is placed anew.
    spoke_file = f"spokes/{job.spoke}.yaml"
    cordoned = yaml.safe_load(files[spoke_file])
    cordoned["spec"]["unschedulable"] = True
    shut = {**_marked(files, job.id), spoke_file: yaml.safe_dump(cordoned).encode()}
    elsewhere = entries(step(shut, now=NOW + timedelta(minutes=15))[0])[job.id]
    assert elsewhere.spoke != job.spoke and elsewhere.declined is None
    # At its start it is dispatched there, as main planned it, and the move it
    # declined is moot: a requeue off that spoke later is a new question.
    started, _ = step(_marked(files, job.id), now=later)
    dispatched = entries(started)[job.id]
    assert (dispatched.phase, dispatched.spoke) == ("Dispatched", job.spoke)
    assert dispatched.declined is None


def test_a_declined_requeue_leaves_the_job_on_its_spoke() -> None:
    _, files, started = _first_dispatched(template_files())
    stuck = _waiting_since(started, NOW + timedelta(minutes=1))
    later = NOW + timedelta(minutes=20)
    requeued, _ = step(files, now=later, states=stuck)
    assert started.id in requeued.requeued  # the control: it would go elsewhere
    kept, _ = step(_marked(files, started.id), now=later, states=stuck)
    entry = entries(kept)[started.id]
    assert not kept.requeued and (entry.phase, entry.spoke) == ("Dispatched", started.spoke)
    assert entry.declined is not None


def test_a_declined_run_again_leaves_the_job_failed() -> None:
    from tests.reconcile.test_requeue import _backfill_dispatched_on_paris

    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "2"))
    later = at + timedelta(hours=1)
    retried, _ = step(files, now=later, states=_failed(started))
    assert started.id in retried.retried  # the control: it would run again
    kept, _ = step(_marked(files, started.id), now=later, states=_failed(started))
    entry = entries(kept)[started.id]
    assert not kept.retried and entry.phase == "Failed" and entry.retries == 0
    assert entry.declined is None  # finished: nothing left to hold


def test_the_decline_commit_says_what_each_job_was_offered_and_keeps() -> None:
    proposed, files = step(template_files(), now=NOW)
    main = proposed.ledger
    moved = entries(proposed)["batch/backfill-eu"]
    later = moved.planned_start + timedelta(hours=1)
    offered = Ledger(
        entries=tuple(
            e.model_copy(update={"planned_start": later}) if e.id == moved.id else e
            for e in main.entries
        )
    )
    _, held = _declining(files, main, offered, moved.id)
    message = proposals.decline_message(main, offered, held=held, pull=PULL)
    assert message.startswith(f"decline: 1 job ({PULL} closed unmerged)\n\n")
    start, was = (t.isoformat().replace("+00:00", "Z") for t in (later, moved.planned_start))
    assert (
        f"- {moved.id}: {moved.spoke} from {start} declined; it stays Planned on "
        f"{moved.spoke} from {was}\n"
    ) in message
    # A job already declined, or that main holds as proposed, is not declined again.
    assert proposals.declined(held, offered, asks=_asks(files, moved.id), pull=PULL, at=NOW) == held


def test_explain_says_a_job_is_held_where_the_ledger_has_it() -> None:
    from reconciler.explaining import explain

    _, files, started = _first_dispatched(template_files())
    kept, _ = step(_marked(files, started.id), now=NOW + timedelta(minutes=20))
    notes = explain(kept, entries(kept)[started.id]).notes
    assert (
        f"held on {started.spoke} as the ledger has it: its new place was declined in {PULL} "
        f"(closed unmerged, seen {format_time(NOW)}), so it is not moved, requeued or run "
        "again until its AppWrapper changes"
    ) in notes


def test_a_job_declined_again_after_an_edit_is_recorded_as_decide_keeps_it() -> None:
    """Its record on main is written as the next decision writes it: no second
    commit follows the decline."""
    proposed, _ = step(template_files(), now=NOW)
    files, held = _declining(template_files(), Ledger(), proposed.ledger, "batch/etl-daily")
    doc = yaml.safe_load(files["jobs/etl-daily.yaml"])
    doc["metadata"].setdefault("annotations", {})["caspian.dev/complete-within"] = "30h"
    files = {**files, "jobs/etl-daily.yaml": yaml.safe_dump(doc).encode()}
    later = NOW + timedelta(minutes=15)
    again, _ = step(files, now=later)  # lifted by the edit: proposed anew, as #8
    assert entries(again)["batch/etl-daily"].declined is None
    declined = proposals.declined(
        held, again.ledger, asks=_asks(files, "batch/etl-daily"), pull="pull request #8", at=later
    )
    files = {**files, ledger.LEDGER_PATH: render_ledger(declined)}
    recorded = declined.by_id()["batch/etl-daily"]
    assert recorded.declined.pull == "pull request #8"
    assert recorded.deadline != held.by_id()["batch/etl-daily"].deadline  # as asked now
    after, _ = step(files, now=later)
    assert entries(after)["batch/etl-daily"] == recorded


def test_a_declined_job_keeps_the_spokes_it_could_not_run_on() -> None:
    first, files = step(template_files(), now=NOW)
    job = entries(first)["batch/backfill-eu"]  # paris or frankfurt
    waiting = Entry(
        id=job.id,
        source=job.source,
        phase="Pending",
        first_seen=job.first_seen,
        template_hash=job.template_hash,
        requeued_from=(job.spoke,),
    )
    main = Ledger(entries=(waiting,))
    files = {**files, ledger.LEDGER_PATH: render_ledger(main)}
    offered, _ = step(files, now=NOW)
    assert entries(offered)[job.id].spoke not in (None, job.spoke)  # kept off it
    files, held = _declining(files, main, offered.ledger, job.id)
    assert held.by_id()[job.id].requeued_from == (job.spoke,)
    after, _ = step(files, now=NOW)
    assert entries(after)[job.id] == held.by_id()[job.id]


def test_what_a_job_asks_is_what_it_asked_before_a_caspian_upgrade() -> None:
    """A decline holds until JobRequest.ask changes: a field added to the
    JobRequest of every job (companions, say) would lift every decline of
    every fleet at the upgrade. This digest is etl-daily's as fa40b11 read
    it; change it only with a field every job should be asked again for."""
    assert _asks(template_files(), "batch/etl-daily") == {"batch/etl-daily": "83dac93c1b0b1332"}


def test_an_edit_of_a_wrapped_configmap_lifts_a_decline() -> None:
    wrapped = {**template_files(), "jobs/trainer.yaml": wrapping(CONFIG).encode()}
    edited = {**CONFIG, "data": {"config.yaml": "epochs: 4\n"}}
    again = {**template_files(), "jobs/trainer.yaml": wrapping(edited).encode()}
    assert _asks(wrapped, "batch/trainer") != _asks(again, "batch/trainer")
