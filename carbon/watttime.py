"""WattTime API v3: HTTP Basic login for a 30-minute token, then marginal emission
rate (MOER) forecast and history, converted from lbs/MWh to g/kWh."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from carbon.clients import HISTORY, parse_time, parsed
from carbon.http import ProviderError, get_json
from carbon.points import Point

DEFAULT_URL = "https://api.watttime.org"
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237


class WattTime:
    name = "watttime"
    signal = "marginal (co2_moer)"

    def __init__(
        self,
        *,
        region: str,
        username: str | None,
        password: str | None,
        base_url: str,
        timeout: float = 10.0,
    ) -> None:
        self.region = region
        self.username = username
        self.password = password
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _token(self) -> str:
        if not (self.username and self.password):
            raise ProviderError(
                "watttime: set WATTTIME_USERNAME and WATTTIME_PASSWORD", retry=False
            )
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        url = f"{self.base_url}/login"
        body = get_json(url, headers={"Authorization": f"Basic {basic}"}, timeout=self.timeout)
        try:
            return str(body["token"])
        except (KeyError, TypeError):
            raise ProviderError(f"{url}: no token in the answer", retry=True) from None

    def fetch(self, *, now: datetime) -> tuple[list[Point], list[Point]]:
        headers = {"Authorization": f"Bearer {self._token()}"}
        common = {"region": self.region, "signal_type": "co2_moer"}
        url = f"{self.base_url}/v3/forecast"
        forecast = parsed(
            url, get_json(url, params=common, headers=headers, timeout=self.timeout), _points
        )
        url = f"{self.base_url}/v3/historical"
        window = {"start": (now - HISTORY).isoformat(), "end": now.isoformat()}
        history = parsed(
            url,
            get_json(url, params={**common, **window}, headers=headers, timeout=self.timeout),
            _points,
        )
        return forecast, history


def _points(body: Any) -> list[Point]:
    meta = body.get("meta") or {}
    units = str(meta.get("units", "lbs_co2_per_mwh"))
    if units == "lbs_co2_per_mwh":
        factor = LBS_PER_MWH_TO_G_PER_KWH
    elif units in ("kg_co2_per_mwh", "g_co2_per_kwh"):
        factor = 1.0
    else:
        raise ValueError(f"unknown units {units!r}")
    seconds = int(meta.get("data_point_period_seconds", 300))
    return [
        Point(start=parse_time(e["point_time"]), seconds=seconds, value=float(e["value"]) * factor)
        for e in body["data"]
    ]
