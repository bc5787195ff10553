"""A planned job whose spoke is down: how long it waits there, through the
policy's spokeDownGrace, counted from the end of the spoke's announced
maintenance where that is on. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet, JobRequest, Spoke
from reconciler.ledger import Entry, Phase


class Wait(NamedTuple):
    since: datetime  # when its spoke was first seen down
    grace_from: datetime  # when the policy's spokeDownGrace began to count


def waits_for_spoke(
    job: JobRequest,
    prev: Entry | None,
    spokes: Mapping[str, SpokeState],
    *,
    fleet: Fleet,
    now: datetime,
) -> Wait | None:
    """Since when the spoke a planned job waits for has been down, while the
    policy's spokeDownGrace has not gone by; None where the job is planned
    anew: its spoke is up, it is not planned there (or may no longer go
    there), the grace has gone by, or the spoke is drained by its file. Down
    in its announced maintenance is as expected: the grace counts from the
    window's end."""
    grace = fleet.policy.spec.spoke_down_grace
    if prev is None or prev.phase != Phase.PLANNED or prev.spoke is None:
        return None
    state = spokes.get(prev.spoke)
    if state is None or state.up or prev.spoke not in job.allowed_spokes:
        return None
    spoke = next(s for s in fleet.spokes if s.name == prev.spoke)
    if spoke.spec.unschedulable:
        return None
    # The earliest anyone saw it down: the source's word may reset (Argo CD
    # dates a condition anew when its message changes).
    since = min(t for t in (prev.spoke_down_since, state.down_since, now) if t is not None)
    grace_from = grace_begins(spoke, since=since, now=now)
    if grace is not None and grace_from + grace <= now:
        return None
    return Wait(since=since, grace_from=grace_from)


def grace_begins(spoke: Spoke, *, since: datetime, now: datetime) -> datetime:
    """When the policy's spokeDownGrace begins to count for a spoke first seen
    down at `since`: then, or, where its announced maintenance has begun by
    `now` and ends after `since`, at the end of that."""
    ends = [
        once.end
        for window in spoke.spec.maintenance
        for once in window.within(since, now + timedelta(seconds=1))
        if once.end > since
    ]
    return max([since, *ends])
