"""What `caspian simulate` replays: a fleet (policy and spokes) and a job trace.

Either the built-in `caspian-4` scenario, shaped like CASPIAN's load generator,
or a user's own fleet repo with a trace of submissions of its AppWrappers.
Every replayed job is a `JobRequest`, the very value `decide` gets from a commit.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict

from carbon import CarbonSourceConfig, embedded
from reconciler.appwrappers import template_hash
from reconciler.fleet import (
    Capacity,
    Fleet,
    JobRequest,
    Policy,
    PolicySpec,
    PowerModel,
    Spoke,
    SpokeMeta,
    SpokeSpec,
)
from reconciler.pods import Resources

TRACE_FILE = "trace.csv"
GIB = 2.0**30


class Arrival(BaseModel):
    """One submission: the job and when it reached jobs/."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    job: JobRequest


class Setup(BaseModel):
    """A fleet without jobs, the embedded zone that replays each spoke's grid, and
    the arrivals."""

    model_config = ConfigDict(frozen=True)

    name: str
    policy: Policy
    spokes: tuple[Spoke, ...]
    zones: dict[str, str]  # spoke -> zone of the embedded dataset
    arrivals: tuple[Arrival, ...]
    after_replay: int = 0  # a trace's submissions after the days replayed, left out

    def fleet(self, jobs: tuple[JobRequest, ...]) -> Fleet:
        return Fleet(policy=self.policy, spokes=self.spokes, jobs=jobs, problems=())


class SimulationInputError(Exception):
    """A fleet or trace the replay cannot use; the message names file, field and fix."""


# --- caspian-4 ---------------------------------------------------------------------


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    spokes: tuple[tuple[str, str, int], ...]  # (name, zone, GPUs)
    gpus: tuple[int, int] = (1, 5)
    runtime_hours: tuple[float, float] = (1.0, 4.0)
    deadline_factor: float = 3.0
    utilisation: float = 0.6
    host_watts: float = 150.0  # per job, on top of 300 W per GPU

    @property
    def arrivals_per_hour(self) -> float:
        total = sum(g for _, _, g in self.spokes)
        mean_gpus = (self.gpus[0] + self.gpus[1]) / 2
        mean_hours = (self.runtime_hours[0] + self.runtime_hours[1]) / 2
        return self.utilisation * total / (mean_gpus * mean_hours)


SCENARIOS = {
    "caspian-4": Scenario(
        name="caspian-4",
        spokes=(("fr", "FR", 16), ("de", "DE", 16), ("jp", "JP-TK", 16), ("tx", "US-TEX-ERCO", 16)),
    )
}


def scenario_setup(
    scenario: Scenario, *, start: datetime, days: int, seed: int, time_limit: float
) -> Setup:
    """Poisson arrivals sized for the scenario's utilisation over `days`; deadline =
    arrival + factor x runtime; every job may run on every spoke."""
    spokes = tuple(
        _spoke(name, zone, cpu=64.0 * gpus, memory=512 * GIB * gpus / 8, gpu=float(gpus))
        for name, zone, gpus in scenario.spokes
    )
    names = tuple(spoke.name for spoke in spokes)
    rng = np.random.default_rng(seed)
    arrivals: list[Arrival] = []
    quarter_hours = days * 96
    for quarter in range(quarter_hours):
        at = start + timedelta(minutes=15 * quarter)
        for _ in range(rng.poisson(scenario.arrivals_per_hour / 4)):
            hours = rng.uniform(*scenario.runtime_hours)
            runtime = timedelta(minutes=15 * max(1, round(hours * 4)))
            gpus = int(rng.integers(scenario.gpus[0], scenario.gpus[1] + 1))
            name = f"job-{len(arrivals):05d}"
            template = {"gpus": gpus, "runtime_s": runtime.total_seconds()}
            arrivals.append(
                Arrival(
                    at=at,
                    job=JobRequest(
                        id=f"sim/{name}",
                        name=name,
                        namespace="sim",
                        source=f"jobs/{name}.yaml",
                        job_template=template,
                        template_hash=template_hash(template),
                        cpu=8.0 * gpus,
                        memory_bytes=64 * GIB * gpus,
                        gpu=float(gpus),
                        pod=Resources(cpu=8.0 * gpus, memory_bytes=64 * GIB * gpus, gpu=gpus),
                        duration=runtime,
                        deadline=at + scenario.deadline_factor * runtime,
                        power_watts=300.0 * gpus + scenario.host_watts,
                        allowed_spokes=names,
                    ),
                )
            )
    return Setup(
        name=scenario.name,
        policy=_policy(time_limit),
        spokes=spokes,
        zones={spoke.name: spoke.spec.carbon.zone for spoke in spokes},
        arrivals=tuple(arrivals),
    )


def _spoke(name: str, zone: str, *, cpu: float, memory: float, gpu: float) -> Spoke:
    return Spoke(
        api_version="caspian.dev/v1alpha1",
        kind="Spoke",
        metadata=SpokeMeta(name=name),
        spec=SpokeSpec(
            carbon=CarbonSourceConfig(provider="embedded", zone=zone),
            capacity=Capacity(cpu=cpu, memory=memory, gpu=gpu),
            power=PowerModel(pue=1.2),
        ),
    )


