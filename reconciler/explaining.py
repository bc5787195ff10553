"""`caspian explain`: why one job goes where it goes, from a decision.

Pure: a decision and the job's ledger entry in, an `Explanation` out. It holds
the job's place and deadline as data, what Caspian has to say of it as lines
(its carbon against qos, why it waits, what keeps it off a spoke...), and its
cheapest places with whether each had room: the CLI prints its `lines()`, or
the model as JSON for a bot that comments on a pull request.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from optimizer import explain as explanations
from optimizer.costs import shortfall
from reconciler import companions, messages, pools, proposals
from reconciler.decisions import Decision
from reconciler.fleet import JobRequest
from reconciler.ledger import FIXED, Entry, Phase
from reconciler.quantities import amount, format_duration, format_time, times


class Place(BaseModel):
    """One of a job's cheapest places: a spoke (or its pool) and a start."""

    model_config = ConfigDict(frozen=True)

    spoke: str
    start: datetime
    carbon_g: float
    late_slots: int
    chosen: bool
    room: bool  # fits beside the plan's other jobs and the work already running


class Explanation(BaseModel):
    model_config = ConfigDict(frozen=True)

    job: str
    source: str
    phase: str
    spoke: str | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    deadline: datetime | None = None
    late: bool = False
    notes: tuple[str, ...] = ()  # one line each, in the order `explain` prints them
    forecasts: tuple[str, ...] = ()  # the carbon sources the places were costed on
    places: tuple[Place, ...] = ()

    def lines(self) -> list[str]:
        """The explanation as `caspian explain` prints it."""
        out = [f"{messages.named(self.job, source=self.source)}: {self.phase}"]
        if self.spoke and self.planned_start:
            out.append(
                f"  on {self.spoke} from {format_time(self.planned_start)}"
                + (f" to {format_time(self.planned_end)}" if self.planned_end else "")
            )
        if self.deadline:
            late = " (late)" if self.late else ""
            out.append(f"  deadline {format_time(self.deadline)}{late}")
        out += [f"  {note}" for note in self.notes]
        if not self.places:
            return out
        out.append(f"its cheapest places, on forecasts from {', '.join(self.forecasts)}:")
        width = max(16, *(len(place.spoke) for place in self.places))  # pools: spoke[taints]
        for place in self.places:
            said = ["chosen" if place.chosen else ("free" if place.room else "taken by other jobs")]
            if place.late_slots:
                said.append(f"{place.late_slots} slots late")
            out.append(
                f"  {place.spoke:{width}} {format_time(place.start)}  "
                f"{place.carbon_g:10,.1f} gCO2  {', '.join(said)}"
            )
        return out


class UnderReview(BaseModel):
    """A job's record in the plan under review on a proposal branch."""

    model_config = ConfigDict(frozen=True)

    branch: str
    record: Entry


def explain(
    decision: Decision,
    entry: Entry,
    *,
    committed: Entry | None = None,
    review: UnderReview | None = None,
    unpushed: bool = False,
) -> Explanation:
    """Why the job of `entry` goes where it goes in `decision`; `committed` is
    its record in the ledger the decision was made on, if it has one, and
    `review` its record in the plan under review, if one holds it.
    `unpushed`: the decision was made with a work tree's edits (plan
    --work-tree), which the branch does not hold yet."""
    request = decision.jobs.get(entry.id)
    notes = [
        *_uncommitted(entry, committed, review, unpushed=unpushed),
        *_requeued(decision, entry),
        *_carbon(decision, entry, request),
        *_reason(decision, entry),
        *_waits(decision, entry),
        *_runs(decision, entry, request),
        *_held(decision, entry),
        *_counted(request),
        *_wrapped(request),
        *_borrowed(decision, request),
        *_kept_off(decision, entry, request),
        *_sync_windows(decision, entry, request),
    ]
    choices = explanations.options(decision.instance, decision.plan, entry.id)
    if not choices and entry.phase in FIXED:
        notes.append("started: its place is fixed and no longer re-planned")
    places = tuple(
        Place(
            spoke=option.spoke,
            start=decision.window.time_of(option.start_slot),
            carbon_g=option.carbon_g,
            late_slots=option.late_slots,
            chosen=option.chosen,
            room=option.room,
        )
        for option in choices
    )
    return Explanation(
        job=entry.id,
        source=entry.source,
        phase=entry.phase.value,
        spoke=entry.spoke,
        planned_start=entry.planned_start,
        planned_end=entry.planned_end,
        deadline=entry.deadline,
        late=entry.late,
        notes=tuple(notes),
        forecasts=tuple(sorted(set(decision.carbon_sources.values()))) if places else (),
        places=places,
    )


