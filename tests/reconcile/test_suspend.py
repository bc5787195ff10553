"""An AppWrapper's own spec.suspend: a job not yet started is held; one that
had started is suspended where it ran (Kubernetes ends its pods and keeps the
Job), and resumed there."""

from __future__ import annotations

from datetime import timedelta

import yaml

from reconciler import messages, records
from reconciler.rendering import HELD, render
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import SMALL_NODES, entries, step, wide_job


def _suspend(files, path, value=True):
    doc = yaml.safe_load(files[path])
    doc["spec"]["suspend"] = value
    return {**files, path: yaml.safe_dump(doc, sort_keys=False).encode()}


def test_an_appwrapper_suspended_in_git_is_held_until_resumed() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    job_file = f"rendered/{planned.spoke}/batch.{planned.job_name}.yaml"
    assert job_file in render(decision, previous=files)
    later = NOW + timedelta(minutes=20)
    held, _ = step(_suspend(files, planned.source), now=later)
    entry = entries(held)[planned.id]
    assert entry.phase == "Suspended"
    assert entry.reason == "its AppWrapper's spec.suspend is true: set it to false to plan it"
    assert entry.first_seen == planned.first_seen  # its relative deadline does not slide
    assert planned.id not in {a.id for a in held.plan.assignments}
    # Never started, its Job leaves the spoke: Argo CD prunes it.
    assert job_file not in render(held, previous=files)
    message = messages.commit_message(old=decision.ledger, decision=held, input_commit="0" * 40)
    assert message.startswith("suspend: 1 job")
    assert f"- suspended {planned.id}, off {planned.spoke}: its AppWrapper's spec.suspend" in (
        message
    )
    resumed, _ = step(_suspend(files, planned.source, value=False), now=later)
    assert entries(resumed)[planned.id].phase == "Planned"


def _rendered(decision, files, entry):
    path = f"rendered/{entry.spoke}/batch.{entry.job_name}.yaml"
    return yaml.safe_load(render(decision, previous=files)[path])


def test_suspending_a_started_jobs_appwrapper_suspends_its_job_where_it_ran() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    later = NOW + timedelta(minutes=20)
    # Running, as its spoke reports it, when its AppWrapper is suspended.
    report = {started.spoke: {"jobs": {started.job_key: "Running"}}}
    stopped, stopped_files = step(_suspend(files, started.source), now=later, states=report)
    entry = entries(stopped)[started.id]
    assert (entry.phase, entry.spoke, entry.job_name) == (
        "Suspended",
        started.spoke,
        started.job_name,
    )
    assert entry.reason == records.stopped_reason(started.spoke)
    assert entry.first_seen == started.first_seen
    # Kubernetes ends the pods of a Job suspended in place and keeps its counts.
    job = _rendered(stopped, stopped_files, entry)
    assert job["spec"]["suspend"] is True
    annotations = job["metadata"]["annotations"]
    assert annotations[HELD] == "its AppWrapper's spec.suspend is true"
    assert "caspian.dev/planned-start" not in annotations
    assert started.id not in {a.id for a in stopped.plan.assignments}  # holds no room
    message = messages.commit_message(old=decision.ledger, decision=stopped, input_commit="0" * 40)
    assert "suspend: 1 job" in message.splitlines()[0]
    assert f"- suspended {started.id}: its AppWrapper's spec.suspend is true: its Job on " in (
        message
    )

    # Held so at every reconcile: the same entry, its Job's file unchanged.
    again, _ = step(stopped_files, now=later + timedelta(minutes=20))
    assert entries(again)[started.id] == entry
    path = f"rendered/{entry.spoke}/batch.{entry.job_name}.yaml"
    assert render(again, previous=stopped_files)[path] == stopped_files[path]

    # Set back to false, it is planned again, its deadline as it was.
    resumed, resumed_files = step(
        _suspend(stopped_files, started.source, value=False), now=later + timedelta(hours=1)
    )
    back = entries(resumed)[started.id]
    assert back.phase in ("Planned", "Dispatched")
    assert (back.first_seen, back.deadline) == (started.first_seen, started.deadline)
    assert _rendered(resumed, resumed_files, back)["spec"]["suspend"] is (back.phase == "Planned")
    assert_valid_plan(resumed.instance, resumed.plan)


def _spoke_spec(files, name, **changes):
    doc = yaml.safe_load(files[f"spokes/{name}.yaml"])
    for key, value in changes.items():
        doc["spec"][key] = value
    return {**files, f"spokes/{name}.yaml": yaml.safe_dump(doc).encode()}


