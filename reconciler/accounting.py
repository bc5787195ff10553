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
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from reconciler import ledger
from reconciler.history import Revision
from reconciler.ledger import FINISHED, Entry, Phase
from reconciler.messages import against_qos

# What the jobs are summed up by: the spoke they ran on, or their namespace
# (a team's, as a platform team charges back).
Grouping = Literal["spoke", "namespace"]


class Tally(BaseModel):
    """The finished jobs of one spoke or namespace, or of all (`group` None)."""

    model_config = ConfigDict(frozen=True)

    group: str | None
    succeeded: int = 0
    failed: int = 0
    late: int = 0  # ended after their deadline
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def estimated_saving(self) -> float | None:
        """The share of the qos estimate the plans saved."""
        return _saving(self.estimated_grams, self.qos_grams)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def measured_saving(self) -> float | None:
        """The share of the measured qos baseline the runs saved."""
        return _saving(self.measured_grams, self.measured_qos_grams)

    def plus(self, entry: Entry) -> Tally:
        """This tally with one finished record more."""
        update: dict[str, float | int] = {
            "succeeded": self.succeeded + (entry.phase == Phase.SUCCEEDED),
            "failed": self.failed + (entry.phase == Phase.FAILED),
            "late": self.late + _late(entry),
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
    """The jobs that finished in [since, until), by spoke or namespace, and in all."""

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    by: Grouping
    commits_read: int
    # Whether the commits read reach back past `since` (or to the first):
    # where not, jobs that finished early in the period may be missing.
    complete: bool
    groups: tuple[Tally, ...]
    total: Tally
    # Commits whose ledger does not read (edited by hand then): skipped.
    unreadable: tuple[str, ...] = ()


def report(
    revisions: Iterable[Revision],
    *,
    since: datetime,
    until: datetime,
    most: int,
    by: Grouping = "spoke",
) -> Report:
    """The jobs that finished in [since, until), summed up `by` spoke or
    namespace, from the ledgers of `revisions` (the commits that changed the
    ledger, newest first), read back to the first commit made before
    `since`, or `most` commits."""
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
    groups: dict[str, Tally] = {}
    total = Tally(group=None)
    # In one order, so that the sums are the same to the last bit.
    for entry in sorted(found.values(), key=lambda e: (e.id, e.job_name or "")):
        name = (entry.spoke or "-") if by == "spoke" else entry.id.split("/", 1)[0]
        groups[name] = groups.get(name, Tally(group=name)).plus(entry)
        total = total.plus(entry)
    return Report(
        since=since,
        until=until,
        by=by,
        commits_read=read,
        complete=complete,
        groups=tuple(groups[name] for name in sorted(groups)),
        total=total,
        unreadable=tuple(unreadable),
    )


def _ended(entry: Entry) -> datetime | None:
    """When a finished job's Job ended: as recorded, or for a record from
    before that was kept, its planned end. None for one not finished."""
    if entry.phase not in FINISHED:
        return None
    return entry.finished_at or entry.planned_end


def _late(entry: Entry) -> bool:
    """Whether a finished job's Job ended after its deadline; for a record
    from before its end was kept, whether it was planned so."""
    if entry.finished_at is None or entry.deadline is None:
        return entry.late
    return entry.finished_at > entry.deadline


def _saving(grams: float, baseline: float) -> float | None:
    return 1 - grams / baseline if baseline > 0 else None


def table(found: Report) -> str:
    """The report as `caspian report` prints it: a row per spoke (or
    namespace), and one for all."""
    header = (
        f"| {found.by} | succeeded | failed | late | est. gCO2 | qos est. gCO2 | est. saving "
        "| emitted gCO2 (jobs) | measured saving (jobs) |"
    )
    rows = [header, "|" + "---|" * 9]
    for tally in (*found.groups, found.total):
        estimated = tally.estimated_saving
        measured = tally.measured_saving
        cells = [
            tally.group or "all",
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
