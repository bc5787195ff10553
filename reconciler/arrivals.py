"""Jobs committed for a spoke that are not there: Argo CD has not applied
them (its Application does not sync that directory, cannot reach the repo,
or is not there at all). Only a spoke whose Jobs are listed whole can tell:
by its API (the kube observer), or by its Application, which calls those in
git it lacks Missing (the Argo CD observer). Likewise dispatched Jobs the
spoke holds suspended still: Argo CD has not applied their resume. Since
when the main branch has held each file (as it is) is the fleet repo's
history, which the shell reads. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from reconciler import yamlio
from reconciler.decisions import SpokeState, spoke_state
from reconciler.fleet import Span
from reconciler.ledger import FIXED, Cut, Entry, Phase
from reconciler.quantities import format_duration, format_time
from reconciler.rendering import job_path
from reconciler.syncwindows import barred_until, open_since

# How long Argo CD may take to apply what the branch holds: it reads a repo
# every three minutes unless a webhook tells it sooner. The metrics count a
# Job missing past it, and a file removed this long before a sync window ends
# is gone before Argo CD may sync again.
ARGO_CD_SLACK = timedelta(minutes=10)

# The records whose Job Argo CD should have applied by now: suspended until
# its start, or resumed. One that ran is seen by its own phase.
EXPECTED = (Phase.PLANNED, Phase.DISPATCHED)


def _expected(entry: Entry) -> bool:
    """Whether a record's Job should be on its spoke (which it then names:
    `entry.spoke or ""` below only tells the type checker so)."""
    return entry.phase in EXPECTED and entry.spoke is not None and entry.job_name is not None


def unlisted(entries: Iterable[Entry], spokes: Mapping[str, SpokeState]) -> dict[str, Entry]:
    """The records, by their Job's file, whose spoke lists every Job of
    Caspian's it has, and not theirs."""
    missing = {}
    for entry in filter(_expected, entries):
        state = spokes.get(entry.spoke or "")
        if state is None or not state.up or state.listed is None:
            continue
        if entry.job_key not in state.listed:
            missing[job_path(entry)] = entry
    return missing


def unresumed(
    entries: Iterable[Entry], spokes: Mapping[str, SpokeState], *, files: Mapping[str, bytes]
) -> dict[str, Entry]:
    """The dispatched records, by their Job's file, whose spoke holds their
    Job suspended though `files` (the main branch's) hold it resumed: Argo CD
    has not applied the resume there (its Application does not sync on its own,
    or lags), or someone suspended it there by hand."""
    waiting = {}
    for entry in filter(_expected, entries):
        state = spokes.get(entry.spoke or "")
        if entry.phase != Phase.DISPATCHED or state is None or not state.up:
            continue
        path = job_path(entry)
        if entry.job_key in state.suspended and _resumed(files.get(path)):
            waiting[path] = entry
    return waiting


def _resumed(raw: bytes | None) -> bool:
    """Whether a rendered file's Job (its first document) is resumed. A file
    kept as it was (its AppWrapper broken, say) may still hold it suspended."""
    try:
        documents = yamlio.load_all(raw) if raw is not None else []
    except yamlio.YAMLError:
        return False
    job = documents[0] if documents and isinstance(documents[0], dict) else {}
    spec = job.get("spec")
    return job.get("kind") == "Job" and isinstance(spec, dict) and spec.get("suspend") is False


def noted(
    spokes: Mapping[str, SpokeState],
    missing: Mapping[str, Entry],
    *,
    held_since: Mapping[str, datetime],
    now: datetime,
    field: Literal["unarrived", "unresumed"] = "unarrived",
) -> dict[str, SpokeState]:
    """`spokes` with the Jobs of `missing` that the main branch holds (since
    when, `held_since` by file) as not arrived, or with `field` "unresumed", as
    not resumed. A file the branch does not hold (a placement under review, not
    merged) was never Argo CD's to apply; nor is one while its spoke's sync
    windows bar syncing, so a file held through one counts from its end, and
    one held while they bar syncing now is `held_back`."""
    held = {
        path: (entry, held_since[path])
        for path, entry in missing.items()
        if path in held_since and entry.spoke is not None
    }
    # Each spoke's barred times, read once from the first file it holds:
    # once a file, a dense schedule took seconds for a thousand files.
    first: dict[str, datetime] = {}
    for entry, since in held.values():
        name = entry.spoke or ""
        first[name] = min(since, first.get(name, since))
    barred: dict[str, tuple[Span, ...]] = {
        name: barred_until(spokes[name].sync_windows, since, now=now)
        for name, since in first.items()
        if spokes[name].sync_windows
    }
    by_spoke: dict[str, dict[str, datetime]] = {}
    held_back: dict[str, dict[str, datetime]] = {}
    for entry, since in held.values():
        name = entry.spoke or ""
        counted = open_since(barred[name], since, now=now) if name in barred else since
        if counted is not None:
            by_spoke.setdefault(name, {})[entry.job_key] = counted
        else:
            held_back.setdefault(name, {})[entry.job_key] = since
    return {
        name: state.model_copy(
            update={
                field: dict(sorted(by_spoke.get(name, {}).items())),
                "held_back": dict(sorted({**state.held_back, **held_back.get(name, {})}.items())),
            }
        )
        if name in by_spoke or name in held_back
        else state
        for name, state in spokes.items()
    }


