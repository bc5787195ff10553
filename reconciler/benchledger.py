"""`caspian bench ledger`: what reading and writing the ledger costs as it grows,
with libyaml and with PyYAML's own code. Every reconcile does both once."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from reconciler import ledger, rendering, yamlio
from reconciler.ledger import Entry, Ledger, Phase

START = datetime(2026, 1, 5, tzinfo=UTC)
# A fleet's mix over time: most records are of jobs that ran.
PHASES = (Phase.SUCCEEDED,) * 6 + (Phase.PLANNED, Phase.DISPATCHED, Phase.CANCELLED, Phase.FAILED)


def records(count: int) -> Ledger:
    """`count` entries shaped like the reconciler's, all fields set."""
    entries = []
    for i in range(count):
        start = START + timedelta(minutes=15 * (i % 2000))
        phase = PHASES[i % len(PHASES)]
        entries.append(
            Entry(
                id=f"batch/job-{i:06d}",
                source=f"jobs/team-{i % 7}/job-{i:06d}.yaml",
                phase=phase,
                spoke=("paris", "frankfurt", "california")[i % 3],
                job_name=f"job-{i:06d}-{i * 2654435761 % 16**8:08x}",
                template_hash=f"{i * 40503 % 16**12:012x}",
                planned_start=start,
                planned_end=start + timedelta(hours=1 + i % 5),
                deadline=start + timedelta(hours=20),
                first_seen=start - timedelta(hours=2),
                removed_at=start + timedelta(days=1) if phase == Phase.CANCELLED else None,
                cpu=float(1 + i % 16),
                memory_bytes=float((1 + i % 32) * 2**30),
                gpu=float(i % 3 == 0),
                estimated_grams=round(10 + i % 997 * 1.7, 1),
                qos_grams=round(20 + i % 991 * 2.3, 1),
                late=i % 50 == 0,
                reason="will finish after its deadline: no earlier capacity" if i % 50 == 0 else "",
            )
        )
    return Ledger(entries=tuple(entries))


def measure(*, count: int, repeats: int) -> dict[str, Any]:
    document = records(count)
    engines: dict[str, tuple[type | None, type | None]] = {
        "pyyaml": (
            yamlio.PyYamlDumper,
            yaml.SafeLoader,
        )
    }
    if yamlio.FAST:
        engines["libyaml"] = (None, None)  # what the reconciler uses
    result: dict[str, Any] = {"records": count}
    for name, (dumper, loader) in engines.items():
        write, read = [], []
        for _ in range(repeats):
            began = time.perf_counter()
            raw = rendering.render_ledger(document, dumper=dumper)
            wrote = time.perf_counter()
            if ledger.parse(raw, loader=loader) != document:
                raise AssertionError("the ledger did not read back as written")
            write.append(wrote - began)
            read.append(time.perf_counter() - wrote)
        result[name] = {
            "write_s": round(statistics.median(write), 3),
            "read_s": round(statistics.median(read), 3),
            "total_s": round(statistics.median(w + r for w, r in zip(write, read, strict=True)), 3),
        }
        result["bytes"] = len(raw)
    if "libyaml" in result:
        result["speedup"] = round(result["pyyaml"]["total_s"] / result["libyaml"]["total_s"], 2)
    return result
