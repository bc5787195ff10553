"""Each live provider against a local server answering in its documented shape,
and every failure ending in a labelled fallback, never in an exception."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest

from carbon import CarbonSourceConfig, embedded
from carbon.http import ProviderError, get_json
from carbon.sources import source_for
from tests.fakehttp import Reply, left_open, serve

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


# The UK API's regional answer for one half hour: two regions of GB.
REGIONAL = [
    {
        "from": "2026-11-22T02:00Z",
        "to": "2026-11-22T02:30Z",
        "regions": [
            {"regionid": 1, "shortname": "North Scotland", "intensity": {"forecast": 10}},
            {"regionid": 13, "shortname": "London", "intensity": {"forecast": 250}},
        ],
    }
]


def hourly(start: datetime, values: list[float], key: str = "carbonIntensity") -> list[dict]:
    return [
        {key: v, "datetime": (start + i * HOUR).isoformat().replace("+00:00", "Z")}
        for i, v in enumerate(values)
    ]


def source(provider: str, url: str, tmp_path, **extra):
    config = CarbonSourceConfig(
        provider=provider, zone=extra.pop("zone", "DE"), baseUrl=url, **extra
    )
    env = {
        "ELECTRICITYMAPS_TOKEN": "em-secret-token-123",
        "WATTTIME_USERNAME": "wt-user",
        "WATTTIME_PASSWORD": "wt-pass-456",
    }
    return source_for(config, env=env, cache_dir=tmp_path / "cache")


def series(src, *, slots=8, slot=3600, now=NOW):
    return src.series(start=now, slot_seconds=slot, slots=slots, now=now)


def test_electricitymaps_forecast_becomes_the_series(tmp_path) -> None:
    with serve() as api:
        api.route(
            "/v3/carbon-intensity/forecast",
            Reply(body={"zone": "DE", "forecast": hourly(NOW, [100, 200, 300, 400])}),
        )
        api.route(
            "/v3/carbon-intensity/history",
            Reply(body={"zone": "DE", "history": hourly(NOW - 24 * HOUR, [50] * 24)}),
        )
        result = series(source("electricitymaps", api.url, tmp_path), slots=8, slot=1800)
        asked = api.requests_to("/v3/carbon-intensity/forecast")[0]
    assert result.values[:8] == (100, 100, 200, 200, 300, 300, 400, 400)
    assert result.provenance.origin == "live" and not result.provenance.stale
    assert asked.headers["auth-token"] == "em-secret-token-123"
    assert asked.query == {"zone": ["DE"], "emissionFactorType": ["lifecycle"]}


def test_past_the_forecast_the_day_before_fills_in(tmp_path) -> None:
    with serve() as api:
        api.route(
            "/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [100, 100])})
        )
        api.route(
            "/v3/carbon-intensity/history",
            Reply(body={"history": hourly(NOW - 24 * HOUR, list(range(24)))}),
        )
        result = series(source("electricitymaps", api.url, tmp_path), slots=5)
    assert result.values == (100, 100, 2, 3, 4)
    assert result.provenance.kind == "forecast+seasonal-naive"
    assert "2 forecast + 3 seasonal-naive slots" in result.provenance.note


def test_what_was_measured_is_read_back_from_the_last_answer_without_asking_again(
    tmp_path,
) -> None:
    # The last 24 hours measured, less one hour eight hours ago: what ran since
    # can be counted, what ran before that hole cannot.
    measured = hourly(NOW - 24 * HOUR, [float(i) for i in range(24)])
    del measured[16]
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [900])}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": measured}))
        src = source("electricitymaps", api.url, tmp_path)
        assert src.measured(start=NOW - 48 * HOUR, slot_seconds=1800, slots=97, now=NOW) is None
        series(src)
        asked = len(api.seen)
        back = src.measured(start=NOW - 48 * HOUR, slot_seconds=1800, slots=97, now=NOW)
        assert len(api.seen) == asked  # the forecast's answer, kept
    assert back is not None and back.provenance.kind == "actual"
    # From the hour after the hole to the last measured one; not the forecast.
    assert back.start == NOW - 7 * HOUR
    assert back.values == tuple(float(v) for v in range(17, 24) for _ in range(2))


@pytest.mark.parametrize("provider", ["watttime", "carbonaware"])
def test_providers_that_take_a_window_are_asked_for_two_days_measured(tmp_path, provider) -> None:
    # So that a run that began 30 hours ago is counted on what the grid emitted.
    if provider == "watttime":
        path, start_key, zone = "/v3/historical", "start", "CAISO_NORTH"
        meta = {"units": "g_co2_per_kwh", "data_point_period_seconds": 3600}
        points = [
            {"point_time": (NOW - (40 - i) * HOUR).isoformat(), "value": 100.0 + i}
            for i in range(40)
        ]
        routes = {
            "/login": {"token": "wt-token-789"},
            "/v3/forecast": {"data": points[-1:], "meta": meta},
            path: {"data": points, "meta": meta},
        }
    else:
        path, start_key, zone = "/emissions/bylocations", "time", "westus"
        forecast = {"timestamp": NOW.isoformat(), "duration": 60, "value": 300.0}
        routes = {
            "/emissions/forecasts/current": [{"location": zone, "forecastData": [forecast]}],
            path: [
                {
                    "location": zone,
                    "time": (NOW - (40 - i) * HOUR).isoformat(),
                    "rating": 100.0 + i,
                    "duration": "01:00:00",
                }
                for i in range(40)
            ],
        }
    with serve() as api:
        for route, body in routes.items():
            api.route(route, Reply(body=body))
        src = source(provider, api.url, tmp_path, zone=zone)
        series(src)
        asked = api.requests_to(path)[0]
        back = src.measured(start=NOW - 48 * HOUR, slot_seconds=3600, slots=49, now=NOW)
    assert asked.query[start_key] == [(NOW - 48 * HOUR).isoformat()]
    assert back is not None and back.start == NOW - 40 * HOUR
    assert back.values == tuple(100.0 + i for i in range(40))


@pytest.mark.parametrize("status", [401, 429, 500, 503])
def test_an_error_answer_leaves_no_connection_open(status) -> None:
    with left_open() as left, serve() as api:
        api.route("/x", Reply(status=status, body={"error": "no"}, headers={"Retry-After": "0"}))
        try:
            get_json(api.url + "/x", attempts=2, sleep=lambda _: None)
        except ProviderError:
            pass  # dropped here with all it holds, as a source drops it
        else:
            pytest.fail("no ProviderError")
    assert left == []


LATEST = {"zone": "DE", **hourly(NOW, [500])[0], "isEstimated": True}


@pytest.mark.parametrize(
    ("latest", "values", "note"),
    [
        (Reply(body=LATEST), (500, 500, 1, 1, 2, 2), "0 forecast + 2 measured + 4 seasonal"),
        (Reply(status=404, body={}), (0, 0, 1, 1, 2, 2), "0 forecast + 6 seasonal"),
        (Reply(body={"zone": "DE"}), (0, 0, 1, 1, 2, 2), "0 forecast + 6 seasonal"),
    ],
)
def test_without_forecast_the_hour_now_running_comes_before_the_day_before(
    tmp_path, latest, values, note
) -> None:
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(status=403, body={"error": "plan"}))
        api.route(
            "/v3/carbon-intensity/history",
            Reply(body={"history": hourly(NOW - 24 * HOUR, list(range(24)))}),
        )
        api.route("/v3/carbon-intensity/latest", latest)
        result = series(source("electricitymaps", api.url, tmp_path), slots=6, slot=1800)
    assert result.values == values
    assert result.provenance.kind == "seasonal-naive"
    assert note in result.provenance.note


def test_missing_hours_absurd_values_and_other_time_zones(tmp_path) -> None:
    local = [  # +01:00 offsets, one hour missing, one negative and one absurd value
        {"carbonIntensity": 100, "datetime": "2026-11-22T03:00:00+01:00"},
        {"carbonIntensity": -5, "datetime": "2026-11-22T04:00:00+01:00"},
        {"carbonIntensity": 99999, "datetime": "2026-11-22T05:00:00+01:00"},
        {"carbonIntensity": 160, "datetime": "2026-11-22T07:00:00+01:00"},
    ]
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": local}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        result = series(source("electricitymaps", api.url, tmp_path), slots=5)
    assert result.values == (100, 115, 130, 145, 160)
    assert "3 interpolated" in result.provenance.note


@pytest.mark.parametrize(
    ("reply", "requests"),
    [
        (Reply(status=401, body={"error": "bad token"}), 1),  # final: no retry
        (Reply(status=500, body={}), 3),
        (Reply(body=b'{"zone": "DE", "history": [{"carbonIn'), 3),  # truncated JSON
        (Reply(body=b"[" * 100_000 + b"]" * 100_000), 3),  # nested past Python's JSON reader
        (Reply(body={"unexpected": True}), 1),  # valid JSON, wrong shape: not retried
        # JSON's numbers have no bounds; Python's floats and dates do.
        (
            Reply(
                body=b'{"history": [{"datetime": "2026-11-22T01:00Z", "carbonIntensity": 1%s}]}'
                % (b"0" * 400)
            ),
            1,
        ),
        (Reply(body={"history": [{"datetime": "9999-12-31T23:30Z", "carbonIntensity": 5}]}), 1),
        (
            Reply(body={"history": [{"datetime": "0001-01-01T00:30+01:00", "carbonIntensity": 5}]}),
            1,
        ),
    ],
)
def test_a_failing_provider_falls_back_to_the_dataset_labelled(tmp_path, reply, requests) -> None:
    with serve() as api:
        api.route("/v3/", reply)
        result = series(source("electricitymaps", api.url, tmp_path), slots=3)
        made = len(api.seen)
    expected = embedded.EmbeddedProvider(zone="DE").series(
        start=NOW, slot_seconds=3600, slots=3, now=NOW
    )
    assert result.values == expected.values
    assert result.provenance.stale and result.provenance.origin == "fallback"
    assert "electricitymaps failed" in result.provenance.note
    assert "em-secret-token-123" not in result.provenance.note
    assert made == requests


SLOW_HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 400  # 8 s at 0.02 s a byte


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (Reply(body={}, delay=3.0), "no answer"),
        # Each byte comes within the timeout: only a bound on the whole answer ends it.
        (Reply(body=b"{" + b" " * 200 + b"}", drip=0.02), "took longer than 0.6 s to come whole"),
        # Headers a byte at a time: they held the request for as long as they went on.
        (Reply(raw=SLOW_HEADERS, drip=0.02), "took longer than 0.6 s to come whole"),
        (Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n"), "the answer is no HTTP (BadStatusLine)"),
    ],
)
def test_a_server_that_never_answers_whole_times_out_into_the_fallback(
    tmp_path, reply, said
) -> None:
    with serve() as api:
        api.route("/v3/", reply)
        src = source("electricitymaps", api.url, tmp_path)
        src.client.timeout = 0.2
        started = time.monotonic()
        result = series(src, slots=2)
        took = time.monotonic() - started
        asked = len(api.seen)
    assert result.provenance.origin == "fallback" and said in result.provenance.note
    # Asked once: a server that let a whole timeout pass is not asked again at once.
    assert asked == 1 and took < 2.0


def test_an_answer_past_16_mib_is_not_read_to_its_end(tmp_path) -> None:
    with serve() as api:
        api.route("/v3/", Reply(body=b" " * (17 * 2**20)))
        result = series(source("electricitymaps", api.url, tmp_path), slots=2)
        asked = len(api.seen)
    assert result.provenance.origin == "fallback"
    assert "the answer is larger than 16 MiB" in result.provenance.note
    assert asked == 1


def test_zones_are_fetched_at_once(tmp_path) -> None:
    from reconciler.gridcarbon import fetch_forecasts
    from tests.fleet.helpers import fleet_with

    class Slow:
        """A provider that takes a second, as a live API near its timeout does."""

        def __init__(self, zone: str) -> None:
            self.inner = embedded.EmbeddedProvider(zone=zone)

        def series(self, **window):
            time.sleep(1.0)
            return self.inner.series(**window)

    sources = {zone: Slow(zone) for zone in ("DE", "FR", "US-CAL-CISO")}
    started = time.monotonic()
    forecasts = fetch_forecasts(fleet_with(), now=NOW, sources=sources)
    took = time.monotonic() - started
    assert sorted(forecasts) == ["DE", "FR", "US-CAL-CISO"]
    assert took < 2.5  # three seconds one after another


@pytest.mark.parametrize(
    ("header", "waits"),
    [
        ("7", 7.0),
        ("99999", 30.0),  # capped
        ("-3", 0.0),
        ("Sun, 06 Dec 1998 07:28:00 GMT", 0.0),  # a date gone by
        ("Sun, 06 Dec 2099 07:28:00 GMT", 30.0),  # a date, capped
        ("Sun, 06 Dec 20x6 07:28:00 GMT", 1.0),  # neither: a second
        ("nan", 1.0),  # reads as a float, and sleeping NaN raises
        ("inf", 1.0),
    ],
)
def test_429_waits_as_long_as_retry_after_says(header, waits) -> None:
    slept = []
    with serve() as api:
        api.route("/x", Reply(status=429, headers={"Retry-After": header}), Reply(body={"ok": 1}))
        assert get_json(api.url + "/x", sleep=slept.append) == {"ok": 1}
    assert slept == [waits]


def test_a_retry_after_date_counts_from_the_answers_own_date() -> None:
    """The server's clock against its own Date header: this host's clock, a
    day off, changes nothing."""
    slept = []
    said = time.time() - 86400  # the server's clock: a day behind
    limited = Reply(
        status=429,
        headers={"Retry-After": formatdate(said + 7, usegmt=True)},
        date=formatdate(said, usegmt=True),
    )
    with serve() as api:
        api.route("/x", limited, Reply(body={"ok": 1}))
        assert get_json(api.url + "/x", sleep=slept.append) == {"ok": 1}
    assert slept == [7.0]


def test_a_live_answer_is_cached_and_the_cache_outlives_an_outage(tmp_path) -> None:
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [42] * 6)}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        src = source("electricitymaps", api.url, tmp_path)
        first = series(src, slots=3)
        again = series(src, slots=3, now=NOW + timedelta(minutes=5))  # fresh: no request
        assert len(api.seen) == 2
        url = api.url
    assert first.provenance.origin == "live" and again.provenance.origin == "cache"
    outage = source("electricitymaps", url, tmp_path)  # the server is gone now
    outage.client.timeout = 0.2
    later = series(outage, slots=3, now=NOW + timedelta(hours=1))
    assert later.values == (42, 42, 42)
    assert later.provenance.stale and later.provenance.origin == "cache"


def test_a_cache_written_later_than_now_is_not_fresh(tmp_path) -> None:
    """`--now` in the past, after a live fetch today: today's answer does not
    cover that window, so it is not served as fresh (nor does it crash)."""
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [42] * 6)}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        series(source("electricitymaps", api.url, tmp_path), slots=3)
        earlier = NOW - timedelta(days=30)
        api.route(
            "/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(earlier, [7] * 6)})
        )
        past = series(source("electricitymaps", api.url, tmp_path), slots=3, now=earlier)
    assert past.values == (7, 7, 7)
    assert past.provenance.origin == "live"


@pytest.mark.parametrize(
    ("edit", "values"),
    [
        (lambda doc: doc["forecast"][1].update(value=1e12), (42, 42, 42)),  # dropped, as live
        (lambda doc: doc["forecast"][0].update(start="9999-12-31T23:30:00Z"), None),
        (lambda doc: doc.update(fetched_at="2026-11-22T02:00:00"), None),  # no offset: no age
    ],
)
def test_a_cache_edited_by_hand_is_read_as_an_answer_would_be(tmp_path, edit, values) -> None:
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [42] * 6)}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        series(source("electricitymaps", api.url, tmp_path), slots=3)
        url = api.url
    [cached] = (tmp_path / "cache").glob("*.json")
    document = json.loads(cached.read_text())
    edit(document)
    cached.write_text(json.dumps(document))
    outage = source("electricitymaps", url, tmp_path)  # the server is gone now
    outage.client.timeout = 0.2
    for later in (timedelta(minutes=5), HOUR):  # fresh, then stale
        result = series(outage, slots=3, now=NOW + later)
        if values is None:
            assert result.provenance.origin == "fallback"
        else:
            assert result.values == values and result.provenance.origin == "cache"


def test_a_cache_that_cannot_be_written_costs_only_the_fallback_of_an_outage(
    tmp_path, caplog
) -> None:
    (tmp_path / "cache").write_text("")  # where the cache's directory should be
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [42] * 6)}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        src = source("electricitymaps", api.url, tmp_path)
        first = series(src, slots=3)
        again = series(src, slots=3, now=NOW + timedelta(minutes=5))
        assert len(api.seen) == 4  # nothing was kept, so the provider is asked again
    assert first.values == again.values == (42, 42, 42)
    assert first.provenance.origin == again.provenance.origin == "live"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(tmp_path / "cache") in warnings[0]


def test_sources_of_one_zone_that_differ_do_not_share_a_cache(tmp_path) -> None:
    """Two UK regions under one zone name, or one zone behind two servers: each
    answer is cached apart, so neither is served the other's."""
    with serve() as api, serve() as other:
        api.route("/regional/intensity/", Reply(body={"data": REGIONAL}))
        # As YAML reads `region: 13`: a number.
        london = series(source("ukci", api.url, tmp_path, zone="GB", region=13), slots=1)
        scotland = series(source("ukci", api.url, tmp_path, zone="GB", region="1"), slots=1)
        other.route("/regional/intensity/", Reply(body={"data": []}))
        elsewhere = series(source("ukci", other.url, tmp_path, zone="GB", region="13"), slots=1)
    assert (london.values, scotland.values) == ((250,), (10,))
    assert elsewhere.provenance.origin != "cache"


