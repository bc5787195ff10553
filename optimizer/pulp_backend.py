"""The MILP backend for any solver PuLP drives (CBC, HiGHS_CMD, GUROBI, CPLEX_CMD,
...): the only module importing PuLP. Slower to build than highspy, but it lets
users point Caspian at the solver they have."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pulp

from optimizer.mip import Model, Result

# Names users write in caspian.yaml -> PuLP's solver names.
SOLVER_NAMES = {"highs_pulp": "HiGHS", "highs_cmd": "HiGHS_CMD", "cbc": "PULP_CBC_CMD"}


class SolverUnavailableError(RuntimeError):
    pass


class PulpBackend:
    def __init__(self, name: str) -> None:
        self.name = name

    def solve(self, model: Model, *, time_limit: float, gap_rel: float) -> Result:
        solver = _solver(self.name, time_limit=time_limit, gap_rel=gap_rel)
        problem = pulp.LpProblem("caspian", pulp.LpMinimize)
        x = [problem.add_variable(f"x{i}", 0, 1, cat=pulp.LpBinary) for i in range(model.variables)]
        problem.setObjective(pulp.LpAffineExpression(zip(x, model.cost.tolist(), strict=True)))
        rows: list[list[tuple[pulp.LpVariable, float]]] = [[] for _ in range(model.constraints)]
        for col in range(model.variables):
            for at in range(model.col_start[col], model.col_start[col + 1]):
                rows[model.row_index[at]].append((x[col], float(model.value[at])))
        for index, terms in enumerate(rows):
            expression = pulp.LpAffineExpression(terms)
            if model.row_lower[index] == model.row_upper[index]:
                sense = pulp.LpConstraintEQ
            else:
                sense = pulp.LpConstraintLE
            problem.addConstraint(
                pulp.LpConstraint(expression, sense, rhs=float(model.row_upper[index])),
                name=f"r{index}",
            )
        if model.start is not None and _takes_a_start(solver):
            for var, value in zip(x, model.start, strict=True):
                var.setInitialValue(float(value))
            solver.optionsDict["warmStart"] = True
        try:
            problem.solve(solver)
        except Exception as error:
            # The user's solver crashed, its licence lapsed, or its binary
            # cannot load: the optimizer keeps the plan it has and says why.
            raise SolverUnavailableError(
                f"solver {self.name!r} failed: {type(error).__name__}: {error}"
            ) from error
        values = np.array([var.varValue or 0.0 for var in x])
        # PuLP can say "Optimal" for a run its time limit cut off; only the
        # solution status is trusted, and nothing stronger than it is claimed.
        if problem.sol_status == pulp.LpSolutionOptimal:
            return model.answer(values, status="optimal", optimal=True, bound=None)
        if problem.sol_status == pulp.LpSolutionIntegerFeasible:
            return model.answer(
                values, status="feasible (not proven optimal)", optimal=False, bound=None
            )
        word = pulp.LpStatus[problem.status].lower()
        return Result(choice=None, status=f"no solution ({word})", optimal=False, bound=None)


def names() -> tuple[str, ...]:
    """Every name PulpBackend takes: Caspian's short ones, then PuLP's solvers'."""
    return (*SOLVER_NAMES, *pulp.listSolvers())


def _takes_a_start(solver: pulp.LpSolver) -> bool:
    """Whether PuLP hands variables' initial values to this solver: it does to
    those whose class takes `warmStart` (CBC, HiGHS_CMD, Gurobi, CPLEX, ...).
    PuLP's highspy one takes none, and passes its options on to HiGHS as they
    are."""
    return "warmStart" in inspect.signature(type(solver).__init__).parameters


def _solver(name: str, *, time_limit: float, gap_rel: float) -> pulp.LpSolver:
    pulp_name = SOLVER_NAMES.get(name, name)
    # Fractions of a second: CBC, HiGHS and the commercial solvers take them,
    # and a whole second more than the optimizer has left overran its budget.
    options = {"msg": False, "timeLimit": max(time_limit, 0.05), "gapRel": gap_rel}
    if pulp_name == "PULP_CBC_CMD":
        # A CBC on PATH is newer than the one bundled with PuLP (deprecated there).
        system_cbc = pulp.getSolver("COIN_CMD", **options)
        if system_cbc.available():
            return system_cbc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.getSolver(pulp_name, **options)
    try:
        solver = pulp.getSolver(pulp_name, **options)
    except pulp.PulpSolverError as error:
        raise SolverUnavailableError(f"solver {name!r}: {error}") from error
    if not solver.available():
        raise SolverUnavailableError(f"solver {name!r} is not installed here")
    return solver
