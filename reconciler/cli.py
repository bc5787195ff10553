"""The `caspian` command. Thin: parse options, call the shell, print, set the exit code.

Exit codes: 0 done; 1 nothing done (bad configuration, git failure); 3 done, but
some job could not be planned (an invalid AppWrapper, or no place for it).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import posixpath
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from reconciler import (
    crd,
    explaining,
    ledger,
    messages,
    plotting,
    reconciling,
    rendering,
    scenarios,
    signing,
    simulating,
    survey,
    templates,
    yamlio,
)
from reconciler.fleet import FleetConfigError, Problem
from reconciler.gitrepo import FleetRepo, GitError, Identity, create_bare_repo, redact
from reconciler.loading import load_fleet
from reconciler.observing import DeclaredCapacity, Observer, StatusFilledIn
from reconciler.quantities import format_time, timestamp

EXIT_ERROR = 1
EXIT_PARTIAL = 3
BAR_WIDTH = 40  # characters of the longest bar of `carbon forecast`


def _now(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        return timestamp(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--now'") from None


def _author() -> Identity:
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
    return Identity(
        name=os.environ.get("CASPIAN_GIT_AUTHOR_NAME", Identity().name),
        email=os.environ.get("CASPIAN_GIT_AUTHOR_EMAIL", Identity().email),
        signing=key,
    )


@dataclass(frozen=True)
class Target:
    """The fleet repo a command works on, and where it learns the spokes' state."""

    url: str
    branch: str
    cache_dir: Path | None
    observer_kind: str  # "declared", "kube" or "argocd"
    kubeconfig: str | None
    argocd_context: str | None = None
    argocd_namespace: str = "argocd"

    def repo(self) -> FleetRepo:
        return FleetRepo(self.url, branch=self.branch, cache_dir=self.cache_dir)

    def observer(self) -> Observer:
        if self.observer_kind == "declared":
            return DeclaredCapacity()
        from reconciler.kube import ArgoCDObserver, KubeObserver

        argocd = ArgoCDObserver(
            kubeconfig=self.kubeconfig, context=self.argocd_context, namespace=self.argocd_namespace
        )
        if self.observer_kind == "argocd":
            return argocd
        spokes = KubeObserver(kubeconfig=self.kubeconfig)
        # Spokes without a kubeContext then get their Jobs' status from Argo CD.
        return StatusFilledIn(spokes, argocd) if self.argocd_context else spokes


_TARGET_OPTIONS = (
    click.option(
        "--repo", "url", required=True, help="Fleet repo: a path to a bare repo or any git URL."
    ),
    click.option("--branch", default="main", show_default=True),
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
        help="With --observer argocd: the kubeconfig context of Argo CD's cluster "
        "(default: the current context; 'in-cluster' for the pod's own service account). "
        "With --observer kube: spokes without a kubeContext get their Jobs' status from "
        "this Argo CD.",
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
    def with_repo(*args: Any, url: str, branch: str, cache_dir: Path | None, **rest: Any) -> None:
        target = Target(
            url=url, branch=branch, cache_dir=cache_dir, observer_kind="declared", kubeconfig=None
        )
        command(*args, target=target, **rest)

    for option in reversed(_TARGET_OPTIONS[:3]):
        with_repo = option(with_repo)
    return with_repo


def target_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options naming the fleet repo and the observer, handed to `command` as
    one `target`: plan, reconcile, explain and watch take the same ones."""

    @functools.wraps(command)
    def with_target(
        *args: Any,
        url: str,
        branch: str,
        cache_dir: Path | None,
        observer: str,
        kubeconfig: str | None,
        argocd_context: str | None,
        argocd_namespace: str,
        **rest: Any,
    ) -> None:
        target = Target(
            url=url,
            branch=branch,
            cache_dir=cache_dir,
            observer_kind=observer,
            kubeconfig=kubeconfig,
            argocd_context=argocd_context,
            argocd_namespace=argocd_namespace,
        )
        command(*args, target=target, **rest)

    # click lists options in the order of their decorators, outermost first.
    for option in reversed(_TARGET_OPTIONS):
        with_target = option(with_target)
    return with_target


# A fixed time, so that runs of `bench loop` on different days and hours compare.
BENCH_LOOP_NOW = "2026-12-01T00:00:00Z"

now_option = click.option(
    "--now", "now_text", metavar="RFC3339", help="Plan as if it were this time (default: now)."
)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what each step does.")
def main(verbose: bool) -> None:
    """Caspian: carbon-aware placement of batch Jobs across Kubernetes clusters, through git."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--bare", is_flag=True, help="Make DIRECTORY a bare git repo holding the template.")
