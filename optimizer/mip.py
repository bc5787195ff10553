"""The MILP over a chosen subset of columns, as arrays any backend can load.

Columns of the model: one binary per kept column, then one "defer" binary per job.
Rows: for every job, kept columns + defer = 1; for every (spoke, resource, slot)
that can bind, the demand of the kept columns running then <= what is free.
Resources are scaled per resource to [0, 1] so memory in bytes and GPU counts sit
at the same magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from optimizer import heuristics
from optimizer.columns import Columns


@dataclass(frozen=True)
class Model:
    columns: Columns
    keep: np.ndarray  # column indices of Columns in this model
    cost: np.ndarray  # kept columns then one defer per job
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_start: np.ndarray  # CSC
    row_index: np.ndarray
    value: np.ndarray
    start: np.ndarray | None  # a feasible 0/1 vector to warm-start from
    free: np.ndarray  # the room the rows hold, unscaled: (spokes, resources, slots)

    @property
    def variables(self) -> int:
        return len(self.cost)

    @property
    def constraints(self) -> int:
        return len(self.row_lower)

    @property
    def col_lower(self) -> np.ndarray:
        return np.zeros(self.variables)

    @property
    def col_upper(self) -> np.ndarray:
        return np.ones(self.variables)

    def choice(self, values: np.ndarray) -> np.ndarray:
        """Model values back to one column index per job (-1: deferred)."""
        jobs = len(self.columns.jobs)
        choice = np.full(jobs, -1, dtype=np.int64)
        taken = np.flatnonzero(values[: len(self.keep)] > 0.5)
        choice[self.columns.cj[self.keep[taken]]] = self.keep[taken]
        return choice

    def answer(
        self, values: np.ndarray, *, status: str, optimal: bool, bound: float | None
    ) -> Result:
        """The solver's solution `values` as a Result, or none where its plan
        overfills the room counted unscaled. The solver meets each row within a
        tolerance on the scaled numbers, and a job's demand falls within it on a
        spoke of a fleet where another is millions of times larger: beside one
        of 10 million GPUs, an "optimal" plan put 3 GPUs' jobs on one of 2. Such
        an answer is no plan, and what the solver proved of it holds no more."""
        choice = self.choice(values)
        if heuristics.fits(self.columns, self.free, choice):
            return Result(choice=choice, status=status, optimal=optimal, bound=bound)
        return Result(
            choice=None,
            status=f"no solution ({status}, but its plan overfills a spoke: the fleet's "
            "sizes lie too far apart for the solver's tolerance)",
            optimal=False,
            bound=None,
        )


@dataclass(frozen=True)
class Result:
    choice: np.ndarray | None  # None: no integer solution found
    status: str  # the solver's own word
    optimal: bool  # proven optimal for this model
    bound: float | None  # the solver's dual bound for this model


class Backend(Protocol):
    name: str

    def solve(self, model: Model, *, time_limit: float, gap_rel: float) -> Result: ...


def build(
    columns: Columns, free: np.ndarray, keep: np.ndarray, *, start: np.ndarray | None = None
) -> Model:
    """The model over the columns in `keep` (sorted indices); `start` is a choice
    per job whose placed columns must all be kept."""
    slots = free.shape[2]
    jobs = len(columns.jobs)
    keep = np.unique(keep).astype(np.int64)
    demand, free_scaled = scaled(columns, free)
    free_scaled = free_scaled.ravel()

    entry_col, entry_row, entry_val = [], [], []
    # assignment rows 0..jobs-1
    entry_col.append(np.arange(len(keep)))
    entry_row.append(columns.cj[keep].astype(np.int64))
    entry_val.append(np.ones(len(keep)))
    entry_col.append(len(keep) + np.arange(jobs))
    entry_row.append(np.arange(jobs))
    entry_val.append(np.ones(jobs))

    cap_cols, cap_keys, cap_vals, cap_jobs = capacity_entries(columns, keep, demand, slots)
    row_lower = [np.ones(jobs)]
    row_upper = [np.ones(jobs)]
    if cap_cols.size:
        binding = binding_keys(demand, free_scaled, cap_keys, cap_jobs, slots=slots)
        position = np.full(free_scaled.size, -1, dtype=np.int64)
        position[binding] = jobs + np.arange(binding.size)
        on = position[cap_keys] >= 0
        entry_col.append(cap_cols[on])
        entry_row.append(position[cap_keys[on]])
        entry_val.append(cap_vals[on])
        row_lower.append(np.full(binding.size, -np.inf))
        row_upper.append(free_scaled[binding])

    col = np.concatenate(entry_col)
    row = np.concatenate(entry_row)
    val = np.concatenate(entry_val)
    order = np.lexsort((row, col))
    n_cols = len(keep) + jobs
    col_start = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=n_cols))])

    start_vector = None
    if start is not None:
        start_vector = np.zeros(n_cols)
        position_of = {int(c): i for i, c in enumerate(keep)}
        for job_index, k in enumerate(start):
            if k >= 0:
                start_vector[position_of[int(k)]] = 1.0
            else:
                start_vector[len(keep) + job_index] = 1.0
    return Model(
        columns=columns,
        keep=keep,
        cost=np.concatenate([columns.cost[keep], columns.defer]),
        row_lower=np.concatenate(row_lower),
        row_upper=np.concatenate(row_upper),
        col_start=col_start.astype(np.int64),
        row_index=row[order].astype(np.int64),
        value=val[order],
        start=start_vector,
        free=free,
    )


def scaled(columns: Columns, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Demand per job and free capacity, each resource divided by its largest
    capacity, so that bytes of memory and GPU counts sit at the same magnitude."""
    scale = np.maximum(free.max(axis=(0, 2)), 1e-9)
    return columns.demand / scale[None, :], free / scale[None, :, None]


