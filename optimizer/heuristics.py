"""Fast placement without a solver, on `Columns` and `Residual`.

A solution is one column index per job (-1: deferred). `construct` places jobs one
at a time, in a given order, at the best column by a given score among those that
fit what is left; `improve` then moves single jobs to cheaper places while
capacity allows. Greedy, qos and the price-guided construction of the Lagrangian
loop are all `construct` with a different order and score.
"""

from __future__ import annotations

import time

import numpy as np

from optimizer.capacity import Residual
from optimizer.columns import Columns

DEFERRED = -1
# A job the LP relaxation runs this close to entirely at one column counts as whole.
SHARE_WHOLE = 0.01
# How much of a job's true cost, against its reduced cost, places it when the
# rounding finds its LP columns taken (`rounded`).
FALLBACK_TRUE_SHARE = 0.5


def feasible(columns: Columns, residual: Residual, job: int) -> np.ndarray:
    """Bool per column of `job`: does it fit what is left?"""
    part = columns.of_job(job)
    return residual.fit_places(columns.place[part], int(columns.duration[job]), columns.demand[job])


def occupy(columns: Columns, residual: Residual, job: int, k: int) -> None:
    """`job` takes the room its column `k` runs in (nothing when deferred)."""
    if k >= 0:
        residual.take(
            int(columns.cs[k]), int(columns.ct[k]), int(columns.duration[job]), columns.demand[job]
        )


def release(columns: Columns, residual: Residual, job: int, k: int) -> None:
    """`job` gives back the room its column `k` ran in (nothing when deferred)."""
    if k >= 0:
        residual.give_back(
            int(columns.cs[k]), int(columns.ct[k]), int(columns.duration[job]), columns.demand[job]
        )


def construct(
    columns: Columns, free: np.ndarray, *, order: np.ndarray, score: np.ndarray
) -> np.ndarray:
    """Place jobs in `order`, each at its lowest-`score` column that fits."""
    residual = Residual(free)
    choice = np.full(len(columns.jobs), DEFERRED, dtype=np.int64)
    for job in order:
        part = columns.of_job(int(job))
        ok = feasible(columns, residual, int(job))
        if not ok.any():
            continue
        local = np.where(ok, score[part], np.inf)
        k = part.start + int(np.argmin(local))
        choice[job] = k
        occupy(columns, residual, int(job), k)
    return choice


