"""Reading one AppWrapper into the `JobRequest` Caspian plans: its wrapped
Job's requests and placement, what the API server or Argo CD would refuse in it,
and its annotations, Caspian's own (`caspian.dev/`) and the AppWrapper
controller's (`workload.codeflare.dev.appwrapper/`), which Caspian reads as that
controller does. A document that cannot be planned is its problems instead,
every one that can be told apart. Pure.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from reconciler import (
    companions,
    jobspec,
    kubeversions,
    podsecurity,
    quantities,
    refusals,
    selectors,
    yamlio,
)
from reconciler.fleet import API_VERSION, MOST_WATTS, JobRequest, Policy, Problem, home_of

APPWRAPPER_API = "workload.codeflare.dev/v1beta2"
ANNOTATION = "caspian.dev/"
# The AppWrapper controller's own annotations, which Caspian reads as it does.
APPWRAPPER = "workload.codeflare.dev.appwrapper/"

SchemaCheck = Callable[[Mapping[str, Any]], list[tuple[str, str]]]


def load_job_file(
    path: str,
    raw: bytes,
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    check: SchemaCheck,
) -> list[JobRequest | list[Problem]]:
    if (size := yamlio.largest_document(raw)) > yamlio.MOST_DOCUMENT_BYTES:
        reason = (
            f"a document of {size / 2**20:.1f} MiB, where Kubernetes keeps objects of up to "
            "1.5 MiB: no AppWrapper, and not read; move the file out of jobs/"
        )
        return [[Problem(file=path, field="-", reason=reason)]]
    if pointer := yamlio.lfs_pointer(raw):
        return [[Problem(file=path, field="-", reason=pointer)]]
    template = yamlio.template_marks(raw)
    # Argo CD reads .json manifests too, and users write them.
    in_json = path.endswith(".json")
    try:
        docs = yamlio.load_json(raw) if in_json else yamlio.load_all(raw)
    except yamlio.YAMLError as error:
        reason = yamlio.refusal(error, language="JSON" if in_json else "YAML")
        reason += f"; {template}" if template else ""
        stops_at = yamlio.error_place(error, raw)
        return [[Problem(file=path, field="-", reason=reason, stops_at=stops_at)]]
    label = (lambda i: f"{path}#{i}") if len(docs) > 1 else (lambda i: path)
    found = [
        _job_from_doc(doc, source=label(index), policy=policy, labels=labels, check=check)
        for index, doc in enumerate(docs)
    ]
    refused = next((each for each in found if isinstance(each, list)), None)
    if template and refused is not None:
        # Once per file: one template's marks make many problems.
        refused.append(Problem(file=path, field="-", reason=template))
    return found


def _not_an_appwrapper(doc: Mapping[str, Any], *, path: str) -> tuple[str, str]:
    """The field, and the problem with the way out, of a document in jobs/
    (in the file at `path`) that is no AppWrapper."""
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if (api, kind) == (API_VERSION, "Spoke"):
        there = home_of(path, spoke=True)
        return "kind", f"a spoke, in jobs/ where AppWrappers are: move it (git mv {path} {there})"
    if api is None and kind is None:
        return (
            "kind",
            f"no apiVersion and kind: an AppWrapper's are {APPWRAPPER_API} and AppWrapper",
        )
    found = f"expected {APPWRAPPER_API} AppWrapper, found {api}/{kind}"
    if kind == "Job" and api in ("batch/v1", None):
        # A Kubernetes user's first file, most likely.
        return "kind", (
            f"{found}: Caspian places AppWrappers, each holding one Job: wrap it (apiVersion: "
            f"{APPWRAPPER_API}, kind: AppWrapper, the Job under spec.components[0].template)"
        )
    if kind == "Kustomization":
        return "kind", (
            f"{found}: Caspian reads each file in jobs/ as it is, not through kustomize; "
            "move it out"
        )
    if isinstance(kind, str) and kind.lower() == "appwrapper" and kind != "AppWrapper":
        return "kind", f"{kind!r}: kinds are read as written, in their case: write AppWrapper"
    if kind == "AppWrapper" and api is None:
        return "apiVersion", f"required: write apiVersion: {APPWRAPPER_API}"
    if kind == "AppWrapper" and isinstance(api, str) and api.startswith("workload.codeflare.dev/"):
        return "apiVersion", (
            f"{api!r}: Caspian reads the AppWrapper of {APPWRAPPER_API}, with the Job under "
            f"spec.components[0].template: write apiVersion: {APPWRAPPER_API}"
        )
    return "kind", found


def _job_from_doc(
    doc: Any,
    *,
    source: str,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    check: SchemaCheck,
) -> JobRequest | list[Problem]:
    def problem(field: str, reason: str) -> list[Problem]:
        return [Problem(file=source, field=field, reason=reason)]

    if not isinstance(doc, dict):
        return problem("-", "expected a mapping (an AppWrapper object)")
    if doc.get("apiVersion") != APPWRAPPER_API or doc.get("kind") != "AppWrapper":
        return problem(*_not_an_appwrapper(doc, path=source.partition("#")[0]))
    if (field := yamlio.lone_surrogates(doc)) is not None:
        return problem(field, yamlio.SURROGATE_FIX)
    schema_errors = check(doc)
    if schema_errors:
        return [Problem(file=source, field=f, reason=r) for f, r in schema_errors]
    metadata = doc.get("metadata") or {}
    name = metadata.get("name")
    namespace = metadata.get("namespace") or policy.spec.namespace
    # Read on whatever became of the name and namespace, so that one `caspian
    # validate` names every field to fix, not the first only.
    found = _identity_problems(name, namespace, allowed=policy.spec.namespaces)

    def refused(field: str, reason: str) -> list[Problem]:
        """The problems found so far and the one that stops the reading here."""
        return [Problem(file=source, field=f, reason=r) for f, r in [*found, (field, reason)]]

    components = doc["spec"]["components"]
    job_at = companions.the_job(components)
    if isinstance(job_at, tuple):
        return refused(*job_at)
    template = components[job_at]["template"]
    field = f"spec.components[{job_at}].template"
    inner = (template.get("metadata") or {}).get("namespace")
    if inner and inner != namespace:
        # The AppWrapper controller's webhook refuses this too.
        return refused(
            f"{field}.metadata.namespace",
            f"{inner!r} is not the AppWrapper's namespace {namespace!r}: an AppWrapper "
            "cannot create objects in another namespace; remove it, or move the AppWrapper",
        )
    job_spec = template.get("spec")
    if not isinstance(job_spec, dict):
        return refused(f"{field}.spec", "required: the Job's spec")
    found += [(f"{field}.{where}", why) for where, why in refusals.fought_by_argocd(template)]
    if components[job_at].get("podSetInfos"):
        # What the AppWrapper controller would add to the pods; Caspian renders
        # the Job without it, so it would be lost without a word.
        found.append(
            (
                f"spec.components[{job_at}].podSetInfos",
                "Kueue's admission of it on one cluster, as `kubectl get -o yaml` copies "
                "it: remove it; Caspian places the job across spokes, and a nodeSelector "
                "or tolerations its pods need go in the Job's pod template",
            )
        )
    try:
        default = policy.spec.defaults.requests
        pod, pods_at_once, defaulted = jobspec.requests(
            job_spec, default={"cpu": default.cpu, "memory": default.memory}
        )
        placement = jobspec.placement(job_spec)
        pod_resources = jobspec.pod_resources(job_spec)
    except jobspec.FieldError as error:
        found.append((f"{field}.spec.{error.field}", error.reason))
    found += [(f"{field}.{where}", why) for where, why in refusals.refused_by_api_server(template)]
    annotations = metadata.get("annotations") or {}
    annotated, unread = _annotations(
        annotations, policy=policy, labels=labels, namespace=namespace, own=f"{namespace}/{name}"
    )
    found += [(f"metadata.annotations.{error.field}", error.reason) for error in unread]
    found += _misplaced(metadata, components[job_at], at=job_at)
    wrapped, trouble = companions.read(
        components, job_at=job_at, namespace=namespace, appwrapper=str(name)
    )
    found += trouble
    if empty := _no_time_to_run(annotated):
        found.append((f"metadata.annotations.{ANNOTATION}not-before", empty))
    if found:
        first: dict[str, str] = {}  # one reason a field, the first found
        for where, why in found:
            first.setdefault(where, why)
        return [Problem(file=source, field=where, reason=why) for where, why in first.items()]
    # The job runs at most as long as its Job may: Kubernetes ends it then
    # (counted from when it is resumed), so neither the policy's default nor a
    # longer caspian.dev/duration holds room past that.
    limit = job_spec.get("activeDeadlineSeconds")
    if isinstance(limit, int) and 0 < limit < annotated["duration"].total_seconds():
        if ANNOTATION + "duration" in annotations:
            annotated["duration_cut"] = annotated["duration"]
        annotated["duration"] = timedelta(seconds=limit)
    return JobRequest(
        id=f"{namespace}/{name}",
        name=name,
        namespace=namespace,
        source=source,
        job_template=template,
        template_hash=template_hash(template),
        companions=wrapped,
        cpu=pod.cpu * pods_at_once,
        memory_bytes=pod.memory_bytes * pods_at_once,
        gpu=pod.gpu * pods_at_once,
        pod=pod,
        pods_at_once=pods_at_once,
        placement=placement,
        suspended=doc["spec"].get("suspend") is True,
        needs=companions.needs_met(
            jobspec.needs(job_spec, namespace=namespace), wrapped, namespace=namespace
        ),
        defaulted=defaulted,
        pod_resources=pod_resources,
        pod_security_broken=podsecurity.broken_rules(job_spec.get("template") or {}),
        kubernetes_features=kubeversions.features(job_spec),
        priority_class=_priority_class(metadata, template),
        **annotated,
    )


def _no_time_to_run(annotated: Mapping[str, Any]) -> str | None:
    """Why a job's own caspian.dev/not-before and deadline leave it no time at
    all, if they do: planned, it could only be late, whatever it runs for; a
    date mistyped in one of them, most likely. A window merely shorter than the
    job's duration is planned, late, with the reason: a duration is an estimate."""
    not_before, deadline = annotated["not_before"], annotated["deadline"]
    if not_before is None or deadline is None or not_before < deadline:
        return None
    return (
        f"{quantities.format_time(not_before)} is not before its {ANNOTATION}deadline "
        f"{quantities.format_time(deadline)}: no start meets it; move one of them"
    )


