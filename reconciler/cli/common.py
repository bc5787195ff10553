"""What the commands share: the exit codes, the options naming a fleet repo
and its observer, `--now`, the bot's identity, and checks of paths to write."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import click
from pydantic import ValidationError

from reconciler import signing
from reconciler.forge import Forge, ForgeKind
from reconciler.gitrepo import FleetRepo, Identity, branch_refusal, origin_url
from reconciler.observing import DeclaredCapacity, Observer, StatusFilledIn
from reconciler.proposing import Proposing
from reconciler.quantities import timestamp

EXIT_ERROR = 1
EXIT_PARTIAL = 3


def parse_now(value: str | None) -> datetime:
    """`--now` as given, else the clock's now."""
    if not value:
        return datetime.now(UTC)
    try:
        return timestamp(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--now'") from None


def bot_author() -> Identity:
    """The bot identity, and its signing key, from the environment. A key that
    cannot sign stops the command here, before anything is decided."""
    try:
        key = signing.from_settings(
            os.environ.get("CASPIAN_SIGNING_KEY"), os.environ.get("CASPIAN_SIGNING_FORMAT")
        )
        if key is not None:
            signing.sign("caspian: can this key sign?\n", key=key)
    except signing.SigningError as error:
        raise click.ClickException(str(error)) from None
    name = os.environ.get("CASPIAN_GIT_AUTHOR_NAME", "").strip() or Identity().name
    try:
        return Identity(name=name, email=bot_email(), signing=key)
    except ValidationError as error:
        said = error.errors()[0]
        variable = f"CASPIAN_GIT_AUTHOR_{str(said['loc'][0]).upper()}"
        reason = said["msg"].removeprefix("Value error, ")
        raise click.ClickException(
            f"{variable}: {reason}: set it to a plain name and email, as in "
            f"{Identity().name} <{Identity().email}>"
        ) from None


def bot_email() -> str:
    """The email Caspian's commits are authored with, as `bot_author` has it
    (unset or empty: the default)."""
    return os.environ.get("CASPIAN_GIT_AUTHOR_EMAIL", "").strip() or Identity().email


@dataclass(frozen=True)
class Target:
    """The fleet repo a command works on, and where it learns the spokes' state."""

    url: str
    branch: str
    cache_dir: Path | None
    observer_kind: str  # "declared", "kube" or "argocd"
    kubeconfig: str | None
    root: str = ""  # the fleet repo's directory within the git repo
    # The kubeconfig contexts of the Argo CDs to read: a hub's, or each spoke's own.
    argocd_contexts: tuple[str, ...] = ()
    argocd_namespace: str = "argocd"
    # Each spoke's own Argo CD, read through its kubeContext (beside those above).
    argocd_on_spokes: bool = False

    def repo(self) -> FleetRepo:
        return FleetRepo(self.url, branch=self.branch, cache_dir=self.cache_dir, root=self.root)

    def observer(self) -> Observer:
        if self.observer_kind == "declared":
            return DeclaredCapacity()
        from reconciler.kube import ArgoCDObserver, ArgoCDs, KubeObserver, SpokesArgoCDs

        def through(context: str | None) -> ArgoCDObserver:
            return ArgoCDObserver(
                kubeconfig=self.kubeconfig, context=context, namespace=self.argocd_namespace
            )

        named = [through(context) for context in self.argocd_contexts]
        argocd: Observer
        if self.argocd_on_spokes:
            argocd = SpokesArgoCDs(
                kubeconfig=self.kubeconfig, namespace=self.argocd_namespace, others=named
            )
        else:
            each = named or [through(None)]  # the current context's
            argocd = each[0] if len(each) == 1 else ArgoCDs(each)
        if self.observer_kind == "argocd":
            return argocd
        spokes = KubeObserver(kubeconfig=self.kubeconfig)
        # Spokes without a kubeContext then get their Jobs' status from Argo CD.
        told = self.argocd_contexts or self.argocd_on_spokes
        return StatusFilledIn(spokes, argocd) if told else spokes


_REPO_HELP = "Fleet repo: a path to a bare repo or any git URL."
_TARGET_OPTIONS = (
    click.option("--repo", "url", required=True, help=_REPO_HELP),
    click.option("--branch", default="main", show_default=True),
    click.option(
        "--path",
        "root",
        default="",
        envvar="CASPIAN_FLEET_PATH",
        help="The fleet repo's directory within the git repo (default: its root), for a "
        "fleet kept in a directory of a larger repo.",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where Caspian keeps its bare mirror (default: ~/.cache/caspian/repos/...).",
    ),
    click.option(
        "--observer",
        type=click.Choice(["declared", "kube", "argocd"]),
        default="declared",
        show_default=True,
        help="Spoke capacity and Job status: as declared in spokes/; from each spoke's API "
        "server (its kubeContext), with declared capacity for spokes without one; or declared "
        "capacity with Job status from the hub's Argo CD Applications.",
    ),
    click.option(
        "--argocd-context",
        multiple=True,
        help="With --observer argocd: the kubeconfig context of Argo CD's cluster "
        "(default: the current context; 'in-cluster' for the pod's own service account). "
        "With --observer kube: spokes without a kubeContext get their Jobs' status from "
        "this Argo CD. Once for each Argo CD where each spoke runs its own: each spoke is "
        "read from the one that holds its Application.",
    ),
    click.option(
        "--argocd-on-spokes",
        is_flag=True,
        help="Where each spoke runs its own Argo CD: read it through the spoke's "
        "kubeContext (and any --argocd-context besides). A spoke added to spokes/ is read "
        "from the next reconcile on.",
    ),
    click.option(
        "--argocd-namespace",
        default="argocd",
        show_default=True,
        help="With --observer argocd: the namespace of Argo CD's Applications.",
    ),
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        envvar="KUBECONFIG",
        help="Kubeconfig holding the spokes' contexts (default: $KUBECONFIG, ~/.kube/config).",
    ),
)


