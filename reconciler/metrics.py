"""Prometheus metrics: the only module that imports prometheus_client. Served on
/metrics by `caspian watch`; in a one-shot reconcile they are only counted."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from carbon import IntensitySeries

CARBON_STALE = Gauge(
    "caspian_carbon_data_stale",
    "1 when the zone's intensity came from a cache or a fallback instead of its provider",
    ["zone"],
)
CARBON_FALLBACKS = Counter(
    "caspian_carbon_fallbacks_total",
    "Reconciles that planned a zone on cached or fallback carbon data",
    ["zone", "origin"],
)
GRID_INTENSITY = Gauge(
    "caspian_grid_carbon_intensity",
    "Grid carbon intensity of the current slot, gCO2eq/kWh",
    ["zone"],
)


def record_carbon(zone: str, series: IntensitySeries) -> None:
    CARBON_STALE.labels(zone=zone).set(1 if series.provenance.stale else 0)
    GRID_INTENSITY.labels(zone=zone).set(series.values[0])
    if series.provenance.stale:
        CARBON_FALLBACKS.labels(zone=zone, origin=series.provenance.origin).inc()


SPOKE_UP = Gauge(
    "caspian_spoke_up", "1 when the spoke's API server answered the last observation", ["spoke"]
)