# How long a spoke cut off as one nothing syncs (`unsynced`) takes no new work
# when none of its Jobs is there to show otherwise: then it takes work again,
# to see whether Argo CD syncs it now, and is cut off again if not, each time
# twice as long, as Kubernetes backs off a container that keeps crashing. A
# day at most: the horizon a fleet plans over, by default.
UNSYNCED_HOLD = timedelta(hours=1)
UNSYNCED_HOLD_MOST = timedelta(days=1)


def unsynced(
    spokes: Mapping[str, SpokeState],
    *,
    now: datetime,
    after: timedelta | None,
    cut: Mapping[str, Cut] | None = None,
) -> dict[str, SpokeState]:
    """`spokes` where each that lists no Job of Caspian's at all (or only
    Jobs applied before the hub's Argo CD lost its Application:
    `no_application`), while one the branch holds for it has been missing
    for longer than `after` (the policy's requeueUnscheduled), takes no new
    work: nothing syncs its directory there, so no new Job would reach it
    either, as with a spoke the hub's Argo CD cannot sync. A Job missing
    beside others that arrived is its own trouble (a namespace the spoke
    lacks, a webhook that refuses it), which its requeue answers; so is one
    Argo CD says it tried to apply there (`unapplied`): it syncs the
    directory, the spoke's API refused the Job.

    A spoke cut off so (`cut`, the last ledger's) stays so once its Jobs
    have gone elsewhere and none is there to show otherwise: else it would
    take them back at once, and lose them again a requeueUnscheduled later.
    It takes work again when a Job of Caspian's is there (and the hub, where
    it holds Caspian's Applications, one for it), or once the hold is over:
    `UNSYNCED_HOLD` from the reconcile that cut it off, twice the last hold
    (up to `UNSYNCED_HOLD_MOST`) where it was cut off before and no Job of
    Caspian's has been there since. Each state says its cut, for the next
    ledger."""
    cut = cut or {}
    if after is None:
        return dict(spokes)
    changed = {}
    for name, state in spokes.items():
        last = cut.get(name)
        if not state.up:
            if last is not None:  # down for another reason: what was found holds
                changed[name] = state.model_copy(update={"unsynced": last})
            continue
        # Any Job of Caspian's there shows that Argo CD synced the directory
        # once: a running or finished one, or one the ledger no longer names
        # (edited since, say); unless the hub's Argo CD has no Application
        # for the spoke, when those are Jobs applied before it went (deleted,
        # or left out of the ApplicationSet), which run on. Only what the
        # spoke lists counts, not what the ledger says, which this decision
        # changes: else the next would find otherwise.
        synced = bool(state.listed) and not state.no_application
        if state.listed is None or synced or state.unapplied:
            continue
        first = min(state.unarrived.values()) if state.unarrived else None
        overdue = first is not None and first + after <= now
        if last is not None and now < last.until:
            held, since = last, (first + after if first is not None and overdue else last.since)
        elif first is not None and overdue:
            # The hold counts from the reconcile that first found it so.
            held, since = Cut(since=now, until=now + next_hold(last)), first + after
        elif last is not None and (state.unarrived or now < last.until + last.hold):
            # On trial: it takes work, and the ledger keeps the cut while a
            # Job planned there may yet be missing, or for as long as the
            # hold, so that a spoke nothing syncs backs off.
            changed[name] = state.model_copy(update={"unsynced": last})
            continue
        else:
            continue
        why = _unsynced_reason(name, held, no_application=state.no_application)
        changed[name] = state.down(why, since=since).model_copy(update={"unsynced": held})
    return {**spokes, **changed}


