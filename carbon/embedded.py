"""The offline default: Electricity Maps' 2023 hourly data for 12 zones, shipped
with the package, replayed so that "now" reads the same hour of 2023.

Carbon intensity data (c) Electricity Maps (electricitymaps.com), ODbL 1.0; see
carbon/data/NOTICE.md.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Literal

from carbon.series import IntensitySeries, Provenance, step_means

Signal = Literal["lifecycle", "direct"]

PROVIDER = "embedded:electricitymaps-2023"
HOURS_2023 = 8760
_YEAR_START = datetime(2023, 1, 1, tzinfo=UTC)

# Zone id as users write it -> file stem. DE is published as DE-LU.
_FILES = {
    "AU-NSW": "AU-NSW",
    "DE": "DE-LU",
    "DE-LU": "DE-LU",
    "FR": "FR",
    "GB": "GB",
    "IN-WE": "IN-WE",
    "JP-TK": "JP-TK",
    "KR": "KR",
    "SG": "SG",
    "US-CAL-CISO": "US-CAL-CISO",
    "US-MIDA-PJM": "US-MIDA-PJM",
    "US-NY-NYIS": "US-NY-NYIS",
    "US-TEX-ERCO": "US-TEX-ERCO",
}
_COLUMNS = {
    "direct": "Carbon Intensity gCO₂eq/kWh (direct)",
    "lifecycle": "Carbon Intensity gCO₂eq/kWh (LCA)",
}


class UnknownZoneError(ValueError):
    pass


def zones() -> tuple[str, ...]:
    """Zone ids the dataset answers for (DE-LU is also accepted as DE)."""
    return tuple(sorted(zone for zone in _FILES if zone != "DE-LU"))


@cache
def hourly(zone: str, signal: Signal) -> tuple[float, ...]:
    """The 8,760 hourly values of 2023 for a zone, from the packaged file."""
    stem = _FILES.get(zone)
    if stem is None:
        near = difflib.get_close_matches(zone.upper(), zones(), n=1)  # "fr" for FR
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UnknownZoneError(
            f"zone {zone!r} is not in the embedded dataset{hint}; use one of {', '.join(zones())}"
        )
    package = resources.files("carbon") / "data" / "electricitymaps-2023"
    raw = gzip.decompress((package / f"{stem}_2023_hourly.csv.gz").read_bytes())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
    values = tuple(float(row[_COLUMNS[signal]]) for row in rows)
    if len(values) != HOURS_2023:
        raise ValueError(f"embedded file for {zone} has {len(values)} hours, not {HOURS_2023}")
    return values


def hour_of_2023(moment: datetime) -> int:
    """Index into 2023 of the hour with the same month, day and hour as `moment`.

    February 29 replays February 28; any year maps onto 2023.
    """
    moment = moment.astimezone(UTC)
    day = 28 if (moment.month, moment.day) == (2, 29) else moment.day
    same_hour = datetime(2023, moment.month, day, moment.hour, tzinfo=UTC)
    return int((same_hour - _YEAR_START).total_seconds() // 3600)


class EmbeddedProvider:
    """Replays the 2023 dataset: a perfect 'forecast' from real data, labelled as a replay."""

    def __init__(self, *, zone: str, signal: Signal = "lifecycle") -> None:
        hourly(zone, signal)  # fail early on an unknown zone
        self.zone = zone
        self.signal = signal

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        first_hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(seconds=slot_seconds * slots)
        hours = int((end - first_hour).total_seconds() // 3600) + 1
        data = hourly(self.zone, self.signal)
        points = [
            data[hour_of_2023(first_hour + timedelta(hours=offset))] for offset in range(hours)
        ]
        values = step_means(
            points_start=first_hour,
            point_seconds=3600,
            points=points,
            start=start,
            slot_seconds=slot_seconds,
            slots=slots,
        )
        return IntensitySeries(
            zone=self.zone,
            start=start,
            slot_seconds=slot_seconds,
            values=values,
            provenance=Provenance(
                provider=PROVIDER,
                kind="replay",
                signal=self.signal,
                fetched_at=now,
                origin="embedded",
                note="same hour of 2023",
            ),
        )

    def measured(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        """The replayed hours are the dataset's measured ones: the past as the
        planner saw it."""
        return self.series(start=start, slot_seconds=slot_seconds, slots=slots, now=now)
