"""One job's history, read back from the fleet repo's git log: who changed its
AppWrapper, and each placement Caspian committed for it, with what that commit
said about it. The audit trail, per job. Pure: the commits come in as values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from reconciler import ledger
from reconciler.ledger import FINISHED, FIXED, Entry, Phase
from reconciler.quantities import format_time


class Revision(BaseModel):
    """One commit that changed a file asked about, with each of those files as
    that commit has it (None where it has none)."""

    model_config = ConfigDict(frozen=True)

    commit: str
    author: str
    time: datetime  # when it was committed
    message: str
    files: dict[str, bytes | None]


class Event(BaseModel):
    """One change to a job: its AppWrapper's file, or its place in the ledger."""

    model_config = ConfigDict(frozen=True)

    commit: str
    author: str
    time: datetime
    what: str  # "edited jobs/etl.yaml", "Dispatched on paris from ..."
    said: tuple[str, ...]  # what the commit's message says of it (else its subject)


class History(BaseModel):
    model_config = ConfigDict(frozen=True)

    job: str
    source: str
    events: tuple[Event, ...]  # oldest first
    # Whether the commits read reach back to before its file was added: where
    # not, older changes were not read.
    complete: bool
    # Commits whose ledger did not parse (edited by hand then): skipped.
    unreadable: tuple[str, ...] = ()


def history(
    job_id: str,
    source: str,
    revisions: Iterable[Revision],
    *,
    most: int | None = None,
    former: Sequence[str] = (),
) -> History:
    """The changes to `job_id` (whose AppWrapper is in the file `source`, and
    was in the files `former` before, newest first), from `revisions`, newest
    first, as `git log` lists them. Reading stops at the first commit without
    its file or its record that comes before one with either (its history,
    since its file was last added, begins after it), at the first commit of
    all, or after `most` commits. Commits newer than its last record (a job
    forgotten since) have nothing of it."""
    path = source.split("#", 1)[0]
    files = (path, *former)
    # Where one of a file's several AppWrappers does not load, the record is its
    # document's ("jobs/etl.yaml#1").
    document = source.removeprefix(path)
    found: list[Event] = []
    unreadable: list[str] = []
    newer: tuple[Revision, _Record, _File] | None = None
    read = 0
    complete = True  # read back to before its file was added
    began = False  # a commit without its file or record, before one with either, was read
    seen = False  # a commit with its file or record was read
    for revision in revisions:
        if most is not None and read >= most:
            complete = False
            break
        read += 1
        file = _file_in(revision, files)
        try:
            record = _record_in(revision, job_id, file=file.path + document)
        except ledger.LedgerError:
            unreadable.append(revision.commit)
            continue
        if newer is not None:
            found.extend(_changes(job_id, *newer, was=record, had=file))
        newer = (revision, record, file)
        entry = record.entry
        if entry is None and file.text is None and seen:
            began = True
            break
        seen = seen or entry is not None or file.text is not None
    if newer is not None and not began:
        # The oldest commit read: the first of all, before which nothing was;
        # or, past `most`, one whose change to its file is not known.
        unknown = _File(files[-1], None) if complete else newer[2]
        found.extend(_changes(job_id, *newer, was=_Record(None, None), had=unknown))
    return History(
        job=job_id,
        source=source,
        events=tuple(reversed(found)),
        complete=complete,
        unreadable=tuple(unreadable),
    )


class _File(NamedTuple):
    """A job's AppWrapper file as one commit has it."""

    path: str
    text: bytes | None  # None: the commit has none there


def _file_in(revision: Revision, files: Sequence[str]) -> _File:
    """The job's file in `revision`: at the first of its paths, newest first,
    that the commit has."""
    for path in files:
        text = revision.files.get(path)
        if text is not None:
            return _File(path, text)
    return _File(files[0], None)


class _Record(NamedTuple):
    """A job's record in one commit's ledger, with the problem that holds it
    there where its file, which loaded before, does not load."""

    entry: Entry | None
    held: Entry | None  # its file's own record (Invalid), while the job is held


def _record_in(revision: Revision, job_id: str, *, file: str) -> _Record:
    """The job's record in `revision`'s ledger, with that of its `file` where
    the file does not load and so holds the job where it was."""
    text = revision.files.get(ledger.LEDGER_PATH)
    entry = ledger.entry_of(text, job_id)
    if entry is None or entry.phase == Phase.INVALID or file == job_id:
        return _Record(entry, None)
    held = ledger.entry_of(text, file)
    return _Record(entry, held if held is not None and held.phase == Phase.INVALID else None)


