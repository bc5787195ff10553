"""`caspian report`: what the jobs that finished over a period emitted and
saved, read back from the ledger of every commit in it, jobs forgotten since
among them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from reconciler import accounting, ledger
from reconciler.history import Revision
from reconciler.ledger import Entry, Ledger, Phase
from reconciler.rendering import render_ledger
from tests.conftest import NOW

HOUR = timedelta(hours=1)


def _record(
    name: str, phase: str = "Succeeded", *, spoke: str = "paris", namespace="batch", **fields
) -> Entry:
    return Entry(
        id=f"{namespace}/{name}",
        source=f"jobs/{name}.yaml",
        phase=phase,
        spoke=spoke,
        job_name=f"{name}-0a1b2c3d",
        planned_start=NOW,
        planned_end=NOW + HOUR,
        **fields,
    )


def _commit(number: int, hours: float, *records: Entry, raw: bytes | None = None) -> Revision:
    text = raw if raw is not None else render_ledger(Ledger(entries=records))
    return Revision(
        commit=f"{number:040x}",
        author="caspian-bot",
        time=NOW + hours * HOUR,
        message="update placement records",
        files={ledger.LEDGER_PATH: text},
    )


def _finished(name: str, hours: float, **fields) -> Entry:
    return _record(name, finished_at=NOW + hours * HOUR, **fields)


# backfill: planned at 40 g against 100 for qos, and measured at 30 against 90.
BACKFILL = _finished(
    "backfill",
    5,
    deadline=NOW + 6 * HOUR,
    estimated_grams=40.0,
    qos_grams=100.0,
    emitted_grams=30.0,
    qos_emitted_grams=90.0,
)
# etl, of the media team: ran twice on frankfurt (no measured baseline), and
# ended after its deadline, though planned to end in time.
ETL = _finished(
    "etl",
    7,
    spoke="frankfurt",
    namespace="media",
    deadline=NOW + 6 * HOUR,
    estimated_grams=10.0,
    qos_grams=20.0,
    emitted_grams=25.0,
    retries=1,
)
# render: failed on paris, in time, though planned late; its run was not measured.
RENDER = _finished(
    "render",
    3,
    phase="Failed",
    deadline=NOW + 4 * HOUR,
    late=True,
    estimated_grams=5.0,
    qos_grams=5.0,
)
# old: finished before the period; sweep: still running.
OLD = _finished("old", -30, estimated_grams=1.0, qos_grams=2.0)
SWEEP = _record("sweep", "Running", estimated_grams=50.0, qos_grams=60.0)


def _history() -> list[Revision]:
    """Newest first, as git log lists them: render forgotten by the tip."""
    running = BACKFILL.model_copy(update={"phase": Phase.RUNNING, "finished_at": None})
    return [
        _commit(5, 8, BACKFILL, ETL, SWEEP),
        _commit(4, 6, BACKFILL, RENDER, SWEEP),
        _commit(3, 4, running, RENDER, SWEEP),
        _commit(2, 1, running, SWEEP, OLD),
        _commit(1, -24, running, OLD),
    ]


def test_each_finished_job_counts_once_by_spoke_forgotten_ones_too() -> None:
    found = accounting.report(_history(), since=NOW, until=NOW + 24 * HOUR, most=100)
    assert (found.commits_read, found.complete) == (4, True)
    by_spoke = {tally.group: tally for tally in found.groups}
    paris, frankfurt = by_spoke["paris"], by_spoke["frankfurt"]
    assert (paris.succeeded, paris.failed, paris.late) == (1, 1, 0)
    assert (paris.estimated_grams, paris.qos_grams) == (45.0, 105.0)
    assert paris.estimated_saving == pytest.approx(1 - 45 / 105)
    assert (paris.emitted_grams, paris.emitted_jobs) == (30.0, 1)
    assert (paris.measured_grams, paris.measured_qos_grams, paris.measured_jobs) == (30, 90, 1)
    assert paris.measured_saving == pytest.approx(2 / 3)
    assert (frankfurt.succeeded, frankfurt.late, frankfurt.emitted_grams) == (1, 1, 25.0)
    # Ran twice: emitted, with no measured baseline to weigh it against.
    assert (frankfurt.measured_jobs, frankfurt.measured_saving) == (0, None)
    total = found.total
    assert (total.succeeded, total.failed, total.late) == (2, 1, 1)
    assert (total.estimated_grams, total.qos_grams, total.emitted_grams) == (55.0, 125.0, 55.0)
    table = accounting.table(found)
    assert "| paris | 1 | 1 | 0 | 45 | 105 | 57% less | 30 (1) | 67% less (1) |" in table
    assert "| frankfurt | 1 | 0 | 1 | 10 | 20 | 50% less | 25 (1) | - |" in table
    assert table.splitlines()[-1].startswith("| all | 2 | 1 | 1 | 55 | 125 | 56% less | 55 (2) |")


def test_the_period_leaves_out_what_finished_before_it_and_at_its_end() -> None:
    found = accounting.report(_history(), since=NOW + 4 * HOUR, until=NOW + 7 * HOUR, most=100)
    # render ended at 3 h, etl at 7 h (the end is left out): backfill alone.
    assert (found.total.succeeded, found.total.failed) == (1, 0)
    assert [tally.group for tally in found.groups] == ["paris"]
    # The commit at 4 h is in the period; the one at 1 h is the first before it.
    assert (found.commits_read, found.complete) == (3, True)


def test_reading_stops_at_the_limit_and_says_jobs_may_be_missing() -> None:
    found = accounting.report(_history(), since=NOW, until=NOW + 24 * HOUR, most=1)
    assert (found.commits_read, found.complete) == (1, False)
    assert (found.total.succeeded, found.total.failed) == (2, 0)  # render was forgotten
    # Read to the first commit of all, it is complete.
    whole = accounting.report(_history(), since=NOW - 48 * HOUR, until=NOW, most=100)
    assert (whole.commits_read, whole.complete, whole.total.succeeded) == (5, True, 1)


def test_a_ledger_edited_by_hand_is_skipped_and_named() -> None:
    history = _history()
    history[1] = _commit(4, 6, raw=b"entries: [[[\n")
    found = accounting.report(history, since=NOW, until=NOW + 24 * HOUR, most=100)
    assert found.unreadable == (f"{4:040x}",)
    assert found.total.failed == 1  # render is read from the commit before it


def test_a_period_with_no_finished_job_has_no_saving() -> None:
    found = accounting.report(_history(), since=NOW + 9 * HOUR, until=NOW + 24 * HOUR, most=9)
    assert (found.groups, found.total.estimated_saving, found.total.measured_saving) == (
        (),
        None,
        None,
    )
    assert accounting.table(found).splitlines()[-1] == "| all | 0 | 0 | 0 | 0 | 0 | - | 0 (0) | - |"


def test_by_namespace_each_teams_jobs_are_summed_up_apart() -> None:
    found = accounting.report(
        _history(), since=NOW, until=NOW + 24 * HOUR, most=100, by="namespace"
    )
    by_team = {tally.group: tally for tally in found.groups}
    assert set(by_team) == {"batch", "media"}
    assert (by_team["batch"].succeeded, by_team["batch"].failed) == (1, 1)
    assert (by_team["media"].succeeded, by_team["media"].emitted_grams) == (1, 25.0)
    assert (
        found.total
        == accounting.report(_history(), since=NOW, until=NOW + 24 * HOUR, most=100).total
    )
    assert accounting.table(found).startswith("| namespace | succeeded |")


def test_the_json_gives_the_savings_too() -> None:
    found = accounting.report(_history(), since=NOW, until=NOW + 24 * HOUR, most=100)
    total = json.loads(found.model_dump_json())["total"]
    assert total["estimated_saving"] == pytest.approx(1 - 55 / 125)
    assert total["measured_saving"] == pytest.approx(2 / 3)
