"""Pull-request mode: which part of a decision goes to review, and which part
carries out the plan the main branch holds already and goes there at once.

A new place for a job (a spoke, a pool, a start or a Job it did not have on
main) is a decision for a person to approve. Starting a Job at the start
main holds for it, recording what the spokes report, pruning finished Jobs and
dropping the records of removed jobs carry out what was approved: held back
for a review, an approved job would start only when someone merged.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.decisions import Decision
from reconciler.ledger import Entry, Ledger

Place = tuple[str | None, str | None, datetime | None, str | None]  # spoke, pool, start, Job


def new_places(old: Ledger, new: Ledger) -> frozenset[str]:
    """The jobs `new` places where `old` does not."""
    before = old.by_id()
    return frozenset(
        entry.id for entry in new.entries if placed_anew(entry, was=before.get(entry.id))
    )


def placed_anew(entry: Entry, *, was: Entry | None) -> bool:
    """Whether `entry` places its job where its record `was` does not: on a
    spoke, with a pool, start or Job that record lacks (no record: it is new)."""
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
