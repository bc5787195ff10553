"""The time-indexed MILP of DESIGN.md, modelled with PuLP (the only module that
imports it).

x[j,k] = 1 when job j takes its k-th candidate (spoke, start); d[j] = 1 when it is
deferred. Minimise the candidates' cost (carbon + lateness + move) plus a deferral
cost above any placement, subject to
  - each job: sum_k x[j,k] + d[j] = 1,
  - each spoke, slot and resource: the jobs running then fit what is left after
    fixed work.
Rows that can never bind (all candidates together fit) are left out.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass

import pulp

from optimizer.candidates import Candidate, defer_cost
from optimizer.model import RESOURCES, Instance, Job, Slot, SolverSettings

# Names users write in caspian.yaml -> PuLP's solver names.
SOLVER_NAMES = {"highs": "HiGHS", "highs_cmd": "HiGHS_CMD", "cbc": "PULP_CBC_CMD"}


@dataclass(frozen=True)
class MilpResult:
    choices: dict[str, Slot | None] | None  # None: no integer solution
    status: str
    bound: float | None
    variables: int
    constraints: int


def solve(
    instance: Instance,
    *,
    options: dict[str, list[Candidate]],
    residual: dict[str, list[list[float]]],
    settings: SolverSettings,
) -> MilpResult:
    """Solve over the movable jobs in `options` against `residual` capacity
    (spoke -> resource -> slot)."""
    problem = pulp.LpProblem("caspian", pulp.LpMinimize)
    jobs = {job.id: job for job in instance.jobs}
    x: dict[str, list[pulp.LpVariable]] = {}
    defer: dict[str, pulp.LpVariable] = {}
    objective: list[tuple[pulp.LpVariable, float]] = []
    for j_index, (job_id, job_options) in enumerate(sorted(options.items())):
        x[job_id] = [
            problem.add_variable(f"x_{j_index}_{k}", 0, 1, cat=pulp.LpBinary)
            for k in range(len(job_options))
        ]
        defer[job_id] = problem.add_variable(f"d_{j_index}", 0, 1, cat=pulp.LpBinary)
        objective.extend(zip(x[job_id], (c.cost for c in job_options), strict=True))
        objective.append((defer[job_id], defer_cost(instance, jobs[job_id])))
        terms = [(var, 1.0) for var in x[job_id]] + [(defer[job_id], 1.0)]
        problem.addConstraint(
            pulp.LpConstraint(pulp.LpAffineExpression(terms), pulp.LpConstraintEQ, rhs=1),
            name=f"once_{j_index}",
        )
    problem.setObjective(pulp.LpAffineExpression(objective))
    for name, (expression, limit) in _capacity_rows(instance, jobs, options, x, residual).items():
        problem.addConstraint(
            pulp.LpConstraint(expression, pulp.LpConstraintLE, rhs=limit), name=name
        )

    solver = _solver(settings)
    problem.solve(solver)
    status, bound, has_solution = _read_status(problem, settings)
    choices = None
    if has_solution:
        choices = {}
        for job_id, job_options in options.items():
            taken = [c for c, var in zip(job_options, x[job_id], strict=True) if _one(var)]
            choices[job_id] = (
                Slot(spoke=taken[0].spoke, start_slot=taken[0].start_slot) if (taken) else None
            )
    return MilpResult(
        choices=choices,
        status=status,
        bound=bound,
        variables=len(problem.variables()),
        constraints=problem.numConstraints(),
    )


def _capacity_rows(
    instance: Instance,
    jobs: dict[str, Job],
    options: dict[str, list[Candidate]],
    x: dict[str, list[pulp.LpVariable]],
    residual: dict[str, list[list[float]]],
) -> dict[str, tuple[pulp.LpAffineExpression, float]]:
    terms: dict[tuple[str, int, int], list[tuple[pulp.LpVariable, float]]] = defaultdict(list)
    # Worst case per row: each job adds its demand at most once per slot.
    worst: dict[tuple[str, int, int], dict[str, float]] = defaultdict(dict)
    for job_id, job_options in options.items():
        job = jobs[job_id]
        for candidate, var in zip(job_options, x[job_id], strict=True):
            end = min(candidate.start_slot + job.duration_slots, instance.slots)
            for r_index, resource in enumerate(RESOURCES):
                demand = job.demand(resource)
                if demand <= 0:
                    continue
                for slot in range(candidate.start_slot, end):
                    key = (candidate.spoke, r_index, slot)
                    terms[key].append((var, demand))
                    worst[key][job_id] = demand
    rows = {}
    for (spoke, r_index, slot), row_terms in sorted(terms.items()):
        limit = residual[spoke][r_index][slot]
        if sum(worst[(spoke, r_index, slot)].values()) <= limit + 1e-9:
            continue
        rows[f"cap_{spoke}_{RESOURCES[r_index]}_{slot}"] = (
            pulp.LpAffineExpression(row_terms),
            limit,
        )
    return rows


def _solver(settings: SolverSettings) -> pulp.LpSolver:
    name = SOLVER_NAMES.get(settings.name, settings.name)
    options = {"msg": False, "timeLimit": settings.time_limit_s, "gapRel": settings.gap_rel}
    if name == "PULP_CBC_CMD":
        # A CBC on PATH is newer than the one bundled with PuLP (deprecated there).
        system_cbc = pulp.getSolver("COIN_CMD", **options)
        if system_cbc.available():
            return system_cbc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.getSolver(name, **options)
    try:
        solver = pulp.getSolver(name, **options)
    except pulp.PulpSolverError as error:
        raise SolverUnavailableError(f"solver {settings.name!r}: {error}") from error
    if not solver.available():
        raise SolverUnavailableError(f"solver {settings.name!r} is not installed here")
    return solver


class SolverUnavailableError(RuntimeError):
    pass


def _read_status(
    problem: pulp.LpProblem, settings: SolverSettings
) -> tuple[str, float | None, bool]:
    """The solver's own word on what it proved: (status, dual bound, has a solution)."""
    highs = getattr(problem, "solverModel", None)
    if highs is not None and hasattr(highs, "getModelStatus"):
        model_status = highs.modelStatusToString(highs.getModelStatus()).lower()
        info = highs.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        bound = float(info.mip_dual_bound) if has_solution else None
        if model_status == "optimal":
            return "optimal", bound, has_solution
        if has_solution:
            label = "time_limit" if "time" in model_status else model_status.replace(" ", "_")
            return f"{label} (gap {info.mip_gap:.2%})", bound, True
        return f"no solution ({model_status})", None, False
    # Other solvers: PuLP's solution status is the most we can read.
    if problem.sol_status == pulp.LpSolutionOptimal:
        return "optimal", None, True
    if problem.sol_status == pulp.LpSolutionIntegerFeasible:
        return "feasible (not proven optimal)", None, True
    return f"no solution ({pulp.LpStatus[problem.status].lower()})", None, False


def _one(var: pulp.LpVariable) -> bool:
    return var.varValue is not None and var.varValue > 0.5
