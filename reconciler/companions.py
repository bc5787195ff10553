"""What an AppWrapper may wrap beside its one batch/v1 Job: the ConfigMaps and
Services its pods use (a config file, the headless Service through which a
distributed job's pods find each other). Caspian renders them into the Job's
own file, so they go to whichever spoke the Job is placed on, move with it, and
are pruned with it. Other kinds are refused, each with why and what to do
instead. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler import refusals
from reconciler.fleet import Companion, JobRequest, Problem

JOB = ("batch/v1", "Job")
KINDS = (("v1", "ConfigMap"), ("v1", "Service"))
SAID = (
    "Caspian places AppWrappers that wrap one batch/v1 Job, with the ConfigMaps and "
    "Services it uses"
)
# Kinds people wrap with a Job that cannot go with it, and why.
REFUSED = {
    ("v1", "Secret"): (
        "its data would be in git, for everyone who reads the fleet repo, and in every "
        "commit for ever: create it on each spoke that may run the job (External Secrets, "
        "Sealed Secrets), and remove it here"
    ),
    ("v1", "PersistentVolumeClaim"): (
        "its volume would be made on the spoke the job runs on, and deleted when the job "
        "moves or ends: create the claim on each spoke that may run the job, and remove it here"
    ),
}


def the_job(components: Sequence[Mapping[str, Any]]) -> int | tuple[str, str]:
    """Where the one Job is among an AppWrapper's components, or the field and
    the reason why there is not one, with what to do."""
    kinds = [_kind_of(component) for component in components]
    jobs = [index for index, kind in enumerate(kinds) if kind == JOB]
    if len(jobs) == 1:
        return jobs[0]
    if not components:
        return "spec.components", f"{SAID}; this one wraps nothing: wrap the Job to run"
    if len(components) == 1:
        return "spec.components[0].template", f"expected a batch/v1 Job, found {'/'.join(kinds[0])}"
    found = f"found {len(components)} components ({', '.join('/'.join(k) for k in kinds)})"
    if jobs:
        return "spec.components", f"{SAID}; {found}: split them into one AppWrapper each"
    return "spec.components", f"{SAID}; {found}: wrap a batch/v1 Job"


def read(
    components: Sequence[Mapping[str, Any]], *, job_at: int, namespace: str, appwrapper: str
) -> tuple[tuple[Companion, ...], list[tuple[str, str]]]:
    """The companions of the Job at `job_at` of the AppWrapper named
    `appwrapper`, and (field, reason) for each problem found in them."""
    found: list[Companion] = []
    problems: list[tuple[str, str]] = []
    seen: dict[tuple[str, str], str] = {}
    for index, component in enumerate(components):
        if index == job_at:
            continue
        field = f"spec.components[{index}].template"
        template = component["template"]
        kind = _kind_of(component)
        if kind not in KINDS:
            problems.append((field, _refused_kind(kind)))
            continue
        trouble = list(_named(template, field=field, namespace=namespace))
        trouble += _selecting_the_job_by_name(template, field=field, appwrapper=appwrapper)
        trouble += [
            (f"{field}.{where}", why) for where, why in refusals.refused_in_companion(template)
        ]
        name = str((template.get("metadata") or {}).get("name"))
        if not trouble and (kind[1], name) in seen:
            trouble.append(
                (
                    f"{field}.metadata.name",
                    f"{kind[1]} {name!r} is wrapped twice, also at {seen[kind[1], name]}: "
                    "rename one, or remove one",
                )
            )
        problems += trouble
        if not trouble:
            seen[kind[1], name] = field
            found.append(Companion(field=field, kind=kind[1], name=name, template=template))
    return tuple(found), problems


def needs_met(
    needs: Iterable[str], companions: Iterable[Companion], *, namespace: str
) -> tuple[str, ...]:
    """The objects a Job's pods need (jobspec.needs) but those its AppWrapper
    wraps: those go to its spoke with it, so no spoke lacks them."""
    own = {f"{c.kind} {namespace}/{c.name}" for c in companions}
    return tuple(need for need in needs if need not in own)


def clashes(jobs: Sequence[JobRequest], *, held: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """(field, reason) by job id for each job that wraps a ConfigMap or Service
    another job of its namespace wraps too: placed on one spoke, the two would
    be one object, and kustomize refuses to build a directory that holds it
    twice, which stops the spoke's whole sync. The job the ledger placed from
    its file keeps the name, else the first by file."""
    owners: dict[tuple[str, str, str], JobRequest] = {}
    first = sorted(jobs, key=lambda job: (held.get(job.id) != job.source, job.source))
    found: dict[str, tuple[str, str]] = {}
    for job in first:
        keys = [(job.namespace, c.kind, c.name) for c in job.companions]
        taken = [
            (c, owners[key]) for c, key in zip(job.companions, keys, strict=True) if key in owners
        ]
        if not taken:
            # A job refused keeps no name from the jobs after it.
            owners.update(dict.fromkeys(keys, job))
            continue
        companion, owner = taken[0]
        found[job.id] = (
            f"{companion.field}.metadata.name",
            f"{job.namespace} has a {companion.kind} {companion.name!r} of "
            f"{owner.source} ({owner.id}) already, which may run on the same spoke: "
            "rename one, or create it on the spokes some other way and remove both",
        )
    return found


def _kind_of(component: Mapping[str, Any]) -> tuple[str, str]:
    template = component.get("template") or {}
    return (str(template.get("apiVersion")), str(template.get("kind")))


def _refused_kind(kind: tuple[str, str]) -> str:
    said = f"{'/'.join(kind)}: {SAID}"
    if kind in REFUSED:
        return f"{said}; {REFUSED[kind]}"
    return (
        f"{said}; give each spoke that may run it the {kind[1]} some other way (an Argo CD "
        "Application of the namespace's own manifests, say), and remove it here"
    )


# Labels the Job controller puts on a Job's pods that name that one Job: its
# name, which Caspian makes of the AppWrapper's and the template's hash, and
# its uid, which each cluster gives it.
JOB_LABELS = (
    "job-name",
    "batch.kubernetes.io/job-name",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
)


def _selecting_the_job_by_name(
    template: Mapping[str, Any], *, field: str, appwrapper: str
) -> list[tuple[str, str]]:
    """A Service that selects the Job's pods by the Job controller's labels,
    as Kubernetes' own examples of Indexed Jobs do: it would select no pod of
    the Job Caspian renders, and the pods would not find each other."""
    if template.get("kind") != "Service":
        return []
    selector = (template.get("spec") or {}).get("selector") or {}
    return [
        (
            f"{field}.spec.selector[{key}]",
            f"Caspian names the Job after the AppWrapper and its template's hash "
            f"({appwrapper}-<hash>), and each cluster gives it its own uid, so this would "
            f"select none of its pods: select caspian.dev/appwrapper: {appwrapper}, which "
            "Caspian puts on them",
        )
        for key in JOB_LABELS
        if key in selector
    ]


def _named(template: Mapping[str, Any], *, field: str, namespace: str) -> list[tuple[str, str]]:
    """Its name, and its namespace, which must be the Job's."""
    metadata = template.get("metadata") or {}
    name, inner = metadata.get("name"), metadata.get("namespace")
    problems = []
    service = template.get("kind") == "Service"
    if name is None:
        problems.append(
            (
                f"{field}.metadata.name",
                "required: Argo CD applies an object by its name"
                + (" (it cannot use generateName)" if metadata.get("generateName") else ""),
            )
        )
    elif service and not (len(str(name)) <= 63 and refusals.DNS_1035_LABEL.match(str(name))):
        problems.append(
            (
                f"{field}.metadata.name",
                f"{name!r} is no Service name: at most 63 lower-case letters, digits and '-', "
                "beginning with a letter",
            )
        )
    elif not (len(str(name)) <= 253 and refusals.DNS_SUBDOMAIN.match(str(name))):
        problems.append(
            (
                f"{field}.metadata.name",
                f"{name!r} is no name of an object: use lower case, digits, '-' and '.'",
            )
        )
    if inner and inner != namespace:
        problems.append(
            (
                f"{field}.metadata.namespace",
                f"{inner!r} is not the AppWrapper's namespace {namespace!r}: an AppWrapper "
                "cannot create objects in another namespace; remove it, or move the AppWrapper",
            )
        )
    return problems


