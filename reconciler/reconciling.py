"""One reconcile: read desired, observe, decide, render, commit and push.

The imperative shell around the pure `decide` and `render`. A push refused because
the remote moved is answered by starting over on the new tip, a bounded number
of times: Caspian's commit is always built on the exact commit it read.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from optimizer import keeping
from optimizer.model import RESOURCES
from reconciler import (
    accounting,
    arrivals,
    crd,
    deciding,
    gridcarbon,
    history,
    ledger,
    messages,
    metrics,
    owned,
    pools,
    proposals,
    syncwindows,
)
from reconciler.decisions import Decision, SpokeState
from reconciler.fleet import SPOKES_DIR, Fleet, FleetConfigError, Problem, printable
from reconciler.gitrepo import (
    FleetRepo,
    Identity,
    PushRejectedError,
    RemoteMovedError,
    Snapshot,
)
from reconciler.history import History
from reconciler.ledger import FINISHED, UNFINISHED, Phase
from reconciler.loading import JobFiles, load_fleet
from reconciler.observing import DeclaredCapacity, Observer
from reconciler.overlay import Edits, overlaid
from reconciler.owned import OWNED_PREFIXES
from reconciler.quantities import format_time
from reconciler.rendering import (
    RENDERED,
    SPOKE_FILES,
    Renders,
    job_path,
    render,
    render_ledger,
)
from reconciler.survey import (
    BROKEN,
    DOWN,
    UNSCHEDULABLE,
    UP,
    SpokeReport,
    Survey,
    gone_from,
    placed_by_spoke,
    waiting_for,
)

log = logging.getLogger("caspian.reconcile")


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_commit: str
    decision: Decision
    previous: ledger.Ledger  # the ledger of the commit read, which `decision` follows
    files: dict[str, bytes]  # everything Caspian owns, as it should be
    changes: dict[str, str]  # path -> added | modified | deleted
    message: str
    commit: str | None = None  # the placement commit, None when nothing changed
    push_attempts: int = 0
    edits: Edits | None = None  # what a work tree planned with changed (plan --work-tree)

    @property
    def partial(self) -> bool:
        """Some job could not be planned: an invalid AppWrapper or no place for
        it. One a review declined is held by choice, as a suspended one is."""
        return any(
            e.phase == Phase.INVALID or (e.phase == Phase.PENDING and e.declined is None)
            for e in self.decision.ledger.entries
        )


# What the AppWrapper files read to at the last reconcile in this process:
# a watcher reads the same files at every one, and only new ones need reading.
_JOB_FILES = JobFiles()
# What the last reconcile in this process wrote for each Job and ledger record:
# most are written the same at the next.
_RENDERS = Renders()


def fleet_in(
    files: Mapping[str, bytes],
    *,
    links: Collection[str],
    submodules: Collection[str] = frozenset(),
    read: ledger.Ledger | None = None,
) -> Fleet:
    """The fleet a commit, or a work tree, holds. Where two files define one
    job, the file its ledger record was read from keeps it. `read` is that
    ledger where the caller has parsed it already (a large one takes seconds)."""
    if read is None:
        try:
            read = _parsed_ledger(files.get(ledger.LEDGER_PATH))
        except ledger.LedgerError:
            read = ledger.Ledger()  # told where the ledger itself is read
    held = {entry.id: entry.source for entry in read.entries}
    return load_fleet(
        files,
        appwrapper_schema=crd.check_appwrapper,
        links=links,
        submodules=submodules,
        held=held,
        known=_JOB_FILES,
    )


def fleet_of(snapshot: Snapshot, *, read: ledger.Ledger | None = None) -> Fleet:
    """The fleet a commit holds."""
    return fleet_in(snapshot.files, links=snapshot.links, submodules=snapshot.submodules, read=read)


def plan(
    repo: FleetRepo,
    *,
    now: datetime,
    bot: str,
    observer: Observer | None = None,
    under_review: str | None = None,
    work_tree: Path | None = None,
) -> Outcome:
    """What a reconcile by the bot whose email is `bot` would commit now,
    without committing; refused as that reconcile would be. In pull-request
    mode (`under_review`, the proposal branch) it decides from the plan under
    review there too, as `propose_once` does. With a `work_tree` of the fleet
    repo, it decides as if that work tree's edits had been pushed on top of
    the branch (`overlay`)."""
    snapshot = _fetched(repo, bot=bot)
    edits = None
    if work_tree is not None:
        files, links, edits = overlaid(
            snapshot.files,
            links=snapshot.links,
            work=repo.work_tree(work_tree, tip=snapshot.commit),
        )
        snapshot = snapshot.model_copy(update={"files": files, "links": links})
    outcome = _decide_on(
        snapshot,
        repo=repo,
        now=now,
        observer=observer or DeclaredCapacity(),
        remembered=repo.remembered(),
        proposal=proposal_ledger(repo, under_review) if under_review else None,
    )
    return outcome.model_copy(update={"edits": edits})


def survey(repo: FleetRepo, *, now: datetime, observer: Observer | None = None) -> Survey:
    """Each spoke of the fleet repo's tip as Caspian sees it now (`caspian
    spokes`): its file, its API's answer, its room and what is placed there."""
    snapshot = repo.fetch()
    read = previous_ledger(snapshot.files)
    fleet = fleet_of(snapshot, read=read)
    fleet = fleet.without_spokes(gridcarbon.carbon_sources(fleet, read=read)[1])
    states = observed(
        fleet, observer or DeclaredCapacity(), read=read, repo=repo, at=snapshot, now=now
    )
    entries = read.entries
    placed = placed_by_spoke(entries)
    grace = fleet.policy.spec.spoke_down_grace
    reports = []
    for spoke in fleet.spokes:
        state = states[spoke.name]
        kind, why, waiting = UP, "", ""
        if not state.up:
            kind, why = DOWN, state.reason
            waiting = waiting_for(entries, spoke=spoke, state=state, grace=grace, now=now)
        elif spoke.spec.unschedulable:
            kind, why = UNSCHEDULABLE, "its file sets spec.unschedulable: it takes no new work"
        reports.append(
            SpokeReport(
                name=spoke.name,
                file=f"{SPOKES_DIR}{spoke.name}.yaml",
                zone=spoke.spec.carbon.zone,
                state=kind,
                why=why,
                observed=state,
                placed=placed.get(spoke.name, {}),
                waiting=waiting,
                maintenance=tuple(
                    w for w in spoke.spec.maintenance if w.schedule or (w.end and w.end > now)
                ),
                quota=spoke.spec.quota,
                gone=gone_from(entries, state=state, now=now),
            )
        )
    for name, file in fleet.broken_spokes.items():
        lines = [p.line() for p in fleet.problems if p.file == file]
        reports.append(
            SpokeReport(
                name=name,
                file=file,
                state=BROKEN,
                why="; ".join(lines),
                placed=placed.get(name, {}),
            )
        )
    return Survey(
        input_commit=snapshot.commit,
        now=now,
        spokes=tuple(sorted(reports, key=lambda r: r.name)),
    )


def job_history(repo: FleetRepo, job: str, *, most: int) -> History:
    """The changes to the job a user means by `job` (`caspian history`), read
    from the git log of its AppWrapper's file and the ledger, looking back at
    most `most` commits that changed either. A job the ledger has forgotten
    (its ledgerRetention over) is found by its namespace/name in older
    ledgers. LookupError where none has such a job."""
    snapshot = repo.fetch()
    try:
        entry = previous_ledger(snapshot.files).find(job)
    except LookupError as error:
        found = _forgotten(repo, job, most=most) or _not_yet_placed(snapshot, job)
        if found is None:
            raise LookupError(
                f"{error}; a job forgotten since is found by its namespace/name"
            ) from None
        job_id, source = found
    else:
        job_id, source = entry.id, entry.source
    file = source.split("#", 1)[0]
    former = repo.former_paths(file)  # a job's file moved keeps its history
    paths = (ledger.LEDGER_PATH, file, *former)
    return history.history(job_id, source, repo.revisions(paths), most=most, former=former)


def carbon_report(
    repo: FleetRepo,
    *,
    since: datetime,
    until: datetime,
    most: int,
    by: accounting.Grouping = "spoke",
) -> accounting.Report:
    """What the jobs that finished in [since, until) emitted and saved
    (`caspian report`), by spoke or namespace, from the ledgers of the
    branch's commits back to `since`, at most `most` of them."""
    repo.fetch()
    revisions = repo.revisions([ledger.LEDGER_PATH])
    return accounting.report(revisions, since=since, until=until, most=most, by=by)


def _not_yet_placed(snapshot: Snapshot, job: str) -> tuple[str, str] | None:
    """The id and file of the one job of the tip's AppWrappers that `job`
    names, which no reconcile has recorded yet (just pushed, or proposed in a
    pull request not merged yet): its history is its file's commits."""
    try:
        fleet = fleet_of(snapshot)
    except FleetConfigError:
        return None
    matches = [j for j in fleet.jobs if job in (j.id, j.name, j.source, j.source.split("#")[0])]
    return (matches[0].id, matches[0].source) if len(matches) == 1 else None


def _forgotten(repo: FleetRepo, job_id: str, *, most: int) -> tuple[str, str] | None:
    """The id and file of `job_id`'s last record in the ledgers of the last
    `most` commits that changed it, newest first; None where none has it."""
    if "/" not in job_id:
        return None
    for _, revision in zip(range(most), repo.revisions([ledger.LEDGER_PATH]), strict=False):
        try:
            found = ledger.entry_of(revision.files.get(ledger.LEDGER_PATH), job_id)
        except ledger.LedgerError:
            continue
        if found is not None:
            return found.id, found.source
    return None


def reconcile_once(
    repo: FleetRepo,
    *,
    now: datetime,
    author: Identity,
    observer: Observer | None = None,
    attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Decide on the branch's tip and push what changes. The mirror
    remembers the problem the last decision answered (`Decision.answers`),
    for the next reconcile, a watcher's or cron's: the ledger has it only
    where a record changed."""
    remembered = repo.remembered()
    for attempt in range(1, attempts + 1):
        snapshot = _fetched(repo, bot=author.email)
        outcome = _decide_on(
            snapshot,
            repo=repo,
            now=now,
            observer=observer or DeclaredCapacity(),
            remembered=remembered,
        )
        if not outcome.changes:
            log.info("no change at %s: nothing to commit", outcome.input_commit[:12])
            _remember(repo, outcome.decision)
            return outcome
        try:
            pushed = _pushed(repo, outcome, author=author, now=now)
        except RemoteMovedError as moved:
            _back_off(moved, attempt=attempt, attempts=attempts, backoff_s=backoff_s, sleep=sleep)
            continue
        except PushRejectedError as refused:
            raise PushRejectedError(
                f"{refused}; where {repo.branch} is protected, let Caspian's identity push "
                "there past the protection: it commits each placement there (with --propose, "
                "what carries out a merged plan)"
            ) from None
        _remember(repo, outcome.decision)
        return pushed.model_copy(update={"push_attempts": attempt})
    raise AssertionError("unreachable")


def _remember(repo: FleetRepo, decision: Decision) -> None:
    why = repo.remember(decision.answers)
    if why is not None:
        log.warning("%s: the next reconcile solves again though nothing changed", why)


def _saw(repo: FleetRepo, commit: str, *, now: datetime) -> None:
    """Note the main branch's tip, seen (or pushed) now: what a fast-forward
    merge brings is dated from then (`FleetRepo.held_since`)."""
    why = repo.saw(commit, at=now)
    if why is not None:
        log.warning("%s: a commit merged by fast-forward counts from when it was made", why)


def _fetched(repo: FleetRepo, *, bot: str) -> Snapshot:
    """The main branch's tip, to decide on: refused where its ledger has lost
    Jobs that the last commit there by the bot whose email is `bot` had
    dispatched (ledger.went_back)."""
    snapshot = repo.fetch()
    raw = snapshot.files.get(ledger.LEDGER_PATH)
    found = repo.last_by(bot, ledger.LEDGER_PATH, since=snapshot.commit)
    if found is None or found[1] is None or found[1] == raw:
        return snapshot
    commit, written = found
    try:
        spokes = {
            path.removeprefix(SPOKES_DIR).removesuffix(".yaml")
            for path in snapshot.files
            if path.startswith(SPOKES_DIR)
        }
        lost = ledger.went_back(
            _parsed_ledger(written), previous_ledger(snapshot.files), spokes=spokes
        )
    except ledger.LedgerError:  # said where the tip's ledger is read
        return snapshot
    if lost:
        raise ledger.LedgerError(_gone_back(lost, commit=commit))
    return snapshot


MOST_NAMED_LOST = 5


def _gone_back(lost: list[ledger.Entry], *, commit: str) -> str:
    named = [
        f"{e.id} ({e.phase.value} on {e.spoke} from {format_time(e.planned_start)})"
        if e.planned_start
        else f"{e.id} ({e.phase.value} on {e.spoke})"
        for e in lost[:MOST_NAMED_LOST]
    ]
    if len(lost) > MOST_NAMED_LOST:
        named.append(f"and {len(lost) - MOST_NAMED_LOST} more")
    path = ledger.LEDGER_PATH
    return (
        f"{path} went back to an older state in a commit Caspian did not make (a revert of "
        f"its commit, or a merge that took an older side): it has lost {', '.join(named)}, "
        f"which Caspian's commit {commit[:12]} holds. Planned afresh, those Jobs would be "
        f"suspended or run again, so Caspian stops: restore the ledger (git checkout "
        f"{commit[:12]} -- {path}, then commit), and cancel a job by removing its "
        "AppWrapper from jobs/, not by reverting its placement"
    )


def _back_off(
    moved: RemoteMovedError,
    *,
    attempt: int,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> None:
    """Wait before deciding again on the main branch's new tip; after the last
    attempt, give up with `moved`."""
    if attempt == attempts:
        raise moved
    metrics.PUSH_RETRIES.inc()
    delay = backoff_s * 2 ** (attempt - 1)
    log.warning("%s; deciding again on the new tip in %.1fs", moved, delay)
    sleep(delay)


def _count_pushed(outcome: Outcome) -> None:
    """What this pushed commit records, counted once: the carbon of the jobs
    it records finished, what the runs that ended emitted, and the jobs
    their spokes started before Caspian dispatched them."""
    before = outcome.previous.by_id()
    for entry in outcome.decision.ledger.entries:
        was = before.get(entry.id)
        if entry.spoke is not None and entry.started_outside(was):
            metrics.STARTED_OUTSIDE.labels(spoke=entry.spoke).inc()
        if was is not None and was.spoke is not None:
            ran = (entry.emitted_grams or 0.0) - (was.emitted_grams or 0.0)
            if ran > 0:
                metrics.EMITTED_GRAMS.labels(spoke=was.spoke).inc(ran)
        if entry.phase not in FINISHED or (was is not None and was.phase in FINISHED):
            continue
        if entry.spoke is not None and entry.qos_emitted_grams is not None:
            assert entry.emitted_grams is not None  # the baseline is of a run counted
            metrics.FINISHED_MEASURED_GRAMS.labels(spoke=entry.spoke).inc(entry.emitted_grams)
            metrics.FINISHED_MEASURED_BASELINE_GRAMS.labels(spoke=entry.spoke).inc(
                entry.qos_emitted_grams
            )
        if entry.spoke is None or entry.estimated_grams is None or entry.qos_grams is None:
            continue  # never placed by Caspian: nothing to weigh against qos
        metrics.record_finished(
            spoke=entry.spoke,
            phase=entry.phase.value,
            estimated=entry.estimated_grams,
            baseline=entry.qos_grams,
        )


def _pushed(repo: FleetRepo, outcome: Outcome, *, author: Identity, now: datetime) -> Outcome:
    """`outcome` committed on the commit it read and pushed to the main branch
    (RemoteMovedError where that moved meanwhile)."""
    commit = _commit(repo, outcome, author=author, now=now)
    if commit is None:
        return outcome
    repo.push(commit)
    _saw(repo, commit, now=now)
    log.info("pushed %s: %s", commit[:12], outcome.message.splitlines()[0])
    metrics.COMMITS.labels(branch=repo.branch).inc()
    _count_pushed(outcome)
    for job_id, requeue in outcome.decision.requeued.items():
        metrics.REQUEUES.labels(spoke=requeue.spoke).inc()
        if job_id in outcome.decision.given_up:
            entry = outcome.decision.ledger.by_id()[job_id]
            log.warning("gave up on %s: %s", job_id, entry.reason)
    for job_id, retry in outcome.decision.retried.items():
        metrics.RETRIES.labels(spoke=retry.spoke).inc()
        log.warning(
            "%s's Job %s failed on %s: running it again (%d of %d)",
            job_id,
            retry.job_name,
            retry.spoke,
            retry.run,
            retry.limit,
        )
    for job_id, why in outcome.decision.not_retried.items():
        log.warning("%s does not run again: %s", job_id, why)
    return outcome.model_copy(update={"commit": commit})


class Proposal(BaseModel):
    """A reconcile in pull-request mode (`propose_once`)."""

    model_config = ConfigDict(frozen=True)

    # Pushed to the main branch: what carries out the plan it holds (its
    # `commit` None where nothing did).
    carried: Outcome
    # For review, on top of that: the new places (None where there are none).
    proposed: Outcome | None
    anew: frozenset[str] = frozenset()  # the jobs `proposed` places anew
    # The branch was left as it is (it holds someone else's commits): the
    # proposal was not pushed.
    kept: bool = False


def propose_once(
    repo: FleetRepo,
    *,
    branch: str,
    now: datetime,
    author: Identity,
    observer: Observer | None = None,
    keep_branch: bool = False,
    attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Proposal:
    """Pull-request mode (reconciler/proposals.py). What carries out the plan
    the main branch holds (a Job dispatched at its planned start, what the
    spokes report) is pushed there as reconcile_once pushes it; the new places
    go on top of it to the proposal `branch`, for review as a pull request. The
    branch is pushed only when its tree differs, so re-running changes nothing,
    and not at all with `keep_branch` (it holds someone else's commits).
    What the decision answered is remembered, as by `reconcile_once`."""
    remembered = repo.remembered()
    for attempt in range(1, attempts + 1):
        snapshot = _fetched(repo, bot=author.email)
        decision, previous = _decision(
            snapshot,
            repo=repo,
            now=now,
            observer=observer or DeclaredCapacity(),
            remembered=remembered,
            proposal=proposal_ledger(repo, branch),
        )
        carried = _outcome(snapshot, proposals.carried_out(decision, old=previous), old=previous)
        # The main branch's commit, and its ledger, that the proposal goes on.
        base, held = snapshot, previous
        if _carries_out(carried, old=previous):
            try:
                pushed = _pushed(repo, carried, author=author, now=now)
            except RemoteMovedError as moved:
                _back_off(
                    moved, attempt=attempt, attempts=attempts, backoff_s=backoff_s, sleep=sleep
                )
                continue
            except PushRejectedError as refused:
                # A team that reviews placements often protects main too.
                raise PushRejectedError(
                    f"{refused}; in pull-request mode Caspian pushes to {repo.branch} what "
                    "carries out the plan it holds (Jobs dispatched at their planned start, "
                    "what the spokes report): let its identity push there past the branch's "
                    "protection"
                ) from None
            carried = pushed.model_copy(update={"push_attempts": attempt})
            if carried.commit is not None:
                base, held = _after(snapshot, carried), carried.decision.ledger
        _remember(repo, decision)
        proposed = _outcome(base, decision, old=held)
        anew = proposals.new_places(held, decision.ledger)
        # The directory of a new spoke alone is no proposal: it goes with the
        # next change, to main or for review.
        if not proposed.changes or not anew:
            return Proposal(carried=carried, proposed=None)
        if keep_branch:
            return Proposal(carried=carried, proposed=proposed, anew=anew, kept=True)
        commit = _commit(repo, proposed, author=author, now=now)
        if commit is not None and repo.remote_tree(branch) != repo.tree_of(commit):
            repo.push(commit, branch=branch)
            metrics.COMMITS.labels(branch=branch).inc()
            proposed = proposed.model_copy(update={"commit": commit})
        return Proposal(carried=carried, proposed=proposed, anew=anew)
    raise AssertionError("unreachable")


MOST_HELD = 9  # jobs a decline names in a line: its commit names them all


class Declining(BaseModel):
    """A proposal a reviewer closed unmerged, recorded as declined (`decline_once`)."""

    model_config = ConfigDict(frozen=True)

    pull: str  # "pull request #7"
    commit: str | None = None  # pushed to the main branch, where it held any job
    held: tuple[str, ...] = ()  # the jobs it holds

    @property
    def named(self) -> str:
        """The jobs it holds, for a line of a log or a terminal."""
        named = list(self.held[:MOST_HELD])
        if len(self.held) > MOST_HELD:
            named.append(f"and {len(self.held) - MOST_HELD} more")
        return ", ".join(named)


def decline_once(
    repo: FleetRepo,
    *,
    branch: str,
    pull: str,
    now: datetime,
    author: Identity,
    attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Declining:
    """A reviewer closed the proposal on `branch` unmerged (`pull`): record on
    the main branch that its new places are declined (proposals.declined), so
    that the next proposal holds only what is still to review; where nothing
    is, the branch is withdrawn. No job is held where main holds what it
    proposed."""
    tip = repo.remote_tip(branch)
    done = Declining(pull=pull)
    for attempt in range(1, attempts + 1):
        snapshot = _fetched(repo, bot=author.email)
        main = previous_ledger(snapshot.files)
        proposal = _proposed_ledger(repo, tip, what=pull, otherwise="nothing is declined") or main
        fleet = fleet_of(snapshot, read=main)
        asks = {job.id: job.ask for job in fleet.jobs}
        held = proposals.declined(main, proposal, asks=asks, pull=pull, at=now)
        before = main.by_id()
        held_now = tuple(e.id for e in held.entries if e != before.get(e.id))
        if not held_now:
            break
        owned_files = {p: b for p, b in snapshot.files.items() if p.startswith(OWNED_PREFIXES)}
        commit = repo.commit(
            parent=snapshot.commit,
            files={**owned_files, ledger.LEDGER_PATH: render_ledger(held)},
            owned=OWNED_PREFIXES,
            message=proposals.decline_message(main, proposal, held=held, pull=pull),
            author=author,
            now=now,
        )
        try:
            if commit is not None:
                repo.push(commit)
                _saw(repo, commit, now=now)
        except RemoteMovedError as moved:
            _back_off(moved, attempt=attempt, attempts=attempts, backoff_s=backoff_s, sleep=sleep)
            continue
        done = Declining(pull=pull, commit=commit, held=held_now)
        log.info("%s was closed unmerged: declined %s", pull, done.named)
        break
    return done


def _proposed_ledger(
    repo: FleetRepo, tip: str | None, *, what: str, otherwise: str
) -> ledger.Ledger | None:
    """The ledger a proposal's commit `tip` holds. None where it has none, or
    none Caspian can read (edited in the pull request, say): the log says so,
    of `what`, and that `otherwise` happens."""
    raw = None if tip is None else repo.file_at(tip, ledger.LEDGER_PATH)
    if raw is None:
        return None
    try:
        return _parsed_ledger(raw)
    except ledger.LedgerError as error:
        log.warning("%s: its ledger cannot be read, so %s: %s", what, otherwise, error)
        return None


def proposal_ledger(repo: FleetRepo, branch: str) -> ledger.Ledger | None:
    """The ledger on the proposal `branch`, as last fetched: the plan under
    review, which a decision starts from (and `caspian explain --propose`
    tells a job's record in); None where there is none."""
    return _proposed_ledger(
        repo, repo.remote_tip(branch), what=branch, otherwise="the plan starts from main's"
    )


def _carries_out(carried: Outcome, *, old: ledger.Ledger) -> bool:
    """Whether the part of a decision for the main branch changes a job's
    record or Job there; the directory of a new spoke, or a ledger with no
    record yet, waits for the proposal."""
    if carried.decision.ledger.entries != old.entries:
        return True
    return any(
        path.startswith(RENDERED) and not path.endswith(SPOKE_FILES) for path in carried.changes
    )


def _after(snapshot: Snapshot, outcome: Outcome) -> Snapshot:
    """The snapshot of `outcome`'s commit: `snapshot` with Caspian's files as it wrote them."""
    assert outcome.commit is not None  # pushed
    kept = {
        path: data for path, data in snapshot.files.items() if not path.startswith(OWNED_PREFIXES)
    }
    return Snapshot(
        commit=outcome.commit,
        files={**kept, **outcome.files},
        links=snapshot.links,
        submodules=frozenset(p for p in snapshot.submodules if not p.startswith(OWNED_PREFIXES)),
    )


def _commit(repo: FleetRepo, outcome: Outcome, *, author: Identity, now: datetime) -> str | None:
    """The placement commit on exactly the commit that was read (None: no change)."""
    return repo.commit(
        parent=outcome.input_commit,
        files=outcome.files,
        owned=OWNED_PREFIXES,
        message=outcome.message,
        author=author,
        now=now,
    )


# What a reviewer's choice does, first in every pull request's body.
REVIEWING = (
    "Merge to approve these places. Close without merging to decline them: each "
    "job is then held (left unplaced, or where main has it) until its AppWrapper changes."
)
# GitHub refuses a pull request whose body is longer than 65,536 characters.
MOST_BODY = 60_000


def pull_request(proposed: Outcome, *, anew: Collection[str]) -> tuple[str, str]:
    """Title and markdown body of the pull request for a proposal that places
    the jobs `anew`: its commit's message, with the table of every job cut to
    those (a fleet's thousand jobs would be more than a forge takes, and hide
    what is to review), and the whole cut short, at a line, to what a forge
    takes."""
    subject, _, body = proposed.message.partition("\n\n")
    text, _, trailers = body.rstrip().rpartition("\n\n")
    decision = proposed.decision
    text = text.replace(
        messages.commit_table(proposed.previous, decision),
        f"Placed anew, for review ({len(anew)}; the commit message lists every job):\n\n"
        + messages.placement_table(decision, only=anew),
    )
    text = f"{REVIEWING}\n\n{text}"
    tail = f"\n\n```\n{trailers}\n```\n"
    if len(text) + len(tail) > MOST_BODY:
        kept = text[: MOST_BODY - len(tail) - 200].rsplit("\n", 1)[0]
        left = text.count("\n") - kept.count("\n")
        text = f"{kept}\n\n... and {left} more lines: the proposal's commit message has them all."
    return subject, text + tail


def withdrawal(*, base: str, tip: str) -> str:
    """The comment on a proposal closed because nothing is left to propose."""
    return (
        f"Caspian closes this: a reconcile of {base} at {tip[:12]} finds nothing to place "
        f"anew, so this proposal is out of date ({base} holds its placement already, or "
        "what it changed no longer applies). The next placement that changes something "
        "opens a new pull request."
    )


def _decide_on(
    snapshot: Snapshot,
    *,
    now: datetime,
    observer: Observer,
    repo: FleetRepo | None = None,
    remembered: str | None = None,
    proposal: ledger.Ledger | None = None,
) -> Outcome:
    decision, previous = _decision(
        snapshot, repo=repo, now=now, observer=observer, remembered=remembered, proposal=proposal
    )
    return _outcome(snapshot, decision, old=previous)


def _decision(
    snapshot: Snapshot,
    *,
    now: datetime,
    observer: Observer,
    repo: FleetRepo | None = None,
    remembered: str | None = None,
    proposal: ledger.Ledger | None = None,
) -> tuple[Decision, ledger.Ledger]:
    """The decision on a commit, with the ledger it was read from (and that
    of an open `proposal`, which it starts from). Without the `repo` the
    commit is of, no Job is found missing from its spoke (`observed`)."""
    now = now.astimezone(UTC)
    previous = previous_ledger(snapshot.files)
    fleet = fleet_of(snapshot, read=previous)
    sources, unsourced = gridcarbon.carbon_sources(fleet, read=previous)
    fleet = fleet.without_spokes(unsourced)
    for name in (*(s.name for s in fleet.spokes), *fleet.broken_spokes):
        metrics.SPOKE_FILE_LOADS.labels(spoke=name).set(0 if name in fleet.broken_spokes else 1)
    metrics.keep_only(
        metrics.SPOKE_FILE_LOADS, "spoke", {*(s.name for s in fleet.spokes), *fleet.broken_spokes}
    )
    for spoke in fleet.spokes:
        on = any(w.within(now, now + timedelta(seconds=1)) for w in spoke.spec.maintenance)
        metrics.SPOKE_IN_MAINTENANCE.labels(spoke=spoke.name).set(1 if on else 0)
    metrics.keep_only(metrics.SPOKE_IN_MAINTENANCE, "spoke", {s.name for s in fleet.spokes})
    spokes = observed(fleet, observer, read=previous, repo=repo, at=snapshot, now=now)
    for name, state in spokes.items():
        shut = syncwindows.barred(state.sync_windows, now, now + timedelta(seconds=1))
        metrics.SPOKE_SYNC_BARRED.labels(spoke=name).set(1 if shut else 0)
        metrics.SPOKE_UNSYNCED.labels(spoke=name).set(0 if state.unsynced is None else 1)
    metrics.keep_only(metrics.SPOKE_SYNC_BARRED, "spoke", set(spokes))
    metrics.keep_only(metrics.SPOKE_UNSYNCED, "spoke", set(spokes))
    metrics.record_not_on_spoke(
        arrivals.overdue(spokes, now=now, after=arrivals.ARGO_CD_SLACK),
        unresumed=arrivals.overdue(
            spokes, now=now, after=arrivals.ARGO_CD_SLACK, field="unresumed"
        ),
    )
    forecasts = gridcarbon.fetch_forecasts(fleet, now=now, sources=sources)
    measured = gridcarbon.fetch_measured(fleet, now=now, sources=sources)
    with metrics.SOLVE_SECONDS.time():
        decision = deciding.decide(
            fleet=fleet,
            ledger=previous,
            spokes=spokes,
            forecasts=forecasts,
            now=now,
            remembered=remembered,
            proposal=proposal,
            measured=measured,
        )
    metrics.PLANS.labels(how="kept" if decision.plan.method == keeping.METHOD else "solved").inc()
    estimated, baseline, _ = messages.savings(decision.ledger)
    phases = Counter(e.phase for e in decision.ledger.entries if e.of_a_job)
    metrics.record_ledger(
        # Every phase, so that one that emptied reads 0 rather than its last count.
        {phase.value: phases[phase] for phase in Phase},
        late=sum(1 for e in decision.ledger.entries if e.late and e.phase in UNFINISHED),
        given_up=len(decision.given_up),
        waiting=len(decision.waiting),
        declined=sum(1 for e in decision.ledger.entries if e.declined is not None),
        planned=estimated,
        baseline=baseline,
    )
    metrics.record_gone(
        Counter(e.spoke or "" for e in decision.ledger.entries if e.gone_since is not None),
        spokes={s.name for s in fleet.spokes},
    )
    metrics.record_capacity(
        [
            (pools.spoke_of(room.name), room.name, {r: room.resource(r)[0] for r in RESOURCES})
            for room in decision.instance.spokes
        ]
    )
    return decision, previous


def observed(
    fleet: Fleet,
    observer: Observer,
    *,
    read: ledger.Ledger,
    repo: FleetRepo | None,
    at: Snapshot,
    now: datetime,
) -> dict[str, SpokeState]:
    """What `observer` sees of the spokes, with the Jobs the branch has held
    for a spoke (since when, by `repo`'s history up to the commit `at`) that
    its API does not list, and the dispatched ones it holds suspended still:
    Argo CD has not applied them, or their resume. A spoke that lists none of
    its Jobs takes no new work, and one the last ledger says was cut off so
    stays so a while (`arrivals.unsynced`)."""
    spokes = observer.observe(fleet)
    if repo is None:
        return spokes
    _saw(repo, at.commit, now=now)
    waiting = arrivals.unresumed(read.entries, spokes, files=at.files)
    if waiting:
        held = repo.held_since(at.commit, list(waiting), as_is=True, now=now)
        spokes = arrivals.noted(spokes, waiting, held_since=held, now=now, field="unresumed")
    missing = arrivals.unlisted(read.entries, spokes)
    if missing:
        held = repo.held_since(at.commit, list(missing), now=now)
        spokes = arrivals.noted(spokes, missing, held_since=held, now=now)
    after = fleet.policy.spec.requeue_unscheduled
    return arrivals.unsynced(spokes, now=now, after=after, cut=read.unsynced)


def _outcome(snapshot: Snapshot, decision: Decision, *, old: ledger.Ledger) -> Outcome:
    """What `decision` makes of the files of `snapshot`, whose ledger is `old`."""
    files = render(decision, previous=snapshot.files, known=_RENDERS)
    changes = diff(snapshot.files, files)
    # The commit drops everything under the owned prefixes it does not write,
    # a submodule too.
    changes.update(
        (printable(path), "deleted")
        for path in sorted(snapshot.submodules)
        if path.startswith(OWNED_PREFIXES)
    )
    # A held job's manifest is kept as committed, hand edit and all.
    edited = hand_edits(snapshot.files, submodules=snapshot.submodules)
    reverted = [p for p in edited if p.file in changes]
    for problem in reverted:
        log.warning("reverting %s", problem.line())
    was, put_back = old.by_id(), {problem.file for problem in reverted}
    message = messages.commit_message(
        old=old,
        decision=decision,
        input_commit=snapshot.commit,
        reverted=[problem.file for problem in reverted],
        pruned=[
            e.id
            for e in decision.ledger.entries
            if decision.retired(e) and changes.get(job_path(e)) == "deleted"
        ],
        # Their Job's file changed, their record did not: a ConfigMap of theirs
        # was edited, say. Without a word the commit would seem to change nothing.
        rewritten=[
            e.id
            for e in decision.ledger.entries
            if e.on_a_spoke
            and was.get(e.id) == e
            and changes.get(job_path(e)) == "modified"
            and job_path(e) not in put_back
        ],
    )
    return Outcome(
        input_commit=snapshot.commit,
        decision=decision,
        previous=old,
        files=files,
        changes=changes,
        message=message,
    )


def previous_ledger(files: Mapping[str, bytes]) -> ledger.Ledger:
    """The ledger of a commit. Missing while rendered/ still holds Jobs, it was
    deleted by hand: planning afresh could suspend Jobs that already run (a
    re-planned start renders `suspend: true`), so refuse, as for a hand edit."""
    raw = files.get(ledger.LEDGER_PATH)
    jobs = [
        path
        for path in files
        if path.startswith(RENDERED)
        and path.endswith(".yaml")
        and path.rsplit("/", 1)[-1] not in SPOKE_FILES
    ]
    if raw is None and jobs:
        raise ledger.LedgerError(
            f"{ledger.LEDGER_PATH} is missing while rendered/ holds {len(jobs)} Jobs: without "
            "it Caspian cannot tell which of them were dispatched. Restore it "
            f"(git log -- {ledger.LEDGER_PATH}; git checkout COMMIT -- {ledger.LEDGER_PATH}) "
            "and reconcile again"
        )
    return _parsed_ledger(raw)


@functools.lru_cache(maxsize=3)
def _parsed_ledger(raw: bytes | None) -> ledger.Ledger:
    """`ledger.parse`, remembering the last few: a watcher reads main's ledger,
    an open proposal's, and the one its own last commit wrote, at every
    reconcile, and they change only when a reconcile commits. A Ledger is
    frozen, so one parse can be shared. At 5000 records a parse took 1.77 s
    (`caspian bench ledger --records 5000`, libyaml). A ledger not met
    before is mostly records that are, read once already."""
    return ledger.parse(raw, known=_LEDGER_RECORDS)


# What each ledger record read to at the last parse in this process.
_LEDGER_RECORDS = ledger.Records()


def hand_edits(files: Mapping[str, bytes], *, submodules: Collection[str] = ()) -> list[Problem]:
    """Manifests under rendered/ not as Caspian wrote them, and submodules put
    where Caspian writes. The ledger is checked where it is read
    (`ledger.parse`), since a hand-edited one stops the reconcile."""
    edits = [
        Problem(
            file=path,
            field="-",
            reason=f"{why}: Caspian owns rendered/ and rewrites it at every reconcile; make "
            f"the change in jobs/, spokes/ or caspian.yaml and revert this file "
            f"(git checkout -- {path})",
        )
        for path, raw in sorted(files.items())
        if path.startswith(RENDERED) and (why := owned.hand_edit(raw))
    ]
    # Argo CD may check a submodule out with the rest, and apply another repo's
    # manifests to a spoke past every plan.
    edits.extend(
        Problem(
            file=path,
            field="-",
            reason="a git submodule: Caspian owns rendered/ and status/, and takes it out "
            "at the next reconcile; make the change in jobs/, spokes/ or caspian.yaml "
            f"(git rm {path})",
        )
        for path in sorted(submodules)
        if path.startswith(OWNED_PREFIXES)
    )
    return edits


def diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> dict[str, str]:
    """Changes to Caspian's own files only, by their names as printed."""
    changes = {}
    for path in sorted(set(before) | set(after)):
        if not path.startswith(OWNED_PREFIXES):
            continue
        if path not in after:
            changes[printable(path)] = "deleted"
        elif path not in before:
            changes[printable(path)] = "added"
        elif before[path] != after[path]:
            changes[printable(path)] = "modified"
    return changes
