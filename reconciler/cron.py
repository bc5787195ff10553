"""Cron schedules, as a CronJob's or an Argo CD sync window's `schedule` reads:
five fields (minute, hour, day of month, month, day of week), each `*`, a
number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of these; months and
days by their three-letter English names too. Where both day fields are
restricted, a day that matches either one matches, as cron has it. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# How far ahead a window's next time is looked for, for a maintenance window
# or a sync window alike: a monthly window shows, and a dense schedule costs
# little.
LOOK_AHEAD = timedelta(days=35)
# Each field: its name, its bounds, and the names that stand for its numbers.
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: n for n, name in enumerate(MONTHS, 1)}),
    ("day of week", 0, 7, {name: n for n, name in enumerate(DAYS)}),
)


class Schedule(BaseModel):
    """The minutes a cron expression names, field by field."""

    model_config = ConfigDict(frozen=True)

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # the day of month is `*`
    any_weekday: bool  # the day of week is `*`

    def on(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_date and by_weekday
        return by_date or by_weekday

    def starts(self, start: datetime, end: datetime, *, zone: ZoneInfo) -> Iterator[datetime]:
        """Every time in [start, end) the schedule names, read in `zone`, in UTC."""
        utc = start.tzinfo
        first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
        day = first
        while day <= last:
            if self.on(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        local = datetime.combine(day, time(hour, minute), tzinfo=zone)
                        moment = local.astimezone(utc)
                        if start <= moment < end:
                            yield moment
            day += timedelta(days=1)


def windows(
    expression: str, duration: timedelta, start: datetime, end: datetime, *, time_zone: str
) -> list[tuple[datetime, datetime]]:
    """Each time a window on for `duration` from every time `expression`
    names (read in `time_zone`) is on, overlapping [start, end). Times that
    overlap or touch make one: "* * * * *" for 1m is one window, not one a
    minute."""
    spans: list[list[datetime]] = []
    for moment in parse(expression).starts(start - duration, end, zone=zone(time_zone)):
        if moment + duration <= start:
            continue
        if spans and moment <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], moment + duration)
        else:
            spans.append([moment, moment + duration])
    return [(a, b) for a, b in spans]


def parse(expression: str) -> Schedule:
    """A cron expression's schedule; ValueError naming the field that is wrong."""
    fields = expression.split()
    if len(fields) != len(FIELDS):
        raise ValueError(
            f"{expression!r} is not a cron schedule: five fields (minute hour day-of-month "
            'month day-of-week), e.g. "0 22 * * sat"'
        )
    sets = [_field(text, *spec) for text, spec in zip(fields, FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = sets
    return Schedule(
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),  # 7 is Sunday too
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; ValueError where there is none of that name. The
    zone's rules are read when the spoke file that names it is checked, and
    ZoneInfo keeps the last eight zones it read: deciding reads them again
    only in a fleet of more zones than that."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is no IANA time zone (e.g. UTC, Europe/Paris)") from None


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    found: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, name, names={}) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _number(a, name, names=names), _number(b, name, names=names)
        else:
            first = _number(span, name, names=names)
            last = high if step_text else first
        if not low <= first <= last <= high or step < 1:
            raise ValueError(f"{part!r} is not a {name} from {low} to {high}")
        found.update(range(first, last + 1, step))
    return frozenset(found)


def _number(text: str, name: str, *, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a {name}")
    return int(text)
