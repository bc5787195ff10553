"""A spoke that goes down: no new work goes there, what was dispatched stays,
and what was planned waits for it through the policy's spokeDownGrace before
it is planned elsewhere, so that a blip does not reshuffle the queue."""

from __future__ import annotations

from datetime import timedelta

import yaml

from reconciler import crd, messages, survey
from reconciler.fleet import Maintenance
from reconciler.ledger import FIXED
from reconciler.loading import load_fleet
from reconciler.observing import DeclaredCapacity
from reconciler.quantities import format_time
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper
from tests.reconcile.test_lifecycle import _with_policy, entries, step

DOWN = {"up": False, "cpu": 0, "memory_bytes": 0, "gpu": 0, "reason": "HTTP 503 Unavailable"}
BLIP = NOW + timedelta(minutes=20)


def _on(decision, spoke: str, *phases: str) -> dict:
    return {e.id: e for e in entries(decision).values() if e.spoke == spoke and e.phase in phases}


def _rendered(files, spoke: str) -> dict:
    return {path: body for path, body in files.items() if path.startswith(f"rendered/{spoke}/")}


def _message(old, new) -> str:
    return messages.commit_message(old=old.ledger, decision=new, input_commit="0" * 40)


def test_planned_jobs_wait_out_a_blip_where_they_were_planned() -> None:
    first, files = step(template_files(), now=NOW)
    planned = _on(first, "paris", "Planned")
    started = _on(first, "paris", *FIXED)
    assert planned and started
    down, during = step(files, now=BLIP, states={"paris": DOWN})
    after = entries(down)
    for job_id, before in {**planned, **started}.items():
        kept = after[job_id]
        assert (kept.phase, kept.spoke, kept.planned_start) == (
            before.phase,
            before.spoke,
            before.planned_start,
        ), job_id
    assert all(after[job_id].spoke_down_since == BLIP for job_id in planned)
    assert all(after[job_id].spoke_down_since is None for job_id in started)
    assert set(down.waiting) == set(planned)
    # Nothing new goes there, and Argo CD is asked to change nothing there.
    assert {a.id for a in down.plan.assignments if a.spoke == "paris"} == set(started)
    # Nor do they hold room anywhere else.
    assert not set(planned) & {a.id for a in down.plan.assignments}
    assert _rendered(during, "paris") == _rendered(files, "paris")
    assert_valid_plan(down.instance, down.plan)
    message = _message(first, down)
    assert (
        "\nDown (no new work; what was dispatched there stays):\n- paris: HTTP 503 Unavailable; "
        f"{len(planned)} jobs planned there wait for it, undispatched, until 2026-11-22 02:25 "
        "(the policy's spokeDownGrace 5m from 2026-11-22 02:20), then elsewhere\n"
    ) in message
    assert "- moved " not in message
    assert message.startswith(f"wait: {len(planned)} jobs (paris down),")
    assert "waits for paris, down" in messages.placement_table(down)
    # Back within the grace: every job is where it was, and the record of the
    # wait goes.
    back, after_blip = step(during, now=BLIP + timedelta(minutes=3))
    for job_id, before in planned.items():
        again = entries(back)[job_id]
        assert (again.spoke, again.planned_start, again.spoke_down_since) == (
            "paris",
            before.planned_start,
            None,
        )
    assert _rendered(after_blip, "paris") == _rendered(files, "paris")
    message = _message(down, back)
    assert message.startswith(f"keep: {len(planned)} jobs (paris back),")
    for job_id, before in planned.items():
        assert (
            f"\n- kept {job_id} on paris {before.planned_start:%Y-%m-%d %H:%M}: paris answers "
            "again, down since 2026-11-22 02:20\n"
        ) in message


