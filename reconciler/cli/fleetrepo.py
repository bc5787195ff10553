"""The commands on a fleet repo: init, validate, plan, reconcile, explain,
history, report, spokes, and the demo's one reconcile."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import click

from optimizer.solving import unknown_solver
from reconciler import (
    accounting,
    chains,
    companions,
    explaining,
    gridcarbon,
    ledger,
    messages,
    reconciling,
    rendering,
    survey,
    templates,
    yamlio,
)
from reconciler.cli.common import (
    EXIT_ERROR,
    EXIT_PARTIAL,
    Commenting,
    Target,
    bot_author,
    bot_email,
    comment_options,
    now_option,
    parse_now,
    planning_target_options,
    proposal_options,
    repo_options,
    target_options,
    under_review_option,
    work_tree_option,
    writable_directory,
)
from reconciler.decisions import Decision
from reconciler.fleet import POLICY_FILE, FleetConfigError, Policy, Problem
from reconciler.forge import ForgeError
from reconciler.gitrepo import FleetRepo, GitError, Identity, create_bare_repo, redact
from reconciler.overlay import Edits
from reconciler.plancomment import MARKER, plan_comment
from reconciler.proposing import Proposing, Round, propose
from reconciler.quantities import format_time, timestamp


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--bare", is_flag=True, help="Make DIRECTORY a bare git repo holding the template.")
def init(directory: Path, bare: bool) -> None:
    """Create a fleet repo in DIRECTORY from the template (3 spokes, example jobs)."""
    writable_directory(directory, hint="'DIRECTORY'", make=True)
    files = templates.template_files()
    if bare:
        if any(directory.iterdir()):
            raise click.ClickException(f"{directory} is not empty: choose a new directory")
        commit = create_bare_repo(
            directory, files=files, message="Start a Caspian fleet repo", author=bot_author()
        )
        click.echo(f"bare fleet repo at {directory} (main at {commit[:12]})")
        click.echo(f"next: caspian reconcile --repo {directory} --once")
        return
    files = _beside(directory, files)
    templates.write_tree(directory, files)
    click.echo(f"fleet repo files written to {directory}")
    if README not in files:
        click.echo(f"kept your {README}: the template's, on the files and annotations, is left out")
    root = _work_tree_of(directory)
    start = "" if root is not None else "git init -b main, "
    inside = directory.resolve().relative_to(root) if root is not None else Path()
    path = f" --path {inside.as_posix()}" if inside.parts else ""
    click.echo(
        f"next: {start}commit, push to your server, "
        f"then caspian reconcile --repo URL{path} --once (--branch for another branch)"
    )


README = "README.md"


def _work_tree_of(directory: Path) -> Path | None:
    """The root of the git work tree `directory` is in (a `.git` directory, or
    the `.git` file of a worktree or submodule), or None."""
    here = directory.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _beside(directory: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    """The template's files to write into `directory`, which may hold a repo
    already (`git init`, or a clone of a new one: its .git, a README, a
    LICENSE). A fleet repo's own files or directories there stop it, as
    writing over them would mix the example jobs and spokes into real ones; a
    README there is kept."""
    own = {path.split("/", 1)[0] for path in files} | {"rendered", "status"}
    there = sorted(name for name in own - {README} if (directory / name).exists())
    if there:
        raise click.ClickException(
            f"{directory} holds {', '.join(there)} already: is it a fleet repo? "
            "Choose a new directory, or move those away first"
        )
    if (directory / README).exists():
        return {path: text for path, text in files.items() if path != README}
    return files


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--format",
    "style",
    type=click.Choice(["text", "json", "github", "gitlab"]),
    default="text",
    show_default=True,
    help="text: `file:line: field: reason` (`file:line: warning: ...` for a warning); "
    "json: one object per problem or warning; "
    "github: a GitHub Actions annotation per problem or warning, on its line of the pull "
    "request; gitlab: a GitLab Code Quality report (one JSON array), for a merge request's "
    "widget.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
def validate(paths: tuple[Path, ...], style: str, as_json: bool) -> None:
    """Check a fleet repo work tree (by default the one here), or files and
    directories in it: one line per problem, exit 1 if there is any. A
    warning (a caspian.dev/after naming no job in jobs/) is a line too, and
    fails nothing: a pipeline may be committed in parts."""
    if as_json and style not in ("text", "json"):
        raise click.UsageError("--json is --format json: give one of them")
    style = "json" if as_json else style
    parts: dict[Path, list[str]] = {}  # per fleet repo, what of it to check
    for given in paths or (Path(),):
        # Absolute, not resolved: a file given as a link is that link, not its target.
        path = Path(os.path.abspath(given))  # noqa: PTH100
        root = _fleet_root(path)
        parts.setdefault(root, []).append(path.relative_to(root).as_posix())
    found = [
        each
        for root, within in parts.items()
        for each in _validate_repo(root, parts=within, named=len(parts) > 1)
    ]
    _print(found, style=style)
    if any(not each.warning for each in found):
        sys.exit(EXIT_ERROR)


class _Found(NamedTuple):
    """A problem, and where in its file it is."""

    file: str  # from the fleet repo's root
    path: str  # from the working directory, for an editor or a CI check to open
    document: int  # of a file of several, from 0
    line: int | None  # None where no line says it (a whole file, a field not found)
    problem: Problem
    warning: bool = False  # it holds a job, where a problem stops one


def _validate_repo(root: Path, *, parts: list[str], named: bool) -> list[_Found]:
    """The problems of the fleet repo work tree at `root` that are in `parts`
    of it ("." for all of it); where there are none, says so on stderr."""
    files = templates.read_tree(root)
    submodules = templates.submodules_in(root)
    located = functools.partial(_located, files=files, root=root)
    # The ledger is parsed once (a large one takes seconds); a broken
    # caspian.yaml is said before a broken ledger, as a reconcile would.
    unread: ledger.LedgerError | None = None
    try:
        read = reconciling.previous_ledger(files)
    except ledger.LedgerError as error:
        read, unread = ledger.Ledger(), error
    try:
        fleet = reconciling.fleet_in(
            files, links=templates.links_in(root), submodules=submodules, read=read
        )
        fleet = fleet.without_spokes(gridcarbon.carbon_sources(fleet, read=read)[1])
    except FleetConfigError as error:
        return located(error.problems)
    if unread is not None:
        return located([_ledger_problem(unread)])

    def asked(problem: Problem) -> bool:
        file = problem.file.split("#")[0]
        return any(part == "." or f"{file}/".startswith(f"{part}/") for part in parts)

    problems = [
        p
        for p in [
            *fleet.problems,
            *reconciling.hand_edits(files, submodules=submodules),
            *_solver_problems(fleet.policy),
        ]
        if asked(p)
    ]
    broken = {p.file.split("#")[0] for p in fleet.problems}
    warnings = [
        p
        for p in [
            *chains.not_in_jobs(fleet.jobs, read.by_id(), broken=broken),
            *companions.borrowed(fleet.jobs),
        ]
        if asked(p)
    ]
    if not problems:
        where = f"{_shown(root)}: " if named else ""
        said = f", {len(warnings)} warning{'s' * (len(warnings) != 1)}" if warnings else ""
        click.echo(f"ok: {where}{len(fleet.spokes)} spokes, {len(fleet.jobs)} jobs{said}", err=True)
    return sorted(
        [*located(problems), *located(warnings, warning=True)],
        key=lambda f: (f.file, f.document, f.line or 0),
    )


def _solver_problems(policy: Policy) -> list[Problem]:
    """A solver name no solver goes by. A reconcile still plans (with the
    heuristics, its status saying why), so the fleet loads; but every plan
    would be the heuristics' until it is mended."""
    why = unknown_solver(policy.spec.solver.name)
    return [] if why is None else [Problem(file=POLICY_FILE, field="spec.solver.name", reason=why)]


