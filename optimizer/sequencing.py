"""Sequencing: where capacity leaves jobs late, search the order jobs are placed in.

On an overloaded spoke the room a late job needs is held by several jobs that
are each on time where they are, so no single move, and no make-room move that
keeps them on time, helps; and the time-indexed model's LP bound is weak there,
so the MILP proves little in the time. On an instance a soak of the loop
found (32 jobs on one spoke; HiGHS proves 82 late slots the least in 69 s),
20 s of the rest of the optimizer returned plans with 90-97.

Here a plan of the jobs involved is an order: each job in turn starts as early
as it fits (the cheapest of the equally early columns), so the jobs pack to the
left, as a plan that minimises lateness does. One job at a time is taken out of
the order and put back elsewhere, the late ones towards the front first, and the
move is kept when the plan gets cheaper. The order is decoded again only from
the first position that changed, and a decoding stops once what it placed
already costs more than the best (costs are never negative). On that
instance the search from its first start reaches 82 late slots in about 2 s.
"""

from __future__ import annotations

import time

import numpy as np

from optimizer.capacity import fitting_starts
from optimizer.columns import Columns
from optimizer.heuristics import DEFERRED, improve, objective, usage, width

# At most this many jobs are ordered: the late ones and those on their spokes,
# earliest first. A decoding costs about 30 us a job; many more and a search of
# a few seconds tries too few moves to matter.
MOST_JOBS = 100
# A column's start counts this much more than its cost: the earliest start wins.
EARLIEST = 1e12


def late_beyond_floor(columns: Columns, choice: np.ndarray) -> np.ndarray:
    """Bool per job: deferred, or later than its earliest column would leave it
    (the lateness no start avoids is no fault of the plan)."""
    k = np.maximum(choice, 0)
    deadline = np.array([job.deadline_slot for job in columns.jobs], dtype=np.int64)
    earliest = np.minimum.reduceat(columns.ct, columns.first[:-1].astype(np.intp))
    floor = np.maximum(earliest + columns.duration - deadline, 0)
    late = np.maximum(columns.ct[k] + columns.duration - deadline, 0)
    return (choice < 0) | (late > floor)


def reorder(
    columns: Columns, free: np.ndarray, choice: np.ndarray, *, deadline: float
) -> np.ndarray:
    """`choice` improved by insertion moves over the order of the late jobs and
    those they share spokes with, until none helps or `deadline`
    (time.monotonic()) passes; `choice` itself when no job is late."""
    late = late_beyond_floor(columns, choice)
    if not late.any() or time.monotonic() >= deadline:
        return choice
    jobs = involved(columns, choice, late)
    others = choice.copy()
    others[jobs] = DEFERRED
    room = free - usage(columns, others, free.shape)
    sequence = _Sequence(columns, room, jobs)
    # Three starts, each searched to its end while there is time. Where one
    # ends is a local optimum, and which start does best changes from one
    # instance to the next (measured on instances the soaks found, where
    # HiGHS proved or nearly proved the optimum):
    # - by deadline, the smallest first among equal deadlines (duration times
    #   the largest share of a resource: many jobs that are late whatever
    #   happens are due at slot 0). Alone, it reached the optimum or came
    #   within 2 late slots of it on the 32-job instance and three variants;
    #   from the plan's own order first, that search ended 7 above it;
    # - the plan's own order (after the first reconcile, the previous plan):
    #   on the 20 small instances of the tests (`crowded`), 888 late slots in
    #   all with it, 914 without (the optimum, 874);
    # - by deadline, the shortest first among equal ones: on a 28-job
    #   instance the first two ended 10 late slots above the optimum, this
    #   one at it. By duration alone instead of the first, a 34-job instance
    #   ended 14 worse (295 against 281).
    size = width(columns, free)[jobs] * columns.duration[jobs]
    by_deadline = jobs[np.lexsort((size, _deadlines(columns, jobs)))]
    by_start = jobs[np.lexsort((_deadlines(columns, jobs), _starts(columns, choice, jobs)))]
    by_length = jobs[np.lexsort((columns.duration[jobs], _deadlines(columns, jobs)))]
    best_value, best_choice = np.inf, sequence.choice
    for order in (by_deadline, by_start, by_length):
        if time.monotonic() >= deadline:
            break
        sequence.adopt(order)
        sequence.search(deadline=deadline)
        if sequence.best < best_value - 1e-9:
            best_value, best_choice = sequence.best, sequence.choice.copy()
    found = others.copy()
    found[jobs] = best_choice[jobs]
    found = improve(columns, free, found, deadline=deadline)
    return found if objective(columns, found) < objective(columns, choice) - 1e-9 else choice


