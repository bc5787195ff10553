"""Every (job, spoke, start) the model may choose, as flat numpy arrays.

Column k means "job cj[k] starts on spoke cs[k] in slot ct[k]"; columns are
grouped by job (job i owns k in [first[i], first[i+1])). Only movable jobs have
columns; fixed jobs are folded into the residual capacity, and a start is a
column only where the job fits in what they leave for its whole run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
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

    @functools.cached_property
    def place(self) -> np.ndarray:
        """Per column, its spoke and start as one index into a (spokes x slots)
        plane: where the fit test reads it (`Residual.fit_places`)."""
        return (self.cs.astype(np.int64) * self.slots + self.ct).astype(np.int32)

    @functools.cached_property
    def least_cost(self) -> np.ndarray:
        """Per job, the least it can cost: at its cheapest column, or deferred."""
        cheapest = np.minimum.reduceat(self.cost, self.first[:-1].astype(np.intp))
        return np.minimum(cheapest, self.defer)

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


def _cumulative_intensity(instance: Instance) -> np.ndarray:
    """(spokes, horizon + 1): running sums of each spoke's zone intensity, so
    that a run's carbon is two reads. A zone with a shorter series repeats its
    total past its end, which reads as the run stopping where the series does."""
    series = [
        np.asarray(instance.intensity_g_per_kwh[s.zone], dtype=float) for s in instance.spokes
    ]
    longest = max((len(values) for values in series), default=0)
    table = np.zeros((len(series), longest + 1))
    for row, values in zip(table, series, strict=True):
        row[1 : len(values) + 1] = np.cumsum(values)
        row[len(values) + 1 :] = row[len(values)]
    return table


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
    # The room does not change while columns are built, so each duration's
    # least room over a run is read once, and a job tests all its spokes in
    # one array operation: one per (job, spoke) took over 4 s at 5000 x 20.
    least_room: dict[int, np.ndarray] = {}
    slots = instance.slots
    opens = open_starts(instance)

    found: list[tuple[np.ndarray, np.ndarray]] = []  # (spokes, starts) per kept job
    kept: list[Job] = []
    without: list[Job] = []
    for job in instance.jobs:
        if job.fixed is not None:
            continue
        run = job.duration_slots
        if run not in least_room:
            least_room[run] = room.room(run)
        need = np.array([job.demand(r) for r in RESOURCES])
        allowed = np.array([spoke_index[name] for name in job.allowed_spokes], dtype=np.int32)
        earliest = max(job.release_slot, 0)
        last = slots if late_starts else min(slots, job.deadline_slot - run + 1)
        span = slice(earliest, max(last, earliest))
        window = least_room[run][allowed, :, span]
        fits = (window >= need[None, :, None] - 1e-9).all(axis=1) & opens[allowed, span]
        # Spokes in the job's order, each with its starts in time order.
        which, offset = np.nonzero(fits)
        if which.size == 0:
            without.append(job)
            continue
        found.append((allowed[which], (offset + earliest).astype(np.int32)))
        kept.append(job)

    counts = np.array([spokes.size for spokes, _ in found], dtype=np.int64)
    cj = np.repeat(np.arange(len(kept), dtype=np.int32), counts)
    cs = _joined([spokes for spokes, _ in found])
    ct = _joined([starts for _, starts in found])
    first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    duration = np.array([job.duration_slots for job in kept], dtype=np.int32)
    carbon, cost, floors = _costs(instance, tuple(kept), cj=cj, cs=cs, ct=ct, first=first)
    columns = Columns(
        jobs=tuple(kept),
        spokes=spoke_names,
        slots=slots,
        cj=cj,
        cs=cs,
        ct=ct,
        end=np.minimum(ct + duration[cj], slots).astype(np.int32),
        carbon=carbon,
        cost=cost,
        first=first,
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


def open_starts(instance: Instance) -> np.ndarray:
    """(spokes, slots): whether something new may start there then."""
    opens = np.ones((len(instance.spokes), instance.slots), dtype=bool)
    for index, spoke in enumerate(instance.spokes):
        closed = [t for t in spoke.closed_starts if 0 <= t < instance.slots]
        opens[index, closed] = False
    return opens


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)


def _costs(
    instance: Instance,
    jobs: tuple[Job, ...],
    *,
    cj: np.ndarray,
    cs: np.ndarray,
    ct: np.ndarray,
    first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each column's carbon and cost, and each job's lateness floor: the
    lateness no start of the job avoids (it runs longer than its deadline
    allows, say), the same in every plan, so left out of its costs. Left in,
    it weighed in the solver's relative gap, and a plan "optimal" within 0.01%
    of two million grams of lateness could be 200 g of carbon from the best."""
    spoke_index = {spoke.name: i for i, spoke in enumerate(instance.spokes)}
    weights = instance.weights
    energy = np.zeros((len(jobs), len(instance.spokes)))
    previous = np.full((len(jobs), 2), -1, dtype=np.int64)  # spoke, start; -1 where none
    for index, job in enumerate(jobs):
        for name, kwh in job.energy_kwh_per_slot.items():
            if name in spoke_index:
                energy[index, spoke_index[name]] = kwh
        if job.previous is not None:
            # A spoke that is gone matches no column: every place is a move.
            previous[index] = spoke_index.get(job.previous.spoke, -2), job.previous.start_slot
    run = np.array([job.duration_slots for job in jobs], dtype=np.int64)
    deadline = np.array([job.deadline_slot for job in jobs], dtype=np.int64)
    priority = np.array([job.lateness_weight for job in jobs], dtype=float)
    cumulative = _cumulative_intensity(instance)
    carbon, cost, floors = np.empty(cj.size), np.empty(cj.size), np.zeros(len(jobs))
    # A block of jobs at a time: over all 7 million columns of 5000 x 20 at
    # once, the temporaries' fresh pages made this take 2 s instead of 0.5.
    for lo, hi in _blocks(first, columns=1 << 16):
        part = slice(int(first[lo]), int(first[hi]))
        j, s, t = cj[part], cs[part], ct[part]
        stop = np.minimum(t + run[j], cumulative.shape[1] - 1)
        carbon[part] = (cumulative[s, stop] - cumulative[s, t]) * energy[j, s]
        late = np.maximum(0, t + run[j] - deadline[j])
        late_g = late * weights.lateness_g_per_slot * priority[j]
        floors[lo:hi] = np.minimum.reduceat(late_g, first[lo:hi] - first[lo])
        moved = (previous[j, 0] != -1) & ((previous[j, 0] != s) | (previous[j, 1] != t))
        cost[part] = (
            carbon[part] + late_g + t * TIE_BREAK_G_PER_SLOT + np.where(moved, weights.move_g, 0.0)
        ) - floors[j]
    return carbon, cost, floors


def _blocks(first: np.ndarray, *, columns: int) -> Iterator[tuple[int, int]]:
    """Runs of jobs [lo, hi) of about `columns` columns each (one job at least)."""
    jobs = len(first) - 1
    lo = 0
    while lo < jobs:
        hi = int(np.searchsorted(first, first[lo] + columns, side="right")) - 1
        hi = min(max(hi, lo + 1), jobs)
        yield lo, hi
        lo = hi
