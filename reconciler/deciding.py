"""decide: what should run where and when. Pure: no clock, no environment, no I/O.

Inputs are the fleet (one commit), the previous ledger, what each spoke has free,
the intensity forecasts and `now`; the output is a `Decision` holding the new
ledger. The same inputs give the same Decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from carbon import IntensitySeries
from optimizer import baselines
from optimizer.model import Instance, Job, Plan, Slot, SolverSettings
from optimizer.solving import optimize
from reconciler import fitting, pools, requeues, retrying
from reconciler.chains import Gate, due_for_others, gate_of
from reconciler.decisions import Decision, Requeue, SpokeState, Window
from reconciler.fleet import Fleet, JobRequest, Problem, Spoke, effective_deadline
from reconciler.ledger import (
    ACTIVE,
    FINISHED,
    FIXED,
    UNFINISHED,
    Declined,
    Entry,
    Ledger,
    Phase,
)
from reconciler.quantities import format_duration, format_time
from reconciler.spokedown import Wait, waits_for_spoke
from reconciler.spokeroom import (
    capacity_of,
    held_as_fixed,
    maintenance_in,
    shut_for_maintenance,
    within_quotas,
)

# What turns an optimizer instance into a plan: the optimizer itself, or a
# baseline when `caspian simulate` replays another policy through the same loop.
Planner = Callable[[Instance, SolverSettings], Plan]


def optimize_plan(instance: Instance, settings: SolverSettings) -> Plan:
    return optimize(instance, settings=settings)


def window(fleet: Fleet, *, now: datetime) -> Window:
    spec = fleet.policy.spec
    slot = spec.slot_seconds
    start = datetime.fromtimestamp(now.timestamp() // slot * slot, tz=now.tzinfo)
    longest = max((job.duration for job in fleet.jobs), default=spec.slot)
    slots = spec.horizon_slots
    return Window(
        start=start,
        slot_seconds=slot,
        slots=slots,
        covered_slots=slots + max(1, math.ceil(longest.total_seconds() / slot)),
    )


def zones(fleet: Fleet) -> dict[str, str]:
    """Zone of every spoke; spokes in one zone share its series."""
    return {spoke.name: spoke.spec.carbon.zone for spoke in fleet.spokes}


def decide(
    *,
    fleet: Fleet,
    ledger: Ledger,
    spokes: Mapping[str, SpokeState],
    forecasts: Mapping[str, IntensitySeries],
    now: datetime,
    planner: Planner = optimize_plan,
) -> Decision:
    """What to place where and when, from what the fleet repo asks, what the
    spokes report, the forecasts and `now`. A job that runs after another
    (caspian.dev/after) is planned once that one has started: where this
    decision dispatches it, the job is planned in a second pass over the same
    inputs, so that a reconcile right after commits nothing more."""

    def once(ledger: Ledger) -> Decision:
        return _decide(
            fleet=fleet, ledger=ledger, spokes=spokes, forecasts=forecasts, now=now, planner=planner
        )

    first = once(ledger)
    before, after = ledger.by_id(), first.ledger.by_id()
    # A job they wait for that this decision changed (dispatched, say, or run
    # again and dispatched at once) may let them be planned now.
    moved = {
        other
        for job_id in first.held_after
        for other in first.jobs[job_id].after
        if before.get(other) != after.get(other)
    }
    if not moved:
        return first
    second = once(first.ledger)
    # What happened in the first pass (a requeue, a run again) is this decision's too.
    return second.model_copy(
        update={
            "requeued": {**first.requeued, **second.requeued},
            "retried": {**first.retried, **second.retried},
            "not_retried": {**first.not_retried, **second.not_retried},
        }
    )


class _Requeues(NamedTuple):
    """Dispatched jobs taken off their spoke, where they cannot run (`requeues.requeuing`)."""

    requeued: dict[str, Requeue]
    tried: dict[str, tuple[str, ...]]  # the spoke of each of its requeues
    kept_off: dict[str, dict[str, str]]  # the spokes not to plan it on now, with why
    given_up: dict[str, str]  # requeued too often: planned nowhere, and why


class _Verdicts(NamedTuple):
    """What `_decide` found of each job before planning: which it plans, and
    what holds the others. Keyed by job id."""

    finished: dict[str, Phase]  # reported Succeeded or Failed for good
    final: dict[str, str]  # of those failed, with what (no runs again left)
    suspended: set[str]  # held by their AppWrapper's spec.suspend
    # Every spoke each job may use but cannot go to now, with why.
    shut: dict[str, dict[str, str]]
    requeues: _Requeues
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


def _decide(
    *,
    fleet: Fleet,
    ledger: Ledger,
    spokes: Mapping[str, SpokeState],
    forecasts: Mapping[str, IntensitySeries],
    now: datetime,
    planner: Planner,
) -> Decision:
    """One pass of `decide`, top-down: what each job's record says now
    (finished, run again, suspended), the spokes each may not go to now, the
    requeues, the jobs that wait (for a spoke that went down, for others), the
    optimizer's plan for the rest, and each job's new record."""
    horizon = window(fleet, now=now)
    broken_files = {_file(problem.file) for problem in fleet.problems}
    valid = {job.id: job for job in fleet.jobs}

    closed = _closed_spokes(fleet, spokes)
    # Nothing is dispatched where nothing would reach.
    down = {name for name, state in spokes.items() if not state.up}
    # What was placed on a spoke whose file does not load stays as committed, and
    # out of this decision: nothing there can be observed or priced.
    stay = [e for e in ledger.entries if e.spoke in fleet.broken_spokes and _has_a_job_there(e)]
    staying = {e.id for e in stay}
    ledger = Ledger(entries=tuple(e for e in ledger.entries if e.id not in staying))
    jobs = [job for job in fleet.jobs if job.id not in staying]
    previous = ledger.by_id()
    kept, held = _entries_without_valid_job(
        ledger, valid, broken_files, now=now, keep_for=fleet.policy.spec.ledger_retention
    )
    held += stay
    prevs = {job.id: _same_job(previous.get(job.id), job, spokes) for job in jobs}
    declined = {job.id: mark for job in jobs if (mark := _declined(prevs[job.id], job))}
    finished = {
        job_id: phase for job_id, prev in prevs.items() if (phase := _finished(prev, spokes))
    }
    # Failed, with runs again left: a new Job of it is placed anew, unless a
    # review declined that.
    retried, final = retrying.retries(
        [job for job in jobs if job.id not in declined],
        prevs,
        finished,
        spokes,
        default=fleet.policy.spec.retry_limit,
    )
    for job_id, retry in retried.items():
        del finished[job_id]
        prevs[job_id] = _run_again(prevs[job_id], pause=retry.pause, now=now)
    # Held by their AppWrapper's spec.suspend: not planned. One that had started
    # is stopped where it ran (its Job there is suspended, which ends its pods).
    suspended = {job.id for job in jobs if job.suspended and job.id not in finished}
    settled = finished.keys() | suspended
    groups = {name: pools.node_groups(state.nodes) for name, state in spokes.items()}
    no_node_fits = fitting.no_node_fits(jobs, groups)
    missing = fitting.merged(
        fitting.barred(jobs, {spoke.name: spoke for spoke in fleet.spokes}, fitting.beyond_quota),
        fitting.barred(jobs, spokes, fitting.lacking),
        fitting.barred(jobs, spokes, fitting.over_quota),
        fitting.barred(jobs, spokes, fitting.refused_at_admission),
        fitting.barred(jobs, spokes, fitting.too_old),
    )
    shut = {
        job.id: {**closed, **no_node_fits.get(job.id, {}), **missing.get(job.id, {})}
        for job in jobs
    }
    found = _requeues(
        jobs,
        prevs,
        settled=settled | declined.keys(),
        shut=shut,
        spokes=spokes,
        fleet=fleet,
        now=now,
    )
    for job_id, off in found.kept_off.items():
        shut[job_id] = {**shut[job_id], **off}
    for job_id in found.requeued:
        prevs[job_id] = _placed_again(prevs[job_id])
    # Planned on a spoke that went down less than the policy's spokeDownGrace
    # ago: they wait there as planned, out of this decision, so that a blip
    # does not reshuffle the queue.
    waiting = {
        job.id: wait
        for job in jobs
        if job.id not in settled
        and (wait := waits_for_spoke(job, prevs[job.id], spokes, fleet=fleet, now=now))
    }
    # Run after others (caspian.dev/after): planned once those have started,
    # from their end, and dispatched once they have succeeded.
    gates = {
        job.id: gate
        for job in jobs
        if job.after
        and job.id not in settled
        and not (prevs[job.id] is not None and prevs[job.id].phase in FIXED)
        and (
            gate := gate_of(
                job,
                previous,
                finished,
                retried,
                valid=valid,
                broken=broken_files,
                horizon=horizon,
                now=now,
            )
        )
    }
    verdicts = _Verdicts(
        finished=finished,
        final=final,
        suspended=suspended,
        shut=shut,
        requeues=found,
        waiting=waiting,
        gates=gates,
        held_by_others={job_id for job_id, gate in gates.items() if gate.held},
        # A job that others run after ends in time for them where it can.
        due=due_for_others(jobs, prevs, finished=finished, fleet=fleet, now=now),
        declined=declined,
        unplaced={
            job_id
            for job_id in declined
            if prevs[job_id] is not None and prevs[job_id].phase == Phase.PENDING
        },
        pinned={
            job_id
            for job_id in declined
            if _keeps_place(prevs[job_id], horizon=horizon, down=down, shut=shut[job_id])
        },
    )
    # Dispatched, and not running yet for a reason its spoke gives: for `explain`.
    stuck = {
        job.id: note
        for job in jobs
        if (prev := prevs[job.id]) is not None
        and job.id not in settled
        and (
            note := requeues.waits_stuck(
                job, prev, spokes, after=fleet.policy.spec.requeue_unscheduled
            )
        )
    }
    opt_jobs = [
        _optimizer_job(
            job,
            prevs[job.id],
            fleet=fleet,
            closed=shut[job.id],
            horizon=horizon,
            now=now,
            down=down,
            gate=gates.get(job.id),
            due=verdicts.due.get(job.id),
            overrunning=_overrunning(prevs[job.id], spokes, now=now),
            pinned=job.id in verdicts.pinned,
        )
        for job in jobs
        if verdicts.planned(job.id)
    ]
    # A held job on a spoke that has left the fleet holds no capacity anywhere,
    # nor does a stopped one.
    opt_jobs.extend(
        held_as_fixed([e for e in held if e.spoke in spokes and e.phase in ACTIVE], horizon)
    )
    # Where a spoke's nodes carry different taints, each set is a spoke of its own
    # to the optimizer; the plan names those pools, the ledger their spokes.
    running_as = {e.id: e.job_key for e in (*prevs.values(), *held) if e and e.job_name}
    instance = _instance(opt_jobs, fleet=fleet, spokes=spokes, forecasts=forecasts, horizon=horizon)
    instance = pools.split(instance, spokes, valid, job_keys=running_as)
    instance = within_quotas(instance, fleet)
    # Announced maintenance: no room there then for what has not started.
    maintenance = maintenance_in(fleet, horizon)
    instance = shut_for_maintenance(instance, maintenance, horizon)
    plan = planner(instance, fleet.policy.spec.solver.for_optimizer())
    qos = baselines.qos(instance)

    entries = [
        *kept,
        *held,
        *(
            _reviewed(
                _job_entry(
                    job,
                    prevs[job.id],
                    verdicts,
                    plan=plan,
                    qos=qos,
                    horizon=horizon,
                    fleet=fleet,
                    spokes=spokes,
                    down=down,
                    now=now,
                ),
                prevs[job.id],
                verdicts,
            )
            for job in jobs
        ),
        *_invalid_entries(fleet.problems),
    ]
    return Decision(
        now=now,
        window=horizon,
        ledger=Ledger(entries=tuple(sorted(entries, key=lambda e: e.id))),
        jobs=valid,
        held=tuple(sorted(entry.id for entry in held)),
        instance=instance,
        plan=plan,
        qos=qos,
        problems=fleet.problems,
        spokes=tuple(spoke.name for spoke in fleet.spokes),
        broken_spokes=fleet.broken_spokes,
        retention=fleet.policy.spec.retention,
        unschedulable=tuple(s.name for s in fleet.spokes if s.spec.unschedulable),
        closed=closed,
        no_node_fits=no_node_fits,
        missing=missing,
        requeued=found.requeued,
        kept_off=found.kept_off,
        retried=retried,
        not_retried=final,
        given_up=tuple(sorted(found.given_up)),
        stuck=stuck,
        waiting={job_id: wait.grace_from for job_id, wait in waiting.items()},
        held_after=tuple(sorted(verdicts.held_by_others)),
        runs_after={
            job_id: f"it runs after {gate.last}, so it starts no earlier than its end "
            f"{format_time(gate.after)}, and is dispatched once that has succeeded"
            for job_id, gate in gates.items()
            if gate.after is not None
        },
        spoke_down_grace=fleet.policy.spec.spoke_down_grace,
        maintenance=maintenance,
        history_url=fleet.policy.spec.history_url,
        weights=fleet.policy.spec.weights,
        carbon_sources={
            zone: forecasts[zone].provenance.describe()
            for zone in sorted(set(zones(fleet).values()))
        },
    )


def _requeues(
    jobs: list[JobRequest],
    prevs: Mapping[str, Entry | None],
    *,
    settled: Collection[str],
    shut: Mapping[str, Mapping[str, str]],
    spokes: Mapping[str, SpokeState],
    fleet: Fleet,
    now: datetime,
) -> _Requeues:
    """The dispatched jobs whose pods find no node on their spoke, are refused
    or cannot start there: each is planned again elsewhere, kept off the
    spokes it could not run on, or given up on (`requeues.requeuing`)."""
    found = _Requeues(requeued={}, tried={}, kept_off={}, given_up={})
    for job in jobs:
        prev = prevs[job.id]
        if prev is None or job.id in settled:
            continue
        requeuing = requeues.requeuing(
            job,
            prev,
            spokes=spokes,
            closed=shut[job.id],
            now=now,
            after=fleet.policy.spec.requeue_unscheduled,
            limit=fleet.policy.spec.requeue_limit,
        )
        if requeuing is None:
            continue
        found.tried[job.id] = requeuing.tried
        if requeuing.given_up is not None:
            found.given_up[job.id] = requeuing.given_up
        if requeuing.kept_off:
            found.kept_off[job.id] = requeuing.kept_off
        if requeuing.requeue is not None:
            found.requeued[job.id] = requeuing.requeue
    return found


def _instance(
    jobs: list[Job],
    *,
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    forecasts: Mapping[str, IntensitySeries],
    horizon: Window,
) -> Instance:
    """The optimizer's instance: each spoke's room per slot and its zone's forecast."""
    return Instance(
        start=horizon.start,
        slot_seconds=horizon.slot_seconds,
        slots=horizon.slots,
        spokes=tuple(
            capacity_of(spokes[s.name], s.spec.carbon.zone, horizon) for s in fleet.spokes
        ),
        intensity_g_per_kwh={zone: forecasts[zone].values for zone in set(zones(fleet).values())},
        jobs=tuple(jobs),
        weights=fleet.policy.spec.weights.for_optimizer(),
    )


