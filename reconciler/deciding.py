"""decide: what should run where and when. Pure: no clock, no environment, no I/O.

Inputs are the fleet (one commit), the previous ledger, what each spoke has free,
the intensity forecasts and `now`; the output is a `Decision` holding the new
ledger. The same inputs give the same Decision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from carbon import IntensitySeries
from optimizer import baselines, keeping
from optimizer.model import Instance, Job, Plan, SolverSettings
from optimizer.solving import optimize
from reconciler import arrivals, emissions, fitting, pools, requeues, retrying
from reconciler.chains import due_for_others, gate_of, gates_moved
from reconciler.decisions import Decision, Retry, SpokeState, Window, spoke_state
from reconciler.fleet import Fleet, JobRequest, Span
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
from reconciler.optimizerjobs import optimizer_job
from reconciler.quantities import format_time
from reconciler.records import Requeues, Verdicts, invalid_entries, job_entry, reviewed
from reconciler.spokedown import waits_for_spoke
from reconciler.spokeroom import (
    barred_in,
    barred_now,
    capacity_of,
    closed_to_starts,
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
    remembered: str | None = None,
    proposal: Ledger | None = None,
    measured: Mapping[str, IntensitySeries] | None = None,
) -> Decision:
    """What to place where and when, from what the fleet repo asks, what the
    spokes report, the forecasts and `now`. `measured` holds each zone's
    intensity over the time just gone, as its source measured it: what the
    runs that ended emitted is counted on it (reconciler/emissions.py).
    `remembered` is the digest of the problem a decision before this one
    answered (`Decision.answers`), as the mirror keeps it: the ledger has it
    only where a record changed.
    `proposal` is the ledger of an open proposal (pull-request mode): the
    plan under review, which the decision starts from as it would from
    main's, so that a review is not pushed over by a search that ended
    elsewhere. A job that runs after another
    (caspian.dev/after) is planned once that one has started, and held again
    should it stop: where this decision changes what such a job waits on
    (dispatches the other, say, or suspends it), the jobs are decided again
    over the same inputs, until nothing they wait on changes, so that a
    reconcile right after commits nothing more."""

    def once(ledger: Ledger) -> Decision:
        return _decide(
            fleet=fleet,
            ledger=ledger,
            spokes=spokes,
            forecasts=forecasts,
            now=now,
            planner=planner,
            remembered=remembered,
            proposal=proposal,
            measured=measured or {},
        )

    decision = once(ledger)
    # A chain is as long as the jobs at most: each pass carries it a step.
    for _ in range(len(fleet.jobs)):
        if not gates_moved(fleet.jobs, ledger.by_id(), decision.ledger.by_id()):
            break
        ledger, earlier = decision.ledger, decision
        decision = once(ledger)
        # What happened in an earlier pass (a requeue, a run again) is this
        # decision's too.
        decision = decision.model_copy(
            update={
                "requeued": {**earlier.requeued, **decision.requeued},
                "retried": {**earlier.retried, **decision.retried},
                "not_retried": {**earlier.not_retried, **decision.not_retried},
            }
        )
    return decision


class _Reading(NamedTuple):
    """Step one of `_decide`: what the records say of each job now, before
    any spoke is judged. Keyed by job id."""

    horizon: Window
    valid: dict[str, JobRequest]  # every job whose AppWrapper loads
    broken_files: set[str]  # the AppWrapper files that do not load
    closed: dict[str, str]  # spokes that take no new work now, with why
    down: set[str]  # spokes whose API did not answer: nothing is dispatched there
    # Each spoke's times in the horizon when its sync windows bar Argo CD
    # from syncing it: nothing is planned to start there then.
    barred: dict[str, tuple[Span, ...]]
    jobs: list[JobRequest]  # those this decision places: not those staying on a broken spoke
    previous: dict[str, Entry]  # the ledger's records of them
    # Each job's record as it stands now: run again where its Job failed
    # with runs left, placed again where it could not run (`_judge`).
    prevs: dict[str, Entry | None]
    kept: list[Entry]  # records of AppWrappers removed: cancelled, or kept as they ended
    held: list[Entry]  # records held as committed: a broken file, a broken spoke
    under_review: dict[str, Entry]  # an open proposal's records
    declined: dict[str, Declined]  # new places a review said no to
    finished: dict[str, Phase]
    retried: dict[str, Retry]
    final: dict[str, str]  # failed with no runs again left, with what
    left: dict[str, str]  # taken for failed, their Job gone from their spoke (or suspended): why
    suspended: set[str]  # held by their AppWrapper's spec.suspend
    phase_before: dict[str, Phase]  # each record's phase before this decision's requeues
    answered: str | None  # the digest of the problem main's ledger answered
    recorded: tuple[Entry, ...]  # main's records as they were

    @property
    def barred_now(self) -> frozenset[str]:
        """The spokes whose sync windows bar syncing them in this slot: a job
        planned to start there now is planned again, as on one that is down."""
        return barred_now(self.barred, self.horizon)

    @property
    def settled(self) -> set[str]:
        return self.finished.keys() | self.suspended


class _Judged(NamedTuple):
    """Step two of `_decide`: where each job may go now, and what holds the
    jobs the optimizer does not place. Keyed by job id."""

    verdicts: Verdicts
    prevs: dict[str, Entry | None]  # `_Reading.prevs`, with the requeued jobs placed again
    no_node_fits: dict[str, dict[str, str]]
    missing: dict[str, dict[str, str]]
    stuck: dict[str, str]  # dispatched, and not running for a reason its spoke gives


def _decide(
    *,
    fleet: Fleet,
    ledger: Ledger,
    spokes: Mapping[str, SpokeState],
    forecasts: Mapping[str, IntensitySeries],
    now: datetime,
    planner: Planner,
    remembered: str | None,
    proposal: Ledger | None,
    measured: Mapping[str, IntensitySeries],
) -> Decision:
    """One pass of `decide`, in steps: what each job's record says now
    (`_read`: finished, run again, suspended), where each may go and what
    holds the others (`_judge`: the spokes shut to it, requeues, the jobs that
    wait for a spoke that went down or for others), the optimizer's plan for
    the rest (`_optimizer_instance`, `_plan`), and each job's new record
    (`_records`)."""
    reading = _read(fleet=fleet, ledger=ledger, spokes=spokes, now=now, proposal=proposal)
    judged = _judge(reading, fleet=fleet, spokes=spokes, now=now)
    verdicts, horizon = judged.verdicts, reading.horizon
    # An open proposal's new places are the plan under review: the optimizer
    # starts from them as from main's, and moving a job from one costs.
    offered = _offered(
        reading.under_review, reading.jobs, spokes=spokes, declined=reading.declined.keys()
    )
    # Announced maintenance: no room there then for what has not started.
    maintenance = maintenance_in(fleet, horizon)
    instance = _optimizer_instance(
        reading,
        judged,
        offered=offered,
        maintenance=maintenance,
        barred=reading.barred,
        fleet=fleet,
        spokes=spokes,
        forecasts=forecasts,
        now=now,
    )
    settings = fleet.policy.spec.solver.for_optimizer()
    # The Jobs an open proposal dispatches (to start now, once merged).
    dispatching = {
        job_id for job_id in offered if reading.under_review[job_id].phase == Phase.DISPATCHED
    }
    plan = _plan(
        instance,
        settings,
        answered=[
            digest
            for digest in (reading.answered, remembered, proposal.problem if proposal else None)
            if digest is not None
        ],
        dispatching=dispatching if proposal else None,
        planner=planner,
    )
    records = _records(
        reading,
        judged,
        instance=instance,
        plan=plan,
        offered=offered,
        fleet=fleet,
        spokes=spokes,
        now=now,
    )
    records = emissions.counted(
        records,
        before=reading.previous,
        jobs=reading.valid,
        fleet=fleet,
        spokes=spokes,
        measured=measured,
        now=now,
        left=reading.left,
    )
    records = _marked_gone(records, before=reading.previous, spokes=spokes, now=now)
    answers = _answers(instance, plan, settings, records)
    # A new digest alone commits nothing: where no record changed (the next
    # slot, nothing moved), the ledger keeps the last, main's or the open
    # proposal's, which is not pushed again for it.
    problem: str | None = answers
    if records == reading.recorded:
        problem = reading.answered
    elif proposal is not None and records == proposal.entries:
        problem = proposal.problem
    return Decision(
        now=now,
        window=horizon,
        ledger=Ledger(
            problem=problem,
            unsynced={
                name: state.unsynced
                for name, state in sorted(spokes.items())
                if state.unsynced is not None
            },
            entries=records,
        ),
        answers=answers,
        jobs=reading.valid,
        held=tuple(sorted(entry.id for entry in reading.held)),
        instance=instance,
        plan=plan,
        problems=fleet.problems,
        spokes=tuple(spoke.name for spoke in fleet.spokes),
        broken_spokes=fleet.broken_spokes,
        retention=fleet.policy.spec.retention,
        unschedulable=tuple(s.name for s in fleet.spokes if s.spec.unschedulable),
        closed=reading.closed,
        no_node_fits=judged.no_node_fits,
        missing=judged.missing,
        unchecked=fitting.barred(
            reading.jobs, {name: s for name, s in spokes.items() if s.unread}, fitting.unchecked
        ),
        held_back=_held_back(records, spokes),
        requeued=verdicts.requeues.requeued,
        kept_off=verdicts.requeues.kept_off,
        retried=reading.retried,
        not_retried=reading.final,
        left=reading.left,
        given_up=tuple(sorted(verdicts.requeues.given_up)),
        stuck=judged.stuck,
        waiting={job_id: wait.grace_from for job_id, wait in verdicts.waiting.items()},
        held_after=tuple(sorted(verdicts.held_by_others)),
        runs_after={
            job_id: f"it runs after {gate.last}, so it starts no earlier than its end "
            f"{format_time(gate.after)}, and is dispatched once that has succeeded"
            for job_id, gate in verdicts.gates.items()
            if gate.after is not None
        },
        spoke_down_grace=fleet.policy.spec.spoke_down_grace,
        maintenance=maintenance,
        sync_barred=reading.barred,
        history_url=fleet.policy.spec.history_url,
        weights=fleet.policy.spec.weights,
        carbon_sources={
            zone: forecasts[zone].provenance.describe()
            for zone in sorted(set(zones(fleet).values()))
        },
    )


def _read(
    *,
    fleet: Fleet,
    ledger: Ledger,
    spokes: Mapping[str, SpokeState],
    now: datetime,
    proposal: Ledger | None,
) -> _Reading:
    """What the records say of each job now: finished, failed and run again,
    suspended, its file gone or broken, its new place declined in review."""
    broken_files = {_file(problem.file) for problem in fleet.problems}
    valid = {job.id: job for job in fleet.jobs}
    # What was placed on a spoke whose file does not load stays as committed, and
    # out of this decision: nothing there can be observed or priced.
    stay = [e for e in ledger.entries if e.spoke in fleet.broken_spokes and _has_a_job_there(e)]
    staying = {e.id for e in stay}
    answered, recorded = ledger.problem, ledger.entries
    ledger = Ledger(entries=tuple(e for e in ledger.entries if e.id not in staying))
    jobs = [job for job in fleet.jobs if job.id not in staying]
    previous = ledger.by_id()
    kept, held = _entries_without_valid_job(
        ledger, valid, broken_files, now=now, keep_for=fleet.policy.spec.ledger_retention
    )
    under_review = proposal.by_id() if proposal else {}
    prevs = {
        job.id: _same_job(previous.get(job.id), job, spokes) or _seen(under_review.get(job.id))
        for job in jobs
    }
    declined = {job.id: mark for job in jobs if (mark := _declined(prevs[job.id], job))}
    # Running, and their Job gone from their spoke, suspended there or with
    # no node left for its pods: taken for failed. One its AppWrapper holds
    # now is recorded as held instead.
    holding = {job.id for job in jobs if job.suspended}
    after = fleet.policy.spec.requeue_unscheduled
    left = {
        job_id: why
        for job_id, prev in prevs.items()
        if job_id not in holding and (why := arrivals.left(prev, spokes, now=now, after=after))
    }
    finished = {
        job_id: phase
        for job_id, prev in prevs.items()
        if (phase := Phase.FAILED if job_id in left else _finished(prev, spokes))
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
        failed = prevs[job_id]
        assert failed is not None  # it failed where the ledger placed it
        prevs[job_id] = _run_again(failed, pause=retry.pause, now=now)
    # A job not yet running whose Job a spoke runs already is held as started there.
    for job in jobs:
        started = _started_undispatched(prevs[job.id], job, spokes, now=now)
        if started is not None:
            prevs[job.id] = started
    horizon = window(fleet, now=now)
    return _Reading(
        horizon=horizon,
        valid=valid,
        broken_files=broken_files,
        closed=_closed_spokes(fleet, spokes),
        down={name for name, state in spokes.items() if not state.up},
        barred=barred_in(spokes, horizon),
        jobs=jobs,
        previous=previous,
        prevs=prevs,
        kept=kept,
        held=held + stay,
        under_review=under_review,
        declined=declined,
        finished=finished,
        retried=retried,
        final=final,
        left=left,
        # Held by their AppWrapper's spec.suspend: not planned. One that had
        # started is stopped where it ran (its Job there is suspended, which
        # ends its pods).
        suspended={job.id for job in jobs if job.suspended and job.id not in finished},
        phase_before={job_id: prev.phase for job_id, prev in prevs.items() if prev is not None},
        answered=answered,
        recorded=recorded,
    )


def _judge(
    reading: _Reading, *, fleet: Fleet, spokes: Mapping[str, SpokeState], now: datetime
) -> _Judged:
    """The spokes each job may not go to now, and why; the requeues; the jobs
    that wait (for a spoke that went down, for others) or that a review holds."""
    jobs, settled, horizon = reading.jobs, reading.settled, reading.horizon
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
        job.id: {**reading.closed, **no_node_fits.get(job.id, {}), **missing.get(job.id, {})}
        for job in jobs
    }
    prevs = dict(reading.prevs)
    found = _requeues(
        jobs,
        prevs,
        settled=settled | reading.declined.keys(),
        shut=shut,
        spokes=spokes,
        fleet=fleet,
        now=now,
    )
    for job_id, off in found.kept_off.items():
        shut[job_id] = {**shut[job_id], **off}
    for job_id in found.requeued:
        could_not_run = prevs[job_id]
        assert could_not_run is not None  # it could not run where the ledger placed it
        prevs[job_id] = _placed_again(could_not_run)
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
        and reading.phase_before.get(job.id) not in FIXED
        and (
            gate := gate_of(
                job,
                reading.previous,
                reading.finished,
                reading.retried,
                valid=reading.valid,
                broken=reading.broken_files,
                horizon=horizon,
                now=now,
            )
        )
    }
    declined = reading.declined
    verdicts = Verdicts(
        finished=reading.finished,
        final=reading.final,
        left=reading.left,
        suspended=reading.suspended,
        shut=shut,
        requeues=found,
        waiting=waiting,
        gates=gates,
        held_by_others={job_id for job_id, gate in gates.items() if gate.held},
        # A job that others run after ends in time for them where it can.
        due=due_for_others(jobs, prevs, finished=reading.finished, fleet=fleet, now=now),
        declined=declined,
        unplaced={
            job_id for job_id in declined if reading.phase_before.get(job_id) == Phase.PENDING
        },
        pinned={
            job_id
            for job_id in declined
            if _keeps_place(prevs[job_id], horizon=horizon, down=reading.down, shut=shut[job_id])
        },
    )
    # Dispatched, and not running yet for a reason its spoke gives, or running
    # and its pods without a node: for `explain`.
    after = fleet.policy.spec.requeue_unscheduled
    stuck = {
        job.id: note
        for job in jobs
        if (prev := prevs[job.id]) is not None
        and job.id not in settled
        and (
            note := requeues.waits_stuck(job, prev, spokes, after=after)
            or arrivals.lost_node(prev, spokes, after=after)
        )
    }
    return _Judged(
        verdicts=verdicts, prevs=prevs, no_node_fits=no_node_fits, missing=missing, stuck=stuck
    )


def _optimizer_instance(
    reading: _Reading,
    judged: _Judged,
    *,
    offered: Mapping[str, Entry],
    maintenance: Mapping[str, tuple[Span, ...]],
    barred: Mapping[str, tuple[Span, ...]],
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    forecasts: Mapping[str, IntensitySeries],
    now: datetime,
) -> Instance:
    """The optimizer's instance: the jobs it places, with their records and
    verdicts, beside the work held where it is, in each spoke's room less
    its `maintenance`, with no start where Argo CD's sync windows bar it."""
    verdicts, prevs, horizon = judged.verdicts, judged.prevs, reading.horizon
    opt_jobs = [
        optimizer_job(
            job,
            prevs[job.id],
            fleet=fleet,
            closed=verdicts.shut[job.id],
            horizon=horizon,
            now=now,
            down=reading.down | reading.barred_now,
            gate=verdicts.gates.get(job.id),
            due=verdicts.due.get(job.id),
            overrunning=_overrunning(prevs[job.id], spokes, now=now),
            pinned=job.id in verdicts.pinned,
            offered=offered.get(job.id),
        )
        for job in reading.jobs
        if verdicts.planned(job.id)
    ]
    # A held job on a spoke that has left the fleet holds no capacity anywhere,
    # nor does a stopped one.
    held = reading.held
    opt_jobs.extend(
        held_as_fixed([e for e in held if e.spoke in spokes and e.phase in ACTIVE], horizon)
    )
    # Where a spoke's nodes carry different taints, each set is a spoke of its own
    # to the optimizer; the plan names those pools, the ledger their spokes.
    running_as = {e.id: e.job_key for e in (*prevs.values(), *held) if e and e.job_name}
    instance = _instance(opt_jobs, fleet=fleet, spokes=spokes, forecasts=forecasts, horizon=horizon)
    instance = pools.split(instance, spokes, reading.valid, job_keys=running_as)
    instance = within_quotas(instance, fleet)
    instance = shut_for_maintenance(instance, maintenance, horizon)
    return closed_to_starts(instance, barred, horizon)