def test_uk_national_half_hours_average_into_hourly_slots(tmp_path) -> None:
    data = [
        {
            "from": (NOW + i * HOUR / 2).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (NOW + (i + 1) * HOUR / 2).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 100 + 10 * i, "actual": None, "index": "moderate"},
        }
        for i in range(4)
    ]
    with serve() as api:
        api.route("/intensity/2026-11-22T02:00Z/fw48h", Reply(body={"data": data}))
        api.route("/intensity/2026-11-22T02:00Z/pt24h", Reply(body={"data": []}))
        result = series(source("ukci", api.url, tmp_path, zone="GB"), slots=2)
    assert result.values == (105, 125)


def test_uk_national_history_is_what_was_measured_not_forecast(tmp_path) -> None:
    # The last half-hour of the past day has no actual yet: not counted as measured.
    past = [
        {
            "from": (NOW - (4 - i) * HOUR / 2).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (NOW - (3 - i) * HOUR / 2).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 999, "actual": None if i == 3 else 100 + i, "index": "low"},
        }
        for i in range(4)
    ]
    ahead = [{**past[0], "from": "2026-11-22T02:00Z", "to": "2026-11-22T02:30Z"}]
    with serve() as api:
        api.route("/intensity/2026-11-22T02:00Z/fw48h", Reply(body={"data": ahead}))
        api.route("/intensity/2026-11-22T02:00Z/pt24h", Reply(body={"data": past}))
        src = source("ukci", api.url, tmp_path, zone="GB")
        series(src, slots=1, slot=1800)
        back = src.measured(start=NOW - 2 * HOUR, slot_seconds=1800, slots=4, now=NOW)
    assert back is not None
    assert (back.start, back.values) == (NOW - 2 * HOUR, (100.0, 101.0, 102.0))


