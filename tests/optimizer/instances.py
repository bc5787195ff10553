"""Small instances for the optimizer tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np

from optimizer import columns as cols
from optimizer.generator import generate
from optimizer.model import Instance, Job, Slot, SpokeCapacity, Weights

START = datetime(2026, 3, 1, tzinfo=UTC)


def spoke(name: str, zone: str, *, slots: int, cpu: float = 8, mem: float = 64e9, gpu: float = 2):
    return SpokeCapacity(
        name=name, zone=zone, cpu=(cpu,) * slots, memory_bytes=(mem,) * slots, gpu=(gpu,) * slots
    )


def job(
    job_id: str,
    *,
    spokes=("a", "b"),
    cpu=2.0,
    gpu=0.0,
    duration=2,
    release=0,
    deadline=100,
    energy=1.0,
    fixed: Slot | None = None,
    previous: Slot | None = None,
) -> Job:
    return Job(
        id=job_id,
        cpu=cpu,
        memory_bytes=1e9,
        gpu=gpu,
        duration_slots=duration,
        release_slot=release,
        deadline_slot=deadline,
        allowed_spokes=tuple(spokes),
        energy_kwh_per_slot=dict.fromkeys(spokes, energy),
        fixed=fixed,
        previous=previous,
    )


def random_instance(
    seed: int, *, jobs: int = 3, slots: int = 5, weighted: bool = False
) -> Instance:
    """A tiny random instance; `weighted` gives its jobs priorities (lateness
    weights), drawn apart so that the rest is the same instance as without."""
    rng = random.Random(seed)
    priorities = random.Random(seed * 7919 + 1)
    spokes = (
        spoke("a", "ZA", slots=slots, cpu=rng.choice([4, 6, 8]), gpu=rng.choice([0, 1, 2])),
        spoke("b", "ZB", slots=slots, cpu=rng.choice([4, 8]), gpu=rng.choice([1, 2])),
    )
    intensity = {
        zone: tuple(round(rng.uniform(20, 500), 1) for _ in range(slots + 4))
        for zone in ("ZA", "ZB")
    }
    job_list = []
    for index in range(jobs):
        allowed = rng.choice([("a",), ("b",), ("a", "b"), ("a", "b")])
        duration = rng.randint(1, 3)
        release = rng.randint(0, 2)
        job_list.append(
            Job(
                id=f"j{index}",
                cpu=rng.choice([1, 2, 4, 6]),
                memory_bytes=1e9,
                gpu=rng.choice([0, 0, 1, 2]),
                duration_slots=duration,
                release_slot=release,
                deadline_slot=release + duration + rng.randint(0, 3),
                allowed_spokes=allowed,
                energy_kwh_per_slot={s: round(rng.uniform(0.1, 3), 3) for s in allowed},
                previous=(
                    Slot(spoke=allowed[0], start_slot=rng.randint(0, slots - 1))
                    if rng.random() < 0.3
                    else None
                ),
                lateness_weight=priorities.choice([0.1, 1.0, 1.0, 10.0]) if weighted else 1.0,
            )
        )
    return Instance(
        start=START,
        slot_seconds=900,
        slots=slots,
        spokes=spokes,
        intensity_g_per_kwh=intensity,
        jobs=tuple(job_list),
        weights=Weights(lateness_g_per_slot=1000.0, move_g=5.0),
    )


def generated(*, jobs: int, spokes: int, seed: int) -> tuple[cols.Columns, np.ndarray]:
    """A benchmark instance's columns, and the capacity its running work leaves."""
    instance = generate(jobs=jobs, spokes=spokes, seed=seed)
    columns, _ = cols.build(instance)
    return columns, cols.free_room(instance)


def one_spoke(*jobs: Job, slots: int) -> Instance:
    """`jobs` on spoke a alone (8 cores), at a flat 100 g/kWh: where only
    room and deadlines decide."""
    return Instance(
        start=START,
        slot_seconds=900,
        slots=slots,
        spokes=(spoke("a", "ZA", slots=slots, cpu=8),),
        intensity_g_per_kwh={"ZA": (100.0,) * (slots + 8)},
        jobs=jobs,
    )


def crowded(seed: int, *, jobs: int = 12, slots: int = 24, calm: int = 0) -> Instance:
    """More work than spoke a (8 cores) can finish by the deadlines, all due
    within 16 slots: some jobs are late whatever happens. `calm` more jobs may
    only use spoke b, where there is room for them all on time."""
    rng = random.Random(seed)
    job_list = [
        Job(
            id=f"j{index}",
            cpu=rng.choice([1, 2, 3, 4, 6, 8]),
            memory_bytes=1e9,
            gpu=0,
            duration_slots=rng.choice([1, 2, 4, 8]),
            release_slot=0,
            deadline_slot=rng.randint(0, 16),
            allowed_spokes=("a",),
            energy_kwh_per_slot={"a": 1.0},
        )
        for index in range(jobs)
    ]
    job_list += [
        job(f"calm{index}", spokes=("b",), cpu=1, duration=2, deadline=slots)
        for index in range(calm)
    ]
    return Instance(
        start=START,
        slot_seconds=900,
        slots=slots,
        spokes=(spoke("a", "ZA", slots=slots, cpu=8), spoke("b", "ZB", slots=slots, cpu=8)),
        intensity_g_per_kwh={
            zone: tuple(base + (t % 7) * 10 for t in range(slots + 8))
            for zone, base in (("ZA", 100.0), ("ZB", 150.0))
        },
        jobs=tuple(job_list),
    )
