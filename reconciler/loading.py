"""Reading a fleet repo: `load_fleet` takes the repo's files as {path: bytes}
(read from one commit by the git adapter, or from a work tree by `caspian
validate`) and returns a `Fleet`. Pure. The policy and the spoke files are
read here; each AppWrapper by `reconciler/appwrappers.py`.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler import appwrappers, companions, yamlio
from reconciler.fleet import (
    JOBS_DIR,
    MANIFEST_SUFFIXES,
    POLICY_FILE,
    SPOKES_DIR,
    Fleet,
    FleetConfigError,
    JobRequest,
    Policy,
    Problem,
    Spoke,
    astray,
    broken_spokes,
    home_of,
    printable,
    split_suffix,
)

# What AppWrapper files read to, by path and content.
Reads = dict[tuple[str, bytes], list[JobRequest | list[Problem]]]


class JobFiles:
    """What each AppWrapper file read to, kept from one `load_fleet` to the
    next by a caller that reads the same fleet again and again (a watcher).
    A file reads the same under the same policy, spoke labels and schema
    check, so only a file whose path or content is new is read again; a
    change of those three reads every file again. Only the files of the last
    call are kept. At 5000 AppWrappers, reading them was half of a reconcile
    after a push that changed none (10.1 of 21.3 s under cProfile)."""

    def __init__(self) -> None:
        # One attribute, assigned whole: a reader never pairs one call's
        # context with another's files.
        self.last: tuple[object, Reads] = (None, {})


def load_fleet(
    files: Mapping[str, bytes],
    *,
    appwrapper_schema: appwrappers.SchemaCheck,
    links: Collection[str] = frozenset(),
    submodules: Collection[str] = frozenset(),
    held: Mapping[str, str] | None = None,
    known: JobFiles | None = None,
) -> Fleet:
    """Read policy, spokes and AppWrappers from a snapshot of the repo. `links` says
    which of `files` are symbolic links (their content is the path they point to),
    `submodules` where git holds another repo's commit instead of files.
    `held` gives each job the ledger knows the file it was read from: of two
    files that define one job, that one keeps it. `known` holds what the
    AppWrapper files read to in the last call, and is updated: the fleet is
    the same with it or without."""
    misnamed = _names_not_printable(files)
    files = {path: raw for path, raw in files.items() if path not in misnamed}
    policy = _load_policy(files, links=links)
    spokes, problems = _load_spokes(files, links=links)
    problems[:0] = misnamed.values()
    broken = broken_spokes(problems, loaded=spokes)
    # After broken_spokes: a directory's name is no spoke's, and the spokes in it
    # are not known.
    problems.extend(_directories_not_read(files, links=links, submodules=submodules))
    problems.extend(_in_capitals(files))
    problems.extend(_astray(files, links=links))
    # A broken spoke's labels are not known: a job may name it or select it, and
    # waits for it, rather than being refused for another file's fault.
    named: dict[str, Mapping[str, str] | None] = {
        **{spoke.name: spoke.metadata.labels for spoke in spokes},
        **dict.fromkeys(broken),
    }
    labels = {name: named[name] for name in sorted(named)}
    context = (policy, labels, appwrapper_schema)
    last_context, last_read = known.last if known is not None else (None, {})
    before = last_read if last_context == context else {}
    read: Reads = {}
    loaded: list[JobRequest] = []
    for path in sorted(p for p in files if _is_job_file(p)):
        if path in links:
            problems.append(_link_problem(path, files[path]))
            continue
        key = (path, files[path])
        found = before.get(key)
        if found is None:
            found = appwrappers.load_job_file(
                path, files[path], policy=policy, labels=labels, check=appwrapper_schema
            )
        read[key] = found
        for job_or_problems in found:
            if isinstance(job_or_problems, JobRequest):
                loaded.append(job_or_problems)
            else:
                problems.extend(job_or_problems)
    jobs, twice = _one_file_each(loaded, held=held or {})
    problems.extend(twice)
    clashing = companions.clashes(jobs, held=held or {})
    problems += [
        Problem(file=job.source, field=field, reason=reason)
        for job in jobs
        if job.id in clashing
        for field, reason in [clashing[job.id]]
    ]
    jobs = [job for job in jobs if job.id not in clashing]
    cycles = appwrappers.in_cycles(jobs)
    for job in jobs:
        if job.id in cycles:
            others = " after ".join((*cycles[job.id], job.id))
            problems.append(
                Problem(
                    file=job.source,
                    field=f"metadata.annotations.{appwrappers.AFTER}",
                    reason=f"the jobs wait for each other in a circle ({others}), so none "
                    "could ever start: take one of them out of the next one's caspian.dev/after",
                )
            )
    jobs = [job for job in jobs if job.id not in cycles]
    if known is not None:
        known.last = (context, read)
    return Fleet(
        policy=policy,
        spokes=spokes,
        jobs=tuple(jobs),
        problems=tuple(problems),
        broken_spokes=broken,
    )


def _one_file_each(
    jobs: list[JobRequest], *, held: Mapping[str, str]
) -> tuple[list[JobRequest], list[Problem]]:
    """The jobs with a name of their own, and a problem for each file that
    defines a job another file defines too. The file the ledger read the job
    from keeps it, else the first by path: a copy committed later must not take
    over a job that is placed, or runs, with a template of its own."""
    by_id: dict[str, list[JobRequest]] = {}
    for job in jobs:
        by_id.setdefault(job.id, []).append(job)
    kept, problems = [], []
    for job in jobs:
        same = by_id[job.id]
        keeper = next((j for j in same if j.source == held.get(job.id)), same[0])
        if job is keeper:
            kept.append(job)
            continue
        placed = " (where Caspian placed it from)" if keeper.source == held.get(job.id) else ""
        problems.append(
            Problem(
                file=job.source,
                field="metadata.name",
                reason=f"{job.id} is already defined in {keeper.source}{placed}; "
                "give one of them another name",
            )
        )
    return kept, problems


def _is_job_file(path: str) -> bool:
    return path.startswith(JOBS_DIR) and path.endswith(MANIFEST_SUFFIXES)


def _names_not_printable(files: Mapping[str, bytes]) -> dict[str, Problem]:
    """The files of jobs/ and spokes/ whose names git holds in bytes that are
    no UTF-8 (a name saved in Latin-1, say), or with a control character (a
    newline, say), each with its problem, which names it with those escaped
    (Problem does)."""
    problems = {}
    for path in sorted(p for p in files if p.startswith((JOBS_DIR, SPOKES_DIR))):
        shown = printable(path)
        if shown == path:
            continue
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            fix = "its name is not UTF-8, so it is not read: rename it in UTF-8 (git mv)"
        else:
            fix = "its name holds a control character, so it is not read: rename it (git mv)"
        problems[path] = Problem(
            file=path,
            field="-",
            reason=f"{fix}, as Kubernetes, Argo CD and Caspian's ledger write names",
        )
    return problems


def _in_capitals(files: Mapping[str, bytes]) -> list[Problem]:
    """Files in jobs/ that would be read but for the case of their suffix
    (`train.YAML`), which would otherwise be silently left out."""
    problems = []
    for path in sorted(p for p in files if p.startswith(JOBS_DIR)):
        stem, suffix = split_suffix(path)
        if suffix.lower() in MANIFEST_SUFFIXES and suffix not in MANIFEST_SUFFIXES:
            fix = "Caspian reads AppWrappers from files ending in .yaml, .yml or .json, in "
            fix += f"lower case: rename it {stem}{suffix.lower()}"
            problems.append(Problem(file=path, field="-", reason=fix))
    return problems


# A manifest's kind, as YAML writes it at a document's top, or as JSON does.
_KIND = re.compile(
    rb"^kind:[ \t]*[\"']?(AppWrapper|Spoke)[\"']?[ \t]*(?:#.*)?\r?$"
    rb'|"kind"\s*:\s*"(AppWrapper|Spoke)"',
    re.MULTILINE,
)


def _astray(files: Mapping[str, bytes], *, links: Collection[str]) -> list[Problem]:
    """AppWrappers and spokes where Caspian reads neither (a file at the
    fleet's top, or in job/): each is named with the move that gets it read."""
    problems = []
    for path in sorted(p for p in files if astray(p) and p not in links):
        found = _KIND.search(files[path])
        if found is None:
            continue
        spoke = (found.group(1) or found.group(2)) == b"Spoke"
        what, home = ("a spoke", SPOKES_DIR) if spoke else ("an AppWrapper", JOBS_DIR)
        problems.append(
            Problem(
                file=path,
                field="kind",
                reason=f"{what} outside {home}, where Caspian reads none, so it is left out: "
                f"move it there (git mv {path} {home_of(path, spoke=spoke)})",
            )
        )
    return problems


def _directories_not_read(
    files: Mapping[str, bytes], *, links: Collection[str], submodules: Collection[str]
) -> list[Problem]:
    """Where jobs/ or spokes/ hold a directory Caspian cannot read, which would
    otherwise leave its AppWrappers or spokes out without a word: a git
    submodule, or a link whose name has no suffix (git cannot say whether a
    link points to a directory; one named like a file is read as one)."""
    problems = [
        Problem(
            file=path,
            field="-",
            reason="a git submodule: git holds a commit of another repo here, not its "
            "files, so Caspian reads none of them; commit the files into this repo instead",
        )
        for path in sorted(submodules)
        if path.startswith((JOBS_DIR, SPOKES_DIR))
    ]
    problems.extend(
        _link_problem(path, files[path])
        for path in sorted(links)
        if path.startswith((JOBS_DIR, SPOKES_DIR)) and not split_suffix(path)[1]
    )
    return problems


def _link_problem(path: str, target: bytes) -> Problem:
    # Git holds a link, not the file it points to, and Argo CD and kustomize
    # would each resolve it their own way: Caspian reads only what is committed.
    shown = target.decode("utf-8", "replace")
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    return Problem(
        file=path,
        field="-",
        reason=f"a symbolic link (to {shown!r}): Caspian reads files, not links; "
        + (
            "commit the file itself at this path"
            if split_suffix(path)[1]
            else "commit the files it points to below this path instead"
        ),
    )


def _load_policy(files: Mapping[str, bytes], *, links: Collection[str]) -> Policy:
    if POLICY_FILE not in files:
        stem = split_suffix(POLICY_FILE)[0]
        near = [p for p in sorted(files) if "/" not in p and split_suffix(p)[0].lower() == stem]
        fix = f"rename {near[0]} to it" if near else "run `caspian init` or add it"
        raise FleetConfigError([Problem(file=POLICY_FILE, field="-", reason=f"missing: {fix}")])
    if POLICY_FILE in links:
        raise FleetConfigError([_link_problem(POLICY_FILE, files[POLICY_FILE])])
    doc, unread = _one_document(POLICY_FILE, files[POLICY_FILE])
    if unread:
        raise FleetConfigError([unread])
    try:
        return Policy.model_validate(doc)
    except ValidationError as invalid:
        raise FleetConfigError(_problems(POLICY_FILE, invalid, model=Policy, doc=doc)) from None


def _load_spokes(
    files: Mapping[str, bytes], *, links: Collection[str]
) -> tuple[tuple[Spoke, ...], list[Problem]]:
    """The spokes that load, and the problems of the files that do not. With no
    spoke at all nothing can be planned: that raises."""
    spokes: list[Spoke] = []
    problems: list[Problem] = []
    for path in sorted(p for p in files if p.startswith(SPOKES_DIR)):
        stem, suffix = split_suffix(path)
        if suffix != ".yaml" and suffix.lower() in MANIFEST_SUFFIXES:
            # Left out, its spoke would silently take no work.
            fix = f"spoke files end in .yaml: rename it {stem}.yaml"
            problems.append(Problem(file=path, field="-", reason=fix))
            continue
        if not path.endswith(".yaml"):
            continue
        if path in links:
            problems.append(_link_problem(path, files[path]))
            continue
        doc, unread = _one_document(path, files[path])
        if unread:
            problems.append(unread)
            continue
        if doc.get("kind") == "AppWrapper":  # one line, not one per field a spoke lacks
            there = home_of(path, spoke=False)
            fix = (
                f"an AppWrapper, in spokes/ where spoke files are: move it (git mv {path} {there})"
            )
            problems.append(Problem(file=path, field="kind", reason=fix))
            continue
        try:
            spoke = Spoke.model_validate(doc)
        except ValidationError as invalid:
            problems.extend(_problems(path, invalid, model=Spoke, doc=doc))
            continue
        stem = path.rsplit("/", 1)[-1].removesuffix(".yaml")
        if spoke.name != stem:
            problems.append(
                Problem(
                    file=path,
                    field="metadata.name",
                    reason=f"{spoke.name!r} must match the file name; rename one to the other",
                )
            )
            continue
        spokes.append(spoke)
    if not spokes:
        raise FleetConfigError(
            problems
            or [Problem(file=SPOKES_DIR, field="-", reason="no spokes: add spokes/<name>.yaml")]
        )
    return tuple(spokes), problems


def _one_document(path: str, raw: bytes) -> tuple[Any, Problem | None]:
    """The one mapping the file at `path` holds, or the problem why not."""

    def problem(reason: str, stops_at: int | None = None) -> tuple[Any, Problem]:
        return None, Problem(file=path, field="-", reason=reason, stops_at=stops_at)

    if pointer := yamlio.lfs_pointer(raw):
        return problem(pointer)
    try:
        docs = yamlio.load_all(raw)
    except yamlio.YAMLError as error:
        return problem(yamlio.refusal(error), yamlio.error_place(error, raw))
    if len(docs) != 1:
        return problem(f"expected one YAML document, found {len(docs)}")
    if not isinstance(docs[0], dict):
        found = _SHAPES.get(type(docs[0]), repr(docs[0]))
        return problem(f"expected a mapping (apiVersion, kind, metadata, spec), found {found}")
    if (field := yamlio.lone_surrogates(docs[0])) is not None:
        return None, Problem(file=path, field=field, reason=yamlio.SURROGATE_FIX)
    return docs[0], None


# What a YAML document that is no mapping holds, in the words of its problem line.
_SHAPES = {type(None): "an empty document", list: "a list", str: "a string"}


def _problems(
    path: str, invalid: ValidationError, *, model: type[BaseModel], doc: Any
) -> list[Problem]:
    """A problem line for each of `invalid`'s errors; `doc` is what the file
    holds, quoted where pydantic's input is a value already converted."""
    result = []
    for error in invalid.errors():
        field = _dotted(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            known = _fields_beside(model, error["loc"])
            near = difflib.get_close_matches(str(error["loc"][-1]), known, n=1, cutoff=NEAR)
            message = "unknown field: " + (
                f"did you mean {near[0]}?" if near else "check its spelling"
            )
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "literal_error":
            message = f"{message}, found {error['input']!r}{_near(error)}"
        elif error["type"] == "string_type" and (bare := yamlio.not_text(error["input"])):
            message = bare
        elif error["type"] in _SHOW_INPUT and isinstance(error["input"], str | int | float):
            # pydantic names the bound or the type, not what the file holds; a
            # bound on a quantity sees it converted ("-3" as -3.0).
            written = _written(doc, error["loc"])
            found = written if isinstance(written, str | int | float) else error["input"]
            message = f"{message}, found {found!r}"
        elif error["type"] in ("list_type", "tuple_type"):
            message = _not_a_list(error["input"]) or message
        elif error["type"] == "value_error":
            # pydantic's prefix, not Caspian's reason.
            message = message.removeprefix("Value error, ")
        result.append(Problem(file=path, field=field or "-", reason=message))
    return result


def _not_a_list(value: Any) -> str | None:
    """What to write where YAML holds one item and the field takes a list."""
    if isinstance(value, dict):  # `maintenance:` with its item's `- ` left out
        return "one entry where a list is wanted: begin it with '- '"
    if isinstance(value, str | int | float):  # `namespaces: batch`
        return f"{value!r} is one value where a list is wanted: write [{value}]"
    return None


# pydantic's errors about a scalar's value, whose message does not quote it.
_SHOW_INPUT = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "int_parsing",
        "int_from_float",
        "int_type",
        "float_parsing",
        "float_type",
        "bool_parsing",
        "bool_type",
    }
)


# How like a known field a misspelt one must be to be named as meant: no far
# guess (`gpu` is no `cpu`).
NEAR = 0.75


def _fields_beside(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The fields, as YAML spells them, of the mapping that holds the field at
    `loc` in `model`; none where the way there leaves the models."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list: its model is the list's
        fields = {(f.alias or name): f for name, f in model.model_fields.items()}
        inner = _model_in(fields[part].annotation) if part in fields else None
        if inner is None:
            return []
        model = inner
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, itself or in a list, tuple or `| None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


def _near(error: Any) -> str:
    """The allowed value a misspelt one is close to, as a hint."""
    allowed = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
    near = difflib.get_close_matches(str(error["input"]), allowed, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _written(doc: Any, loc: Iterable[int | str]) -> Any:
    """The value at `loc` in `doc` as the file holds it; None where there is none."""
    for part in loc:
        if isinstance(doc, dict) and isinstance(part, str):
            doc = doc.get(part)
        elif isinstance(doc, list) and isinstance(part, int) and part < len(doc):
            doc = doc[part]
        else:
            return None
    return doc


def _dotted(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text
