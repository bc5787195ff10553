"""A proven lower bound, and capacity prices, by column generation.

With a price λ[s, r, t] >= 0 on each unit of capacity, every job independently
takes its cheapest column at cost + price of the capacity it uses (or defers).
For any λ, the sum of those minima minus λ·capacity is a lower bound on every
plan's objective (the Lagrangian bound). Its best value is the LP bound of the
time-indexed model, because each job's subproblem is integral.

The prices come from the LP relaxation over a growing set of columns (the
restricted master, in the flow form of `relaxation.py`, solved by HiGHS): its
capacity prices are λ; every column of the full model is priced with them in a
few vector operations; columns with a negative reduced cost join the master;
repeat. When none is left, the master's optimum is the LP bound of the full
model and the Lagrangian bound meets it.

At 1000 jobs a master round takes seconds, and the few rounds that fit in the
optimizer's budget leave the bound far below the LP's. Subgradient ascent then
takes over, from no prices at all: each step prices every column once, moves
each price by how far the columns the jobs would pick overrun (or underuse)
that capacity, and costs milliseconds where a master round costs seconds.

The bound is also what makes reduced-cost fixing exact: a column whose reduced
cost exceeds (incumbent - bound) cannot be part of any better plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer import mip, relaxation
from optimizer.columns import Columns
from optimizer.highs import relaxation as solve_lp

# Interior point without crossover leaves every column a sliver above zero: a
# column is in the LP's support when it runs at least this share of its job.
SUPPORT_SHARE = 0.01
CAP_QUANTILES = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
# Column generation took 8-22 rounds to solve the LP at 200 and 1000 jobs: once a
# round takes more than this share of its time, it will not get there in time.
ROUNDS_NEEDED = 5
# Subgradient ascent halves its step after this many steps without a better
# bound: slowly while it climbs to the bound, fast while it settles the picks
# that estimate the LP solution, in the first share of its time (`ascend`).
PATIENCE = 20
SETTLE_PATIENCE = 5
SETTLE_SHARE = 0.5
# Where column generation solved the LP, ascent settles this many steps at most
# (200 x 5 took 1,600-2,700 in the time it had), so that a long time limit
# does not go to settling alone.
SETTLE_STEPS = 2000
# Ascent's steps are also cut in this many runs of equal length, each giving
# an estimate of the LP solution of its own.
PARTS = 6


@dataclass
class Dual:
    bound: float  # best proven lower bound on the objective
    prices: np.ndarray  # (spokes, resources, slots), in scaled units
    reduced: np.ndarray  # reduced cost of every column at `prices`
    rounds: int
    lp_optimal: bool  # no column was left to add: `bound` is the full LP bound
    support: np.ndarray  # columns the LP solution (or its estimate) runs a real share of
    shares: np.ndarray  # the share of its job each of them runs
    # True when the prices (and the support, an average of the columns the jobs
    # picked) come from subgradient ascent rather than a converged master LP.
    ascended: bool = False
    # More estimates of the LP solution from ascent, as (support, shares): see
    # `estimates`.
    others: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def open_columns(self, *, value: float, choice: np.ndarray) -> np.ndarray:
        """The columns that can be part of a plan cheaper than `value` (the
        objective of `choice`), with those `choice` uses. A plan costs at least
        the bound plus the reduced costs of its columns, so a column whose
        reduced cost exceeds value - bound is in none: true for any prices >= 0,
        converged or not."""
        keep = self.reduced <= value - self.bound + 1e-9
        # `choice`'s own columns pass the test in exact arithmetic; rounding must
        # not drop one, since a MILP warm-started from `choice` needs them all.
        keep[choice[choice >= 0]] = True
        # A mask, not a sorted union: far from the bound nearly every column
        # is open, and sorting 7 million of them took 4 s at 5000 x 20.
        return np.flatnonzero(keep)


# Runs `work` on each item, where it can side by side (`optimizer.twins`
# gives one that does, on a thread of the second core), and returns when
# every item is done.
Spread = Callable[[Callable[[Any], None], Sequence[Any]], None]


def _one_by_one(work: Callable[[Any], None], items: Sequence[Any]) -> None:
    for item in items:
        work(item)


@dataclass(frozen=True)
class _Part:
    """Whole jobs priced together: their columns, the jobs, where each job's
    columns start within the part, and a buffer of the part's own."""

    columns: slice
    jobs: slice
    heads: np.ndarray
    term: np.ndarray


