"""`caspian bench optimizer`: one generated instance, solved and measured.

Wall times are monotonic-clock seconds; `peak_rss_mb` is the process's peak
resident memory when the plan is returned (before the LP bound, which is
computed afterwards and not counted in `total_s`).

With `exact_time_limit`, the returned plan is then handed to the MILP solver
over the whole model (less the columns the LP's reduced costs rule out) for
that long: how much better a plan it finds, and the lower bound it proves,
say how far the plan is from the optimum rather than from the LP bound.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optimizer import baselines, dump, lagrange, mip, verify
from optimizer import columns as cols
from optimizer.generator import generate
from optimizer.heuristics import earliest, from_slots, objective
from optimizer.model import Instance, Plan, SolverSettings
from optimizer.solving import backend_for, solve


def run(
    *,
    jobs: int,
    spokes: int,
    slots: int,
    seed: int,
    time_limit: float,
    solver: str = "highs",
    lp_time_limit: float = 600.0,
    exact_time_limit: float = 0.0,
    dump_dir: Path | None = None,
) -> dict[str, Any]:
    instance = generate(jobs=jobs, spokes=spokes, slots=slots, seed=seed)
    outcome = solve(instance, settings=SolverSettings(name=solver, time_limit_s=time_limit))
    # With the twin on the second core (`optimizer/twins.py`), what it held
    # too: the two peaks added, which counts the pages they share twice.
    peak_mb = (
        sum(
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 1024
    )
    plan, stats = outcome.plan, outcome.stats
    greedy, baseline = baselines.greedy(instance), baselines.qos(instance)

    lp_started = time.monotonic()
    lp = _relaxation(instance, limit=lp_time_limit)
    lp_seconds = time.monotonic() - lp_started
    # The model leaves out constants the plan's objective counts: the carbon
    # of work already running, and lateness that no start of a job avoids.
    offset = 0.0 if lp is None else plan.objective - objective(lp.columns, _choice_of(lp, plan))
    lp_value = None if lp is None else lp.dual.bound + offset
    lp_exact = lp is not None and lp.dual.lp_optimal
    off_best, unused_room = (None, None) if lp is None else _split(lp, plan)
    exact = (
        _exactly(lp, plan, solver=solver, limit=exact_time_limit)
        if lp is not None and exact_time_limit > 0
        else None
    )

    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / "instance.json").write_text(dump.dumps(dump.instance_document(instance)))
        (dump_dir / "plan.json").write_text(dump.dumps(dump.plan_document(plan)))

    def gap(bound: float) -> float:
        return (plan.objective - bound) / max(abs(bound), 1e-9)

    return {
        "jobs": jobs,
        "spokes": spokes,
        "slots": slots,
        "seed": seed,
        "time_limit_s": time_limit,
        "solver": solver,
        "variables": stats.columns,
        "constraints": len(instance.jobs) + spokes * 3 * slots,
        "milp_variables": stats.variables,
        "milp_constraints": stats.constraints,
        "build_s": round(stats.build_s, 3),
        "first_plan_s": round(stats.first_plan_s, 3),
        "solve_s": round(stats.solve_s, 3),
        "total_s": round(stats.build_s + stats.solve_s, 3),
        "peak_rss_mb": round(peak_mb, 1),
        "objective": round(plan.objective, 2),
        "carbon_g": round(plan.carbon_g, 2),
        "lp_bound": None if lp_value is None or not lp_exact else round(lp_value, 2),
        "lp_bound_s": round(lp_seconds, 1),
        "gap_vs_lp": None if not lp_exact or lp_value is None else round(gap(lp_value), 5),
        "dual_bound": None if plan.bound is None else round(plan.bound, 2),
        "gap_vs_dual_bound": None if plan.bound is None else round(gap(plan.bound), 5),
        "lagrangian_bound_after_lp": None if lp_value is None else round(lp_value, 2),
        "gap_off_best_g": None if off_best is None else round(off_best, 2),
        "gap_unused_room_g": None if unused_room is None else round(unused_room, 2),
        "solver_status": plan.solver_status,
        "dual_rounds": stats.dual_rounds,
        "lns_improvements": stats.lns_improvements,
        "repack_improvements": stats.repack_improvements,
        # Whose plan it is where ascent ran (1000 jobs and up, and now and then
        # 50): true the twin's on the second core, false this path's; null
        # where no twin's plan was read.
        "twin_won": stats.twin_won,
        "method": plan.method,
        "greedy_carbon_g": round(greedy.carbon_g, 2),
        "greedy_objective": round(greedy.objective, 2),
        "qos_carbon_g": round(baseline.carbon_g, 2),
        "qos_objective": round(baseline.objective, 2),
        "late_jobs": verify.late_jobs(plan),
        "not_placed": len(plan.not_placed),
        "capacity_violations": len(verify.violations(instance, plan)),
        **_exact_fields(exact, offset=offset, lp=lp_value if lp_exact else None),
    }


@dataclass(frozen=True)
class _Relaxation:
    columns: cols.Columns
    free: np.ndarray
    dual: lagrange.Dual


def _relaxation(
    instance: Instance, *, limit: float, late_starts: bool = True
) -> _Relaxation | None:
    columns, _ = cols.build(instance, late_starts=late_starts)
    if not columns.jobs:
        return None
    free = cols.free_room(instance)
    start = earliest(columns, free)
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: objective(columns, start),
        deadline=time.monotonic() + limit,
        seed_columns=start[start >= 0],
        target_gap=0.0,
    )
    return _Relaxation(columns=columns, free=free, dual=dual)


def lp_bound(
    instance: Instance, *, limit: float, late_starts: bool = True
) -> tuple[float | None, bool]:
    """The LP relaxation's optimum of the whole model by column generation, and
    whether it converged (else the best Lagrangian bound reached in `limit`)."""
    lp = _relaxation(instance, limit=limit, late_starts=late_starts)
    return (None, False) if lp is None else (lp.dual.bound, lp.dual.lp_optimal)


def _split(lp: _Relaxation, plan: Plan) -> tuple[float, float]:
    """Where the plan's gap to the bound after it lies (`lagrange.gap_split`)."""
    pricing = lagrange.Pricing(lp.columns, lp.free)
    return lagrange.gap_split(pricing, lp.dual.prices, _choice_of(lp, plan))


