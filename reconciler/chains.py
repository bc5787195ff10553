"""Jobs that run after others (caspian.dev/after): what the jobs a job runs
after allow it now, and by when a job must end for the jobs that run after
it to meet their deadlines. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from reconciler.appwrappers import AFTER
from reconciler.decisions import Retry, Window
from reconciler.fleet import Fleet, JobRequest, Problem, effective_deadline
from reconciler.ledger import FINISHED, FIXED, Entry, Phase


def due_for_others(
    jobs: Iterable[JobRequest],
    prevs: Mapping[str, Entry | None],
    *,
    finished: Mapping[str, Phase],
    fleet: Fleet,
    now: datetime,
) -> dict[str, datetime]:
    """Per job that others not yet started run after (caspian.dev/after), the
    time it must end by for them to meet their deadlines, where that is
    earlier than its own: their deadline less how long they run, through
    every step of a chain."""
    requests = {job.id: job for job in jobs}

    def unstarted(job_id: str) -> bool:
        prev = prevs.get(job_id)
        return job_id not in finished and not (prev is not None and prev.phase in FIXED)

    def own(job: JobRequest) -> datetime:
        prev = prevs.get(job.id)
        first_seen = prev.first_seen if prev and prev.first_seen else now
        return effective_deadline(job, first_seen=first_seen, fleet=fleet)

    due: dict[str, datetime] = {}
    # A chain is as long as the jobs at most: each round carries it a step.
    for _ in range(len(requests)):
        changed = False
        for job in requests.values():
            if not job.after or not unstarted(job.id):
                continue
            # Only ever earlier than its own (below).
            by = due.get(job.id, own(job)) - job.duration
            for other in job.after:
                if (
                    other in requests
                    and unstarted(other)
                    and by < due.get(other, own(requests[other]))
                ):
                    due[other] = by
                    changed = True
        if not changed:
            break
    return due


def gates_moved(
    jobs: Iterable[JobRequest], before: Mapping[str, Entry], after: Mapping[str, Entry]
) -> bool:
    """Whether, from `before` to `after`, a job that others run after changed
    what `gate_of` reads of it: whether it has started (and then its planned
    end), succeeded or failed, and its Job (a run again is a new one); or a
    job that runs after others changed what `due_for_others` reads of it:
    whether it is under way (started or finished). Not a new job's first
    record, which dates it from now as the pass did; nor Dispatched to
    Running, which happens at every start and leaves its gates as they were:
    each pass solves the whole plan again."""

    def read(entry: Entry | None) -> tuple[str, str | None, datetime | None] | None:
        if entry is None:
            return None
        end = entry.planned_end if entry.phase in FIXED else None
        return _progress(entry), entry.job_name, end

    def under_way(entry: Entry | None) -> bool:
        return entry is not None and _progress(entry) != "not started"

    targets = {other for job in jobs for other in job.after}
    waiting = {job.id for job in jobs if job.after}
    return any(read(before.get(other)) != read(after.get(other)) for other in targets) or any(
        under_way(before.get(job_id)) != under_way(after.get(job_id)) for job_id in waiting
    )


def _progress(entry: Entry) -> str:
    """Started, Succeeded, Failed or not started."""
    if entry.phase in FIXED:
        return "started"
    return entry.phase.value if entry.phase in (Phase.SUCCEEDED, Phase.FAILED) else "not started"


class Gate(NamedTuple):
    """What the jobs a job runs after (its caspian.dev/after) allow it now."""

    held: str | None  # why it is not planned yet: one has not started, or failed
    after: datetime | None  # it starts no earlier than this: their latest end
    last: str | None  # the one that ends then
    done: bool  # all of them succeeded: it may be dispatched


def _near(job_id: str, *, among: Collection[str]) -> str:
    """A job in jobs/ (`among`) that `job_id` may have been meant as: one of its
    namespace with a name close to its name, or one of its name in another
    namespace. A typo would otherwise hold the job for good, with nothing in
    the files to catch it."""
    namespace, name = job_id.split("/", 1)
    names = sorted(other.split("/", 1)[1] for other in among if other.startswith(f"{namespace}/"))
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if found:
        return f" (did you mean {namespace}/{found[0]}?)"
    elsewhere = sorted(other for other in among if other.split("/", 1)[1] == name)
    return f" (did you mean {' or '.join(elsewhere)}?)" if elsewhere else ""


def not_in_jobs(
    jobs: Iterable[JobRequest], previous: Mapping[str, Entry], *, broken: Collection[str]
) -> list[Problem]:
    """Each job a caspian.dev/after names that is not in jobs/ (`jobs`), has
    not run nor ended by the ledger's records (`previous`) and has no broken
    file: what holds the job that names it until it is committed, as `gate_of`
    says once a reconcile reads it (of one that failed, it says so instead).
    `caspian validate` says these as warnings: a pipeline may be committed in
    parts, and a typo holds its job for good."""
    valid = {job.id for job in jobs}
    found = []
    for job in sorted(jobs, key=lambda job: job.source):
        for other in job.after:
            entry = previous.get(other)
            if other in valid or (
                entry is not None
                and (entry.phase in (*FINISHED, *FIXED) or entry.source.split("#", 1)[0] in broken)
            ):
                continue
            near = _near(other, among=valid - {job.id})
            found.append(
                Problem(
                    file=job.source,
                    field=f"metadata.annotations.{AFTER}",
                    reason=f"{other} is not in jobs/{near}: {job.id} is held until it is",
                )
            )
    return found


def gate_of(
    job: JobRequest,
    previous: Mapping[str, Entry],
    finished: Mapping[str, Phase],
    retried: Mapping[str, Retry],
    *,
    valid: Mapping[str, JobRequest],
    broken: Collection[str],
    horizon: Window,
    now: datetime,
) -> Gate:
    """Whether `job` may be planned, from when, and whether dispatched, by the
    jobs it runs after: each must have started (then it is planned from its
    planned end, or from the next slot where that has gone by) and succeeded
    before it is dispatched. One that failed, runs again, or is not in jobs/
    holds it, with why."""
    waits: list[str] = []
    ends: list[tuple[datetime, str]] = []
    for other in job.after:
        entry = previous.get(other)
        phase = None if other in retried else finished.get(other) or (entry and entry.phase)
        if phase == Phase.SUCCEEDED:
            continue
        if phase == Phase.FAILED:
            waits.append(
                f"{other}, which failed: run it again (a change to its wrapped Job) or take it "
                "out of its caspian.dev/after"
            )
        elif phase in FIXED and entry is not None and entry.planned_end is not None:
            ends.append((entry.planned_end, other))
        elif other in valid or other in retried:
            waits.append(f"{other} to start")
        elif entry is not None and entry.source.split("#", 1)[0] in broken:
            waits.append(f"{other}, whose file has a problem (see its record)")
        else:
            near = _near(other, among=set(valid) - {job.id})
            waits.append(f"{other}, which is not in jobs/{near}")
    if waits:
        return Gate(
            held=f"waits for {'; '.join(waits)} (its caspian.dev/after)",
            after=None,
            last=None,
            done=False,
        )
    if not ends:
        return Gate(held=None, after=None, last=None, done=True)
    # Not before the next slot: it must not be dispatched while they run.
    end, last = max(ends)
    after = max(end, horizon.time_of(horizon.slot_of(now) + 1))
    return Gate(held=None, after=after, last=last, done=False)
