"""One reconcile in pull-request mode, for `caspian watch` and `caspian
reconcile --once`: a pull request a reviewer closed unmerged recorded as
declined (`reconciling.decline_once`), then `reconciling.propose_once`, its
pull request opened, updated or closed on the forge, and the pull request's
file written or removed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from reconciler import metrics, reconciling
from reconciler.forge import Forge, ForgeError
from reconciler.gitrepo import FleetRepo, Identity
from reconciler.observing import Observer

log = logging.getLogger("caspian.propose")


class Proposing(BaseModel):
    """Pull-request mode's settings."""

    model_config = ConfigDict(frozen=True)

    branch: str  # the proposal branch
    pr_file: Path | None = None  # where the pull request's title and body go
    forge: Forge | None = None  # where the pull request is opened


class Round(BaseModel):
    """What one reconcile in pull-request mode did."""

    model_config = ConfigDict(frozen=True)

    proposal: reconciling.Proposal
    pull: str = ""  # what became of its pull request: "#7 opened", "#7 closed"...
    # A pull request a reviewer closed unmerged, found first and recorded.
    declining: reconciling.Declining | None = None

    @property
    def outcome(self) -> reconciling.Outcome:
        """Of the whole decision: the proposal's, which holds it all, where
        there is one."""
        return self.proposal.proposed or self.proposal.carried

    @property
    def commit(self) -> str | None:
        """The last commit it pushed, to main or else for review, if any."""
        proposed = self.proposal.proposed
        return (
            self.proposal.carried.commit
            or (proposed.commit if proposed else None)
            or (self.declining.commit if self.declining else None)
        )

    @property
    def tip(self) -> str:
        """The main branch's tip after it."""
        carried = self.proposal.carried
        return carried.commit or carried.input_commit


def propose(
    repo: FleetRepo,
    proposing: Proposing,
    *,
    now: datetime,
    author: Identity,
    observer: Observer | None = None,
) -> Round:
    """Propose what a reconcile places anew, on top of what it carries out on
    the main branch; then write the pull request's file, and open or update
    its pull request, or close it where nothing is left to propose. First, a
    pull request a reviewer closed unmerged declines what it proposed. A
    branch that holds someone else's commits, under review, is left as it is."""
    main = repo.fetch_tip()
    closed = _closed_unmerged(repo, proposing)
    declining = (
        reconciling.decline_once(
            repo, branch=proposing.branch, pull=f"pull request #{closed}", now=now, author=author
        )
        if closed is not None
        else None
    )
    others = _others_under_review(repo, proposing, main=main, bot=author.email)
    proposal = reconciling.propose_once(
        repo,
        branch=proposing.branch,
        now=now,
        author=author,
        observer=observer,
        keep_branch=bool(others),
    )
    done = Round(
        proposal=proposal,
        declining=declining,
        pull=f"#{closed} declined" if closed is not None else "",
    )
    metrics.AWAITING_REVIEW.set(len(proposal.anew))
    if others:
        log.warning(
            "%s holds commits by others (%s): it is left as it is; merge or close its pull "
            "request, or delete the branch, for Caspian to propose there again",
            proposing.branch,
            ", ".join(others[:3]),
        )
        return done.model_copy(update={"pull": "left as it is: it holds commits by others"})
    if proposal.proposed is None:
        return done.model_copy(
            update={"pull": _withdraw(repo, proposing, tip=done.tip) or done.pull}
        )
    title, body = reconciling.pull_request(proposal.proposed, anew=proposal.anew)
    if proposing.pr_file is not None:
        proposing.pr_file.write_text(f"# {title}\n\n{body}")
    if proposing.forge is None:
        return done
    action, number = proposing.forge.open_or_update(
        head=proposing.branch, base=repo.branch, title=title, body=body
    )
    log.info("pull request #%d %s", number, action)
    return done.model_copy(update={"pull": f"#{number} {action}"})


def _closed_unmerged(repo: FleetRepo, proposing: Proposing) -> int | None:
    """The number of the pull request from the proposal branch, as it is now,
    that someone closed without merging it, where none is open: a reviewer's
    no, as dependency bots read one. Caspian's own closes delete the branch."""
    if proposing.forge is None:
        return None
    tip = repo.remote_tip(proposing.branch)
    if tip is None:
        return None
    try:
        return proposing.forge.declined(head=proposing.branch, base=repo.branch, sha=tip)
    except ForgeError as error:
        # A forge that is down holds up no dispatch on main: it is asked again
        # at the next reconcile.
        log.warning("cannot tell whether the pull request was closed: %s", error)
        return None


def _others_under_review(
    repo: FleetRepo, proposing: Proposing, *, main: str, bot: str
) -> list[str]:
    """The commits on the proposal branch that main lacks and that someone
    other than Caspian made (an edit in the pull request, its "update branch"
    button), while its pull request is open, or where no forge can say: a bot
    that force-pushed over them would drop them."""
    others = repo.others_on(proposing.branch, base=main, bot=bot)
    if not others or proposing.forge is None:
        return others
    try:
        under_review = proposing.forge.is_open(head=proposing.branch, base=repo.branch)
    except ForgeError as error:
        log.warning("cannot tell whether the pull request is open: %s", error)
        return others
    return others if under_review else []


def _withdraw(repo: FleetRepo, proposing: Proposing, *, tip: str) -> str:
    """Nothing is left to propose: the main branch holds the plan (its pull
    request was merged, or someone reconciled it directly), or what was
    proposed no longer applies (the jobs it placed were removed, say). A
    proposal left open would be merged as it is, out of date; so, as
    dependency bots do, it is closed with a comment and its branch deleted.
    The next placement that changes something proposes anew. Says what
    became of the pull request ("" where none was open)."""
    if proposing.pr_file is not None:
        proposing.pr_file.unlink(missing_ok=True)
    branch = proposing.branch
    # Without its branch nothing proposed is left to merge (GitHub closes its
    # pull request then), and an idle reconcile asks no forge.
    if repo.remote_tree(branch) is None:
        return ""
    pull = ""
    if proposing.forge is not None:
        number = proposing.forge.close(
            head=branch, base=repo.branch, comment=reconciling.withdrawal(base=repo.branch, tip=tip)
        )
        if number is not None:
            log.info("pull request #%d closed: nothing left to propose", number)
            pull = f"#{number} closed"
    repo.delete_branch(branch)
    log.info("deleted %s: nothing left to propose", branch)
    return pull
