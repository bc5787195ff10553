"""The provider interface, the configuration a spoke gives, and the factory."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from carbon.embedded import EmbeddedProvider
from carbon.series import CarbonSourceConfig, IntensitySeries, Provenance


class CarbonProvider(Protocol):
    """Anything that can give a zone's intensity over the planning window."""

    zone: str

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries: ...


class ConstantProvider:
    """A flat intensity: for what-if runs and for zones without data."""

    def __init__(self, *, zone: str, value: float) -> None:
        self.zone = zone
        self.value = value

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        return IntensitySeries(
            zone=self.zone,
            start=start,
            slot_seconds=slot_seconds,
            values=(self.value,) * slots,
            provenance=Provenance(
                provider="constant", kind="constant", signal="configured", fetched_at=now
            ),
        )


def source_for(config: CarbonSourceConfig) -> CarbonProvider:
    if config.provider == "constant":
        if config.value is None:
            raise ValueError("carbon.value: the constant provider needs a value in gCO2eq/kWh")
        return ConstantProvider(zone=config.zone, value=config.value)
    return EmbeddedProvider(zone=config.zone, signal=config.signal)