def _ledger_problem(error: ledger.LedgerError) -> Problem:
    """A ledger that cannot be read, as a problem line of its file."""
    # Its message names the file, as the problem line does already.
    said = str(error).removeprefix(f"{ledger.LEDGER_PATH}: ")
    said = said.removeprefix(f"{ledger.LEDGER_PATH} ")
    return Problem(file=ledger.LEDGER_PATH, field="-", reason=said, stops_at=error.line)


def _located(
    problems: Iterable[Problem], *, files: Mapping[str, bytes], root: Path, warning: bool = False
) -> list[_Found]:
    """Each problem with the line of its file it is on, where that can be
    found, in the order of each file, as a compiler lists them (a job's
    fields are checked by topic, not by line)."""
    found = []
    for problem in problems:
        name, _, document = problem.file.partition("#")
        number = int(document) if document.isdecimal() else 0
        line = problem.stops_at
        if line is None and (raw := files.get(name)):
            line = yamlio.line_of(raw, problem.field, document=number)
        found.append(_Found(name, _shown(root / name), number, line, problem, warning))
    return sorted(found, key=lambda f: (f.file, f.document, f.line or 0))


def _print(found: list[_Found], *, style: str) -> None:
    """The problems, one line each, or, for GitLab, one report of them all."""
    if style == "gitlab":
        click.echo(json.dumps([_code_quality(each) for each in found], indent=1))
        return
    for each in found:
        if style == "json":
            fields = {
                "file": each.file,
                "path": each.path,
                "document": each.document,
                "line": each.line,
                "field": each.problem.field,
                "reason": each.problem.reason,
                "severity": "warning" if each.warning else "error",
            }
            click.echo(json.dumps(fields))
        elif style == "github":
            click.echo(
                _annotation(each.problem, path=each.path, line=each.line, warning=each.warning)
            )
        else:
            place = each.path
            if each.line is not None:
                place += f":{each.line}"
            elif each.document:
                place += f"#{each.document}"
            level = "warning: " if each.warning else ""
            click.echo(f"{place}: {level}{each.problem.said()}")


