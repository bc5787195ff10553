"""Large neighbourhood search: free a few dozen jobs, solve their placement exactly
with a small MILP around everyone else, keep it if the plan got cheaper.

A whole-fleet MILP at a thousand jobs is too large to improve on a good plan in
seconds; a few dozen jobs with their best few dozen columns each is not. The
neighbourhoods follow the prices: a job placed far from where they say it
belongs (a high reduced cost at its column), with the jobs in the way at one of
its best places, again and again until the neighbourhood is full. That frees
the room a big job needs on a clean spoke and lets the jobs holding it go
elsewhere, a trade single moves never make. At 200 jobs, with the converged
LP's prices, from the plans the optimizer returned for seeds 1-3, 10 s of these
reached 2.6%, 9.8% and 2.9% above the LP bound; the neighbourhoods they
replaced (jobs near a random slot, or on a random spoke) reached 3.4%, 14.9%
and 2.9%. When every job is at its best place, the neighbourhood is the jobs
around a random slot, always with the late and the deferred.

The size follows the solver: it grows while HiGHS proves the sub-MILPs optimal
quickly and shrinks when it runs out of time, so the search neither idles on
tiny neighbourhoods nor stalls on huge ones.
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
    # HiGHS given a few hundredths still takes its set-up time: at 50 jobs a
    # neighbourhood started 0.05 s before the deadline ended 0.02 s after it.
    if time.monotonic() >= deadline - 0.1:
        return choice, 0  # the shortlist alone sorts every column: 2 s at 5000 x 20
    rng = np.random.default_rng(seed)
    score = columns.cost if score is None else score
    shortlist = columns.cheapest(score, per_job=per_job)
    value = heuristics.objective(columns, choice)
    jobs = len(columns.jobs)
    improved = 0
    while time.monotonic() < deadline - 0.1:
        chosen = _off_their_best(columns, choice, reduced=score, rng=rng, size=min(size, jobs))
        if chosen.size == 0:
            chosen = _neighbourhood(columns, choice, rng=rng, size=min(size, jobs))
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
    urgent = np.flatnonzero(heuristics.late_or_unplaced(columns, choice))
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


def _off_their_best(
    columns: Columns,
    choice: np.ndarray,
    *,
    reduced: np.ndarray,
    rng: np.random.Generator,
    size: int,
    places: int = 3,
) -> np.ndarray:
    """Up to `size` jobs: one drawn with odds in proportion to how far its column
    is from its best by `reduced` (deferred jobs as far as the farthest), then
    the jobs running where one of its `places` best columns would run, and again.
    Empty when every job is at its best."""
    placed = choice >= 0
    k = np.maximum(choice, 0)
    # Relative to the job's best column, so plain costs work as well as reduced ones.
    off = np.maximum(0.0, reduced[k] - np.minimum.reduceat(reduced, columns.first[:-1]))
    off = np.where(placed, off, off.max(initial=0.0) + 1.0)
    if off.sum() <= 0:
        return np.zeros(0, dtype=np.int64)
    odds = off / off.sum()
    chosen: set[int] = set()
    for _ in range(4 * size):  # a bound, in case few jobs are off their best
        if len(chosen) >= size:
            break
        job = int(rng.choice(odds.size, p=odds))
        chosen.add(job)
        part = columns.of_job(job)
        place = part.start + int(rng.choice(np.argsort(reduced[part])[:places]))
        in_way = np.flatnonzero(
            placed
            & (columns.cs[k] == columns.cs[place])
            & (columns.ct[k] < columns.end[place])
            & (columns.end[k] > columns.ct[place])
        )
        chosen.update(rng.permutation(in_way)[: size - len(chosen)].tolist())
    return np.array(sorted(chosen), dtype=np.int64)
