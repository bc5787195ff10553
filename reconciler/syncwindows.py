"""Argo CD's sync windows: the times an AppProject keeps Argo CD from syncing
its Applications. A Job committed for a spoke then reaches it only once the
window lets Argo CD sync again, so nothing is planned to start there then;
what already runs there runs on.

As Argo CD documents them: a window applies to an Application when one of its
patterns matches the Application's name, its destination namespace, or its
destination cluster (by name or server), or, with `andOperator`, when each of
the lists it gives has a pattern that matches; patterns are read as Argo
CD's glob reads them (`_glob`). While a deny window is on,
nothing syncs; where allow windows apply, syncing waits for one to be on; a
deny window wins over an allow window. `manualSync` lets a person sync by
hand, which Caspian's automated sync does not wait for. The AppProject and
the Application are read as the custom-objects API hands them back (plain
dicts no schema checked). Pure."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from reconciler import cron
from reconciler.fleet import Span
from reconciler.kubeobjects import one_line
from reconciler.quantities import format_duration, go_duration


class SyncWindow(BaseModel):
    """One window of an AppProject that applies to a spoke's Application."""

    model_config = ConfigDict(frozen=True)

    project: str
    kind: Literal["allow", "deny"]
    schedule: str
    duration: timedelta
    time_zone: str = "UTC"
    description: str = ""

    def describe(self) -> str:
        """How a person finds it: `argocd proj windows list <project>` lists it so."""
        said = f": {self.description}" if self.description else ""
        return (
            f"AppProject {self.project}'s {self.kind} window {self.schedule!r} "
            f"for {format_duration(self.duration)} ({self.time_zone}){said}"
        )

    def on(self, start: datetime, end: datetime) -> tuple[Span, ...]:
        """Each time it is on that overlaps [start, end)."""
        times = cron.windows(self.schedule, self.duration, start, end, time_zone=self.time_zone)
        return tuple(Span(start=a, end=b, reason=self.describe()) for a, b in times)


def applying(project: Any, application: Any) -> tuple[tuple[SyncWindow, ...], list[str]]:
    """The windows of `project` that apply to `application`, and why each
    window that cannot be read was passed over."""
    name = name_of(project)
    listed = _map(_map(project).get("spec")).get("syncWindows")
    found: list[SyncWindow] = []
    problems: list[str] = []
    for index, window in enumerate(listed if isinstance(listed, list) else []):
        window = _map(window)
        if not _matches(window, application):
            continue
        try:
            found.append(_read(window, project=str(name)))
        except (ValueError, ValidationError) as error:
            problems.append(
                f"AppProject {name}: spec.syncWindows[{index}] is passed over: "
                f"{one_line(str(_first(error)))}"
            )
    return tuple(found), problems


def barred(windows: Iterable[SyncWindow], start: datetime, end: datetime) -> tuple[Span, ...]:
    """The times that overlap [start, end) when Argo CD does not sync by
    itself: while a deny window is on (whole, from its start to its end), and,
    where any allow window applies, while none is (within [start, end))."""
    windows = tuple(windows)
    shut = [span for w in windows if w.kind == "deny" for span in w.on(start, end)]
    allows = [w for w in windows if w.kind == "allow"]
    if allows:
        open_ = _merged(span for w in allows for span in w.on(start, end))
        reason = "outside " + " and ".join(w.describe() for w in allows)
        shut.extend(_gaps(open_, start, end, reason=reason))
    return _merged(shut)


def barred_until(
    windows: Iterable[SyncWindow], since: datetime, *, now: datetime
) -> tuple[Span, ...]:
    """The times `windows` bar syncing from `since` up to `now`, the instant
    `now` in, which [since, now) would leave out."""
    return barred(windows, min(since, now), now + timedelta(microseconds=1))


def open_since(spans: tuple[Span, ...], since: datetime, *, now: datetime) -> datetime | None:
    """From when Argo CD could have synced a file the branch has held since
    `since`: the end of the last of `spans` (`barred_until`'s, in time order,
    apart) after that, or `since`. None while one bars it now."""
    for span in spans:
        if span.start <= now < span.end:
            return None
        if since < span.end <= now:
            since = span.end
    return since


def name_of(resource: Any) -> str | None:
    """Its `metadata.name`."""
    name = _map(_map(resource).get("metadata")).get("name")
    return name if isinstance(name, str) else None


