"""The last plan, kept where the problem is the one it answered.

A search cut off by its time limit need not end at the same plan twice:
started again on the problem a plan answered, with that plan's own
dispatches now fixed, it may find another, and a reconcile right after the
last would commit moves though nothing changed (soaks of an overloaded spoke
did, on 3 days of 10). So a plan carries the
digest of its problem, and where the next problem has the same digest, the
jobs stay where they are and nothing is solved.

A plan's problem is digested as the next reconcile meets it where nothing
changes (`as_answered`): each job at the place the plan gave it, fixed there
where it started. Of a started job the digest holds only what the optimizer
reads (the room it holds, its carbon), not its window or the spokes it could
have gone to, which the reconciler no longer works out once it started. The
rest is all in it: the jobs and their places, the room on every spoke, the
intensities, the weights and the solver's settings. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection

from optimizer import columns as cols
from optimizer.costs import late_slots, why_unplaceable
from optimizer.model import Instance, Job, Plan, Slot, SolverSettings
from optimizer.plans import build_plan
from optimizer.verify import violations

KEPT = "kept (the problem the last plan answered)"
METHOD = "last plan"


# What the optimizer reads of a job that has started: the room it holds, and
# its carbon, counted in every plan alike.
STARTED_FIELDS = {
    "id",
    "cpu",
    "memory_bytes",
    "gpu",
    "duration_slots",
    "energy_kwh_per_slot",
    "fixed",
}


def digest(instance: Instance, settings: SolverSettings) -> str:
    """sha256 of the problem."""
    problem = instance.model_dump(mode="json", exclude={"jobs", "spokes"})
    # Closed starts only where there are some: a problem without them has the
    # digest it had before there were any, so a fleet's last plan still answers.
    problem["spokes"] = [
        spoke.model_dump(mode="json", exclude=None if spoke.closed_starts else {"closed_starts"})
        for spoke in instance.spokes
    ]
    problem["jobs"] = [
        job.model_dump(mode="json", include=STARTED_FIELDS if job.fixed else None)
        for job in instance.jobs
    ]
    problem["settings"] = settings.model_dump(mode="json")
    text = json.dumps(problem, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def as_answered(instance: Instance, plan: Plan, *, started: Collection[str]) -> Instance:
    """`instance` as the next reconcile meets it where nothing changes: every
    movable job at the place `plan` gave it (none where it deferred it), and
    fixed there where it `started`."""
    places = {a.id: Slot(spoke=a.spoke, start_slot=a.start_slot) for a in plan.assignments}

    def placed(job: Job) -> Job:
        if job.fixed is not None:
            return job
        if job.id in started and job.id in places:
            return job.model_copy(update={"fixed": places[job.id], "previous": None})
        return job.model_copy(update={"previous": places.get(job.id)})

    return instance.model_copy(update={"jobs": tuple(placed(job) for job in instance.jobs)})


def kept_plan(instance: Instance, *, settings: SolverSettings) -> Plan | None:
    """Every job where it is (fixed, or at its previous place) and the others
    deferred, as the last plan had them; None where that is no valid plan of
    `instance`, which is then solved."""
    placed = {job.id: job.previous for job in instance.jobs if job.fixed is None and job.previous}
    if not settings.late_starts and any(
        late_slots(job, placed[job.id].start_slot) for job in instance.jobs if job.id in placed
    ):
        return None
    # Which of the others have no place at all, and why: as the solver says it.
    others = [job for job in instance.jobs if job.fixed is not None or job.id not in placed]
    _, without = cols.build(
        instance.model_copy(update={"jobs": tuple(others)}), late_starts=settings.late_starts
    )
    unplaceable = {job.id: why_unplaceable(instance, job) for job in without}
    plan = build_plan(
        instance,
        choices={job.id: placed.get(job.id) for job in instance.jobs},
        unplaceable=unplaceable,
        solver_status=KEPT,
        method=METHOD,
    )
    return None if violations(instance, plan) else plan
