"""The MILP backend that drives HiGHS directly through highspy (the only module
importing it): the model goes in as arrays in one call, with a warm start."""

from __future__ import annotations

import highspy
import numpy as np

from optimizer.mip import Model, Result


def _load(model: Model, *, integer: bool, options: dict[str, object]) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for name, value in options.items():
        h.setOptionValue(name, value)
    lp = highspy.HighsLp()
    lp.num_col_ = model.variables
    lp.num_row_ = model.constraints
    lp.col_cost_ = model.cost
    lp.col_lower_ = np.zeros(model.variables)
    lp.col_upper_ = np.ones(model.variables)
    lp.row_lower_ = np.where(np.isinf(model.row_lower), -highspy.kHighsInf, model.row_lower)
    lp.row_upper_ = model.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = model.col_start
    lp.a_matrix_.index_ = model.row_index
    lp.a_matrix_.value_ = model.value
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * model.variables
    h.passModel(lp)
    return h


class HighsBackend:
    name = "highs"

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def solve(self, model: Model, *, time_limit: float, gap_rel: float) -> Result:
        options: dict[str, object] = {
            "time_limit": float(max(time_limit, 0.01)),
            "mip_rel_gap": float(gap_rel),
        }
        if self.threads:
            options["threads"] = int(self.threads)
        h = _load(model, integer=True, options=options)
        if model.start is not None:
            solution = highspy.HighsSolution()
            solution.col_value = model.start.tolist()
            solution.value_valid = True
            h.setSolution(solution)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        info = h.getInfo()
        bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
        if info.primal_solution_status != 2:  # kSolutionStatusFeasible
            return Result(
                choice=None, status=f"no solution ({status.lower()})", optimal=False, bound=bound
            )
        optimal = status == "Optimal"
        word = "optimal" if optimal else f"{_word(status)} (gap {info.mip_gap:.2%})"
        values = np.asarray(h.getSolution().col_value)
        return Result(choice=model.choice(values), status=word, optimal=optimal, bound=bound)


def lp_bound(model: Model, *, time_limit: float) -> tuple[float | None, str]:
    """The LP relaxation's optimum by interior point (no crossover), with its status."""
    h = _load(
        model,
        integer=False,
        options={"time_limit": float(time_limit), "solver": "ipm", "run_crossover": "off"},
    )
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if status != "Optimal":
        return None, _word(status)
    return float(h.getInfo().objective_function_value), "optimal"


def _word(status: str) -> str:
    return status.lower().replace(" ", "_")


def relaxation(
    model: Model, *, time_limit: float, crossover: bool = False
) -> tuple[str, float, np.ndarray, np.ndarray]:
    """The LP relaxation by interior point (this LP is too degenerate for simplex
    at fleet scale): (status, objective, row duals, column values). Without crossover the duals
    are approximate, which is fine for prices (any prices >= 0 give a valid
    Lagrangian bound) but not to prove that no column is missing; with it, they
    are exact."""
    options = {
        "time_limit": float(max(time_limit, 0.01)),
        "solver": "ipm",
        "run_crossover": "on" if crossover else "off",
    }
    h = _load(model, integer=False, options=options)
    h.run()
    status = _word(h.modelStatusToString(h.getModelStatus()))
    solution = h.getSolution()
    objective = float(h.getInfo().objective_function_value)
    return status, objective, np.asarray(solution.row_dual), np.asarray(solution.col_value)
