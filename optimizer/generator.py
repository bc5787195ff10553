"""Seeded benchmark instances with a realistic mix, on real 2023 intensity curves.

Spokes sit in different zones of the embedded dataset and come in three sizes,
some without GPUs. Jobs are 30% GPU (1-8 GPUs) and 70% CPU, run 15 minutes to 8
hours (log-uniform), arrive over the first half of the horizon, and have tight,
medium or loose deadlines, all inside the horizon. A fifth of them may only use
some spokes. Work already running holds part of the capacity at the start.
Capacity is scaled so that jobs ask for about `utilisation` of it over the horizon,
which makes the clean hours contested, but never below a realistic spoke size (64
cores and 8 GPUs per size unit), so one job is a small part of a spoke.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from carbon import embedded
from carbon.series import step_means
from optimizer.capacity import Residual
from optimizer.model import Instance, Job, Slot, SpokeCapacity, Weights

GIB = 2.0**30


def generate(
    *,
    jobs: int,
    spokes: int,
    slots: int = 96,
    seed: int = 0,
    slot_seconds: int = 900,
    utilisation: float = 0.6,
) -> Instance:
    rng = np.random.default_rng(seed)
    zones = list(embedded.zones())
    rng.shuffle(zones)
    start = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 360)))
    longest = max(1, math.ceil(8 * 3600 / slot_seconds))
    covered = slots + longest

    names = [f"spoke-{i:02d}" for i in range(spokes)]
    spoke_zone = [zones[i % len(zones)] for i in range(spokes)]
    size = rng.choice([1.0, 2.0, 4.0], size=spokes, p=[0.4, 0.4, 0.2])
    has_gpu = rng.random(spokes) > 0.2
    has_gpu[0] = True
    pue = rng.uniform(1.1, 1.5, size=spokes)

    durations, demand, windows, allowed = [], [], [], []
    for _ in range(jobs):
        duration = max(1, round(math.exp(rng.uniform(0, math.log(8 * 3600 / slot_seconds)))))
        duration = min(duration, slots)
        if rng.random() < 0.3:
            gpu = float(rng.choice([1, 2, 4, 8], p=[0.4, 0.3, 0.2, 0.1]))
            cpu, memory = 8 * gpu, float(rng.choice([16, 32, 64])) * GIB * gpu
        else:
            gpu = 0.0
            cpu = float(rng.choice([1, 2, 4, 8, 16, 32], p=[0.15, 0.2, 0.25, 0.2, 0.12, 0.08]))
            memory = float(rng.choice([1, 2, 4, 8])) * GIB * cpu
        release = 0 if rng.random() < 0.5 else int(rng.integers(0, slots // 2))
        release = min(release, slots - duration)
        kind = rng.random()
        if kind < 0.3:
            deadline = release + math.ceil(duration * rng.uniform(1.0, 1.5))
        elif kind < 0.7:
            deadline = release + duration + int(rng.uniform(4, 12) * 3600 / slot_seconds)
        else:
            deadline = slots
        if rng.random() < 0.2:
            count = int(rng.integers(1, max(2, spokes // 2 + 1)))
            chosen = sorted(rng.choice(spokes, size=count, replace=False).tolist())
        else:
            chosen = list(range(spokes))
        if gpu and not any(has_gpu[i] for i in chosen):
            chosen.append(int(np.flatnonzero(has_gpu)[0]))
        durations.append(duration)
        demand.append((cpu, memory, gpu))
        windows.append((release, min(deadline, slots)))
        allowed.append(sorted(set(chosen)))

    need = np.array(demand)
    work = (need * np.array(durations)[:, None]).sum(axis=0)  # resource-slots asked for
    memory_per_core = rng.choice([4.0, 6.0, 8.0], size=spokes) * GIB
    weights = np.stack([size, size * memory_per_core, size * has_gpu], axis=1)  # per spoke
    per_unit = work / (utilisation * slots * np.maximum(weights.sum(axis=0), 1e-9))
    # Real spokes are much larger than any one job: at least 64 cores and 8 GPUs
    # per size unit, whatever the load.
    floor = np.stack([64 * size, 64 * size * memory_per_core, 8 * size * has_gpu], axis=1)
    capacity = np.maximum(np.ceil(weights * per_unit[None, :]), floor)

    running, fixed_jobs = np.zeros_like(capacity), []
    for _ in range(max(1, jobs // 10)):
        spoke = int(rng.integers(0, spokes))
        left = int(rng.integers(1, 4 * 3600 // slot_seconds + 1))
        cpu = float(max(1.0, math.floor(capacity[spoke, 0] * rng.uniform(0.02, 0.1))))
        if running[spoke, 0] + cpu > 0.3 * capacity[spoke, 0]:
            continue
        running[spoke] += (cpu, 4 * GIB * cpu, 0.0)
        fixed_jobs.append((spoke, left, cpu))
    for i, (cpu, memory, gpu) in enumerate(demand):  # every job fits next to running work
        best = max(allowed[i], key=lambda s: tuple(capacity[s] - running[s]))
        capacity[best] = np.maximum(capacity[best], running[best] + [cpu, memory, gpu])

    free = np.repeat(capacity[:, :, None], slots, axis=2)
    for spoke, left, cpu in fixed_jobs:
        free[spoke, :, :left] -= np.array([cpu, 4 * GIB * cpu, 0.0])[:, None]
    windows = _meetable(windows, durations, demand, allowed, free)
    running_jobs = [
        Job(
            id=f"running-{index:04d}",
            cpu=cpu,
            memory_bytes=4 * GIB * cpu,
            gpu=0.0,
            duration_slots=left + 2,
            deadline_slot=left,
            allowed_spokes=(names[spoke],),
            energy_kwh_per_slot={
                names[spoke]: _energy(cpu, 4 * GIB * cpu, 0, pue[spoke], slot_seconds)
            },
            fixed=Slot(spoke=names[spoke], start_slot=-2),
        )
        for index, (spoke, left, cpu) in enumerate(fixed_jobs)
    ]

    intensity = {}
    for zone in set(spoke_zone):
        hourly = embedded.hourly(zone, "lifecycle")
        first = embedded.hour_of_2023(start)
        hours = math.ceil(covered * slot_seconds / 3600) + 1
        points = [hourly[(first + h) % embedded.HOURS_2023] for h in range(hours)]
        intensity[zone] = step_means(
            points_start=start,
            point_seconds=3600,
            points=points,
            start=start,
            slot_seconds=slot_seconds,
            slots=covered,
        )

    job_list = [
        Job(
            id=f"job-{i:05d}",
            cpu=demand[i][0],
            memory_bytes=demand[i][1],
            gpu=demand[i][2],
            duration_slots=durations[i],
            release_slot=windows[i][0],
            deadline_slot=windows[i][1],
            allowed_spokes=tuple(names[s] for s in allowed[i]),
            energy_kwh_per_slot={
                names[s]: _energy(*demand[i], pue[s], slot_seconds) for s in allowed[i]
            },
        )
        for i in range(jobs)
    ]
    return Instance(
        start=start,
        slot_seconds=slot_seconds,
        slots=slots,
        spokes=tuple(
            SpokeCapacity(
                name=names[s],
                zone=spoke_zone[s],
                cpu=(float(capacity[s, 0]),) * slots,
                memory_bytes=(float(capacity[s, 1]),) * slots,
                gpu=(float(capacity[s, 2]),) * slots,
            )
            for s in range(spokes)
        ),
        intensity_g_per_kwh=intensity,
        jobs=tuple(running_jobs + job_list),
        weights=Weights(),
    )


def _meetable(
    windows: list[tuple[int, int]],
    durations: list[int],
    demand: list[tuple[float, float, float]],
    allowed: list[list[int]],
    free: np.ndarray,
) -> list[tuple[int, int]]:
    """Deadlines some plan meets: the reference plan starts every job as early as
    it fits, in arrival order (as heuristics.earliest does), and no deadline
    falls before the reference completion. Without this, crowded early slots force
    lateness in every integer plan while the LP relaxation splits jobs to dodge it."""
    residual = Residual(free)
    result = list(windows)
    for job in sorted(range(len(windows)), key=lambda i: (windows[i][0], i)):
        release, deadline = windows[job]
        need = np.array(demand[job])
        earliest = None
        for spoke in allowed[job]:
            ok = np.flatnonzero(residual.fits(spoke, durations[job], need)[release:])
            if ok.size and (earliest is None or release + ok[0] < earliest[1]):
                earliest = (spoke, release + int(ok[0]))
        if earliest is None:  # cannot happen once every job fits somewhere
            continue
        residual.take(earliest[0], earliest[1], durations[job], need)
        result[job] = (release, max(deadline, earliest[1] + durations[job]))
    return result


def _energy(cpu: float, memory: float, gpu: float, pue: float, slot_seconds: int) -> float:
    watts = cpu * 10.0 + gpu * 300.0 + memory / GIB * 0.4
    return watts * pue * slot_seconds / 3600 / 1000
