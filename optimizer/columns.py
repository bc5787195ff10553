"""Every (job, spoke, start) the model may choose, as flat numpy arrays.

Column k means "job cj[k] starts on spoke cs[k] in slot ct[k]"; columns are
grouped by job (job i owns k in [first[i], first[i+1])). Only movable jobs have
columns; fixed jobs are folded into the residual capacity, and a start is a
column only where the job fits in what they leave for its whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.capacity import Residual
from optimizer.costs import TIE_BREAK_G_PER_SLOT, defer_cost
from optimizer.model import RESOURCES, Instance, Job, Slot


@dataclass(frozen=True)
class Columns:
    jobs: tuple[Job, ...]  # the movable jobs that have at least one column
    spokes: tuple[str, ...]
    slots: int
    cj: np.ndarray  # int32 job index
    cs: np.ndarray  # int32 spoke index
    ct: np.ndarray  # int32 start slot
    end: np.ndarray  # int32 first slot after the run, capped at the horizon
    carbon: np.ndarray  # grams
    cost: np.ndarray  # carbon + lateness (beyond what its job cannot avoid) + move + tie-break
    first: np.ndarray  # int64, len(jobs) + 1
    demand: np.ndarray  # (jobs, resources)
    duration: np.ndarray  # int32 per job
    defer: np.ndarray  # cost of leaving each job unplaced

    @property
    def size(self) -> int:
        return len(self.cj)

    def of_job(self, index: int) -> slice:
        return slice(int(self.first[index]), int(self.first[index + 1]))

    def subset(self, jobs: np.ndarray, keep: np.ndarray) -> tuple[Columns, np.ndarray]:
        """The columns `keep` of the jobs `jobs` as a problem of their own, and the
        original index of each of its columns. Every job needs one column at least."""
        renumber = np.full(len(self.jobs), -1, dtype=np.int64)
        renumber[jobs] = np.arange(len(jobs))
        keep = keep[np.lexsort((keep, renumber[self.cj[keep]]))]
        cj = renumber[self.cj[keep]].astype(np.int32)
        counts = np.bincount(cj, minlength=len(jobs))
        sub = Columns(
            jobs=tuple(self.jobs[i] for i in jobs),
            spokes=self.spokes,
            slots=self.slots,
            cj=cj,
            cs=self.cs[keep],
            ct=self.ct[keep],
            end=self.end[keep],
            carbon=self.carbon[keep],
            cost=self.cost[keep],
            first=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            demand=self.demand[jobs],
            duration=self.duration[jobs],
            defer=self.defer[jobs],
        )
        return sub, keep

    def cheapest(self, score: np.ndarray, *, per_job: int) -> np.ndarray:
        """Each job's `per_job` columns of lowest `score` (one per column)."""
        ranked = np.lexsort((score, self.cj))
        rank = np.arange(self.size) - self.first[self.cj[ranked]]
        return np.sort(ranked[rank < per_job])

    def slots_of(self, choice: np.ndarray | None) -> dict[str, Slot | None]:
        """A solution (one column per job, -1 deferred) as job id -> (spoke, start)."""
        if choice is None:
            return {job.id: None for job in self.jobs}
        return {
            job.id: (
                Slot(spoke=self.spokes[self.cs[k]], start_slot=int(self.ct[k]))
                if (k := int(choice[i])) >= 0
                else None
            )
            for i, job in enumerate(self.jobs)
        }


def capacity_array(instance: Instance) -> np.ndarray:
    """(spokes, resources, slots) capacity left for Caspian."""
    return np.array(
        [[spoke.resource(r) for r in RESOURCES] for spoke in instance.spokes], dtype=float
    )


def fixed_usage(instance: Instance) -> np.ndarray:
    """(spokes, resources, slots) held by fixed (dispatched, running) jobs."""
    index = {spoke.name: i for i, spoke in enumerate(instance.spokes)}
    usage = np.zeros((len(instance.spokes), len(RESOURCES), instance.slots))
    for job in instance.jobs:
        if job.fixed is None:
            continue
        first = max(job.fixed.start_slot, 0)
        last = min(job.fixed.start_slot + job.duration_slots, instance.slots)
        if first < last:
            demand = np.array([job.demand(r) for r in RESOURCES])
            usage[index[job.fixed.spoke], :, first:last] += demand[:, None]
    return usage


def free_room(instance: Instance) -> np.ndarray:
    """(spokes, resources, slots) capacity left for new work beside the fixed
    jobs: none where they already exceed it (a spoke's room shrank under its
    running work, or maintenance shut it). Below zero, it would be a
    constraint no plan meets: the Lagrangian bound then grew with its price
    without end, and a plan 7 late slots from the best passed for optimal."""
    return np.maximum(capacity_array(instance) - fixed_usage(instance), 0.0)