def owners(jobs: Iterable[JobRequest]) -> dict[str, JobRequest]:
    """The job that wraps each ConfigMap and Service, by `Kind namespace/name`
    (as jobspec.needs names objects)."""
    return {f"{c.kind} {job.namespace}/{c.name}": job for job in jobs for c in job.companions}


def borrowed(jobs: Sequence[JobRequest]) -> list[Problem]:
    """Each job whose pods need a ConfigMap that another job wraps: it is on a
    spoke only while that job's Job is, and goes with it, so the job would
    run there only by chance, and lose it mid-run. `caspian validate` says
    these as warnings: the other job may be meant to run first."""
    wrapped = owners(jobs)
    found = []
    for job in sorted(jobs, key=lambda job: job.source):
        for need in job.needs:
            owner = wrapped.get(need)
            if owner is None:  # (a job's own are not among its needs)
                continue
            found.append(
                Problem(
                    file=job.source,
                    field=f"{_job_field(job)}.spec.template.spec",
                    reason=f"its pods need {need}, which {owner.source} ({owner.id}) wraps: "
                    "it is on a spoke only while that job is, and leaves with it; create it "
                    "on the spokes, or wrap a copy of another name in this AppWrapper",
                )
            )
    return found


def _job_field(job: JobRequest) -> str:
    """Where a job's Job is in its AppWrapper: at the one index its
    companions leave, as every other component is one of them."""
    taken = {companion.field for companion in job.companions}
    at = next(i for i in range(len(taken) + 1) if f"spec.components[{i}].template" not in taken)
    return f"spec.components[{at}].template"
