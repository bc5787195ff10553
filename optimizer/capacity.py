"""Residual capacity per spoke, resource and slot, with fast "does it fit" queries.

A sparse table of minima per (spoke, resource) answers "what is the least free
capacity in slots [t, t+d)" for every t at once in O(slots), so testing all the
starts of a job costs a few array operations. Placing or removing a job marks
only that spoke's table for rebuilding.
"""

from __future__ import annotations

import numpy as np


def fitting_starts(free: np.ndarray, duration: int, demand: np.ndarray) -> np.ndarray:
    """(spokes, slots) bool: a job of `duration` and `demand` fits in `free`
    when started there. Read from `free` itself, by running sums: for a room
    that changes after every query (sequencing), rebuilding `Residual`'s
    tables each time took 1.5-1.75 times as long (32 jobs on one spoke)."""
    spokes, _, slots = free.shape
    duration = min(int(duration), slots)  # past the horizon everything fits
    ok = (free >= demand[None, :, None] - 1e-9).all(axis=1)
    ok = np.concatenate([ok, np.ones((spokes, duration), dtype=bool)], axis=1)
    runs = np.concatenate([np.zeros((spokes, 1), dtype=np.int64), np.cumsum(ok, axis=1)], axis=1)
    return runs[:, duration : duration + slots] - runs[:, :slots] == duration


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

    def fits_at(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> bool:
        first = max(start, 0)
        window = self.free[spoke, :, first : max(first, min(start + duration, self.slots))]
        return window.size == 0 or bool((window >= demand[:, None] - 1e-9).all())

    def take(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, -demand)

    def give_back(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, demand)

    def _add(self, spoke: int, start: int, duration: int, delta: np.ndarray) -> None:
        first, last = max(start, 0), min(start + duration, self.slots)
        if first < last:
            self.free[spoke, :, first:last] += delta[:, None]
            self.stale[spoke] = True