def repo_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options naming the fleet repo alone, handed to `command` as a
    `target` that observes nothing (`history`)."""

    @functools.wraps(command)
    def with_repo(
        *args: Any, url: str, branch: str, root: str, cache_dir: Path | None, **rest: Any
    ) -> None:
        target = Target(
            url=url,
            branch=branch,
            cache_dir=cache_dir,
            observer_kind="declared",
            kubeconfig=None,
            root=root,
        )
        command(*args, target=target, **rest)

    for option in reversed(_TARGET_OPTIONS[:4]):
        with_repo = option(with_repo)
    return with_repo


# plan and explain: where --work-tree names a clone, the fleet repo is its origin.
_REPO_OR_ORIGIN = click.option(
    "--repo", "url", help=f"{_REPO_HELP} With --work-tree, that clone's origin by default."
)


def planning_target_options(command: Callable[..., None]) -> Callable[..., None]:
    """`target_options` for plan and explain, whose --work-tree clone names
    the fleet repo where --repo does not."""
    return target_options(command, repo=_REPO_OR_ORIGIN)


def target_options(
    command: Callable[..., None], *, repo: Callable[[Any], Any] = _TARGET_OPTIONS[0]
) -> Callable[..., None]:
    """The options naming the fleet repo and the observer, handed to `command` as
    one `target`: plan, reconcile, explain and watch take the same ones, but
    for `repo`, the --repo option (one plan and explain may leave out)."""

    @functools.wraps(command)
    def with_target(
        *args: Any,
        url: str | None,
        branch: str,
        root: str,
        cache_dir: Path | None,
        observer: str,
        kubeconfig: str | None,
        argocd_context: tuple[str, ...],
        argocd_on_spokes: bool,
        argocd_namespace: str,
        **rest: Any,
    ) -> None:
        if url is None:  # only where --repo may be left out
            url = _origin(rest.get("work_tree"))
        target = Target(
            url=url,
            branch=branch,
            cache_dir=cache_dir,
            observer_kind=observer,
            kubeconfig=kubeconfig,
            argocd_contexts=argocd_context,
            argocd_namespace=argocd_namespace,
            argocd_on_spokes=argocd_on_spokes,
            root=root,
        )
        command(*args, target=target, **rest)

    # click lists options in the order of their decorators, outermost first.
    for option in reversed((repo, *_TARGET_OPTIONS[1:])):
        with_target = option(with_target)
    return with_target


def _origin(work_tree: Path | None) -> str:
    """The fleet repo, where --repo is left out: the origin of the clone that
    --work-tree names."""
    if work_tree is None:
        raise click.MissingParameter(param_hint="'--repo'", param_type="option")
    url = origin_url(work_tree)
    if url is None:
        raise click.UsageError(
            f"{work_tree} is no clone with a remote named origin: give --repo, the fleet repo"
        )
    return url


def _branch(context: click.Context, parameter: click.Parameter, name: str | None) -> str | None:
    """A branch's name as git takes one, refused here rather than by libgit2
    once the decision is made."""
    if name is not None and (why := branch_refusal(name)):
        raise click.BadParameter(why)
    return name


_PROPOSAL_OPTIONS = (
    click.option(
        "--propose",
        envvar="CASPIAN_PROPOSE",
        metavar="BRANCH",
        callback=_branch,
        help="Pull-request mode: new places go to BRANCH for review; what carries out the "
        "plan the main branch holds (Jobs started at their slot) goes there at once.",
    ),
    click.option(
        "--pr-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="With --propose: write the pull request's title and body here.",
    ),
)
# Where the fleet repo's pull requests are: reconcile --propose opens its own
# there, plan --comment comments on one.
_FORGE_OPTIONS = (
    click.option(
        "--forge",
        envvar="CASPIAN_FORGE",
        type=click.Choice(["github", "gitea", "gitlab"]),
        help="The forge of the fleet repo's pull requests (token in CASPIAN_FORGE_TOKEN): "
        "with reconcile --propose, open, update or close Caspian's there; with plan "
        "--comment, comment there.",
    ),
    click.option(
        "--forge-url",
        envvar="CASPIAN_FORGE_URL",
        help="The forge's API root, e.g. https://api.github.com or https://gitlab.example/api/v4.",
    ),
    click.option(
        "--forge-repo",
        envvar="CASPIAN_FORGE_REPO",
        metavar="OWNER/NAME",
        help="The fleet repo on the forge (GitLab: the project's path, group/subgroup/name).",
    ),
)


def _forge_token() -> str:
    # A value read from a file ends with a line break no header may carry.
    return os.environ.get("CASPIAN_FORGE_TOKEN", "").strip()


def proposal_options(command: Callable[..., None]) -> Callable[..., None]:
    """Pull-request mode's options, handed to `command` as `proposing` (None
    without --propose). Under `target_options`, whose branch it checks."""

    @functools.wraps(command)
    def with_proposing(
        *args: Any,
        target: Target,
        propose: str | None,
        pr_file: Path | None,
        forge: ForgeKind | None,
        forge_url: str | None,
        forge_repo: str | None,
        **rest: Any,
    ) -> None:
        if propose == target.branch:
            raise click.UsageError("--propose must name a branch other than the main one")
        remote = None
        if forge:
            token = _forge_token()
            if not (propose and forge_url and forge_repo and token):
                raise click.UsageError(
                    "--forge needs --propose, --forge-url, --forge-repo and CASPIAN_FORGE_TOKEN"
                )
            remote = Forge(kind=forge, url=forge_url, repo=forge_repo, token=token)
        proposing = Proposing(branch=propose, pr_file=pr_file, forge=remote) if propose else None
        command(*args, target=target, proposing=proposing, **rest)

    for option in reversed((*_PROPOSAL_OPTIONS, *_FORGE_OPTIONS)):
        with_proposing = option(with_proposing)
    return with_proposing


class Commenting(NamedTuple):
    """plan --comment: the pull request to keep Caspian's plan on, and its forge."""

    forge: Forge
    number: int


