"""`caspian simulate`: the loop, replayed over the 2023 grid data without git.

Every slot the replay does what the shell does around `decide`: it observes the
spokes (jobs run for exactly their duration and then succeed), and at each
re-plan it calls the very `decide` of the reconciler on the jobs that have
arrived, with the previous ledger. Between re-plans the standing plan dispatches
the jobs whose start has come, as the rendered manifests would. Finished jobs
leave the fleet and the ledger, as retention does.

The policies differ only in the planner `decide` is given. `clairvoyant` is not
a loop at all: one plan over the whole replay with every arrival and the actual
intensities known in advance, and that plan's LP bound, so it is the limit any
policy that meets the deadlines can reach.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from carbon import IntensitySeries, Provenance, embedded
from carbon.forecasting import seasonal_naive
from optimizer import baselines, bench
from optimizer.model import Instance, Job, Plan, SolverSettings, SpokeCapacity
from optimizer.solving import optimize
from reconciler.deciding import Planner, decide, optimize_plan, window
from reconciler.decisions import SpokeState
from reconciler.ledger import FINISHED, FIXED, Entry, Ledger, Phase
from reconciler.observing import DeclaredCapacity
from reconciler.optimizerjobs import kwh_per_slot
from reconciler.scenarios import Arrival, Setup

POLICIES = ("qos", "greedy", "round-robin", "caspian", "clairvoyant")
TAIL = timedelta(days=2)  # jobs arriving late still get to run


def _baseline(plan: Callable[[Instance], Plan]) -> Planner:
    return lambda instance, _settings: plan(instance)


PLANNERS: dict[str, Planner] = {
    "caspian": optimize_plan,
    "qos": _baseline(baselines.qos),
    "greedy": _baseline(baselines.greedy),
    "round-robin": _baseline(baselines.round_robin),
}


class Placement(BaseModel):
    model_config = ConfigDict(frozen=True)

    spoke: str
    start: datetime


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
    lp_bound_kg: float | None = None  # clairvoyant only: no plan meeting deadlines emits less
    lp_bound_saved_vs_qos: float | None = None  # the most any policy could save
    # What the reconciler's ledger counted for the jobs that finished (their
    # emittedGrams, reconciler/emissions.py), loop policies only: a second,
    # separate count of kg_co2 (which counts whole slots, the ledger seconds).
    counted_kg_co2: float | None = None
    placements: dict[str, Placement] = {}


class Intensities:
    """The actual 2023 intensity per zone, one value per slot from a day before the
    replay starts (the history a seasonal-naive forecast needs)."""

    def __init__(self, zones: set[str], *, start: datetime, slot_seconds: int, slots: int) -> None:
        self.origin = start - timedelta(days=1)
        self.slot_seconds = slot_seconds
        self.per_day = 86400 // slot_seconds
        first = embedded.hour_of_2023(self.origin)
        # Each slot takes the hour it starts in (any slot length, hourly data).
        hour_of_slot = first + np.arange(slots + self.per_day) * slot_seconds // 3600
        self.values = {
            zone: np.asarray(embedded.hourly(zone, "lifecycle"))[hour_of_slot % embedded.HOURS_2023]
            for zone in zones
        }

    def index(self, moment: datetime) -> int:
        return int((moment - self.origin).total_seconds() // self.slot_seconds)

    def _left_in_hour(self, at: datetime) -> int:
        """Slots from `at` to the end of its hour (the data's own resolution)."""
        seconds_into_hour = (at.minute * 60 + at.second) % 3600
        return max(1, -(-(3600 - seconds_into_hour) // self.slot_seconds))

    def measured(self, zone: str, *, until: datetime) -> IntensitySeries:
        """The intensities from a day before the replay until `until`, as a
        carbon source reads back what it measured."""
        values = self.values[zone][: self.index(until)]
        return IntensitySeries(
            zone=zone,
            start=self.origin,
            slot_seconds=self.slot_seconds,
            values=tuple(float(v) for v in values),
            provenance=Provenance(
                provider="simulate", kind="actual", signal="lifecycle", fetched_at=until
            ),
        )

    def actual(self, zone: str, *, at: datetime, slots: int) -> np.ndarray:
        first = self.index(at)
        return self.values[zone][first : first + slots]

    def forecast(
        self, zone: str, *, at: datetime, slots: int, kind: str, rng: np.random.Generator
    ) -> IntensitySeries:
        """What the planner sees at `at`, as a carbon source would hand it over: the
        current hour as measured (a provider's latest value), the rest as
        forecast by `kind`."""
        actual = self.actual(zone, at=at, slots=slots)
        if kind == "perfect":
            values = actual.copy()
        elif kind == "seasonal-naive":
            first = self.index(at)
            history = self.values[zone][first - self.per_day : first]
            values = np.array(seasonal_naive(history.tolist(), period=self.per_day, steps=slots))
        elif kind.startswith("noisy:"):
            spread = float(kind.split(":", 1)[1].rstrip("%")) / 100
            values = np.maximum(0.0, actual * (1 + rng.normal(0, spread, size=actual.size)))
        else:
            raise ValueError(check_forecast(kind))
        measured = self._left_in_hour(at)
        values[:measured] = actual[:measured]
        return IntensitySeries(
            zone=zone,
            start=at,
            slot_seconds=self.slot_seconds,
            values=tuple(float(v) for v in values),
            provenance=Provenance(
                provider="simulate", kind="forecast", signal="lifecycle", fetched_at=at
            ),
        )


def check_forecast(kind: str) -> str:
    """What is wrong with forecast `kind`, or an empty string if the replay knows it."""
    if kind in ("perfect", "seasonal-naive"):
        return ""
    if kind.startswith("noisy:"):
        try:
            if float(kind.split(":", 1)[1].rstrip("%")) >= 0:
                return ""
        except ValueError:
            pass
    return f"unknown forecast {kind!r}: perfect, seasonal-naive or noisy:PCT (e.g. noisy:10%)"


def run(
    setup: Setup,
    *,
    policy: str,
    start: datetime,
    days: int,
    forecast: str,
    seed: int,
    replan: timedelta = timedelta(hours=1),
    clairvoyant_limit: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> PolicyResult:
    slot = setup.policy.spec.slot_seconds
    steps = int((timedelta(days=days) + TAIL).total_seconds() // slot)
    longest = max((a.job.duration for a in setup.arrivals), default=timedelta(hours=1))
    reach = setup.policy.spec.horizon_slots + math.ceil(longest.total_seconds() / slot) + 1
    grid = Intensities(
        set(setup.zones.values()), start=start, slot_seconds=slot, slots=steps + reach
    )
    if policy == "clairvoyant":
        placements, times, bound = _clairvoyant(
            setup, grid, start=start, steps=steps, limit=clairvoyant_limit
        )
        if progress:
            progress(steps)
    else:
        placements, times, counted = _replay(
            setup,
            grid,
            planner=PLANNERS[policy],
            start=start,
            steps=steps,
            every=max(1, int(replan.total_seconds() // slot)),
            forecast=forecast,
            rng=np.random.default_rng(seed + 1),
            progress=progress,
        )
        bound = None
    result = _score(setup, grid, policy=policy, placements=placements, times=times, bound=bound)
    if policy == "clairvoyant":
        return result
    return result.model_copy(update={"counted_kg_co2": counted / 1000})


def _replay(
    setup: Setup,
    grid: Intensities,
    *,
    planner: Planner,
    start: datetime,
    steps: int,
    every: int,
    forecast: str,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None,
) -> tuple[dict[str, Placement], list[float], float]:
    """The placements the loop made, how long each decision took, and the
    grams the ledger counted for the jobs that finished."""
    slot = timedelta(seconds=setup.policy.spec.slot_seconds)
    pending = list(setup.arrivals)
    present: dict[str, Arrival] = {}
    ledger = Ledger()
    placements: dict[str, Placement] = {}
    times: list[float] = []
    counted = 0.0
    for step in range(steps):
        now = start + step * slot
        while pending and pending[0].at <= now:
            arrival = pending.pop(0)
            present[arrival.job.id] = arrival
        spokes = _observe(setup, present, placements, now=now)
        if step % every == 0 and present:
            fleet = setup.fleet(tuple(a.job for a in present.values()))
            horizon = window(fleet, now=now)
            forecasts = {
                zone: grid.forecast(
                    zone, at=horizon.start, slots=horizon.covered_slots, kind=forecast, rng=rng
                )
                for zone in set(setup.zones.values())
            }
            began = time.monotonic()
            decision = decide(
                fleet=fleet,
                ledger=ledger,
                spokes=spokes,
                forecasts=forecasts,
                now=now,
                planner=planner,
                measured={
                    zone: grid.measured(zone, until=horizon.start + slot)
                    for zone in set(setup.zones.values())
                },
            )
            times.append(time.monotonic() - began)
            ledger = decision.ledger
        else:
            ledger = _dispatch_due(ledger, now=now)
        for entry in ledger.entries:
            if entry.phase in FIXED and entry.id not in placements:
                placements[entry.id] = Placement(spoke=entry.spoke, start=entry.planned_start)
        counted += sum(e.emitted_grams or 0.0 for e in ledger.entries if e.phase in FINISHED)
        ledger, present = _retire(ledger, present)
        if progress:
            progress(1)
    return placements, times, counted


def _observe(
    setup: Setup,
    present: Mapping[str, Arrival],
    placements: Mapping[str, Placement],
    *,
    now: datetime,
) -> dict[str, SpokeState]:
    """Declared capacity, and Caspian's Jobs as a spoke would report them."""
    seen: dict[str, dict[str, str]] = {spoke.name: {} for spoke in setup.spokes}
    began: dict[str, dict[str, datetime]] = {spoke.name: {} for spoke in setup.spokes}
    ended: dict[str, dict[str, datetime]] = {spoke.name: {} for spoke in setup.spokes}
    for job_id, placement in placements.items():
        if job_id not in present or placement.start > now:
            continue
        job = present[job_id].job
        end = placement.start + job.duration
        seen[placement.spoke][job.job_key] = "Succeeded" if end <= now else "Running"
        began[placement.spoke][job.job_key] = placement.start
        if end <= now:
            ended[placement.spoke][job.job_key] = end
    declared = DeclaredCapacity().observe(setup.fleet(()))
    return {
        name: state.model_copy(
            update={
                "source": "simulated",
                "jobs": seen[name],
                "started": began[name],
                "ended": ended[name],
            }
        )
        for name, state in declared.items()
    }


def _dispatch_due(ledger: Ledger, *, now: datetime) -> Ledger:
    """The standing plan between re-plans: planned jobs whose start has come run."""

    def due(entry: Entry) -> Entry:
        if entry.phase == Phase.PLANNED and entry.planned_start and entry.planned_start <= now:
            return entry.model_copy(update={"phase": Phase.DISPATCHED})
        return entry

    return Ledger(entries=tuple(due(entry) for entry in ledger.entries))


def _retire(ledger: Ledger, present: dict[str, Arrival]) -> tuple[Ledger, dict[str, Arrival]]:
    """Finished jobs leave jobs/ and the ledger together (nothing is cancelled)."""
    gone = {entry.id for entry in ledger.entries if entry.phase in FINISHED}
    if not gone:
        return ledger, present
    kept = tuple(entry for entry in ledger.entries if entry.id not in gone)
    return Ledger(entries=kept), {k: v for k, v in present.items() if k not in gone}


def _clairvoyant(
    setup: Setup, grid: Intensities, *, start: datetime, steps: int, limit: float
) -> tuple[dict[str, Placement], list[float], float | None]:
    instance = _whole_replay(setup, grid, start=start, steps=steps)
    began = time.monotonic()
    settings = SolverSettings(time_limit_s=limit, gap_rel=1e-3, late_starts=False)
    plan = optimize(instance, settings=settings)
    elapsed = time.monotonic() - began
    bound, _converged = bench.lp_bound(instance, limit=limit, late_starts=False)
    slot = timedelta(seconds=instance.slot_seconds)
    placements = {
        a.id: Placement(spoke=a.spoke, start=start + a.start_slot * slot) for a in plan.assignments
    }
    # The objective adds a thousandth of a gram per slot of delay to the carbon.
    slack = len(instance.jobs) * instance.slots * 1e-3
    return placements, [elapsed], None if bound is None else max(0.0, bound - slack) / 1000


def _whole_replay(setup: Setup, grid: Intensities, *, start: datetime, steps: int) -> Instance:
    slot = setup.policy.spec.slot_seconds
    longest = max((a.job.duration for a in setup.arrivals), default=timedelta(hours=1))
    covered = steps + math.ceil(longest.total_seconds() / slot)

    def slot_of(moment: datetime) -> int:
        return int((moment - start).total_seconds() // slot)

    jobs = []
    for arrival in setup.arrivals:
        job = arrival.job
        jobs.append(
            Job(
                id=job.id,
                cpu=job.cpu,
                memory_bytes=job.memory_bytes,
                gpu=job.gpu,
                duration_slots=max(1, math.ceil(job.duration.total_seconds() / slot)),
                release_slot=slot_of(arrival.at),
                deadline_slot=slot_of(job.deadline) if job.deadline else steps,
                allowed_spokes=job.allowed_spokes,
                energy_kwh_per_slot={
                    spoke.name: kwh_per_slot(job, spoke=spoke, slot_seconds=slot)
                    for spoke in setup.spokes
                },
            )
        )
    return Instance(
        start=start,
        slot_seconds=slot,
        slots=steps,
        spokes=tuple(
            SpokeCapacity(
                name=spoke.name,
                zone=setup.zones[spoke.name],
                cpu=(spoke.spec.capacity.cpu,) * steps,
                memory_bytes=(spoke.spec.capacity.memory,) * steps,
                gpu=(spoke.spec.capacity.gpu,) * steps,
            )
            for spoke in setup.spokes
        ),
        intensity_g_per_kwh={
            zone: tuple(float(v) for v in grid.actual(zone, at=start, slots=covered))
            for zone in set(setup.zones.values())
        },
        jobs=tuple(jobs),
    )


def _score(
    setup: Setup,
    grid: Intensities,
    *,
    policy: str,
    placements: Mapping[str, Placement],
    times: list[float],
    bound: float | None,
) -> PolicyResult:
    """Carbon on the actual intensities; deadlines and waits from the placements."""
    spokes = {spoke.name: spoke for spoke in setup.spokes}
    slot = setup.policy.spec.slot_seconds
    grams, met, ratios, waits = 0.0, 0, [], []
    for arrival in setup.arrivals:
        job = arrival.job
        placement = placements.get(job.id)
        if placement is None:
            continue
        slots = max(1, math.ceil(job.duration.total_seconds() / slot))
        zone = setup.zones[placement.spoke]
        intensity = grid.actual(zone, at=placement.start, slots=slots)
        spoke = spokes[placement.spoke]
        grams += float(intensity.sum()) * kwh_per_slot(job, spoke=spoke, slot_seconds=slot)
        end = placement.start + job.duration
        deadline = job.deadline or end
        met += end <= deadline
        allowed = (deadline - arrival.at).total_seconds()
        ratios.append((end - arrival.at).total_seconds() / allowed if allowed > 0 else 1.0)
        waits.append((placement.start - arrival.at).total_seconds() / 3600)
    jobs = len(setup.arrivals)
    return PolicyResult(
        policy=policy,
        jobs=jobs,
        finished=len(placements),
        kg_co2=grams / 1000,
        deadlines_met=met / max(jobs, 1),
        mean_completion_over_deadline=statistics.fmean(ratios) if ratios else 0.0,
        p95_wait_hours=float(np.percentile(waits, 95)) if waits else 0.0,
        mean_decide_s=statistics.fmean(times) if times else 0.0,
        max_decide_s=max(times, default=0.0),
        lp_bound_kg=bound,
        placements=dict(placements),
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
            if r.lp_bound_kg is not None:
                update["lp_bound_saved_vs_qos"] = 1 - r.lp_bound_kg / qos.kg_co2
            if limit is not None and qos.kg_co2 > limit.kg_co2:
                update["share_of_clairvoyant_savings"] = (qos.kg_co2 - r.kg_co2) / (
                    qos.kg_co2 - limit.kg_co2
                )
        filled.append(r.model_copy(update=update))
    return filled


def mean_over_runs(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per policy, the mean of every figure over the runs (the max of max_decide_s);
    with one run, that run."""
    if len(runs) == 1:
        return runs[0]
    merged = []
    for index, first in enumerate(runs[0]):
        row: dict[str, Any] = {"policy": first["policy"], "runs": len(runs)}
        for key in first:
            if key == "policy":
                continue
            values = [run[index][key] for run in runs]
            if any(v is None for v in values):
                row[key] = None
            elif key == "max_decide_s":
                row[key] = max(values)
            else:
                row[key] = statistics.fmean(values)
        merged.append(row)
    return merged
