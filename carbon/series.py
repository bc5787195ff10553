"""The value every carbon source returns, and the resampling all of them share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

SeriesKind = Literal[
    "forecast", "forecast+seasonal-naive", "seasonal-naive", "actual", "replay", "constant"
]
Origin = Literal["live", "cache", "fallback", "embedded", "configured"]
# The UK Carbon Intensity API's regions: 14 distribution areas, then England,
# Scotland, Wales and Great Britain whole.
UK_REGIONS = 18
ProviderName = Literal["embedded", "constant", "electricitymaps", "ukci", "watttime", "carbonaware"]


class Provenance(BaseModel):
    """Where a series came from, so a plan can say what it was based on."""

    model_config = ConfigDict(frozen=True)

    provider: str
    kind: SeriesKind
    signal: str
    fetched_at: datetime
    stale: bool = False
    origin: Origin = "live"
    note: str = ""

    def describe(self) -> str:
        text = f"{self.provider} ({self.signal}, {self.kind})"
        if self.stale:
            text += f" STALE ({self.origin})"
        if self.note:
            text += f": {self.note}"
        return text


class CarbonSourceConfig(BaseModel):
    """The `carbon:` block of spokes/<spoke>.yaml."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    provider: ProviderName = "embedded"
    zone: str
    signal: Literal["lifecycle", "direct"] = "lifecycle"
    value: float | None = Field(default=None, ge=0, description="gCO2eq/kWh for 'constant'")
    region: str | None = Field(
        default=None,
        description="WattTime region, UK region id, or Carbon Aware SDK location",
    )
    base_url: str | None = None
    fallback_zone: str | None = Field(
        default=None, description="zone of the embedded dataset to fall back to"
    )

    @field_validator("region", mode="before")
    @classmethod
    def _region_as_text(cls, value: object) -> object:
        # A UK region id is a number, and YAML reads `region: 13` as one.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("region")
    @classmethod
    def _uk_region_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or info.data.get("provider") != "ukci":
            return value
        if not value.isdigit() or not 1 <= int(value) <= UK_REGIONS:
            raise ValueError(
                f"{value!r} is not a UK region id: give its number, 1 to {UK_REGIONS} (1 North "
                "Scotland ... 13 London, 14 South East England; 15-18 England, Scotland, Wales, "
                "GB)"
            )
        return value


class IntensitySeries(BaseModel):
    """Grid carbon intensity of one zone, gCO2eq/kWh, one value per slot from `start`."""

    model_config = ConfigDict(frozen=True)

    zone: str
    start: datetime
    slot_seconds: int
    values: tuple[float, ...]
    provenance: Provenance

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must carry a time zone")
        return value.astimezone(UTC)

    @field_validator("values")
    @classmethod
    def _finite_and_non_negative(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        for index, value in enumerate(values):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"value {index} is {value}: intensities are finite and >= 0")
        return values

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.slot_seconds * len(self.values))


def step_means(
    *,
    points_start: datetime,
    point_seconds: int,
    points: Sequence[float],
    start: datetime,
    slot_seconds: int,
    slots: int,
) -> tuple[float, ...]:
    """Resample a step function (value i holds over [points_start + i*point_seconds, ...))
    onto `slots` slots of `slot_seconds` from `start`, as time-weighted means.

    Works both ways: 15-minute slots over hourly data repeat each hour's value,
    hourly slots over 15-minute data average four values.
    """
    origin = points_start.timestamp()
    result = []
    for slot in range(slots):
        a = start.timestamp() + slot * slot_seconds
        b = a + slot_seconds
        first = math.floor((a - origin) / point_seconds)
        last = math.ceil((b - origin) / point_seconds)
        if first < 0 or last > len(points):
            raise ValueError(
                f"slot {slot} ({datetime.fromtimestamp(a, UTC).isoformat()}) is not covered"
            )
        total = 0.0
        for index in range(first, last):
            seg_a = max(a, origin + index * point_seconds)
            seg_b = min(b, origin + (index + 1) * point_seconds)
            total += points[index] * (seg_b - seg_a)
        result.append(total / slot_seconds)
    return tuple(result)
