"""Make-room moves: the plan changes that moving one job at a time never finds.

A big job whose clean slot on a spoke is taken by several smaller ones cannot
move there by itself, and none of the smaller ones gains by moving alone. The
move here puts the big job at one of its cheaper columns anyway: of the jobs it
overlaps on that spoke it lifts out, until it fits, those that emit least per
unit of room they hold, and places them again, largest first, each at its
cheapest column that still fits. It is kept only when the whole plan got
cheaper; otherwise everything goes back as it was.
"""

from __future__ import annotations

import time

import numpy as np

from optimizer.capacity import Residual
from optimizer.columns import Columns
from optimizer.heuristics import (
    DEFERRED,
    cost_of,
    costs,
    feasible,
    occupy,
    release,
    usage,
    width,
)


def make_room(
    columns: Columns,
    free: np.ndarray,
    choice: np.ndarray,
    *,
    deadline: float,
    tries_per_job: int = 10,
) -> np.ndarray:
    """Improve `choice` by make-room moves until none helps or `deadline`
    (time.monotonic()) passes. Jobs that stand to gain most are tried first."""
    choice = choice.copy()
    residual = Residual(free - usage(columns, choice, free.shape))
    size = width(columns, free)
    cheapest = columns.least_cost
    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        current = costs(columns, choice)
        for job in np.argsort(-(current - cheapest), kind="stable").tolist():
            if time.monotonic() >= deadline or current[job] - cheapest[job] <= 1e-9:
                break
            for k in _candidates(columns, job, below=current[job], count=tries_per_job):
                gain = _try(
                    columns, residual, choice, job=job, column=int(k), size=size, cheapest=cheapest
                )
                if gain > 1e-9:
                    changed = True
                    current = costs(columns, choice)
                    break
    return choice


def _candidates(columns: Columns, job: int, *, below: float, count: int) -> list[int]:
    """Up to `count` of the job's columns cheaper than `below`, cheapest first,
    at least half a run apart on each spoke: neighbouring starts overlap the same
    jobs, so when one fails to make room the next usually fails too."""
    part = columns.of_job(job)
    better = part.start + np.flatnonzero(columns.cost[part] < below - 1e-9)
    apart = max(1, int(columns.duration[job]) // 2)
    chosen: list[int] = []
    for k in better[np.argsort(columns.cost[better], kind="stable")].tolist():
        if all(
            columns.cs[c] != columns.cs[k] or abs(int(columns.ct[c]) - int(columns.ct[k])) >= apart
            for c in chosen
        ):
            chosen.append(k)
            if len(chosen) == count:
                break
    return chosen


def _try(
    columns: Columns,
    residual: Residual,
    choice: np.ndarray,
    *,
    job: int,
    column: int,
    size: np.ndarray,
    cheapest: np.ndarray,
) -> float:
    """Put `job` at `column`, re-place what it overlaps; keep it and return the
    gain if the plan got cheaper, else undo everything and return 0."""
    spoke, first, last = int(columns.cs[column]), int(columns.ct[column]), int(columns.end[column])
    demand = columns.demand[job]
    placed = np.flatnonzero(choice >= 0)
    at = choice[placed]
    overlap = (columns.cs[at] == spoke) & (columns.ct[at] < last) & (columns.end[at] > first)
    # Lift the jobs that emit least per unit of room they hold first, and only
    # as many as it takes: those lose least by going elsewhere.
    others = [int(b) for b in placed[overlap] if b != job]
    density = {b: columns.cost[choice[b]] / (size[b] * columns.duration[b] + 1e-12) for b in others}
    before, saved = {job: int(choice[job])}, residual.save()
    release(columns, residual, job, before[job])
    choice[job] = DEFERRED
    # The room `column` runs in, as the jobs lifted give it back: asked after
    # each, as `Residual.fits_at` would, without its cost for each call.
    window, need = residual.free[spoke, :, first:last], demand[:, None] - 1e-9
    for b in sorted(others, key=density.__getitem__):
        if (window >= need).all():
            break
        before[b] = int(choice[b])
        release(columns, residual, b, before[b])
        choice[b] = DEFERRED
    lifted = [b for b in before if b != job]
    old = float(sum(cost_of(columns, b, k) for b, k in before.items()))
    if not (window >= need).all():
        _restore(residual, choice, before, saved=saved)
        return 0.0
    occupy(columns, residual, job, column)
    choice[job] = column
    # Each lifted job costs at least its cheapest column wherever it lands: once
    # what is placed plus those minima reaches the old cost, the move has failed
    # and the rest need not be placed. The decisions are the same; at 1000 jobs
    # make-room tries five times as many moves a second.
    new = float(columns.cost[column])
    floor = float(sum(cheapest[b] for b in lifted))  # the least the unplaced can cost
    for b in sorted(lifted, key=lambda b: -size[b]):
        if new + floor >= old - 1e-9:
            break
        floor -= cheapest[b]
        part = columns.of_job(b)
        ok = feasible(columns, residual, b)
        if ok.any():
            k = part.start + int(np.argmin(np.where(ok, columns.cost[part], np.inf)))
            occupy(columns, residual, b, k)
            choice[b] = k
        new += cost_of(columns, b, int(choice[b]))
    else:
        if new < old - 1e-9:
            return old - new
    _restore(residual, choice, before, saved=saved)
    return 0.0


def _restore(
    residual: Residual, choice: np.ndarray, before: dict[int, int], *, saved: np.ndarray
) -> None:
    """Undo a move: the jobs `before` back where they were, the room `saved`."""
    residual.restore(saved)
    for b, k in before.items():
        choice[b] = k