def _not_a_name(name: Any) -> str:
    if name is None or name == "":
        return "required: a DNS label (lower-case letters, digits and '-', at most 63)"
    text = str(name)  # the schema has refused what is not text already
    if len(text) > 63:
        return f"{text!r} is {len(text)} characters: a DNS label has at most 63"
    reason = f"{text!r} is not a DNS label: lower-case letters, digits and '-'"
    fixed = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return reason + (f", e.g. {fixed!r}" if refusals.is_dns_label(fixed) else "")


# Kueue's label for a WorkloadPriorityClass, which it weighs a workload by
# before the PriorityClass of its pods.
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"


def _identity_problems(
    name: Any, namespace: Any, *, allowed: Sequence[str] | None
) -> list[tuple[str, str]]:
    """What is wrong with the job's name and namespace, as (field, reason)."""
    found = []
    if not refusals.is_dns_label(name):
        found.append(("metadata.name", _not_a_name(name)))
    if not refusals.is_dns_label(namespace):
        found.append(
            (
                "metadata.namespace",
                f"{namespace!r} is not a valid namespace: a DNS label (lower-case, digits, "
                "'-', at most 63)",
            )
        )
    elif allowed is not None and namespace not in allowed:
        found.append(
            (
                "metadata.namespace",
                f"{namespace!r} is not among caspian.yaml's spec.namespaces "
                f"({', '.join(allowed)}), the namespaces Argo CD's project admits: one Job "
                "outside them fails its spoke's whole sync; use one of them, or add it there "
                "and to the AppProject's destinations",
            )
        )
    return found


