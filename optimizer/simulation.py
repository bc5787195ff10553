"""`caspian simulate`: a discrete-time replay of a CASPIAN-style workload on the
real 2023 intensity data, with the planner re-planning every period as the loop
would (rolling 24 h horizon, jobs fixed once started, arrivals over time).

It drives the optimizer core that `decide` uses (`Instance` in, `Plan` out)
directly, without files or git, so that a week replays in minutes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict

from carbon import embedded
from optimizer import baselines, columns, heuristics
from optimizer.model import Instance, Job, Plan, Slot, SolverSettings, SpokeCapacity, Weights
from optimizer.solving import optimize

SLOT = 900
HORIZON = 96
GPU_WATTS, HOST_WATTS, PUE = 300.0, 150.0, 1.2


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    spokes: tuple[tuple[str, str, int], ...]  # (name, zone, GPUs)
    gpus: tuple[int, int] = (1, 5)
    runtime_hours: tuple[float, float] = (1.0, 4.0)
    deadline_factor: float = 3.0
    utilisation: float = 0.6

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


class SimJob(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    arrival: int  # absolute slot
    duration: int
    gpus: int
    deadline: int  # absolute slot, exclusive


def arrivals(scenario: Scenario, *, slots: int, seed: int) -> list[SimJob]:
    """Poisson arrivals sized for the scenario's utilisation; deadline = arrival +
    factor x runtime."""
    rng = np.random.default_rng(seed)
    jobs = []
    for slot in range(slots):
        for _ in range(rng.poisson(scenario.arrivals_per_hour * SLOT / 3600)):
            hours = rng.uniform(*scenario.runtime_hours)
            duration = max(1, round(hours * 3600 / SLOT))
            jobs.append(
                SimJob(
                    id=f"job-{len(jobs):05d}",
                    arrival=slot,
                    duration=duration,
                    gpus=int(rng.integers(scenario.gpus[0], scenario.gpus[1] + 1)),
                    deadline=slot + math.ceil(scenario.deadline_factor * duration),
                )
            )
    return jobs


def actual_intensity(zone: str, *, start: datetime, slots: int) -> np.ndarray:
    hourly = embedded.hourly(zone, "lifecycle")
    first = embedded.hour_of_2023(start)
    per_hour = 3600 // SLOT
    hours = [hourly[(first + h) % embedded.HOURS_2023] for h in range(slots // per_hour + 2)]
    return np.repeat(np.asarray(hours, dtype=float), per_hour)[:slots]


def forecast_of(actual: np.ndarray, *, at: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """What the planner sees at slot `at` for the next HORIZON + 32 slots."""
    span = slice(at, at + HORIZON + 32)
    if kind == "perfect":
        return actual[span]
    if kind == "seasonal-naive":  # the same time yesterday
        day = 86400 // SLOT
        return actual[max(at - day, 0) : max(at - day, 0) + HORIZON + 32]
    if kind.startswith("noisy:"):
        spread = float(kind.split(":", 1)[1].rstrip("%")) / 100
        return np.maximum(0.0, actual[span] * (1 + rng.normal(0, spread, size=HORIZON + 32)))
    raise ValueError(f"unknown forecast {kind!r}: perfect, seasonal-naive or noisy:PCT")


Policy = Callable[[Instance], Plan]


def policies(time_limit: float) -> dict[str, Policy]:
    settings = SolverSettings(time_limit_s=time_limit, gap_rel=1e-3)
    return {
        "caspian": lambda instance: optimize(instance, settings=settings),
        "clairvoyant": lambda instance: optimize(instance, settings=settings),
        "qos": baselines.qos,
        "greedy": baselines.greedy,
        "round-robin": round_robin,
    }


def round_robin(instance: Instance) -> Plan:
    """Spokes in turn, in arrival order, each job at its earliest fitting start
    there (or anywhere, if that spoke has no room in the horizon)."""
    cols, _ = columns.build(instance)
    free = columns.capacity_array(instance) - columns.fixed_usage(instance)
    residual = heuristics.Residual(free)
    choice = np.full(len(cols.jobs), -1, dtype=np.int64)
    order = sorted(
        range(len(cols.jobs)), key=lambda i: (cols.jobs[i].release_slot, cols.jobs[i].id)
    )
    for turn, job in enumerate(order):
        part = cols.of_job(job)
        ok = heuristics.feasible(cols, residual, job)
        preferred = ok & (cols.cs[part] == turn % len(cols.spokes))
        pick = preferred if preferred.any() else ok
        if not pick.any():
            continue
        k = part.start + int(np.argmin(np.where(pick, cols.ct[part], np.iinfo(np.int32).max)))
        choice[job] = k
        residual.take(int(cols.cs[k]), int(cols.ct[k]), int(cols.duration[job]), cols.demand[job])
    from optimizer.plans import build_plan

    return build_plan(
        instance,
        choices=cols.slots_of(choice),
        unplaceable={},
        solver_status="round-robin",
        method="round-robin",
    )


class PolicyResult(BaseModel):
    policy: str
    jobs: int
    finished: int
    kg_co2: float
    saved_vs_qos: float | None = None
    share_of_clairvoyant_savings: float | None = None
    deadlines_met: float
    mean_completion_over_deadline: float
    p95_wait_hours: float
    mean_decide_s: float
    max_decide_s: float
    starts: dict[str, tuple[str, int]] = {}


def run(
    scenario: Scenario,
    *,
    policy: str,
    start: datetime,
    days: int,
    forecast: str,
    seed: int,
    replan_slots: int = 4,
    time_limit: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> PolicyResult:
    slots = days * 86400 // SLOT
    tail = 2 * 86400 // SLOT  # jobs arriving late still get to run
    jobs = arrivals(scenario, slots=slots, seed=seed)
    total = slots + tail + HORIZON + 64
    actual = {
        zone: actual_intensity(zone, start=start - timedelta(days=1), slots=total + 96)[96:]
        for _, zone, _ in scenario.spokes
    }
    history = {
        zone: actual_intensity(zone, start=start - timedelta(days=1), slots=total + 96)
        for _, zone, _ in scenario.spokes
    }
    rng = np.random.default_rng(seed + 1)
    decide = policies(time_limit)[policy]
    clairvoyant = policy == "clairvoyant"
    kind = "perfect" if clairvoyant else forecast
    started: dict[str, tuple[str, int]] = {}
    times = []
    by_id = {job.id: job for job in jobs}
    for now in range(0, slots + tail, replan_slots):
        visible = [
            j
            for j in jobs
            if j.id not in started
            and (j.arrival <= now or (clairvoyant and j.arrival < now + HORIZON))
        ]
        running = [j for j in jobs if j.id in started and started[j.id][1] + j.duration > now]
        if not visible:
            if progress:
                progress(replan_slots)
            continue
        seen = {
            zone: forecast_of(history[zone], at=now + 96, kind=kind, rng=rng) for zone in history
        }
        instance = _instance(
            scenario,
            now=now,
            visible=visible,
            running=running,
            started=started,
            intensity=seen,
            start=start,
        )
        began = time.monotonic()
        plan = decide(instance)
        times.append(time.monotonic() - began)
        for a in plan.assignments:
            if a.id in by_id and a.id not in started and a.start_slot < replan_slots:
                started[a.id] = (a.spoke, now + a.start_slot)
        if progress:
            progress(replan_slots)
    return _score(scenario, policy, jobs, started, actual, times)


def _instance(
    scenario: Scenario,
    *,
    now: int,
    visible: list[SimJob],
    running: list[SimJob],
    started: dict[str, tuple[str, int]],
    intensity: dict[str, np.ndarray],
    start: datetime,
) -> Instance:
    names = [name for name, _, _ in scenario.spokes]
    energy = dict.fromkeys(names, 0.0)

    def job(j: SimJob, fixed: Slot | None) -> Job:
        kwh = (j.gpus * GPU_WATTS + HOST_WATTS) * PUE * SLOT / 3600 / 1000
        return Job(
            id=j.id,
            cpu=0.0,
            memory_bytes=0.0,
            gpu=float(j.gpus),
            duration_slots=j.duration,
            release_slot=max(j.arrival - now, 0),
            deadline_slot=j.deadline - now,
            allowed_spokes=tuple(names),
            energy_kwh_per_slot=dict.fromkeys(energy, kwh),
            fixed=fixed,
        )

    return Instance(
        start=start + timedelta(seconds=now * SLOT),
        slot_seconds=SLOT,
        slots=HORIZON,
        spokes=tuple(
            SpokeCapacity(
                name=name,
                zone=zone,
                cpu=(1e6,) * HORIZON,
                memory_bytes=(1e15,) * HORIZON,
                gpu=(float(gpus),) * HORIZON,
            )
            for name, zone, gpus in scenario.spokes
        ),
        intensity_g_per_kwh={
            zone: tuple(float(v) for v in values) for zone, values in intensity.items()
        },
        jobs=tuple(
            [job(j, None) for j in visible]
            + [
                job(j, Slot(spoke=started[j.id][0], start_slot=started[j.id][1] - now))
                for j in running
            ]
        ),
        weights=Weights(lateness_g_per_slot=100_000.0, move_g=0.0),
    )


def _score(
    scenario: Scenario,
    policy: str,
    jobs: list[SimJob],
    started: dict[str, tuple[str, int]],
    actual: dict[str, np.ndarray],
    times: list[float],
) -> PolicyResult:
    zone = {name: z for name, z, _ in scenario.spokes}
    grams, met, ratios, waits = 0.0, 0, [], []
    for j in jobs:
        if j.id not in started:
            continue
        spoke, begin = started[j.id]
        kwh = (j.gpus * GPU_WATTS + HOST_WATTS) * PUE * SLOT / 3600 / 1000
        grams += float(actual[zone[spoke]][begin : begin + j.duration].sum()) * kwh
        end = begin + j.duration
        met += end <= j.deadline
        ratios.append((end - j.arrival) / (j.deadline - j.arrival))
        waits.append((begin - j.arrival) * SLOT / 3600)
    return PolicyResult(
        policy=policy,
        jobs=len(jobs),
        finished=len(started),
        kg_co2=grams / 1000,
        deadlines_met=met / max(len(jobs), 1),
        mean_completion_over_deadline=statistics.fmean(ratios) if ratios else 0.0,
        p95_wait_hours=float(np.percentile(waits, 95)) if waits else 0.0,
        mean_decide_s=statistics.fmean(times) if times else 0.0,
        max_decide_s=max(times, default=0.0),
        starts=started,
    )


def compare(results: list[PolicyResult]) -> list[PolicyResult]:
    """Fill in savings against qos and the share of the clairvoyant's savings."""
    qos = next((r for r in results if r.policy == "qos"), None)
    limit = next((r for r in results if r.policy == "clairvoyant"), None)
    filled = []
    for r in results:
        update: dict[str, float | None] = {}
        if qos is not None and qos.kg_co2 > 0:
            update["saved_vs_qos"] = 1 - r.kg_co2 / qos.kg_co2
            if limit is not None and qos.kg_co2 > limit.kg_co2:
                update["share_of_clairvoyant_savings"] = (qos.kg_co2 - r.kg_co2) / (
                    qos.kg_co2 - limit.kg_co2
                )
        filled.append(r.model_copy(update=update))
    return filled


def parse_start(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