def _uncommitted(
    entry: Entry, committed: Entry | None, review: UnderReview | None, *, unpushed: bool
) -> list[str]:
    """Where its place is not the one committed: it is what the next reconcile
    (after the push of `unpushed` edits) commits, or, in pull-request mode,
    proposes for review, or what the open proposal holds already."""
    if committed is not None and entry.started_outside(committed):
        planned = committed.planned_start
        since = f" from {format_time(planned)}" if planned else ""
        if (committed.phase, committed.spoke) == (Phase.PLANNED, entry.spoke):
            return [
                f"its Job runs on {entry.spoke} already, started before Caspian dispatched it: "
                f"the ledger holds it Planned{since} (with suspend: true), and the next "
                "reconcile records it running there"
            ]
        where = f" on {committed.spoke}{since}" if committed.spoke else ""
        return [
            f"a Job of it from before runs on {entry.spoke} still (left by a requeue and not "
            f"pruned): the ledger holds it {committed.phase.value}{where}, and the next "
            "reconcile records it running there"
        ]
    if not proposals.placed_anew(entry, was=committed):
        return []
    if review is not None and not proposals.placed_anew(entry, was=review.record):
        return [
            f"proposed for review on {review.branch}: main does not hold it yet, and it "
            "starts there once the pull request is merged"
        ]
    after = "the first reconcile after the work tree's edits are pushed" if unpushed else ""
    next_one = (
        f"{after or 'the next reconcile'} commits it (with --propose, proposes it for review)"
    )
    if committed is None or committed.spoke is None:
        return [f"a new place, not committed yet: {next_one}"]
    start = f" from {format_time(committed.planned_start)}" if committed.planned_start else ""
    return [
        f"not committed yet: the ledger holds it {committed.phase.value} on "
        f"{committed.spoke}{start}; {next_one}"
    ]


def _requeued(decision: Decision, entry: Entry) -> list[str]:
    """Why this decision takes it off the spoke it was dispatched to."""
    requeue = decision.requeued.get(entry.id)
    return [f"requeued off {requeue.spoke}: {requeue.reason}"] if requeue is not None else []


def _carbon(decision: Decision, entry: Entry, request: JobRequest | None) -> list[str]:
    """How its lateness weighs, and what it emits against qos."""
    notes = []
    if request is not None and (weight := decision.lateness_weight(request)) != 1:
        notes.append(
            f"its lateness weighs {weight:g} times another job's: its priority class "
            f"{request.priority_class} (caspian.yaml spec.weights.priorityClasses)"
        )
    if entry.estimated_grams is not None and entry.qos_grams:
        notes.append(
            f"{entry.estimated_grams:,.1f} gCO2 planned vs {entry.qos_grams:,.1f} gCO2 for qos "
            f"({messages.against_qos(1 - entry.estimated_grams / entry.qos_grams)})"
        )
    if entry.emitted_grams is not None:
        runs = "its runs" if entry.retries else "its run"
        said = f"{entry.emitted_grams:,.1f} gCO2 emitted by {runs} that ended, as counted"
        if entry.qos_emitted_grams:
            saved = 1 - entry.emitted_grams / entry.qos_emitted_grams
            said += (
                f", vs {entry.qos_emitted_grams:,.1f} gCO2 as qos placed it, measured too "
                f"({messages.against_qos(saved)})"
            )
        notes.append(said)
    return notes


def _reason(decision: Decision, entry: Entry) -> list[str]:
    """The ledger's reason; for a file that does not load, each of its problems
    on its own line, where the ledger joins them into one."""
    if entry.phase == Phase.INVALID:
        own = [p.said() for p in decision.problems if p.file == entry.source]
        if own:
            return own
    return [entry.reason] if entry.reason else []