def greedy(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Deadline order; each job takes its cheapest fitting column."""
    order = sorted(
        range(len(columns.jobs)),
        key=lambda i: (
            columns.jobs[i].deadline_slot,
            columns.jobs[i].release_slot,
            columns.jobs[i].id,
        ),
    )
    return construct(columns, free, order=np.array(order, dtype=np.int64), score=columns.cost)


def tight_first(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Least slack first, larger first among equals: jobs with no room to move get
    capacity before flexible ones take the clean hours."""
    slack = [
        (
            job.deadline_slot - max(job.release_slot, 0) - job.duration_slots,
            -float(columns.demand[i].sum()),
            job.id,
        )
        for i, job in enumerate(columns.jobs)
    ]
    order = np.array(sorted(range(len(slack)), key=slack.__getitem__), dtype=np.int64)
    return construct(columns, free, order=order, score=columns.cost)


def rounded(
    columns: Columns,
    free: np.ndarray,
    *,
    support: np.ndarray,
    shares: np.ndarray,
    reduced: np.ndarray,
    passes: int = 8,
    true_share: float = FALLBACK_TRUE_SHARE,
    until: float | None = None,
) -> np.ndarray:
    """The LP relaxation's solution (columns `support` running `shares` of their
    jobs) made whole: first the jobs the LP runs at one column, there, then the
    rest largest first, each at the column the LP runs most of it at that fits,
    else where a mix of its `reduced` and its true cost (`true_share` of the
    latter) is least. The LP packs capacity in all resources at once; a plan
    grown from its pattern keeps much of that, which local search from the
    greedy plans does not find (the benchmark's 200 jobs, seed 1: the plan ends
    3.5% above the LP bound from this start, 5.2% without it).

    A job that finds no room in time when its turn comes is late: at 1000 jobs,
    7-14 of them, which make-room moves took 2-4 s to repair. So the jobs a pass
    leaves late or unplaced go first in the next, up to `passes` (none begun
    after `until`, time.monotonic(): a pass takes 0.7 s at 5000 x 20); the
    cheapest pass is the answer. Of those, the one that must start soonest goes
    first: with the bulkiest first, a big job and an urgent one that both
    needed the early room took turns being late, pass after pass (200 x 5,
    seed 3).

    Why not the reduced cost alone for a job whose LP columns are taken: the
    prices that make a column cheap are those of a plan the rounding has by
    then left, and with ascent's prices (1000 jobs) they are rough to begin
    with. At 1000 x 10, seeds 1-6, the cheapest rounding of ascent's estimates
    was 3.96% above the LP bound on average with the reduced cost alone and
    3.31% with half of each."""
    whole = np.zeros(len(columns.jobs), dtype=bool)
    whole[columns.cj[support[shares > 1 - SHARE_WHOLE]]] = True
    size = width(columns, free) * columns.duration
    # Ranks are what `construct` compares: LP columns by share, above all others.
    fallback = (1.0 - true_share) * reduced + true_share * columns.cost
    score = fallback - fallback.min() + 1.0
    score[support] = -shares
    went_late = np.zeros(len(columns.jobs), dtype=bool)  # in some pass so far
    latest_start = np.array([job.deadline_slot for job in columns.jobs]) - columns.duration
    choice = best = construct(columns, free, order=np.lexsort((-size, ~whole)), score=score)
    for _ in range(passes - 1):
        missed = late_or_unplaced(columns, choice)
        if not (missed & ~went_late).any():
            break  # the next pass would be the same
        if until is not None and time.monotonic() >= until:
            break
        went_late |= missed
        order = np.lexsort((-size, ~whole, np.where(went_late, latest_start, 0), ~went_late))
        choice = construct(columns, free, order=order, score=score)
        if objective(columns, choice) < objective(columns, best):
            best = choice
    return best


def width(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Per job: the largest share it takes of any resource, against the most
    of that resource a spoke has in a slot."""
    return (columns.demand / np.maximum(free.max(axis=(0, 2)), 1e-9)).max(axis=1)


def late_or_unplaced(columns: Columns, choice: np.ndarray) -> np.ndarray:
    """Bool per job: deferred, or placed where its run ends after its deadline."""
    k = np.maximum(choice, 0)
    deadline = np.array([job.deadline_slot for job in columns.jobs])
    return (choice < 0) | (columns.ct[k] + columns.duration > deadline)


def _arrival_order(columns: Columns) -> np.ndarray:
    """Job indices by release slot, then name: the order jobs reach a dispatcher."""
    order = sorted(
        range(len(columns.jobs)), key=lambda i: (columns.jobs[i].release_slot, columns.jobs[i].id)
    )
    return np.array(order, dtype=np.int64)


def earliest(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Arrival order (release, then name); each job starts as early as it fits,
    on the first spoke where it can (a reference plan: it meets every deadline
    that starting early in arrival order can meet)."""
    score = columns.ct.astype(float) * len(columns.spokes) + columns.cs
    return construct(columns, free, order=_arrival_order(columns), score=score)


def qos(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Arrival order (release, then name); each job starts as early as it fits,
    carbon-blind. Among the spokes where it can start that early, it goes where the
    most room is left for it then, as a load-balancing dispatcher would, rather
    than piling work onto whichever spoke happens to be listed first."""
    residual = Residual(free)
    size = np.maximum(free.max(axis=2), 1e-9)  # (spokes, resources)
    choice = np.full(len(columns.jobs), DEFERRED, dtype=np.int64)
    for job in _arrival_order(columns).tolist():
        part = columns.of_job(job)
        ok = feasible(columns, residual, job)
        if not ok.any():
            continue
        ct = columns.ct[part]
        first = ok & (ct == ct[ok].min())
        demand, duration = columns.demand[job], int(columns.duration[job])
        asked = demand > 0 if (demand > 0).any() else np.ones_like(demand, dtype=bool)
        best, best_room = -1, -np.inf
        for local in np.flatnonzero(first):  # spokes in listing order: ties go to the first
            spoke, start = int(columns.cs[part][local]), int(ct[local])
            left = residual.window_min(spoke, duration)[:, start] - demand
            room = float((left / size[spoke])[asked].min())
            if room > best_room + 1e-12:
                best, best_room = part.start + int(local), room
        choice[job] = best
        occupy(columns, residual, job, best)
    return choice


def round_robin(columns: Columns, free: np.ndarray) -> np.ndarray:
    """Arrival order; spokes in turn, each job at its earliest fitting start on its
    turn's spoke, or its earliest anywhere if that spoke has no room."""
    residual = Residual(free)
    choice = np.full(len(columns.jobs), DEFERRED, dtype=np.int64)
    for turn, job in enumerate(_arrival_order(columns).tolist()):
        part = columns.of_job(job)
        ok = feasible(columns, residual, job)
        preferred = ok & (columns.cs[part] == turn % len(columns.spokes))
        pick = preferred if preferred.any() else ok
        if not pick.any():
            continue
        k = part.start + int(np.argmin(np.where(pick, columns.ct[part], np.iinfo(np.int32).max)))
        choice[job] = k
        occupy(columns, residual, int(job), k)
    return choice


def usage(columns: Columns, choice: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(spokes, resources, slots) taken by the placed jobs of `choice`."""
    spokes, resources, slots = shape
    delta = np.zeros((spokes, resources, slots + 1))
    placed = np.flatnonzero(choice >= 0)
    k = choice[placed]
    for r in range(resources):
        np.add.at(delta, (columns.cs[k], r, columns.ct[k]), columns.demand[placed, r])
        np.add.at(delta, (columns.cs[k], r, columns.end[k]), -columns.demand[placed, r])
    return np.cumsum(delta, axis=2)[:, :, :slots]


def costs(columns: Columns, choice: np.ndarray) -> np.ndarray:
    """Each job's cost in `choice`: its column's, or its deferral's."""
    return np.where(choice >= 0, columns.cost[np.maximum(choice, 0)], columns.defer)


def cost_of(columns: Columns, job: int, k: int) -> float:
    return float(columns.cost[k]) if k >= 0 else float(columns.defer[job])


def objective(columns: Columns, choice: np.ndarray) -> float:
    placed = choice >= 0
    return float(columns.cost[choice[placed]].sum() + columns.defer[~placed].sum())


def improve(
    columns: Columns,
    free: np.ndarray,
    choice: np.ndarray,
    *,
    deadline: float,
    score: np.ndarray | None = None,
) -> np.ndarray:
    """Move one job at a time to its lowest-`score` fitting column (the cost by
    default) until no move helps or `deadline` (time.monotonic()) passes."""
    score = columns.cost if score is None else score
    defer = columns.defer if score is columns.cost else np.full(len(columns.jobs), np.inf)
    choice = choice.copy()
    residual = Residual(free - usage(columns, choice, free.shape))
    changed = True
    while changed and time.monotonic() < deadline:
        changed = False
        current = np.where(choice >= 0, score[np.maximum(choice, 0)], defer)
        for job in np.argsort(-current, kind="stable"):
            if time.monotonic() >= deadline:
                break
            job = int(job)
            k = int(choice[job])
            release(columns, residual, job, k)
            part = columns.of_job(job)
            ok = feasible(columns, residual, job)
            best = part.start + int(np.argmin(np.where(ok, score[part], np.inf)))
            now = score[k] if k >= 0 else defer[job]
            if ok.any() and score[best] < now - 1e-9:
                k = best
                changed = True
            occupy(columns, residual, job, k)
            choice[job] = k
    return choice


def from_slots(
    columns: Columns, free: np.ndarray, wanted: dict[str, tuple[str, int]]
) -> np.ndarray:
    """A solution that keeps each job's wanted (spoke, start) where it still fits
    (in deadline order), the rest deferred: a warm start from the previous plan."""
    spoke_index = {name: i for i, name in enumerate(columns.spokes)}
    residual = Residual(free)
    choice = np.full(len(columns.jobs), DEFERRED, dtype=np.int64)
    order = sorted(range(len(columns.jobs)), key=lambda i: columns.jobs[i].deadline_slot)
    for job in order:
        target = wanted.get(columns.jobs[job].id)
        if target is None or target[0] not in spoke_index:
            continue
        part = columns.of_job(job)
        hit = np.flatnonzero(
            (columns.cs[part] == spoke_index[target[0]]) & (columns.ct[part] == target[1])
        )
        if hit.size == 0:
            continue
        k = part.start + int(hit[0])
        if residual.fits_at(
            int(columns.cs[k]), int(columns.ct[k]), int(columns.duration[job]), columns.demand[job]
        ):
            occupy(columns, residual, job, k)
            choice[job] = k
    return choice


def complete(columns: Columns, free: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Place the deferred jobs of `choice` greedily into what is left."""
    residual = Residual(free - usage(columns, choice, free.shape))
    choice = choice.copy()
    order = sorted(np.flatnonzero(choice < 0), key=lambda i: columns.jobs[i].deadline_slot)
    for job in order:
        part = columns.of_job(int(job))
        ok = feasible(columns, residual, int(job))
        if not ok.any():
            continue
        k = part.start + int(np.argmin(np.where(ok, columns.cost[part], np.inf)))
        choice[job] = k
        occupy(columns, residual, int(job), k)
    return choice


def fits(columns: Columns, free: np.ndarray, choice: np.ndarray) -> bool:
    """Whether `choice`, from elsewhere (the twin on the second core), is one of
    `columns`' plans within `free`: a column of each job's own, or none, and no
    room overrun."""
    if choice.shape != (len(columns.jobs),):
        return False
    placed = choice >= 0
    if (choice < DEFERRED).any() or (choice[placed] >= columns.size).any():
        return False
    if (columns.cj[choice[placed]] != np.flatnonzero(placed)).any():
        return False
    # Memory is counted in bytes: sums of them round at about 1e-5.
    slack = 1e-6 + 1e-9 * np.abs(free)
    return bool((usage(columns, choice, free.shape) <= free + slack).all())
