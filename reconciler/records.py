"""Each job's new ledger record, from what `decide` found of it (`Verdicts`)
and the optimizer's plan: finished, suspended, waiting for its spoke, held,
or where the plan puts it, with the reason a person reads in the ledger and
in `caspian explain`. Pure: no clock, no environment, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from optimizer.model import Plan
from reconciler import arrivals, pools
from reconciler.chains import Gate
from reconciler.decisions import Requeue, SpokeState, Window, spoke_state
from reconciler.fleet import Fleet, JobRequest, Problem, effective_deadline
from reconciler.ledger import ACTIVE, FINISHED, FIXED, Declined, Entry, Phase
from reconciler.optimizerjobs import is_fixed, open_spokes, release_slot
from reconciler.quantities import format_duration, format_time
from reconciler.spokedown import Wait


class Requeues(NamedTuple):
    """Dispatched jobs taken off their spoke, where they cannot run (`requeues.requeuing`)."""

    requeued: dict[str, Requeue]
    tried: dict[str, tuple[str, ...]]  # the spoke of each of its requeues
    kept_off: dict[str, dict[str, str]]  # the spokes not to plan it on now, with why
    given_up: dict[str, str]  # requeued too often: planned nowhere, and why


class Verdicts(NamedTuple):
    """What `decide` found of each job before planning: which it plans, and
    what holds the others. Keyed by job id."""

    finished: dict[str, Phase]  # reported Succeeded or Failed for good
    final: dict[str, str]  # of those failed, with what (no runs again left)
    left: dict[str, str]  # of those failed, their Job gone from their spoke (or suspended): why
    suspended: set[str]  # held by their AppWrapper's spec.suspend
    # Every spoke each job may use but cannot go to now, with why.
    shut: dict[str, dict[str, str]]
    requeues: Requeues
    waiting: dict[str, Wait]  # planned on a spoke that went down, within its grace
    gates: dict[str, Gate]  # run after others (caspian.dev/after)
    held_by_others: set[str]  # not to be planned yet: those it runs after have not started
    due: dict[str, datetime]  # when others that run after it need it done
    # Their new place declined in a pull request, held where the main branch
    # has them: left unplaced (`unplaced`), kept at their planned place
    # (`pinned`), or left on their spoke, not requeued nor run again.
    declined: dict[str, Declined]
    unplaced: set[str]
    pinned: set[str]

    def planned(self, job_id: str) -> bool:
        """Whether the optimizer places it in this decision: not finished,
        suspended, waiting for its spoke, held by others or by a review."""
        return not any(
            job_id in held
            for held in (
                self.finished,
                self.suspended,
                self.waiting,
                self.held_by_others,
                self.unplaced,
            )
        )


def reviewed(entry: Entry, prev: Entry | None, verdicts: Verdicts) -> Entry:
    """A job's new record, saying so while a review's decline holds it: left
    unplaced, at its planned place until it starts there, or on the spoke it
    was started on. Not once it has finished or started where main planned
    it, nor where that place could not be kept (it is placed anew)."""
    mark = verdicts.declined.get(entry.id)
    if mark is not None and entry.id in verdicts.unplaced:
        return entry.model_copy(update={"declined": mark, "reason": mark.reason})
    pinned = entry.id in verdicts.pinned and entry.phase == Phase.PLANNED
    stays = prev is not None and prev.phase in FIXED and entry.phase in FIXED
    kept = mark if pinned or stays else None
    return entry if entry.declined == kept else entry.model_copy(update={"declined": kept})


def job_entry(
    job: JobRequest,
    prev: Entry | None,
    verdicts: Verdicts,
    *,
    plan: Plan,
    qos: Callable[[], Plan],
    horizon: Window,
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    down: Collection[str],
    now: datetime,
    offered: Entry | None = None,
) -> Entry:
    """A valid job's new record: as it finished, held, waiting, or where the
    plan puts it. `offered`: its record in an open proposal, as a plan.
    `qos` gives the carbon-blind baseline's plan, asked only for a job
    planned for the first time."""
    if job.id in verdicts.finished:
        assert prev is not None  # it finished where the ledger placed it
        # Its file may be back after a removal: the record is live again. It
        # ran, so where it could not run no longer matters.
        update: dict[str, Any] = {
            "phase": verdicts.finished[job.id],
            "removed_at": None,
            "requeued_from": (),
            "finished_at": arrivals.left_at(prev, spokes)
            if job.id in verdicts.left
            else _finished_at(prev, spokes, now=now),
        }
        if job.id in verdicts.final:
            update["reason"] = f"its Job {prev.job_name} failed with {verdicts.final[job.id]}"
        elif job.id in verdicts.left:
            update["reason"] = verdicts.left[job.id]
        return prev.model_copy(update=update)
    if job.id in verdicts.suspended:
        return _suspended_entry(job, prev, fleet=fleet, spokes=spokes, now=now)
    if job.id in verdicts.waiting:
        assert prev is not None  # it waits where the ledger planned it
        since = verdicts.waiting[job.id].since
        return _waiting_entry(job, prev, since=since, fleet=fleet, now=now)
    others = verdicts.held_by_others
    if job.id in others or job.id in verdicts.unplaced:  # a review's reason comes after
        recorded = _recorded(job, prev, fleet=fleet, now=now)
        tried = prev.requeued_from if prev is not None else ()
        why = (verdicts.gates[job.id].held or "") if job.id in others else ""
        pending = Entry(phase=Phase.PENDING, reason=why, **recorded)
        return pending.model_copy(update={"requeued_from": tried})
    state = spoke_state(prev, spokes)
    seen = state.jobs if state is not None else {}
    shut = verdicts.shut[job.id]
    entry = _placed_entry(
        job,
        prev,
        plan=plan,
        qos=qos,
        horizon=horizon,
        fleet=fleet,
        now=now,
        spokes_seen=seen,
        down=down,
        gate=verdicts.gates.get(job.id),
        own_deadline_only=job.id in verdicts.due,
        offered=offered,
    )
    entry = _blame_closed_spokes(entry, job, shut)
    found = verdicts.requeues
    if job.id in found.given_up and entry.phase == Phase.PENDING:
        entry = entry.model_copy(update={"reason": found.given_up[job.id]})
    if job.id in found.tried and entry.phase in (Phase.PLANNED, Phase.PENDING, Phase.DISPATCHED):
        entry = entry.model_copy(update={"requeued_from": found.tried[job.id]})
    return _resuming(entry, prev, job=job, closed=shut)


SUSPENDED = "its AppWrapper's spec.suspend is true: set it to false to plan it"


def _waiting_entry(
    job: JobRequest, prev: Entry, *, since: datetime, fleet: Fleet, now: datetime
) -> Entry:
    """A planned job that waits for its spoke: where and when it was planned,
    not dispatched (nothing would reach the spoke), its record brought up to
    date."""
    recorded = _recorded(job, prev, fleet=fleet, now=now)
    start = prev.planned_start
    assert start is not None  # only a planned job waits for its spoke
    end = start + job.duration
    # Its start may go by while it waits: it ends no sooner than a run from now.
    earliest = max(start, now) + job.duration
    late = earliest > recorded["deadline"]
    reason = prev.reason
    if late != prev.late:
        reason = (
            f"will finish after its deadline: it waits for {prev.spoke}, which is down, so it "
            f"ends {format_time(earliest)} at the earliest"
            if late
            else ""
        )
    update = {"planned_end": end, "late": late, "reason": reason, "spoke_down_since": since}
    return prev.model_copy(update={**recorded, **update})


def stopped_reason(spoke: str) -> str:
    return (
        f"its AppWrapper's spec.suspend is true: its Job on {spoke} is suspended, which ends "
        "its pods; set it to false to plan it again"
    )


def _suspended_entry(
    job: JobRequest,
    prev: Entry | None,
    *,
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    now: datetime,
) -> Entry:
    """A job its AppWrapper holds: recorded, not planned. A Job planned before
    leaves its spoke, never having started. One that had started stays on its
    spoke, rendered suspended, as Kubernetes suspends a Job: its pods end, and
    the Job keeps what it counted (an Indexed Job its completed indexes)."""
    recorded = _recorded(job, prev, fleet=fleet, now=now)
    # Where its Job has run: started, stopped before, or planned back there.
    where = None if prev is None else (prev.spoke if prev.phase in FIXED else prev.home)
    if prev is None or where is None or where not in spokes:
        return Entry(phase=Phase.SUSPENDED, reason=SUSPENDED, **recorded)
    # It keeps when it ran: should it turn out to have ended before its pods
    # did, its record is a finished one, retired `retention` after its end.
    ran = prev.phase in FIXED or prev.stopped
    return Entry(
        phase=Phase.SUSPENDED,
        spoke=where,
        pool=prev.pool,
        planned_start=prev.planned_start if ran else None,
        planned_end=prev.planned_end if ran else None,
        reason=stopped_reason(where),
        **recorded,
    )


def _recorded(
    job: JobRequest, prev: Entry | None, *, fleet: Fleet, now: datetime
) -> dict[str, Any]:
    """What every entry of `job` records, wherever it goes."""
    first_seen = prev.first_seen if prev and prev.first_seen else now
    retries = prev.retries if prev else 0
    return {
        "id": job.id,
        "source": job.source,
        "job_name": job.job_name_for(retry=retries),
        "retries": retries,
        "rerun_after": prev.rerun_after if prev else None,
        "template_hash": job.template_hash,
        "deadline": effective_deadline(job, first_seen=first_seen, fleet=fleet),
        "first_seen": first_seen,
        "cpu": job.cpu,
        "memory_bytes": job.memory_bytes,
        "gpu": job.gpu,
    }


def _finished_at(
    prev: Entry, spokes: Mapping[str, SpokeState], *, now: datetime
) -> datetime | None:
    """When a finished job's Job ended, for its record: as recorded already
    (None in a record from before this was kept: it counts from its planned
    end); else as its spoke says, but not after now (a spoke's clock may run
    ahead); else now, the reconcile that first saw it finished."""
    if prev.phase in FINISHED:
        return prev.finished_at
    state = spoke_state(prev, spokes)
    ended = state.ended.get(prev.job_key) if state is not None else None
    return min(ended, now) if ended is not None else now


def _placed_entry(
    job: JobRequest,
    prev: Entry | None,
    *,
    plan: Plan,
    qos: Callable[[], Plan],
    horizon: Window,
    fleet: Fleet,
    now: datetime,
    spokes_seen: Mapping[str, str],
    down: Collection[str],
    gate: Gate | None,
    own_deadline_only: bool = False,
    offered: Entry | None = None,
) -> Entry:
    """A job the optimizer was asked to place, where its plan puts it (Pending
    where it does not, with the optimizer's reason or a clearer one), with
    its phase, estimated and baseline carbon, and why it is late if it is.
    Where its record on main, or in an open proposal (`offered`), has it
    there already, the estimate and the reason are that record's."""
    common = _recorded(job, prev, fleet=fleet, now=now)
    assignment = plan.assignment(job.id)
    if assignment is None:
        reason = plan.reason_not_placed(job.id) or "the plan has no place for it"
        # Held back by its pause, not by its caspian.dev/not-before.
        paused = common["rerun_after"]
        held_back = paused is not None and paused >= (job.not_before or paused)
        if held_back and release_slot(paused, horizon) >= horizon.slots:
            reason = (
                f"deferred: its run again waits until {format_time(paused)} (its AppWrapper's "
                "retryPausePeriodDuration after the failure), beyond the planning horizon"
            )
        if gate is not None and gate.after and release_slot(gate.after, horizon) >= horizon.slots:
            reason = (
                f"deferred: it runs after {gate.last}, which ends {format_time(gate.after)} "
                "(its caspian.dev/after), beyond the planning horizon"
            )
        return Entry(phase=Phase.PENDING, reason=reason, **common)
    spoke = pools.spoke_of(assignment.spoke)
    start = horizon.time_of(assignment.start_slot)
    fixed = is_fixed(prev, horizon=horizon, now=now, down=down, gate=gate)
    if fixed:
        assert prev is not None and prev.planned_start is not None  # as is_fixed found
        start = prev.planned_start
    there = next(
        (
            record
            for record in (prev, offered)
            if record is not None
            and record.phase in ACTIVE
            and (record.spoke, record.planned_start) == (spoke, start)
        ),
        None,
    )
    estimated = (
        there.estimated_grams
        if there is not None and there.estimated_grams is not None
        else round(assignment.carbon_g, 1)
    )
    # Frozen when the job is first planned, also where the baseline had no
    # place for it then: filled in later, it would change a record that no
    # plan changed, and a reconcile would commit that alone.
    if prev is not None and (prev.qos_grams is not None or prev.phase in ACTIVE):
        qos_grams, qos_spoke, qos_start = prev.qos_grams, prev.qos_spoke, prev.qos_start
    else:
        qos_assignment = qos().assignment(job.id)
        qos_grams = qos_spoke = qos_start = None
        if qos_assignment is not None:
            qos_grams = round(qos_assignment.carbon_g, 1)
            qos_spoke = pools.spoke_of(qos_assignment.spoke)
            qos_start = horizon.time_of(qos_assignment.start_slot)
    late = prev.late if fixed and prev is not None else assignment.late_slots > 0
    if own_deadline_only and not fixed:
        # Planned to end in time for the jobs that run after it, it is late
        # only past its own deadline, as the optimizer counts a slot.
        end_slot = assignment.start_slot + horizon.slots_in(job.duration)
        late = end_slot > max(0, horizon.slot_of(common["deadline"]))
    reason = ""
    if fixed and prev is not None:
        # A job that has started keeps the reason of when it was placed: "now"
        # no longer tells when it could have ended.
        reason = prev.reason
    elif late and there is not None and there.late and there.deadline == common["deadline"]:
        # Nor does one still planned where it was, for the same deadline: its
        # reason counted from when it was placed there, which the next
        # reconcile would retell (a start that went by is no longer the
        # record's) and commit.
        reason = there.reason
    elif (
        late and gate is not None and gate.after and gate.after + job.duration > common["deadline"]
    ):
        reason = (
            f"will finish after its deadline: it runs after {gate.last}, which ends "
            f"{format_time(gate.after)} (its caspian.dev/after), so it ends "
            f"{format_time(gate.after + job.duration)} at the earliest, after its deadline "
            f"{format_time(common['deadline'])}"
        )
    elif late and (
        missed := _missed_start(prev, job, horizon=horizon, deadline=common["deadline"])
    ):
        reason = missed
    elif late:
        reason = _late_reason(
            job, deadline=common["deadline"], now=now, rerun_after=common["rerun_after"]
        )
    phase = Phase.DISPATCHED if fixed or start <= now else Phase.PLANNED
    if fixed and prev is not None and Phase.RUNNING in (prev.phase, spokes_seen.get(prev.job_key)):
        phase = Phase.RUNNING
    return Entry(
        phase=phase,
        spoke=spoke,
        pool=_pool(assignment.spoke, spoke=spoke, started=prev if fixed else None),
        planned_start=start,
        planned_end=start + job.duration,
        estimated_grams=estimated,
        qos_grams=qos_grams,
        qos_spoke=qos_spoke,
        qos_start=qos_start,
        late=late,
        reason=reason,
        **common,
    )


def _pool(assigned: str, *, spoke: str, started: Entry | None) -> str | None:
    """The pool of `spoke` the plan `assigned` the job to (None: the spoke is
    not split). A `started` job runs in the pool its record names still where
    this observation splits its spoke into none (the spoke down, or read as
    declared): dropped, its place would seem new, and go to review."""
    if assigned != spoke:
        return assigned
    return started.pool if started is not None and started.spoke == spoke else None


def _blame_closed_spokes(entry: Entry, job: JobRequest, closed: Mapping[str, str]) -> Entry:
    """A job left unplaced because every spoke it may use is down, unschedulable or
    without a node big enough says so: the optimizer sees such a spoke only as one
    with no room, and would blame the job's size. Where only some are, the
    optimizer's reason is about the others, and says which it leaves out."""
    allowed = list(job.allowed_spokes)
    shut = [name for name in allowed if name in closed]
    if entry.phase != Phase.PENDING or not shut:
        return entry
    why = "; ".join(f"{name} ({closed[name]})" for name in shut)
    if len(shut) == len(allowed):
        return entry.model_copy(update={"reason": f"no spoke it may use can take it: {why}"})
    if "allowed spoke" not in entry.reason:  # not the optimizer's word on the spokes
        return entry
    return entry.model_copy(update={"reason": f"{entry.reason}, leaving out {why}"})


def _resuming(
    entry: Entry, prev: Entry | None, *, job: JobRequest, closed: Mapping[str, str]
) -> Entry:
    """A resumed job planned where its Job waits remembers that spoke until it is
    dispatched. One with no room there yet stays as it is, suspended there, and
    says why: left Pending, its Job would leave the spoke, and with it what it
    counted."""
    home = prev.home if prev is not None else None
    if prev is None or home is None or home not in open_spokes(job, prev, closed=closed):
        return entry
    if entry.phase == Phase.PLANNED:
        return entry.model_copy(update={"resumes_on": home})
    if entry.phase != Phase.PENDING:
        return entry
    ran = prev.stopped  # when it ran, kept as a stopped job keeps it
    return entry.model_copy(
        update={
            "phase": Phase.SUSPENDED,
            "spoke": home,
            "pool": prev.pool,
            "planned_start": prev.planned_start if ran else None,
            "planned_end": prev.planned_end if ran else None,
            "reason": f"resumed, and waits for room on {home}, where its suspended Job is: "
            f"{entry.reason}",
        }
    )


def _missed_start(
    prev: Entry | None, job: JobRequest, *, horizon: Window, deadline: datetime
) -> str:
    """Why a job is late that was planned to end in time, and whose planned
    start went by before a reconcile dispatched it (Caspian stopped, say):
    its deadline is not what to change. "" where that is not so."""
    if prev is None or prev.phase != Phase.PLANNED or prev.spoke_down_since is not None:
        return ""
    if prev.planned_start is None or prev.planned_end is None:
        return ""
    if prev.planned_start >= horizon.start or prev.planned_end > deadline:
        return ""
    start = max(horizon.start, job.not_before or horizon.start)
    return (
        f"will finish after its deadline: it was planned on {prev.spoke} from "
        f"{format_time(prev.planned_start)}, in time, and that start went by before a "
        f"reconcile dispatched it, so it ends {format_time(start + job.duration)} at the "
        f"earliest, after its deadline {format_time(deadline)}"
    )


def _late_reason(
    job: JobRequest, *, deadline: datetime, now: datetime, rerun_after: datetime | None = None
) -> str:
    """Why a job ends after its deadline: capacity, a run again's pause, or a
    deadline that no start could meet (the fix is then in its file, not in the
    fleet)."""
    if (
        rerun_after is not None
        and rerun_after > max(now, job.not_before or now)
        and rerun_after + job.duration > deadline
    ):
        return (
            f"will finish after its deadline: its run again waits until "
            f"{format_time(rerun_after)} (its AppWrapper's retryPausePeriodDuration after "
            f"the failure), so it ends {format_time(rerun_after + job.duration)} at the "
            f"earliest, after its deadline {format_time(deadline)}"
        )
    start = max(now, job.not_before or now)
    if start + job.duration <= deadline:
        return "will finish after its deadline: no earlier capacity"
    waits = job.not_before is not None and job.not_before > now
    return (
        f"will finish after its deadline: it runs {format_duration(job.duration)}"
        + (f" from its caspian.dev/not-before {format_time(start)}" if waits else "")
        + f", so it ends {format_time(start + job.duration)} at the earliest, after its "
        f"deadline {format_time(deadline)}: give it a later caspian.dev/deadline (or "
        "complete-within)"
        + (", an earlier not-before" if waits else "")
        + " or a shorter caspian.dev/duration"
    )


def invalid_entries(problems: tuple[Problem, ...]) -> list[Entry]:
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem)
    return [
        Entry(
            id=file,
            source=file,
            phase=Phase.INVALID,
            reason="; ".join(p.said() for p in items),
        )
        for file, items in sorted(by_file.items())
    ]