def _waits(decision: Decision, entry: Entry) -> list[str]:
    """For a spoke that is down, for a Job missing from its spoke, and when its
    finished Job leaves rendered/."""
    notes = []
    if (grace_from := decision.waiting.get(entry.id)) is not None:
        grace = decision.spoke_down_grace
        since = entry.spoke_down_since or grace_from
        notes.append(
            f"waits for {entry.spoke}, down since {format_time(since)} "
            f"({decision.closed.get(entry.spoke or '', 'down').removeprefix('down: ')}): it is "
            "not dispatched there, and "
            + (
                f"is planned elsewhere from {format_time(grace_from + grace)} (the policy's "
                f"spokeDownGrace {format_duration(grace)}) if it is down still"
                if grace is not None
                else "stays until it answers (the policy's spokeDownGrace is null)"
            )
        )
    if entry.gone_since is not None and entry.planned_end is not None:
        notes.append(
            f"its Job {entry.job_name} has been missing from {entry.spoke} since "
            f"{format_time(entry.gone_since)} (deleted there?): it keeps its room until its "
            f"planned end {format_time(entry.planned_end)}, then, unless it is back, it is "
            f"taken for failed from {format_time(entry.gone_since)}"
        )
    if (leaves := decision.leaves_rendered(entry)) is not None and entry.id in decision.jobs:
        notes.append(
            f"its Job {'left' if leaves <= decision.now else 'leaves'} rendered/{entry.spoke}/ "
            f"at {format_time(leaves)} (Argo CD deletes it then): "
            f"{messages.kept_for(decision, entry)}"
        )
    return notes


def _runs(decision: Decision, entry: Entry, request: JobRequest | None) -> list[str]:
    """What it runs after, and why those that hold it are not placed; why it
    is not running yet; its runs again."""
    notes = []
    if note := decision.runs_after.get(entry.id):
        notes.append(f"{note} (its caspian.dev/after)")
    if entry.phase == Phase.PENDING and request is not None and request.after:
        # Its own reason names them; where one can never start, this says why.
        records = decision.ledger.by_id()
        for other in request.after:
            record = records.get(other)
            if record is not None and record.phase == Phase.PENDING and record.reason:
                notes.append(f"{other} is not placed either: {record.reason}")
    if note := decision.stuck.get(entry.id):
        notes.append(f"not running {'now' if entry.phase == Phase.RUNNING else 'yet'}: {note}")
    if entry.retries:
        notes.append(
            f"run again {times(entry.retries)} after a Job of it failed (its AppWrapper's "
            f"retryLimit, or the policy's): its Job now is {entry.job_name}"
        )
    if entry.rerun_after is not None and entry.phase == Phase.PLANNED:
        notes.append(
            f"it starts no earlier than {format_time(entry.rerun_after)}: its AppWrapper's "
            "retryPausePeriodDuration after the failure"
        )
    return notes


def _held(decision: Decision, entry: Entry) -> list[str]:
    """Why a job whose file, or whose spoke's file, broke after it was placed
    keeps its place until that is fixed; or a review declined its new place."""
    if entry.phase == Phase.INVALID:
        return []
    notes = [
        f"its file has a problem, so it is held as it was: {problem.line()}"
        for problem in decision.problems
        if problem.file in (entry.source, entry.source.split("#")[0])
    ]
    mark = entry.declined
    if mark is not None and entry.phase != Phase.PENDING:  # a Pending one's reason says it
        notes.append(
            f"held on {entry.spoke} as the ledger has it: its new place was declined in "
            f"{mark.pull} (closed unmerged, seen {format_time(mark.at)}), so it is not moved, "
            "requeued or run again until its AppWrapper changes"
        )
    if entry.id in decision.held and (file := decision.broken_spokes.get(entry.spoke or "")):
        notes.append(
            f"{file} does not load, so it is held on {entry.spoke} as it was; a change "
            "to its AppWrapper (suspend, edit, removal) waits until the file loads"
        )
    return notes


def _counted(request: JobRequest | None) -> list[str]:
    """What it is planned with that its AppWrapper does not say as such."""
    notes = []
    if request is not None and request.defaulted:
        notes.append(
            f"counted at caspian.yaml's spec.defaults.requests, as it asks for none: "
            f"{', '.join(request.defaulted)}"
        )
    if request is not None and request.duration_cut is not None:
        notes.append(
            f"planned to run {format_duration(request.duration)}, not its caspian.dev/duration "
            f"{format_duration(request.duration_cut)}: its Job's activeDeadlineSeconds "
            f"({request.duration.total_seconds():.0f}) ends it then; raise that if it needs longer"
        )
    return notes


