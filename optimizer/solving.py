"""The optimizer's front door: greedy first, then the MILP, and the better of the two.

The MILP is the improver, greedy the floor: whatever the solver does (time limit,
no solution, not installed), a valid plan comes back and its status says which
method made it and what was proven.
"""

from __future__ import annotations

from optimizer import baselines, milp
from optimizer.candidates import candidates
from optimizer.model import Instance, Plan, SolverSettings
from optimizer.plans import build_plan, unplaceable_jobs


def optimize(instance: Instance, *, settings: SolverSettings) -> Plan:
    floor = baselines.greedy(instance)
    movable = [job for job in instance.jobs if job.fixed is None]
    options = {job.id: candidates(instance, job) for job in movable}
    placeable = {job_id: opts for job_id, opts in options.items() if opts}
    if not placeable:
        return floor.model_copy(update={"solver_status": "optimal (nothing to choose)"})
    residual = {
        spoke: [list(row) for row in matrix]
        for spoke, matrix in baselines.residual_capacity(instance).items()
    }
    try:
        result = milp.solve(instance, options=placeable, residual=residual, settings=settings)
    except milp.SolverUnavailableError as error:
        return _fallback(floor, str(error))
    if result.choices is None:
        return _fallback(floor, f"{settings.name}: {result.status}")
    plan = build_plan(
        instance,
        choices=result.choices,
        unplaceable=unplaceable_jobs(instance, {job_id: bool(o) for job_id, o in options.items()}),
        solver_status=result.status,
        method=f"milp:{settings.name}",
        bound=result.bound,
    )
    if plan.objective <= floor.objective + 1e-6:
        return plan
    return _fallback(floor, f"{settings.name} returned a worse plan ({result.status})")


def _fallback(floor: Plan, why: str) -> Plan:
    return floor.model_copy(update={"solver_status": f"greedy_fallback ({why})"})
