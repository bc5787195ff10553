"""`caspian bench optimizer`: one generated instance, solved and measured.

Wall times are monotonic-clock seconds; `peak_rss_mb` is the process's peak
resident memory when the plan is returned (before the LP bound, which is
computed afterwards and not counted in `total_s`).
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from optimizer import baselines, dump, lagrange, verify
from optimizer import columns as cols
from optimizer.generator import generate
from optimizer.heuristics import earliest, objective
from optimizer.model import SolverSettings
from optimizer.solving import solve


def run(
    *,
    jobs: int,
    spokes: int,
    slots: int,
    seed: int,
    time_limit: float,
    solver: str = "highs",
    lp_time_limit: float = 600.0,
    dump_dir: Path | None = None,
) -> dict[str, Any]:
    instance = generate(jobs=jobs, spokes=spokes, slots=slots, seed=seed)
    outcome = solve(instance, settings=SolverSettings(name=solver, time_limit_s=time_limit))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plan, stats = outcome.plan, outcome.stats
    greedy, baseline = baselines.greedy(instance), baselines.qos(instance)

    lp_started = time.monotonic()
    lp_value, lp_exact = lp_bound(instance, limit=lp_time_limit)
    lp_seconds = time.monotonic() - lp_started
    if lp_value is not None:
        # The model leaves out the carbon of work already running (a constant);
        # the plan's objective counts it.
        fixed = {job.id for job in instance.jobs if job.fixed is not None}
        lp_value += sum(a.carbon_g for a in plan.assignments if a.id in fixed)

    if dump_dir is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / "instance.json").write_text(dump.dumps(dump.instance_document(instance)))
        (dump_dir / "plan.json").write_text(dump.dumps(dump.plan_document(plan)))

    def gap(bound: float | None) -> float | None:
        return None if bound is None else (plan.objective - bound) / max(abs(bound), 1e-9)

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
        "solver_status": plan.solver_status,
        "dual_rounds": stats.dual_rounds,
        "lns_improvements": stats.lns_improvements,
        "method": plan.method,
        "greedy_carbon_g": round(greedy.carbon_g, 2),
        "greedy_objective": round(greedy.objective, 2),
        "qos_carbon_g": round(baseline.carbon_g, 2),
        "qos_objective": round(baseline.objective, 2),
        "late_jobs": verify.late_jobs(plan),
        "not_placed": len(plan.not_placed),
        "capacity_violations": len(verify.violations(instance, plan)),
    }


def lp_bound(instance: Any, *, limit: float, late_starts: bool = True) -> tuple[float | None, bool]:
    """The LP relaxation's optimum of the whole model by column generation, and
    whether it converged (else the best Lagrangian bound reached in `limit`)."""
    columns, _ = cols.build(instance, late_starts=late_starts)
    if not columns.jobs:
        return None, False
    free = cols.capacity_array(instance) - cols.fixed_usage(instance)
    start = earliest(columns, free)
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: objective(columns, start),
        deadline=time.monotonic() + limit,
        seed_columns=start[start >= 0],
        target_gap=0.0,
    )
    return dual.bound, dual.lp_optimal


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, sort_keys=False)
