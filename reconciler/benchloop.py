"""`caspian bench loop`: how long from a push of a new AppWrapper to its placement
commit on the remote, with the watch loop running; and what a no-op costs."""

from __future__ import annotations

import math
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler import ledger, templates
from reconciler.gitrepo import FleetRepo, Identity, commit_to_bare, create_bare_repo
from reconciler.localwatch import watch_refs
from reconciler.observing import DeclaredCapacity
from reconciler.watching import Watcher, WatchSettings

USER = Identity(name="Bench User", email="bench@example.invalid")


def nearest_rank(values: list[float], share: float) -> float:
    """The smallest value at least `share` of `values` are no greater than:
    of two pushes, p90 is the slower one, never the faster."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def appwrapper(name: str, *, cpu: int) -> bytes:
    return yaml.safe_dump(
        {
            "apiVersion": "workload.codeflare.dev/v1beta2",
            "kind": "AppWrapper",
            "metadata": {
                "name": name,
                "annotations": {
                    "caspian.dev/duration": "45m",
                    "caspian.dev/complete-within": "20h",
                },
            },
            "spec": {
                "components": [
                    {
                        "template": {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "spec": {
                                "template": {
                                    "spec": {
                                        "restartPolicy": "Never",
                                        "containers": [
                                            {
                                                "name": "main",
                                                "image": "python:3.12-slim",
                                                "resources": {
                                                    "requests": {
                                                        "cpu": str(cpu),
                                                        "memory": f"{cpu}Gi",
                                                    }
                                                },
                                            }
                                        ],
                                    }
                                }
                            },
                        }
                    }
                ]
            },
        },
        sort_keys=False,
    ).encode()


def fleet(jobs: int) -> dict[str, bytes]:
    files = {k: v for k, v in templates.template_files().items() if not k.startswith("jobs/")}
    for i in range(jobs):
        files[f"jobs/bench-{i:04d}.yaml"] = appwrapper(f"bench-{i:04d}", cpu=1 + i % 4)
    return files


def placed(name: str, mirror: FleetRepo) -> bool:
    """Whether the remote's ledger has placed the AppWrapper `name` (any namespace)."""
    snapshot = mirror.fetch()
    entries = ledger.parse(snapshot.files.get(ledger.LEDGER_PATH)).entries
    return any(
        e.id.rsplit("/", 1)[-1] == name
        and e.phase not in (ledger.Phase.PENDING, ledger.Phase.INVALID)
        for e in entries
    )


def watched_fleet(
    tmp: str, *, jobs: int, settings: WatchSettings, now: datetime
) -> tuple[Path, Watcher]:
    """A bare fleet repo of `jobs` AppWrappers in `tmp`, and a watcher on it whose
    clock stands still at `now`."""
    remote = Path(tmp) / "fleet.git"
    create_bare_repo(remote, files=fleet(jobs), message="bench fleet", author=USER)
    watcher = Watcher(
        FleetRepo(str(remote), cache_dir=Path(tmp) / "m.git"),
        author=Identity(),
        observer=DeclaredCapacity(),
        settings=settings,
        clock=lambda: now,
    )
    return remote, watcher


def latency(*, jobs: int, rounds: int, now: datetime) -> dict[str, Any]:
    """Push to placement, `rounds` times, with the watcher's clock standing still
    at `now`, so that every job of the fleet is still to be placed. How long a
    decision takes depends on the hour (the carbon curves, and so the optimizer's
    work): a fixed `now` makes runs on different days compare."""
    with tempfile.TemporaryDirectory(prefix="caspian-bench-") as tmp:
        remote, watcher = watched_fleet(
            tmp, jobs=jobs, settings=WatchSettings(interval_s=60, debounce_s=0.2), now=now
        )
        stop = threading.Event()
        watch_refs(remote, on_change=watcher.trigger, stop=stop)
        runner = threading.Thread(target=watcher.run, daemon=True)
        runner.start()
        probe = FleetRepo(str(remote), cache_dir=Path(tmp) / "probe.git")
        while watcher.status.result == "starting":
            time.sleep(0.05)
        results = []
        for r in range(rounds):
            name = f"pushed-{r:03d}"
            started = time.monotonic()
            commit_to_bare(
                remote,
                files={f"jobs/{name}.yaml": appwrapper(name, cpu=2)},
                message=f"add {name}",
                author=USER,
            )
            while not placed(name, probe):
                if time.monotonic() - started > 120:
                    break
                time.sleep(0.05)
            results.append(time.monotonic() - started)
        watcher.stop()
        stop.set()
        runner.join(timeout=120)
    return {
        "jobs": jobs,
        "rounds": rounds,
        "now": now.isoformat(),
        "push_to_placement_s": [round(x, 3) for x in results],
        "p50_s": round(statistics.median(results), 3),
        "p90_s": round(nearest_rank(results, 0.9), 3),
        "max_s": round(max(results), 3),
    }


def noop(*, jobs: int, repeats: int, now: datetime) -> dict[str, Any]:
    """A first reconcile of `jobs` AppWrappers at `now`, then `repeats` more at the
    same tip and time, which must commit nothing; then a push that changes
    nothing a plan depends on (the fleet's README), whose reconcile decides
    again: it meets the problem the first plan answered, and keeps that plan."""
    with tempfile.TemporaryDirectory(prefix="caspian-bench-") as tmp:
        remote, watcher = watched_fleet(tmp, jobs=jobs, settings=WatchSettings(), now=now)
        started = time.monotonic()
        first = watcher.reconcile()
        first_s = time.monotonic() - started
        before = FleetRepo(str(remote), cache_dir=Path(tmp) / "p.git").fetch_tip()
        costs = []
        for _ in range(repeats):
            started = time.monotonic()
            status = watcher.reconcile()
            costs.append(time.monotonic() - started)
            assert status.commit is None
        after = FleetRepo(str(remote), cache_dir=Path(tmp) / "p.git").fetch_tip()
        readme = commit_to_bare(
            remote, files={"README.md": b"# Our fleet\n"}, message="README", author=USER
        )
        started = time.monotonic()
        unrelated = watcher.reconcile()
        unrelated_s = time.monotonic() - started
        tip = FleetRepo(str(remote), cache_dir=Path(tmp) / "p.git").fetch_tip()
    return {
        "jobs": jobs,
        "first_reconcile_s": round(first_s, 3),
        "first_result": first.result,
        "noop_s": [round(x, 4) for x in costs],
        "noop_p50_s": round(statistics.median(costs), 4),
        "noop_committed": before != after,
        "unrelated_push_s": round(unrelated_s, 3),
        "unrelated_push_result": unrelated.result,
        "unrelated_push_committed": tip != readme,
    }