def test_past_the_grace_they_are_planned_elsewhere_and_the_commit_says_why() -> None:
    first, files = step(template_files(), now=NOW)
    planned = _on(first, "paris", "Planned")
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    # Still down, and seen down again: the wait counts from when it was first seen.
    still, files = step(files, now=BLIP + timedelta(minutes=4), states={"paris": DOWN})
    assert set(still.waiting) == set(planned)
    assert all(entries(still)[j].spoke_down_since == BLIP for j in planned)
    later, _ = step(files, now=BLIP + timedelta(minutes=5), states={"paris": DOWN})
    assert not later.waiting
    after = entries(later)
    for job_id in planned:
        assert after[job_id].spoke != "paris" and after[job_id].spoke_down_since is None, job_id
    # Moved, or dispatched elsewhere where its start has come.
    lines = _message(still, later).splitlines()
    moved = [line for line in lines if line.startswith(("- moved ", "- dispatched "))]
    assert len(moved) == len(planned)
    assert sum(", planned on paris before; " in line for line in moved) == sum(
        entries(later)[job_id].phase == "Dispatched" for job_id in planned
    )
    assert all(
        "; paris takes no new work (down since 2026-11-22 02:20, longer than the policy's "
        "spokeDownGrace)" in line
        for line in moved
    )
    assert_valid_plan(later.instance, later.plan)


def test_a_start_that_comes_while_its_spoke_is_down_is_not_dispatched_there() -> None:
    first, files = step(template_files(), now=NOW)
    soonest = min(_on(first, "paris", "Planned").values(), key=lambda e: e.planned_start)
    at_start = soonest.planned_start + timedelta(minutes=1)
    down, during = step(files, now=at_start, states={"paris": DOWN})
    waiting = entries(down)[soonest.id]
    assert (waiting.phase, waiting.spoke) == ("Planned", "paris")
    path = f"rendered/paris/{soonest.id.split('/')[0]}.{soonest.job_name}.yaml"
    assert yaml.safe_load(during[path])["spec"]["suspend"] is True
    # Back within its slot, it is dispatched there, on time.
    back, _ = step(during, now=at_start + timedelta(minutes=2))
    dispatched = entries(back)[soonest.id]
    assert (dispatched.phase, dispatched.planned_start) == ("Dispatched", soonest.planned_start)


def test_a_grace_of_zero_moves_them_at_once_and_null_keeps_them_until_it_answers() -> None:
    at_once = _with_policy(template_files(), spokeDownGrace=0)
    first, files = step(at_once, now=NOW)
    planned = _on(first, "paris", "Planned")
    down, _ = step(files, now=BLIP, states={"paris": DOWN})
    assert not down.waiting
    assert all(entries(down)[job_id].spoke != "paris" for job_id in planned)
    assert "wait for it" not in _message(first, down)

    for_ever = _with_policy(template_files(), spokeDownGrace=None)
    first, files = step(for_ever, now=NOW)
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    a_day_on, _ = step(files, now=BLIP + timedelta(days=1), states={"paris": DOWN})
    planned = _on(first, "paris", "Planned")
    assert set(a_day_on.waiting) == set(planned)
    assert "until it answers (the policy's spokeDownGrace is null)" in _message(first, a_day_on)
    # Waiting past their deadlines, they say they are late, and why.
    for job_id, before in planned.items():
        entry = entries(a_day_on)[job_id]
        earliest = BLIP + timedelta(days=1) + (before.planned_end - before.planned_start)
        assert entry.late == (earliest > before.deadline), job_id
        if entry.late:
            assert entry.reason == (
                "will finish after its deadline: it waits for paris, which is down, so it ends "
                f"{format_time(earliest)} at the earliest"
            )
    assert any(entries(a_day_on)[job_id].late for job_id in planned)


def test_the_source_s_own_time_counts_where_it_is_earlier() -> None:
    first, files = step(template_files(), now=NOW)
    planned = _on(first, "paris", "Planned")
    # Argo CD has been unable to sync it for an hour: the grace is long gone.
    long_ago = {**DOWN, "down_since": BLIP - timedelta(hours=1)}
    down, _ = step(files, now=BLIP, states={"paris": long_ago})
    assert not down.waiting and all(entries(down)[j].spoke != "paris" for j in planned)
    # A condition dated anew (its message changed) does not restart the wait.
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    renewed = {**DOWN, "down_since": BLIP + timedelta(minutes=4)}
    later, _ = step(files, now=BLIP + timedelta(minutes=6), states={"paris": renewed})
    assert not later.waiting and all(entries(later)[j].spoke != "paris" for j in planned)