def _records(
    reading: _Reading,
    judged: _Judged,
    *,
    instance: Instance,
    plan: Plan,
    offered: Mapping[str, Entry],
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    now: datetime,
) -> tuple[Entry, ...]:
    """The new ledger's records, by job id: each job's from its verdicts and
    the plan, beside those kept or held as they are and those of the files
    that do not load."""
    verdicts, prevs = judged.verdicts, judged.prevs
    # At 5000 jobs the baseline takes over a second, and only a job planned
    # for the first time needs it.
    qos = functools.cache(lambda: baselines.qos(instance))
    entries = [
        *reading.kept,
        *reading.held,
        *(
            reviewed(
                job_entry(
                    job,
                    prevs[job.id],
                    verdicts,
                    plan=plan,
                    qos=qos,
                    horizon=reading.horizon,
                    fleet=fleet,
                    spokes=spokes,
                    down=reading.down | reading.barred_now,
                    now=now,
                    offered=offered.get(job.id),
                ),
                prevs[job.id],
                verdicts,
            )
            for job in reading.jobs
        ),
        *invalid_entries(fleet.problems),
    ]
    return tuple(sorted(entries, key=lambda e: e.id))


def _marked_gone(
    records: Iterable[Entry],
    *,
    before: Mapping[str, Entry],
    spokes: Mapping[str, SpokeState],
    now: datetime,
) -> tuple[Entry, ...]:
    """`records`, each running job's saying since when its Job has been
    missing from its spoke (arrivals.gone_since)."""
    marked = []
    for entry in records:
        gone = arrivals.gone_since(entry, before.get(entry.id), spokes, now=now)
        marked.append(
            entry if gone == entry.gone_since else entry.model_copy(update={"gone_since": gone})
        )
    return tuple(marked)


