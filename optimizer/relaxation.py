"""The LP relaxation that column generation solves, in flow form.

In the MILP (`mip.py`) a column has one non-zero per slot of its run in each
capacity row: a 6-hour job on 3 resources, 72. Here each (spoke, resource) that
can bind gets a usage variable per slot, u[t] <= free[t], and a balance row per
slot, u[t] - u[t-1] = demand starting at t - demand ending at t. A column then
has two non-zeros per resource, one where its run starts and one where it
ends. The LP has the same optimum; at 1000 jobs interior point solves it about
three times as fast, which is most of what column generation costs.

The capacity price of slot t is what one more unit of u[t]'s bound is worth:
minus u[t]'s reduced cost. The balance rows' duals telescope, so a column's
reduced cost is its cost minus its job's dual plus the prices over its run,
as in the usual form. Columns get no upper bound of 1 and usage no lower bound
of 0: both are implied, and a dual on such a bound would price part of a
column outside the job's dual and the capacity prices, which the Lagrangian
bound does not see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer import mip
from optimizer.columns import Columns


@dataclass(frozen=True)
class Relaxation:
    keep: np.ndarray  # column indices of Columns; the LP's columns are these, a defer
    # per job, then the usage variables, chain by chain
    jobs: int
    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_start: np.ndarray  # CSC
    row_index: np.ndarray
    value: np.ndarray
    chains: np.ndarray  # spoke*resources + resource of each usage chain

    @property
    def first_usage(self) -> int:
        return len(self.keep) + self.jobs

    def prices(self, col_duals: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        """Capacity prices >= 0 per (spoke, resource, slot), in scaled units;
        chains that cannot bind are priced 0."""
        spokes, resources, slots = shape
        prices = np.zeros((spokes * resources, slots))
        usage_duals = col_duals[self.first_usage :].reshape(self.chains.size, slots)
        prices[self.chains] = np.maximum(0.0, -usage_duals)
        return prices.reshape(shape)

    def support(self, values: np.ndarray, *, share: float) -> tuple[np.ndarray, np.ndarray]:
        """The columns that run at least `share` of their job in `values`, and
        the share each runs."""
        ours = values[: len(self.keep)]
        on = ours > share
        return self.keep[on], ours[on]


def build(columns: Columns, free: np.ndarray, keep: np.ndarray) -> Relaxation:
    """The LP over the columns in `keep` (indices of `columns`)."""
    spokes, resources, slots = free.shape
    jobs = len(columns.jobs)
    keep = np.unique(keep).astype(np.int64)
    n = len(keep)
    demand, free_scaled = mip.scaled(columns, free)
    flat_free = free_scaled.ravel()

    _, cap_keys, _, cap_jobs = mip.capacity_entries(columns, keep, demand, slots)
    binding = mip.binding_keys(demand, flat_free, cap_keys, cap_jobs, slots=slots)
    chains = np.unique(binding // slots)
    chain_of = np.full(spokes * resources, -1, dtype=np.int64)
    chain_of[chains] = np.arange(chains.size)
    usage = chains.size * slots

    cols = [np.arange(n), n + np.arange(jobs)]
    rows = [columns.cj[keep].astype(np.int64), np.arange(jobs)]
    vals = [np.ones(n), np.ones(jobs)]
    for r in range(resources):
        local = np.flatnonzero(demand[columns.cj[keep], r] > 0)
        k = keep[local]
        chain = chain_of[columns.cs[k].astype(np.int64) * resources + r]
        on = chain >= 0
        local, k, chain = local[on], k[on], chain[on]
        amount = demand[columns.cj[k], r]
        cols.append(local)
        rows.append(jobs + chain * slots + columns.ct[k])
        vals.append(-amount)
        ends = columns.end[k] < slots  # a run to the horizon's end leaves no row
        cols.append(local[ends])
        rows.append(jobs + chain[ends] * slots + columns.end[k][ends])
        vals.append(amount[ends])
    index = np.arange(usage)
    cols += [n + jobs + index, n + jobs + index[index % slots < slots - 1]]
    rows += [jobs + index, jobs + index[index % slots < slots - 1] + 1]
    vals += [np.ones(usage), -np.ones(usage - chains.size)]

    col, row, val = np.concatenate(cols), np.concatenate(rows), np.concatenate(vals)
    order = np.lexsort((row, col))
    total = n + jobs + usage
    # x <= 1 follows from the assignment rows, u >= 0 from the balance rows;
    # stated as bounds they could bind and spoil the prices (module docstring).
    upper = np.concatenate(
        [np.full(n + jobs, np.inf), free_scaled.reshape(spokes * resources, slots)[chains].ravel()]
    )
    lower = np.concatenate([np.zeros(n + jobs), np.full(usage, -np.inf)])
    return Relaxation(
        keep=keep,
        jobs=jobs,
        cost=np.concatenate([columns.cost[keep], columns.defer, np.zeros(usage)]),
        col_lower=lower,
        col_upper=upper,
        row_lower=np.concatenate([np.ones(jobs), np.zeros(usage)]),
        row_upper=np.concatenate([np.ones(jobs), np.zeros(usage)]),
        col_start=np.concatenate([[0], np.cumsum(np.bincount(col, minlength=total))]).astype(
            np.int64
        ),
        row_index=row[order].astype(np.int64),
        value=val[order],
        chains=chains,
    )