@dataclass(frozen=True)
class _Exact:
    objective: float  # of the model, without the carbon of running work
    bound: float
    status: str
    seconds: float


def _choice_of(lp: _Relaxation, plan: Plan) -> np.ndarray:
    """The plan as a choice of the relaxation's columns."""
    wanted = {a.id: (a.spoke, a.start_slot) for a in plan.assignments}
    return from_slots(lp.columns, lp.free, wanted)


def _exactly(lp: _Relaxation, plan: Plan, *, solver: str, limit: float) -> _Exact:
    """The MILP over every column that could be in a plan better than `plan`,
    warm-started from `plan`, for `limit` seconds."""
    columns, free, dual = lp.columns, lp.free, lp.dual
    start = _choice_of(lp, plan)
    value = objective(columns, start)
    keep = dual.open_columns(value=value, choice=start)
    began = time.monotonic()
    result = backend_for(solver).solve(
        mip.build(columns, free, keep, start=start), time_limit=limit, gap_rel=1e-6
    )
    seconds = time.monotonic() - began
    found = value if result.choice is None else min(value, objective(columns, result.choice))
    # Every plan better than `plan` is inside the model, so its bound, capped by
    # the best plan found, bounds the whole problem.
    bound = dual.bound if result.bound is None else max(dual.bound, min(result.bound, found))
    return _Exact(objective=found, bound=bound, status=result.status, seconds=seconds)


def _exact_fields(exact: _Exact | None, *, offset: float, lp: float | None) -> dict[str, Any]:
    if exact is None:
        return {}

    def above_lp(value: float) -> float | None:
        return None if lp is None else round((value + offset - lp) / max(abs(lp), 1e-9), 5)

    return {
        "exact_objective": round(exact.objective + offset, 2),
        "exact_bound": round(exact.bound + offset, 2),
        "exact_gap_vs_lp": above_lp(exact.objective),
        "exact_bound_vs_lp": above_lp(exact.bound),
        "exact_status": exact.status,
        "exact_s": round(exact.seconds, 1),
    }


# What stays the same across the runs of one size, and what a summary leaves out.
_SIZE = ("jobs", "spokes", "slots", "time_limit_s", "solver")
_NOT_SUMMED = {"seed", *_SIZE}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one size (several seeds, each perhaps several times) in one object:
    every run, then for each number the median over the seeds (of each seed's
    median over its runs) and the highest value of any run. The targets are put
    that way: quality as a median of seeds, time and memory as limits. A number
    some run lacks (an LP bound not reached) has no median and no highest."""
    by_seed: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_seed.setdefault(run["seed"], []).append(run)
    keys = [
        key
        for key in runs[0]
        if key not in _NOT_SUMMED and any(_numeric(run.get(key)) for run in runs)
    ]
    median: dict[str, float | None] = {}
    highest: dict[str, float | None] = {}
    for key in keys:
        if not all(_numeric(run.get(key)) for run in runs):
            median[key] = highest[key] = None
            continue
        per_seed = [float(np.median([run[key] for run in group])) for group in by_seed.values()]
        median[key] = round(float(np.median(per_seed)), 5)
        highest[key] = max(run[key] for run in runs)
    return {
        **{key: runs[0][key] for key in _SIZE},
        "seeds": sorted(by_seed),
        "runs_per_seed": max(len(group) for group in by_seed.values()),
        "median": median,
        "max": highest,
        "runs": runs,
    }


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=False)
