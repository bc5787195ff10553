"""Pull-request mode: which part of a decision goes to review, and which part
carries out the plan the main branch holds already and goes there at once.

A new place for a job (a spoke, a pool, a start or a Job it did not have on
main) is a decision for a person to approve. Starting a Job at the start
main holds for it, recording what the spokes report, pruning finished Jobs and
dropping the records of removed jobs carry out what was approved: held back
for a review, an approved job would start only when someone merged.

A reviewer who closes the pull request unmerged declines its new places
(`declined`): each of those jobs keeps what main holds for it, marked, and is
proposed nowhere new until its AppWrapper changes (deciding.py and records.py hold it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from reconciler.decisions import Decision
from reconciler.ledger import Declined, Entry, Ledger, Phase
from reconciler.quantities import format_time

Place = tuple[str | None, str | None, datetime | None, str | None]  # spoke, pool, start, Job


def new_places(old: Ledger, new: Ledger) -> frozenset[str]:
    """The jobs `new` places where `old` does not."""
    before = old.by_id()
    return frozenset(
        entry.id for entry in new.entries if placed_anew(entry, was=before.get(entry.id))
    )


def placed_anew(entry: Entry, *, was: Entry | None) -> bool:
    """Whether `entry` places its job where its record `was` does not: on a
    spoke, with a pool, start or Job that record lacks (no record: it is new).
    Not where its spoke ran it before Caspian dispatched it: that start is
    what the spoke reports, as a Job's end is, not a place to review."""
    if entry.started_outside(was):
        return False
    return entry.spoke is not None and _place(entry) != _place(was)


def _place(entry: Entry | None) -> Place | None:
    if entry is None:
        return None
    return (entry.spoke, entry.pool, entry.planned_start, entry.job_name)


def carried_out(decision: Decision, *, old: Ledger) -> Decision:
    """`decision` less its new places: each job given one keeps its record in
    `old`, and its Job as committed, or is left out where it has no record yet.
    What remains carries out `old`'s plan."""
    proposed = new_places(old, decision.ledger)
    if not proposed:
        return decision
    before = old.by_id()
    entries = tuple(
        before[entry.id] if entry.id in proposed else entry
        for entry in decision.ledger.entries
        if entry.id not in proposed or entry.id in before
    )
    return decision.model_copy(
        update={
            "ledger": decision.ledger.model_copy(update={"entries": entries}),
            "proposed": tuple(sorted(proposed)),
            # What these say of a proposed job happens when its proposal is merged.
            "requeued": {k: v for k, v in decision.requeued.items() if k not in proposed},
            "retried": {k: v for k, v in decision.retried.items() if k not in proposed},
        }
    )


def declined(
    main: Ledger, proposal: Ledger, *, asks: Mapping[str, str], pull: str, at: datetime
) -> Ledger:
    """`main` with the new places of `proposal`, closed unmerged as `pull`,
    declined: each job placed anew keeps its record on main, marked with what
    its AppWrapper asks now (`asks`, by job id); one with no record there is
    recorded unplaced. A job no longer in the fleet has nothing to hold."""
    before, offered = main.by_id(), proposal.by_id()
    marks = {
        job_id: Declined(pull=pull, at=at, ask=asks[job_id])
        for job_id in new_places(main, proposal) & asks.keys()
    }
    marked = {
        job_id: _held(before.get(job_id), offered[job_id], mark) for job_id, mark in marks.items()
    }
    entries = tuple(sorted({**before, **marked}.values(), key=lambda entry: entry.id))
    return main.model_copy(update={"entries": entries})


def _held(kept: Entry | None, offered: Entry, mark: Declined) -> Entry:
    """A job's record once `mark` declines the place `offered` to it: the
    record main has where that places it, else one of the job placed nowhere."""
    if kept is not None and kept.spoke is not None:
        return kept.model_copy(update={"declined": mark})
    return _unplaced(offered, mark)


# What a record that places a job says of the job (as it asks now) and of
# when it came and where it could not run, as `decide` keeps it for one
# placed nowhere.
_OF_THE_JOB = {
    "id",
    "source",
    "job_name",
    "retries",
    "rerun_after",
    "template_hash",
    "first_seen",
    "deadline",
    "cpu",
    "memory_bytes",
    "gpu",
    "requeued_from",
}


def _unplaced(entry: Entry, mark: Declined) -> Entry:
    """The record of a job `mark` holds unplaced, from one that placed it."""
    kept = entry.model_dump(include=_OF_THE_JOB)
    return Entry(**kept, phase=Phase.PENDING, reason=mark.reason, declined=mark)


def decline_message(main: Ledger, proposal: Ledger, *, held: Ledger, pull: str) -> str:
    """The commit message that records a decline: each job, what it was
    offered, and what it keeps."""
    before, offered = main.by_id(), proposal.by_id()
    ids = [e.id for e in held.entries if e.declined is not None and e != before.get(e.id)]
    lines = [
        f"- {job_id}: {_where(offered[job_id])} declined; {_kept(before.get(job_id))}"
        for job_id in ids
    ]
    count = f"{len(ids)} job" + ("" if len(ids) == 1 else "s")
    return "\n".join(
        [
            f"decline: {count} ({pull} closed unmerged)",
            "",
            f"A reviewer closed {pull} without merging it, so the new places it proposed "
            "are declined. Each job keeps what this branch holds for it and is proposed "
            "nowhere new until its AppWrapper changes (any edit to it, a label such as "
            'run: "2" say, or its removal).',
            "",
            *lines,
            "",
        ]
    )


def _where(entry: Entry) -> str:
    start = format_time(entry.planned_start) if entry.planned_start else "-"
    return f"{entry.spoke} from {start}"


def _kept(entry: Entry | None) -> str:
    if entry is None or entry.phase == Phase.PENDING or entry.spoke is None:
        return "it stays unplaced"
    return f"it stays {entry.phase.value} on {_where(entry)}"
