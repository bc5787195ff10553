"""From a spoke's `carbon:` block to a source the planner can ask.

Credentials and base URLs come from the environment (passed in, never read from
git): ELECTRICITYMAPS_TOKEN, WATTTIME_USERNAME, WATTTIME_PASSWORD, and
CASPIAN_<PROVIDER>_URL to point a provider at a proxy or a mirror (a spoke's
`baseUrl` wins over it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from carbon import carbonaware, electricitymaps, ukci, watttime
from carbon.cache import Cache
from carbon.clients import LiveClient
from carbon.embedded import EmbeddedProvider, zones
from carbon.live import LiveSource
from carbon.providers import CarbonProvider, ConstantProvider
from carbon.series import CarbonSourceConfig

# Where no dataset zone is named or known: about the middle of the 12 zones' means.
FLAT_FALLBACK_G_PER_KWH = 300.0


def source_for(
    config: CarbonSourceConfig, *, env: Mapping[str, str], cache_dir: Path | None = None
) -> CarbonProvider:
    if config.provider == "constant":
        if config.value is None:
            raise ValueError("carbon.value: the constant provider needs a value in gCO2eq/kWh")
        return ConstantProvider(zone=config.zone, value=config.value)
    if config.provider == "embedded":
        return EmbeddedProvider(zone=config.zone, signal=config.signal)
    return LiveSource(
        client=_client(config, env),
        zone=config.zone,
        key=_cache_key(config, env),
        cache=Cache(cache_dir),
        fallback=fallback_for(config),
    )


def fallback_for(config: CarbonSourceConfig) -> CarbonProvider:
    zone = config.fallback_zone or config.zone
    if zone in zones() or zone == "DE-LU":
        return EmbeddedProvider(zone=zone, signal=config.signal)
    return ConstantProvider(
        zone=config.zone,
        value=FLAT_FALLBACK_G_PER_KWH,
        note=f"no dataset zone for {config.zone}: set carbon.fallbackZone",
    )


def _cache_key(config: CarbonSourceConfig, env: Mapping[str, str]) -> str:
    """The name of a source's cache file. Spokes of one zone may read different
    regions, signals or servers; each answer is kept apart from the others."""
    server = hashlib.sha256(_url(config, env, "").encode()).hexdigest()[:8]
    region = config.region or "all"
    return f"{config.provider}-{config.zone}-{region}-{config.signal}-{server}"


def _url(config: CarbonSourceConfig, env: Mapping[str, str], default: str) -> str:
    return config.base_url or env.get(f"CASPIAN_{config.provider.upper()}_URL") or default


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A credential from the environment, without the line break a value read
    from a file (a mounted Secret, `$(cat token)`) often ends with."""
    value = (env.get(name) or "").strip()
    return value or None


def _client(config: CarbonSourceConfig, env: Mapping[str, str]) -> LiveClient:
    if config.provider == "electricitymaps":
        return electricitymaps.ElectricityMaps(
            zone=config.zone,
            signal=config.signal,
            token=_secret(env, "ELECTRICITYMAPS_TOKEN"),
            base_url=_url(config, env, electricitymaps.DEFAULT_URL),
        )
    if config.provider == "ukci":
        return ukci.UkCarbonIntensity(
            region=int(config.region) if config.region else None,
            base_url=_url(config, env, ukci.DEFAULT_URL),
        )
    if config.provider == "watttime":
        return watttime.WattTime(
            region=config.region or config.zone,
            username=_secret(env, "WATTTIME_USERNAME"),
            password=_secret(env, "WATTTIME_PASSWORD"),
            base_url=_url(config, env, watttime.DEFAULT_URL),
        )
    return carbonaware.CarbonAwareSdk(
        location=config.region or config.zone,
        base_url=_url(config, env, carbonaware.DEFAULT_URL),
    )