def next_hold(last: Cut | None) -> timedelta:
    """How long a spoke is held at its next cut, after `last` (None: never)."""
    return UNSYNCED_HOLD if last is None else min(2 * last.hold, UNSYNCED_HOLD_MOST)


def _unsynced_reason(name: str, cut: Cut, *, no_application: bool) -> str:
    """One reason from the first reconcile of a cut to its last, while the
    hub says the same of the spoke's Application: the records of jobs it
    shuts out quote it, and would change with it."""
    again = (
        "" if cut.hold <= UNSYNCED_HOLD else f" ({format_duration(cut.hold)} on: cut off before)"
    )
    if no_application:
        return (
            f"no Argo CD Caspian reads holds an Application syncing rendered/{name}/ (Caspian's "
            "are labelled app.kubernetes.io/part-of=caspian and caspian.dev/spoke), so no Job "
            f"the branch holds for it reaches it (found at {format_time(cut.since)}); add one, "
            "as argocd/applicationset.yaml does (argocd/spoke-application.template.yaml on a "
            f"spoke's own Argo CD). It is tried again at {format_time(cut.until)}{again}, or "
            "once an Application syncs it"
        )
    return (
        f"Argo CD has not applied rendered/{name}/ there: none of the Jobs the branch held "
        f"for it was there at {format_time(cut.since)}; does an Application sync that "
        f"directory to it? It is tried again at {format_time(cut.until)}{again}, or once one "
        "of them is there"
    )


def unapplied_since(state: SpokeState, key: str) -> datetime | None:
    """Since when Argo CD has failed to apply the Job `key` on its spoke.
    The Application keeps only its last sync, which says when that one
    failed, and Argo CD tries again at each commit (with self-heal, soon
    after each failure): the Job has been kept from the spoke since the
    branch has held it missing there, or not resumed, where that is earlier."""
    last = state.unapplied.get(key)
    if last is None:
        return None
    return min(
        since
        for since in (last, state.unarrived.get(key), state.unresumed.get(key))
        if since is not None
    )


def overdue(
    spokes: Mapping[str, SpokeState],
    *,
    now: datetime,
    after: timedelta,
    field: Literal["unarrived", "unresumed"] = "unarrived",
) -> dict[str, int]:
    """Per spoke whose Jobs are listed whole, how many of those not there (or,
    `field` "unresumed", not resumed there) the branch has held for longer
    than `after`: Argo CD's slack to sync them."""
    return {
        name: sum(1 for since in getattr(state, field).values() if now - since > after)
        for name, state in spokes.items()
        if state.listed is not None
    }


def left(
    entry: Entry | None,
    spokes: Mapping[str, SpokeState],
    *,
    now: datetime,
    after: timedelta | None,
) -> str | None:
    """Why a running job is taken for failed though no spoke says it failed:
    its Job is not on a spoke that lists every Job of Caspian's (deleted
    there, by hand, say, with Argo CD's self-heal off; with it on, Argo CD
    makes it again, and it runs from its start), or the spoke holds it
    suspended and running no pod (suspended there after it began, by hand or
    by Kueue preempting it: nothing resumes it until someone does). Only from
    its planned end: until then it may come back, and it holds its room as it
    would. Or its pods have found no node there for longer than `after` (the
    policy's requeueUnscheduled; None leaves them waiting), as Kueue's
    waitForPodsReady recoveryTimeout evicts a workload that lost its pods:
    at once, since it makes no headway meanwhile; so too for a dispatched
    job its spoke reports begun. None where none is so."""
    state = spoke_state(entry, spokes)
    if entry is None or entry.phase not in FIXED or entry.planned_end is None:
        return None
    if state is None or not _told_by(state):
        return None
    key = entry.job_key
    running = state.jobs.get(key, "Running") == "Running"
    nodeless = _lost_node(entry, state)
    if after is not None and nodeless is not None and nodeless + after <= now:
        return (
            f"its Job {entry.job_name} has had no pod on a node on {entry.spoke} since "
            f"{format_time(nodeless)}, the scheduler finding none (its nodes gone: drained, "
            "failed, or a spot instance taken back?), for longer than the policy's "
            f"requeueUnscheduled {format_duration(after)}, so it is taken for failed from "
            f"{format_time(left_at(entry, spokes))}"
        )
    if entry.phase != Phase.RUNNING or now < entry.planned_end:
        return None
    end = format_time(entry.planned_end)
    if state.listed is not None and key not in state.listed:
        gone = entry.gone_since
        taken = (
            f"it is taken for failed from its planned end {end}"
            if gone is None or gone >= entry.planned_end
            else f"at its planned end {end} it is taken for failed from when a reconcile first "
            f"found it missing, {format_time(left_at(entry, spokes))}"
        )
        return (
            f"its Job {entry.job_name} left {entry.spoke} before it was seen to finish (deleted "
            f"there, with Argo CD's self-heal off?), so {taken}"
        )
    # The kube observer calls a suspended Job that has run a pod before, or
    # whose pods are ending still, Running: suspended, it runs nothing.
    if key in state.suspended and running:
        at = state.suspended_at.get(key)
        from_then = format_time(left_at(entry, spokes))
        taken = (
            f"at its planned end {end} it is taken for failed from {from_then}"
            if at
            else f"it is taken for failed from its planned end {end}"
        )
        return (
            f"its Job {entry.job_name} was suspended on {entry.spoke}"
            f"{f' at {format_time(at)}' if at else ''} after it began and has run no pod since "
            "(suspended there by hand, or preempted by Kueue, with Argo CD's self-heal off?), "
            f"so {taken}"
        )
    return None