def comment_options(command: Callable[..., None]) -> Callable[..., None]:
    """plan's --comment, with the forge's options, handed to `command` as
    `commenting` (None without --comment)."""

    @functools.wraps(command)
    def with_commenting(
        *args: Any,
        comment: int | None,
        forge: ForgeKind | None,
        forge_url: str | None,
        forge_repo: str | None,
        **rest: Any,
    ) -> None:
        commenting = None
        if comment is not None:
            token = _forge_token()
            if not (forge and forge_url and forge_repo and token):
                raise click.UsageError(
                    "--comment needs --forge, --forge-url, --forge-repo and CASPIAN_FORGE_TOKEN"
                )
            if rest.get("work_tree") is None:
                raise click.UsageError(
                    "--comment needs --work-tree: the pull request's checkout, planned with"
                )
            remote = Forge(kind=forge, url=forge_url, repo=forge_repo, token=token)
            commenting = Commenting(forge=remote, number=comment)
        command(*args, commenting=commenting, **rest)

    comment = click.option(
        "--comment",
        type=click.IntRange(1),
        metavar="NUMBER",
        help="With --work-tree: keep what this plan would commit as one comment on pull "
        "request NUMBER (a merge request's iid on GitLab), rewritten at each run.",
    )
    for option in reversed((comment, *_FORGE_OPTIONS)):
        with_commenting = option(with_commenting)
    return with_commenting


# For plan and explain: decide as a reconcile in pull-request mode does.
under_review_option = click.option(
    "--propose",
    "under_review",
    envvar="CASPIAN_PROPOSE",
    metavar="BRANCH",
    callback=_branch,
    help="Pull-request mode: decide from the plan under review on BRANCH as well, as "
    "`reconcile --propose BRANCH` does.",
)

work_tree_option = click.option(
    "--work-tree",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="Plan as if the edits in DIR, a clone of the fleet repo (committed or not, "
    "pushed or not), had been pushed on top of the branch.",
)

now_option = click.option(
    "--now", "now_text", metavar="RFC3339", help="Plan as if it were this time (default: now)."
)


def writable_directory(path: Path, *, hint: str, make: bool = False) -> None:
    """`path` (made first, with `make`) is a directory this process can write in."""
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(0, "a file is there, not a directory")
        if make:
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir() or not os.access(path, os.W_OK):
            raise NotADirectoryError(0, "not a directory this user can write in")
    except OSError as error:
        raise click.BadParameter(
            f"cannot write in {path}: {error.strerror}", param_hint=hint
        ) from None


def writable_file(path: Path, *, hint: str) -> None:
    """`path` can be written: tried now, before the work whose result goes there."""
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as error:
        raise click.BadParameter(
            f"cannot write {path}: {error.strerror}", param_hint=hint
        ) from None
    if not existed:
        path.unlink()


def days_text(days: int) -> str:
    return f"{days} day" if days == 1 else f"{days} days"


TEXT_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """A log record as one line of JSON: what Loki, Elasticsearch or Cloud
    Logging read without a parsing rule. A traceback goes in `error`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)
