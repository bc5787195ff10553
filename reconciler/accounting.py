"""What the jobs that finished over a period emitted and saved, read back from
the ledger of every commit in it (`caspian report`). Pure: the commits come
in as values.

The ledger at the branch's tip does not hold every job that finished: a
record is forgotten `ledgerRetention` after its AppWrapper is removed, and a
finished job whose Job is edited to run again gets a new record. Every
finish was committed, though, so the ledgers of the commits since the
period began hold them all. A finished record no longer changes, so each is
counted once, by its job and Job name.

The figures are those of the ledger: what each plan estimated against the
carbon-blind qos baseline's estimate (`estimatedGrams`, `qosGrams`), and what
the runs emitted as measured (`emittedGrams`), with, for jobs that ran once,
what that run would have emitted as qos placed it (`qosEmittedGrams`). Each
saving compares like with like: the jobs that have both figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from reconciler import ledger
from reconciler.history import Revision
from reconciler.ledger import FINISHED, Entry, Phase
from reconciler.messages import against_qos


class Tally(BaseModel):
    """The finished jobs of one spoke, or of the whole fleet (`spoke` None)."""

    model_config = ConfigDict(frozen=True)

    spoke: str | None
    succeeded: int = 0
    failed: int = 0
    late: int = 0  # finished after their deadline, as planned
    # Estimated when planned, over the jobs with both a plan's estimate and
    # a qos baseline's.
    estimated_grams: float = 0.0
    qos_grams: float = 0.0
    # Emitted as measured, over every job with a run counted.
    emitted_grams: float = 0.0
    emitted_jobs: int = 0
    # Of the jobs that ran once with a measured qos baseline: what they
    # emitted, and what they would have as qos placed them.
    measured_jobs: int = 0
    measured_grams: float = 0.0
    measured_qos_grams: float = 0.0

    @property
    def estimated_saving(self) -> float | None:
        return _saving(self.estimated_grams, self.qos_grams)

    @property
    def measured_saving(self) -> float | None:
        return _saving(self.measured_grams, self.measured_qos_grams)

    def plus(self, entry: Entry) -> Tally:
        """This tally with one finished record more."""
        update: dict[str, float | int] = {
            "succeeded": self.succeeded + (entry.phase == Phase.SUCCEEDED),
            "failed": self.failed + (entry.phase == Phase.FAILED),
            "late": self.late + entry.late,
        }
        if entry.estimated_grams is not None and entry.qos_grams is not None:
            update["estimated_grams"] = self.estimated_grams + entry.estimated_grams
            update["qos_grams"] = self.qos_grams + entry.qos_grams
        if entry.emitted_grams is not None:
            update["emitted_grams"] = self.emitted_grams + entry.emitted_grams
            update["emitted_jobs"] = self.emitted_jobs + 1
            if entry.qos_emitted_grams is not None:
                update["measured_jobs"] = self.measured_jobs + 1
                update["measured_grams"] = self.measured_grams + entry.emitted_grams
                update["measured_qos_grams"] = self.measured_qos_grams + entry.qos_emitted_grams
        return self.model_copy(update=update)


class Report(BaseModel):
    """The jobs that finished in [since, until), by spoke and in all."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    commits_read: int
    # Whether the commits read reach back past `since` (or to the first):
    # where not, jobs that finished early in the period may be missing.
    complete: bool
    spokes: tuple[Tally, ...]
    total: Tally
    # Commits whose ledger does not read (edited by hand then): skipped.
    unreadable: tuple[str, ...] = ()


def report(revisions: Iterable[Revision], *, since: datetime, until: datetime, most: int) -> Report:
    """The jobs that finished in [since, until), from the ledgers of
    `revisions` (the commits that changed the ledger, newest first), read
    back to the first commit made before `since`, or `most` commits."""
    found: dict[tuple[str, str | None], Entry] = {}
    unreadable: list[str] = []
    known = ledger.Records()  # consecutive ledgers share most records' text
    read, complete = 0, False
    for revision in revisions:
        if revision.time < since:
            complete = True
            break
        if read == most:
            break
        read += 1
        try:
            entries = ledger.parse(revision.files.get(ledger.LEDGER_PATH), known=known).entries
        except ledger.LedgerError:
            unreadable.append(revision.commit)
            continue
        for entry in entries:
            ended = _ended(entry)
            if ended is not None and since <= ended < until:
                found.setdefault((entry.id, entry.job_name), entry)
    else:
        complete = True  # the first commit of all was read
    by_spoke: dict[str, Tally] = {}
    total = Tally(spoke=None)
    # In one order, so that the sums are the same to the last bit.
    for entry in sorted(found.values(), key=lambda e: (e.id, e.job_name or "")):
        spoke = entry.spoke or "-"
        by_spoke[spoke] = by_spoke.get(spoke, Tally(spoke=spoke)).plus(entry)
        total = total.plus(entry)
    return Report(
        since=since,
        until=until,
        commits_read=read,
        complete=complete,
        spokes=tuple(by_spoke[name] for name in sorted(by_spoke)),
        total=total,
        unreadable=tuple(unreadable),
    )


def _ended(entry: Entry) -> datetime | None:
    """When a finished job's Job ended: as recorded, or for a record from
    before that was kept, its planned end. None for one not finished."""
    if entry.phase not in FINISHED:
        return None
    return entry.finished_at or entry.planned_end


def _saving(grams: float, baseline: float) -> float | None:
    return 1 - grams / baseline if baseline > 0 else None


def table(found: Report) -> str:
    """The report as `caspian report` prints it: one row per spoke, and all."""
    header = (
        "| spoke | succeeded | failed | late | est. gCO2 | qos est. gCO2 | est. saving "
        "| emitted gCO2 (jobs) | measured saving (jobs) |"
    )
    rows = [header, "|" + "---|" * 9]
    for tally in (*found.spokes, found.total):
        estimated = tally.estimated_saving
        measured = tally.measured_saving
        cells = [
            tally.spoke or "all",
            f"{tally.succeeded:,}",
            f"{tally.failed:,}",
            f"{tally.late:,}",
            f"{tally.estimated_grams:,.0f}",
            f"{tally.qos_grams:,.0f}",
            "-" if estimated is None else against_qos(estimated),
            f"{tally.emitted_grams:,.0f} ({tally.emitted_jobs:,})",
            "-" if measured is None else f"{against_qos(measured)} ({tally.measured_jobs:,})",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