def _priority_class(metadata: Mapping[str, Any], job: Mapping[str, Any]) -> str | None:
    """What a job's priority is named by, as Kueue reads it: the
    WorkloadPriorityClass its AppWrapper's (or its Job's) label names, else the
    PriorityClass its pods name."""
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for name in (
        (metadata.get("labels") or {}).get(KUEUE_PRIORITY),
        ((job.get("metadata") or {}).get("labels") or {}).get(KUEUE_PRIORITY),
        pod.get("priorityClassName"),
    ):
        if isinstance(name, str) and name:
            return name
    return None


AFTER = ANNOTATION + "after"


def _after(annotations: Mapping[str, Any], *, namespace: str, own: str) -> tuple[str, ...]:
    """The jobs a job runs after, by namespace/name: its caspian.dev/after, a
    list of AppWrapper names apart by commas, each `name` (in its own
    namespace) or `namespace/name`."""
    raw = annotations.get(AFTER)
    if raw is None:
        return ()
    found = []
    for item in (part.strip() for part in str(raw).split(",")):
        space, _, name = item.rpartition("/") if "/" in item else (namespace, "", item)
        if not (refusals.is_dns_label(space) and refusals.is_dns_label(name)):
            raise jobspec.FieldError(
                AFTER,
                f"{item!r} is not an AppWrapper's name: write names (or namespace/name) apart "
                'by commas, e.g. "preprocess, batch/fetch-data"',
            )
        found.append(f"{space}/{name}")
    if own in found:
        raise jobspec.FieldError(
            AFTER, f"it names the job itself ({own}): it cannot run after itself"
        )
    return tuple(dict.fromkeys(found))