def capacity_entries(
    columns: Columns, keep: np.ndarray, demand: np.ndarray, slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Non-zeros of the capacity rows for columns `keep`: (position in `keep`, row
    key (spoke*resources + resource)*slots + slot, scaled demand, job)."""
    resources = demand.shape[1]
    parts = []
    for r in range(resources):
        local = np.flatnonzero(demand[columns.cj[keep], r] > 0)
        if local.size == 0:
            continue
        k = keep[local]
        lengths = (columns.end[k] - columns.ct[k]).astype(np.int64)
        repeated = np.repeat(local, lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        kk = keep[repeated]
        parts.append(
            (
                repeated,
                (columns.cs[kk].astype(np.int64) * resources + r) * slots
                + columns.ct[kk]
                + offsets,
                demand[columns.cj[kk], r],
                columns.cj[kk].astype(np.int64),
            )
        )
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), empty
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def binding_keys(
    demand: np.ndarray, free_scaled: np.ndarray, key: np.ndarray, job: np.ndarray, *, slots: int
) -> np.ndarray:
    """The capacity rows (keys as in `capacity_entries`) that can bind: those the
    jobs able to run there could overfill, each job counted once, whichever of
    its columns covers the slot. The others need no row at all."""
    resources = demand.shape[1]
    pair = np.unique(job * free_scaled.size + key)
    pair_key = pair % free_scaled.size
    pair_job = pair // free_scaled.size
    rows_at = np.unique(pair_key)
    worst = np.zeros(free_scaled.size)
    np.add.at(worst, pair_key, _demand_of(demand, pair_job, pair_key, resources, slots))
    return rows_at[worst[rows_at] > free_scaled[rows_at] + 1e-9]


def _demand_of(
    demand: np.ndarray, job: np.ndarray, key: np.ndarray, resources: int, slots: int
) -> np.ndarray:
    """Demand of `job` on the resource that row `key` is about."""
    return demand[job, (key // slots) % resources]