def _requeues(
    jobs: list[JobRequest],
    prevs: Mapping[str, Entry | None],
    *,
    settled: Collection[str],
    shut: Mapping[str, Mapping[str, str]],
    spokes: Mapping[str, SpokeState],
    fleet: Fleet,
    now: datetime,
) -> Requeues:
    """The dispatched jobs whose pods find no node on their spoke, are refused
    or cannot start there: each is planned again elsewhere, kept off the
    spokes it could not run on, or given up on (`requeues.requeuing`)."""
    found = Requeues(requeued={}, tried={}, kept_off={}, given_up={})
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


def _plan(
    instance: Instance,
    settings: SolverSettings,
    *,
    answered: Collection[str],
    dispatching: Collection[str] | None,
    planner: Planner,
) -> Plan:
    """The last plan, where `instance` is the problem it answered (one of
    `answered`, digests: a reconcile right after the last, a push that changed
    nothing here); else the planner's. Solved again, a search cut off by its
    time limit may end elsewhere, and move jobs though nothing changed. In
    pull-request mode (`dispatching`: the Jobs an open proposal dispatches,
    which the digest of its problem has fixed, as they would be once merged)
    the plan under review is kept where keeping it answers one of them."""
    digest = keeping.digest(instance, settings)
    if digest in answered or dispatching is not None:
        last = keeping.kept_plan(instance, settings=settings)
        if last is not None and (
            digest in answered
            or _digest_as_answered(instance, last, settings, started=dispatching or ()) in answered
        ):
            return last
    return planner(instance, settings)