def test_a_drained_spoke_or_one_a_job_may_no_longer_use_is_not_waited_for() -> None:
    first, files = step(template_files(), now=NOW)
    planned = _on(first, "paris", "Planned")
    spoke = yaml.safe_load(files["spokes/paris.yaml"])
    spoke["spec"]["unschedulable"] = True
    drained = {**files, "spokes/paris.yaml": yaml.safe_dump(spoke).encode()}
    down, _ = step(drained, now=BLIP, states={"paris": DOWN})
    assert not down.waiting and all(entries(down)[j].spoke != "paris" for j in planned)

    job_id = next(iter(planned))
    source = planned[job_id].source
    doc = yaml.safe_load(files[source])
    doc["metadata"].setdefault("annotations", {})["caspian.dev/spokes"] = "frankfurt,california"
    elsewhere = {**files, source: yaml.safe_dump(doc, sort_keys=False).encode()}
    down, _ = step(elsewhere, now=BLIP, states={"paris": DOWN})
    assert job_id not in down.waiting and entries(down)[job_id].spoke != "paris"
    assert set(down.waiting) == set(planned) - {job_id}


def test_a_waiting_job_s_record_follows_its_file() -> None:
    first, files = step(template_files(), now=NOW)
    waiting = max(_on(first, "paris", "Planned").values(), key=lambda e: e.planned_start)
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    # Its deadline moved before its planned end while it waits: it says it is
    # late. It runs longer now: it ends later.
    doc = yaml.safe_load(files[waiting.source])
    doc["metadata"]["annotations"]["caspian.dev/deadline"] = "2026-11-22T12:00:00Z"
    doc["metadata"]["annotations"]["caspian.dev/duration"] = "3h"
    edited = {**files, waiting.source: yaml.safe_dump(doc, sort_keys=False).encode()}
    later, _ = step(edited, now=BLIP + timedelta(minutes=2), states={"paris": DOWN})
    entry = entries(later)[waiting.id]
    assert waiting.id in later.waiting and entry.planned_start == waiting.planned_start
    assert entry.planned_end == waiting.planned_start + timedelta(hours=3)
    assert entry.late and entry.reason == (
        "will finish after its deadline: it waits for paris, which is down, so it ends "
        f"{format_time(entry.planned_end)} at the earliest"
    )
    assert entry.deadline.isoformat() == "2026-11-22T12:00:00+00:00"


def test_a_start_that_comes_past_the_grace_goes_elsewhere_not_to_the_down_spoke() -> None:
    for grace in ("0", "5m"):
        first, files = step(_with_policy(template_files(), spokeDownGrace=grace), now=NOW)
        soonest = min(_on(first, "paris", "Planned").values(), key=lambda e: e.planned_start)
        at_start = soonest.planned_start + timedelta(minutes=1)
        if grace != "0":
            _, files = step(files, now=at_start - timedelta(minutes=5), states={"paris": DOWN})
        down, _ = step(files, now=at_start, states={"paris": DOWN})
        entry = entries(down)[soonest.id]
        assert soonest.id not in down.waiting
        assert entry.spoke != "paris" and entry.planned_start >= soonest.planned_start, grace
        assert_valid_plan(down.instance, down.plan)


