"""`caspian watch`: the reconcile loop that runs all day next to Argo CD.

It reconciles on a timer, at every slot boundary (so that Jobs are dispatched
when their start comes), and whenever it is told something changed: a push
webhook, or a ref moving in a local repository. Bursts are debounced. When
neither the remote tip nor the slot changed since the last reconcile, it does
not decide again (a no-op costs one fetch). A reconcile that fails is logged and
counted, and the loop goes on; stopping lets the current reconcile finish. One
reconcile that runs past `stuck_after_s` is what /livez reports, so that the
kubelet restarts a loop held by something no timeout bounds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from reconciler import ledger, metrics, proposing, reconciling
from reconciler.fleet import FleetConfigError
from reconciler.forge import ForgeError
from reconciler.gitrepo import FleetRepo, GitError, Identity
from reconciler.observing import Observer
from reconciler.proposing import Proposing

log = logging.getLogger("caspian.watch")


class WatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    interval_s: float = 60.0
    debounce_s: float = 1.0
    proposing: Proposing | None = None  # pull-request mode
    # Longer than the policy's solver timeLimit and what fetching, observing and
    # pushing take: an hour, where the default limit is 20 s and a reconcile
    # comes at every 15-minute slot.
    stuck_after_s: float = 3600.0


class Status(BaseModel):
    """What /healthz reports."""

    result: str = "starting"
    at: datetime | None = None
    input_commit: str | None = None
    commit: str | None = None
    error: str = ""
    # Pull-request mode: what became of the pull request ("#7 updated"), and
    # how many jobs its proposal places anew.
    pull: str = ""
    awaiting_review: int = 0
    reconciling_since: datetime | None = None  # the reconcile running now, if one is


class _Done(NamedTuple):
    """What one reconcile did."""

    outcome: reconciling.Outcome  # of the whole decision
    read: str  # the main branch's commit it decided on
    tip: str  # the main branch's tip after it
    commit: str | None  # the commit it pushed (to main, or else a proposal), if any
    pull: str = ""
    awaiting_review: int = 0


class Watcher:
    def __init__(
        self,
        repo: FleetRepo,
        *,
        author: Identity,
        observer: Observer,
        settings: WatchSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.author = author
        self.observer = observer
        self.settings = settings
        self.clock = clock
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.status = Status()
        self._seen: tuple[str, float] | None = None  # (tip, slot start) last decided on
        self._slot_seconds = 900
        self._skipping: set[str] = set()  # the problem lines logged, while they last
        # Set by a trigger from another thread: the next reconcile decides
        # whatever the tip and slot, even one that began before it.
        self._anew = False
        # The reconcile running now: when it began, by the clock and monotonic.
        self._running: tuple[datetime, float] | None = None

    def trigger(self, reason: str, *, anew: bool = False) -> None:
        """Wake the loop; `anew`: reconcile even if the tip and slot are those
        last decided on (a pull request closed changes neither)."""
        log.info("woken: %s", reason)
        if anew:
            self._anew = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.reconcile()
            self.wake.wait(self._until_next())
            if self.wake.is_set() and not self.stopping.is_set():
                time.sleep(self.settings.debounce_s)  # let a burst of pushes land first
            self.wake.clear()
        log.info("stopped")

    def _until_next(self) -> float:
        now = self.clock().timestamp()
        boundary = math.floor(now / self._slot_seconds + 1) * self._slot_seconds
        return max(0.05, min(self.settings.interval_s, boundary - now + 0.5))

    @property
    def reconciling_since(self) -> datetime | None:
        running = self._running
        return running[0] if running else None

    def stuck(self) -> str | None:
        """Why the loop is taken to be stuck: one reconcile has run past
        `stuck_after_s`. None while it is not."""
        running = self._running
        if running is None:
            return None
        began, started = running
        took = time.monotonic() - started
        if took <= self.settings.stuck_after_s:
            return None
        return (
            f"the reconcile begun at {began.strftime('%Y-%m-%dT%H:%M:%SZ')} has run {took:.0f} s, "
            f"past --stuck-after {self.settings.stuck_after_s:g} s"
        )

    def reconcile(self) -> Status:
        started = time.monotonic()
        now = self.clock()
        self._running = (now, started)
        try:
            status = self._reconcile(now)
        finally:
            self._running = None
        took = time.monotonic() - started
        if status.result != "skipped":  # a fetch that found nothing new is no reconcile's time
            metrics.RECONCILE_SECONDS.observe(took)
        if took > self.settings.stuck_after_s / 2:
            log.warning(
                "a reconcile took %.0f s, over half of --stuck-after (%g s): raise it, or "
                "/livez fails on a longer one and the kubelet restarts caspian watch",
                took,
                self.settings.stuck_after_s,
            )
        return status

    def _reconcile(self, now: datetime) -> Status:
        slot = math.floor(now.timestamp() / self._slot_seconds) * self._slot_seconds
        try:
            tip = self.repo.fetch_tip()
            anew, self._anew = self._anew, False
            if self._seen == (tip, slot) and not anew:
                self.status = Status(result="skipped", at=now, input_commit=tip)
                metrics.RECONCILES.labels(result="skipped").inc()
                metrics.LAST_SUCCESS.set(now.timestamp())  # idle is healthy
                return self.status
            done = self._once(now)
            decision = done.outcome.decision
            self._log_problems([problem.line() for problem in decision.problems])
            self._slot_seconds = decision.window.slot_seconds
            self._seen = (done.tip, decision.window.start.timestamp())
            result = "committed" if done.commit else "unchanged"
            if done.outcome.partial:
                result += "_partial"
            self.status = Status(
                result=result,
                at=now,
                input_commit=done.read,
                commit=done.commit,
                pull=done.pull,
                awaiting_review=done.awaiting_review,
            )
        except (FleetConfigError, ledger.LedgerError) as error:
            self.status = Status(result="invalid", at=now, error=str(error))
            log.error("cannot plan: %s", error)
        except (GitError, ForgeError) as error:
            self.status = Status(result="error", at=now, error=str(error))
            log.error("%s", error)
        except Exception as error:  # the loop must outlive any one reconcile
            self.status = Status(result="error", at=now, error=repr(error))
            log.exception("reconcile failed")
        metrics.RECONCILES.labels(result=self.status.result).inc()
        if self.status.result not in ("invalid", "error"):
            metrics.LAST_SUCCESS.set(now.timestamp())
        return self.status

    def _log_problems(self, lines: list[str]) -> None:
        """Each file skipped, as it first is: the one-shot commands print these
        with their outcome, and here the log is all. Said again at every
        reconcile, a file left broken for a day would fill the log; it stays
        in the ledger, and in caspian_jobs{phase="Invalid"}."""
        for line in lines:
            if line not in self._skipping:
                log.warning("skipping %s", line)
        files = {line.split(":", 1)[0] for line in lines}
        for file in sorted({line.split(":", 1)[0] for line in self._skipping} - files):
            log.info("no longer skipping %s", file)
        self._skipping = set(lines)

    def _once(self, now: datetime) -> _Done:
        if self.settings.proposing is None:
            outcome = reconciling.reconcile_once(
                self.repo, now=now, author=self.author, observer=self.observer
            )
            tip = outcome.commit or outcome.input_commit
            return _Done(outcome, read=outcome.input_commit, tip=tip, commit=outcome.commit)
        done = proposing.propose(
            self.repo, self.settings.proposing, now=now, author=self.author, observer=self.observer
        )
        return _Done(
            done.outcome,
            read=done.proposal.carried.input_commit,
            tip=done.tip,
            commit=done.commit,
            pull=done.pull,
            awaiting_review=len(done.proposal.anew),
        )