def test_a_resumed_job_goes_back_where_its_job_is_unless_that_spoke_is_closed() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    assert len(decision.jobs[started.id].allowed_spokes) > 1
    _, files = step(_suspend(files, started.source), now=NOW + timedelta(minutes=20))
    # Its spoke's grid is now the dirtiest: any other spoke would emit less.
    dirty = _spoke_spec(files, started.spoke, carbon={"provider": "embedded", "zone": "IN-WE"})
    resumed = _suspend(dirty, started.source, value=False)
    back, back_files = step(resumed, now=NOW + timedelta(hours=1))
    entry = entries(back)[started.id]
    assert (entry.phase, entry.spoke, entry.resumes_on) == (
        "Planned",
        started.spoke,
        started.spoke,
    )
    # Remembered at every reconcile until it is dispatched there.
    later, _ = step(back_files, now=NOW + timedelta(hours=1, minutes=15))
    assert entries(later)[started.id].spoke == started.spoke
    # Suspended again before it is dispatched there: its Job stays where it is.
    again, again_files = step(
        _suspend(back_files, started.source), now=NOW + timedelta(hours=1, minutes=15)
    )
    held = entries(again)[started.id]
    assert (held.phase, held.spoke) == ("Suspended", started.spoke)
    assert _rendered(again, again_files, held)["spec"]["suspend"] is True
    closed = _spoke_spec(resumed, started.spoke, unschedulable=True)
    moved, _ = step(closed, now=NOW + timedelta(hours=1))
    assert entries(moved)[started.id].spoke not in (None, started.spoke)
    assert entries(moved)[started.id].resumes_on is None


def test_a_resumed_job_with_no_room_where_its_job_is_waits_there_suspended() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    _, files = step(_suspend(files, started.source), now=NOW + timedelta(minutes=20))
    full = {started.spoke: {"cpu": 0.5}}
    for minutes in (60, 75):  # and so again at the next reconcile
        waits, files = step(
            _suspend(files, started.source, value=False),
            now=NOW + timedelta(minutes=minutes),
            states=full,
        )
        entry = entries(waits)[started.id]
        assert (entry.phase, entry.spoke) == ("Suspended", started.spoke)
        assert entry.reason.startswith(f"resumed, and waits for room on {started.spoke}, ")
        # Its Job stays, suspended, with what it counted.
        job = _rendered(waits, files, entry)
        assert job["spec"]["suspend"] is True
        assert job["metadata"]["annotations"][HELD] == "resumed, and waits for room here"


def test_a_stopped_job_that_ended_before_its_pods_did_is_recorded_so() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    _, files = step(_suspend(files, started.source), now=NOW + timedelta(minutes=20))
    report = {started.spoke: {"jobs": {started.job_key: "Succeeded"}}}
    later, _ = step(files, now=NOW + timedelta(minutes=40), states=report)
    assert entries(later)[started.id].phase == "Succeeded"


def test_a_stopped_jobs_broken_file_keeps_its_suspended_job() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    stopped, files = step(_suspend(files, started.source), now=NOW + timedelta(minutes=20))
    path = f"rendered/{started.spoke}/batch.{started.job_name}.yaml"
    broken = {**files, started.source: b"kind: AppWrapper\nspec: [\n"}
    later, _ = step(broken, now=NOW + timedelta(minutes=40))
    assert started.id in later.held
    assert entries(later)[started.id] == entries(stopped)[started.id]
    assert render(later, previous=broken)[path] == files[path]
    assert started.id not in {a.id for a in later.plan.assignments}


def test_a_stopped_job_on_a_spoke_that_left_the_fleet_is_held_off_any_spoke() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    _, files = step(_suspend(files, started.source), now=NOW + timedelta(minutes=20))
    gone = {k: v for k, v in files.items() if k != f"spokes/{started.spoke}.yaml"}
    later, _ = step(gone, now=NOW + timedelta(minutes=40))
    entry = entries(later)[started.id]
    assert (entry.phase, entry.spoke, entry.reason) == ("Suspended", None, records.SUSPENDED)


def test_a_waiting_or_suspended_jobs_broken_file_keeps_its_record_and_cancels_nothing() -> None:
    files = {**template_files(), "jobs/wide.yaml": wide_job(spokes="paris")}
    decision, files = step(files, now=NOW, states={"paris": SMALL_NODES})
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    held, files = step(_suspend(files, planned.source), now=NOW, states={"paris": SMALL_NODES})
    waiting = {job_id: entries(held)[job_id] for job_id in ("batch/wide", planned.id)}
    assert [e.phase for e in waiting.values()] == ["Pending", "Suspended"]
    broken = {**files, **{e.source: b"kind: AppWrapper\nspec: [\n" for e in waiting.values()}}
    later, _ = step(broken, now=NOW + timedelta(minutes=20), states={"paris": SMALL_NODES})
    for job_id, before in waiting.items():
        assert entries(later)[job_id] == before  # first seen as it was: no deadline slides
    message = messages.commit_message(old=held.ledger, decision=later, input_commit="0" * 40)
    assert message.splitlines()[0].startswith("invalid: 2 jobs")
    assert "cancel" not in message
