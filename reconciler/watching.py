"""`caspian watch`: the reconcile loop that runs all day next to Argo CD.

It reconciles on a timer, at every slot boundary (so that Jobs are dispatched
when their start comes), and whenever it is told something changed: a push
webhook, or a ref moving in a local repository. Bursts are debounced. When
neither the remote tip nor the slot changed since the last reconcile, it does
not decide again (a no-op costs one fetch). A reconcile that fails is logged and
counted, and the loop goes on; stopping lets the current reconcile finish.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from reconciler import ledger, metrics, reconciling
from reconciler.fleet import FleetConfigError
from reconciler.forge import Forge, ForgeError
from reconciler.gitrepo import FleetRepo, GitError, Identity
from reconciler.observing import Observer

log = logging.getLogger("caspian.watch")


class WatchSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    interval_s: float = 60.0
    debounce_s: float = 1.0
    propose: str | None = None  # proposal branch: pull-request mode
    pr_file: Path | None = None
    forge: Forge | None = None


class Status(BaseModel):
    """What /healthz reports."""

    result: str = "starting"
    at: datetime | None = None
    input_commit: str | None = None
    commit: str | None = None
    error: str = ""


class _Done(NamedTuple):
    """What one reconcile did."""

    outcome: reconciling.Outcome  # of the whole decision, or its part that went to main
    tip: str  # the main branch's tip after it
    commit: str | None  # the commit it pushed (to main, or else a proposal), if any


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

    def trigger(self, reason: str) -> None:
        log.info("woken: %s", reason)
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

    def reconcile(self) -> Status:
        started = time.monotonic()
        now = self.clock()
        slot = math.floor(now.timestamp() / self._slot_seconds) * self._slot_seconds
        try:
            tip = self.repo.fetch_tip()
            if self._seen == (tip, slot):
                self.status = Status(result="skipped", at=now, input_commit=tip)
                metrics.RECONCILES.labels(result="skipped").inc()
                metrics.LAST_SUCCESS.set(now.timestamp())  # idle is healthy
                return self.status
            done = self._once(now)
            decision = done.outcome.decision
            # The one-shot commands print these with their outcome; here the log is all.
            for problem in decision.problems:
                log.warning("skipping %s", problem.line())
            self._slot_seconds = decision.window.slot_seconds
            self._seen = (done.tip, decision.window.start.timestamp())
            result = "committed" if done.commit else "unchanged"
            if done.outcome.partial:
                result += "_partial"
            self.status = Status(
                result=result, at=now, input_commit=done.outcome.input_commit, commit=done.commit
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
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        return self.status

    def _once(self, now: datetime) -> _Done:
        branch = self.settings.propose
        if not branch:
            outcome = reconciling.reconcile_once(
                self.repo, now=now, author=self.author, observer=self.observer
            )
            return _Done(outcome, tip=outcome.commit or outcome.input_commit, commit=outcome.commit)
        proposal = reconciling.propose_once(
            self.repo, branch=branch, now=now, author=self.author, observer=self.observer
        )
        carried, proposed = proposal.carried, proposal.proposed
        tip = carried.commit or carried.input_commit
        if proposed is None:
            self._withdraw(branch=branch, tip=tip)
            return _Done(carried, tip=tip, commit=carried.commit)
        title, body = reconciling.pull_request(proposed)
        if self.settings.pr_file is not None:
            self.settings.pr_file.write_text(f"# {title}\n\n{body}")
        if self.settings.forge is not None:
            action, number = self.settings.forge.open_or_update(
                head=branch, base=self.repo.branch, title=title, body=body
            )
            log.info("pull request #%d %s", number, action)
        return _Done(proposed, tip=tip, commit=carried.commit or proposed.commit)

    def _withdraw(self, *, branch: str, tip: str) -> None:
        """Nothing is left to propose: the main branch holds the plan (its pull
        request was merged, or someone reconciled it directly), or what was
        proposed no longer applies (the jobs it placed were removed, say). A
        proposal left open would be merged as it is, out of date; so, as
        dependency bots do, it is closed with a comment and its branch deleted.
        The next placement that changes something proposes anew."""
        if self.settings.pr_file is not None:
            self.settings.pr_file.unlink(missing_ok=True)
        # Without its branch nothing proposed is left to merge (GitHub and
        # Gitea close its pull request), and an idle reconcile asks no forge.
        if self.repo.remote_tree(branch) is None:
            return
        if self.settings.forge is not None:
            number = self.settings.forge.close(
                head=branch,
                base=self.repo.branch,
                comment=reconciling.withdrawal(base=self.repo.branch, tip=tip),
            )
            if number is not None:
                log.info("pull request #%d closed: nothing left to propose", number)
        self.repo.delete_branch(branch)
        log.info("deleted %s: nothing left to propose", branch)
