"""Why a plan put a job where it did: its cheapest (spoke, start) choices, each
with its carbon and whether it had room next to everything else the plan placed.

Pure: an instance and a plan in, options out. `caspian explain` prints them.
"""

from __future__ import annotations

import numpy as np

from optimizer import columns as cols
from optimizer import heuristics
from optimizer.capacity import Residual
from optimizer.model import Frozen, Instance, Plan


class Option(Frozen):
    spoke: str
    start_slot: int
    carbon_g: float
    late_slots: int
    chosen: bool
    room: bool  # fits next to the plan's other jobs and the work already running


def options(instance: Instance, plan: Plan, job_id: str, *, limit: int = 6) -> list[Option]:
    """The chosen place first, then the job's `limit` lowest-carbon places that meet its
    deadline (all places, if none does): each spoke's best start first, then the
    next best overall. Empty for a job that is fixed (started before this
    decision) or fits no allowed spoke at all."""
    # Starts that running work blocks are options too: "why not there?" is
    # answered with "taken", not by leaving the place out.
    columns, _ = cols.build(instance, beside_running=False)
    index = next((i for i, job in enumerate(columns.jobs) if job.id == job_id), None)
    if index is None:
        return []
    free = cols.free_room(instance)
    others = {a.id: (a.spoke, a.start_slot) for a in plan.assignments if a.id != job_id}
    choice = heuristics.from_slots(columns, free, others)
    room = Residual(free - heuristics.usage(columns, choice, free.shape))
    fits = heuristics.feasible(columns, room, index)
    part = columns.of_job(index)
    carbon, ct, cs = columns.carbon[part], columns.ct[part], columns.cs[part]
    duration = int(columns.duration[index])
    mine = plan.assignment(job_id)
    deadline = columns.jobs[index].deadline_slot
    on_time = ct + duration <= deadline
    pool = np.flatnonzero(on_time) if on_time.any() else np.arange(ct.size)
    ranked = pool[np.lexsort((ct[pool], carbon[pool]))]
    picked: list[int] = []
    for spoke in range(len(columns.spokes)):  # each spoke's best start first
        best = next((int(k) for k in ranked if cs[k] == spoke), None)
        if best is not None:
            picked.append(best)
    picked.sort(key=lambda k: (carbon[k], ct[k]))
    picked += [int(k) for k in ranked if int(k) not in picked][: max(0, limit - len(picked))]
    result = []
    for k in picked[:limit]:
        spoke, start = columns.spokes[cs[k]], int(ct[k])
        result.append(
            Option(
                spoke=spoke,
                start_slot=start,
                carbon_g=float(carbon[k]),
                late_slots=max(0, start + duration - deadline),
                chosen=mine is not None and (mine.spoke, mine.start_slot) == (spoke, start),
                room=bool(fits[k]),
            )
        )
    if mine is not None and not any(o.chosen for o in result):
        result.append(
            Option(
                spoke=mine.spoke,
                start_slot=mine.start_slot,
                carbon_g=mine.carbon_g,
                late_slots=mine.late_slots,
                chosen=True,
                room=True,
            )
        )
    return sorted(result, key=lambda o: not o.chosen)  # the chosen place first