def init(directory: Path, bare: bool) -> None:
    """Create a fleet repo in DIRECTORY from the template (3 spokes, example jobs)."""
    _writable_directory(directory, hint="'DIRECTORY'", make=True)
    if any(directory.iterdir()):
        raise click.ClickException(f"{directory} is not empty: choose a new directory")
    files = templates.template_files()
    if bare:
        commit = create_bare_repo(
            directory, files=files, message="Start a Caspian fleet repo", author=_author()
        )
        click.echo(f"bare fleet repo at {directory} (main at {commit[:12]})")
        click.echo(f"next: caspian reconcile --repo {directory} --once")
        return
    templates.write_tree(directory, files)
    click.echo(f"fleet repo files written to {directory}")
    click.echo(
        "next: git init -b main, commit, push to your server, "
        "then caspian reconcile --repo URL --once (--branch for another branch)"
    )


@main.command()
@click.argument("path", type=click.Path(path_type=Path, exists=True), default=".")
@click.option(
    "--format",
    "style",
    type=click.Choice(["text", "json", "github"]),
    default="text",
    show_default=True,
    help="text: `file:line: field: reason`; json: one object per problem; "
    "github: a GitHub Actions annotation per problem, on its line of the pull request.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def validate(path: Path, style: str, as_json: bool) -> None:
    """Check a fleet repo work tree, or a file or directory in it: one line per
    problem, exit 1 if there is any."""
    if as_json and style not in ("text", "json"):
        raise click.UsageError("--json is --format json: give one of them")
    style = "json" if as_json else style
    # Absolute, not resolved: a file given as a link is that link, not its target.
    path = Path(os.path.abspath(path))  # noqa: PTH100
    root = _fleet_root(path)
    files = templates.read_tree(root)
    part = path.relative_to(root).as_posix()  # "." for the whole repo
    say = functools.partial(_problems, files=files, root=root, style=style)
    try:
        fleet = load_fleet(
            files, appwrapper_schema=crd.check_appwrapper, links=templates.links_in(root)
        )
        fleet = fleet.without_spokes(reconciling.carbon_sources(fleet)[1])
        reconciling.previous_ledger(files)
    except FleetConfigError as error:
        say(error.problems)
        sys.exit(EXIT_ERROR)
    except ledger.LedgerError as error:
        say([Problem(file=ledger.LEDGER_PATH, field="-", reason=str(error))])
        sys.exit(EXIT_ERROR)
    problems = [
        p
        for p in [*fleet.problems, *reconciling.hand_edits(files)]
        if part == "." or f"{p.file.split('#')[0]}/".startswith(f"{part}/")
    ]
    say(problems)
    if problems:
        sys.exit(EXIT_ERROR)
    click.echo(f"ok: {len(fleet.spokes)} spokes, {len(fleet.jobs)} jobs", err=True)


def _problems(
    problems: Iterable[Problem], *, files: Mapping[str, bytes], root: Path, style: str
) -> None:
    """Each problem on one line of output, with the line of its file it is on
    where that can be found. JSON names files from the fleet repo's root, and a
    file of several documents' document from 0; the others name files as the
    working directory sees them, for an editor or a CI check to open."""
    for problem in problems:
        name, _, document = problem.file.partition("#")
        number = int(document) if document.isdecimal() else 0
        raw = files.get(name)
        line = (
            (yamlio.line_of(raw, problem.field, document=number) or yamlio.error_line(raw))
            if raw
            else None
        )
        if style == "json":
            found = {
                "file": name,
                "document": number,
                "line": line,
                "field": problem.field,
                "reason": problem.reason,
            }
            click.echo(json.dumps(found))
        elif style == "github":
            click.echo(_annotation(problem, path=_shown(root / name), line=line))
        else:
            place = _shown(root / name)
            if line is not None:
                place += f":{line}"
            elif document:
                place += f"#{document}"
            said = problem.reason if problem.field == "-" else f"{problem.field}: {problem.reason}"
            click.echo(f"{place}: {said}")


def _shown(path: Path) -> str:
    """`path` from the working directory where it is under it, else whole."""
    return (path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path).as_posix()


def _annotation(problem: Problem, *, path: str, line: int | None) -> str:
    """A GitHub Actions error annotation: the check shows it on that line of
    the pull request's diff. Its workflow-command syntax takes `%`, `:`, `,`
    and line ends escaped as percent codes."""

    def escaped(text: str, *, extra: str = "") -> str:
        for char in "%\r\n" + extra:
            text = text.replace(char, f"%{ord(char):02X}")
        return text

    where = {"file": path, "line": line, "title": _title(problem)}
    fields = ",".join(
        f"{key}={escaped(str(value), extra=':,')}"
        for key, value in where.items()
        if value is not None
    )
    return f"::error {fields}::{escaped(problem.reason)}"


def _title(problem: Problem) -> str:
    return "caspian" if problem.field == "-" else f"caspian: {problem.field}"


def _job_named(text: str) -> str:
    """A job as the ledger names it: a file given as the shell completes it
    (`./jobs/etl.yaml`) is `jobs/etl.yaml`."""
    return posixpath.normpath(text) if "/" in text else text


def _fleet_root(path: Path) -> Path:
    for parent in (path, *path.parents):
        if (parent / "caspian.yaml").is_file():
            return parent
    raise click.ClickException(
        f"{path}: no caspian.yaml in it or above it: is this a fleet repo? "
        "(`caspian init` makes one)"
    )


@main.command()
@target_options
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(target: Target, now_text: str | None, as_json: bool) -> None:
    """Show what a reconcile would change now; commit nothing."""
    outcome = _plan(target, now_text=now_text, as_json=as_json)
    if as_json:
        click.echo(json.dumps(_planned(outcome)))
    elif not outcome.changes:
        click.echo(f"no change: {redact(target.url)} is up to date at {outcome.input_commit[:12]}")
    else:
        click.echo(f"would commit on {outcome.input_commit[:12]}:")
        for path, change in outcome.changes.items():
            click.echo(f"  {change:8} {path}")
        click.echo("")
        click.echo(outcome.message)
    sys.exit(EXIT_PARTIAL if outcome.partial else 0)


@main.command()
@target_options
@now_option
@click.option("--once", is_flag=True, help="Reconcile one time and exit.")
def reconcile(target: Target, now_text: str | None, once: bool) -> None:
    """Decide, render, commit and push the placement (one commit, or none if unchanged)."""
    if not once:
        raise click.UsageError("reconcile runs one time: pass --once (use `caspian watch` to loop)")
    author = _author()
    observer = target.observer()
    outcome = _run(
        lambda repo: reconciling.reconcile_once(
            repo, now=_now(now_text), author=author, observer=observer
        ),
        target,
    )
    _report(outcome)
    sys.exit(EXIT_PARTIAL if outcome.partial else 0)


@main.command()
@click.argument("job", callback=lambda _ctx, _param, value: _job_named(value))
@target_options
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def explain(job: str, target: Target, now_text: str | None, as_json: bool) -> None:
    """Why JOB (namespace/name, name, or its file) goes where it goes: its place,
    deadline and carbon against qos, and its cheapest alternatives, each with
    whether it had room. Decides as `plan` does; commits nothing."""
    decision = _plan(target, now_text=now_text).decision
    try:
        entry = decision.ledger.find(job)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    explanation = explaining.explain(decision, entry)
    if as_json:
        click.echo(explanation.model_dump_json())
        return
    for line in explanation.lines():
        click.echo(line)


@main.command()
@click.argument("job", callback=lambda _ctx, _param, value: _job_named(value))
@repo_options
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Read at most this many commits that changed its file or the ledger.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per change.")
def history(job: str, target: Target, limit: int, as_json: bool) -> None:
    """What happened to JOB (namespace/name, name, or its file), oldest first,
    from the fleet repo's git log: each commit that changed its AppWrapper,
    and each placement Caspian committed for it, with what that commit says
    of it. Commits nothing."""
    try:
        found = _run(lambda repo: reconciling.job_history(repo, job, most=limit), target)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        for event in found.events:
            click.echo(event.model_dump_json())
        return
    count = len(found.events)
    click.echo(f"{found.job} ({found.source}): {count} change{'s' * (count != 1)}, oldest first")
    if not found.complete:
        click.echo(f"  (older commits not read: more than --limit {limit})")
    for event in found.events:
        when = format_time(event.time)
        click.echo(f"{when}  {event.commit[:10]}  {event.author}: {event.what}")
        for line in event.said:
            click.echo(f"    {line}")
    for commit in found.unreadable:
        click.echo(f"  skipped {commit[:10]}: its ledger was edited by hand and does not read")


@main.command()
@target_options
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per spoke.")
def spokes(target: Target, now_text: str | None, as_json: bool) -> None:
    """Each spoke as Caspian sees it now: whether its file loads and its API
    answers, its room, what the ledger has on it, what its Jobs there are
    doing, and what Caspian may not list there. Commits nothing; exits 3
    when a spoke is down or its file does not load."""
    observer = target.observer()
    now = _now(now_text)
    found = _run(lambda repo: reconciling.survey(repo, now=now, observer=observer), target)
    if as_json:
        for report in found.spokes:
            click.echo(report.model_dump_json(exclude={"observed": {"nodes"}}))
    else:
        click.echo(f"spokes at {found.input_commit[:12]}:")
        click.echo(survey.table(found))
    sys.exit(EXIT_PARTIAL if any(report.trouble for report in found.spokes) else 0)


def _planned(outcome: reconciling.Outcome) -> dict[str, Any]:
    """What `plan --json` prints: the files a reconcile would change, its commit
    message (None where it would commit nothing), the fleet repo's problems, and
    each job's record as status/placements.yaml would hold it."""
    decision = outcome.decision
    return _plan_object(
        input_commit=outcome.input_commit,
        changes=outcome.changes,
        message=outcome.message if outcome.changes else None,
        partial=outcome.partial,
        problems=decision.problems,
        jobs=rendering.ledger_document(decision.ledger)["entries"],
    )


def _plan_object(
    *,
    input_commit: str | None = None,
    changes: Mapping[str, str] | None = None,
    message: str | None = None,
    partial: bool = True,
    problems: Iterable[Problem] = (),
    jobs: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """`plan --json`'s object; by default, that of a fleet repo that cannot be
    planned at all (its problems are all it holds)."""
    return {
        "input_commit": input_commit,
        "changes": dict(changes or {}),
        "subject": message.partition("\n")[0] if message else None,
        "message": message,
        "partial": partial,
        "problems": [problem.model_dump(mode="json") for problem in problems],
        "jobs": list(jobs),
    }


def _plan(target: Target, *, now_text: str | None, as_json: bool = False) -> reconciling.Outcome:
    """A reconcile's decision and changes, without committing (`plan`, `explain`)."""
    observer = target.observer()
    return _run(
        lambda repo: reconciling.plan(repo, now=_now(now_text), observer=observer),
        target,
        as_json=as_json,
    )


def _run(action, target: Target, *, as_json: bool = False):  # noqa: ANN001, ANN202
    try:
        return action(target.repo())
    except FleetConfigError as error:
        if as_json:
            click.echo(json.dumps(_plan_object(problems=error.problems)))
        click.echo("cannot plan: fix these files (nothing was committed)", err=True)
        for problem in error.problems:
            click.echo(f"  {problem.line()}", err=True)
    except (GitError, ledger.LedgerError) as error:
        click.echo(f"error: {error}", err=True)
    sys.exit(EXIT_ERROR)


def _report(outcome: reconciling.Outcome) -> None:
    decision = outcome.decision
    click.echo(messages.placement_table(decision))
    click.echo("")
    estimated, baseline, saved = messages.savings(decision.ledger)
    if saved is not None:
        click.echo(
            f"carbon: {estimated:,.0f} gCO2 planned vs {baseline:,.0f} gCO2 for qos "
            f"(earliest start, carbon-blind): {saved:.1%} less"
        )
    click.echo(f"solver: {decision.plan.solver_status} ({decision.plan.method})")
    for entry in decision.ledger.entries:
        if entry.phase in (ledger.Phase.INVALID, ledger.Phase.PENDING):
            click.echo(f"{entry.phase.value.lower()}: {entry.id}: {entry.reason}", err=True)
        elif entry.late and entry.phase in ledger.UNFINISHED:
            click.echo(f"late: {entry.id}: {entry.reason}", err=True)
    for line in messages.draining(decision):
        click.echo(f"unschedulable: {line}")
    if outcome.commit:
        click.echo(f"committed {outcome.commit[:12]} on {outcome.input_commit[:12]} and pushed")
    else:
        click.echo(f"no change at {outcome.input_commit[:12]}: nothing committed")


@main.command()
@target_options
@click.option(
    "--interval",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds between fetches (also woken at slot boundaries and by pushes).",
)
@click.option(
    "--debounce",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Seconds to wait after a push for more pushes before reconciling.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    callback=lambda ctx, param, value: _listen_address(value),
    help="HOST:PORT of /metrics, /healthz and POST /webhook ([::1]:PORT for IPv6).",
)
@click.option(
    "--propose",
    metavar="BRANCH",
    help="Pull-request mode: push placements to BRANCH, not to the main branch.",
)
@click.option(
    "--pr-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --propose: write the pull request's title and body here.",
)
@click.option(
    "--forge",
    type=click.Choice(["github", "gitea"]),
    help="With --propose: open or update the pull request there (token in CASPIAN_FORGE_TOKEN).",
)
@click.option("--forge-url", help="The forge's API root, e.g. https://api.github.com.")
@click.option("--forge-repo", metavar="OWNER/NAME")
def watch(
    target: Target,
    interval: float,
    debounce: float,
    listen: tuple[str, int],
    propose: str | None,
    pr_file: Path | None,
    forge: str | None,
    forge_url: str | None,
    forge_repo: str | None,
) -> None:
    """Reconcile continuously: on pushes (webhook, or a local repo's refs), on a
    timer, and at every slot boundary. SIGTERM finishes the current reconcile."""
    import signal
    import threading

    from reconciler import serving
    from reconciler.forge import Forge
    from reconciler.watching import Watcher, WatchSettings

    if propose == target.branch:
        raise click.UsageError("--propose must name a branch other than the main one")
    remote_forge = None
    if forge:
        token = os.environ.get("CASPIAN_FORGE_TOKEN")
        if not (propose and forge_url and forge_repo and token):
            raise click.UsageError(
                "--forge needs --propose, --forge-url, --forge-repo and CASPIAN_FORGE_TOKEN"
            )
        remote_forge = Forge(kind=forge, url=forge_url, repo=forge_repo, token=token)
    host, port = listen
    try:
        repo = target.repo()
    except GitError as error:
        raise click.ClickException(str(error)) from None
    watcher = Watcher(
        repo,
        author=_author(),
        observer=target.observer(),
        settings=WatchSettings(
            interval_s=interval,
            debounce_s=debounce,
            propose=propose,
            pr_file=pr_file,
            forge=remote_forge,
        ),
    )
    try:
        server = serving.serve(
            watcher, host=host, port=port, secret=os.environ.get("CASPIAN_WEBHOOK_SECRET")
        )
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    stop_refs = threading.Event()
    if Path(target.url).is_dir():
        from reconciler.localwatch import watch_refs

        watch_refs(Path(target.url), on_change=watcher.trigger, stop=stop_refs)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    click.echo(
        f"watching {redact(target.url)} ({target.branch}); "
        f"http://{f'[{host}]' if ':' in host else host}:{server.server_port}/metrics",
        err=True,
    )
    try:
        watcher.run()
    finally:
        stop_refs.set()
        server.shutdown()


def _writable_directory(path: Path, *, hint: str, make: bool = False) -> None:
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


def _writable_file(path: Path, *, hint: str) -> None:
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


def _listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (loopback) as (host, port)."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    bare_ipv6 = ":" in host and not text.startswith("[")
    if not re.fullmatch(r"[0-9]+", port) or int(port) > 65535 or bare_ipv6:
        raise click.BadParameter(
            f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080",
            param_hint="'--listen'",
        )
    return host or "127.0.0.1", int(port)


@main.group()
def carbon() -> None:
    """Grid carbon intensity: what the planner would see, and what fallback data costs."""


@carbon.command("forecast")
@click.option("--zone", required=True, help="Zone id, e.g. DE, FR, GB, US-CAL-CISO.")
@click.option(
    "--provider",
    type=click.Choice(["embedded", "electricitymaps", "ukci", "watttime", "carbonaware"]),
    default="embedded",
    show_default=True,
)
@click.option("--region", help="WattTime region, UK region id, or Carbon Aware SDK location.")
@click.option("--hours", type=click.IntRange(1, 24 * 7), default=24, show_default=True)
@click.option("--slot", default="1h", show_default=True, help="Slot length, e.g. 15m or 1h.")
@now_option
@click.option("--json", "as_json", is_flag=True)
def carbon_forecast(
    zone: str,
    provider: str,
    region: str | None,
    hours: int,
    slot: str,
    now_text: str | None,
    as_json: bool,
) -> None:
    """The intensity series for ZONE over the next HOURS, with its provenance."""
    from carbon import CarbonSourceConfig
    from carbon.sources import source_for
    from reconciler.quantities import duration

    now = _now(now_text)
    try:
        slot_seconds = int(duration(slot).total_seconds())
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="'--slot'") from None
    start = datetime.fromtimestamp(now.timestamp() // slot_seconds * slot_seconds, tz=UTC)
    try:
        config = CarbonSourceConfig(provider=provider, zone=zone, region=region)
        source = source_for(config, env=os.environ, cache_dir=reconciling.carbon_cache())
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    series = source.series(
        start=start,
        slot_seconds=slot_seconds,
        slots=math.ceil(hours * 3600 / slot_seconds),
        now=now,
    )
    if as_json:
        click.echo(series.model_dump_json())
        return
    click.echo(f"{zone}: {series.provenance.describe()}")
    click.echo(f"{'UTC':16}  gCO2/kWh  (bars from 0; < the least)")
    low, high = min(series.values), max(series.values)
    for index, value in enumerate(series.values):
        moment = start.timestamp() + index * slot_seconds
        # From zero, so that a bar twice as long is twice the carbon: bars from
        # the minimum made 688 against 705 look like 1 against 28.
        bar = "#" * round(BAR_WIDTH * value / high) if high > 0 else ""
        stamp = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{stamp}  {value:8.1f}  {bar}{' <' if value == low else ''}")


@carbon.command("backtest")
@click.option("--zone", required=True)
@click.option("--days", type=click.IntRange(1, 360), default=28, show_default=True)
@click.option(
    "--start",
    "start_day",
    type=click.IntRange(0, 330),
    default=0,
    show_default=True,
    help="First day of 2023 to forecast from (0 = January 1).",
)
@click.option("--signal", type=click.Choice(["lifecycle", "direct"]), default="lifecycle")
@click.option("--json", "as_json", is_flag=True)
def carbon_backtest(zone: str, days: int, start_day: int, signal: str, as_json: bool) -> None:
    """How far the seasonal-naive fallback forecast is from what happened (embedded 2023
    data), and the carbon a planner loses by trusting it."""
    from carbon import embedded, forecasting

    try:
        hourly = embedded.hourly(zone, signal)  # type: ignore[arg-type]
    except embedded.UnknownZoneError as error:
        raise click.ClickException(str(error)) from None
    days = min(days, 364 - start_day)
    actual = hourly[start_day * 24 : (start_day + days + 1) * 24]
    result = forecasting.backtest(actual, zone=zone, days=days)
    if as_json:
        click.echo(result.model_dump_json())
        return
    click.echo(
        f"{zone}, {days} days from day {start_day} of 2023: MAE {result.mae_g_per_kwh:.1f} "
        f"gCO2/kWh, MAPE {result.mape:.1%}, a 4-hour job placed on the forecast emits "
        f"{result.planner_loss:.1%} more than on the day's real best window"
    )


@main.command()
@click.option(
    "--scenario",
    type=click.Choice(["caspian-4"]),
    default="caspian-4",
    show_default=True,
    help="Built-in fleet and workload (ignored with --fleet).",
)
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Replay your own fleet repo work tree: its policy, spokes and AppWrappers.",
)
@click.option(
    "--trace",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="CSV `arrival_hours,job` of submissions (default: the fleet's trace.csv, "
    "else every AppWrapper once at the start).",
)
@click.option(
    "--start",
    "start_days",
    multiple=True,
    help="First day of a replay, in 2023 (the embedded data); repeat for several "
    "weeks. Default 2023-03-01.",
)
@click.option("--days", type=click.IntRange(1, 60), default=7, show_default=True)
@click.option(
    "--policy",
    "chosen",
    multiple=True,
    type=click.Choice(simulating.POLICIES),
    help="Repeat to choose; all five by default.",
)
@click.option(
    "--forecast",
    default="seasonal-naive",
    show_default=True,
    help="perfect, seasonal-naive or noisy:PCT: what the planners see after the hour now "
    "running (which they see as measured).",
)
@click.option("--seed", "seeds", type=int, multiple=True, help="Repeat for several. Default 1.")
@click.option(
    "--time-limit",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Optimizer budget per re-plan, seconds.",
)
@click.option(
    "--replan",
    type=click.IntRange(1, 24 * 60),
    default=60,
    show_default=True,
    help="Minutes between re-plans; the standing plan dispatches in between.",
)
@click.option(
    "--clairvoyant-limit",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds for the clairvoyant's one plan over the whole replay.",
)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write an SVG of the intensities and each spoke's timeline (first run).",
)
def simulate(
    scenario: str,
    fleet_path: Path | None,
    trace: Path | None,
    start_days: tuple[str, ...],
    days: int,
    chosen: tuple[str, ...],
    forecast: str,
    seeds: tuple[int, ...],
    time_limit: float,
    replan: int,
    clairvoyant_limit: float,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Replay the loop on the 2023 grid data and compare placement policies on the
    same arrivals: carbon, deadlines met, waiting, decide time."""
    if problem := simulating.check_forecast(forecast):
        raise click.BadParameter(problem, param_hint="'--forecast'")
    if plot is not None:
        _writable_file(plot, hint="'--plot'")  # before minutes of replay, not after
    names = chosen or simulating.POLICIES
    starts = [_day_of_2023(text) for text in (start_days or ("2023-03-01",))]
    runs = []
    for start in starts:
        for seed in seeds or (1,):
            setup = _simulation_setup(
                scenario, fleet_path, trace, start=start, days=days, seed=seed, limit=time_limit
            )
            results = []
            for name in names:
                with click.progressbar(
                    length=(days * 86400 + int(simulating.TAIL.total_seconds()))
                    // setup.policy.spec.slot_seconds,
                    label=f"{start:%b %d} seed {seed} {name:12}",
                    file=sys.stderr,
                    hidden=as_json or not sys.stderr.isatty(),
                ) as bar:
                    results.append(
                        simulating.run(
                            setup,
                            policy=name,
                            start=start,
                            days=days,
                            forecast=forecast,
                            seed=seed,
                            replan=timedelta(minutes=replan),
                            clairvoyant_limit=clairvoyant_limit,
                            progress=bar.update,
                        )
                    )
            results = simulating.compare(results)
            if plot is not None and not runs:
                _plot(plot, setup, results, start=start, days=days)
            runs.append(
                {
                    "start": f"{start:%Y-%m-%d}",
                    "seed": seed,
                    "jobs": len(setup.arrivals),
                    "policies": [r.model_dump(exclude={"placements"}) for r in results],
                }
            )
    report = {
        "scenario": setup.name,
        "days": days,
        "forecast": forecast,
        "replan_minutes": replan,
        "runs": runs,
        "policies": simulating.mean_over_runs([run["policies"] for run in runs]),
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{setup.name}, {days} days from {', '.join(f'{s:%Y-%m-%d}' for s in starts)}, "
        f"{forecast} forecasts, seeds {', '.join(map(str, seeds or (1,)))}"
        + (f" (mean of {len(runs)} runs)" if len(runs) > 1 else "")
    )
    for r in report["policies"]:
        click.echo(
            f"{r['policy']:12} {r['kg_co2']:9.1f} kg  saved {_pct(r['saved_vs_qos']):>7}  "
            f"of-limit {_pct(r['share_of_clairvoyant_savings']):>7}  "
            f"met {r['deadlines_met']:6.1%}  end/deadline "
            f"{r['mean_completion_over_deadline']:.2f}  p95 wait {r['p95_wait_hours']:4.1f} h  "
            f"decide {r['mean_decide_s']:.2f}/{r['max_decide_s']:.2f} s"
        )


def _day_of_2023(text: str) -> datetime:
    try:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a date like 2023-03-01", param_hint="'--start'"
        ) from None
    if day.year != 2023:
        raise click.BadParameter(f"{text}: the embedded data is 2023", param_hint="'--start'")
    return day


def _simulation_setup(
    scenario: str,
    fleet_path: Path | None,
    trace: Path | None,
    *,
    start: datetime,
    days: int,
    seed: int,
    limit: float,
) -> scenarios.Setup:
    if fleet_path is None:
        return scenarios.scenario_setup(
            scenarios.SCENARIOS[scenario], start=start, days=days, seed=seed, time_limit=limit
        )
    files = templates.read_tree(fleet_path)
    try:
        fleet = load_fleet(
            files, appwrapper_schema=crd.check_appwrapper, links=templates.links_in(fleet_path)
        )
    except FleetConfigError as error:
        raise click.ClickException(str(error)) from None
    if fleet.broken_spokes:
        # A replay plans every spoke from its file, from the first hour.
        broken = [p.line() for p in fleet.problems if p.file in fleet.broken_spokes.values()]
        raise click.ClickException(f"fix the spoke files first: {'; '.join(broken)}")
    for problem in fleet.problems:
        click.echo(f"skipped: {problem.line()}", err=True)
    trace_file = trace or (fleet_path / scenarios.TRACE_FILE)
    try:
        return scenarios.fleet_setup(
            fleet,
            trace=trace_file.read_bytes() if trace_file.exists() else None,
            trace_name=str(trace_file if trace_file.exists() else fleet_path),
            start=start,
            days=days,
            time_limit=limit,
        )
    except scenarios.SimulationInputError as error:
        raise click.ClickException(str(error)) from None


def _plot(
    path: Path,
    setup: scenarios.Setup,
    results: list[simulating.PolicyResult],
    *,
    start: datetime,
    days: int,
) -> None:
    slot = timedelta(seconds=setup.policy.spec.slot_seconds)
    span = timedelta(days=days)
    grid = simulating.Intensities(
        set(setup.zones.values()),
        start=start,
        slot_seconds=int(slot.total_seconds()),
        slots=int(span / slot) + 1,
    )
    duration = {a.job.id: a.job.duration for a in setup.arrivals}
    shown = [r for r in results if r.policy in ("qos", "caspian")] or results[:1]
    path.write_text(
        plotting.svg(
            start=start,
            span=span,
            intensity={
                zone: list(grid.actual(zone, at=start, slots=int(span / slot) + 1))
                for zone in set(setup.zones.values())
            },
            slot=slot,
            spoke_zones=setup.zones,
            timelines={
                r.policy: [(p.spoke, p.start, duration[i]) for i, p in r.placements.items()]
                for r in shown
            },
            title=f"{setup.name}: {days} days from {start:%Y-%m-%d}, lifecycle gCO2/kWh",
        )
    )
    click.echo(f"wrote {path}", err=True)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:6.1%}"


@main.group()
def bench() -> None:
    """Benchmarks that print JSON."""


@bench.command("optimizer")
@click.option("--jobs", type=click.IntRange(1), required=True)
@click.option("--spokes", type=click.IntRange(1), required=True)
@click.option("--slots", type=click.IntRange(2), default=96, show_default=True)
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    default=(0,),
    show_default=True,
    help="Repeat for several instances: the JSON then holds every run and each "
    "figure's median over the seeds and its highest value.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs per seed; a seed's median over its runs goes into the median.",
)
@click.option("--time-limit", type=click.FloatRange(0.1), default=30.0, show_default=True)
@click.option("--solver", default="highs", show_default=True)
@click.option(
    "--lp-time-limit",
    type=click.FloatRange(1),
    default=600.0,
    show_default=True,
    help="Budget for the LP bound, computed after the plan.",
)
@click.option(
    "--exact-time-limit",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="After the LP bound, give the plan to the MILP solver over the whole model "
    "for this long: the better plan and the bound it proves (exact_* fields).",
)
@click.option(
    "--dump",
    "dump_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write instance.json and plan.json here (docs/plan-dump-format.md).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on one line.")
def bench_optimizer(
    jobs: int,
    spokes: int,
    slots: int,
    seeds: tuple[int, ...],
    repeat: int,
    time_limit: float,
    solver: str,
    lp_time_limit: float,
    exact_time_limit: float,
    dump_dir: Path | None,
    as_json: bool,
) -> None:
    """Solve generated instances, one after another, and print what each took and
    how good its plan is."""
    from optimizer import bench as optimizer_bench

    if dump_dir is not None:
        _writable_directory(dump_dir, hint="'--dump'", make=True)
    order = [(seed, n) for seed in dict.fromkeys(seeds) for n in range(1, repeat + 1)]
    runs = [
        optimizer_bench.run(
            jobs=jobs,
            spokes=spokes,
            slots=slots,
            seed=seed,
            time_limit=time_limit,
            solver=solver,
            lp_time_limit=lp_time_limit,
            exact_time_limit=exact_time_limit,
            # One directory per run where there are several.
            dump_dir=dump_dir / f"seed-{seed}-run-{n}" if dump_dir and len(order) > 1 else dump_dir,
        )
        for seed, n in order
    ]
    result = runs[0] if len(runs) == 1 else optimizer_bench.summary(runs)
    if as_json:
        click.echo(optimizer_bench.dumps(result))
    else:
        click.echo(json.dumps(result, indent=2))


@bench.command("loop")
@click.option("--jobs", type=click.IntRange(1), default=100, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=10, show_default=True)
@click.option("--noop-jobs", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--now",
    "now_text",
    metavar="RFC3339",
    default=BENCH_LOOP_NOW,
    show_default=True,
    help="The loop's clock, which stands still: how long a decision takes depends on "
    "the hour's carbon curves.",
)
@click.option("--json", "as_json", is_flag=True)
def bench_loop(jobs: int, rounds: int, noop_jobs: int, now_text: str, as_json: bool) -> None:
    """Push-to-placement latency with `watch` running, and the cost of a no-op."""
    from reconciler import benchloop

    now = _now(now_text)
    result = {
        "latency": benchloop.latency(jobs=jobs, rounds=rounds, now=now),
        "noop": benchloop.noop(jobs=noop_jobs, repeats=5, now=now),
    }
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("nodes")
@click.option("--jobs", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--spokes", type=click.IntRange(1), default=10, show_default=True)
@click.option("--nodes", type=click.IntRange(2), default=100, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=7, show_default=True)
@click.option("--now", "now_text", metavar="RFC3339", default=BENCH_LOOP_NOW, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_nodes(
    jobs: int, spokes: int, nodes: int, repeat: int, now_text: str, as_json: bool
) -> None:
    """What reading spokes node by node (node fit, pools by taints and selected
    labels) adds to a decision: medians of `decide` with the nodes and with one
    sum per spoke, the qos baseline as planner in both."""
    from reconciler import benchnodes

    result = benchnodes.measure(
        jobs=jobs, spokes=spokes, nodes=nodes, repeats=repeat, now=_now(now_text)
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("ledger")
@click.option(
    "--records",
    "counts",
    type=click.IntRange(1),
    multiple=True,
    default=(1000, 10000),
    show_default=True,
)
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_ledger(counts: tuple[int, ...], repeat: int, as_json: bool) -> None:
    """Writing and reading back a ledger of so many records: medians, with libyaml
    and with PyYAML's own code."""
    from reconciler import benchledger

    result = [benchledger.measure(count=count, repeats=repeat) for count in counts]
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench.command("history")
@click.option("--records", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--commits", type=click.IntRange(1), default=300, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def bench_history(records: int, commits: int, repeat: int, as_json: bool) -> None:
    """`caspian history` on a repo whose ledger of so many records changed in
    so many commits: medians."""
    from reconciler import benchhistory

    result = benchhistory.measure(records=records, commits=commits, repeats=repeat)
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@main.command()
@now_option
def demo(now_text: str | None) -> None:
    """One reconcile of the template fleet in a temporary directory: no network,
    no cluster, no keys."""
    now = _now(now_text)
    with tempfile.TemporaryDirectory(prefix="caspian-demo-") as tmp:
        remote = Path(tmp) / "fleet.git"
        files = templates.template_files()
        jobs = sum(1 for name in files if name.startswith("jobs/"))
        spokes = sum(1 for name in files if name.startswith("spokes/"))
        create_bare_repo(
            remote,
            files=files,
            message=f"Add fleet: {spokes} spokes, {jobs} AppWrappers",
            author=Identity(name="Fleet Admin", email="admin@example.invalid"),
        )
        click.echo(f"fleet repo: {remote} (bare, from repo-template: {spokes} spokes, {jobs} jobs)")
        click.echo(f"reconcile at {format_time(now)}; carbon: embedded 2023 data, same hour\n")
        repo = FleetRepo(str(remote), cache_dir=Path(tmp) / "mirror.git")
        outcome = reconciling.reconcile_once(repo, now=now, author=_author())
        _report(outcome)
        again = reconciling.reconcile_once(repo, now=now, author=_author())
        click.echo(
            "second reconcile: "
            + ("no change, no commit" if again.commit is None else f"committed {again.commit}")
        )
        if outcome.commit:
            click.echo("\n$ git log --stat -1\n" + repo.show(outcome.commit))
    if outcome.partial:
        sys.exit(EXIT_PARTIAL)