def in_cycles(jobs: Iterable[JobRequest]) -> dict[str, tuple[str, ...]]:
    """The jobs whose caspian.dev/after leads back to them, each with the jobs
    of its cycle (itself first): none of them could ever start."""
    after = {job.id: job.after for job in jobs}
    found = {}
    for start in after:
        # Walk back from `start` through what it waits for, the path kept.
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        seen = set()
        while stack and start not in found:
            current, path = stack.pop()
            for nxt in after.get(current, ()):
                if nxt == start:
                    found[start] = path
                    break
                if nxt in after and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*path, nxt)))
    return found


# ASCII digits only: str.isdigit() takes "²", which int() refuses.
_WHOLE = re.compile(r"[0-9]+")

# The AppWrapper controller's annotation for how many times a failed workload is
# run again; Caspian reads it as that controller does.
RETRY_LIMIT = APPWRAPPER + "retryLimit"


def _retry_limit(annotations: Mapping[str, Any]) -> int | None:
    raw = annotations.get(RETRY_LIMIT)
    if raw is None:
        return None
    # No spaces: the AppWrapper controller takes " 2" for no number and falls
    # back to its own limit, so a limit Caspian read there would not be its.
    text = str(raw)
    if not _WHOLE.fullmatch(text):
        raise jobspec.FieldError(
            RETRY_LIMIT,
            f"{raw!r} is not a whole number: how many times a failed Job of it runs again, "
            'written without spaces, e.g. "2" (without it, the policy\'s retryLimit holds)',
        )
    return int(text)


# The AppWrapper controller's annotations for the exit codes that end a workload
# for good (terminal) or, where given, the only ones it runs again after
# (retryable): comma-separated whole numbers.
TERMINAL_EXIT_CODES = APPWRAPPER + "terminalExitCodes"
RETRYABLE_EXIT_CODES = APPWRAPPER + "retryableExitCodes"


def _exit_codes(annotations: Mapping[str, Any], key: str) -> frozenset[int] | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    # No spaces: the AppWrapper controller skips " 3" as no number, so a code
    # Caspian read there would mean nothing to it.
    codes = str(raw).split(",")
    if not all(_WHOLE.fullmatch(code) for code in codes):
        raise jobspec.FieldError(
            key,
            f"{raw!r} is not a list of exit codes: write whole numbers apart by commas, "
            'without spaces, e.g. "1,137"',
        )
    return frozenset(int(code) for code in codes)


# The AppWrapper controller's annotations for how long it waits, or keeps, a
# workload's resources, by the JobRequest field that holds each.
GRACE_PERIODS = {
    "admission_grace": APPWRAPPER + "admissionGracePeriodDuration",
    "warmup_grace": APPWRAPPER + "warmupGracePeriodDuration",
}
FAILURE_GRACE = APPWRAPPER + "failureGracePeriodDuration"
RETRY_PAUSE = APPWRAPPER + "retryPausePeriodDuration"
SUCCESS_TTL = APPWRAPPER + "successTTLDuration"
FAILED_TTL = APPWRAPPER + "deletionOnFailureGracePeriodDuration"
DURATIONS = {
    **GRACE_PERIODS,
    "failure_grace": FAILURE_GRACE,
    "retry_pause": RETRY_PAUSE,
    "success_ttl": SUCCESS_TTL,
    "failed_ttl": FAILED_TTL,
}
# Every annotation of the AppWrapper controller's. Caspian reads all but the
# last: Argo CD's prune deletes a Job here, with no deletion to force.
APPWRAPPER_ANNOTATIONS = frozenset(
    {
        *DURATIONS.values(),
        RETRY_LIMIT,
        TERMINAL_EXIT_CODES,
        RETRYABLE_EXIT_CODES,
        APPWRAPPER + "forcefulDeletionGracePeriodDuration",
    }
)
_GRACE_MEANING = (
    "how long its pods may wait on their spoke before it is requeued (without it, the "
    "policy's requeueUnscheduled holds)"
)
_KEPT_MEANING = "its Job stays in rendered/ (without it, the policy's retention holds)"
DURATION_MEANINGS = {
    GRACE_PERIODS["admission_grace"]: _GRACE_MEANING,
    GRACE_PERIODS["warmup_grace"]: _GRACE_MEANING,
    FAILURE_GRACE: "how much longer its pods may wait on their spoke, past that grace, before "
    "it is requeued (without it, no longer)",
    RETRY_PAUSE: "how long after a Job of it failed its run again may start (without it, at once)",
    SUCCESS_TTL: f"how long after it succeeded {_KEPT_MEANING}",
    FAILED_TTL: f"how long after it failed for good {_KEPT_MEANING}",
}


