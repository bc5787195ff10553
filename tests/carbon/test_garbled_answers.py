"""Whatever a provider answers, a source gives a full horizon of grid values
(non-negative, finite, at most 3,000 g/kWh) and never raises. The answers are
each provider's documented shape, edited at random (seeded) and served over
HTTP. 20,000 such answers on the code before (a script, 90 s) raised in 264:
each an OverflowError, from a number past a float's range (10**400 is valid
JSON), a date pushed past the year 9999 or before the year 1 by its offset,
or a span no date can end. CASPIAN_ANSWER_RUNS draws more."""

from __future__ import annotations

import copy
import json
import math
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carbon import CarbonSourceConfig
from carbon.sources import source_for
from tests.edits import ODD, edit
from tests.fakehttp import Reply, Server, serve

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RUNS = int(os.environ.get("CASPIAN_ANSWER_RUNS", "400"))
# Past a float's, or a date's, range; and forms each provider may or may not take.
VALUES = (
    *ODD, 10**400, float("inf"), -1e300, 10**18, "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00", "2026-11-22T02:00:00", "2026-11-22", "99999.00:00:00",
    "01:00:00",
)  # fmt: skip
KEYS = ("meta", "data", "units", "forecast", "extra")
ENV = {"ELECTRICITYMAPS_TOKEN": "em-token", "WATTTIME_USERNAME": "u", "WATTTIME_PASSWORD": "p"}


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _hours(start: datetime) -> list[dict[str, Any]]:
    return [{"carbonIntensity": 100 + i, "datetime": _stamp(start + i * HOUR)} for i in range(6)]


def _half_hours(start: datetime, intensity: Any) -> Iterator[dict[str, Any]]:
    for i in range(6):
        span = {"from": _stamp(start + i * HOUR / 2), "to": _stamp(start + (i + 1) * HOUR / 2)}
        yield {**span, **intensity(i)}


def _moer(start: datetime) -> dict[str, Any]:
    points = [
        {"point_time": _stamp(start + i * timedelta(minutes=5)), "value": 900.0 + i}
        for i in range(6)
    ]
    return {"data": points, "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300}}


# Per provider: its `carbon:` block, and the answers of each path it asks.
PROVIDERS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "electricitymaps": (
        {"provider": "electricitymaps", "zone": "DE"},
        {
            "/v3/carbon-intensity/forecast": {"zone": "DE", "forecast": _hours(NOW)},
            "/v3/carbon-intensity/history": {"zone": "DE", "history": _hours(NOW - 24 * HOUR)},
            "/v3/carbon-intensity/latest": {"zone": "DE", **_hours(NOW)[0]},
        },
    ),
    "ukci": (
        {"provider": "ukci", "zone": "GB"},
        {
            "/intensity/2026-11-22T02:00Z/fw48h": {
                "data": list(_half_hours(NOW, lambda i: {"intensity": {"forecast": 100 + i}}))
            },
            "/intensity/2026-11-22T02:00Z/pt24h": {
                "data": list(_half_hours(NOW - 24 * HOUR, lambda i: {"intensity": {"actual": 90}}))
            },
        },
    ),
    "ukci-regional": (
        {"provider": "ukci", "zone": "GB-London", "region": "13"},
        {
            "/regional/intensity/": {
                "data": list(
                    _half_hours(
                        NOW,
                        lambda i: {
                            "regions": [{"regionid": 13, "intensity": {"forecast": 200 + i}}]
                        },
                    )
                )
            },
        },
    ),
    "watttime": (
        {"provider": "watttime", "zone": "CAISO_NORTH"},
        {"/login": {"token": "wt"}, "/v3/forecast": _moer(NOW), "/v3/historical": _moer(NOW)},
    ),
    "carbonaware": (
        {"provider": "carbonaware", "zone": "westus"},
        {
            "/emissions/forecasts/current": [
                {
                    "location": "westus",
                    "forecastData": [
                        {"timestamp": _stamp(NOW + i * HOUR), "duration": 60, "value": 200 + i}
                        for i in range(6)
                    ],
                }
            ],
            "/emissions/bylocations": [
                {"time": _stamp(NOW - HOUR), "rating": 180.0, "duration": "01:00:00"}
            ],
        },
    ),
}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[Server, dict[str, Any]]]:
    """One server for every case; each case puts its answers in the dict."""
    answers: dict[str, Any] = {}

    def answer(prefix: str) -> Any:
        return lambda seen: Reply(body=json.dumps(answers[prefix]).encode())

    with serve() as server:
        for _, routes in PROVIDERS.values():
            for prefix in routes:
                server.routes[prefix] = answer(prefix)
        yield server, answers


def _garbled(seed: int) -> tuple[str, dict[str, Any]]:
    rng = random.Random(seed)
    name = rng.choice(sorted(PROVIDERS))
    answers = copy.deepcopy(PROVIDERS[name][1])
    for _ in range(rng.choice((1, 1, 2, 3))):
        edit(answers[rng.choice(sorted(answers))], rng, values=VALUES, keys=KEYS)
    return name, answers


def _horizon_is_whole(values: tuple[float, ...]) -> bool:
    return len(values) == 12 and all(math.isfinite(v) and 0 <= v <= 3000 for v in values)


def test_each_providers_answer_as_documented_is_read_live(api, tmp_path) -> None:
    """The answers the edits start from are good ones: else every case would
    be the fallback's, and pass."""
    server, answers = api
    for name, (block, routes) in PROVIDERS.items():
        answers.clear()
        answers.update(routes)
        config = CarbonSourceConfig(**block, baseUrl=server.url)
        source = source_for(config, env=ENV, cache_dir=tmp_path / name)
        result = source.series(start=NOW, slot_seconds=900, slots=12, now=NOW)
        assert result.provenance.origin == "live", (name, result.provenance)
        assert _horizon_is_whole(result.values)


@pytest.mark.parametrize("seed", range(RUNS))
def test_a_garbled_answer_still_gives_a_whole_horizon(api, tmp_path, seed: int) -> None:
    server, answers = api
    name, garbled = _garbled(seed)
    answers.clear()
    answers.update(garbled)
    config = CarbonSourceConfig(**PROVIDERS[name][0], baseUrl=server.url)
    source = source_for(config, env=ENV, cache_dir=tmp_path)
    result = source.series(start=NOW, slot_seconds=900, slots=12, now=NOW)
    assert _horizon_is_whole(result.values), (name, result.values)
    assert ENV["ELECTRICITYMAPS_TOKEN"] not in result.provenance.note
    if result.provenance.origin == "live":
        # What it kept of the answer reads back from the cache as it was.
        again = source.series(start=NOW, slot_seconds=900, slots=12, now=NOW + HOUR / 60)
        assert (again.provenance.origin, again.values) == ("cache", result.values)
    else:
        assert result.provenance.origin == "fallback" and f"{name.split('-')[0]} failed" in (
            result.provenance.note
        )
