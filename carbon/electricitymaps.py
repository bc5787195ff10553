"""Electricity Maps API v3 (`auth-token` header; forecast and history per zone)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from carbon.clients import parse_time, parsed
from carbon.http import ProviderError, get_json
from carbon.points import Point

DEFAULT_URL = "https://api.electricitymap.org"


class ElectricityMaps:
    name = "electricitymaps"

    def __init__(
        self, *, zone: str, signal: str, token: str | None, base_url: str, timeout: float = 10.0
    ) -> None:
        self.zone = zone
        self.signal = signal
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str) -> Any:
        if not self.token:
            raise ProviderError("electricitymaps: no token: set ELECTRICITYMAPS_TOKEN", retry=False)
        url = f"{self.base_url}/v3/carbon-intensity/{path}"
        params = {"zone": self.zone, "emissionFactorType": self.signal}
        return url, get_json(
            url, params=params, headers={"auth-token": self.token}, timeout=self.timeout
        )

    def fetch(self, *, now: datetime) -> tuple[list[Point], list[Point]]:
        url, body = self._get("history")
        history = parsed(url, body, lambda b: _points(b["history"]))
        try:
            url, body = self._get("forecast")
            forecast = parsed(url, body, lambda b: _points(b["forecast"]))
        except ProviderError as error:
            if error.retry:
                raise
            # Plans without forecast access: the hour now running (`latest`), then
            # history for seasonal-naive.
            forecast = []
            history = _with_latest(history, self._latest())
        return forecast, history

    def _latest(self) -> list[Point]:
        try:
            url, body = self._get("latest")
            return parsed(url, body, lambda b: _points([b]))
        except ProviderError:
            return []  # an extra: history alone still gives a horizon


def _with_latest(history: list[Point], latest: list[Point]) -> list[Point]:
    known = {p.start for p in history}
    return [*history, *(p for p in latest if p.start not in known)]


def _points(entries: list[dict[str, Any]]) -> list[Point]:
    return [
        Point(start=parse_time(e["datetime"]), seconds=3600, value=float(e["carbonIntensity"]))
        for e in entries
        if e.get("carbonIntensity") is not None
    ]