def _code_quality(found: _Found) -> dict[str, Any]:
    """One issue of a GitLab Code Quality report (its subset of the Code
    Climate format): the merge request shows it on that line of the file. The
    fingerprint tells one issue from another across pipelines."""
    problem = found.problem
    key = f"{found.path}\0{found.document}\0{problem.field}\0{problem.reason}".encode()
    return {
        "description": problem.said(),
        "check_name": _title(problem),
        "fingerprint": hashlib.sha256(key).hexdigest(),
        "severity": "minor" if found.warning else "major",
        "location": {"path": found.path, "lines": {"begin": found.line or 1}},
    }


def _shown(path: Path) -> str:
    """`path` from the working directory where it is under it, else whole."""
    return (path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path).as_posix()


def _annotation(problem: Problem, *, path: str, line: int | None, warning: bool) -> str:
    """A GitHub Actions error (or warning) annotation: the check shows it on
    that line of the pull request's diff. Its workflow-command syntax takes
    `%`, `:`, `,` and line ends escaped as percent codes."""

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
    level = "warning" if warning else "error"
    return f"::{level} {fields}::{escaped(problem.reason)}"


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


@click.command()
@planning_target_options
@now_option
@under_review_option
@work_tree_option
@comment_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plan(
    target: Target,
    now_text: str | None,
    under_review: str | None,
    work_tree: Path | None,
    commenting: Commenting | None,
    as_json: bool,
) -> None:
    """Show what a reconcile would change now; commit nothing."""
    outcome = _plan(
        target, now_text=now_text, under_review=under_review, work_tree=work_tree, as_json=as_json
    )
    if as_json:
        click.echo(json.dumps(_planned(outcome)))
    else:
        _say_plan(outcome, target=target)
    if commenting is not None:
        _comment(commenting, outcome, branch=target.branch)
    sys.exit(EXIT_PARTIAL if outcome.partial else 0)


def _say_plan(outcome: reconciling.Outcome, *, target: Target) -> None:
    """`plan`'s text: the edits planned with, and the files and message of the
    commit a reconcile would make."""
    if outcome.edits is not None:
        _say_edits(outcome.edits, branch=target.branch)
    if not outcome.changes and outcome.edits is not None:
        click.echo("no change: with those edits a reconcile would commit nothing")
    elif not outcome.changes:
        click.echo(f"no change: {redact(target.url)} is up to date at {outcome.input_commit[:12]}")
    else:
        click.echo(f"would commit on {outcome.input_commit[:12]}:")
        for path, change in outcome.changes.items():
            click.echo(f"  {change:8} {path}")
        click.echo("")
        click.echo(outcome.message)


