"""A dispatched job that cannot run where it was sent (its pods find no node,
are refused, or cannot start): how long it may wait there, when it is planned
again elsewhere, and which spokes it is kept off, as Kueue's waitForPodsReady
and the AppWrapper controller's grace periods requeue a workload. Also one
whose Job Argo CD's sync windows hold back from its spoke past its deadline.
Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from reconciler import arrivals, cron, syncwindows
from reconciler.decisions import Requeue, SpokeState, spoke_state
from reconciler.fleet import JobRequest
from reconciler.ledger import FIXED, Entry, Phase
from reconciler.quantities import format_duration, format_time, times

REQUEUED = (
    "it could not run there when it was last dispatched there; it is planned "
    "elsewhere until it runs"
)


class Requeuing(NamedTuple):
    requeue: Requeue | None  # taken off its spoke now
    tried: tuple[str, ...]  # the spoke of each requeue, for the ledger
    kept_off: dict[str, str]  # the spokes not to plan it on now, each with why
    given_up: str | None = None  # why it is planned nowhere: requeued too often


def requeuing(
    job: JobRequest,
    prev: Entry,
    *,
    spokes: Mapping[str, SpokeState],
    closed: Mapping[str, str],
    now: datetime,
    after: timedelta | None,
    limit: int | None,
) -> Requeuing | None:
    """Whether a dispatched job is taken off its spoke, where it cannot run, and
    which spokes it is kept off. Those it could not run on are kept off until it
    runs, while one it has not tried may take it: it tries each once, rather
    than going back and forth between two. A job no other spoke may take now
    stays. Requeued more than `limit` times, it is given up on: planned nowhere
    until its wrapped Job changes (a new Job to `decide`, with its tries
    before it). One that sync windows hold back past its deadline goes at
    once, and that spoke counts as no try."""
    why = _unscheduled_too_long(job, prev, spokes, now=now, after=after)
    requeue = None
    tried = prev.requeued_from
    held = _held_past_deadline(prev, spokes, now=now)
    if held and prev.spoke and _elsewhere(job, (prev.spoke,), closed):
        # Its spoke is kept off only while the windows bar it (its starts are
        # closed then), and this is no try there: it may go back after them.
        off = _kept_off(job, tried, closed) if tried else {}
        return Requeuing(requeue=Requeue(spoke=prev.spoke, reason=held), tried=tried, kept_off=off)
    if why and prev.spoke and _elsewhere(job, (prev.spoke,), closed):
        requeue = Requeue(spoke=prev.spoke, reason=why)
        tried = (*tried, prev.spoke)
    # Given up on when it goes once too often, and for as long as it waits then.
    if limit is not None and len(tried) > limit and (requeue or prev.phase == Phase.PENDING):
        why_not = _given_up(tried, limit=limit)
        off = dict.fromkeys(job.allowed_spokes, why_not)
        return Requeuing(requeue=requeue, tried=tried, kept_off=off, given_up=why_not)
    if requeue is not None:
        # The spoke it leaves is kept off in the words of every reconcile
        # after this one (the requeue's own reason is the commit's): else the
        # ledger would change at the next reconcile, with nothing new to say.
        return Requeuing(requeue=requeue, tried=tried, kept_off=_kept_off(job, tried, closed))
    if tried and prev.phase in (Phase.PLANNED, Phase.PENDING, Phase.DISPATCHED):
        # Dispatched again elsewhere, it is placed: nothing to keep it off.
        off = {} if prev.phase == Phase.DISPATCHED else _kept_off(job, tried, closed)
        return Requeuing(requeue=None, tried=tried, kept_off=off)
    return None


def _kept_off(job: JobRequest, tried: tuple[str, ...], closed: Mapping[str, str]) -> dict[str, str]:
    """The spokes a requeued job is kept off: each it was requeued from, while
    one it has not tried may take it; once it has tried each, the last only,
    so that it does not go straight back there."""
    off = tuple(s for s in dict.fromkeys(tried) if s in job.allowed_spokes)
    if _elsewhere(job, off, closed):
        return dict.fromkeys(off, REQUEUED)
    return {tried[-1]: REQUEUED} if _elsewhere(job, tried[-1:], closed) else {}


def _given_up(tried: tuple[str, ...], *, limit: int) -> str:
    return (
        f"it was requeued {times(len(tried))} ({', '.join(tried)}) without running, more "
        f"than the policy's requeueLimit {limit}: it is not planned again until its wrapped "
        'Job changes (mend what the requeues said; then a label such as run: "2", or its '
        "AppWrapper's spec.suspend set to true and back, gives it its tries again)"
    )


class _Stuck(NamedTuple):
    since: datetime
    what: str  # what keeps it from running there: "its pods found no node on"
    said: str | None  # what its spoke says of it, if anything
    # Whether its pods are there, unready, rather than never made: which of its
    # AppWrapper's grace periods holds (warmup, else admission).
    pods_made: bool
    hint: str = ""  # what to look at, where the spoke says nothing


def _stuck(job: JobRequest, prev: Entry, spokes: Mapping[str, SpokeState]) -> _Stuck | None:
    """What keeps a dispatched job from running on its spoke, as the spoke
    reports it: Argo CD has not applied its Job there (the spoke lists no such
    Job, though the branch holds it) or its resume (the spoke holds the Job
    suspended still), or cannot (the spoke refuses the Job), its
    scheduler finds no node for its pods (the room Caspian counted there was
    taken, or its nodes went), its Job creates none (the spoke refuses them),
    or its pods cannot start (an image or Secret the spoke lacks), while it has
    run none. Pods that have merely not begun (an image still pulling)
    count only for a job whose AppWrapper sets a warmup grace period, as the
    AppWrapper controller resets a workload whose pods are not ready by then."""
    state = spoke_state(prev, spokes)
    if prev.phase not in FIXED or state is None:
        return None
    # One its spoke reports running is not stuck, whatever else is said of
    # it: requeued, it would be found running there at the next decision.
    if state.jobs.get(prev.job_key) == Phase.RUNNING.value:
        return None
    said = state.said.get(prev.job_key)
    unapplied = _unapplied_since(prev, state)
    # Argo CD's own word on why it has not applied the Job, where it gives one, goes first.
    unarrived = state.unarrived.get(prev.job_key) if unapplied is None else None
    # A Job the spoke does not list has nothing said of it, but a likely cause.
    for since, what, pods_made, hint in (
        (unarrived, "its Job has not appeared on", False, f" ({_not_applied(prev)})"),
        (unapplied, "Argo CD could not apply its Job on", False, ""),
        (
            state.unresumed.get(prev.job_key),
            "its Job has not been resumed on",
            False,
            f" ({_not_resumed(prev)})",
        ),
        (state.unscheduled.get(prev.job_key), "its pods found no node on", True, ""),
        (
            state.podless.get(prev.job_key),
            "its Job created no pod" + ("" if said else " (see its events)") + " on",
            False,
            "",
        ),
        (state.not_starting.get(prev.job_key), "its pods could not start on", True, ""),
        (
            state.unready.get(prev.job_key) if job.warmup_grace is not None else None,
            "its pods have not begun on",
            True,
            "",
        ),
    ):
        if since is not None:
            # Its Job took this name wherever it went: pods or a Job of it there
            # from before this dispatch (left from before a requeue, not yet
            # pruned) say nothing of this one, which counts from its start.
            start = prev.planned_start
            since = max(since, start) if start is not None else since
            return _Stuck(since=since, what=what, said=said, pods_made=pods_made, hint=hint)
    return None


def _unapplied_since(prev: Entry, state: SpokeState) -> datetime | None:
    """Since when Argo CD has failed to apply a dispatched job's Job on its
    spoke (`_stuck` counts it from the dispatch: planned, it had no need to be
    there yet). A Job that runs there (by another observer's word) has been
    applied once, whatever a later sync says."""
    since = arrivals.unapplied_since(state, prev.job_key)
    return since if prev.phase == Phase.DISPATCHED else None


def _held_past_deadline(
    prev: Entry, spokes: Mapping[str, SpokeState], *, now: datetime
) -> str | None:
    """Why a dispatched job whose Job Argo CD has not brought to its spoke,
    while the spoke's sync windows bar syncing now, is planned again: held
    until they end, it would end after its deadline. Not where they end
    within `arrivals.ARGO_CD_SLACK`, since Argo CD might sync the Job there
    before it read that it went."""
    state = spoke_state(prev, spokes)
    if prev.phase != Phase.DISPATCHED or state is None or prev.job_key not in state.held_back:
        return None
    start, end, deadline = prev.planned_start, prev.planned_end, prev.deadline
    if start is None or end is None or deadline is None:
        return None
    # Held back, it is barred now: the first time barred runs on from now.
    shut = syncwindows.barred(state.sync_windows, now, now + cron.LOOK_AHEAD)
    if not shut or shut[0].end - now < arrivals.ARGO_CD_SLACK:
        return None
    if shut[0].end + (end - start) <= deadline:
        return None
    # Windows followed to the end of the look-ahead may run on past it.
    until = (
        "for five weeks or more"
        if shut[0].end >= now + cron.LOOK_AHEAD
        else f"until {format_time(shut[0].end)}"
    )
    return (
        f"Argo CD may not sync {prev.spoke} {until} ({shut[0].reason}), and its Job, not there "
        f"yet, would then end after its deadline {format_time(deadline)}: it is planned where "
        "it can start sooner"
    )


def _not_applied(prev: Entry) -> str:
    # The shipped AppProject admits two namespaces: a Job in a third is the
    # likeliest to be missing where others arrived.
    namespace = prev.job_key.split("/", 1)[0]
    return (
        f"{prev.spoke} has no Job {prev.job_key}: does an Argo CD Application sync "
        f"rendered/{prev.spoke}/ there, in an AppProject that admits namespace {namespace}?"
    )


def _not_resumed(prev: Entry) -> str:
    return (
        f"{prev.spoke} holds Job {prev.job_key} suspended, as the branch held it before its "
        f"start: does the Argo CD Application of rendered/{prev.spoke}/ sync it on its own "
        "(syncPolicy.automated), or was it suspended there by hand, or by Kueue (which "
        "holds a Job it manages until it admits it: manageJobsWithoutQueueName)?"
    )


def _unscheduled_too_long(
    job: JobRequest,
    prev: Entry,
    spokes: Mapping[str, SpokeState],
    *,
    now: datetime,
    after: timedelta | None,
) -> str | None:
    """Why a dispatched job is to be planned again: it has been `_stuck` for
    longer than it may (`_patience`). Left there, it would wait with its
    deadline running."""
    stuck = _stuck(job, prev, spokes)
    if stuck is None:
        return None
    patience = _patience(job, stuck, policy=after)
    if patience.wait is None or stuck.since + patience.wait > now:
        return None
    return (
        f"{stuck.what} {prev.spoke} from {format_time(stuck.since)} to {format_time(now)}, "
        f"more than {patience.whose}: its Job there never ran, and goes{_says(prev, stuck)}"
        f"{stuck.hint}"
    )


class _Patience(NamedTuple):
    wait: timedelta | None  # how long a job may be stuck before it is requeued (None: for ever)
    whose: str  # who says so: "the policy's requeueUnscheduled 15m"
    own: bool  # whether its AppWrapper does (the policy's word goes without saying)


def _patience(job: JobRequest, stuck: _Stuck, *, policy: timedelta | None) -> _Patience:
    """How long a dispatched job may be stuck on its spoke before it is
    requeued. Its AppWrapper's grace period for pods that wait unready (warmup)
    or were never made (admission), which the AppWrapper controller waits
    before it resets a workload, wins over the policy's requeueUnscheduled; its
    failureGracePeriodDuration, which that controller waits on top, adds to
    either."""
    own, name = (
        (job.warmup_grace, "warmupGracePeriodDuration")
        if stuck.pods_made
        else (job.admission_grace, "admissionGracePeriodDuration")
    )
    if own is not None:
        wait, whose = own, f"its AppWrapper's {name} {format_duration(own)}"
    elif policy is not None:
        wait, whose = policy, f"the policy's requeueUnscheduled {format_duration(policy)}"
    else:
        return _Patience(None, "the policy's requeueUnscheduled null", own=False)
    if not job.failure_grace:
        return _Patience(wait, whose, own=own is not None)
    extra = job.failure_grace
    also = "" if own is not None else "its AppWrapper's "
    return _Patience(
        wait + extra,
        f"{whose} and {also}failureGracePeriodDuration {format_duration(extra)}",
        own=True,
    )


def waits_stuck(
    job: JobRequest, prev: Entry, spokes: Mapping[str, SpokeState], *, after: timedelta | None
) -> str:
    """What keeps a dispatched job that is not requeued (yet) from running, and
    when it will be, or a planned job's Job from its spoke: for `explain`.
    Empty where nothing does."""
    stuck = _stuck(job, prev, spokes)
    if stuck is None:
        return _planned_not_there(prev, spokes)
    wait, whose, own = _patience(job, stuck, policy=after)
    then = (
        "the policy's requeueUnscheduled is null, so it waits there"
        if wait is None
        else f"it is requeued at {format_time(stuck.since + wait)} unless it starts"
        + (f" ({whose})" if own else "")
    )
    return (
        f"{stuck.what} {prev.spoke} since {format_time(stuck.since)}{_says(prev, stuck)}"
        f"{stuck.hint}: {then}"
    )


def _planned_not_there(prev: Entry, spokes: Mapping[str, SpokeState]) -> str:
    """Where a planned job's Job is not on its spoke (a dispatched one's is
    `_stuck`): it needs to be there only from its start, so it is not moved
    for it."""
    state = spoke_state(prev, spokes)
    since = state.unarrived.get(prev.job_key) if state is not None else None
    if since is None:
        return ""
    return (
        f"its Job, suspended until its start, has not appeared on {prev.spoke} though the "
        f"branch has held it since {format_time(since)} ({_not_applied(prev)})"
    )


def _says(prev: Entry, stuck: _Stuck) -> str:
    return f' ({prev.spoke} says: "{stuck.said}")' if stuck.said else ""


def _elsewhere(job: JobRequest, but: tuple[str, ...], closed: Mapping[str, str]) -> bool:
    """Whether a spoke other than those in `but` may take the job now."""
    return any(s not in but and s not in closed for s in job.allowed_spokes)
