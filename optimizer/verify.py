"""Checks a plan against its instance: the numbers the bench reports as
`capacity_violations` and `late_jobs`."""

from __future__ import annotations

import numpy as np

from optimizer.columns import capacity_array
from optimizer.model import RESOURCES, Instance, Plan


def violations(instance: Instance, plan: Plan) -> list[str]:
    """Every (spoke, resource, slot) where new work overfills capacity, every
    assignment outside its window or allowed spokes or in a slot its spoke
    takes no start, every fixed job moved."""
    problems = []
    jobs = {job.id: job for job in instance.jobs}
    index = {spoke.name: i for i, spoke in enumerate(instance.spokes)}
    closed = {spoke.name: set(spoke.closed_starts) for spoke in instance.spokes}
    capacity = capacity_array(instance)
    used = np.zeros_like(capacity)
    new_work = np.zeros_like(capacity, dtype=bool)
    for a in plan.assignments:
        job = jobs[a.id]
        if job.fixed is not None:
            if (a.spoke, a.start_slot) != (job.fixed.spoke, job.fixed.start_slot):
                problems.append(f"{a.id}: a fixed job was moved")
        elif a.spoke not in job.allowed_spokes:
            problems.append(f"{a.id}: spoke {a.spoke} is not allowed")
        elif not max(job.release_slot, 0) <= a.start_slot < instance.slots:
            problems.append(f"{a.id}: start {a.start_slot} outside its window")
        elif a.start_slot in closed[a.spoke]:
            problems.append(f"{a.id}: {a.spoke} takes no start in slot {a.start_slot}")
        first = max(a.start_slot, 0)
        last = max(first, min(a.start_slot + job.duration_slots, instance.slots))
        demand = np.array([job.demand(r) for r in RESOURCES])
        used[index[a.spoke], :, first:last] += demand[:, None]
        if job.fixed is None:
            new_work[index[a.spoke], :, first:last] |= (demand > 0)[:, None]
    over = (used > capacity + 1e-6) & new_work
    for s, r, t in zip(*np.nonzero(over), strict=True):
        problems.append(
            f"{instance.spokes[s].name} slot {t}: {RESOURCES[r]} {used[s, r, t]:g} > "
            f"{capacity[s, r, t]:g}"
        )
    return problems


def late_jobs(plan: Plan) -> int:
    return sum(1 for a in plan.assignments if a.late_slots > 0)
