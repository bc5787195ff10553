"""A full horizon from whatever a provider gave: its forecast first, then what it
has already measured inside the horizon (the hour now running), then the same time
one and two days earlier (seasonal-naive), then interpolation; and how many slots
each step had to fill."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from carbon.points import Point, fill, resample

DAY = timedelta(days=1)


class Coverage(BaseModel):
    model_config = ConfigDict(frozen=True)

    forecast: int
    seasonal: int
    interpolated: int
    measured: int = 0

    def describe(self) -> str:
        parts = [f"{self.forecast} forecast"]
        if self.measured:
            parts.append(f"{self.measured} measured")
        if self.seasonal:
            parts.append(f"{self.seasonal} seasonal-naive")
        if self.interpolated:
            parts.append(f"{self.interpolated} interpolated")
        return " + ".join(parts) + " slots"


def assemble(
    *,
    forecast: Sequence[Point],
    history: Sequence[Point],
    start: datetime,
    slot_seconds: int,
    slots: int,
) -> tuple[list[float], Coverage]:
    """Raises ValueError when the points cover nothing the horizon can use."""
    ahead, _ = resample(forecast, start=start, slot_seconds=slot_seconds, slots=slots)
    seen, _ = resample(history, start=start, slot_seconds=slot_seconds, slots=slots)
    known = [*history, *forecast]
    day_before, _ = resample(known, start=start - DAY, slot_seconds=slot_seconds, slots=slots)
    two_before, _ = resample(known, start=start - 2 * DAY, slot_seconds=slot_seconds, slots=slots)
    merged: list[float | None] = []
    seasonal = measured = 0
    for now, past, one, two in zip(ahead, seen, day_before, two_before, strict=True):
        if now is not None:
            merged.append(now)
        elif past is not None:
            merged.append(past)
            measured += 1
        elif one is not None or two is not None:
            merged.append(one if one is not None else two)
            seasonal += 1
        else:
            merged.append(None)
    holes = sum(1 for v in merged if v is None)
    values = fill(merged)
    return values, Coverage(
        forecast=slots - measured - seasonal - holes,
        seasonal=seasonal,
        interpolated=holes,
        measured=measured,
    )