def build(
    instance: Instance, *, late_starts: bool = True, beside_running: bool = True
) -> tuple[Columns, list[Job]]:
    """The columns of every movable job, and the movable jobs that have none.

    With `late_starts`, starts that finish after the deadline are columns too,
    paid for by the lateness weight; without, only starts that meet it. With
    `beside_running`, only starts where the job fits beside the fixed work;
    without, every start where it fits an empty spoke (to explain a plan)."""
    spoke_names = tuple(spoke.name for spoke in instance.spokes)
    spoke_index = {name: i for i, name in enumerate(spoke_names)}
    # A start that does not fit next to the fixed work in some slot of its run
    # is in no integer plan; left in, the LP relaxation runs a fraction of it
    # there and its bound stops meaning anything.
    room = Residual(free_room(instance) if beside_running else capacity_array(instance))
    cumulative = {
        zone: np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=float))])
        for zone, values in instance.intensity_g_per_kwh.items()
    }
    zone_of = [spoke.zone for spoke in instance.spokes]
    weights = instance.weights
    slots = instance.slots

    parts: list[tuple[np.ndarray, ...]] = []
    floors: list[float] = []  # per kept job, the lateness it cannot avoid, in grams
    kept: list[Job] = []
    without: list[Job] = []
    for job in instance.jobs:
        if job.fixed is not None:
            continue
        need = np.array([job.demand(r) for r in RESOURCES])
        last = slots if late_starts else min(slots, job.deadline_slot - job.duration_slots + 1)
        starts = np.arange(max(job.release_slot, 0), max(last, 0), dtype=np.int32)
        pieces = []
        for name in job.allowed_spokes:
            s = spoke_index[name]
            fitting = starts[room.fits(s, job.duration_slots, need)[starts]]
            if fitting.size == 0:
                continue
            series = cumulative[zone_of[s]]
            stop = np.minimum(fitting + job.duration_slots, len(series) - 1)
            carbon = (series[stop] - series[fitting]) * job.energy_kwh_per_slot[name]
            late = np.maximum(0, fitting + job.duration_slots - job.deadline_slot)
            late_g = late * weights.lateness_g_per_slot * job.lateness_weight
            cost = carbon + late_g + fitting * TIE_BREAK_G_PER_SLOT
            if job.previous is not None:
                cost = cost + np.where(
                    (name == job.previous.spoke) & (fitting == job.previous.start_slot),
                    0.0,
                    weights.move_g,
                )
            pieces.append((np.full(fitting.size, s, dtype=np.int32), fitting, carbon, cost, late_g))
        if not pieces:
            without.append(job)
            continue
        # The lateness no start of the job avoids (it runs longer than its
        # deadline allows, say) is the same in every plan: left in, it weighed
        # in the solver's relative gap, and a plan "optimal" within 0.01% of
        # two million grams of lateness could be 200 g of carbon from the best.
        floor = min(float(p[4].min()) for p in pieces)
        floors.append(floor)
        index = len(kept)
        kept.append(job)
        cs = np.concatenate([p[0] for p in pieces])
        parts.append(
            (
                np.full(cs.size, index, dtype=np.int32),
                cs,
                np.concatenate([p[1] for p in pieces]),
                np.concatenate([p[2] for p in pieces]),
                np.concatenate([p[3] for p in pieces]) - floor,
            )
        )

    def joined(position: int, dtype: type) -> np.ndarray:
        if not parts:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([p[position] for p in parts]).astype(dtype, copy=False)

    cj = joined(0, np.int32)
    ct = joined(2, np.int32)
    duration = np.array([job.duration_slots for job in kept], dtype=np.int32)
    counts = np.bincount(cj, minlength=len(kept)) if kept else np.zeros(0, dtype=np.int64)
    columns = Columns(
        jobs=tuple(kept),
        spokes=spoke_names,
        slots=slots,
        cj=cj,
        cs=joined(1, np.int32),
        ct=ct,
        end=np.minimum(ct + duration[cj], slots).astype(np.int32) if kept else ct,
        carbon=joined(3, float),
        cost=joined(4, float),
        first=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        demand=np.array([[job.demand(r) for r in RESOURCES] for job in kept], dtype=float).reshape(
            len(kept), len(RESOURCES)
        ),
        duration=duration,
        defer=np.array(
            [defer_cost(instance, job) - floor for job, floor in zip(kept, floors, strict=True)],
            dtype=float,
        ),
    )
    return columns, without
