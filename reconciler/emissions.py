"""The carbon a job's runs emitted, counted when each run ends. Pure.

A plan's estimate prices the duration its AppWrapper gives at the intensity
forecast then. What a run emitted is another figure: the energy the spoke's
power model gives for the job's requests as long as its Job really ran (from
the Job's start, as its spoke says, to its end), times the intensity its zone
had over that time, as its carbon source measured it. The
ledger keeps it beside the estimate, so that the history of a fleet repo says
what the placements saved, not only what they were to save: for a job that
finished after one run, what that run would have emitted where and when the
carbon-blind qos baseline would have started it is kept too.

A run is counted when its Job is seen to end: finished for good, failed
and run again (the failed run burnt its energy too), suspended where it
ran by its AppWrapper's spec.suspend (Kubernetes ends its pods; resumed, the
Job begins a run anew), or begun anew on its spoke while the record has it
running (its start there later than the one recorded: made again after it
was deleted there, or resumed after a suspension there). A run is not counted
where no start is known before its end, where its spoke left the fleet, or
where its source has not measured all of it (a forecast, or yesterday's
values, are not what it emitted at); what the others emitted is. Nor is a
run cut short by its AppWrapper's removal: its record is kept as it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from carbon.series import IntensitySeries
from reconciler import arrivals
from reconciler.decisions import SpokeState, spoke_state
from reconciler.fleet import Fleet, JobRequest
from reconciler.ledger import FINISHED, FIXED, Entry, Phase
from reconciler.optimizerjobs import kwh_per_slot


def counted(
    records: tuple[Entry, ...],
    *,
    before: Mapping[str, Entry],
    jobs: Mapping[str, JobRequest],
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    measured: Mapping[str, IntensitySeries],
    now: datetime,
    left: Collection[str] = (),
) -> tuple[Entry, ...]:
    """`records` with what each run that ended in this decision emitted added
    to its job's record. `before` holds the records as the decision found
    them; what they had counted is carried over. `left`: the jobs taken for
    failed though no spoke said they ended (reconciler/arrivals.py), whose
    runs count to when that takes them to have ended."""
    return tuple(
        _with_runs(
            entry,
            before.get(entry.id),
            jobs,
            fleet,
            spokes,
            measured,
            now=now,
            left=entry.id in left,
        )
        for entry in records
    )


def _with_runs(
    entry: Entry,
    prev: Entry | None,
    jobs: Mapping[str, JobRequest],
    fleet: Fleet,
    spokes: Mapping[str, SpokeState],
    measured: Mapping[str, IntensitySeries],
    *,
    now: datetime,
    left: bool,
) -> Entry:
    if prev is None or prev.phase in FINISHED or prev.job_name is None:
        return _carried(entry, prev)
    state = spoke_state(prev, spokes)
    prev = _after_a_new_start(prev, state, jobs.get(entry.id), fleet, measured)
    finished = entry.phase in FINISHED
    stopped = entry.stopped and prev.phase in FIXED
    if not finished and not stopped and entry.retries <= prev.retries:
        # No run of it ended; one running keeps when it began.
        return _began_at(_carried(entry, prev), prev, spoke_state(entry, spokes))
    if finished:
        end = entry.finished_at
    else:  # run again
        end = arrivals.left_at(prev, spokes) if left else _ended(prev, state, now=now)
    start = _began(prev, state, end=end)
    job = jobs.get(entry.id)
    grams = baseline = None
    if job is not None and start is not None and end is not None:
        grams = _run_grams(job, prev.spoke, fleet, measured, start=start, end=end)
        # qos would have run it once: a job that ran before has no baseline.
        ran_once = entry.retries == 0 and prev.emitted_grams is None
        if finished and grams is not None and ran_once:
            baseline = _baseline_grams(job, prev, fleet, measured, ran=end - start)
    total = prev.emitted_grams if grams is None else (prev.emitted_grams or 0.0) + grams
    update: dict[str, object] = {"emitted_grams": None if total is None else round(total, 1)}
    if finished:
        update |= {"started_at": start, "qos_emitted_grams": baseline}
    return entry.model_copy(update=update)


def _baseline_grams(
    job: JobRequest,
    prev: Entry,
    fleet: Fleet,
    measured: Mapping[str, IntensitySeries],
    *,
    ran: timedelta,
) -> float | None:
    """What a job's one run would have emitted where and when the qos baseline
    would have started it, for as long as it really ran. Where that run would
    not have ended yet, or its time was not measured, None."""
    if prev.qos_spoke is None or prev.qos_start is None:
        return None
    grams = _run_grams(
        job, prev.qos_spoke, fleet, measured, start=prev.qos_start, end=prev.qos_start + ran
    )
    return None if grams is None else round(grams, 1)


def _after_a_new_start(
    prev: Entry,
    state: SpokeState | None,
    job: JobRequest | None,
    fleet: Fleet,
    measured: Mapping[str, IntensitySeries],
) -> Entry:
    """`prev`, a running record, where its spoke now says its Job began later
    than the record does: the Job was made again there (deleted, then synced
    by Argo CD) or resumed after a suspension there, and Kubernetes gave it a
    new start. The run before ended by then, or by when a reconcile found the
    Job gone, if one did: it is counted to that, and the new start recorded."""
    began = state.started.get(prev.job_key) if state is not None else None
    earlier = prev.started_at
    if prev.phase != Phase.RUNNING or earlier is None or began is None or began <= earlier:
        return prev
    gone = prev.gone_since
    end = min(began, gone) if gone is not None and gone > earlier else began
    grams = _run_grams(job, prev.spoke, fleet, measured, start=earlier, end=end) if job else None
    total = prev.emitted_grams if grams is None else (prev.emitted_grams or 0.0) + grams
    emitted = None if total is None else round(total, 1)
    return prev.model_copy(update={"started_at": began, "emitted_grams": emitted})


def _began_at(entry: Entry, prev: Entry, state: SpokeState | None) -> Entry:
    """A running record, with when its Job began: as its record before says,
    where that ran the same Job, else as its spoke says, where it does."""
    if entry.phase != Phase.RUNNING:
        return entry
    same = prev.phase == Phase.RUNNING and prev.job_name == entry.job_name
    said = state.started.get(entry.job_key) if state is not None else None
    began = (prev.started_at if same else None) or said
    return entry if began == entry.started_at else entry.model_copy(update={"started_at": began})


def _carried(entry: Entry, prev: Entry | None) -> Entry:
    """A record keeps what its runs before emitted, whatever else changed."""
    if prev is None or prev.emitted_grams is None or entry.emitted_grams is not None:
        return entry
    return entry.model_copy(update={"emitted_grams": prev.emitted_grams})


def _ended(prev: Entry, state: SpokeState | None, *, now: datetime) -> datetime:
    """When a failed or stopped run ended: as its spoke says, not after now;
    else now (a stopped one's pods end once its spoke applies the suspend
    this decision commits)."""
    said = state.ended.get(prev.job_key) if state is not None else None
    return min(said, now) if said is not None else now


def _began(prev: Entry, state: SpokeState | None, *, end: datetime | None) -> datetime | None:
    """When a run began: its Job's start as its spoke says, else its planned
    start (it was resumed in that slot). None where neither comes before its end
    (a planned Job resumed by hand that ended before a reconcile saw it run,
    through an observer that does not say when it began)."""
    said = state.started.get(prev.job_key) if state is not None else None
    recorded = prev.started_at if prev.phase == Phase.RUNNING else None
    for start in (said, recorded, prev.planned_start):
        if start is not None and end is not None and start <= end:
            return start
    return None


def _run_grams(
    job: JobRequest,
    on: str | None,
    fleet: Fleet,
    measured: Mapping[str, IntensitySeries],
    *,
    start: datetime,
    end: datetime,
) -> float | None:
    """What `job` emitted (or would have) on spoke `on` over [start, end)."""
    spoke = next((s for s in fleet.spokes if s.name == on), None)
    if spoke is None:
        return None  # it left the fleet: its power model is gone
    series = measured.get(spoke.spec.carbon.zone)
    if series is None:
        return None
    kwh_per_second = kwh_per_slot(job, spoke=spoke, slot_seconds=1)
    grams_per_kwh_seconds = integral(series, start=start, end=end)
    return None if grams_per_kwh_seconds is None else kwh_per_second * grams_per_kwh_seconds


def integral(series: IntensitySeries, *, start: datetime, end: datetime) -> float | None:
    """The intensity summed over [start, end), in g/kWh times seconds; None
    where the series does not cover it all."""
    step = timedelta(seconds=series.slot_seconds)
    if start < series.start or end > series.start + step * len(series.values):
        return None
    total = 0.0
    first = int((start - series.start) // step)
    for index in range(first, len(series.values)):
        slot_start = series.start + step * index
        if slot_start >= end:
            break
        overlap = min(end, slot_start + step) - max(start, slot_start)
        total += series.values[index] * overlap.total_seconds()
    return total