def _go_duration(annotations: Mapping[str, Any], key: str, *, meaning: str) -> timedelta | None:
    """One of the AppWrapper controller's duration annotations, as Go reads it."""
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        return quantities.go_duration(str(raw))
    except ValueError as error:
        raise jobspec.FieldError(key, f"{error}, not negative: {meaning}") from None


def template_hash(template: Mapping[str, Any]) -> str:
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _annotations(
    annotations: Mapping[str, Any],
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    namespace: str,
    own: str,
) -> tuple[dict[str, Any], list[jobspec.FieldError]]:
    """The JobRequest fields the AppWrapper's annotations give, Caspian's and
    the AppWrapper controller's, and the problem of each that does not read:
    every one of them."""
    unread: list[jobspec.FieldError] = []

    def read(reader: Callable[[], Any]) -> Any:
        try:
            return reader()
        except jobspec.FieldError as error:
            unread.append(error)
            return None

    for key in annotations:
        if key.startswith(APPWRAPPER) and key not in APPWRAPPER_ANNOTATIONS:
            known = {name.removeprefix(APPWRAPPER) for name in APPWRAPPER_ANNOTATIONS}
            unread.append(_unknown(key, prefix=APPWRAPPER, known=known, whose="AppWrapper"))
    found = {
        **_hints(annotations, policy=policy, labels=labels, unread=unread),
        "retry_limit": read(lambda: _retry_limit(annotations)),
        "terminal_exit_codes": read(lambda: _exit_codes(annotations, TERMINAL_EXIT_CODES))
        or frozenset(),
        "retryable_exit_codes": read(lambda: _exit_codes(annotations, RETRYABLE_EXIT_CODES)),
        "after": read(lambda: _after(annotations, namespace=namespace, own=own)) or (),
    }
    for field, key in DURATIONS.items():
        meaning = DURATION_MEANINGS[key]
        found[field] = read(partial(_go_duration, annotations, key, meaning=meaning))
    return found, unread


def _unknown(key: str, *, prefix: str, known: Iterable[str], whose: str) -> jobspec.FieldError:
    """An annotation under a prefix Caspian reads that names nothing there:
    nothing reads it, so what it was meant to say is not done."""
    names = sorted(known)
    near = difflib.get_close_matches(key.removeprefix(prefix), names, n=1, cutoff=0.7)
    hint = f"did you mean {prefix}{near[0]}? " if near else ""
    return jobspec.FieldError(
        key, f"unknown {whose} annotation, which nothing reads; {hint}known: {', '.join(names)}"
    )


# The caspian.dev/ annotations Caspian reads, on the AppWrapper alone.
READ = frozenset(
    {
        "deadline",
        "complete-within",
        "duration",
        "not-before",
        "power-watts",
        "spokes",
        "spoke-selector",
        "after",
    }
)


def _misplaced(
    metadata: Mapping[str, Any], component: Mapping[str, Any], *, at: int
) -> list[tuple[str, str]]:
    """Caspian's annotations, or the AppWrapper controller's, written where
    they are not read: as the AppWrapper's labels, on its component, or on the
    Job or its pods. Left there, a deadline or a duration would silently not be
    had. One the AppWrapper has with the same value is a copy (of a Job
    Caspian rendered, say), and no problem."""
    job = component["template"]
    job_metadata = job.get("metadata") or {}
    pod_metadata = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
    field = f"spec.components[{at}].template"
    places = {
        "metadata.labels": metadata.get("labels"),
        f"spec.components[{at}].annotations": component.get("annotations"),
        f"{field}.metadata.annotations": job_metadata.get("annotations"),
        f"{field}.metadata.labels": job_metadata.get("labels"),
        f"{field}.spec.template.metadata.annotations": pod_metadata.get("annotations"),
        f"{field}.spec.template.metadata.labels": pod_metadata.get("labels"),
    }
    had = metadata.get("annotations") or {}
    said = "read on the AppWrapper's own metadata.annotations alone, so ignored here"
    return [
        (
            f"{place}.{key}",
            f"{said} (the AppWrapper's says {had[key]!r}): remove it"
            if key in had
            else f"{said}: move it there",
        )
        for place, found in places.items()
        if isinstance(found, Mapping)
        for key, value in found.items()
        if _read_on_the_appwrapper(key) and value != had.get(key)
    ]


