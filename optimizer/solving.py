"""The optimizer's front door: anytime, always returning the best valid plan found.

1. Greedy in deadline order, in least-slack order, and earliest-start (which
   meets every deadline that can be met by starting early): the best is a valid
   plan at once. The previous reconcile's plan, repaired, competes (warm start).
   Make-room moves (a big job into a clean slot, the jobs there placed again)
   polish it for a tenth of the budget. Where that leaves jobs late beyond
   what no start avoids (an overloaded spoke), sequencing searches the order
   in which they and the jobs on their spokes are packed (`sequencing`), until
   a quarter of the budget.
2. Column generation (HiGHS, whatever MILP solver is chosen) gives a proven
   lower bound and capacity prices within part of the budget. Where it is too
   slow to converge in time (1000 jobs), subgradient ascent gives the prices
   instead, from none, until half the budget. Ascent with a fast-shrinking
   step settles the columns the jobs pick (`lagrange.settle`, or the first
   half of `lagrange.ascend`), and their shares over its steps give eight
   estimates of the LP solution (`lagrange.estimates`): where column
   generation solved the LP but the model is too large for one exact MILP
   (200 jobs), for up to 2,000 steps after it, until 40% of the budget. Each
   estimate (and the LP's own solution) is rounded (the jobs a pass leaves
   late going first in the next) until 62% of the budget; the cheapest
   rounding is polished by single and make-room moves, for a fifth of the
   budget after settling, until 70% of it after ascent. The LP's own solution
   rounds badly where it time-shares a clean spoke among fractions of jobs;
   ascent's settled picks are nearly whole, and round to better plans. Where
   ascent did not settle (50 jobs), or no rounding beats the first plan, two
   dives (`diving`: jobs placed a batch at a time, the LP solved again around
   them) try too. At 1000 x 10, seeds 1-6, four runs of this ended
   1.51-2.17/2.63-3.52/1.32-1.95/1.33-1.55/1.13-1.68/3.14-3.33% above the LP
   bound. Local search then alternates between priced and true costs, with
   make-room moves, until a turn gains nothing. A small MILP over the columns
   the LP relaxation uses (price-and-branch, where it is small enough for its
   time) moves many jobs at once; local search takes up from its plan until
   it stalls (or the budget is spent: its plan is then the answer).
3. With the time left, reduced-cost fixing drops every column that cannot be in
   a better plan. If few columns remain for the time left, one MILP over them,
   warm-started (HiGHS through highspy by default, or any solver PuLP drives);
   otherwise large neighbourhood search: small MILPs over a few dozen jobs at a
   time, the jobs far from their best place by the prices and those in their way.
   Where ascent gave the prices (1000 jobs and more), ruin and recreate instead
   (`repacking`): the jobs of a short window on one spoke, and a few that would
   be cheaper there, placed again together, the bulkiest first.
4. Where the shell plugged in a second core (`use_second_core`: the
   `caspian` command does, with `twins`), a thread of it prices half the
   jobs in each step of ascent, and where ascent gave the prices or settled
   a forked copy goes on from there by another path while this one goes on
   by its own: the copy rounds the odd half of the estimates, polishes the
   cheapest of them and draws its own windows in ruin and recreate (it
   calls no MILP solver); this path rounds the even half after ascent and
   all of them after settling, and its HiGHS keeps to one thread. The
   cheaper of the two plans is the answer.

`solver_status` says what was proven: "optimal" only when the plan is within
`gap_rel` of a proven bound; otherwise the remaining gap to that bound.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np

from optimizer import columns as cols
from optimizer import (
    diving,
    ejection,
    heuristics,
    lagrange,
    lns,
    mip,
    pulp_backend,
    repacking,
    sequencing,
)
from optimizer.costs import why_unplaceable
from optimizer.highs import HighsBackend
from optimizer.model import Instance, Plan, SolverSettings
from optimizer.plans import build_plan
from optimizer.pulp_backend import PulpBackend, SolverUnavailableError

# Up to this many columns after exact fixing, an exact MILP; beyond, LNS. The
# MILP also needs time: at 200 jobs, given 2 s for 30-46 thousand columns,
# HiGHS had not finished its root LP (no dual bound), overran the limit by up to
# 0.4 s and improved nothing, where LNS in the same time did on every seed; given
# 3.8 s for 32 thousand (seed 6), it took 7.3 s. At 50 jobs, 1-5 thousand
# columns in 0.5-0.9 s, the MILP proves optima.
EXACT_AFTER_FIXING = 20_000
EXACT_COLUMNS_PER_SECOND = 10_000

# Price-and-branch only where HiGHS can do something with its MILP in the time:
# at 200 jobs, 900-1000 columns in 2.5 s, it solves or nearly solves it; at 1000
# jobs, 6000 columns in 7.5 s, it ended 2-4% from its own bound and improved
# nothing in the runs traced (seeds 1, 2); LNS made better use of the time.
BRANCH_ANYWAY = 2_000
BRANCH_COLUMNS_PER_SECOND = 500

# Ascent's estimates of the LP solution are rounded, one after another, until
# this share of the budget has gone (at 1000 x 10 all eight take about 2 s), and
# the cheapest rounding is polished until 70%.
ROUND_ESTIMATES_UNTIL = 0.62

# Where the quick plans leave jobs late, sequencing (`optimizer/sequencing.py`)
# may search until this share of the budget. On three overloaded instances
# the soaks found (28-34 jobs on one spoke), its three starts searched to
# their ends took 3.9-11.2 s, so the limit cuts the last of them; the plans of
# 20 s solves still came out at the best known (82, 145 and 470 late slots).
# Longer would take the time column generation has until 35%.
SEQUENCE_UNTIL = 0.25

# Added to a plan's method where the twin's plan won.
TWIN_WON = ", the twin's plan on the second core"


class Twin(Protocol):
    """A search running on the second core (`optimizer/twins.py`)."""

    def result(self, *, wait_until: float) -> np.ndarray | None: ...

    def stop(self) -> None: ...


# Starts a search on the second core: `start(search, jobs=...)` gives a Twin,
# or None where there is no second core. The shell plugs it in
# (`use_second_core`): forking a process is the operating system's business,
# not the pure core's, and without it (as in most tests of the core) every
# search runs on one core.
_second_core: Callable[..., Twin | None] | None = None
# Gives, for a block, a `lagrange.Spread` that shares ascent's steps with a
# thread of the second core (None where there is none): plugged in likewise.
_threads: Callable[[], AbstractContextManager[lagrange.Spread | None]] | None = None


def use_second_core(
    start: Callable[..., Twin | None] | None,
    *,
    threads: Callable[[], AbstractContextManager[lagrange.Spread | None]] | None = None,
) -> None:
    """From now on, share ascent's steps with a thread of `threads()`
    (`optimizer.twins.threads`), and run a twin after ascent or settling through
    `start(search, jobs=...)` (`optimizer.twins.Twin.start`); with None,
    neither."""
    global _second_core, _threads
    _second_core, _threads = start, threads


@dataclass
class Stats:
    columns: int = 0
    variables: int = 0
    constraints: int = 0
    build_s: float = 0.0
    first_plan_s: float = 0.0
    solve_s: float = 0.0
    dual_rounds: int = 0
    dual_bound: float | None = None
    lns_improvements: int = 0
    repack_improvements: int = 0
    # Whether the plan is the twin's, on the second core (None: no twin's
    # plan was read: none ran, or it sent none that fits).
    twin_won: bool | None = None


@dataclass
class Outcome:
    plan: Plan
    stats: Stats


def backend_for(name: str, *, threads: int | None = None) -> mip.Backend:
    """The MILP backend `name` names; for HiGHS, `threads` caps its threads."""
    return HighsBackend(threads=threads) if name == "highs" else PulpBackend(name)


def unknown_solver(name: str) -> str | None:
    """Why `name` (caspian.yaml's spec.solver.name) names no solver, with the
    names nearest it; None where it names one. Whether that solver is
    installed is not asked: `caspian validate` may run where it is not."""
    known = ("highs", *pulp_backend.names())
    if name in known:
        return None
    folded = name.lower()
    near = [k for k in known if k.lower() == folded or k.lower().startswith(f"{folded}_")]
    near = near or difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return (
        f"{name!r} names no solver: give highs (the default), highs_cmd, cbc, highs_pulp, "
        f"or one of PuLP's solvers by its name (GUROBI, CPLEX_CMD, ...){hint}"
    )


def optimize(instance: Instance, *, settings: SolverSettings) -> Plan:
    return solve(instance, settings=settings).plan


def solve(instance: Instance, *, settings: SolverSettings) -> Outcome:
    started_twins: list[Twin] = []
    try:
        return _solve(instance, settings=settings, started_twins=started_twins)
    finally:
        # Whatever ended the search (an answer, an error), no child outlives it.
        for twin in started_twins:
            twin.stop()


@dataclass(frozen=True)
class _Search:
    """What every phase of one solve shares: the columns and the room, the
    settings and the MILP solver, the clock, and the stats it fills in."""

    columns: cols.Columns
    free: np.ndarray
    settings: SolverSettings
    backend: mip.Backend
    started: float
    deadline: float
    stats: Stats

    @property
    def budget(self) -> float:
        return self.settings.time_limit_s

    def at(self, share: float) -> float:
        """The moment `share` of the budget has gone, or the deadline if sooner."""
        return min(self.deadline, self.started + share * self.budget)

    def hence(self, share: float) -> float:
        """`share` of the budget from now, or the deadline if sooner."""
        return min(self.deadline, time.monotonic() + share * self.budget)


class _Answer(NamedTuple):
    choice: np.ndarray | None
    status: str
    method: str
    bound: float | None


def _solve(instance: Instance, *, settings: SolverSettings, started_twins: list[Twin]) -> Outcome:
    started = time.monotonic()
    budget = settings.time_limit_s
    stats = Stats()
    free = cols.free_room(instance)
    columns, without = cols.build(instance, late_starts=settings.late_starts)
    unplaceable = {job.id: why_unplaceable(instance, job) for job in without}
    stats.columns = columns.size
    stats.build_s = time.monotonic() - started
    search = _Search(
        columns=columns,
        free=free,
        settings=settings,
        backend=backend_for(settings.name),
        started=started,
        # The last hundredth, and 20 ms at least, is for turning the answer
        # into a Plan and for HiGHS running past its limit: without it the
        # benchmarks ended 5-80 ms past theirs, and with a hundredth alone one
        # run of 50 x 3 in about thirty ended 6 ms past 1 s. And 30 us a job:
        # at 5000 jobs the Plan takes 60-85 ms and ending a forked child of
        # 2 GB took 66 ms (timed apart); one run in three of 5000 x 20 in 20 s
        # ended 76 ms past it without them.
        deadline=started + budget - max(0.01 * budget, 0.02) - 30e-6 * len(columns.jobs),
        stats=stats,
    )

    def finish(answer: _Answer) -> Outcome:
        choice, status, method, bound = answer
        if stats.twin_won:
            # The commit names the method of each placement: say whose plan it is.
            method += TWIN_WON
        plan = build_plan(
            instance,
            choices=columns.slots_of(choice),
            unplaceable=unplaceable,
            solver_status=status,
            method=method,
        )
        if bound is not None and choice is not None:
            # The plan also counts the carbon of fixed jobs, a constant the model
            # leaves out: move the bound by the same constant.
            offset = plan.objective - heuristics.objective(columns, choice)
            plan = plan.model_copy(update={"bound": bound + offset})
        stats.solve_s = time.monotonic() - started - stats.build_s
        return Outcome(plan=plan, stats=stats)

    if not columns.jobs:
        return finish(_Answer(None, "optimal (nothing to choose)", "none", None))
    best = _quick_plans(search)
    dual = _prices(search, best)
    twin = _start_twin(search, best, dual=dual)
    if twin is not None:
        started_twins.append(twin)
        # The twin has the second core. HiGHS left to its own threads shared it:
        # at 200 x 5 this path's plans of seed 1 read 3.41-3.98% above the LP
        # bound with the twin running, 3.07-3.13% with HiGHS on one thread.
        search = replace(search, backend=backend_for(settings.name, threads=1))

    def with_twins(choice: np.ndarray) -> np.ndarray:
        """The cheaper of `choice` and the twin's plan, where a twin ran."""
        if twin is None:
            return choice
        theirs = twin.result(wait_until=search.deadline)
        if theirs is None or not heuristics.fits(columns, free, theirs):
            return choice
        better = _better(columns, choice, theirs)
        stats.twin_won = better is theirs
        return better

    # After settling (200 jobs) a rounding takes 0.01-0.02 s: this path rounds
    # every estimate, so that its cheapest stays its own. Halved there, seed 1
    # of 200 x 5 lost the rounding its best plans grow from (docs/optimizer-history.md).
    halved = twin is not None and dual.ascended
    best = _rounded_and_polished(search, best, dual=dual, halved=halved)
    return finish(_last_phase(search, best, dual=dual, with_twins=with_twins))


def _quick_plans(search: _Search) -> np.ndarray:
    """Phase 1: greedy (the first valid plan, timed), the other quick plans and
    the last reconcile's, then sequencing where jobs are late."""
    columns, free = search.columns, search.free
    first = heuristics.greedy(columns, free)
    search.stats.first_plan_s = time.monotonic() - search.started  # a valid plan exists
    best = _first_plan(columns, free, first, deadline=search.at(0.1))
    # Where that leaves jobs late, the order they are placed in is searched
    # (nothing happens where every job is on time: in the benchmark's
    # instances, seeds 1-3 at every size, no job is late by then).
    return sequencing.reorder(columns, free, best, deadline=search.at(SEQUENCE_UNTIL))


def _prices(search: _Search, best: np.ndarray) -> lagrange.Dual:
    """Phase 2: a proven lower bound and capacity prices, by column generation
    or ascent, and the settled estimates of the LP solution. Ascent's steps
    are shared with a thread of the second core where the shell plugged one
    in; it ends here, before the twin is forked."""
    columns = search.columns
    with _threads() if _threads is not None else nullcontext() as spread:
        dual = lagrange.solve(
            columns,
            search.free,
            upper=lambda: heuristics.objective(columns, best),
            deadline=search.at(0.35),
            # Ascent's picks round to better plans the longer it runs: at
            # 1000 x 10, seeds 1-6, ending at half the budget instead of 35%
            # gained on all six (one run each). Column generation keeps its
            # 35%, so where it solves the LP (50 and 200 jobs) the steps after
            # it start when they did.
            ascend_until=search.at(0.5),
            # Where column generation solves the LP, ascent settles after it,
            # for estimates to round; ending at 40% leaves the roundings their
            # time. Not where the whole model is small enough for the exact
            # MILP (50 x 3, the simulation's decisions): there the time does
            # more in the MILP.
            settle_until=search.at(0.4) if columns.size > EXACT_AFTER_FIXING else None,
            seed_columns=best[best >= 0],
            target_gap=search.settings.gap_rel / 2,
            spread=spread,
        )
    search.stats.dual_rounds, search.stats.dual_bound = dual.rounds, dual.bound
    return dual


def _start_twin(search: _Search, best: np.ndarray, *, dual: lagrange.Dual) -> Twin | None:
    """Where ascent gave the prices or settled after column generation, and
    the shell plugged in a second core, the twin on it (`_second_path`), or
    None."""
    if not (dual.ascended or dual.others) or _second_core is None:
        return None
    # Done a hundredth of the budget early, so that its plan is here when
    # this path ends.
    twin_until = search.deadline - 0.01 * search.budget
    columns, free, started, budget = search.columns, search.free, search.started, search.budget
    return _second_core(
        lambda: _second_path(
            columns, free, best, dual=dual, started=started, budget=budget, deadline=twin_until
        ),
        jobs=len(columns.jobs),
    )


def _rounded_and_polished(
    search: _Search, best: np.ndarray, *, dual: lagrange.Dual, halved: bool
) -> np.ndarray:
    """Phase 2's plans: the estimates of the LP solution rounded (with
    `halved`, half of them: the twin rounds the others), the dives where they
    help, local search, and price-and-branch with local search after it."""
    columns, free, budget = search.columns, search.free, search.budget
    # The cheapest rounding of the estimates of the LP solution gets make-room
    # moves (a rounding can leave a job late, which only they repair): until
    # 70% of the budget after ascent, for a fifth of it otherwise. At 200 x 5,
    # polishing until 70% after settling too left price-and-branch and the
    # local search after it less time, and the plans were worse.
    incumbent = best
    best = _from_relaxation(
        columns,
        free,
        best,
        dual=dual,
        repair=dual.ascended or bool(dual.others),
        choose_until=search.at(ROUND_ESTIMATES_UNTIL),
        deadline=search.at(0.7) if dual.ascended else search.hence(0.2),
        half=0 if halved else None,
    )
    if dual.lp_optimal and (best is incumbent or not dual.others):
        # Dives solve the LP again around the jobs they place: where ascent did
        # not settle, and where no rounding beat the first plan. After settling,
        # 15% of the budget: at 200 x 5 the dives after every rounding left
        # price-and-branch too little time.
        until = search.hence(0.15 if dual.others else 0.3)
        best = _dived(columns, free, best, dual=dual, deadline=until)
    until = search.hence(0.15) if dual.ascended else search.at(0.5)
    best = _alternate(columns, free, best, priced=dual.reduced, deadline=until)
    try:
        polished = price_and_branch(
            columns,
            free,
            best,
            dual=dual,
            backend=search.backend,
            # HiGHS overruns its limit by a few hundredths: keep a tenth in hand.
            time_limit=min(0.25 * budget, 0.9 * (search.deadline - time.monotonic())),
        )
    except SolverUnavailableError:
        polished = best  # the last phase says so in the plan's status
    if polished is best:
        return best
    return _alternate(columns, free, polished, priced=dual.reduced, deadline=search.deadline)


def _last_phase(
    search: _Search,
    best: np.ndarray,
    *,
    dual: lagrange.Dual,
    with_twins: Callable[[np.ndarray], np.ndarray],
) -> _Answer:
    """Phase 3, with the time left: one exact MILP over the columns that can
    be in a better plan where they are few enough, else ruin and recreate
    (after ascent) or LNS; the twin's plan where it is cheaper."""
    columns, free = search.columns, search.free
    value = heuristics.objective(columns, best)
    bound = min(dual.bound, value)
    if _gap(value, bound) <= search.settings.gap_rel:
        return _Answer(best, "optimal", "column generation", bound)
    if search.deadline - time.monotonic() < 0.05 * search.budget:
        # Local search used the budget: building a MILP now would only overrun it.
        best = with_twins(best)
        return _ended(search, best, bound, "column generation + local search")
    keep = dual.open_columns(value=value, choice=best)
    try:
        left = search.deadline - time.monotonic()
        if keep.size <= min(EXACT_AFTER_FIXING, EXACT_COLUMNS_PER_SECOND * left):
            return _exact(search, best, keep=keep, bound=bound, with_twins=with_twins)
        if dual.ascended:
            # A sub-MILP takes about a second at 1000 jobs, and placing a few
            # jobs again together gains far more in the time (`repacking`).
            best, search.stats.repack_improvements = repacking.repack(
                columns, free, best, deadline=search.deadline
            )
            method = "column generation + ruin and recreate"
        else:
            best, search.stats.lns_improvements = lns.search(
                columns,
                free,
                best,
                backend=search.backend,
                deadline=search.deadline,
                score=dual.reduced,
            )
            method = f"column generation + {search.backend.name} LNS"
    except SolverUnavailableError as error:
        gap = _gap(value, bound)
        return _Answer(best, f"heuristic ({error}; gap {gap:.2%})", "column generation", bound)
    return _ended(search, with_twins(best), bound, method)


def _exact(
    search: _Search,
    best: np.ndarray,
    *,
    keep: np.ndarray,
    bound: float,
    with_twins: Callable[[np.ndarray], np.ndarray],
) -> _Answer:
    """One MILP over the columns `keep`, warm-started from `best`."""
    columns = search.columns
    model = mip.build(columns, search.free, keep, start=best)
    search.stats.variables, search.stats.constraints = model.variables, model.constraints
    # HiGHS looks at its clock between steps and overran a 4-5 s limit by
    # 0.2-1 s at 200 jobs: a tenth in hand absorbs most of that.
    limit = 0.9 * (search.deadline - time.monotonic())
    solver_until = time.monotonic() + limit
    result = search.backend.solve(model, time_limit=limit, gap_rel=search.settings.gap_rel)
    best = _better(columns, best, result.choice)
    if not result.optimal:  # else no plan is cheaper: the twin's goes unread
        best = with_twins(best)
    value = heuristics.objective(columns, best)
    if result.bound is not None:
        # Every plan better than the incumbent is inside the fixed model, so
        # its bound (capped by the incumbent) bounds the whole problem.
        bound = max(bound, min(result.bound, value))
    status = _status(result, value, bound, search.settings, solver_until)
    return _Answer(best, status, f"column generation + {search.backend.name}", bound)


def _ended(search: _Search, best: np.ndarray, bound: float, method: str) -> _Answer:
    """The answer of a search the clock ended: optimal only within the gap
    asked for, else the gap left to the proven bound."""
    gap = _gap(heuristics.objective(search.columns, best), bound)
    word = "optimal" if gap <= search.settings.gap_rel else f"time_limit (gap {gap:.2%})"
    return _Answer(best, word, method, bound)


def _from_relaxation(
    columns: cols.Columns,
    free: np.ndarray,
    best: np.ndarray,
    *,
    dual: lagrange.Dual,
    repair: bool,
    choose_until: float,
    deadline: float,
    half: int | None = None,
) -> np.ndarray:
    """The LP relaxation's solution rounded and improved by single moves, then
    with `repair` by make-room moves, if better than `best`. Without `repair`
    make-room moves are left to `_alternate`: they cost more than the rest of
    it, and polishing a start that stays worse wastes them. Until `choose_until`
    ascent's estimates of the LP solution are rounded too, and the cheapest
    rounding is the one polished. With `half` 0 or 1, only every other
    estimate from that one is rounded: the twin rounds the other half.

    Rounding them all on both paths did the same work twice (0.5-1 s an
    estimate at 1000 x 10) and left each less time to polish. At 1000 x 10,
    ten runs of each version in turn (seeds 1-3, 30 s), the mean of all runs
    was 2.20% above the LP bound against 2.26% with every estimate rounded on
    both paths, within the spread of single runs; the twin's plan was the
    answer in 15 runs of 30 against 6 (docs/optimizer-history.md)."""
    if dual.support.size == 0:
        return best

    def rounding(support: np.ndarray, shares: np.ndarray) -> np.ndarray:
        return heuristics.rounded(
            columns, free, support=support, shares=shares, reduced=dual.reduced, until=deadline
        )

    estimates = [(dual.support, dual.shares), *dual.others]
    if half is not None and len(estimates) > 1:
        estimates = estimates[half::2]
    found = [rounding(*estimates[0])]
    for support, shares in estimates[1:]:
        if time.monotonic() >= choose_until:
            break
        found.append(rounding(support, shares))
    # Stable: of roundings that cost the same, the first.
    start = min(found, key=lambda choice: heuristics.objective(columns, choice))
    start = heuristics.improve(columns, free, start, deadline=deadline)
    if repair:
        start = ejection.make_room(columns, free, start, deadline=deadline)
    return _better(columns, best, start)


def _second_path(
    columns: cols.Columns,
    free: np.ndarray,
    best: np.ndarray,
    *,
    dual: lagrange.Dual,
    started: float,
    budget: float,
    deadline: float,
) -> np.ndarray:
    """The twin's way on from ascent or settling (`twins`): the cheapest
    rounding of every other estimate (the odd half), polished as on the
    first path after ascent, local search as long, then ruin and recreate
    with draws of its own. No MILP: a forked child calls no solver."""
    best = _from_relaxation(
        columns,
        free,
        best,
        dual=dual,
        repair=True,
        choose_until=min(deadline, started + ROUND_ESTIMATES_UNTIL * budget),
        deadline=min(deadline, started + 0.7 * budget),
        half=1,
    )
    until = time.monotonic() + 0.15 * budget
    best = _alternate(columns, free, best, priced=dual.reduced, deadline=min(deadline, until))
    return repacking.repack(columns, free, best, deadline=deadline, seed=1)[0]


def _dived(
    columns: cols.Columns,
    free: np.ndarray,
    best: np.ndarray,
    *,
    dual: lagrange.Dual,
    deadline: float,
) -> np.ndarray:
    """The better of `best` and the plans of the two dives (`diving`), each
    polished by single and make-room moves, within `deadline`."""
    for whole_first in (True, False):
        if time.monotonic() >= deadline:
            break
        plan = diving.dive(columns, free, dual=dual, whole_first=whole_first, deadline=deadline)
        plan = heuristics.improve(columns, free, plan, deadline=deadline)
        plan = ejection.make_room(columns, free, plan, deadline=deadline)
        best = _better(columns, best, plan)
    return best


def _alternate(
    columns: cols.Columns,
    free: np.ndarray,
    choice: np.ndarray,
    *,
    priced: np.ndarray,
    deadline: float,
) -> np.ndarray:
    """Local search on priced costs, then on true costs, then make-room moves, in
    turns until a turn gains nothing or `deadline` passes: the prices push jobs
    out of contested slots (which single moves on true costs never do), the true
    costs then take up the room that freed. What is left of the budget after it
    stalls goes to the MILP or LNS, which beat it only given time."""
    best, current = choice, choice
    while time.monotonic() < deadline:
        current = heuristics.improve(columns, free, current, deadline=deadline, score=priced)
        current = heuristics.improve(columns, free, current, deadline=deadline)
        current = ejection.make_room(columns, free, current, deadline=deadline)
        if heuristics.objective(columns, current) >= heuristics.objective(columns, best) - 1e-9:
            break
        best = current
    return best


def price_and_branch(
    columns: cols.Columns,
    free: np.ndarray,
    best: np.ndarray,
    *,
    dual: lagrange.Dual,
    backend: mip.Backend,
    time_limit: float,
) -> np.ndarray:
    """One MILP over the columns the LP relaxation runs, each job's three of least
    reduced cost and the incumbent's (its warm start); returns the better plan,
    `best` itself if it is no better. About a thousand columns at 200 jobs:
    HiGHS solves it in a second or two, and it moves several jobs at once into
    the places the LP packs them, which local search finds only one job at a
    time. Skipped (`best` is returned) when the MILP is too large for
    `time_limit`."""
    most = max(BRANCH_ANYWAY, BRANCH_COLUMNS_PER_SECOND * time_limit)
    # Where the support, or each job's three columns (fewer where it has fewer),
    # are already too many, the sort that picks the three (2.7 s at 5000 x 20)
    # is skipped too.
    at_least = max(dual.support.size, int(np.minimum(np.diff(columns.first), 3).sum()))
    if dual.support.size == 0 or at_least > most:
        return best
    keep = np.union1d(
        np.union1d(dual.support, columns.cheapest(dual.reduced, per_job=3)), best[best >= 0]
    )
    if keep.size > most:
        return best
    model = mip.build(columns, free, keep, start=best)
    result = backend.solve(model, time_limit=time_limit, gap_rel=1e-4)
    return _better(columns, best, result.choice)


def _first_plan(
    columns: cols.Columns, free: np.ndarray, greedy: np.ndarray, *, deadline: float
) -> np.ndarray:
    """The best of the quick constructions, each polished by local search. The
    earliest-start plan meets every deadline that can be met by starting early,
    so polishing it keeps that while cutting carbon."""
    earliest = heuristics.earliest(columns, free)
    best = _better(columns, greedy, heuristics.improve(columns, free, earliest, deadline=deadline))
    # Each construction tests every column, about a second at 5000 x 20: the
    # one that meets deadlines is built even past `deadline`, this one not.
    if time.monotonic() < deadline:
        tight = heuristics.tight_first(columns, free)
        best = _better(columns, best, heuristics.improve(columns, free, tight, deadline=deadline))
    previous = {
        job.id: (job.previous.spoke, job.previous.start_slot)
        for job in columns.jobs
        if job.previous is not None
    }
    if previous:
        kept = heuristics.complete(columns, free, heuristics.from_slots(columns, free, previous))
        best = _better(columns, best, kept)
    return ejection.make_room(columns, free, best, deadline=deadline)


def _better(columns: cols.Columns, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    if b is None:
        return a
    return b if heuristics.objective(columns, b) < heuristics.objective(columns, a) - 1e-9 else a


def _status(
    result: mip.Result,
    value: float,
    bound: float | None,
    settings: SolverSettings,
    solver_until: float,
) -> str:
    if result.optimal:
        return "optimal"
    if bound is None or not np.isfinite(bound):
        return f"{result.status.split(' (')[0]} (no bound proven)"
    gap = _gap(value, bound)
    if gap <= settings.gap_rel:
        return "optimal"
    limit = "time_limit" if time.monotonic() >= solver_until - 0.1 else "feasible"
    return f"{limit} (gap {gap:.2%})"


def _gap(value: float, bound: float) -> float:
    return max(0.0, value - bound) / max(abs(value), 1e-9)
