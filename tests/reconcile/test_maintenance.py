"""Maintenance announced in a spoke's file: nothing new is planned to run
there then; what was planned across it goes before, after or elsewhere, and
what was dispatched there runs on and is named."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from prometheus_client import REGISTRY

from reconciler import cron, messages
from reconciler.fleet import Maintenance
from reconciler.ledger import FIXED, UNFINISHED
from reconciler.loading import load_fleet
from reconciler.pods import Node, Resources, Taint
from reconciler.quantities import timestamp
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import fleet_with, problems_of
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_reconcile import reconcile

START, END = NOW + timedelta(hours=2), NOW + timedelta(hours=8)


def _with_maintenance(files, spoke: str, *windows: dict) -> dict:
    doc = yaml.safe_load(files[f"spokes/{spoke}.yaml"])
    doc["spec"]["maintenance"] = list(windows)
    return {**files, f"spokes/{spoke}.yaml": yaml.safe_dump(doc).encode()}


def _window(start: datetime = START, end: datetime = END, **more) -> dict:
    return {"start": start.isoformat(), "end": end.isoformat(), **more}


def _across(entry, start: datetime = START, end: datetime = END) -> bool:
    return entry.planned_start < end and start < entry.planned_end


def test_nothing_new_is_planned_to_run_on_a_spoke_during_its_maintenance() -> None:
    before, files = step(template_files(), now=NOW)
    # Without it, paris would run planned work through those hours.
    across = [
        e
        for e in entries(before).values()
        if e.spoke == "paris" and e.phase == "Planned" and _across(e)
    ]
    assert across
    upgrade = _window(reason="kernel upgrade")
    decision, _ = step(_with_maintenance(files, "paris", upgrade), now=NOW + timedelta(minutes=5))
    after = entries(decision)
    for entry in after.values():
        if entry.spoke == "paris" and entry.phase not in FIXED and entry.phase in UNFINISHED:
            assert not _across(entry), entry.id
    assert all(after[e.id].spoke != "paris" or not _across(after[e.id]) for e in across)
    assert_valid_plan(decision.instance, decision.plan)
    # Dispatched there before, it runs on: named, for the operator to drain.
    running = [
        e.id for e in entries(before).values() if e.spoke == "paris" and e.phase == "Dispatched"
    ]
    into = sorted(e for e in running if _across(after[e]))
    assert all(after[job_id].spoke == "paris" for job_id in running)
    message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
    line = "- paris: 2026-11-22 04:00 to 2026-11-22 10:00 (kernel upgrade)"
    assert f"\nMaintenance (nothing new is planned to run there then):\n{line}" in message
    assert into and f"; planned to run into it: {', '.join(into)} (already dispatched" in message


def test_a_windows_reason_is_one_line_of_the_commit_message() -> None:
    before, files = step(template_files(), now=NOW)
    upgrade = _window(reason="kernel\nupgrade\n- batch/etl-daily: cancelled\x1b[0m\n")
    decision, _ = step(_with_maintenance(files, "paris", upgrade), now=NOW + timedelta(minutes=5))
    message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
    line = "- paris: 2026-11-22 04:00 to 2026-11-22 10:00 (kernel upgrade - batch/etl-daily: "
    assert f"\n{line}cancelled\\x1b[0m)" in message


def test_a_window_shuts_every_pool_of_its_spoke() -> None:
    gpu_taint = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
    cpu_size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=0)
    gpu_size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)
    pooled = {
        "cpu": 128,
        "gpu": 8,
        "nodes": (
            *(Node(allocatable=cpu_size, free=cpu_size),) * 2,
            *(Node(allocatable=gpu_size, taints=(gpu_taint,), free=gpu_size),) * 2,
        ),
    }
    files = _with_maintenance(template_files(), "paris", _window())
    decision, _ = step(files, now=NOW, states={"paris": pooled})
    pools = [s for s in decision.instance.spokes if s.name.startswith("paris")]
    assert len(pools) == 2
    shut = [t for t in range(decision.window.slots) if _across_slot(decision, t)]
    assert shut
    # From the slot it starts in to the one it ends in, and not a slot more.
    window = decision.window
    assert shut == list(range(window.slot_of(START), window.slot_of(END)))
    for pool in pools:
        assert all(pool.cpu[t] == 0 and pool.gpu[t] == 0 for t in shut), pool.name
        assert pool.cpu[shut[0] - 1] > 0 and pool.cpu[shut[-1] + 1] > 0, pool.name
    assert_valid_plan(decision.instance, decision.plan)


def _across_slot(decision, t: int) -> bool:
    return decision.window.time_of(t) < END and decision.window.time_of(t + 1) > START


def test_windows_out_of_the_horizon_change_nothing() -> None:
    before, files = step(template_files(), now=NOW)
    gone = _window(NOW - timedelta(days=2), NOW - timedelta(days=1))
    far = _window(NOW + timedelta(days=3), NOW + timedelta(days=4))
    decision, _ = step(_with_maintenance(files, "paris", gone, far), now=NOW)
    assert decision.maintenance == {}
    assert decision.ledger == before.ledger
    message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
    assert "Maintenance" not in message


def test_a_window_that_does_not_read_is_a_problem_of_its_spoke_file() -> None:
    for window, expected in (
        (
            _window(START, START),
            "spokes/paris.yaml: spec.maintenance[0]: end 2026-11-22T04:00:00Z is not after start",
        ),
        (
            {"start": "2026-11-22T04:00:00", "end": "2026-11-22T05:00:00Z"},
            "spokes/paris.yaml: spec.maintenance[0].start: '2026-11-22T04:00:00' has no time zone",
        ),
        (
            _window(note="x"),
            "spokes/paris.yaml: spec.maintenance[0].note: unknown field",
        ),
        (
            _window(ends="2026-11-22T05:00:00Z"),
            "spokes/paris.yaml: spec.maintenance[0].ends: unknown field: did you mean end?",
        ),
    ):
        files = _with_maintenance(template_files(), "paris", _window(), window)
        files = {path: text.decode() for path, text in files.items()}
        fleet = fleet_with(spokes__paris=files["spokes/paris.yaml"])
        lines = problems_of(fleet)
        assert any(line.startswith(expected.replace("[0]", "[1]")) for line in lines), lines
        assert "paris" in fleet.broken_spokes and len(fleet.spokes) == 2


def test_a_window_written_as_a_yaml_time_reads() -> None:
    text = yaml.safe_load(template_files()["spokes/paris.yaml"])
    raw = yaml.safe_dump(text)
    window = "  - start: 2026-11-22T04:00:00Z\n    end: 2026-11-22T06:00:00+01:00\n"
    raw = raw.replace("spec:\n", f"spec:\n  maintenance:\n{window}", 1)
    fleet = load_fleet(
        {**template_files(), "spokes/paris.yaml": raw.encode()}, appwrapper_schema=lambda _: []
    )
    paris = next(s for s in fleet.spokes if s.name == "paris")
    (window,) = paris.spec.maintenance
    assert (window.start, window.end) == (START, NOW + timedelta(hours=3))


def test_a_reconcile_commits_the_window_and_says_while_it_is_on(fleet_repo, remote) -> None:
    text = gitutil.read(remote, "spokes/paris.yaml")
    window = _window(reason="kernel upgrade")
    gitutil.user_commit(remote, _with_maintenance({"spokes/paris.yaml": text}, "paris", window))
    outcome = reconcile(fleet_repo)
    assert outcome.commit == gitutil.head(remote)
    message = gitutil.message(remote)
    assert "\n- paris: 2026-11-22 04:00 to 2026-11-22 10:00 (kernel upgrade)" in message
    for entry in gitutil.ledger(remote).values():
        if entry["spoke"] == "paris" and entry["phase"] == "Planned":
            start, end = (timestamp(entry[k]) for k in ("plannedStart", "plannedEnd"))
            assert end <= START or start >= END, entry["id"]
    assert (_in_maintenance("paris"), _in_maintenance("frankfurt")) == (0, 0)
    reconcile(fleet_repo, at=START + timedelta(minutes=1))
    assert (_in_maintenance("paris"), _in_maintenance("frankfurt")) == (1, 0)
    reconcile(fleet_repo, at=END)
    assert _in_maintenance("paris") == 0


def _in_maintenance(spoke: str) -> float | None:
    return REGISTRY.get_sample_value("caspian_spoke_in_maintenance", {"spoke": spoke})


def test_a_cron_schedule_names_its_minutes_as_cron_does() -> None:
    saturday_night = cron.parse("0 22 * * sat")
    assert (saturday_night.minutes, saturday_night.hours) == ({0}, {22})
    assert saturday_night.weekdays == {6} and saturday_night.on(date(2026, 11, 28))
    assert not saturday_night.on(date(2026, 11, 27))
    quarter = cron.parse("*/15 1-3 * * *")
    assert quarter.minutes == {0, 15, 30, 45} and quarter.hours == {1, 2, 3}
    # Both day fields restricted: either one matches (the 1st, the 15th, or a Monday).
    either = cron.parse("0 0 1,15 * MON")
    assert either.on(date(2026, 12, 1)) and either.on(date(2026, 12, 7))
    assert not either.on(date(2026, 12, 2))
    assert cron.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    for wrong, says in (
        ("0 22 * *", "five fields"),
        ("61 * * * *", "'61' is not a minute from 0 to 59"),
        ("x * * * *", "'x' is not a minute"),
        ("*/0 * * * *", "'*/0' is not a minute"),
        ("0 0 * 13 *", "'13' is not a month from 1 to 12"),
        ("0 0 * * ²", "'²' is not a day of week"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            cron.parse(wrong)


def test_a_schedule_is_read_in_its_time_zone_across_a_change_of_offset() -> None:
    nightly = cron.parse("0 2 * * *")
    paris = cron.zone("Europe/Paris")
    winter = list(nightly.starts(_utc("2026-03-27T00:00"), _utc("2026-03-30T00:00"), zone=paris))
    # 02:00 in Paris is 01:00 UTC before the clocks go forward on 29 March.
    assert [m.isoformat() for m in winter] == [
        "2026-03-27T01:00:00+00:00",
        "2026-03-28T01:00:00+00:00",
        "2026-03-29T01:00:00+00:00",
    ]
    summer = list(nightly.starts(_utc("2026-03-30T00:00"), _utc("2026-03-31T00:00"), zone=paris))
    assert [m.isoformat() for m in summer] == ["2026-03-30T00:00:00+00:00"]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_recurring_window_shuts_each_time_it_is_on() -> None:
    nightly = {"schedule": "0 4 * * *", "duration": "6h", "reason": "patching"}
    files = _with_maintenance(template_files(), "paris", nightly)
    decision, _ = step(files, now=NOW)
    (once,) = decision.maintenance["paris"]
    assert (once.start, once.end, once.reason) == (START, END, "patching")
    for entry in entries(decision).values():
        if entry.spoke == "paris" and entry.phase == "Planned":
            assert not _across(entry), entry.id
    assert_valid_plan(decision.instance, decision.plan)
    # A window on since before the horizon began is in it too, to its end.
    on = step(files, now=START + timedelta(hours=1))[0].maintenance["paris"]
    assert (on[0].start, on[0].end) == (START, END)
    window = Maintenance(schedule="0 4 * * *", duration="6h")
    assert [w.start for w in window.within(NOW, NOW + timedelta(days=2))] == [
        START,
        START + timedelta(days=1),
    ]
    assert window.within(END, END + timedelta(hours=2)) == ()  # it ends as that begins
    assert window.within(END - timedelta(minutes=1), END)[0].start == START


def test_a_recurring_window_that_does_not_read_is_a_problem_of_its_spoke_file() -> None:
    for window, expected in (
        ({"schedule": "0 4 * *", "duration": "2h"}, "five fields"),
        ({"schedule": "0 4 * * *", "duration": "2h", "timeZone": "Mars/Olympus"}, "no IANA"),
        ({"schedule": "0 4 * * *"}, "give both schedule (a cron expression) and duration"),
        ({**_window(), "schedule": "0 4 * * *", "duration": "2h"}, "give start and end (once)"),
        ({"reason": "x"}, "give start and end (once), or schedule and duration"),
    ):
        files = _with_maintenance(template_files(), "paris", window)
        fleet = fleet_with(spokes__paris=files["spokes/paris.yaml"].decode())
        lines = problems_of(fleet)
        assert any(
            line.startswith("spokes/paris.yaml: spec.maintenance[0]") and expected in line
            for line in lines
        ), lines


def test_times_that_overlap_or_touch_make_one_window() -> None:
    every_minute = Maintenance(schedule="* * * * *", duration="1m")
    assert [(w.start, w.end) for w in every_minute.within(NOW, NOW + timedelta(days=1))] == [
        (NOW, NOW + timedelta(days=1))
    ]
    twice = Maintenance(schedule="0 4,6 * * *", duration="3h")  # 04:00-07:00 and 06:00-09:00
    assert [(w.start, w.end) for w in twice.within(NOW, NOW + timedelta(hours=12))] == [
        (START, START + timedelta(hours=5))
    ]
    files = _with_maintenance(
        template_files(), "paris", {"schedule": "* * * * *", "duration": "1m"}
    )
    decision, _ = step(files, now=NOW)
    paris = next(s for s in decision.instance.spokes if s.name == "paris")
    assert set(paris.cpu) == {0}
    # One line for the whole horizon, and nothing of the plan on paris.
    assert messages.maintenance(decision) == ["paris: 2026-11-22 02:00 to 2026-11-23 02:00"]
    assert not any(e.spoke == "paris" for e in entries(decision).values())


def test_a_schedule_of_many_windows_is_said_in_a_few_lines() -> None:
    often = {"schedule": "*/15 * * * *", "duration": "5m"}
    decision, _ = step(_with_maintenance(template_files(), "paris", often), now=NOW)
    assert len(decision.maintenance["paris"]) == 96
    lines = messages.maintenance(decision)
    assert len(lines) == messages.MOST_WINDOWS + 1
    assert lines[0] == "paris: 2026-11-22 02:00 to 2026-11-22 02:05"
    assert lines[-1] == f"paris: and {96 - messages.MOST_WINDOWS} more in the horizon"
