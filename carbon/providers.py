"""The provider interface, and the constant source."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from carbon.series import IntensitySeries, Provenance


class CarbonProvider(Protocol):
    """Anything that can give a zone's intensity over the planning window."""

    zone: str

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries: ...

    def measured(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries | None:
        """What the zone's intensity was over a window gone by, as far as the
        source knows it without asking again; None where it knows none."""
        ...


class ConstantProvider:
    """A flat intensity: for what-if runs and for zones without data."""

    def __init__(self, *, zone: str, value: float, note: str = "") -> None:
        self.zone = zone
        self.value = value
        self.note = note

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        return IntensitySeries(
            zone=self.zone,
            start=start,
            slot_seconds=slot_seconds,
            values=(self.value,) * slots,
            provenance=Provenance(
                provider="constant",
                kind="constant",
                signal="configured",
                fetched_at=now,
                origin="configured",
                note=self.note,
            ),
        )

    def measured(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        return self.series(start=start, slot_seconds=slot_seconds, slots=slots, now=now)