def test_caspian_spokes_says_what_becomes_of_the_jobs_planned_on_a_down_spoke() -> None:
    first, files = step(template_files(), now=NOW)
    planned = len(_on(first, "paris", "Planned"))
    down = first.ledger.entries
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    paris = DeclaredCapacity().observe(fleet)["paris"].down("HTTP 503")
    spoke = next(s for s in fleet.spokes if s.name == "paris")
    jobs = f"{planned} jobs planned there"

    def said(grace, state=paris, ledger=down, spoke=spoke):
        return survey.waiting_for(ledger, spoke=spoke, state=state, grace=grace, now=BLIP)

    assert said(timedelta(0)) == f"{jobs} go elsewhere at the next reconcile (the policy's " + (
        "spokeDownGrace is 0)"
    )
    assert (
        said(None) == f"{jobs} wait for it until it answers (the policy's spokeDownGrace is null)"
    )
    # Before a reconcile has seen it down, the wait has not begun.
    five = timedelta(minutes=5)
    assert said(five) == (
        f"{jobs} wait for it from the next reconcile that sees it down (the policy's "
        "spokeDownGrace 5m), then go elsewhere"
    )
    # The earliest time known counts: the ledger's, or its source's.
    waited, _ = step(files, now=BLIP, states={"paris": DOWN})
    assert said(five, ledger=waited.ledger.entries).startswith(
        f"{jobs} wait for it until 2026-11-22T02:25:00Z "
    )
    earlier = paris.model_copy(update={"down_since": BLIP - timedelta(minutes=3)})
    assert said(five, state=earlier, ledger=waited.ledger.entries).startswith(
        f"{jobs} wait for it until 2026-11-22T02:22:00Z "
    )
    frankfurt = next(s for s in fleet.spokes if s.name == "frankfurt")
    assert said(five, spoke=frankfurt) == ""
    # Down in its maintenance, the wait counts from the window's end.
    window = Maintenance(start=BLIP - timedelta(minutes=30), end=BLIP + timedelta(hours=1))
    spec = spoke.spec.model_copy(update={"maintenance": (window,)})
    upgraded = spoke.model_copy(update={"spec": spec})
    assert said(five, ledger=waited.ledger.entries, spoke=upgraded).startswith(
        f"{jobs} wait for it until 2026-11-22T03:25:00Z "
    )


def test_a_spoke_down_in_its_maintenance_is_waited_for_until_the_window_ends() -> None:
    window = {"start": "2026-11-22T02:10:00Z", "end": "2026-11-22T02:50:00Z"}
    files = _with_spoke(template_files(), maintenance=[window])
    first, files = step(files, now=NOW)
    planned = _on(first, "paris", "Planned")
    assert planned
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    # Down 25 minutes, past the grace, but in its window and 4 minutes after.
    still, files = step(files, now=BLIP + timedelta(minutes=34), states={"paris": DOWN})
    assert set(still.waiting) == set(planned)
    assert all(entries(still)[j].spoke_down_since == BLIP for j in planned)
    assert (
        f"{len(planned)} jobs planned there wait for it, undispatched, until 2026-11-22 02:55 "
        "(the policy's spokeDownGrace 5m from 2026-11-22 02:50, when its maintenance ends), "
        "then elsewhere"
    ) in _message(first, still)
    later, _ = step(files, now=BLIP + timedelta(minutes=35), states={"paris": DOWN})
    assert not later.waiting
    assert all(entries(later)[j].spoke != "paris" for j in planned)
    # Down before its window began: the grace counts from when it went down.
    early = {"start": "2026-11-22T02:30:00Z", "end": "2026-11-22T03:30:00Z"}
    files = _with_spoke(template_files(), maintenance=[early])
    first, files = step(files, now=NOW)
    _, files = step(files, now=BLIP, states={"paris": DOWN})
    gone, _ = step(files, now=BLIP + timedelta(minutes=5), states={"paris": DOWN})
    assert not gone.waiting


def _with_spoke(files, **spec) -> dict:
    doc = yaml.safe_load(files["spokes/paris.yaml"])
    doc["spec"].update(spec)
    return {**files, "spokes/paris.yaml": yaml.safe_dump(doc).encode()}


def test_one_job_waiting_is_said_in_the_singular() -> None:
    files = template_files()
    files = {p: t for p, t in files.items() if not p.startswith("jobs/")}
    files["jobs/solo.yaml"] = appwrapper(
        "solo",
        annotations={
            "caspian.dev/spokes": "paris",
            "caspian.dev/not-before": "2026-11-22T06:00:00Z",
        },
    ).encode()
    first, files = step(files, now=NOW)
    assert entries(first)["batch/solo"].spoke == "paris"
    down, _ = step(files, now=BLIP, states={"paris": DOWN})
    assert "- paris: HTTP 503 Unavailable; 1 job planned there waits for it, undispatched, " in (
        _message(first, down)
    )
