"""Price-and-dive: a plan grown from the LP relaxation a batch of jobs at a time,
with the LP solved again around the jobs already placed.

Rounding the LP's solution once (`heuristics.rounded`) keeps its pattern where
the LP runs jobs whole, but where it time-shares capacity among fractions of
several jobs, only some of them fit whole there and the rest land wherever is
left. The dive places a batch of jobs where the LP runs most of them, then
solves the LP again over the columns that still fit whole beside them (with a
round or two of column generation, since the cheapest place of a job moves when
its neighbours are fixed), and so on until every job is placed. Each LP re-plans
what is left around what is placed, which one rounding cannot.

Two orders, since neither is best on every instance: whole first places every
job the LP runs whole, and then the fractional jobs the LP runs most of at one
column; big first places the fractional jobs that hold the most capacity before
anything else, so the small ones fill in around them.
"""

from __future__ import annotations

import time

import numpy as np

from optimizer import heuristics, lagrange, relaxation
from optimizer.capacity import Residual
from optimizer.columns import Columns
from optimizer.highs import relaxation as solve_lp


def dive(
    columns: Columns,
    free: np.ndarray,
    *,
    dual: lagrange.Dual,
    whole_first: bool,
    deadline: float,
    batch: float = 0.2,
    rounds: int = 2,
) -> np.ndarray:
    """A plan (one column per job, -1 deferred) grown from the LP, starting from
    the columns `dual` holds. Each step places a `batch` share of the jobs left
    (every job the LP runs whole as well, with `whole_first`) and gives the LP
    `rounds` (at least 1) of column generation. Past `deadline` (time.monotonic()), the jobs
    left are placed greedily."""
    jobs = len(columns.jobs)
    choice = np.full(jobs, heuristics.DEFERRED, dtype=np.int64)
    done = np.zeros(jobs, dtype=bool)  # placed, or with no room left anywhere
    banned = np.zeros(columns.size, dtype=bool)  # tried and found not to fit
    in_master = np.zeros(columns.size, dtype=bool)
    in_master[dual.support] = True
    in_master[columns.cheapest(dual.reduced, per_job=3)] = True
    size = heuristics.width(columns, free) * columns.duration
    while not done.all() and time.monotonic() < deadline:
        room = free - heuristics.usage(columns, choice, free.shape)
        fits = _fitting(columns, Residual(room), np.flatnonzero(~done)) & ~banned
        done |= np.bincount(columns.cj[fits], minlength=jobs) == 0
        left = np.flatnonzero(~done)
        if left.size == 0:
            break
        sub, original = columns.subset(left, np.flatnonzero(fits))
        known = in_master.sum()
        master, values = _lp(
            sub, room, in_master=in_master, original=original, rounds=rounds, deadline=deadline
        )
        if values is None:
            break
        top, share = _largest_share(sub, master.keep, values)
        whole = share > 1 - heuristics.SHARE_WHOLE
        # A job with no column in the master yet (the LP defers it) waits a step.
        fractional = np.flatnonzero(~whole & (top >= 0))
        count = max(1, int(batch * left.size))
        if whole_first:
            by_share = fractional[np.argsort(-share[fractional], kind="stable")[:count]]
            chosen = np.concatenate([np.flatnonzero(whole), by_share])
        elif fractional.size:
            chosen = fractional[np.argsort(-size[left[fractional]], kind="stable")[:count]]
        else:
            chosen = np.flatnonzero(whole)
        if chosen.size == 0 and in_master.sum() == known:
            break  # nothing to place and no new column: the LP will not change
        residual = Residual(room)
        for local in chosen[np.argsort(-share[chosen], kind="stable")].tolist():
            job, k = int(left[local]), int(original[top[local]])
            if residual.fits_at(
                int(columns.cs[k]),
                int(columns.ct[k]),
                int(columns.duration[job]),
                columns.demand[job],
            ):
                heuristics.occupy(columns, residual, job, k)
                choice[job], done[job] = k, True
            else:
                # Jobs placed earlier in this batch took its room.
                banned[k] = True
    return heuristics.complete(columns, free, choice)


def _fitting(columns: Columns, residual: Residual, jobs: np.ndarray) -> np.ndarray:
    """Bool per column: it belongs to one of `jobs` and fits whole in `residual`."""
    fits = np.zeros(columns.size, dtype=bool)
    for job in jobs.tolist():
        fits[columns.of_job(job)] = heuristics.feasible(columns, residual, job)
    return fits


def _lp(
    sub: Columns,
    room: np.ndarray,
    *,
    in_master: np.ndarray,
    original: np.ndarray,
    rounds: int,
    deadline: float,
) -> tuple[relaxation.Relaxation, np.ndarray | None]:
    """The LP over `sub` (the jobs left, their fitting columns) after up to
    `rounds` of column generation from the columns `in_master` (indexed like
    the full model; the columns that join are marked there too), and its
    solution's values; None if HiGHS failed."""
    pricing = lagrange.Pricing(sub, room)
    local_in = in_master[original]
    for _ in range(rounds):
        master = relaxation.build(sub, room, np.flatnonzero(local_in))
        lp = solve_lp(master, time_limit=max(0.01, deadline - time.monotonic()))
        if lp.status not in ("optimal", "unknown"):
            return master, None
        _, priced, _ = pricing.evaluate(master.prices(lp.col_dual, room.shape))
        reduced = priced - lp.row_dual[: len(sub.jobs)][sub.cj]
        entering = np.flatnonzero(~local_in & (reduced < -1e-6 * max(1.0, abs(lp.objective))))
        if entering.size == 0:
            break
        local_in[lagrange.most_negative(sub, entering, reduced, per_job=4)] = True
    in_master[original[local_in]] = True
    return master, lp.col_value[: len(master.keep)]


def _largest_share(
    sub: Columns, keep: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per job of `sub`: the column (an index of `sub`) the LP runs most of it
    at, and that share."""
    if keep.size == 0:  # an LP that defers every job: nothing to place yet
        return np.full(len(sub.jobs), -1, dtype=np.int64), np.zeros(len(sub.jobs))
    order = np.lexsort((-values, sub.cj[keep]))
    jobs = sub.cj[keep[order]]
    first = order[np.r_[True, jobs[1:] != jobs[:-1]]]
    top = np.full(len(sub.jobs), -1, dtype=np.int64)
    share = np.zeros(len(sub.jobs))
    top[sub.cj[keep[first]]] = keep[first]
    share[sub.cj[keep[first]]] = values[first]
    return top, share
