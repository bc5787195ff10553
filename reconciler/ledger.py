"""status/placements.yaml: Caspian's record of every job it knows, one entry each.

It is both output and input: the next reconcile reads it back to know when a job
was first seen, where it was planned (stickiness), and which jobs were already
dispatched (fixed). Values that do not change are copied, never recomputed, so an
unchanged fleet renders a byte-identical ledger.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from reconciler import owned, yamlio
from reconciler.fleet import SPOKES_DIR
from reconciler.quantities import format_time, timestamp

LEDGER_PATH = "status/placements.yaml"


class Phase(StrEnum):
    PENDING = "Pending"  # valid, not placed (yet): see reason
    # Held by its AppWrapper's spec.suspend: not placed; one that had started
    # stays on its spoke, its Job suspended.
    SUSPENDED = "Suspended"
    PLANNED = "Planned"  # spoke and start chosen; rendered suspended
    DISPATCHED = "Dispatched"  # start reached; rendered with suspend: false
    RUNNING = "Running"  # its spoke reports the Job running: a container of it started
    SUCCEEDED = "Succeeded"  # its spoke reports the Job complete
    FAILED = "Failed"  # its spoke reports the Job failed
    INVALID = "Invalid"  # the AppWrapper file has a problem: see reason
    CANCELLED = "Cancelled"  # the AppWrapper left jobs/


# Rendered into rendered/<spoke>/ (finished ones until a retention period ends).
ACTIVE = (Phase.PLANNED, Phase.DISPATCHED, Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED)
# Hold their spoke and start: never re-planned.
FIXED = (Phase.DISPATCHED, Phase.RUNNING)
FINISHED = (Phase.SUCCEEDED, Phase.FAILED)
# Placed and not finished: where lateness still matters.
UNFINISHED = (Phase.PLANNED, Phase.DISPATCHED, Phase.RUNNING)


class Declined(BaseModel):
    """A reviewer closed, unmerged, the pull request that proposed a new place
    for the job: it keeps what the main branch holds for it (unplaced, or its
    place there), and is proposed nowhere new, until its AppWrapper changes."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    pull: str  # "pull request #7"
    at: datetime  # when Caspian found it closed
    ask: str  # JobRequest.ask of the AppWrapper declined: another lifts it

    @property
    def reason(self) -> str:
        """Why a job it holds unplaced is: the ledger's `reason`."""
        return (
            f"its place was declined in {self.pull} (closed unmerged, seen "
            f"{format_time(self.at)}): it is proposed again once its AppWrapper changes"
        )