def test_uk_regional_reads_its_own_region(tmp_path) -> None:
    with serve() as api:
        api.route("/regional/intensity/", Reply(body={"data": REGIONAL}))
        result = series(
            source("ukci", api.url, tmp_path, zone="GB-London", region="13"), slots=1, slot=1800
        )
    assert result.values == (250,)


def test_watttime_logs_in_then_converts_moer_to_grams(tmp_path) -> None:
    points = [
        {"point_time": (NOW + i * timedelta(minutes=5)).isoformat(), "value": 1000.0}
        for i in range(12)
    ]
    with serve() as api:
        api.route("/login", Reply(body={"token": "wt-token-789"}))
        api.route(
            "/v3/forecast",
            Reply(
                body={
                    "data": points,
                    "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300},
                }
            ),
        )
        api.route("/v3/historical", Reply(body={"data": [], "meta": {}}))
        result = series(source("watttime", api.url, tmp_path, zone="CAISO_NORTH"), slots=1)
        login = api.requests_to("/login")[0]
        forecast = api.requests_to("/v3/forecast")[0]
    assert result.values[0] == pytest.approx(453.59237)
    assert login.headers["authorization"].startswith("Basic ")
    assert forecast.headers["authorization"] == "Bearer wt-token-789"
    assert forecast.query["signal_type"] == ["co2_moer"]


