"""The UK Carbon Intensity API (no key; 30-minute forecasts 48 h ahead; national or
one region by its id)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from carbon.clients import parse_time, parsed
from carbon.http import get_json
from carbon.points import Point

DEFAULT_URL = "https://api.carbonintensity.org.uk"


class UkCarbonIntensity:
    name = "ukci"
    signal = "forecast (national grid ESO)"

    def __init__(self, *, region: int | None, base_url: str, timeout: float = 10.0) -> None:
        self.region = region
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def fetch(self, *, now: datetime) -> tuple[list[Point], list[Point]]:
        start = now.astimezone(UTC).replace(second=0, microsecond=0)
        start -= timedelta(minutes=start.minute % 30)
        stamp = start.strftime("%Y-%m-%dT%H:%MZ")
        if self.region is None:
            url = f"{self.base_url}/intensity/{stamp}/fw48h"
            forecast = parsed(url, get_json(url, timeout=self.timeout), _national)
            url = f"{self.base_url}/intensity/{stamp}/pt24h"
            history = parsed(url, get_json(url, timeout=self.timeout), _actuals)
        else:
            url = f"{self.base_url}/regional/intensity/{stamp}/fw48h"
            body = get_json(url, timeout=self.timeout)
            forecast = parsed(url, body, lambda b: _regional(b, self.region))
            history = []  # the regional API has no past window: seasonal-naive reuses the forecast
        return forecast, history


def _span(entry: dict[str, Any]) -> tuple[datetime, int]:
    start = parse_time(entry["from"])
    return start, int((parse_time(entry["to"]) - start).total_seconds())


def _national(body: Any) -> list[Point]:
    points = []
    for entry in body["data"]:
        intensity = entry["intensity"]
        value = intensity.get("actual")
        if value is None:
            value = intensity.get("forecast")
        if value is None:
            continue
        start, seconds = _span(entry)
        points.append(Point(start=start, seconds=seconds, value=float(value)))
    return points


def _actuals(body: Any) -> list[Point]:
    """The half-hours the grid's operator measured. The last ones of the past
    day often have a forecast alone, which is not what the grid emitted: what
    the runs that ended emitted is counted on what was measured."""
    measured = [entry for entry in body["data"] if entry["intensity"].get("actual") is not None]
    return _national({"data": measured})


def _regional(body: Any, region: int | None) -> list[Point]:
    points = []
    for entry in body["data"]:
        start, seconds = _span(entry)
        for item in entry["regions"]:
            if int(item["regionid"]) == region and item["intensity"].get("forecast") is not None:
                points.append(
                    Point(start=start, seconds=seconds, value=float(item["intensity"]["forecast"]))
                )
    return points