def _read_on_the_appwrapper(key: object) -> bool:
    """Whether `key` is an annotation Caspian or the AppWrapper controller reads."""
    if not isinstance(key, str):
        return False
    return key in APPWRAPPER_ANNOTATIONS or (
        key.startswith(ANNOTATION) and key[len(ANNOTATION) :] in READ
    )


def _hints(
    annotations: Mapping[str, str],
    *,
    policy: Policy,
    labels: Mapping[str, Mapping[str, str] | None],
    unread: list[jobspec.FieldError],
) -> dict[str, Any]:
    """The job's caspian.dev/ annotations, read; the problem of each that does
    not read goes to `unread`. `labels` holds every spoke's labels, None for a
    spoke whose file does not load."""
    for key in annotations:
        if key.startswith(ANNOTATION) and key.removeprefix(ANNOTATION) not in READ:
            unread.append(_unknown(key, prefix=ANNOTATION, known=READ, whose="Caspian"))

    def parse(key: str, convert: Callable[[str], Any]) -> Any:
        raw = annotations.get(ANNOTATION + key)
        if raw is None:
            return None
        try:
            return convert(str(raw))
        except ValueError as error:
            unread.append(jobspec.FieldError(ANNOTATION + key, str(error)))
            return None

    def watts(text: str) -> float:
        try:
            value = float(text)
        except ValueError:  # Python's words ("could not convert string to float")
            raise ValueError(f"{text!r} is not a number of watts (e.g. 450)") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{text!r} must be a positive number of watts")
        if value > MOST_WATTS:
            raise ValueError(f"{text!r} is more than {MOST_WATTS:,.0f} W: is it in watts?")
        return value

    names = list(labels)

    def spoke_list(text: str) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        unknown = [s for s in chosen if s not in names]
        if not chosen:
            raise ValueError(
                f"names no spoke: give some of {', '.join(names)}, comma-separated, "
                "or remove it to allow any"
            )
        if unknown:
            raise ValueError(f"unknown spoke(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return chosen

    listed = parse("spokes", spoke_list) or tuple(names)
    selector = parse("spoke-selector", selectors.parse)
    allowed = listed
    if selector is not None:
        allowed = tuple(
            name
            for name in listed
            if (found := labels[name]) is None or selectors.matches(selector, found)
        )
        if not allowed:
            among = "spokes caspian.dev/spokes lists" if len(listed) < len(names) else "spokes"
            shown = "; ".join(
                f"{name}: {', '.join(f'{k}={v}' for k, v in (labels[name] or {}).items()) or '-'}"
                for name in listed
            )
            unread.append(
                jobspec.FieldError(
                    ANNOTATION + "spoke-selector",
                    f"selects none of the {among} (their labels: {shown}); "
                    "loosen it, or label a spoke in its file's metadata.labels",
                )
            )
    return {
        "deadline": parse(
            "deadline",
            _or_the_other(
                quantities.timestamp,
                quantities.duration,
                what="a length of time",
                annotation="complete-within",
            ),
        ),
        "complete_within": parse(
            "complete-within",
            _or_the_other(
                quantities.duration, quantities.timestamp, what="a time", annotation="deadline"
            ),
        ),
        "not_before": parse("not-before", quantities.timestamp),
        "duration": parse("duration", quantities.duration) or policy.spec.defaults.duration,
        "power_watts": parse("power-watts", watts) or policy.spec.defaults.power_watts,
        "allowed_spokes": allowed,
    }


def _or_the_other(
    read: Callable[[str], Any], other: Callable[[str], object], *, what: str, annotation: str
) -> Callable[[str], Any]:
    """`read`, whose error names `annotation` where `other` reads the text: a
    deadline and a time to complete within are easily put in each other's place."""

    def parsed(text: str) -> Any:
        try:
            return read(text)
        except ValueError as error:
            try:
                other(text)
            except ValueError:
                raise error from None
            raise ValueError(
                f"{error}; {text!r} is {what}: give it as {ANNOTATION}{annotation}"
            ) from None

    return parsed