def project_of(application: Any) -> str | None:
    """The name of the AppProject an Application is in."""
    name = _map(_map(application).get("spec")).get("project")
    return name if isinstance(name, str) else None


def _matches(window: dict[str, Any], application: Any) -> bool:
    spec = _map(_map(application).get("spec"))
    destination = _map(spec.get("destination"))
    lists = [
        (window.get("applications"), (name_of(application),)),
        (window.get("namespaces"), (destination.get("namespace"),)),
        # An empty name or server is no cluster to match, even by "*".
        (
            window.get("clusters"),
            (destination.get("name") or None, destination.get("server") or None),
        ),
    ]
    given = [
        any(
            isinstance(pattern, str) and isinstance(value, str) and _globbed(pattern, value)
            for pattern in patterns
            for value in values
        )
        for patterns, values in lists
        if isinstance(patterns, list) and patterns
    ]
    if not given:
        return False
    return all(given) if window.get("andOperator") is True else any(given)


def _globbed(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` as Argo CD's glob (gobwas/glob, with
    no separators) reads it; a pattern it cannot compile matches nothing."""
    compiled = _glob(pattern)
    return compiled is not None and compiled.fullmatch(value) is not None


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str] | None:
    """`pattern` as a regular expression: `*` any run, `?` any one
    character, `[abc]`, `[a-z]` and `[!abc]` a class, `{a,b}` either, and
    `\\` the next character as it is. None where it does not compile."""
    out: list[str] = []
    depth, i = 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if i + 1 == len(pattern):
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "[":
            end = pattern.find("]", i + 1)
            negated = pattern[i + 1 : i + 2] == "!"
            members = pattern[i + 2 if negated else i + 1 : end]
            if end == -1 or not members:
                return None
            out.append(("[^" if negated else "[") + _members(members) + "]")
            i = end + 1
            continue
        if char == "{":
            depth += 1
            out.append("(?:")
        elif char == "}" and depth:
            depth -= 1
            out.append(")")
        elif char == "," and depth:
            out.append("|")
        else:
            out.append({"*": ".*", "?": "."}.get(char) or re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL) if depth == 0 else None


def _members(members: str) -> str:
    """A class's members with a range's `-` kept, every other character as it is."""
    last = len(members) - 1
    return "".join(
        "-" if char == "-" and 0 < k < last else re.escape(char) for k, char in enumerate(members)
    )


def _read(window: dict[str, Any], *, project: str) -> SyncWindow:
    kind, schedule, duration = window.get("kind"), window.get("schedule"), window.get("duration")
    if kind not in ("allow", "deny"):
        raise ValueError(f"kind {kind!r} is neither allow nor deny")
    if not isinstance(schedule, str) or not isinstance(duration, str):
        raise ValueError("it needs a schedule and a duration")
    zone = window.get("timeZone")
    description = window.get("description")
    read = SyncWindow(
        project=project,
        kind=kind,
        schedule=schedule,
        duration=go_duration(duration),
        time_zone=zone if isinstance(zone, str) and zone else "UTC",
        description=one_line(description) if isinstance(description, str) else "",
    )
    cron.parse(read.schedule)
    cron.zone(read.time_zone)
    if read.duration <= timedelta(0):
        raise ValueError(f"duration {duration!r} is not longer than zero")
    return read


def _first(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return str(error.errors()[0]["msg"])
    return str(error)


def _merged(spans: Iterable[Span]) -> tuple[Span, ...]:
    """`spans` in time order, those that overlap or touch made one."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.end <= span.start:
            continue
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            reasons = last.reason if span.reason in last.reason else f"{last.reason}; {span.reason}"
            merged[-1] = last.model_copy(update={"end": max(last.end, span.end), "reason": reasons})
        else:
            merged.append(span)
    return tuple(merged)


def _gaps(spans: tuple[Span, ...], start: datetime, end: datetime, *, reason: str) -> list[Span]:
    """The times in [start, end) that none of `spans` (in order, apart) covers."""
    gaps, at = [], start
    for span in spans:
        if span.start > at:
            gaps.append(Span(start=at, end=min(span.start, end), reason=reason))
        at = max(at, span.end)
    if at < end:
        gaps.append(Span(start=at, end=end, reason=reason))
    return gaps


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
