"""The Green Software Foundation Carbon Aware SDK WebAPI (forecasts/current and
emissions/bylocations)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from carbon.clients import HISTORY, parse_time, parsed
from carbon.http import get_json
from carbon.points import Point

DEFAULT_URL = "http://localhost:8080"


class CarbonAwareSdk:
    name = "carbonaware"
    signal = "as configured in the SDK"

    def __init__(self, *, location: str, base_url: str, timeout: float = 10.0) -> None:
        self.location = location
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def fetch(self, *, now: datetime) -> tuple[list[Point], list[Point]]:
        url = f"{self.base_url}/emissions/forecasts/current"
        body = get_json(url, params={"location": self.location}, timeout=self.timeout)
        forecast = parsed(url, body, _forecast)
        url = f"{self.base_url}/emissions/bylocations"
        params = {
            "location": self.location,
            "time": (now - HISTORY).isoformat(),
            "toTime": now.isoformat(),
        }
        history = parsed(url, get_json(url, params=params, timeout=self.timeout), _history)
        return forecast, history


def _forecast(body: Any) -> list[Point]:
    return [
        Point(
            start=parse_time(d["timestamp"]),
            seconds=_seconds(d["duration"]),
            value=float(d["value"]),
        )
        for entry in body
        for d in entry["forecastData"]
    ]


def _history(body: Any) -> list[Point]:
    return [
        Point(
            start=parse_time(d["time"]), seconds=_seconds(d["duration"]), value=float(d["rating"])
        )
        for d in body
    ]


def _seconds(duration: Any) -> int:
    """Minutes as a number, or a TimeSpan like "01:00:00"."""
    if isinstance(duration, int | float):
        return int(duration * 60)
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+)", str(duration))
    if not match:
        raise ValueError(f"duration {duration!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
