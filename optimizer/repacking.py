"""Ruin and recreate: take every job out of a short window on one spoke, with a
few jobs from elsewhere that would be cheaper there, and place them all again,
the bulkiest first, each at its cheapest column that fits; keep the result
where it costs no more than before.

At a thousand jobs what separates a plan from the LP bound is mostly packing:
holes of a few GPUs or cores on the clean spokes that no single move fills,
since each job that could fill one is in the way of another. Placing a handful
of jobs again together, big before small, trades them. LNS does the same with
a sub-MILP, but at 1000 x 10 HiGHS takes about a second for each, and in the
4 s left to it LNS gained 9-53 g; these steps took 1.6-3.3 ms each then
(under 1 ms now) and gained 415-751 g in the same time
(docs/optimizer-history.md).
"""

from __future__ import annotations

import time

import numpy as np

from optimizer import heuristics
from optimizer.capacity import Residual
from optimizer.columns import Columns

WIDTHS = (2, 4, 8, 16)  # slots of the window emptied
MOST_FROM_ELSEWHERE = 7


def repack(
    columns: Columns, free: np.ndarray, choice: np.ndarray, *, deadline: float, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Improve `choice` until `deadline` (time.monotonic()); returns it and the
    number of steps that made it cheaper. Never worse, always within `free`."""
    rng = np.random.default_rng(seed)
    choice = choice.copy()
    residual = Residual(free - heuristics.usage(columns, choice, free.shape))
    cost = heuristics.costs(columns, choice)
    cheapest_on = np.full((len(columns.jobs), len(columns.spokes)), np.inf)
    np.minimum.at(cheapest_on, (columns.cj, columns.cs), columns.cost)
    # A job's share of the largest spoke, summed over resources, times its length.
    largest = np.maximum(free.max(axis=(0, 2)), 1e-9)
    bulk = (columns.demand / largest).sum(axis=1) * columns.duration
    improved = 0
    while time.monotonic() < deadline:
        spoke = int(rng.integers(len(columns.spokes)))
        taken = _taken(columns, choice, cost, cheapest_on, spoke=spoke, rng=rng)
        if taken.size == 0:
            continue
        before, saved = choice[taken].copy(), residual.save()
        for job, k in zip(taken.tolist(), before.tolist(), strict=True):
            heuristics.release(columns, residual, job, k)
        # Bulkiest first, a little shuffled so that a step tried again differs.
        order = taken[np.argsort(-bulk[taken] * rng.uniform(0.7, 1.3, taken.size))]
        was = float(cost[taken].sum())
        after = _recreate(columns, residual, order, was=was)
        now = sum(heuristics.cost_of(columns, job, k) for job, k in after.items())
        if len(after) == order.size and now <= was + 1e-9:
            # Moves that cost nothing are kept too: they change what the next
            # step finds.
            improved += now < was - 1e-9
            for job, k in after.items():
                choice[job], cost[job] = k, heuristics.cost_of(columns, job, k)
            continue
        residual.restore(saved)
    return choice, improved


def _taken(
    columns: Columns,
    choice: np.ndarray,
    cost: np.ndarray,
    cheapest_on: np.ndarray,
    *,
    spoke: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The jobs on `spoke` in a random window, and up to a few from elsewhere,
    drawn by how much cheaper they could run there."""
    start = int(rng.integers(columns.slots))
    width = int(rng.choice(WIDTHS))
    placed = choice >= 0
    k = np.maximum(choice, 0)
    there = placed & (columns.cs[k] == spoke) & (columns.ct[k] < start + width)
    there &= columns.end[k] > start
    gain = np.where(there, 0.0, cost - cheapest_on[:, spoke])
    wanting = np.flatnonzero(gain > 1e-9)
    elsewhere = np.zeros(0, dtype=np.int64)
    if wanting.size:
        count = min(wanting.size, int(rng.integers(1, MOST_FROM_ELSEWHERE + 1)))
        odds = gain[wanting] / gain[wanting].sum()
        elsewhere = rng.choice(wanting, size=count, replace=False, p=odds)
    return np.concatenate([np.flatnonzero(there), elsewhere]).astype(np.int64)


def _recreate(
    columns: Columns, residual: Residual, order: np.ndarray, *, was: float
) -> dict[int, int]:
    """The jobs `order` placed again, in that order: where each went. Placing
    stops where what is placed, with the least the jobs left can cost, already
    costs more than `was`: the step cannot pay, and is undone. No random draw
    comes after the order, so the steps that follow are the same; at 1000 x 10
    a step takes about a quarter less time (docs/optimizer-history.md)."""
    least = columns.least_cost
    left = float(least[order].sum())
    placed, after = 0.0, {}
    for job in order.tolist():
        k = after[job] = _place(columns, residual, job)
        placed += heuristics.cost_of(columns, job, k)
        left -= float(least[job])
        # A margin far above the sums' rounding, so that no step that pays stops.
        if placed + left > was + 1e-6:
            break
    return after


def _place(columns: Columns, residual: Residual, job: int) -> int:
    """`job` at its cheapest column that fits what is left (deferred if none)."""
    fits = heuristics.feasible(columns, residual, job)
    if not fits.any():
        return heuristics.DEFERRED
    part = columns.of_job(job)
    k = part.start + int(np.argmin(np.where(fits, columns.cost[part], np.inf)))
    heuristics.occupy(columns, residual, job, k)
    return k