def test_carbon_aware_sdk_forecast_data(tmp_path) -> None:
    body = [
        {
            "location": "westus",
            "forecastData": [
                {
                    "location": "westus",
                    "timestamp": (NOW + i * HOUR).isoformat(),
                    "duration": 60,
                    "value": 200 + i,
                }
                for i in range(3)
            ],
        }
    ]
    with serve() as api:
        api.route("/emissions/forecasts/current", Reply(body=body))
        api.route(
            "/emissions/bylocations",
            Reply(
                body=[
                    {
                        "location": "westus",
                        "time": (NOW - HOUR).isoformat(),
                        "rating": 180.0,
                        "duration": "01:00:00",
                    }
                ]
            ),
        )
        result = series(source("carbonaware", api.url, tmp_path, zone="westus"), slots=3)
    assert result.values == (200, 201, 202)


def test_a_missing_key_is_reported_without_a_request(tmp_path) -> None:
    config = CarbonSourceConfig(provider="electricitymaps", zone="FR", baseUrl="http://127.0.0.1:9")
    result = source_for(config, env={}, cache_dir=None).series(
        start=NOW, slot_seconds=3600, slots=2, now=NOW
    )
    assert "set ELECTRICITYMAPS_TOKEN" in result.provenance.note


def test_a_zone_outside_the_dataset_falls_back_to_a_labelled_flat_value(tmp_path) -> None:
    config = CarbonSourceConfig(provider="ukci", zone="GB-Mars", baseUrl="http://127.0.0.1:9")
    src = source_for(config, env={}, cache_dir=None)
    src.client.timeout = 0.2
    result = src.series(start=NOW, slot_seconds=3600, slots=2, now=NOW)
    assert result.values == (300.0, 300.0)
    assert "set carbon.fallbackZone" in result.provenance.note


