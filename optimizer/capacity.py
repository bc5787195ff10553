"""Residual capacity per spoke, resource and slot, with fast "does it fit" queries.

A sparse table of minima per (spoke, resource) answers "what is the least free
capacity in slots [t, t+d)" for every t at once in O(slots), so testing all the
starts of a job costs a few array operations. Placing or removing a job marks
only that spoke's table for rebuilding.
"""

from __future__ import annotations

import numpy as np


class Residual:
    def __init__(self, free: np.ndarray) -> None:
        """`free` is (spokes, resources, slots) capacity still available."""
        self.free = free.astype(float, copy=True)
        self.slots = free.shape[2]
        self.levels = max(1, int(self.slots).bit_length())
        # Rebuilt on the next query, not on every change: a move often releases
        # and takes several jobs on one spoke before it asks anything.
        self.tables: list[np.ndarray | None] = [None] * free.shape[0]

    def _table(self, spoke: int) -> np.ndarray:
        # table[k, r, t] = min(free[r, t : t + 2**k]); slots past the horizon are
        # unconstrained (+inf): capacity is only modelled inside it.
        width = self.slots + (1 << self.levels)
        table = np.full((self.levels + 1, self.free.shape[1], width), np.inf)
        table[0, :, : self.slots] = self.free[spoke]
        for k in range(1, self.levels + 1):
            half = 1 << (k - 1)
            table[k, :, : width - half] = np.minimum(
                table[k - 1, :, : width - half], table[k - 1, :, half:]
            )
        return table

    def window_min(self, spoke: int, duration: int) -> np.ndarray:
        """(resources, slots): least free capacity over [t, t+duration) for each t."""
        k = min(int(duration).bit_length() - 1, self.levels)
        tables = self.tables[spoke]
        if tables is None:
            tables = self.tables[spoke] = self._table(spoke)
        table = tables[k]
        span = 1 << k
        return np.minimum(
            table[:, : self.slots], table[:, duration - span : duration - span + self.slots]
        )

    def fits(self, spoke: int, duration: int, demand: np.ndarray) -> np.ndarray:
        """(slots,) bool: the job fits when started in each slot."""
        return (self.window_min(spoke, duration) >= demand[:, None] - 1e-9).all(axis=0)

    def fits_at(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> bool:
        window = self.free[spoke, :, max(start, 0) : min(start + duration, self.slots)]
        return window.size == 0 or bool((window >= demand[:, None] - 1e-9).all())

    def take(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, -demand)

    def give_back(self, spoke: int, start: int, duration: int, demand: np.ndarray) -> None:
        self._add(spoke, start, duration, demand)

    def _add(self, spoke: int, start: int, duration: int, delta: np.ndarray) -> None:
        first, last = max(start, 0), min(start + duration, self.slots)
        if first < last:
            self.free[spoke, :, first:last] += delta[:, None]
            self.tables[spoke] = None
