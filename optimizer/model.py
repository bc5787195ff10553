"""The optimizer's problem and answer, as plain values.

They mirror docs/plan-dump-format.md field for field, so an instance and its plan
can be written out and checked without this code. Slots are indexed from 0; slot t
covers [start + t*slot_seconds, start + (t+1)*slot_seconds); a job started in slot
s with duration d occupies slots s..s+d-1.
"""

from __future__ import annotations

import functools
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

RESOURCES = ("cpu", "memory_bytes", "gpu")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Slot(Frozen):
    spoke: str
    start_slot: int


class SpokeCapacity(Frozen):
    """What is left for Caspian on one spoke, per slot of the horizon."""

    name: str
    zone: str
    cpu: tuple[float, ...]
    memory_bytes: tuple[float, ...]
    gpu: tuple[float, ...]
    # Slots in which nothing new may start there (Argo CD's sync windows bar
    # applying a Job then); what is running runs on through them.
    closed_starts: tuple[int, ...] = ()

    def resource(self, name: str) -> tuple[float, ...]:
        return getattr(self, name)


class Job(Frozen):
    id: str
    cpu: float = Field(ge=0)
    memory_bytes: float = Field(ge=0)
    gpu: float = Field(ge=0)
    duration_slots: int = Field(ge=1)
    release_slot: int = 0
    deadline_slot: int
    allowed_spokes: tuple[str, ...]
    energy_kwh_per_slot: dict[str, float]
    fixed: Slot | None = None
    previous: Slot | None = None
    # How much a slot of its lateness counts against another job's: its
    # priority (1 for most; 10 for one whose deadline matters ten times more).
    lateness_weight: float = Field(default=1.0, ge=0)

    def demand(self, name: str) -> float:
        return getattr(self, name)


class Weights(Frozen):
    lateness_g_per_slot: float = Field(default=100_000.0, ge=0)
    move_g: float = Field(default=5.0, ge=0)


class Instance(Frozen):
    """One planning problem.

    Intensity arrays may be longer than `slots`: a job may start in the last slot of
    the horizon and run past it, and its carbon is still counted. Capacity is only
    constrained inside the horizon.
    """

    start: datetime
    slot_seconds: int = Field(gt=0)
    slots: int = Field(gt=0)
    spokes: tuple[SpokeCapacity, ...]
    intensity_g_per_kwh: dict[str, tuple[float, ...]]
    jobs: tuple[Job, ...]
    weights: Weights = Weights()

    @model_validator(mode="after")
    def _consistent(self) -> Instance:
        names = {spoke.name for spoke in self.spokes}
        for spoke in self.spokes:
            for resource in RESOURCES:
                if len(spoke.resource(resource)) != self.slots:
                    raise ValueError(f"spoke {spoke.name}: {resource} needs {self.slots} values")
            if len(self.intensity_g_per_kwh.get(spoke.zone, ())) < self.slots:
                raise ValueError(f"zone {spoke.zone}: intensity must cover {self.slots} slots")
        for job in self.jobs:
            unknown = set(job.allowed_spokes) - names
            if unknown:
                raise ValueError(f"job {job.id}: unknown spokes {sorted(unknown)}")
        return self

    def spoke(self, name: str) -> SpokeCapacity:
        return next(spoke for spoke in self.spokes if spoke.name == name)


class Assignment(Frozen):
    id: str
    spoke: str
    start_slot: int
    carbon_g: float
    late_slots: int = 0


class NotPlaced(Frozen):
    id: str
    reason: str


class Plan(Frozen):
    """The optimizer's answer; `solver_status` never claims more than was proven."""

    assignments: tuple[Assignment, ...]
    not_placed: tuple[NotPlaced, ...]
    carbon_g: float
    objective: float
    solver_status: str
    bound: float | None = None
    method: str

    def assignment(self, job_id: str) -> Assignment | None:
        return self._lookups()[0].get(job_id)

    def reason_not_placed(self, job_id: str) -> str | None:
        return self._lookups()[1].get(job_id)

    def _lookups(self) -> tuple[dict[str, Assignment], dict[str, str]]:
        # A decision looks up every job: scanning the plan for each took 1.1 s
        # of a reconcile at 5000 jobs (cProfile), so the lookups are made once.
        made_from, placed, not_placed = self._made
        if made_from[0] is not self.assignments or made_from[1] is not self.not_placed:
            # A model_copy copies them too: anew where it changed their source.
            _, placed, not_placed = _lookups_of(self)
        return placed, not_placed

    @functools.cached_property
    def _made(self) -> tuple[tuple[object, object], dict[str, Assignment], dict[str, str]]:
        return _lookups_of(self)


def _lookups_of(
    plan: Plan,
) -> tuple[tuple[object, object], dict[str, Assignment], dict[str, str]]:
    return (
        (plan.assignments, plan.not_placed),
        {a.id: a for a in plan.assignments},
        {n.id: n.reason for n in plan.not_placed},
    )


class SolverSettings(Frozen):
    """Which MILP solver PuLP drives, and how long it may take."""

    name: str = "highs"
    time_limit_s: float = Field(default=20.0, gt=0)
    gap_rel: float = Field(default=1e-4, ge=0)
    # False: only starts that meet each job's deadline (the simulation's
    # clairvoyant plan, where every arrival is known and lateness is not an option).
    late_starts: bool = True


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
