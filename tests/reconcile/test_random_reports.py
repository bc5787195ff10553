"""Whatever the spokes report of Caspian's Jobs, three reconciles of the
placed template fleet raise nothing, warn of nothing, overfill no spoke, and
settle: a second decision on the same reports changes at most what the first
could not yet see (a job dispatched one reconcile is running the next), and a
third changes nothing. The reports are drawn at random (seeded): phases, the
times jobs began, ended, found no node, made no pod or could not start, exit codes,
spokes down or with no room, and Jobs Caspian never placed; two jobs may run
again, but not for exit code 2. CASPIAN_REPORT_RUNS=3000 (eight minutes)
found nothing; the 60 here are a net."""

from __future__ import annotations

import functools
import os
import random
import warnings
from datetime import datetime, timedelta
from typing import Any

import pytest

from reconciler.appwrappers import TERMINAL_EXIT_CODES
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step

RUNS = int(os.environ.get("CASPIAN_REPORT_RUNS", "60"))
SPOKES = ("paris", "frankfurt", "california")
STRANGERS = ("batch/ghost-0a1b2c3d", "media/other-5e6f7a8b")  # Jobs no record names
TIMED = ("ended", "started", "unscheduled", "podless", "not_starting", "unready", "unapplied")


@functools.cache
def _placed() -> tuple[Any, dict[str, bytes]]:
    """The template fleet, its jobs run again twice where they fail (but not
    for exit code 2), placed."""
    files = template_files()
    policy = files["caspian.yaml"].decode()
    assert "  retryLimit: 0 " in policy
    files["caspian.yaml"] = policy.replace("  retryLimit: 0 ", "  retryLimit: 2 ").encode()
    for name in ("jobs/etl-daily.yaml", "jobs/report-urgent.yaml"):
        terminal = f"    {TERMINAL_EXIT_CODES}: '2'\n"
        files[name] = files[name].replace(
            b"  annotations:\n", f"  annotations:\n{terminal}".encode()
        )
    return step(files, now=NOW)


def _moment(rng: random.Random, now: datetime) -> datetime:
    return now + timedelta(minutes=rng.randint(-3000, 600))


def _report(rng: random.Random, keys: list[str], *, now: datetime) -> dict[str, Any]:
    """What one spoke says of some of `keys` (its Jobs), field by field."""
    named = rng.sample(keys, rng.randint(0, min(5, len(keys))))
    report: dict[str, Any] = {}
    for field in ("jobs", *TIMED, "said", "exit_codes", "placed_on"):
        if rng.random() >= 0.35:
            continue
        some = rng.sample(named, rng.randint(0, len(named)))
        if field == "jobs":
            report[field] = {k: rng.choice(("Running", "Succeeded", "Failed")) for k in some}
        elif field == "said":
            report[field] = {k: rng.choice(("0/3 nodes are available", "x" * 500)) for k in some}
        elif field == "exit_codes":
            report[field] = {
                k: tuple(rng.choice((1, 2, 137, 143, 255)) for _ in range(rng.randint(1, 3)))
                for k in some
            }
        elif field == "placed_on":
            report[field] = dict.fromkeys(some, ("node-a",))
        else:
            report[field] = {k: _moment(rng, now) for k in some}
    if rng.random() < 0.15:
        report |= {"up": False, "reason": "no answer"}
        if rng.random() < 0.5:
            report["down_since"] = _moment(rng, now)
    if rng.random() < 0.3:
        report["cpu"] = rng.choice((0.0, 0.5, 4.0, 1e6))
        report["gpu"] = rng.choice((0.0, 1.0, 8.0))
        report["memory_bytes"] = rng.choice((0.0, 2.0**30, 2.0**40))
    return report


def _reports(rng: random.Random, decision: Any, *, now: datetime) -> dict[str, dict[str, Any]]:
    """Reports of about half the spokes, each of the Jobs placed there."""
    reports = {}
    for spoke in SPOKES:
        if rng.random() < 0.5:
            continue
        placed = [e.job_key for e in entries(decision).values() if e.job_key and e.spoke == spoke]
        reports[spoke] = _report(rng, [*placed, *STRANGERS], now=now)
    return reports


@pytest.mark.parametrize("seed", range(RUNS))
def test_whatever_the_spokes_report_reconciles_plan_validly_and_settle(seed: int) -> None:
    rng = random.Random(seed)
    decision, files = _placed()
    now = NOW
    for _ in range(3):
        now += timedelta(minutes=rng.choice((15, 30, 60, 240)))
        reports = _reports(rng, decision, now=now)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            before = entries(decision)
            decision, after = step(files, now=now, states=reports)
            assert_valid_plan(decision.instance, decision.plan)
            _assert_emissions_only_grow(before, entries(decision))
            settled = step(after, now=now, states=reports)[1]
            assert step(settled, now=now, states=reports)[1] == settled
        files = after


def _assert_emissions_only_grow(before: dict[str, Any], after: dict[str, Any]) -> None:
    """What a job's runs emitted is added to, never taken back: a record
    keeps its grams through every later decision."""
    for job_id, entry in after.items():
        was = before.get(job_id)
        if entry.emitted_grams is not None:
            assert 0 <= entry.emitted_grams < 1e9, (job_id, entry.emitted_grams)
        if was is not None and was.emitted_grams is not None:
            assert entry.emitted_grams is not None and entry.emitted_grams >= was.emitted_grams
