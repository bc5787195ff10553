"""The embedded dataset: shipped intact with its notice, replayed onto the same hour."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from carbon import CarbonSourceConfig, embedded
from carbon.series import step_means
from carbon.sources import source_for

DATA = resources.files("carbon") / "data"
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def raw_rows(stem: str) -> list[dict[str, str]]:
    raw = gzip.decompress(
        (DATA / "electricitymaps-2023" / f"{stem}_2023_hourly.csv.gz").read_bytes()
    )
    return list(csv.DictReader(io.StringIO(raw.decode())))


def test_notice_credits_electricity_maps_and_names_the_odbl() -> None:
    notice = (DATA / "NOTICE.md").read_text()
    assert "Carbon intensity data (c) Electricity Maps (electricitymaps.com), ODbL 1.0" in notice
    assert "Open Database License" in notice


def test_packaged_files_decompress_to_the_published_bytes() -> None:
    sums = {
        name: digest
        for digest, name in re.findall(
            r"([0-9a-f]{64})\s+(\S+\.csv)", (DATA / "NOTICE.md").read_text()
        )
    }
    assert len(sums) == 12
    for name, digest in sums.items():
        packed = (DATA / "electricitymaps-2023" / f"{name}.gz").read_bytes()
        assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == digest, name


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2023, 1, 1, 0, 30, tzinfo=UTC), 0),
        (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), (325 * 24) + 2),
        (datetime(2024, 2, 29, 5, tzinfo=UTC), (31 + 27) * 24 + 5),  # Feb 29 replays Feb 28
        (datetime(2024, 3, 1, 0, tzinfo=UTC), 59 * 24),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), 8759),
    ],
)
def test_now_maps_onto_the_same_hour_of_2023(moment: datetime, expected: int) -> None:
    assert embedded.hour_of_2023(moment) == expected


def test_series_replays_the_csv_values_for_that_hour() -> None:
    rows = raw_rows("DE-LU")
    provider = embedded.EmbeddedProvider(zone="DE", signal="direct")
    series = provider.series(start=NOW, slot_seconds=3600, slots=3, now=NOW)
    index = embedded.hour_of_2023(NOW)
    assert rows[index]["Datetime (UTC)"] == "2023-11-22 02:00:00"
    expected = [float(rows[index + k]["Carbon Intensity gCO₂eq/kWh (direct)"]) for k in range(3)]
    assert list(series.values) == expected
    assert series.provenance.kind == "replay"
    assert series.provenance.provider == "embedded:electricitymaps-2023"


def test_lifecycle_is_the_default_signal() -> None:
    rows = raw_rows("FR")
    series = source_for(CarbonSourceConfig(zone="FR"), env={}).series(
        start=datetime(2026, 1, 1, tzinfo=UTC), slot_seconds=3600, slots=1, now=NOW
    )
    assert series.values[0] == float(rows[0]["Carbon Intensity gCO₂eq/kWh (LCA)"])


def test_a_horizon_across_new_year_wraps_to_january() -> None:
    rows = raw_rows("GB")
    start = datetime(2026, 12, 31, 23, tzinfo=UTC)
    series = embedded.EmbeddedProvider(zone="GB", signal="direct").series(
        start=start, slot_seconds=3600, slots=2, now=NOW
    )
    assert series.values == (
        float(rows[8759]["Carbon Intensity gCO₂eq/kWh (direct)"]),
        float(rows[0]["Carbon Intensity gCO₂eq/kWh (direct)"]),
    )


def test_quarter_hour_slots_hold_the_hour_and_two_hour_slots_average() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [10.0, 20.0, 30.0, 40.0]
    quarters = step_means(
        points_start=start,
        point_seconds=3600,
        points=points,
        start=start + timedelta(minutes=45),
        slot_seconds=900,
        slots=3,
    )
    assert quarters == (10.0, 20.0, 20.0)
    pairs = step_means(
        points_start=start,
        point_seconds=3600,
        points=points,
        start=start,
        slot_seconds=7200,
        slots=2,
    )
    assert pairs == (15.0, 35.0)
    with pytest.raises(ValueError, match="not covered"):
        step_means(
            points_start=start,
            point_seconds=3600,
            points=points,
            start=start,
            slot_seconds=3600,
            slots=5,
        )


def test_an_unknown_zone_names_the_zones_there_are() -> None:
    with pytest.raises(embedded.UnknownZoneError, match="FR, GB"):
        embedded.EmbeddedProvider(zone="XX")


def test_every_dataset_zone_answers() -> None:
    for zone in embedded.zones():
        series = embedded.EmbeddedProvider(zone=zone).series(
            start=NOW, slot_seconds=900, slots=96, now=NOW
        )
        assert len(series.values) == 96
        assert all(0 < value < 2000 for value in series.values)


@pytest.mark.parametrize(("written", "meant"), [("fr", "FR"), ("US-CAL", "US-CAL-CISO")])
def test_an_unknown_zone_names_the_one_it_is_close_to(written, meant) -> None:
    with pytest.raises(embedded.UnknownZoneError) as refused:
        embedded.hourly(written, "lifecycle")
    assert str(refused.value).startswith(
        f"zone '{written}' is not in the embedded dataset (did you mean {meant}?); use one of "
    )