def _reviewed(entry: Entry, prev: Entry | None, verdicts: _Verdicts) -> Entry:
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


def _job_entry(
    job: JobRequest,
    prev: Entry | None,
    verdicts: _Verdicts,
    *,
    plan: Plan,
    qos: Plan,
    horizon: Window,
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    down: Collection[str],
    now: datetime,
) -> Entry:
    """A valid job's new record: as it finished, held, waiting, or where the plan puts it."""
    if job.id in verdicts.finished:
        assert prev is not None  # it finished where the ledger placed it
        # Its file may be back after a removal: the record is live again. It
        # ran, so where it could not run no longer matters.
        update: dict[str, Any] = {
            "phase": verdicts.finished[job.id],
            "removed_at": None,
            "requeued_from": (),
            "finished_at": _finished_at(prev, spokes, now=now),
        }
        if job.id in verdicts.final:
            update["reason"] = f"its Job {prev.job_name} failed with {verdicts.final[job.id]}"
        return prev.model_copy(update=update)
    if job.id in verdicts.suspended:
        return _suspended_entry(job, prev, fleet=fleet, spokes=spokes, now=now)
    if job.id in verdicts.waiting:
        since = verdicts.waiting[job.id].since
        return _waiting_entry(job, prev, since=since, fleet=fleet, now=now)
    others = verdicts.held_by_others
    if job.id in others or job.id in verdicts.unplaced:  # a review's reason comes after
        recorded = _recorded(job, prev, fleet=fleet, now=now)
        tried = prev.requeued_from if prev is not None else ()
        why = verdicts.gates[job.id].held if job.id in others else ""
        pending = Entry(phase=Phase.PENDING, reason=why, **recorded)
        return pending.model_copy(update={"requeued_from": tried})
    seen = spokes[prev.spoke].jobs if prev is not None and prev.spoke in spokes else {}
    shut = verdicts.shut[job.id]
    entry = _entry(
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
    end = prev.planned_start + job.duration
    # Its start may go by while it waits: it ends no sooner than a run from now.
    earliest = max(prev.planned_start, now) + job.duration
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
    if where is None or where not in spokes:
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


def _file(source: str) -> str:
    return source.split("#", 1)[0]


def _entries_without_valid_job(
    ledger: Ledger,
    valid: Mapping[str, JobRequest],
    broken_files: set[str],
    *,
    now: datetime,
    keep_for: timedelta,
) -> tuple[list[Entry], list[Entry]]:
    """Entries whose AppWrapper is gone or broken: (kept or cancelled, held as committed).

    A job whose file is broken keeps its committed placement and record: a typo
    must not kill a running job. A job whose file is gone is cancelled, unless it
    had finished, and its record is forgotten `keep_for` after the file went. Only
    such records go: forgetting one whose AppWrapper is still in jobs/ would run
    it again.
    """
    kept, held = [], []
    for entry in ledger.entries:
        if entry.id in valid or entry.phase == Phase.INVALID:
            continue
        if entry.phase != Phase.CANCELLED and _file(entry.source) in broken_files:
            # Not removed: a job waiting or suspended keeps its record, and with
            # it when it was first seen.
            held.append(entry)
            continue
        if entry.removed_at is not None and entry.removed_at + keep_for <= now:
            continue
        # A record from before removals were stamped counts from now.
        removed_at = entry.removed_at or now
        if entry.phase == Phase.CANCELLED or entry.phase in FINISHED:
            # Removing the file of a job that has finished is tidying up, not
            # cancelling: the record says how it ended.
            kept.append(entry.model_copy(update={"removed_at": removed_at}))
        else:
            where = f" (was {entry.phase.value} on {entry.spoke})" if entry.spoke else ""
            kept.append(
                entry.model_copy(
                    update={
                        "phase": Phase.CANCELLED,
                        "reason": f"AppWrapper removed from jobs/ at {_iso(now)}{where}",
                        "removed_at": now,
                    }
                )
            )
    return kept, held


def _has_a_job_there(entry: Entry) -> bool:
    """Whether the entry's spoke holds a Job of it that must not be pruned: one
    that started, finished, or waits there suspended to resume."""
    home = entry.home is not None and entry.home == entry.spoke
    return entry.phase in FIXED or entry.phase in FINISHED or home


def _same_job(
    prev: Entry | None, job: JobRequest, spokes: Mapping[str, SpokeState]
) -> Entry | None:
    """The previous entry, as far as it is about this job. A job added again
    after it was cancelled, or whose Job was edited after it finished (to run it
    again), is new. One whose Job was edited before it finished, or that was
    placed on a spoke that has left the fleet, is to be placed again: it reads as
    waiting, first seen when it was, so that its relative deadline stays. A
    finished one keeps its record, or it would run again."""
    if prev is None or prev.phase == Phase.CANCELLED:
        return None
    if prev.template_hash != job.template_hash:
        return None if prev.phase in FINISHED else _waiting(prev)
    if prev.phase in UNFINISHED and prev.spoke not in spokes:
        return _placed_again(prev)
    return prev


def _declined(prev: Entry | None, job: JobRequest) -> Declined | None:
    """The review that declined the job's new place, while its AppWrapper asks
    what it asked then."""
    mark = prev.declined if prev is not None else None
    return mark if mark is not None and mark.ask == job.ask else None


def _keeps_place(
    prev: Entry | None, *, horizon: Window, down: Collection[str], shut: Mapping[str, str]
) -> bool:
    """Whether a planned job can be held at its place: its start is still to
    come, on a spoke that is up and open to it."""
    return (
        prev is not None
        and prev.phase == Phase.PLANNED
        and prev.spoke is not None
        and prev.planned_start is not None
        and not prev.start_went_by(horizon.start)
        and prev.spoke not in down
        and prev.spoke not in shut
    )


def _waiting(prev: Entry) -> Entry:
    """What a job to be placed anew keeps of its record: when it was first seen."""
    return Entry(id=prev.id, source=prev.source, phase=Phase.PENDING, first_seen=prev.first_seen)


def _placed_again(prev: Entry) -> Entry:
    """The same Job, to be placed on another spoke: its qos baseline stays too."""
    kept = {"qos_grams": prev.qos_grams, "retries": prev.retries, "rerun_after": prev.rerun_after}
    return _waiting(prev).model_copy(update=kept)


def _run_again(prev: Entry, *, pause: timedelta | None, now: datetime) -> Entry:
    """A failed job's next run, placed anew: no earlier than `pause` from now, as
    the AppWrapper controller pauses before it runs a workload again."""
    rerun_after = now + pause if pause else None
    return _placed_again(prev).model_copy(
        update={"retries": prev.retries + 1, "rerun_after": rerun_after}
    )


def _finished(prev: Entry | None, spokes: Mapping[str, SpokeState]) -> Phase | None:
    """Succeeded or Failed, as recorded or as the job's spoke now reports it."""
    if prev is None:
        return None
    if prev.phase in FINISHED:
        return prev.phase
    # A stopped Job may have ended before its pods did.
    if (prev.phase in FIXED or prev.stopped) and prev.spoke in spokes:
        seen = spokes[prev.spoke].jobs.get(prev.job_key)
        if seen in (Phase.SUCCEEDED.value, Phase.FAILED.value):
            return Phase(seen)
    return None


def _finished_at(
    prev: Entry, spokes: Mapping[str, SpokeState], *, now: datetime
) -> datetime | None:
    """When a finished job's Job ended, for its record: as recorded already
    (None in a record from before this was kept: it counts from its planned
    end); else as its spoke says, but not after now (a spoke's clock may run
    ahead); else now, the reconcile that first saw it finished."""
    if prev.phase in FINISHED:
        return prev.finished_at
    state = spokes.get(prev.spoke or "")
    ended = state.ended.get(prev.job_key) if state is not None else None
    return min(ended, now) if ended is not None else now


def _overrunning(prev: Entry | None, spokes: Mapping[str, SpokeState], *, now: datetime) -> bool:
    """Whether the job's spoke reports its Job still running at or past its planned
    end (the kube observer reports Jobs; declared capacity reports nothing)."""
    if prev is None or prev.spoke not in spokes or prev.planned_end is None:
        return False
    running = spokes[prev.spoke].jobs.get(prev.job_key) == Phase.RUNNING.value
    return running and prev.planned_end <= now


def _is_fixed(
    prev: Entry | None,
    *,
    horizon: Window,
    now: datetime,
    down: Collection[str],
    gate: Gate | None = None,
) -> bool:
    """Started, or to start now: planned for the slot `now` is in, on a spoke
    that is not `down` (nothing would reach it), with every job it runs after
    (`gate`) succeeded. A planned job whose slot went by with no reconcile to
    dispatch it (the remote or Caspian down) never started: it is planned
    again, or it would start now held to a place in the past, and hold no room
    for the hours it runs."""
    if prev is None or prev.planned_start is None:
        return False
    return prev.phase in FIXED or (
        prev.phase == Phase.PLANNED
        and prev.planned_start <= now
        and not prev.start_went_by(horizon.start)
        and prev.spoke not in down
        and (gate is None or gate.done)
    )


def _optimizer_job(
    job: JobRequest,
    prev: Entry | None,
    *,
    fleet: Fleet,
    closed: Mapping[str, str],
    horizon: Window,
    now: datetime,
    down: Collection[str],
    gate: Gate | None,
    due: datetime | None = None,
    overrunning: bool = False,
    pinned: bool = False,
) -> Job:
    first_seen = prev.first_seen if prev and prev.first_seen else now
    deadline = effective_deadline(job, first_seen=first_seen, fleet=fleet)
    if due is not None:
        deadline = min(deadline, due)
    energy = {
        spoke.name: kwh_per_slot(job, spoke=spoke, slot_seconds=horizon.slot_seconds)
        for spoke in fleet.spokes
    }
    fixed = previous = None
    if _is_fixed(prev, horizon=horizon, now=now, down=down, gate=gate):
        fixed = Slot(spoke=prev.pool or prev.spoke, start_slot=horizon.slot_of(prev.planned_start))
    elif (
        prev is not None
        and prev.phase == Phase.PLANNED
        and prev.planned_start is not None
        and not prev.start_went_by(horizon.start)
    ):
        previous = Slot(
            spoke=prev.pool or prev.spoke, start_slot=horizon.slot_of(prev.planned_start)
        )
        if pinned:  # its move was declined in a review
            fixed, previous = previous, None
    duration = horizon.slots_in(job.duration)
    if fixed is not None and overrunning:
        # A Job runs as long as it runs, not as long as its annotation says. One
        # still running past its planned end holds its room through the next
        # slot, and again at every reconcile until it ends, so that nothing more
        # is planned on top of it.
        duration = max(duration, horizon.slot_of(now) + 2 - fixed.start_slot)
    # Its caspian.dev/not-before, a run again's pause after the failure, and
    # the end of the jobs it runs after.
    after = gate.after if gate else None
    earliest = [t for t in (job.not_before, prev.rerun_after if prev else None, after) if t]
    release = _release_slot(max(earliest), horizon) if earliest else 0
    return Job(
        id=job.id,
        cpu=job.cpu,
        memory_bytes=job.memory_bytes,
        gpu=job.gpu,
        duration_slots=duration,
        release_slot=release,
        # A deadline already past makes every start equally late in all but its
        # end: counted from now, so that lateness from a year ago does not outweigh
        # the cost of leaving the job unplaced, and it runs as soon as it can.
        deadline_slot=max(0, horizon.slot_of(deadline)),
        # A fixed job keeps its place on a closed spoke: fixed jobs are not
        # held to their allowed spokes.
        allowed_spokes=_open_spokes(job, prev, closed=closed),
        energy_kwh_per_slot=energy,
        fixed=fixed,
        previous=previous,
        lateness_weight=fleet.policy.spec.weights.of(job.priority_class),
    )


def _release_slot(moment: datetime, horizon: Window) -> int:
    """The first slot that starts at or after `moment`."""
    return max(0, math.ceil((moment - horizon.start).total_seconds() / horizon.slot_seconds))


def _open_spokes(
    job: JobRequest, prev: Entry | None, *, closed: Mapping[str, str]
) -> tuple[str, ...]:
    """The spokes a job may be planned on now. One resumed after its AppWrapper
    stopped it goes back where its Job is, as Kubernetes resumes a Job: what it
    counted is there (an Indexed Job's completed indexes), and often its data;
    only where that spoke is closed to it does it go elsewhere."""
    allowed = tuple(s for s in job.allowed_spokes if s not in closed)
    home = prev.home if prev is not None else None
    return (home,) if home in allowed else allowed


def kwh_per_slot(job: JobRequest, *, spoke: Spoke, slot_seconds: int) -> float:
    """Facility energy of one slot of `job` on `spoke`: its declared power, or the
    spoke's power model of its requests, times the spoke's PUE."""
    watts = job.power_watts or spoke.it_watts(
        cpu=job.cpu, memory_bytes=job.memory_bytes, gpu=job.gpu
    )
    return watts * spoke.spec.power.pue * slot_seconds / 3600 / 1000


def _entry(
    job: JobRequest,
    prev: Entry | None,
    *,
    plan: Plan,
    qos: Plan,
    horizon: Window,
    fleet: Fleet,
    now: datetime,
    spokes_seen: Mapping[str, str],
    down: Collection[str],
    gate: Gate | None,
    own_deadline_only: bool = False,
) -> Entry:
    common = _recorded(job, prev, fleet=fleet, now=now)
    assignment = plan.assignment(job.id)
    if assignment is None:
        reason = next(n.reason for n in plan.not_placed if n.id == job.id)
        # Held back by its pause, not by its caspian.dev/not-before.
        paused = common["rerun_after"]
        held_back = paused is not None and paused >= (job.not_before or paused)
        if held_back and _release_slot(paused, horizon) >= horizon.slots:
            reason = (
                f"deferred: its run again waits until {format_time(paused)} (its AppWrapper's "
                "retryPausePeriodDuration after the failure), beyond the planning horizon"
            )
        if gate is not None and gate.after and _release_slot(gate.after, horizon) >= horizon.slots:
            reason = (
                f"deferred: it runs after {gate.last}, which ends {format_time(gate.after)} "
                "(its caspian.dev/after), beyond the planning horizon"
            )
        return Entry(phase=Phase.PENDING, reason=reason, **common)
    spoke = pools.spoke_of(assignment.spoke)
    start = horizon.time_of(assignment.start_slot)
    fixed = _is_fixed(prev, horizon=horizon, now=now, down=down, gate=gate)
    if fixed:
        start = prev.planned_start
    unchanged = (
        prev is not None
        and prev.phase in ACTIVE
        and (prev.spoke, prev.planned_start) == (spoke, start)
    )
    estimated = (
        prev.estimated_grams
        if unchanged and prev.estimated_grams is not None
        else round(assignment.carbon_g, 1)
    )
    qos_assignment = qos.assignment(job.id)
    qos_grams = (
        prev.qos_grams
        if prev is not None and prev.qos_grams is not None
        else (round(qos_assignment.carbon_g, 1) if qos_assignment else None)
    )
    late = prev.late if fixed else assignment.late_slots > 0
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
    if fixed and Phase.RUNNING in (prev.phase, spokes_seen.get(prev.job_key)):
        phase = Phase.RUNNING
    return Entry(
        phase=phase,
        spoke=spoke,
        pool=assignment.spoke if assignment.spoke != spoke else None,
        planned_start=start,
        planned_end=start + job.duration,
        estimated_grams=estimated,
        qos_grams=qos_grams,
        late=late,
        reason=reason,
        **common,
    )


def _closed_spokes(fleet: Fleet, spokes: Mapping[str, SpokeState]) -> dict[str, str]:
    """The spokes that take no new work, each with why: a file that does not load,
    down, or unschedulable."""
    closed = {}
    for name, file in fleet.broken_spokes.items():
        closed[name] = f"{file} does not load; fix it"
    for spoke in fleet.spokes:
        state = spokes[spoke.name]
        if not state.up:
            closed[spoke.name] = f"down: {state.reason}" if state.reason else "down"
        elif spoke.spec.unschedulable:
            closed[spoke.name] = f"unschedulable in spokes/{spoke.name}.yaml"
    return closed


def _blame_closed_spokes(entry: Entry, job: JobRequest, closed: Mapping[str, str]) -> Entry:
    """A job left unplaced because every spoke it may use is down, unschedulable or
    without a node big enough says so: the optimizer sees such a spoke only as one
    with no room, and would blame the job's size."""
    allowed = list(job.allowed_spokes)
    if entry.phase != Phase.PENDING or not allowed or any(s not in closed for s in allowed):
        return entry
    why = "; ".join(f"{name} ({closed[name]})" for name in allowed)
    return entry.model_copy(update={"reason": f"no spoke it may use can take it: {why}"})


def _resuming(
    entry: Entry, prev: Entry | None, *, job: JobRequest, closed: Mapping[str, str]
) -> Entry:
    """A resumed job planned where its Job waits remembers that spoke until it is
    dispatched. One with no room there yet stays as it is, suspended there, and
    says why: left Pending, its Job would leave the spoke, and with it what it
    counted."""
    home = prev.home if prev is not None else None
    if home is None or home not in _open_spokes(job, prev, closed=closed):
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
    later = rerun_after is not None and rerun_after > max(now, job.not_before or now)
    if later and rerun_after + job.duration > deadline:
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


def _invalid_entries(problems: tuple[Problem, ...]) -> list[Entry]:
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


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
