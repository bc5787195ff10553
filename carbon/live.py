"""A live provider behind the planner's one interface, with the fallback chain
live -> cache -> embedded dataset. Whatever happens, `series` returns a full
horizon and its provenance says where it came from and whether it is stale."""

from __future__ import annotations

from datetime import datetime, timedelta

from carbon.assembly import assemble
from carbon.cache import Cache
from carbon.clients import LiveClient
from carbon.http import ProviderError
from carbon.points import Point, resample, sane
from carbon.providers import CarbonProvider
from carbon.series import IntensitySeries, Origin, Provenance, SeriesKind


class LiveSource:
    def __init__(
        self,
        *,
        client: LiveClient,
        zone: str,
        key: str,
        cache: Cache,
        fallback: CarbonProvider,
        fresh_for: timedelta = timedelta(minutes=10),
    ) -> None:
        self.client = client
        self.zone = zone
        self.cache = cache
        self.fallback = fallback
        self.fresh_for = fresh_for
        self.key = key

    def series(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries:
        cached = self.cache.load(self.key)
        window = (start, slot_seconds, slots)
        # An answer fetched after `now` (a plan as of a past time) is not fresh
        # for it: that answer's horizon starts later.
        if cached is not None and timedelta(0) <= now - cached[0] < self.fresh_for:
            try:
                return self._build(cached, window, origin="cache", stale=False, why="")
            except ValueError:
                pass  # it does not cover this window: ask the provider
        try:
            forecast, history = self.client.fetch(now=now)
            forecast, history = sane(forecast), sane(history)
            if not forecast and not history:
                raise ProviderError(f"{self.client.name}: no usable values", retry=True)
            self.cache.save(self.key, fetched_at=now, forecast=forecast, history=history)
            return self._build((now, forecast, history), window, origin="live", stale=False, why="")
        except (ProviderError, ValueError) as error:
            why = str(error)
        if cached is not None:
            try:
                return self._build(
                    cached,
                    window,
                    origin="cache",
                    stale=True,
                    why=f"{why}; cache from {cached[0].isoformat()}",
                )
            except ValueError:
                pass
        series = self.fallback.series(start=start, slot_seconds=slot_seconds, slots=slots, now=now)
        note = f"{self.client.name} failed ({why}); {series.provenance.provider}"
        if series.provenance.note:
            note += f": {series.provenance.note}"
        return series.model_copy(
            update={
                "provenance": series.provenance.model_copy(
                    update={"stale": True, "origin": "fallback", "note": note}
                )
            }
        )

    def measured(
        self, *, start: datetime, slot_seconds: int, slots: int, now: datetime
    ) -> IntensitySeries | None:
        """What the provider measured over the window, from its last answer
        kept (the one this reconcile's forecast read; no request is made): the
        longest run of slots it measured that ends last. Its forecasts and the
        seasonal-naive fill are not what a grid emitted, and are left out."""
        cached = self.cache.load(self.key)
        if cached is None:
            return None
        fetched_at, _, history = cached
        values, _ = resample(history, start=start, slot_seconds=slot_seconds, slots=slots)
        known = [index for index, value in enumerate(values) if value is not None]
        if not known:
            return None
        last = first = known[-1]
        while first > 0 and values[first - 1] is not None:
            first -= 1
        return IntensitySeries(
            zone=self.zone,
            start=start + timedelta(seconds=first * slot_seconds),
            slot_seconds=slot_seconds,
            values=tuple(v for v in values[first : last + 1] if v is not None),
            provenance=Provenance(
                provider=self.client.name,
                kind="actual",
                signal=self.client.signal,
                fetched_at=fetched_at,
                origin="cache",
                note=f"{last - first + 1} measured slots",
            ),
        )

    def _build(
        self,
        data: tuple[datetime, list[Point], list[Point]],
        window: tuple[datetime, int, int],
        *,
        origin: Origin,
        stale: bool,
        why: str,
    ) -> IntensitySeries:
        fetched_at, forecast, history = data
        start, slot_seconds, slots = window
        values, coverage = assemble(
            forecast=forecast, history=history, start=start, slot_seconds=slot_seconds, slots=slots
        )
        kind: SeriesKind = "forecast" if coverage.forecast == slots else "forecast+seasonal-naive"
        if not forecast:
            kind = "seasonal-naive"
        note = coverage.describe() + (f"; {why}" if why else "")
        return IntensitySeries(
            zone=self.zone,
            start=start,
            slot_seconds=slot_seconds,
            values=tuple(values),
            provenance=Provenance(
                provider=self.client.name,
                kind=kind,
                signal=self.client.signal,
                fetched_at=fetched_at,
                stale=stale,
                origin=origin,
                note=note,
            ),
        )
