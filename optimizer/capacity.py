"""Residual capacity per spoke, resource and slot, with fast "does it fit" queries.

Whether a job fits at each start is read from the room itself, by running
counts of the slots short of its demand: a few array operations for every
start of every spoke at once. The searches ask it after nearly every change
of the room. Where the room stays put while many runs are asked about (the
columns' least room, the qos dispatcher), a sparse table of minima per
(spoke, resource) answers "what is the least free capacity in slots [t, t+d)"
for every t at once; placing or removing a job marks only that spoke's table
for rebuilding.
"""

from __future__ import annotations

import numpy as np


def fitting_starts(free: np.ndarray, duration: int, demand: np.ndarray) -> np.ndarray:
    """(spokes, slots) bool: a job of `duration` and `demand` fits in `free`
    when started there. Read from `free` itself (`_starts`): for a room that
    changes after every query (sequencing), rebuilding `Residual`'s tables
    each time took 1.5-1.75 times as long (32 jobs on one spoke)."""
    spokes, resources, slots = free.shape
    return _starts(
        free,
        duration,
        demand,
        short=np.empty((spokes, resources, slots), dtype=bool),
        bad=np.zeros((spokes, 2 * slots), dtype=bool),
        runs=np.zeros((spokes, 2 * slots + 1), dtype=np.int32),
        ok=np.empty((spokes, slots), dtype=bool),
    )


def _starts(
    free: np.ndarray,
    duration: int,
    demand: np.ndarray,
    *,
    short: np.ndarray,
    bad: np.ndarray,
    runs: np.ndarray,
    ok: np.ndarray,
) -> np.ndarray:
    """`fitting_starts` into the buffers given: `short` (spokes, resources,
    slots), `bad` (spokes, 2 * slots) whose second half is False, `runs`
    (spokes, 2 * slots + 1) whose first column is 0, and `ok` (spokes, slots),
    which it returns. A start fits where no slot of its run is short of
    `demand` in any resource: where the running count of short slots is the
    same at both ends of the run. Past the horizon no slot is short, since
    capacity is only modelled inside it."""
    slots = free.shape[2]
    duration = min(int(duration), slots)
    np.less(free, demand[None, :, None] - 1e-9, out=short)
    np.logical_or.reduce(short, axis=1, out=bad[:, :slots])
    # int32: the sums of a few hundred slots fit, and they run faster than int64.
    np.cumsum(bad, axis=1, out=runs[:, 1:])
    return np.equal(runs[:, duration : duration + slots], runs[:, :slots], out=ok)


class Residual:
    def __init__(self, free: np.ndarray) -> None:
        """`free` is (spokes, resources, slots) capacity still available."""
        self.free = free.astype(float, copy=True)
        spokes, resources, self.slots = free.shape
        self.levels = max(1, int(self.slots).bit_length())
        # tables[s, k, r, t] = min(free[s, r, t : t + 2**k]); slots past the
        # horizon are unconstrained (+inf): capacity is only modelled inside it.
        width = self.slots + (1 << self.levels)
        self.tables = np.full((spokes, self.levels + 1, resources, width), np.inf)
        # Rebuilt on the next query, not on every change: a move often releases
        # and takes several jobs on one spoke before it asks anything.
        self.stale = np.ones(spokes, dtype=bool)
        # `fit_places`'s buffers: a fresh array of this size costs as much as
        # the arithmetic on it.
        self._short = np.empty((spokes, resources, self.slots), dtype=bool)
        self._bad = np.zeros((spokes, 2 * self.slots), dtype=bool)
        self._runs = np.zeros((spokes, 2 * self.slots + 1), dtype=np.int32)
        self._ok = np.empty((spokes, self.slots), dtype=bool)

    def _rebuild(self, spoke: int) -> None:
        table = self.tables[spoke]
        width = table.shape[2]
        table[0, :, : self.slots] = self.free[spoke]
        for k in range(1, self.levels + 1):
            half = 1 << (k - 1)
            np.minimum(
                table[k - 1, :, : width - half],
                table[k - 1, :, half:],
                out=table[k, :, : width - half],
            )
        self.stale[spoke] = False

    def _spans(self, duration: int) -> tuple[int, int]:
        """The level whose spans, one at t and one ending at t + duration, cover
        [t, t + duration) between them, and the offset of the second."""
        # Past the horizon everything fits, so a run longer than the horizon
        # asks only for the slots inside it: [t, t + slots) covers them all.
        duration = min(int(duration), self.slots)
        k = min(duration.bit_length() - 1, self.levels)
        return k, duration - (1 << k)

    def window_min(self, spoke: int, duration: int) -> np.ndarray:
        """(resources, slots): least free capacity over [t, t+duration) for each t."""
        if self.stale[spoke]:
            self._rebuild(spoke)
        k, offset = self._spans(duration)
        table = self.tables[spoke, k]
        return np.minimum(table[:, : self.slots], table[:, offset : offset + self.slots])

    def room(self, duration: int) -> np.ndarray:
        """(spokes, resources, slots): `window_min` of every spoke at once, what
        testing all of a job's columns needs."""
        for spoke in np.flatnonzero(self.stale).tolist():
            self._rebuild(spoke)
        k, offset = self._spans(duration)
        tables = self.tables[:, k]
        return np.minimum(tables[:, :, : self.slots], tables[:, :, offset : offset + self.slots])

    def fits(self, spoke: int, duration: int, demand: np.ndarray) -> np.ndarray:
        """(slots,) bool: the job fits when started in each slot."""
        return np.asarray((self.window_min(spoke, duration) >= demand[:, None] - 1e-9).all(axis=0))

    def fit_places(self, places: np.ndarray, duration: int, demand: np.ndarray) -> np.ndarray:
        """Bool per place (spoke * slots + start): does a job of `duration` and
        `demand` fit when started there? Read from `free` itself, not from the
        tables: placing or releasing a job changes the room before nearly every
        such query (local search, ruin and recreate, the roundings), and
        rebuilding a spoke's table then was most of the test. At 1000 x 10,
        a job's test after a move took 29 us instead of 71 (medians)."""
        ok = _starts(
            self.free,
            duration,
            demand,
            short=self._short,
            bad=self._bad,
            runs=self._runs,
            ok=self._ok,
        )
        return ok.reshape(-1).take(places)

    def fits_at(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> bool:
        first = max(start, 0)
        window = self.free[spoke, :, first : max(first, min(start + duration, self.slots))]
        return window.size == 0 or bool((window >= demand[:, None] - 1e-9).all())

    def save(self) -> np.ndarray:
        """The room as it is, for `restore`."""
        return self.free.copy()

    def restore(self, saved: np.ndarray) -> None:
        """The room as `save` gave it. Cheaper than giving back and taking
        again each job a failed move shifted, and exact: those add and
        subtract amounts that round (memory is counted in bytes)."""
        np.copyto(self.free, saved)
        self.stale[:] = True

    def take(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, -demand)

    def give_back(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, demand)

    def _add(self, spoke: int, start: int, duration: int, delta: np.ndarray) -> None:
        first, last = max(start, 0), min(start + duration, self.slots)
        if first < last:
            self.free[spoke, :, first:last] += delta[:, None]
            self.stale[spoke] = True