def test_errors_never_carry_the_query_string() -> None:
    with serve() as api:
        api.route("/secret", Reply(status=403))
        with pytest.raises(ProviderError) as raised:
            get_json(api.url + "/secret", params={"token": "abc-123"})
    assert "abc-123" not in str(raised.value) and "credentials" in str(raised.value)


def test_a_password_in_a_providers_url_is_said_by_no_error(tmp_path) -> None:
    """A URL from CASPIAN_ELECTRICITYMAPS_URL with a user in it: the fallback's
    note goes into commit trailers and logs."""
    password = secrets.token_hex(8)  # drawn afresh: none is written in the repo
    with serve() as api:
        api.route("/v3/carbon-intensity/history", Reply(body={"history": "garbage"}))
        for url in (api.url, api.url.replace("://", f"://someone:{password}@")):
            result = series(source("electricitymaps", url, tmp_path), slots=2)
            assert result.provenance.origin == "fallback"
            assert password not in result.provenance.note
            assert "/v3/carbon-intensity/history: " in result.provenance.note


def test_a_token_with_a_line_break_is_trimmed_and_never_quoted(tmp_path) -> None:
    config = CarbonSourceConfig(provider="electricitymaps", zone="DE")
    with serve() as api:
        api.route("/v3/carbon-intensity/forecast", Reply(body={"forecast": hourly(NOW, [42] * 3)}))
        api.route("/v3/carbon-intensity/history", Reply(body={"history": []}))
        env = {
            "ELECTRICITYMAPS_TOKEN": "em-secret-token-123\n",
            "CASPIAN_ELECTRICITYMAPS_URL": api.url,
        }
        result = series(source_for(config, env=env, cache_dir=None), slots=2)
        assert result.values == (42, 42)
        assert api.seen[0].headers["auth-token"] == "em-secret-token-123"
    # One that HTTP cannot carry at all is refused without quoting it.
    with pytest.raises(ProviderError) as raised:
        get_json("http://127.0.0.1:9/x", headers={"auth-token": "em-\nsecret"})
    assert "secret" not in str(raised.value) and "cannot be made" in str(raised.value)
