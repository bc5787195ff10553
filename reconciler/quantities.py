"""Parsing the value formats users write: Kubernetes quantities, durations, times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SUFFIXES = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Ten years: room for any run, deadline or retention, while a time that far
# ahead stays inside what a datetime can hold.
_LONGEST_DURATION_S = 3650 * 86400
# Times Caspian reads: ten years of durations later still fits in a datetime.
_EARLIEST_YEAR, _LATEST_YEAR = 1970, 9000
# Kubernetes keeps a quantity in a signed 64-bit integer: more is no real amount,
# and an infinity (1e999) would poison every sum and ratio of the plan.
_LARGEST_QUANTITY = 2.0**63


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("500m", "16Gi", 2) as a plain number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        amount = float(value)
    elif not isinstance(value, str):  # YAML can hand over a list, a mapping, null
        raise ValueError(f"{value!r} is not a quantity: write a number or a string like 16Gi")
    else:
        match = _QUANTITY.match(value.strip())
        if not match or match.group(2) not in _SUFFIXES:
            raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 4, 16Gi)")
        amount = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if not abs(amount) < _LARGEST_QUANTITY:  # NaN too
        raise ValueError(f"{value!r} is larger than any Kubernetes quantity (2^63)")
    return amount


def duration(value: str, *, zero: bool = False) -> timedelta:
    """A duration like "90m", "1h30m", "2d", "45s"; with `zero`, also "0"."""
    text = str(value).strip()
    if zero and text == "0":
        return timedelta(0)
    if not text or _DURATION.sub("", text):
        raise ValueError(f"{value!r} is not a duration (e.g. 45m, 2h, 1h30m, 3d)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(text))
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"{value!r} must be longer than zero (e.g. 45m, 2h)")
    if seconds > _LONGEST_DURATION_S:
        raise ValueError(
            f"{value!r} is longer than {_LONGEST_DURATION_S // 86400}d, the most allowed"
        )
    return timedelta(seconds=seconds)


# Go's time.ParseDuration, as Kubernetes controllers read their durations:
# "90s", "1h30m", "1.5h", "300ms"; no days, no spaces.
_GO_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(value: str) -> timedelta:
    """A duration as Go's time.ParseDuration reads one, not negative."""
    text = str(value)
    if text != "0" and (not text or _GO_DURATION.sub("", text)):
        raise ValueError(f"{value!r} is not a duration as Go writes one (e.g. 90s, 5m, 1h30m)")
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(text))
    if seconds > _LONGEST_DURATION_S:
        raise ValueError(
            f"{value!r} is longer than {_LONGEST_DURATION_S // 86400}d, the most allowed"
        )
    return timedelta(seconds=seconds)


def times(count: int) -> str:
    """How often, in words: once, twice, 3 times."""
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# What fromisoformat reads as a day's midnight: 2026-12-05, or 20261205.
_DATE_ALONE = re.compile(r"\d{4}-?\d{2}-?\d{2}")


def timestamp(value: str | datetime) -> datetime:
    """An RFC 3339 time with an explicit offset, as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an RFC 3339 time (e.g. 2026-11-22T18:00:00Z)"
            ) from None
    if moment.tzinfo is None and _DATE_ALONE.fullmatch(str(value).strip()):
        # fromisoformat reads a date alone as its midnight; Z after it would not parse.
        raise ValueError(
            f"{value!r} is a date without a time: write {moment:%Y-%m-%d}T00:00:00Z (or "
            "another time of that day)"
        )
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z or an offset like +01:00")
    out_of_range = ValueError(
        f"{value!r} is not a time between {_EARLIEST_YEAR} and {_LATEST_YEAR}"
    )
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # the year 1 or 9999, moved across midnight by its offset
        raise out_of_range from None
    # Far-off times still have durations and slots added to them.
    if not _EARLIEST_YEAR <= utc.year <= _LATEST_YEAR:
        raise out_of_range
    return utc


# The optimizer's resources, as a sentence names an amount of one.
_UNITS = {"cpu": (1, " cpu"), "memory_bytes": (2**30, "Gi memory"), "gpu": (1, " GPUs")}


def amount(resource: str, value: float) -> str:
    """An amount of cpu, memory_bytes or gpu as people write it: "24 cpu",
    "64Gi memory", "4 GPUs"."""
    scale, unit = _UNITS[resource]
    return f"{value / scale:g}{unit}"


def format_time(moment: datetime) -> str:
    # isoformat, not strftime, which writes a year before 1000 without its zeros.
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"
