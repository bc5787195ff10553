"""Seasonal-naive forecasting: tomorrow at this hour is like today at this hour.

Used where a provider has no forecast (or it ends before the horizon does), and
measured against the real 2023 data by `caspian carbon backtest`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict


def seasonal_naive(history: Sequence[float], *, period: int, steps: int) -> list[float]:
    """`steps` values after `history`, each a repeat of the value one `period` earlier."""
    if len(history) < period:
        raise ValueError(f"seasonal-naive needs {period} values of history, has {len(history)}")
    extended = list(history)
    for _ in range(steps):
        extended.append(extended[-period])
    return extended[len(history) :]


class Backtest(BaseModel):
    model_config = ConfigDict(frozen=True)

    zone: str
    days: int
    hours: int
    mae_g_per_kwh: float
    mape: float
    planner_loss: float  # extra carbon from placing on the forecast, as a share


def backtest(
    actual: Sequence[float], *, zone: str, days: int, period: int = 24, job_hours: int = 4
) -> Backtest:
    """Forecast each day from the day before and compare with what happened.

    `planner_loss`: a flexible job of `job_hours` that must run within each day is
    placed at the cheapest window of the forecast; the share of extra carbon
    against the window that actually was cheapest."""
    errors, relative, chosen, best = [], [], 0.0, 0.0
    for day in range(1, days + 1):
        history = actual[(day - 1) * period : day * period]
        truth = actual[day * period : (day + 1) * period]
        if len(truth) < period:
            break
        guess = seasonal_naive(history, period=period, steps=period)
        errors += [abs(g - t) for g, t in zip(guess, truth, strict=True)]
        relative += [abs(g - t) / t for g, t in zip(guess, truth, strict=True) if t > 0]
        windows = range(period - job_hours + 1)

        def cost(series: Sequence[float], at: int) -> float:
            return sum(series[at : at + job_hours])

        picked = min(windows, key=lambda at: cost(guess, at))
        chosen += cost(truth, picked)
        best += min(cost(truth, at) for at in windows)
    return Backtest(
        zone=zone,
        days=days,
        hours=len(errors),
        mae_g_per_kwh=sum(errors) / max(len(errors), 1),
        mape=sum(relative) / max(len(relative), 1),
        planner_loss=(chosen - best) / best if best > 0 else 0.0,
    )