class Entry(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    id: str
    source: str
    phase: Phase
    spoke: str | None = None
    # The optimizer's pool on that spoke, where its nodes carry different taints
    # (reconciler/pools.py): the room a started Job holds is kept there.
    pool: str | None = None
    job_name: str | None = None
    template_hash: str | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    deadline: datetime | None = None
    first_seen: datetime | None = None
    # When the AppWrapper left jobs/ (cancelled, or finished and tidied away):
    # the record is forgotten `ledgerRetention` after this.
    removed_at: datetime | None = None
    # When its Job succeeded or failed for good: as its spoke says, else when
    # Caspian first saw it so. Its Job stays in rendered/ for the retention (or
    # its AppWrapper's TTL) after this; records from before it was kept count
    # from their planned end.
    finished_at: datetime | None = None
    # When its last run began: as its spoke says (the Job's startTime), else its
    # planned start. Kept while it runs, where its spoke says (a later start
    # there is a new run: the one before is counted), and from when its Job ends.
    started_at: datetime | None = None
    # The carbon its runs emitted, in grams: the energy its power model gives
    # for each run as long as it ran, times the intensity its spoke's zone had
    # then, as its carbon source measured it. Summed over the runs that
    # ended; None where no run could be counted (reconciler/emissions.py).
    emitted_grams: float | None = None
    cpu: float | None = None
    memory_bytes: float | None = None
    gpu: float | None = None
    estimated_grams: float | None = None
    qos_grams: float | None = None
    # Where and when the carbon-blind qos baseline would have started it, kept
    # with qos_grams from when it was first planned; and, once it finished
    # after one run, what that run would have emitted there and then, on the
    # intensities measured (reconciler/emissions.py): the baseline of
    # emitted_grams, as qos_grams is of estimated_grams.
    qos_spoke: str | None = None
    qos_start: datetime | None = None
    qos_emitted_grams: float | None = None
    late: bool = False
    reason: str = ""
    # The spoke where its Job waits, suspended, to resume: it ran there before its
    # AppWrapper's spec.suspend stopped it, and is planned there only.
    resumes_on: str | None = None
    # The spoke of each time it was requeued (its pods found no node there, were
    # refused or could not start), first first: none is planned for it again
    # while one it has not tried may take it, until it runs; past the policy's
    # requeueLimit, it is given up on (Pending, planned nowhere).
    requeued_from: tuple[str, ...] = ()
    # How many times a Job of it failed and it was run again (the AppWrapper's
    # retryLimit, or the policy's): its Job's name ends -r<retries> after the first.
    retries: int = 0
    # A run again starts no earlier than this: its AppWrapper's
    # retryPausePeriodDuration after its Job's failure was seen.
    rerun_after: datetime | None = None
    # Planned on a spoke that has been down since this: it waits there, planned
    # as it was (not dispatched), until the policy's spokeDownGrace has gone by.
    spoke_down_since: datetime | None = None
    # Running, and its Job missing since this from a spoke that lists every
    # Job of Caspian's (deleted there by hand, say): the first reconcile that
    # found it so, until it is there again. It holds its room to its planned
    # end, since it may come back; taken for failed then, its run counts to this.
    gone_since: datetime | None = None
    # Its new place was declined in a pull request (pull-request mode): held
    # where the main branch has it, while its AppWrapper asks what it asked then.
    declined: Declined | None = None

    @property
    def of_a_job(self) -> bool:
        """A job's record, not that of a spoke file that does not load, which
        the ledger lists with the jobs' files that do not, by its path."""
        return not self.source.startswith(SPOKES_DIR)

    @property
    def stopped(self) -> bool:
        """Suspended by its AppWrapper after it started: its Job stays on its
        spoke, suspended."""
        return self.phase == Phase.SUSPENDED and self.spoke is not None

    @property
    def home(self) -> str | None:
        """The spoke its Job resumes on, if it had started and was stopped."""
        if self.stopped:
            return self.spoke
        return self.resumes_on if self.phase == Phase.PLANNED else None

    def start_went_by(self, slot_start: datetime) -> bool:
        """Planned for a slot before the one that starts at `slot_start`: no
        reconcile came in its slot to dispatch it, so it never started."""
        return (
            self.phase == Phase.PLANNED
            and self.planned_start is not None
            and self.planned_start < slot_start
        )

    @property
    def on_a_spoke(self) -> bool:
        """Whether its Job is rendered into rendered/<spoke>/."""
        return self.phase in ACTIVE or self.stopped

    def started_outside(self, before: Entry | None) -> bool:
        """Whether its spoke ran its Job before Caspian dispatched it there:
        planned or pending in `before`, its record before, or dispatched to
        another spoke, and running now (reconciler/deciding.py)."""
        if before is None or self.phase != Phase.RUNNING:
            return False
        moved = before.phase == Phase.DISPATCHED and before.spoke != self.spoke
        return before.phase in (Phase.PLANNED, Phase.PENDING) or moved

    @property
    def job_key(self) -> str:
        """namespace/name of its rendered Job, as a spoke's report keys it."""
        return f"{self.id.split('/', 1)[0]}/{self.job_name}"


MOST_NAMED = 20  # jobs a failed lookup lists by name


class Cut(BaseModel):
    """A spoke cut off as one nothing syncs (arrivals.unsynced): from the
    reconcile that found it so, until it takes work again unless a Job of
    Caspian's is there sooner. Kept after that while the spoke is on trial,
    so that a second cut holds it twice as long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: datetime
    until: datetime

    @property
    def hold(self) -> timedelta:
        return self.until - self.since


class Ledger(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel)

    api_version: Literal["caspian.dev/v1alpha1"] = "caspian.dev/v1alpha1"
    kind: Literal["PlacementLedger"] = "PlacementLedger"
    # The digest of the problem its plan answered (optimizer/keeping.py): the
    # next reconcile that meets the same problem keeps the plan, solving nothing.
    problem: str | None = None
    # The spokes cut off as ones nothing syncs (arrivals.unsynced): they
    # stay so after their Jobs went elsewhere, until one is there or the
    # hold is over, and each cut again without one there between is held
    # twice as long.
    unsynced: dict[str, Cut] = {}
    # Last: `entry_of` reads one record without parsing the others.
    entries: tuple[Entry, ...] = ()

    @field_validator("unsynced", mode="before")
    @classmethod
    def _bare_times(cls, value: object) -> object:
        """A ledger of the version before the hold doubled gave each spoke
        the time of its cut alone; that version held it an hour."""
        if not isinstance(value, dict):
            return value
        return {
            name: {"since": cut, "until": timestamp(cut) + timedelta(hours=1)}
            if isinstance(cut, str | datetime)
            else cut
            for name, cut in value.items()
        }

    def by_id(self) -> dict[str, Entry]:
        return {entry.id: entry for entry in self.entries}

    def find(self, job: str) -> Entry:
        """The record a user means by `job`: its namespace/name, its name, or
        its file. LookupError, saying what there is, where none or several."""
        matches = [
            e
            for e in self.entries
            if job in (e.id, e.id.split("/")[-1], e.source, e.source.split("#")[0])
        ] or [
            # A file with a problem has no job name Caspian could trust: its
            # record is the file's, found by the file's name too.
            e
            for e in self.entries
            if e.phase == Phase.INVALID and _stem(e.source.split("#")[0]) == job
        ]
        if len(matches) > 1:
            several = ", ".join(e.id for e in matches)
            raise LookupError(f"{job!r} matches several jobs ({several}): name one")
        if not matches:
            raise LookupError(f"{job!r} is no job in the ledger{self._hint(job)}")
        return matches[0]

    def _hint(self, job: str) -> str:
        """The jobs `job` may be a typo of, and every job where there are few:
        a fleet's thousand ids on one line would bury the answer."""
        names: dict[str, str] = {}
        for entry in self.entries:
            for name in (entry.source.split("#")[0], entry.id.split("/")[-1], entry.id):
                names[name] = entry.id
        # A part of a name ("etl" for batch/etl-daily) is what difflib misses most.
        within = [names[n] for n in names if len(job) >= 3 and job in n]
        typos = [names[n] for n in difflib.get_close_matches(job, names, n=3)]
        close = list(dict.fromkeys([*within, *typos]))[:3]
        said = f" (did you mean {' or '.join(close)}?)" if close else ""
        if len(self.entries) <= MOST_NAMED:
            return f"{said}; jobs: {', '.join(e.id for e in self.entries) or 'none'}"
        return f"{said}; it has {len(self.entries):,} (`caspian plan` lists them)"


# What a started job's record may become by Caspian's own hand: it finished,
# was cancelled, or was stopped by its AppWrapper's spec.suspend.
_AFTER_STARTED = (*FIXED, *FINISHED, Phase.CANCELLED, Phase.SUSPENDED)


def went_back(written: Ledger, now: Ledger, *, spokes: Collection[str]) -> list[Entry]:
    """The records of `written` (a ledger Caspian wrote) of a Job dispatched
    or running that `now` (a later one, which someone else wrote) has lost:
    the job is missing, or its Job is planned again, not started, though no
    requeue took it off that spoke, nor did the spoke leave the fleet (it is
    not among `spokes`). A revert of Caspian's commit, or a merge that took an
    older side, does that; planned afresh, such a Job would be suspended or
    dispatched again."""
    later = now.by_id()
    lost = []
    for entry in written.entries:
        if entry.phase not in FIXED or entry.spoke not in spokes:
            continue
        after = later.get(entry.id)
        if after is None or (
            after.job_name == entry.job_name
            and after.phase not in _AFTER_STARTED
            and entry.spoke not in after.requeued_from
        ):
            lost.append(entry)
    return lost


def _stem(path: str) -> str:
    """A file's name without its suffix, as pathlib has it (no I/O here)."""
    name = path.rsplit("/", 1)[-1]
    return name.rpartition(".")[0] or name


class LedgerError(Exception):
    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line  # where it stops parsing, for one that does not


# An id YAML writes as it is: namespace/name, or the path of a file in jobs/.
_PLAIN = re.compile(r"[A-Za-z0-9._/#-]+")


def entry_of(raw: bytes | None, job_id: str) -> Entry | None:
    """One job's record from a ledger, without reading the others: `caspian
    history` reads the ledger of every commit, and reading all of a thousand
    records made it 46 times slower (README, `caspian history`). Caspian writes
    each record as one item of the ledger's last list, its id first, so the
    record is the text from its `- id:` line to the next item, and a job
    without that line has none there. Anything else is read whole."""
    if raw is None:
        return None
    text = raw.replace(b"\r\n", b"\n")
    start = text.find(b"\n- id: " + job_id.encode() + b"\n")
    if start < 0 and owned.hand_edit(raw) is None and _PLAIN.fullmatch(job_id):
        return None
    if owned.edited(raw) or start < 0:
        return parse(raw).by_id().get(job_id)
    end = text.find(b"\n- ", start + 1)
    try:
        # With its last line's end: a literal block's text ends in it.
        (item,) = yamlio.load(text[start + 1 : end + 1 if end >= 0 else len(text)])
        return Entry.model_validate(item)
    except (yamlio.YAMLError, ValidationError, TypeError, ValueError):
        return parse(raw).by_id().get(job_id)


def parse(raw: bytes | None, *, loader: type | None = None, known: Records | None = None) -> Ledger:
    """The ledger from a commit; an absent one is empty. A ledger that does not parse
    was edited by hand: refusing is safer than forgetting what was dispatched.
    `known` holds what each record read to in the last call, and is updated:
    the ledger is the same with it or without."""
    if raw is None:
        return Ledger()
    if owned.edited(raw):
        raise LedgerError(
            f"{LEDGER_PATH}: edited by hand (it no longer matches the digest Caspian wrote). "
            f"It is owned by Caspian: revert the hand edit (git log -p -- {LEDGER_PATH}) and "
            "reconcile again",
            line=_stops_at(raw),
        )
    if known is not None and loader is None:
        by_records = _read_by_records(raw, known)
        if by_records is not None:
            return by_records
    try:
        return Ledger.model_validate(yamlio.load(raw, loader=loader) or {})
    except (yamlio.YAMLError, ValidationError) as error:
        raise LedgerError(
            f"{LEDGER_PATH}: does not parse ({str(error).splitlines()[0]}). It is owned by "
            f"Caspian: revert the hand edit (git log -p -- {LEDGER_PATH}) and reconcile again",
            line=yamlio.error_place(error, raw) if isinstance(error, yamlio.YAMLError) else None,
        ) from None


def _stops_at(raw: bytes) -> int | None:
    """Where a ledger edited by hand stops parsing, if it does: a line to show."""
    try:
        yamlio.load(raw)
    except yamlio.YAMLError as error:
        return yamlio.error_place(error, raw)
    return None


class Records:
    """What each record of a ledger read to, kept from one `parse` to the next
    by a caller that reads a ledger again after each commit (a watcher): most
    of its records are the same text as before. At 5000 jobs, reading the
    whole ledger took 2.2 s of a reconcile. Only the last call's are kept."""

    def __init__(self) -> None:
        self.last: dict[bytes, Entry] = {}


# Caspian writes the records last, one item each at the start of a line.
_ENTRIES = b"\nentries:\n"
_ITEM = b"\n- "


def _read_by_records(raw: bytes, known: Records) -> Ledger | None:
    """`raw` read record by record, each record's text read once: what reading
    it whole gives, or None where it is not laid out as Caspian writes it
    (then it is read whole, and any error is told as for the whole)."""
    text = raw.replace(b"\r\n", b"\n")
    start = text.find(_ENTRIES + b"- ")
    if start < 0:
        return None
    starts = [start + len(_ENTRIES) - 1]
    while (at := text.find(_ITEM, starts[-1] + 1)) >= 0:
        starts.append(at)
    items = [text[a + 1 : b + 1] for a, b in zip(starts, [*starts[1:], len(text) - 1], strict=True)]
    read: dict[bytes, Entry] = {}
    entries = []
    try:
        head = yamlio.load(text[: start + 1]) or {}
        if not isinstance(head, dict) or "entries" in head:
            return None
        for item in items:
            entry = known.last.get(item)
            if entry is None:
                document = yamlio.load(b"entries:\n" + item)
                if not isinstance(document, dict) or list(document) != ["entries"]:
                    return None
                (fields,) = document["entries"]
                entry = Entry.model_validate(fields)
            read[item] = entry
            entries.append(entry)
        ledger = Ledger.model_validate({**head, "entries": entries})
    except (yamlio.YAMLError, ValidationError, TypeError, ValueError):
        return None
    known.last = read
    return ledger
