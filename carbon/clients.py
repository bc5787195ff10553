"""What every live provider client returns, and the helpers their parsers share."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from carbon.http import ProviderError, shown_url
from carbon.points import Point

# How far back a client asks what its provider measured, where the provider
# takes a window: as far as what the runs that ended emitted is read back
# (reconciler/gridcarbon.py), so that a run of up to two days, or a qos run
# that would have begun a day before, is counted on what the grid emitted.
HISTORY = timedelta(days=2)


class LiveClient(Protocol):
    name: str
    signal: str

    def fetch(self, *, now: datetime) -> tuple[list[Point], list[Point]]:
        """(forecast points, recent history points); raises ProviderError."""
        ...


def parse_time(text: Any) -> datetime:
    """RFC 3339 in any offset (or a trailing Z) as UTC."""
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parsed(url: str, body: Any, parse: Callable[[Any], list[Point]]) -> list[Point]:
    """Run a parser over a JSON body; any surprise in its shape is a ProviderError."""
    try:
        return parse(body)
    # OverflowError: JSON numbers have no bounds (10**400 is one), and dates in
    # the year 9999 or 1 in another offset fall off Python's calendar.
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as error:
        raise ProviderError(
            f"{shown_url(url)}: unexpected answer shape ({error!r:.80})", retry=True
        ) from None
