"""`caspian carbon`: the grid's carbon intensity as the planner sees it, and
what its fallback forecast costs."""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from reconciler import gridcarbon
from reconciler.cli.common import days_text, now_option, parse_now

if TYPE_CHECKING:
    from carbon.embedded import Signal
    from carbon.series import ProviderName

BAR_WIDTH = 40  # characters of the longest bar of `carbon forecast`


@click.group()
def carbon() -> None:
    """Grid carbon intensity: what the planner would see, and what fallback data costs."""


@carbon.command("forecast")
@click.option("--zone", required=True, help="Zone id, e.g. DE, FR, GB, US-CAL-CISO.")
@click.option(
    "--provider",
    type=click.Choice(["embedded", "electricitymaps", "ukci", "watttime", "carbonaware"]),
    default="embedded",
    show_default=True,
)
@click.option("--region", help="WattTime region, UK region id, or Carbon Aware SDK location.")
@click.option("--hours", type=click.IntRange(1, 24 * 7), default=24, show_default=True)
@click.option("--slot", default="1h", show_default=True, help="Slot length, e.g. 15m or 1h.")
@now_option
@click.option("--json", "as_json", is_flag=True)
def carbon_forecast(
    zone: str,
    provider: ProviderName,
    region: str | None,
    hours: int,
    slot: str,
    now_text: str | None,
    as_json: bool,
) -> None:
    """The intensity series for ZONE over the next HOURS, with its provenance."""
    from carbon import CarbonSourceConfig
    from carbon.sources import source_for
    from reconciler.quantities import duration

    now = parse_now(now_text)
    try:
        slot_seconds = int(duration(slot).total_seconds())
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--slot'") from None
    start = datetime.fromtimestamp(now.timestamp() // slot_seconds * slot_seconds, tz=UTC)
    try:
        config = CarbonSourceConfig(provider=provider, zone=zone, region=region)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        reason = first["msg"].removeprefix("Value error, ")
        raise click.BadParameter(reason, param_hint=f"'--{first['loc'][0]}'") from None
    try:
        source = source_for(config, env=os.environ, cache_dir=gridcarbon.carbon_cache())
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    series = source.series(
        start=start,
        slot_seconds=slot_seconds,
        slots=math.ceil(hours * 3600 / slot_seconds),
        now=now,
    )
    if as_json:
        click.echo(series.model_dump_json())
        return
    click.echo(f"{zone}: {series.provenance.describe()}")
    click.echo(f"{'UTC':16}  gCO2/kWh  (bars from 0; < the least)")
    low, high = min(series.values), max(series.values)
    for index, value in enumerate(series.values):
        moment = start.timestamp() + index * slot_seconds
        # From zero, so that a bar twice as long is twice the carbon: bars from
        # the minimum made 688 against 705 look like 1 against 28.
        bar = "#" * round(BAR_WIDTH * value / high) if high > 0 else ""
        stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{stamp}  {value:8.1f}  {bar}{' <' if value == low else ''}")


@carbon.command("backtest")
@click.option("--zone", required=True)
@click.option("--days", type=click.IntRange(1, 360), default=28, show_default=True)
@click.option(
    "--start",
    "start_day",
    type=click.IntRange(0, 330),
    default=0,
    show_default=True,
    help="First day of 2023 to forecast from (0 = January 1).",
)
@click.option("--signal", type=click.Choice(["lifecycle", "direct"]), default="lifecycle")
@click.option("--json", "as_json", is_flag=True)
def carbon_backtest(zone: str, days: int, start_day: int, signal: Signal, as_json: bool) -> None:
    """How far the seasonal-naive fallback forecast is from what happened (embedded 2023
    data), and the carbon a planner loses by trusting it."""
    from carbon import embedded, forecasting

    try:
        hourly = embedded.hourly(zone, signal)
    except embedded.UnknownZoneError as error:
        raise click.ClickException(str(error)) from None
    days = min(days, 364 - start_day)
    actual = hourly[start_day * 24 : (start_day + days + 1) * 24]
    result = forecasting.backtest(actual, zone=zone, days=days)
    if as_json:
        click.echo(result.model_dump_json())
        return
    click.echo(
        f"{zone}, {days_text(days)} from {date(2023, 1, 1) + timedelta(days=start_day)} (day "
        f"{start_day} of 2023): MAE {result.mae_g_per_kwh:.1f} "
        f"gCO2/kWh, MAPE {result.mape:.1%}, a 4-hour job placed on the forecast emits "
        f"{result.planner_loss:.1%} more than on the day's real best window"
    )
