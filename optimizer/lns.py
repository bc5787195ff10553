"""Large neighbourhood search: free a few dozen jobs, solve their placement exactly
with a small MILP around everyone else, keep it if the plan got cheaper.

A whole-fleet MILP at a thousand jobs is too large to improve on a good plan in
seconds; a few dozen jobs with their best few dozen columns each is not. The
neighbourhoods take turns: jobs that run close in time on any spoke (they compete
for the same capacity), always with the late and the deferred; and jobs on one
spoke around a slot with the jobs elsewhere that would rather run there then
(they can trade places). The size follows the solver: it grows while HiGHS
proves the sub-MILPs optimal quickly and shrinks when it runs out of time, so
the search neither idles on tiny neighbourhoods nor stalls on huge ones. (At
200 jobs, seed 1, a fixed 80 jobs made two sub-MILPs in the 2.4 s left to LNS,
one of them 2.15 s; adaptive, six.)
"""

from __future__ import annotations

import time

import numpy as np

from optimizer import heuristics, mip
from optimizer.columns import Columns

# A sub-MILP proven optimal within this many seconds lets the next one grow.
QUICK_S = 0.3
MIN_SIZE = 8


def search(
    columns: Columns,
    free: np.ndarray,
    choice: np.ndarray,
    *,
    backend: mip.Backend,
    deadline: float,
    score: np.ndarray | None = None,
    size: int = 30,
    per_job: int = 24,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Improve `choice` until `deadline` (time.monotonic()); returns it and the
    number of neighbourhoods that improved it. `score` ranks each job's columns
    (priced costs, if the caller has prices; the plain cost otherwise)."""
    rng = np.random.default_rng(seed)
    score = columns.cost if score is None else score
    shortlist = columns.cheapest(score, per_job=per_job)
    value = heuristics.objective(columns, choice)
    jobs = len(columns.jobs)
    improved = turn = 0
    while time.monotonic() < deadline - 0.05:
        turn += 1
        if turn % 2:
            chosen = _neighbourhood(columns, choice, rng=rng, size=min(size, jobs))
        else:
            spoke = int(rng.integers(0, len(columns.spokes)))
            centre, width = int(rng.integers(0, columns.slots)), int(rng.integers(4, 25))
            chosen = _on_spoke(
                columns,
                choice,
                shortlist,
                spoke=spoke,
                window=(centre - width, centre + width),
                rng=rng,
                size=min(size, jobs),
            )
            if chosen.size == 0:
                continue
        others = choice.copy()
        others[chosen] = -1
        room = free - heuristics.usage(columns, others, free.shape)
        current = choice[chosen]
        in_chosen = np.zeros(jobs, dtype=bool)
        in_chosen[chosen] = True
        keep = np.union1d(shortlist[in_chosen[columns.cj[shortlist]]], current[current >= 0])
        sub, original = columns.subset(chosen, keep)
        start = np.array(
            [np.flatnonzero(original == k)[0] if k >= 0 else -1 for k in current], dtype=np.int64
        )
        model = mip.build(sub, room, np.arange(sub.size), start=start)
        # HiGHS overruns its limit by a few hundredths on these: keep a tenth in hand.
        began = time.monotonic()
        result = backend.solve(
            model, time_limit=min(3.0, 0.9 * (deadline - time.monotonic())), gap_rel=1e-4
        )
        size = _next_size(size, optimal=result.optimal, took=time.monotonic() - began, jobs=jobs)
        if result.choice is None:
            continue
        candidate = choice.copy()
        candidate[chosen] = np.where(result.choice >= 0, original[np.maximum(result.choice, 0)], -1)
        new_value = heuristics.objective(columns, candidate)
        if new_value < value - 1e-6:
            choice, value = candidate, new_value
            improved += 1
    return choice, improved


def _neighbourhood(
    columns: Columns, choice: np.ndarray, *, rng: np.random.Generator, size: int
) -> np.ndarray:
    """Jobs running around a random slot, plus every late or deferred job."""
    jobs = len(columns.jobs)
    placed = choice >= 0
    k = np.maximum(choice, 0)
    start = np.where(placed, columns.ct[k], -1)
    end = np.where(placed, columns.ct[k] + columns.duration, -1)
    late = placed & (end > np.array([job.deadline_slot for job in columns.jobs]))
    urgent = np.flatnonzero(late | ~placed)
    centre = int(rng.integers(0, columns.slots))
    width = int(rng.integers(4, 17))
    near = np.flatnonzero(placed & (start < centre + width) & (end > centre - width))
    near = np.setdiff1d(near, urgent)
    if urgent.size >= size:
        return np.sort(rng.choice(urgent, size=size, replace=False))
    room = size - urgent.size
    if near.size > room:
        near = rng.choice(near, size=room, replace=False)
    elif near.size < room:
        rest = np.setdiff1d(np.arange(jobs), np.concatenate([near, urgent]))
        near = np.concatenate(
            [near, rng.choice(rest, size=min(room - near.size, rest.size), replace=False)]
        )
    return np.sort(np.concatenate([urgent, near]).astype(np.int64))


def _next_size(size: int, *, optimal: bool, took: float, jobs: int) -> int:
    if optimal and took < QUICK_S:
        return min(jobs, int(size * 1.15) + 1)
    if not optimal:
        return max(MIN_SIZE, int(size * 0.8))
    return size


def _on_spoke(
    columns: Columns,
    choice: np.ndarray,
    shortlist: np.ndarray,
    *,
    spoke: int,
    window: tuple[int, int],
    rng: np.random.Generator,
    size: int,
) -> np.ndarray:
    """Up to `size` jobs: those running on `spoke` in the slots [window), and
    those with a shortlisted column there that run elsewhere now."""
    first, last = window
    placed = choice >= 0
    k = np.maximum(choice, 0)
    here = np.flatnonzero(
        placed & (columns.cs[k] == spoke) & (columns.ct[k] < last) & (columns.end[k] > first)
    )
    near = shortlist[
        (columns.cs[shortlist] == spoke)
        & (columns.ct[shortlist] < last)
        & (columns.end[shortlist] > first)
    ]
    wanting = np.setdiff1d(np.unique(columns.cj[near]), here)
    if here.size > size:
        here = rng.choice(here, size=size, replace=False)
    if wanting.size > size - here.size:
        wanting = rng.choice(wanting, size=size - here.size, replace=False)
    return np.sort(np.concatenate([here, wanting]).astype(np.int64))
