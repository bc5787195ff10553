"""Turning a choice per job into a priced `Plan`, the same way for every method."""

from __future__ import annotations

from collections.abc import Mapping

from optimizer.costs import (
    TIE_BREAK_G_PER_SLOT,
    carbon_of,
    defer_cost,
    late_slots,
)
from optimizer.model import Assignment, Instance, NotPlaced, Plan, Slot

NO_CAPACITY = "deferred: no capacity left inside the planning horizon"


def build_plan(
    instance: Instance,
    *,
    choices: Mapping[str, Slot | None],
    unplaceable: Mapping[str, str],
    solver_status: str,
    method: str,
    bound: float | None = None,
) -> Plan:
    """`choices` maps every job id that had candidates to its slot (None: deferred);
    `unplaceable` maps the others to the reason they had none."""
    assignments = []
    not_placed = []
    carbon = 0.0
    objective = 0.0
    for job in instance.jobs:
        if job.id in unplaceable:
            not_placed.append(NotPlaced(id=job.id, reason=unplaceable[job.id]))
            continue
        slot = job.fixed or choices.get(job.id)
        if slot is None:
            not_placed.append(NotPlaced(id=job.id, reason=NO_CAPACITY))
            objective += defer_cost(instance, job)
            continue
        grams = carbon_of(instance, job=job, spoke=slot.spoke, start_slot=slot.start_slot)
        late = 0 if job.fixed else late_slots(job, slot.start_slot)
        assignments.append(
            Assignment(
                id=job.id,
                spoke=slot.spoke,
                start_slot=slot.start_slot,
                carbon_g=grams,
                late_slots=late,
            )
        )
        carbon += grams
        objective += grams + late * instance.weights.lateness_g_per_slot * job.lateness_weight
        if job.fixed is None:
            objective += slot.start_slot * TIE_BREAK_G_PER_SLOT
        if job.fixed is None and job.previous is not None and slot != job.previous:
            objective += instance.weights.move_g
    return Plan(
        assignments=tuple(assignments),
        not_placed=tuple(not_placed),
        carbon_g=carbon,
        objective=objective,
        solver_status=solver_status,
        bound=bound,
        method=method,
    )
