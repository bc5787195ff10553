"""`caspian bench soak`: the watch loop through many reconciles, each after a
user's push, and what grows meanwhile: the object files of the mirror and of
the fleet repo (on a local path), the open files, the memory, the time a reconcile takes."""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler import packs, templates
from reconciler.benchloop import USER, appwrapper
from reconciler.gitrepo import FleetRepo, Identity, commit_to_bare, create_bare_repo
from reconciler.observing import DeclaredCapacity
from reconciler.watching import Watcher, WatchSettings

BOT = Identity(name="Bench Bot", email="bench-bot@example.invalid")
PUSHED = 5  # AppWrappers a user's commit changes before each reconcile


def soak(*, reconciles: int, every: int, now: datetime, fold: bool = True) -> dict[str, Any]:
    """Run the loop `reconciles` times, the clock a slot on each time; every
    `every` reconciles, what there is then and the median reconcile of those
    `every`. With `fold` off, no objects are folded, to see what folding saves."""
    if not fold:
        saved = packs.MOST_PACKS, packs.MOST_LOOSE
        packs.MOST_PACKS = packs.MOST_LOOSE = 2**62
    try:
        with tempfile.TemporaryDirectory() as scratch:
            return _soak(Path(scratch), reconciles=reconciles, every=every, now=now)
    finally:
        if not fold:
            packs.MOST_PACKS, packs.MOST_LOOSE = saved


def _soak(root: Path, *, reconciles: int, every: int, now: datetime) -> dict[str, Any]:
    remote, mirror = root / "fleet.git", root / "mirror.git"
    create_bare_repo(remote, files=templates.template_files(), message="Add fleet", author=USER)
    clock = [now]
    watcher = Watcher(
        FleetRepo(str(remote), cache_dir=mirror),
        author=BOT,
        observer=DeclaredCapacity(),
        settings=WatchSettings(),
        clock=lambda: clock[0],
    )
    taken: list[float] = []
    results: dict[str, int] = {}
    points = []
    for index in range(reconciles):
        changes = {
            f"jobs/soak-{k}.yaml": appwrapper(f"soak-{k}", cpu=1 + (index + k) % 4)
            for k in range(PUSHED)
        }
        # The user's commit a minute before the reconcile, on the loop's clock:
        # on the real clock beside the loop's, each commit's time lay days from
        # its parent's, and libgit2's fetch, whose walk goes by commit times,
        # took 17 ms instead of 4 ms after 1,500 reconciles.
        commit_to_bare(
            remote,
            files=changes,
            message=f"push {index}",
            author=USER,
            when=clock[0] - timedelta(minutes=1),
        )
        started = time.perf_counter()
        result = watcher.reconcile().result
        taken.append(time.perf_counter() - started)
        results[result] = results.get(result, 0) + 1
        clock[0] += timedelta(minutes=15)
        if (index + 1) % every == 0 or index + 1 == reconciles:
            points.append(
                {
                    "reconciles": index + 1,
                    "median_reconcile_ms": round(1000 * statistics.median(taken[-every:]), 1),
                    "mirror_packs": _count(mirror / "objects" / "pack", "pack-*.pack"),
                    "mirror_loose": _count(mirror / "objects", "[0-9a-f][0-9a-f]/*"),
                    "remote_packs": _count(remote / "objects" / "pack", "pack-*.pack"),
                    "open_files": _open_files(),
                    "rss_mb": _rss_mb(),
                }
            )
    return {"reconciles": reconciles, "results": results, "points": points}


def _count(directory: Path, pattern: str) -> int:
    return sum(1 for _ in directory.glob(pattern))


def _open_files() -> int | None:
    """This process's open file descriptors, where Linux lists them."""
    try:
        return sum(1 for _ in Path("/proc/self/fd").iterdir())
    except OSError:
        return None


def _rss_mb() -> float | None:
    """This process's resident memory now (not its peak), where Linux says it."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None