def _held_back(records: Iterable[Entry], spokes: Mapping[str, SpokeState]) -> tuple[str, ...]:
    """The dispatched jobs whose Job their spoke's sync windows hold back now."""
    return tuple(
        sorted(
            entry.id
            for entry in records
            if entry.phase == Phase.DISPATCHED
            and (state := spokes.get(entry.spoke or "")) is not None
            and entry.job_key in state.held_back
        )
    )


def _offered(
    under_review: Mapping[str, Entry],
    jobs: list[JobRequest],
    *,
    spokes: Mapping[str, SpokeState],
    declined: Collection[str],
) -> dict[str, Entry]:
    """The records of an open proposal (`under_review`, by job id) that place
    a job, as plans: one that dispatches a Job plans to start it then, until
    the proposal is merged. Only of a job as its AppWrapper asks now, on a
    spoke still in the fleet, and not of one a review declined: the place it
    was offered is the one the reviewer said no to."""
    return {
        job.id: entry.model_copy(update={"phase": Phase.PLANNED})
        for job in jobs
        if (entry := under_review.get(job.id)) is not None
        and job.id not in declined
        and entry.phase in (Phase.PLANNED, Phase.DISPATCHED)
        and entry.template_hash == job.template_hash
        and entry.spoke in spokes
    }


