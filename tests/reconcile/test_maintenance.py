"""Maintenance announced in a spoke's file: nothing new is planned to run
there then; what was planned across it goes before, after or elsewhere, and
what was dispatched there runs on and is named."""

from __future__ import annotations

from datetime import datetime, timedelta

import yaml
from prometheus_client import REGISTRY

from reconciler import messages
from reconciler.fleet import load_fleet
from reconciler.ledger import FIXED, UNFINISHED
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
            "spokes/paris.yaml:spec.maintenance[0]: end 2026-11-22T04:00:00Z is not after start",
        ),
        (
            {"start": "2026-11-22T04:00:00", "end": "2026-11-22T05:00:00Z"},
            "spokes/paris.yaml:spec.maintenance[0].start: '2026-11-22T04:00:00' has no time zone",
        ),
        (
            _window(note="x"),
            "spokes/paris.yaml:spec.maintenance[0].note: unknown field",
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
