"""The MILP backend that drives HiGHS directly through highspy (the only module
importing it): the model goes in as arrays in one call, with a warm start."""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from optimizer.mip import Model, Result
from optimizer.relaxation import Relaxation

# HiGHS's options by name (highspy's setOptionValue takes these types).
Options = dict[str, bool | int | float | str]


def _load(model: Model | Relaxation, *, integer: bool, options: Options) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    for name, value in options.items():
        h.setOptionValue(name, value)
    lp = highspy.HighsLp()
    lp.num_col_ = len(model.cost)
    lp.num_row_ = len(model.row_lower)
    lp.col_cost_ = model.cost
    lp.col_lower_ = np.where(np.isinf(model.col_lower), -highspy.kHighsInf, model.col_lower)
    lp.col_upper_ = np.where(np.isinf(model.col_upper), highspy.kHighsInf, model.col_upper)
    lp.row_lower_ = np.where(np.isinf(model.row_lower), -highspy.kHighsInf, model.row_lower)
    lp.row_upper_ = model.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = model.col_start
    lp.a_matrix_.index_ = model.row_index
    lp.a_matrix_.value_ = model.value
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * len(model.cost)
    h.passModel(lp)
    return h


class HighsBackend:
    name = "highs"

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def solve(self, model: Model, *, time_limit: float, gap_rel: float) -> Result:
        options: Options = {
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
        return model.answer(values, status=word, optimal=optimal, bound=bound)


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


@dataclass(frozen=True)
class LpSolution:
    status: str
    objective: float
    row_dual: np.ndarray
    col_dual: np.ndarray
    col_value: np.ndarray


def relaxation(lp: Relaxation, *, time_limit: float, crossover: bool = False) -> LpSolution:
    """The LP by interior point (this LP is too degenerate for simplex at fleet
    scale). Without crossover the duals are approximate, which is fine for
    prices (any prices >= 0 give a valid Lagrangian bound) but not to prove that
    no column is missing; with it, they are exact."""
    options: Options = {
        "time_limit": float(max(time_limit, 0.01)),
        "solver": "ipm",
        "run_crossover": "on" if crossover else "off",
    }
    h = _load(lp, integer=False, options=options)
    h.run()
    solution = h.getSolution()
    return LpSolution(
        status=_word(h.modelStatusToString(h.getModelStatus())),
        objective=float(h.getInfo().objective_function_value),
        row_dual=np.asarray(solution.row_dual),
        col_dual=np.asarray(solution.col_dual),
        col_value=np.asarray(solution.col_value),
    )