def involved(columns: Columns, choice: np.ndarray, late: np.ndarray) -> np.ndarray:
    """The jobs sequencing orders: the late ones, then the others placed on
    their spokes (or allowed there, for a deferred job), earliest first, up to
    MOST_JOBS. The rest keep their places."""
    late_jobs = np.flatnonzero(late)
    spokes = np.zeros(len(columns.spokes), dtype=bool)
    for job in late_jobs.tolist():
        k = int(choice[job])
        spokes[columns.cs[k] if k >= 0 else columns.cs[columns.of_job(job)]] = True
    placed = np.flatnonzero((choice >= 0) & ~late)
    near = placed[spokes[columns.cs[choice[placed]]]]
    near = near[np.argsort(columns.ct[choice[near]], kind="stable")]
    return np.concatenate([late_jobs, near])[:MOST_JOBS].astype(np.int64)


def _starts(columns: Columns, choice: np.ndarray, jobs: np.ndarray) -> np.ndarray:
    k = choice[jobs]
    return np.where(k >= 0, columns.ct[np.maximum(k, 0)], columns.slots)


def _deadlines(columns: Columns, jobs: np.ndarray) -> np.ndarray:
    return np.array([columns.jobs[j].deadline_slot for j in jobs.tolist()], dtype=np.int64)


class _Sequence:
    """An order of `jobs` and its plan on `room`, with the room left after each
    position so that a changed order is decoded from where it changed."""

    def __init__(self, columns: Columns, room: np.ndarray, jobs: np.ndarray) -> None:
        self.columns = columns
        self.room = room
        self.score = columns.ct * EARLIEST + columns.cost
        self.jobs = jobs
        self.order = jobs.copy()
        self.choice = np.full(len(columns.jobs), DEFERRED, dtype=np.int64)  # `jobs`' alone
        self.best = np.inf
        self.left: list[np.ndarray] = []  # room before each position of the order
        self.spent: list[float] = []  # cost of the positions before each

    def adopt(self, order: np.ndarray) -> None:
        self._keep(order.copy(), start=0)

    def value(self, order: np.ndarray, *, start: int) -> float:
        return self._decode(order, start=start, keep=False)

    def _decode(self, order: np.ndarray, *, start: int, keep: bool) -> float:
        columns = self.columns
        room = (self.left[start] if start else self.room).copy()
        total = self.spent[start] if start else 0.0
        if keep:
            del self.left[start:], self.spent[start:]
        picks: list[tuple[int, int]] = []
        for position in range(start, len(order)):
            job = int(order[position])
            if keep:
                self.left.append(room.copy())
                self.spent.append(total)
            part = columns.of_job(job)
            duration, demand = int(columns.duration[job]), columns.demand[job]
            ok = fitting_starts(room, duration, demand)[columns.cs[part], columns.ct[part]]
            if ok.any():
                k = part.start + int(np.argmin(np.where(ok, self.score[part], np.inf)))
                room[columns.cs[k], :, columns.ct[k] : columns.end[k]] -= demand[:, None]
                total += float(columns.cost[k])
            else:
                k = DEFERRED
                total += float(columns.defer[job])
            picks.append((job, k))
            if not keep and total >= self.best - 1e-9:
                return np.inf  # no cheaper than the best: the rest cannot help
        if keep:
            for job, k in picks:
                self.choice[job] = k
        return total

    def search(self, *, deadline: float) -> None:
        """Insertion moves until none makes the plan cheaper: the jobs, the
        costliest first, are each tried at every earlier position and then
        every later one, and the first move that helps is made; then the
        costliest job again. (Going on down the list after a move instead
        ended 3 late slots worse on two of five overloaded instances.)"""
        moved = True
        while moved:
            moved = False
            for job in self._worst_first():
                i = int(np.flatnonzero(self.order == job)[0])
                for j in [*range(i - 1, -1, -1), *range(i + 1, len(self.order))]:
                    if time.monotonic() >= deadline:
                        return
                    order = np.insert(np.delete(self.order, i), j, job)
                    start = min(i, j)
                    if self.value(order, start=start) < self.best - 1e-9:
                        self._keep(order, start=start)
                        moved = True
                        break
                if moved:
                    break

    def _keep(self, order: np.ndarray, *, start: int) -> None:
        self.order = order
        self.best = self._decode(order, start=start, keep=True)

    def _worst_first(self) -> list[int]:
        """The jobs by what their places cost, the costliest first: the late
        and the deferred lead."""
        k = self.choice[self.jobs]
        cost = np.where(k >= 0, self.columns.cost[np.maximum(k, 0)], self.columns.defer[self.jobs])
        return self.jobs[np.argsort(-cost, kind="stable")].tolist()
