"""Provider data as points with a span, resampled onto planning slots.

Providers answer at 5-minute (WattTime), 30-minute (UK) or hourly (Electricity
Maps) resolution, sometimes with holes. `resample` gives each slot the
time-weighted mean of what covers it and reports the slots nothing covered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, model_validator


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime
    seconds: int
    value: float  # gCO2eq/kWh

    @model_validator(mode="after")
    def _ends_on_the_calendar(self) -> Point:
        # A span no datetime can end (a garbled duration, a date in the year
        # 9999) would fail later, in resampling, past where an answer is refused.
        try:
            self.end  # noqa: B018
        except OverflowError:
            raise ValueError(
                f"a span of {self.seconds} s from {self.start.isoformat()} ends past the calendar"
            ) from None
        return self

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds)


def sane(points: Iterable[Point], *, ceiling: float = 3000.0) -> list[Point]:
    """Drop values no grid produces (negative, not finite, or above `ceiling`)."""
    return [p for p in points if math.isfinite(p.value) and 0 <= p.value <= ceiling]


def resample(
    points: Sequence[Point], *, start: datetime, slot_seconds: int, slots: int
) -> tuple[list[float | None], int]:
    """Per slot, the time-weighted mean of the points covering it (None where none
    does), and how many slots are at least partly uncovered."""
    origin = start.timestamp()
    totals = [0.0] * slots
    covered = [0.0] * slots
    for point in points:
        a, b = point.start.timestamp(), point.end.timestamp()
        first = max(0, math.floor((a - origin) / slot_seconds))
        last = min(slots, math.ceil((b - origin) / slot_seconds))
        for slot in range(first, last):
            lo = max(a, origin + slot * slot_seconds)
            hi = min(b, origin + (slot + 1) * slot_seconds)
            if hi > lo:
                totals[slot] += point.value * (hi - lo)
                covered[slot] += hi - lo
    values: list[float | None] = [
        totals[i] / covered[i] if covered[i] > 0 else None for i in range(slots)
    ]
    partial = sum(1 for c in covered if c < slot_seconds - 1e-6)
    return values, partial


def fill(values: Sequence[float | None]) -> list[float]:
    """Holes filled by linear interpolation between neighbours (held at the ends)."""
    known = {i: float(v) for i, v in enumerate(values) if v is not None}
    if not known:
        raise ValueError("no value to fill from")
    result = []
    for i in range(len(values)):
        if i in known:
            result.append(known[i])
            continue
        before = [k for k in known if k < i]
        after = [k for k in known if k > i]
        # Past either end there is one neighbour, and its value holds.
        left = before[-1] if before else after[0]
        right = after[0] if after else before[-1]
        share = (i - left) / (right - left) if right != left else 0.0
        result.append(known[left] * (1 - share) + known[right] * share)
    return result