def gone_since(
    entry: Entry, before: Entry | None, spokes: Mapping[str, SpokeState], *, now: datetime
) -> datetime | None:
    """Since when a running job's Job has been missing from its spoke, as
    `left` finds it (the spoke lists every Job of Caspian's, and not it): the
    first reconcile that found it so, kept from its record `before` while the
    same Job is missing, or unknown, there. None once it is there again, and
    for a job not running."""
    if entry.phase != Phase.RUNNING:
        return None
    same = before is not None and before.job_name == entry.job_name
    kept = before.gone_since if same and before is not None else None
    state = spoke_state(entry, spokes)
    if state is None or state.listed is None or not _told_by(state):
        return kept
    return None if entry.job_key in state.listed else kept or now


def _told_by(state: SpokeState) -> bool:
    """Whether what a spoke reports of a running job's Job is taken: up, or
    down for want of a sync, where its own list of its Jobs holds still."""
    return state.up or state.listed_by_itself


def _lost_node(entry: Entry, state: SpokeState) -> datetime | None:
    """Since when a running job's pods have had no node and found none on its
    spoke; None where they have one, or it does not run there."""
    key = entry.job_key
    if state.jobs.get(key, "Running") != "Running":
        return None  # ended
    # Dispatched, it may have begun and lost its node before a reconcile saw it run.
    began = entry.phase == Phase.RUNNING or state.jobs.get(key) == "Running"
    return state.nodeless.get(key) if began else None


def lost_node(entry: Entry, spokes: Mapping[str, SpokeState], *, after: timedelta | None) -> str:
    """For `explain`: since when a running job's pods have had no node, what
    its spoke says, and when `left` takes it for failed. Empty where that is
    not so."""
    state = spoke_state(entry, spokes)
    if entry.phase not in FIXED or state is None:
        return ""
    since = _lost_node(entry, state)
    if since is None:
        return ""
    said = state.said.get(entry.job_key)
    then = (
        "the policy's requeueUnscheduled is null, so it waits there"
        if after is None
        else f"it is taken for failed at {format_time(since + after)} unless they find one"
    )
    return (
        f"its pods have had no node on {entry.spoke} since {format_time(since)}"
        + (f' ({entry.spoke} says: "{said}")' if said else "")
        + f" (its nodes gone?): {then}"
    )


def left_at(entry: Entry, spokes: Mapping[str, SpokeState]) -> datetime:
    """When a job `left` takes for failed is counted to have ended: when its
    pods lost their nodes, or it was suspended, where the spoke says, or the
    first reconcile that found its Job gone (`gone_since`), between its start
    and its planned end; else its planned end (when it left is not known)."""
    assert entry.planned_end is not None  # running, it was planned
    state = spoke_state(entry, spokes)
    stopped = (_lost_node(entry, state) or state.suspended_at.get(entry.job_key)) if state else None
    stopped = stopped or entry.gone_since
    if stopped is None:
        return entry.planned_end
    # A pod of it may have waited for a node since before it began.
    began = entry.started_at or entry.planned_start or stopped
    return max(began, min(entry.planned_end, stopped))