@click.command()
@target_options
@now_option
@click.option("--once", is_flag=True, help="Reconcile one time and exit.")
@proposal_options
def reconcile(
    target: Target, now_text: str | None, once: bool, proposing: Proposing | None
) -> None:
    """Decide, render, commit and push the placement (one commit, or none if unchanged)."""
    if not once:
        raise click.UsageError("reconcile runs one time: pass --once (use `caspian watch` to loop)")
    author = bot_author()
    observer = target.observer()
    now = parse_now(now_text)
    if proposing is not None:
        done = _run(
            lambda repo: propose(repo, proposing, now=now, author=author, observer=observer),
            target,
        )
        _report_round(done, branch=proposing.branch)
        sys.exit(EXIT_PARTIAL if done.outcome.partial else 0)
    outcome = _run(
        lambda repo: reconciling.reconcile_once(repo, now=now, author=author, observer=observer),
        target,
    )
    _report(outcome)
    sys.exit(EXIT_PARTIAL if outcome.partial else 0)


@click.command()
@click.argument("job", callback=lambda _ctx, _param, value: _job_named(value))
@planning_target_options
@now_option
@under_review_option
@work_tree_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def explain(
    job: str,
    target: Target,
    now_text: str | None,
    under_review: str | None,
    work_tree: Path | None,
    as_json: bool,
) -> None:
    """Why JOB (namespace/name, name, or its file) goes where it goes: its place,
    deadline and carbon against qos, and its cheapest alternatives, each with
    whether it had room. Decides as `plan` does; commits nothing."""
    planned = _plan(target, now_text=now_text, under_review=under_review, work_tree=work_tree)
    decision = planned.decision
    try:
        entry = decision.ledger.find(job)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    committed = planned.previous.by_id().get(entry.id)
    review = None
    if under_review is not None:
        offered = _run(lambda repo: reconciling.proposal_ledger(repo, under_review), target)
        if offered is not None and (record := offered.by_id().get(entry.id)) is not None:
            review = explaining.UnderReview(branch=under_review, record=record)
    explanation = explaining.explain(
        decision, entry, committed=committed, review=review, unpushed=planned.edits is not None
    )
    if as_json:
        click.echo(explanation.model_dump_json())
        return
    for line in explanation.lines():
        click.echo(line)


@click.command()
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
    named = messages.named(found.job, source=found.source)
    click.echo(f"{named}: {count} change{'s' * (count != 1)}, oldest first")
    if not found.complete:
        click.echo(f"  (older commits not read: more than --limit {limit})")
    for event in found.events:
        when = format_time(event.time)
        click.echo(f"{when}  {event.commit[:10]}  {event.author}: {event.what}")
        for line in event.said:
            click.echo(f"    {line}")
    _say_unreadable(found.unreadable)


@click.command()
@repo_options
@click.option(
    "--since",
    "since_text",
    metavar="TIME",
    help="The period's start: a date (its midnight, UTC) or an RFC 3339 time "
    "(default: 30 days before --until).",
)
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    help="The period's end, left out: a date or an RFC 3339 time (default: now).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Read at most this many commits that changed the ledger.",
)
@click.option(
    "--by",
    type=click.Choice(["spoke", "namespace"]),
    default="spoke",
    show_default=True,
    help="A row per spoke the jobs ran on, or per namespace (a team's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def report(
    target: Target,
    since_text: str | None,
    until_text: str | None,
    limit: int,
    by: accounting.Grouping,
    as_json: bool,
) -> None:
    """What the jobs that finished over a period emitted and saved, by spoke
    (or namespace): their plans' estimates against the carbon-blind qos
    baseline's, and what their runs emitted as measured, against what qos
    would have, for those that ran once. Read from the ledger of every commit of the period, so
    jobs the ledger has forgotten since count too. Commits nothing."""
    until = _moment(until_text, option="--until") if until_text else parse_now(None)
    since = _moment(since_text, option="--since") if since_text else until - timedelta(days=30)
    if since >= until:
        raise click.BadParameter(
            f"{format_time(since)} is not before {format_time(until)}", param_hint="'--since'"
        )
    found = _run(
        lambda repo: reconciling.carbon_report(repo, since=since, until=until, most=limit, by=by),
        target,
    )
    if as_json:
        click.echo(found.model_dump_json())
        return
    read = found.commits_read
    click.echo(
        f"jobs that finished from {format_time(since)} to {format_time(until)}, from the "
        f"ledgers of {read:,} commit{'s' * (read != 1)} of {target.branch}:"
    )
    click.echo(accounting.table(found))
    if not found.complete:
        click.echo(
            f"  (older commits not read: more than --limit {limit}; jobs that finished early "
            "in the period may be missing)"
        )
    _say_unreadable(found.unreadable)