def _wrapped(request: JobRequest | None) -> list[str]:
    """What goes to its spoke with its Job (companions.py)."""
    if request is None or not request.companions:
        return []
    objects = " and ".join(f"{c.kind} {c.name}" for c in request.companions)
    return [f"its {objects} go wherever its Job goes, in its Job's file"]


def _borrowed(decision: Decision, request: JobRequest | None) -> list[str]:
    """What its pods need that another job brings with it (companions.borrowed)."""
    if request is None:
        return []
    found = companions.borrowed(list(decision.jobs.values()))
    return [problem.reason for problem in found if problem.file == request.source]


def _too_small(decision: Decision, entry: Entry, request: JobRequest) -> dict[str, str]:
    """The spokes it may use that never have room for it, each with why. Only for
    a placed job: one placed nowhere has its reason say so already."""
    job = next((j for j in decision.instance.jobs if j.id == entry.id), None)
    if job is None or entry.spoke is None:
        return {}
    found = {}
    for spoke in request.allowed_spokes:
        there = [s.name for s in decision.instance.spokes if pools.spoke_of(s.name) == spoke]
        short = shortfall(decision.instance, job, spokes=there) if there else []
        if short:
            needs = ", ".join(amount(name, need) for name, need, _ in short)
            most = ", ".join(amount(name, room) for name, _, room in short)
            pods = f" ({request.pods_at_once} pods)" if request.pods_at_once > 1 else ""
            found[spoke] = (
                f"it needs {needs} at once{pods}, and {spoke} has room for {most} at most "
                "in the planning horizon"
            )
    return found


def _sync_windows(decision: Decision, entry: Entry, request: JobRequest | None) -> list[str]:
    """When Argo CD's sync windows keep a job from starting on its spokes: a
    dispatched one whose Job Argo CD has not applied, or resumed, waits for its
    spoke's window to end; one still to place starts nowhere while they bar its
    spoke. A Job already there runs whatever the windows say."""
    if entry.phase == Phase.DISPATCHED and entry.spoke is not None:
        if entry.id not in decision.held_back:
            return []
        return [
            f"Argo CD applies its Job on {entry.spoke} once it may sync it again, at "
            f"{format_time(window.end)} ({window.reason}); it is not requeued for the wait"
            for window in decision.sync_barred.get(entry.spoke, ())
            if window.start <= decision.now < window.end
        ]
    if request is None or entry.phase in FIXED:
        return []
    return [
        f"{spoke} takes no start from {format_time(window.start)} to "
        f"{format_time(window.end)}: Argo CD does not sync it then ({window.reason})"
        for spoke in request.allowed_spokes
        for window in decision.sync_barred.get(spoke, ())[: messages.MOST_WINDOWS]
    ]


def _kept_off(decision: Decision, entry: Entry, request: JobRequest | None) -> list[str]:
    """Each spoke it may not, or cannot, use, and why."""
    if request is None:
        return []
    notes = []
    barred = [spoke for spoke in decision.spokes if spoke not in request.allowed_spokes]
    if barred:
        notes.append(
            f"not on {', '.join(barred)}: not among the spokes its "
            "caspian.dev/spokes or caspian.dev/spoke-selector allow"
        )
    if entry.home is not None and not request.suspended:
        notes.append(
            f"only on {entry.home}: its Job waits there, suspended, to resume where it ran"
        )
    for spoke in request.allowed_spokes:
        for window in decision.maintenance.get(spoke, ())[: messages.MOST_WINDOWS]:
            notes.append(
                f"{spoke} takes no work from {format_time(window.start)} to "
                f"{format_time(window.end)} (maintenance"
                + (f": {window.reason}" if window.reason else "")
                + "): nothing of it is planned to run there then"
            )
    unfit = {
        **_too_small(decision, entry, request),
        **decision.no_node_fits.get(entry.id, {}),
        **decision.missing.get(entry.id, {}),
    }
    unfit.update(decision.kept_off.get(entry.id, {}))
    for spoke in request.allowed_spokes:
        why = decision.closed.get(spoke) or unfit.get(spoke)
        # A job started there stays there; a waiting job's reason names them already.
        if why and spoke != entry.spoke and why not in entry.reason:
            notes.append(f"not on {spoke}: {why}")
    # Only where it goes: there its pods wait if the object is not there.
    unchecked = decision.unchecked.get(entry.id, {}).get(entry.spoke or "")
    if unchecked:
        notes.append(f"on {entry.spoke}, {unchecked}")
    return notes