def _answers(
    instance: Instance, plan: Plan, settings: SolverSettings, records: Collection[Entry]
) -> str:
    """The digest of the problem `plan` answers, as the next reconcile meets
    it where nothing changes: each job where the plan put it, fixed there
    where its record says it was dispatched now."""
    dispatched = {e.id for e in records if e.phase in FIXED}
    return _digest_as_answered(instance, plan, settings, started=dispatched)


def _digest_as_answered(
    instance: Instance, plan: Plan, settings: SolverSettings, *, started: Collection[str]
) -> str:
    return keeping.digest(keeping.as_answered(instance, plan, started=started), settings)


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
    holds = {job.source: job_id for job_id, job in valid.items()}
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
            # A new name or namespace is a new job: say so, or the reviewer
            # reads that a file still in jobs/ was removed.
            renamed = holds.get(entry.source)
            gone = (
                f"AppWrapper renamed to {renamed} in {entry.source}, a new job,"
                if renamed is not None
                else "AppWrapper removed from jobs/"
            )
            kept.append(
                entry.model_copy(
                    update={
                        "phase": Phase.CANCELLED,
                        "reason": f"{gone} at {_iso(now)}{where}",
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


# What a proposal records of a job it places, or cannot place yet.
UNDER_REVIEW = (Phase.PENDING, Phase.PLANNED, Phase.DISPATCHED)


def _seen(proposed: Entry | None) -> Entry | None:
    """Of a job main has no record of, its record in an open proposal: it
    waits for review, and was first seen when that was made. So its relative
    deadline counts from then, not from each reconcile until the merge, and
    the carbon-blind estimate its record compares with stays the one of then,
    as for a job main holds."""
    if proposed is None or proposed.first_seen is None or proposed.phase not in UNDER_REVIEW:
        return None
    return _waiting(proposed).model_copy(update=_baseline(proposed))


def _waiting(prev: Entry) -> Entry:
    """What a job to be placed anew keeps of its record: when it was first seen."""
    return Entry(id=prev.id, source=prev.source, phase=Phase.PENDING, first_seen=prev.first_seen)


def _placed_again(prev: Entry) -> Entry:
    """The same Job, to be placed on another spoke: its qos baseline stays too."""
    kept = {**_baseline(prev), "retries": prev.retries, "rerun_after": prev.rerun_after}
    return _waiting(prev).model_copy(update=kept)


def _baseline(prev: Entry) -> dict[str, object]:
    """The qos baseline a record keeps from when it was first planned."""
    return {"qos_grams": prev.qos_grams, "qos_spoke": prev.qos_spoke, "qos_start": prev.qos_start}


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
    # A stopped Job may have ended before its pods did. A planned one may have
    # been resumed by hand and run: a finished Job does not run again, so
    # dispatching it would only have the next reconcile find it finished.
    state = spoke_state(prev, spokes)
    if (prev.phase in (*FIXED, Phase.PLANNED) or prev.stopped) and state is not None:
        seen = state.jobs.get(prev.job_key)
        if seen in (Phase.SUCCEEDED.value, Phase.FAILED.value):
            return Phase(seen)
    return None


def _started_undispatched(
    prev: Entry | None, job: JobRequest, spokes: Mapping[str, SpokeState], *, now: datetime
) -> Entry | None:
    """A job not yet running whose Job a spoke it may use reports running, as
    started there: running from when its Job began, or from now where the
    spoke does not say. Its planned spoke, where its Job was resumed before
    Caspian dispatched it (by hand, with Argo CD's self-heal off, say); or
    another, where a Job of it from before runs still (left there by a
    requeue and not pruned, as on a spoke Argo CD no longer syncs), which the
    next decision would find running. It holds its room where it runs, and is
    rendered resumed: left suspended in git, Argo CD would suspend it again
    at the next sync, which ends its pods, and the plan could move it. None
    where that is not so."""
    if prev is None or prev.phase not in (Phase.PLANNED, Phase.DISPATCHED, Phase.PENDING):
        return None
    own = spoke_state(prev, spokes)
    if own is not None and own.jobs.get(prev.job_key) == Phase.RUNNING.value:
        if prev.phase == Phase.DISPATCHED:
            return None  # as dispatched: the decision finds it running
        where = own
    else:
        running = [
            state
            for name in job.allowed_spokes
            if (state := spokes.get(name)) is not None
            and state.up
            and state.jobs.get(prev.job_key) == Phase.RUNNING.value
        ]
        if not running:
            return None
        where = min(running, key=lambda state: (state.started.get(prev.job_key, now), state.name))
    # Not after now: a spoke's clock may run ahead.
    start = min(where.started.get(prev.job_key, now), now)
    end = start + job.duration
    late = prev.deadline is not None and end > prev.deadline
    reason = ""
    if late:
        assert prev.deadline is not None
        how = "before Caspian dispatched it" if where is own else "from before, not pruned"
        reason = (
            f"will finish after its deadline: its Job started on {where.name} "
            f"{format_time(start)}, {how}, so it ends {format_time(end)}, after its "
            f"deadline {format_time(prev.deadline)}"
        )
    return prev.model_copy(
        update={
            "phase": Phase.RUNNING,
            "spoke": where.name,
            # The pool its pods run in is read where it runs (reconciler/pools.py).
            "pool": prev.pool if where.name == prev.spoke else None,
            "planned_start": start,
            "planned_end": end,
            # The plan's estimate was for its planned slot: the decision
            # estimates where it runs.
            "estimated_grams": None,
            "late": late,
            "reason": reason,
            "resumes_on": None,
        }
    )


def _overrunning(prev: Entry | None, spokes: Mapping[str, SpokeState], *, now: datetime) -> bool:
    """Whether the job's spoke reports its Job still running at or past its planned
    end (the kube observer reports Jobs; declared capacity reports nothing)."""
    state = spoke_state(prev, spokes)
    if prev is None or state is None or prev.planned_end is None:
        return False
    running = state.jobs.get(prev.job_key) == Phase.RUNNING.value
    return running and prev.planned_end <= now


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


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
