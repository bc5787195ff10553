"""The seasonal-naive fallback, its backtest, and the offline commands."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from carbon import embedded
from carbon.forecasting import backtest, seasonal_naive
from reconciler.cli import main


def test_seasonal_naive_repeats_the_last_period() -> None:
    assert seasonal_naive([1, 2, 3, 4], period=2, steps=5) == [3, 4, 3, 4, 3]
    with pytest.raises(ValueError, match="needs 3"):
        seasonal_naive([1, 2], period=3, steps=1)


def test_a_perfectly_periodic_series_backtests_to_zero_error() -> None:
    day = [float(100 + (h - 12) ** 2) for h in range(24)]
    result = backtest(day * 4, zone="X", days=3)
    assert result.mae_g_per_kwh == 0 and result.mape == 0 and result.planner_loss == 0
    assert result.hours == 72


def test_a_shifted_day_costs_the_planner_carbon() -> None:
    calm = [100.0] * 24
    calm[3:7] = [10.0] * 4  # yesterday's clean hours ...
    windy = [100.0] * 24
    windy[15:19] = [10.0] * 4  # ... moved to the afternoon today
    result = backtest(calm + windy, zone="X", days=1, job_hours=4)
    assert result.planner_loss == pytest.approx((400 - 40) / 40)
    assert result.mae_g_per_kwh == pytest.approx(8 * 90 / 24)


def test_backtest_command_reports_its_figures() -> None:
    result = CliRunner().invoke(
        main, ["carbon", "backtest", "--zone", "DE", "--days", "14", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["zone"] == "DE" and report["hours"] == 14 * 24
    assert 0 < report["mape"] < 1 and report["mae_g_per_kwh"] > 0 and report["planner_loss"] >= 0
    for days, said in (
        ("1", "DE, 1 day from 2023-01-01 (day 0 of 2023): MAE "),
        ("2", "DE, 2 days from"),
    ):
        text = CliRunner().invoke(main, ["carbon", "backtest", "--zone", "DE", "--days", days])
        assert text.output.startswith(said), text.output


@pytest.mark.parametrize("zone", embedded.zones())
def test_forecast_works_offline_for_every_dataset_zone(zone: str) -> None:
    result = CliRunner().invoke(
        main, ["carbon", "forecast", "--zone", zone, "--hours", "48", "--slot", "15m", "--json"]
    )
    assert result.exit_code == 0, result.output
    series = json.loads(result.stdout)
    assert len(series["values"]) == 192
    assert series["provenance"]["provider"] == "embedded:electricitymaps-2023"


def test_forecast_bars_are_drawn_from_zero_and_mark_the_least() -> None:
    args = ["carbon", "forecast", "--zone", "DE", "--hours", "12", "--slot", "1h"]
    runner, at = CliRunner(), ["--now", "2026-12-01T21:00:00Z"]
    values = json.loads(runner.invoke(main, [*args, *at, "--json"]).stdout)["values"]
    rows = runner.invoke(main, [*args, *at]).stdout.splitlines()[2:]
    assert len(rows) == 12
    high = max(values)
    for row, value in zip(rows, values, strict=True):
        assert row.rstrip(" <").count("#") == round(40 * value / high), row
        assert row.endswith(" <") == (value == min(values))


def test_forecast_names_the_zones_when_one_is_unknown() -> None:
    result = CliRunner().invoke(main, ["carbon", "forecast", "--zone", "XX"])
    assert result.exit_code != 0 and "US-CAL-CISO" in result.output


def test_a_uk_region_that_is_not_one_is_a_usage_error() -> None:
    args = ["carbon", "forecast", "--zone", "GB", "--provider", "ukci", "--region", "london"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--region': 'london' is not a UK region id" in result.output
