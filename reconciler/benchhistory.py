"""`caspian bench history`: what `caspian history JOB` and `caspian report`
cost on a long-lived fleet repo, whose ledger holds many records and has
changed in many commits."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler import benchledger, reconciling
from reconciler.gitrepo import FleetRepo, Identity, commit_to_bare, create_bare_repo
from reconciler.ledger import LEDGER_PATH, Ledger
from reconciler.rendering import render_ledger

BOT = Identity()
# A period that holds every commit of the repo built here.
EVER, NEVER = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def repo(path: Path, *, records: int, commits: int) -> str:
    """A bare repo at `path` whose ledger of `records` entries changed in
    `commits` commits, one record each, round the ledger; one job in ten of
    those changes moves the first job. Returns the job's id."""
    ledger = benchledger.records(records)
    first = ledger.entries[0]
    create_bare_repo(
        path,
        files={LEDGER_PATH: render_ledger(ledger), first.source: b"kind: AppWrapper\n"},
        message="Start",
        author=BOT,
    )
    entries = list(ledger.entries)
    for i in range(commits):
        index = 0 if i % 10 == 0 else i % records
        entry = entries[index]
        moved = entry.planned_start + timedelta(minutes=15) if entry.planned_start else None
        entries[index] = entry.model_copy(
            update={"planned_start": moved, "estimated_grams": (entry.estimated_grams or 0) + 1}
        )
        commit_to_bare(
            path,
            files={LEDGER_PATH: render_ledger(Ledger(entries=tuple(entries)))},
            message=f"place: 1 job\n\n- moved {entry.id}: {i}\n",
            author=BOT,
        )
    return first.id


def measure(*, records: int, commits: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        remote = Path(tmp) / "fleet.git"
        started = time.perf_counter()
        job = repo(remote, records=records, commits=commits)
        built_s = time.perf_counter() - started
        mirror = FleetRepo(str(remote), cache_dir=Path(tmp) / "mirror")
        runs, found = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            found = reconciling.job_history(mirror, job, most=commits + 1)
            runs.append(time.perf_counter() - started)
        # Every commit's ledger, for the jobs finished at any time.
        reports, tally = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            tally = reconciling.carbon_report(mirror, since=EVER, until=NEVER, most=commits + 1)
            reports.append(time.perf_counter() - started)
    assert found is not None and tally is not None
    return {
        "records": records,
        "commits": commits,
        "events": len(found.events),
        "complete": found.complete,
        "build_s": round(built_s, 2),
        "history_s": [round(run, 3) for run in runs],
        "history_p50_s": round(statistics.median(runs), 3),
        "per_commit_ms": round(statistics.median(runs) / (commits + 1) * 1000, 2),
        "report_finished_jobs": tally.total.succeeded + tally.total.failed,
        "report_s": [round(run, 3) for run in reports],
        "report_p50_s": round(statistics.median(reports), 3),
        "report_per_commit_ms": round(statistics.median(reports) / (commits + 1) * 1000, 2),
    }