def _policy(time_limit: float, base: PolicySpec | None = None) -> Policy:
    spec = base or PolicySpec()
    solver = spec.solver.model_copy(
        update={"time_limit": timedelta(seconds=time_limit), "gap_rel": 1e-3}
    )
    return Policy(
        api_version="caspian.dev/v1alpha1",
        kind="Policy",
        spec=spec.model_copy(update={"solver": solver}),
    )


# --- a user's fleet ------------------------------------------------------------------


def fleet_setup(
    fleet: Fleet,
    *,
    trace: bytes | None,
    trace_name: str,
    start: datetime,
    days: int,
    time_limit: float,
) -> Setup:
    """The fleet's policy and spokes, each spoke's grid replayed from the embedded
    zone it names (or its fallbackZone); arrivals from the trace, or every
    AppWrapper in jobs/ once at `start` when there is none.

    A trace is CSV with a header: `arrival_hours` (since `start`) and `job` (an
    AppWrapper id, namespace/name). Each row submits that AppWrapper again; its
    deadline is the arrival plus its completeWithin (or the policy default).
    """
    zones = {}
    for spoke in fleet.spokes:
        config = spoke.spec.carbon
        zone = config.zone if config.zone in embedded.zones() else config.fallback_zone
        if zone not in embedded.zones():
            raise SimulationInputError(
                f"spokes/{spoke.name}.yaml: spec.carbon.zone: {config.zone!r} is not in the "
                f"embedded 2023 dataset ({', '.join(embedded.zones())}); set "
                "spec.carbon.fallbackZone to the closest zone to replay it"
            )
        zones[spoke.name] = zone
    by_id = {job.id: job for job in fleet.jobs}
    rows = _trace_rows(trace, trace_name, by_id) if trace is not None else None
    if rows is None:
        rows = [(0.0, job_id) for job_id in sorted(by_id)]
    end = days * 24.0
    arrivals: list[Arrival] = []
    for count, (hours, job_id) in enumerate(rows):
        if hours >= end:  # a trace longer than the replay: its first days only
            continue
        arrivals.append(
            _submission(by_id[job_id], count=count, at=start + timedelta(hours=hours), fleet=fleet)
        )
    if rows and not arrivals:
        raise SimulationInputError(
            f"{trace_name}: no submission falls in the {days} day{'s' * (days != 1)} replayed "
            f"(arrival_hours 0 to {end:g}): lengthen --days or move the arrivals"
        )
    return Setup(
        name=trace_name,
        policy=_policy(time_limit, fleet.policy.spec),
        spokes=fleet.spokes,
        zones=zones,
        arrivals=tuple(sorted(arrivals, key=lambda a: (a.at, a.job.id))),
        after_replay=len(rows) - len(arrivals),
    )


def _trace_rows(trace: bytes, name: str, jobs: Mapping[str, JobRequest]) -> list[tuple[float, str]]:
    reader = csv.DictReader(io.StringIO(trace.decode("utf-8", errors="replace")))
    missing = {"arrival_hours", "job"} - set(reader.fieldnames or ())
    if missing:
        raise SimulationInputError(
            f"{name}: header: missing column(s) {', '.join(sorted(missing))}; the first "
            "line must be `arrival_hours,job`"
        )
    rows, problems = [], []
    for line, row in enumerate(reader, start=2):
        try:
            hours = float(row["arrival_hours"])
            if not math.isfinite(hours):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(
                f"{name}:{line}: arrival_hours: {row['arrival_hours']!r} is not a number"
            )
            continue
        if hours < 0:
            problems.append(
                f"{name}:{line}: arrival_hours: {hours:g} is before the replay starts (hour 0)"
            )
            continue
        job_id, unknown = _trace_job(row["job"], jobs)
        if job_id is None:
            problems.append(f"{name}:{line}: job: {unknown}")
            continue
        rows.append((hours, job_id))
    if problems:
        raise SimulationInputError("\n".join(problems))
    return rows


def _trace_job(job: str | None, jobs: Mapping[str, JobRequest]) -> tuple[str | None, str]:
    """The id of a trace's job, given as namespace/name or, where only one job
    has it, as a name (as `caspian explain` takes it); else why not."""
    if job in jobs:
        return job, ""
    named = [job_id for job_id, request in jobs.items() if request.name == job]
    if len(named) == 1:
        return named[0], ""
    if named:
        return None, f"{job!r} is the name of {', '.join(sorted(named))}: give namespace/name"
    near = difflib.get_close_matches(str(job), [*jobs, *(r.name for r in jobs.values())], n=1)
    hint = f"did you mean {near[0]}?" if near else "use namespace/name, as `caspian plan` prints it"
    return None, f"{job!r} is no valid AppWrapper in jobs/ ({hint})"


def _submission(job: JobRequest, *, count: int, at: datetime, fleet: Fleet) -> Arrival:
    within = job.complete_within or fleet.policy.spec.defaults.complete_within
    name = f"{job.name[:40]}-{count:05d}"
    return Arrival(
        at=at,
        job=job.model_copy(
            update={
                "id": f"{job.namespace}/{name}",
                "name": name,
                "deadline": at + within,
                "complete_within": None,
                "not_before": None,
            }
        ),
    )