def _changes(
    job_id: str,
    revision: Revision,
    record: _Record,
    file: _File,
    *,
    was: _Record,
    had: _File,
) -> list[Event]:
    """What `revision` changed of the job, against the commit before it that
    changed it (`was`, `had`), latest first."""
    found = []
    if _place(record) != _place(was):
        said = _said(revision.message, job_id, record.held.id if record.held else None)
        # The problem once: in the commit's own line where it has one.
        reason = record.held or record.entry
        told = reason is not None and bool(reason.reason) and any(reason.reason in s for s in said)
        found.append(_event(revision, _placement(record, with_reason=not told), said=said))
    what = _file_change(file, had=had)
    if what:
        found.append(_event(revision, what, said=(_subject(revision.message),)))
    return found


def _file_change(file: _File, *, had: _File) -> str | None:
    if had.text is None:
        return None if file.text is None else f"added {file.path}"
    if file.text is None:
        return f"removed {had.path}"
    if file.path != had.path:
        edited = " and edited it" if file.text != had.text else ""
        return f"moved {had.path} to {file.path}{edited}"
    return None if file.text == had.text else f"edited {file.path}"


def _event(revision: Revision, what: str, *, said: tuple[str, ...]) -> Event:
    return Event(
        commit=revision.commit,
        author=revision.author,
        time=revision.time,
        what=what,
        said=said,
    )


def _place(record: _Record) -> tuple[object, ...] | None:
    """What the ledger tells of a job's place: a change to any of it is an
    event. (Its carbon estimate, which moves with every forecast, is not.)"""
    entry = record.entry
    if entry is None:
        return None
    why = entry.reason if entry.phase in (Phase.PENDING, Phase.INVALID, Phase.SUSPENDED) else ""
    return (
        entry.phase,
        entry.spoke,
        entry.pool,
        entry.planned_start,
        entry.job_name,
        entry.late,
        entry.spoke_down_since,
        entry.gone_since,
        entry.requeued_from,
        entry.retries,
        entry.declined,
        why,
        record.held.reason if record.held else None,
    )


def _placement(record: _Record, *, with_reason: bool = True) -> str:
    """A record, in a line; `with_reason` False leaves out the problem or the
    reason, which the commit's line about the job says."""
    entry, held = record
    if entry is None:
        return "its record left the ledger"
    where = f" on {entry.pool or entry.spoke}" if entry.spoke else ""
    # A running one's start too: a Job started outside Caspian runs from
    # when its spoke says, not from its planned start.
    if entry.phase in (Phase.PLANNED, *FIXED) and entry.planned_start:
        where += f" from {format_time(entry.planned_start)}"
    notes = [f"Job {entry.job_name}"] if entry.job_name and entry.spoke else []
    if entry.phase in (Phase.PLANNED, Phase.DISPATCHED) and entry.estimated_grams is not None:
        notes.append(f"est. {entry.estimated_grams:,.0f} gCO2")
    if entry.phase in FINISHED and entry.emitted_grams is not None:
        notes.append(f"emitted {entry.emitted_grams:,.0f} gCO2")
    if entry.late:
        notes.append("late")
    if entry.spoke_down_since is not None:
        notes.append(f"waits for {entry.spoke}, down")
    if entry.gone_since is not None:
        notes.append(f"missing there since {format_time(entry.gone_since)}")
    if entry.declined is not None and entry.spoke:
        notes.append(f"held: a move declined in {entry.declined.pull}")
    line = f"{entry.phase.value}{where}" + (f" ({', '.join(notes)})" if notes else "")
    if held is not None:
        line += f", held as it was: {held.source} does not load"
        return f"{line}: {held.reason}" if with_reason else line
    told = entry.phase in (Phase.PENDING, Phase.INVALID, Phase.SUSPENDED, Phase.CANCELLED)
    return f"{line}: {entry.reason}" if told and entry.reason and with_reason else line


def _said(message: str, job_id: str, file: str | None = None) -> tuple[str, ...]:
    """The lines of a commit's message about the job (not its table's row),
    or about its `file` where that holds it; its subject where none is."""
    names = "|".join(re.escape(name) for name in (job_id, file) if name)
    named = re.compile(rf"(?<![\w./-])(?:{names})(?![\w./-])")
    lines = tuple(
        line for line in message.splitlines()[1:] if line.startswith("- ") and named.search(line)
    )
    return lines or (_subject(message),)


def _subject(message: str) -> str:
    return message.splitlines()[0] if message else ""
