"""Placement without a solver: one job at a time into what capacity is left.

- `greedy`: deadline order; each job takes its cheapest fitting (spoke, start).
- `qos`: arrival order; each job takes its earliest completion, carbon-blind
  (CASPIAN's baseline).
Both are also the MILP's fallback and its yardstick.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optimizer.candidates import Candidate, candidates, capacity_matrix, demand_vector
from optimizer.model import Instance, Job, Plan, Slot
from optimizer.plans import build_plan, unplaceable_jobs


def residual_capacity(instance: Instance) -> dict[str, np.ndarray]:
    """Capacity per spoke after the fixed (dispatched, running) jobs."""
    residual = capacity_matrix(instance)
    for job in instance.jobs:
        if job.fixed is not None:
            occupy(residual, job=job, slot=job.fixed, slots=instance.slots)
    return residual


def _window(job: Job, start: int, slots: int) -> slice:
    return slice(max(start, 0), min(start + job.duration_slots, slots))


def fits(residual: dict[str, np.ndarray], *, job: Job, slot: Slot, slots: int) -> bool:
    free = residual[slot.spoke][:, _window(job, slot.start_slot, slots)]
    return bool((free >= demand_vector(job)[:, None] - 1e-9).all())


def occupy(residual: dict[str, np.ndarray], *, job: Job, slot: Slot, slots: int) -> None:
    residual[slot.spoke][:, _window(job, slot.start_slot, slots)] -= demand_vector(job)[:, None]


def _sequential(
    instance: Instance,
    *,
    order: Callable[[Job], tuple],
    preference: Callable[[Candidate], tuple],
    method: str,
) -> Plan:
    residual = residual_capacity(instance)
    movable = sorted((job for job in instance.jobs if job.fixed is None), key=order)
    options = {job.id: candidates(instance, job) for job in movable}
    choices: dict[str, Slot | None] = {}
    for job in movable:
        choices[job.id] = None
        for option in sorted(options[job.id], key=preference):
            slot = Slot(spoke=option.spoke, start_slot=option.start_slot)
            if fits(residual, job=job, slot=slot, slots=instance.slots):
                occupy(residual, job=job, slot=slot, slots=instance.slots)
                choices[job.id] = slot
                break
    unplaceable = unplaceable_jobs(instance, {job.id: bool(options[job.id]) for job in movable})
    return build_plan(
        instance,
        choices=choices,
        unplaceable=unplaceable,
        solver_status=method,
        method=method,
    )


def greedy(instance: Instance) -> Plan:
    spoke_rank = {spoke.name: index for index, spoke in enumerate(instance.spokes)}
    return _sequential(
        instance,
        order=lambda job: (job.deadline_slot, job.release_slot, job.id),
        preference=lambda c: (c.cost, c.start_slot, spoke_rank[c.spoke]),
        method="greedy",
    )


def qos(instance: Instance) -> Plan:
    spoke_rank = {spoke.name: index for index, spoke in enumerate(instance.spokes)}
    return _sequential(
        instance,
        order=lambda job: (job.release_slot, job.deadline_slot, job.id),
        preference=lambda c: (c.start_slot, spoke_rank[c.spoke]),
        method="qos",
    )