def _say_unreadable(commits: Iterable[str]) -> None:
    """The commits whose ledger a reading of the history skipped."""
    for commit in commits:
        click.echo(f"  skipped {commit[:10]}: its ledger was edited by hand and does not read")


def _moment(text: str, *, option: str) -> datetime:
    """A date (its midnight, UTC) or an RFC 3339 time."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        try:
            return timestamp(text)
        except ValueError as error:
            said = f"{error}, nor a date (e.g. 2026-11-01)"
            raise click.BadParameter(said, param_hint=f"'{option}'") from None
    return datetime.combine(day, time(), tzinfo=UTC)


@click.command()
@target_options
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per spoke.")
def spokes(target: Target, now_text: str | None, as_json: bool) -> None:
    """Each spoke as Caspian sees it now: whether its file loads and its API
    answers, its room, what the ledger has on it, what its Jobs there are
    doing, and what Caspian may not list there. Commits nothing; exits 3
    when a spoke is down or its file does not load."""
    observer = target.observer()
    now = parse_now(now_text)
    found = _run(lambda repo: reconciling.survey(repo, now=now, observer=observer), target)
    if as_json:
        for report in found.spokes:
            click.echo(report.model_dump_json(exclude={"observed": {"nodes"}}))
    else:
        click.echo(f"spokes at {found.input_commit[:12]}:")
        click.echo(survey.table(found))
    sys.exit(EXIT_PARTIAL if any(report.trouble for report in found.spokes) else 0)


def _comment(commenting: Commenting, outcome: reconciling.Outcome, *, branch: str) -> None:
    """Keep `outcome` as Caspian's comment on the pull request, and say so on
    stderr (stdout may be --json's); a forge that fails it fails the command,
    once the plan is printed."""
    assert outcome.edits is not None  # --comment needs --work-tree
    body = plan_comment(
        edits=outcome.edits,
        message=outcome.message if outcome.changes else None,
        branch=branch,
        input_commit=outcome.input_commit,
        now=outcome.decision.now,
    )
    number = commenting.number
    try:
        done = commenting.forge.comment_on(number, body=body, marker=MARKER)
    except ForgeError as error:
        click.echo(f"error: cannot comment on pull request {number}: {error}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"Caspian's plan comment on pull request {number}: {done}", err=True)


def _say_edits(edits: Edits, *, branch: str) -> None:
    """What `plan --work-tree` took from the work tree, and against what."""
    count = len(edits.edited)
    files = f"{count} file{'s' * (count != 1)}"
    if edits.base is None:
        click.echo(
            f"planned with the work tree {edits.where} as it stands: it shares no commit with "
            "the remote (a shallow checkout of a pull request's merge commit, say), so its "
            f"jobs/, spokes/ and caspian.yaml are taken whole ({files} unlike {branch}'s), "
            f"and a job added on {branch} since it was checked out reads as deleted:"
        )
    elif not edits.edited:
        click.echo(
            f"the work tree {edits.where} changes no file Caspian reads since {edits.base[:12]}: "
            f"planned as {branch} stands"
        )
    else:
        click.echo(
            f"planned with the edits of the work tree {edits.where} since {edits.base[:12]} "
            f"({files}), as if pushed on top of {branch}:"
        )
    for path, change in edits.edited.items():
        click.echo(f"  {change:8} {path}")
    for path in edits.crossed:
        click.echo(
            f"{path}: changed on {branch} since {(edits.base or '')[:12]} as well: planned "
            f"with {edits.where}'s; pull first to plan with both",
            err=True,
        )
    click.echo("")


def _planned(outcome: reconciling.Outcome) -> dict[str, Any]:
    """What `plan --json` prints: the files a reconcile would change, its commit
    message (None where it would commit nothing), the fleet repo's problems, and
    each job's record as status/placements.yaml would hold it; with
    --work-tree, the edits planned with."""
    decision = outcome.decision
    planned = _plan_object(
        input_commit=outcome.input_commit,
        changes=outcome.changes,
        message=outcome.message if outcome.changes else None,
        partial=outcome.partial,
        problems=decision.problems,
        jobs=rendering.ledger_document(decision.ledger)["entries"],
    )
    if outcome.edits is not None:
        planned["work_tree"] = outcome.edits.model_dump(mode="json")
    return planned


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
        "problems": [problem.model_dump(mode="json", exclude={"stops_at"}) for problem in problems],
        "jobs": list(jobs),
    }


def _plan(
    target: Target,
    *,
    now_text: str | None,
    under_review: str | None,
    work_tree: Path | None = None,
    as_json: bool = False,
) -> reconciling.Outcome:
    """A reconcile's decision and changes, without committing (`plan`, `explain`)."""
    observer = target.observer()
    return _run(
        lambda repo: reconciling.plan(
            repo,
            now=parse_now(now_text),
            bot=bot_email(),
            observer=observer,
            under_review=under_review,
            work_tree=work_tree,
        ),
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
    except ledger.LedgerError as error:
        if as_json:  # a file of the fleet repo that stops every plan, as caspian.yaml can
            click.echo(json.dumps(_plan_object(problems=[_ledger_problem(error)])))
        click.echo(f"error: {error}", err=True)
    except (GitError, ForgeError) as error:
        click.echo(f"error: {error}", err=True)
    sys.exit(EXIT_ERROR)


def _report(outcome: reconciling.Outcome) -> None:
    _report_decision(outcome.decision)
    if outcome.commit:
        click.echo(f"committed {outcome.commit[:12]} on {outcome.input_commit[:12]} and pushed")
    else:
        click.echo(f"no change at {outcome.input_commit[:12]}: nothing committed")


def _report_round(done: Round, *, branch: str) -> None:
    """Pull-request mode: the whole decision, what went to main, what to review."""
    _report_decision(done.outcome.decision)
    carried, proposed = done.proposal.carried, done.proposal.proposed
    declining = done.declining
    if declining is not None and declining.commit:
        click.echo(
            f"{declining.pull} was closed unmerged: committed {declining.commit[:12]}, which "
            f"declines its new places ({declining.named}); each is proposed again once its "
            "AppWrapper changes"
        )
    if carried.commit:
        click.echo(
            f"committed {carried.commit[:12]} on {carried.input_commit[:12]} and pushed: "
            "what carries out the plan main holds"
        )
    pull = f" (pull request {done.pull})" if done.pull else ""
    if proposed is None:
        click.echo(f"nothing to place anew at {done.tip[:12]}: nothing proposed{pull}")
    elif proposed.commit:
        click.echo(f"proposed {proposed.commit[:12]} on {branch} for review{pull}")
    else:
        click.echo(f"{branch} already proposes this{pull}")


def _report_decision(decision: Decision) -> None:
    click.echo(messages.placement_table(decision))
    click.echo("")
    estimated, baseline, saved = messages.savings(decision.ledger)
    if saved is not None:
        click.echo(
            f"carbon: {estimated:,.0f} gCO2 planned vs {baseline:,.0f} gCO2 for qos "
            f"(earliest start, carbon-blind): {messages.against_qos(saved, digits=1)}"
        )
    click.echo(f"solver: {decision.plan.solver_status} ({decision.plan.method})")
    for entry in decision.ledger.entries:
        if entry.phase in (ledger.Phase.INVALID, ledger.Phase.PENDING):
            click.echo(f"{entry.phase.value.lower()}: {entry.id}: {entry.reason}", err=True)
        elif entry.late and entry.phase in ledger.UNFINISHED:
            click.echo(f"late: {entry.id}: {entry.reason}", err=True)
    for line in messages.draining(decision):
        click.echo(f"unschedulable: {line}")


@click.command()
@now_option
def demo(now_text: str | None) -> None:
    """One reconcile of the template fleet in a temporary directory: no network,
    no cluster, no keys."""
    now = parse_now(now_text)
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
        outcome = reconciling.reconcile_once(repo, now=now, author=bot_author())
        _report(outcome)
        again = reconciling.reconcile_once(repo, now=now, author=bot_author())
        click.echo(
            "second reconcile: "
            + ("no change, no commit" if again.commit is None else f"committed {again.commit}")
            + f"; solver: {again.decision.plan.solver_status}"
        )
        if outcome.commit:
            click.echo("\n$ git log --stat -1\n" + repo.show(outcome.commit))
    if outcome.partial:
        sys.exit(EXIT_PARTIAL)
