"""Where each zone's carbon intensity comes from, and the forecasts a decision
is made on: the spoke files' `carbon:` blocks, built into sources with the
environment's keys, and read over the planning window."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from carbon import CarbonSourceConfig, IntensitySeries
from carbon.clients import HISTORY
from carbon.embedded import UnknownZoneError
from carbon.providers import CarbonProvider
from carbon.sources import source_for
from reconciler import deciding, metrics
from reconciler.fleet import Fleet, FleetConfigError, Problem, Spoke
from reconciler.ledger import Ledger

log = logging.getLogger("caspian.reconcile")


def carbon_sources(
    fleet: Fleet, *, read: Ledger | None = None
) -> tuple[dict[str, CarbonProvider], list[Problem]]:
    """One source per zone, built from the spoke files and the environment, and
    a problem for each spoke whose `carbon:` block gives none. Spokes of one zone
    share the first one's source, by name, and one whose block differs from it
    is a problem. Spokes the ledger `read` has placed work on come first: a
    spoke file added with another block for a zone is the one refused, not the
    spoke that runs the zone's jobs."""
    placed = {entry.spoke for entry in read.entries} if read is not None else set()
    sources: dict[str, CarbonProvider] = {}
    readers: dict[str, Spoke] = {}
    problems = []
    for spoke in sorted(fleet.spokes, key=lambda s: s.name not in placed):
        config = spoke.spec.carbon
        file = f"spokes/{spoke.name}.yaml"
        if config.zone in readers:
            first = readers[config.zone]
            if config != first.spec.carbon:
                reason = _another_source(spoke, first=first)
                problems.append(Problem(file=file, field="spec.carbon", reason=reason))
            continue
        try:
            sources[config.zone] = source_for(config, env=os.environ, cache_dir=carbon_cache())
            readers[config.zone] = spoke
        except (UnknownZoneError, ValueError) as error:
            # A zone the data lacks is that line's fault; a key or region missing, the block's.
            field = "spec.carbon.zone" if isinstance(error, UnknownZoneError) else "spec.carbon"
            problems.append(Problem(file=file, field=field, reason=str(error)))
    # In the fleet's order again, as before the ledger was asked.
    zones = dict.fromkeys(spoke.spec.carbon.zone for spoke in fleet.spokes)
    ordered = {zone: sources[zone] for zone in zones if zone in sources}
    return ordered, sorted(problems, key=lambda problem: problem.file)


def _another_source(spoke: Spoke, *, first: Spoke) -> str:
    mine, theirs = spoke.spec.carbon, first.spec.carbon
    differences = [
        f"here {field.alias or name} is {_said(getattr(mine, name))}, "
        f"there {_said(getattr(theirs, name))}"
        for name, field in CarbonSourceConfig.model_fields.items()
        if getattr(mine, name) != getattr(theirs, name)
    ]
    fix = "give this spoke the same carbon block"
    if mine.provider != "embedded":  # the dataset's zones are fixed; a live source's name is not
        fix += f", or a zone name of its own (zone: {mine.zone}-{spoke.name}, fallbackZone: "
        fix += f"{mine.fallback_zone or mine.zone})"
    return (
        f"zone {mine.zone!r} is read as spokes/{first.name}.yaml gives it, and spokes of one "
        f"zone share its series; {'; '.join(differences)}: {fix}"
    )


def _said(value: object) -> str:
    return "none" if value is None else repr(value)


def fleet_sources(fleet: Fleet) -> dict[str, CarbonProvider]:
    """The sources of a fleet every spoke of which must have one."""
    sources, problems = carbon_sources(fleet)
    if problems:
        raise FleetConfigError(problems)
    return sources


def carbon_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "caspian" / "carbon"


def fetch_forecasts(
    fleet: Fleet, *, now: datetime, sources: Mapping[str, CarbonProvider] | None = None
) -> dict[str, IntensitySeries]:
    """Every zone's intensity over the planning window, from `sources` (by default
    the fleet's own). Live failures fall back (cache, then the embedded dataset)
    inside the source and never raise here."""
    horizon = deciding.window(fleet, now=now)
    sources = fleet_sources(fleet) if sources is None else sources

    def fetch(source: CarbonProvider) -> IntensitySeries:
        return source.series(
            start=horizon.start,
            slot_seconds=horizon.slot_seconds,
            slots=horizon.covered_slots,
            now=now,
        )

    # All zones at once: a provider that hangs costs one timeout, not one per zone.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(sources)))) as pool:
        fetched = dict(zip(sources, pool.map(fetch, sources.values()), strict=True))
    for zone, series in fetched.items():
        if series.provenance.stale:
            log.warning("carbon data for %s is stale: %s", zone, series.provenance.describe())
        metrics.record_carbon(zone, series)
    for gauge in (metrics.GRID_INTENSITY, metrics.CARBON_STALE):
        metrics.keep_only(gauge, "zone", set(fetched))
    return fetched


# How far back a run that ended may have begun and still be counted: two
# days, as far as the live clients ask their providers (the embedded dataset
# has it all), or twice the window a plan prices (its horizon and its longest
# job) where that is longer, for a run that took twice as long as it said.
LOOKBACK = HISTORY


def fetch_measured(
    fleet: Fleet, *, now: datetime, sources: Mapping[str, CarbonProvider] | None = None
) -> dict[str, IntensitySeries]:
    """Each zone's intensity over the time just gone, as its source measured
    it (a live source: the history of its last answer, which the forecasts
    have just read; the embedded dataset: the same hours of 2023). No
    provider is asked again; a zone whose source measured none is left out."""
    horizon = deciding.window(fleet, now=now)
    back = max(horizon.slots_in(LOOKBACK), 2 * horizon.covered_slots)
    start = horizon.start - timedelta(seconds=back * horizon.slot_seconds)
    sources = fleet_sources(fleet) if sources is None else sources

    def read_back(source: CarbonProvider) -> IntensitySeries | None:
        return source.measured(
            start=start, slot_seconds=horizon.slot_seconds, slots=back + 1, now=now
        )

    found = {zone: read_back(source) for zone, source in sources.items()}
    return {zone: series for zone, series in found.items() if series is not None}
