"""The yardsticks every plan is compared with, as Plans.

- `greedy`: deadline order; each job takes its cheapest fitting (spoke, start).
- `qos`: arrival order; each job takes its earliest start, carbon-blind, on the
  spoke with the most room among equals (CASPIAN's baseline).
- `round_robin`: arrival order; spokes in turn, each job at its earliest start
  on its turn's spoke (or anywhere, if that spoke has no room in the horizon).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optimizer import columns as cols
from optimizer import heuristics
from optimizer.costs import why_unplaceable
from optimizer.model import Instance, Plan
from optimizer.plans import build_plan


def _as_plan(
    instance: Instance, method: str, place: Callable[[cols.Columns, np.ndarray], np.ndarray]
) -> Plan:
    columns, without = cols.build(instance)
    free = cols.free_room(instance)
    choice = place(columns, free) if columns.jobs else np.zeros(0, dtype=np.int64)
    return build_plan(
        instance,
        choices=columns.slots_of(choice),
        unplaceable={job.id: why_unplaceable(instance, job) for job in without},
        solver_status=method,
        method=method,
    )


def greedy(instance: Instance) -> Plan:
    return _as_plan(instance, "greedy", heuristics.greedy)


def qos(instance: Instance) -> Plan:
    return _as_plan(instance, "qos", heuristics.qos)


def round_robin(instance: Instance) -> Plan:
    return _as_plan(instance, "round-robin", heuristics.round_robin)