def _halves(columns: Columns) -> list[_Part]:
    """The jobs in two parts of about as many columns each (one, for one job)."""
    jobs = len(columns.jobs)
    middle = min(max(int(np.searchsorted(columns.first, columns.size // 2)), 1), jobs)
    parts = []
    for low, high in ((0, middle), (middle, jobs)):
        if high > low:
            start, end = int(columns.first[low]), int(columns.first[high])
            parts.append(
                _Part(
                    columns=slice(start, end),
                    jobs=slice(low, high),
                    heads=columns.first[low:high] - start,
                    term=np.empty(end - start),
                )
            )
    return parts


class Pricing:
    """Pre-computed gathers so that pricing every column is a few vector operations.

    Many columns share a window (spoke, start, end): 712 thousand columns have
    26 thousand windows at 1000 x 10. Each step prices the windows once and
    gathers their prices into the columns: one gather the size of the columns
    per resource instead of two. A step of ascent (pricing, picks, overrun) took 9.1 ms instead of
    18.9 ms there, and 136 ms instead of 230 ms at 5000 x 20.

    The gathers go into a buffer kept for the purpose, in two halves of the
    jobs that a `Spread` prices side by side (`optimizer.twins.threads`). At
    1000 x 10 (seed 1, 400 steps of each in turn, three runs of each version
    one after another on 2026-12-04) a step took a median of 11.6-14.2 ms
    before, 8.1-9.0 ms with the buffer and 5.8-6.7 ms with the halves side by
    side; at 5000 x 20 (two runs), 116-140, 97-122 and 83-87 ms; at 200 x 5,
    0.9-1.0 ms in all three ways. One Pricing prices on one thread at a time:
    the halves' buffers are its own."""

    def __init__(self, columns: Columns, free: np.ndarray) -> None:
        self.columns = columns
        demand, self.free = mip.scaled(columns, free)
        self.shape = free.shape
        _spokes, resources, slots = free.shape
        self.active = [r for r in range(resources) if (demand[:, r] > 0).any()]
        key = (columns.cs.astype(np.int64) * (slots + 1) + columns.ct) * (slots + 1) + columns.end
        windows, window_of = np.unique(key, return_inverse=True)
        # int64, not int32: numpy gathers with an index of its own pointer size
        # several times faster.
        self.window_of = window_of.astype(np.int64)
        row = windows // (slots + 1) ** 2 * resources * (slots + 1)
        start, end = windows // (slots + 1) % (slots + 1), windows % (slots + 1)
        # Where each window starts and ends in the flattened prefix sums of prices.
        self.window_starts = {r: row + r * (slots + 1) + start for r in self.active}
        self.window_ends = {r: row + r * (slots + 1) + end for r in self.active}
        self.col_demand = {r: demand[columns.cj, r] for r in self.active}
        self.heads = columns.first[:-1]
        self.per_job = np.diff(columns.first)
        self.parts = _halves(columns)

    def evaluate(
        self, prices: np.ndarray, *, spread: Spread | None = None
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """(Lagrangian bound, priced cost of every column, each job's minimum).
        With `spread`, the two halves of the jobs are priced side by side."""
        spokes, resources, slots = self.shape
        cumulative = np.zeros((spokes, resources, slots + 1))
        np.cumsum(prices, axis=2, out=cumulative[:, :, 1:])
        flat = cumulative.ravel()
        window_prices = [
            flat[self.window_ends[r]] - flat[self.window_starts[r]] for r in self.active
        ]
        priced = np.empty(self.columns.size)
        job_min = np.empty(len(self.heads))

        def price(part: _Part) -> None:
            out = priced[part.columns]
            np.copyto(out, self.columns.cost[part.columns])
            term = part.term
            for r, window_price in zip(self.active, window_prices, strict=True):
                # Into the part's own buffer: a fresh array of this size costs
                # as much as the arithmetic. "clip" because "raise" would
                # buffer the gather once more; the windows are all in range.
                np.take(window_price, self.window_of[part.columns], out=term, mode="clip")
                term *= self.col_demand[r][part.columns]
                out += term
            np.minimum(
                np.minimum.reduceat(out, part.heads),
                self.columns.defer[part.jobs],
                out=job_min[part.jobs],
            )

        (spread or _one_by_one)(price, self.parts)
        return float(job_min.sum() - (prices * self.free).sum()), priced, job_min

    def picks(self, priced: np.ndarray, job_min: np.ndarray) -> np.ndarray:
        """Each job's cheapest column by `priced`, none where deferring is cheaper."""
        cj = self.columns.cj
        at_min = np.flatnonzero(priced <= np.repeat(job_min, self.per_job))
        if at_min.size == 0:  # prices so high that every job would rather wait
            return at_min
        first = at_min[np.r_[True, cj[at_min][1:] != cj[at_min][:-1]]]
        return first[priced[first] < self.columns.defer[cj[first]]]

    def overrun(self, picked: np.ndarray) -> np.ndarray:
        """(spokes, resources, slots): what the columns `picked` use, less the
        free capacity. With each job's pick at some prices, a subgradient of the
        Lagrangian bound there."""
        spokes, resources, slots = self.shape
        columns = self.columns
        size = spokes * resources * (slots + 1)
        base = columns.cs[picked].astype(np.int64) * resources * (slots + 1)
        delta = np.zeros(size)
        for r in self.active:
            amount = self.col_demand[r][picked]
            row = base + r * (slots + 1)
            delta += np.bincount(row + columns.ct[picked], amount, minlength=size)
            delta -= np.bincount(row + columns.end[picked], amount, minlength=size)
        used = np.cumsum(delta.reshape(spokes, resources, slots + 1), axis=2)[:, :, :slots]
        return used - self.free


def solve(
    columns: Columns,
    free: np.ndarray,
    *,
    upper: Callable[[], float],
    deadline: float,
    ascend_until: float | None = None,
    settle_until: float | None = None,
    seed_columns: np.ndarray,
    initial_per_job: int = 8,
    added_per_job: int = 4,
    target_gap: float = 1e-4,
    spread: Spread | None = None,
) -> Dual:
    """Column generation until the LP is solved, the gap to `upper()` is below
    `target_gap`, or `deadline` (time.monotonic()) passes. When a round takes
    too long for enough rounds to fit before `deadline` (or is cut at that
    share of the time), subgradient ascent takes over from no prices, until
    `ascend_until` (`deadline` by default). The prices returned are the best
    found by either.

    Where column generation solved the LP with time to spare, ascent still
    settles from no prices until `settle_until`, for its estimates of the LP
    solution alone (`others`, beside the LP's own): they round to better plans
    than the LP's solution does (`ascend`)."""
    pricing = Pricing(columns, free)
    jobs = len(columns.jobs)
    in_master = np.zeros(columns.size, dtype=bool)
    if time.monotonic() < deadline:
        # Choosing them sorts every column: 2 s at 5000 x 20, where a short
        # budget can leave no time for a round at all.
        in_master[columns.cheapest(columns.cost, per_job=initial_per_job)] = True
        in_master[seed_columns] = True

    # No prices at all is already a valid bound (every job at its cheapest column):
    # a first master with few columns can have wild duals that do worse.
    unpriced, _, _ = pricing.evaluate(np.zeros(free.shape))
    best_bound, best_prices = unpriced, np.zeros(free.shape)
    rounds, lp_optimal, exact = 0, False, False
    support, shares = np.zeros(0, dtype=np.int64), np.zeros(0)
    others: list[tuple[np.ndarray, np.ndarray]] = []
    done = False
    began = time.monotonic()
    per_round = (deadline - began) / ROUNDS_NEEDED
    while (now := time.monotonic()) < deadline:
        rounds += 1
        # Rebuilt each round: HiGHS solves it from scratch (with presolve) faster
        # than it re-solves a grown model from the old basis.
        master = relaxation.build(columns, free, np.flatnonzero(in_master))
        # A round that needs more than its share of the time shows that the LP
        # will not converge in it (the rounds grow as the master does). At
        # 5000 x 20 the first round's LP took 12 s; cut at 5 s, it leaves the
        # rest to ascent.
        lp = solve_lp(
            master, time_limit=min(deadline - time.monotonic(), per_round), crossover=exact
        )
        # Interior point without crossover says "unknown" when it converged; any
        # prices >= 0 still give a valid bound, so only a failure or the limit
        # stops the loop.
        if lp.status not in ("optimal", "unknown"):
            break
        value, duals = lp.objective, lp.row_dual
        prices = master.prices(lp.col_dual, free.shape)
        support, shares = master.support(lp.col_value, share=SUPPORT_SHARE)
        bound, priced, _ = pricing.evaluate(prices)
        if bound > best_bound:
            best_bound, best_prices = bound, prices
        best_bound, best_prices = capped(
            pricing, prices, best_bound=best_bound, best_prices=best_prices
        )
        incumbent = upper()
        if incumbent - best_bound <= target_gap * max(1.0, abs(incumbent)):
            done = True
            break
        reduced = priced - duals[:jobs][columns.cj]
        entering = np.flatnonzero(~in_master & (reduced < -1e-7 * max(1.0, abs(incumbent))))
        if entering.size == 0:
            # Nothing prices out: the master's LP is the full LP, provided the
            # duals were exact. Inexact ones show as a bound below the master's
            # optimum; then solve the master once more with exact duals.
            if exact or bound >= value - 1e-6 * max(1.0, abs(value)):
                lp_optimal = done = True
                break
            exact = True
        in_master[most_negative(columns, entering, reduced, per_job=added_per_job)] = True
        if time.monotonic() - now > per_round:
            break
    ascended = False
    ascend_until = deadline if ascend_until is None else ascend_until
    if lp_optimal and settle_until is not None and time.monotonic() < settle_until:
        history = settle(
            pricing, bound=unpriced, upper=upper(), deadline=settle_until, spread=spread
        )
        others = estimates(history, size=columns.size)
    if not done and time.monotonic() < ascend_until:
        # Ascent starts from no prices at all, not from the master's: the
        # duals of a master far from converged steer the early steps wrong,
        # and their picks go into the estimates (`estimates`). Through the
        # whole optimizer at 1000 x 10, seeds 1-6, the mean over the seeds was
        # 2.52-2.57% above the LP bound in three runs, 2.79-2.88% in two from
        # the master's prices (both before `ascend` settled its picks).
        ascended = True
        bound, prices, history = ascend(
            pricing,
            np.zeros(free.shape),
            bound=unpriced,
            upper=upper(),
            deadline=ascend_until,
            spread=spread,
        )
        if bound > best_bound:
            best_bound, best_prices = bound, prices
        if history:
            (support, shares), *others = estimates(history, size=columns.size)
    bound, priced, job_min = pricing.evaluate(best_prices)
    return Dual(
        bound=bound,
        prices=best_prices,
        reduced=priced - job_min[columns.cj],
        rounds=rounds,
        lp_optimal=lp_optimal,
        support=support,
        shares=shares,
        ascended=ascended,
        others=tuple(others),
    )


def gap_split(pricing: Pricing, prices: np.ndarray, choice: np.ndarray) -> tuple[float, float]:
    """A plan's objective less the Lagrangian bound at `prices`, in two parts
    that add up to it and are each >= 0 for a plan that fits: the reduced
    costs of the columns the plan runs (jobs away from where the prices say
    they belong), and the priced capacity it leaves unused (room the relaxation
    fills, with fractions of jobs, that the plan does not). The first shrinks
    by moving jobs, the second only by packing them tighter."""
    _, priced, job_min = pricing.evaluate(prices)
    placed = choice >= 0
    own = np.where(placed, priced[np.maximum(choice, 0)], pricing.columns.defer)
    off_best = float((own - job_min).sum())
    unused = -pricing.overrun(choice[placed])  # free room less what the plan uses
    return off_best, float((prices * unused).sum())


def most_negative(
    columns: Columns, entering: np.ndarray, reduced: np.ndarray, *, per_job: int
) -> np.ndarray:
    """Of the columns `entering`, each job's `per_job` of least `reduced` cost:
    what joins the master in a round."""
    order = entering[np.lexsort((reduced[entering], columns.cj[entering]))]
    position = np.arange(order.size)
    first_of_job = np.searchsorted(columns.cj[order], columns.cj[order], side="left")
    return order[position - first_of_job < per_job]


def ascend(
    pricing: Pricing,
    prices: np.ndarray,
    *,
    bound: float,
    upper: float,
    deadline: float,
    spread: Spread | None = None,
) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Subgradient ascent on the Lagrangian bound from `prices` (whose bound is
    `bound`) until `deadline`: the best (bound, prices) seen, and the columns
    the jobs picked at each step of its first part, from whose shares
    `estimates` makes estimates of the LP's solution.

    The two parts want different steps. The picks round to better plans when
    the step shrinks fast (`SETTLE_PATIENCE`), but the prices then settle short
    of the LP bound (0.4-2.3% below it at 1000 x 10, seeds 1, 2 and 5). So the
    first `SETTLE_SHARE` of the time settles; the rest climbs from the best
    prices so far with a step that shrinks slowly (`PATIENCE`), and only its
    bound is kept. Through the whole optimizer at 1000 x 10, seeds 1-6, the
    mean over the seeds was 1.99-2.18% above the LP bound in four runs,
    2.61% and 2.66% in two with one ascent at `PATIENCE`."""
    settle_until = time.monotonic() + SETTLE_SHARE * (deadline - time.monotonic())
    history: list[np.ndarray] = []
    bound, prices = _climb(
        pricing,
        prices,
        bound=bound,
        upper=upper,
        deadline=settle_until,
        patience=SETTLE_PATIENCE,
        history=history,
        spread=spread,
    )
    bound, prices = _climb(
        pricing,
        prices,
        bound=bound,
        upper=upper,
        deadline=deadline,
        patience=PATIENCE,
        spread=spread,
    )
    return bound, prices, history


def settle(
    pricing: Pricing,
    *,
    bound: float,
    upper: float,
    deadline: float,
    spread: Spread | None = None,
) -> list[np.ndarray]:
    """The columns the jobs pick at each step of ascent from no prices (whose
    bound is `bound`) with a fast-shrinking step, for `SETTLE_STEPS` steps or
    until `deadline`: what `estimates` reads, where the LP's prices are known
    already."""
    history: list[np.ndarray] = []
    _climb(
        pricing,
        np.zeros(pricing.shape),
        bound=bound,
        upper=upper,
        deadline=deadline,
        patience=SETTLE_PATIENCE,
        history=history,
        max_steps=SETTLE_STEPS,
        spread=spread,
    )
    return history


def _climb(
    pricing: Pricing,
    prices: np.ndarray,
    *,
    bound: float,
    upper: float,
    deadline: float,
    patience: int,
    history: list[np.ndarray] | None = None,
    max_steps: int | None = None,
    spread: Spread | None = None,
) -> tuple[float, np.ndarray]:
    """Subgradient steps from `prices` until `deadline`, with Polyak's step
    toward `upper`, halved after `patience` steps without a better bound: the
    best (bound, prices) seen. The columns picked at each step go to `history`.
    A price at zero cannot fall, so its slope is cut at zero; when no slope is
    left, the prices are optimal."""
    best_bound, best_prices = bound, prices
    step, stalled, taken = 1.0, 0, 0
    while time.monotonic() < deadline and (max_steps is None or taken < max_steps):
        taken += 1
        value, priced, job_min = pricing.evaluate(prices, spread=spread)
        if value > best_bound:
            best_bound, best_prices, stalled = value, prices, 0
        else:
            stalled += 1
            if stalled >= patience:
                step, stalled = step / 2, 0
        picked = pricing.picks(priced, job_min)
        if history is not None:
            history.append(picked)
        slope = pricing.overrun(picked)
        slope[(prices <= 0) & (slope < 0)] = 0.0
        norm = float((slope * slope).sum())
        if norm == 0.0 or value >= upper:
            break
        prices = np.maximum(0.0, prices + step * (upper - value) / norm * slope)
    return best_bound, best_prices


def estimates(history: list[np.ndarray], *, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Estimates of the LP's solution, as (support, shares), from the columns
    ascent picked at each step (`history`, over `size` columns): the share of
    the steps of the second half in which each column was its job's pick, then
    of all steps, then of each of `PARTS` runs of them, first to last.

    Which one rounds to the best plan is luck. At 1000 x 10, seeds 1-6, one
    ascent each, the second half's estimate rounded (with the fallback of
    then, by reduced cost alone) and improved by single moves was
    3.70/6.93/3.03/2.35/4.31/3.64% above the LP bound; the cheapest rounding of
    all eight estimates, so improved, 3.59/4.81/2.31/1.54/3.49/3.64%.
    So the optimizer rounds them all when it has the time."""
    steps = len(history)
    spans = [(steps // 2, steps), (0, steps)]
    spans += [(steps * i // PARTS, steps * (i + 1) // PARTS) for i in range(PARTS)]
    found = []
    for first, last in spans:
        if last <= first:
            continue
        picked = np.concatenate(history[first:last])
        share = np.bincount(picked, minlength=size) / (last - first)
        support = np.flatnonzero(share > SUPPORT_SHARE)
        found.append((support, share[support]))
    return found


def capped(
    pricing: Pricing, prices: np.ndarray, *, best_bound: float, best_prices: np.ndarray
) -> tuple[float, np.ndarray]:
    """The better of (best_bound, best_prices) and `prices` capped at one of a few
    of their own quantiles. While the master holds few columns, a job with no
    other column there prices its slots near the cost of deferring it: such
    prices are exact for the master but give a Lagrangian bound far below zero.
    Capped, they are still >= 0, so the bound stays valid, and it is far better
    (1000 jobs, seed 1: 189 thousand instead of 75 after two rounds)."""
    positive = prices[prices > 0]
    for share in CAP_QUANTILES if positive.size else ():
        candidate = np.minimum(prices, np.quantile(positive, share))
        bound = pricing.evaluate(candidate)[0]
        if bound > best_bound:
            best_bound, best_prices = bound, candidate
    return best_bound, best_prices
