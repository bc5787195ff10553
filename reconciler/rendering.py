"""render: a Decision as the files Caspian owns. Pure: the same Decision gives
byte-identical files, so an unchanged fleet produces no commit.

- rendered/<spoke>/kustomization.yaml for every spoke (Argo CD needs the path to
  exist even when the queue is empty),
- rendered/<spoke>/<namespace>.<job>.yaml for every Planned (suspended) and
  Dispatched, Running or finished job, and every job suspended by its
  AppWrapper after it started (suspended where it ran): its Job, then the
  ConfigMaps and Services its AppWrapper wraps beside it,
- rendered/<spoke>/namespaces.yaml with the namespaces those Jobs use,
- status/placements.yaml, the ledger.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from reconciler.decisions import Decision
from reconciler.fleet import Companion, JobRequest
from reconciler.ledger import LEDGER_PATH, Entry, Ledger, Phase
from reconciler.owned import seal
from reconciler.quantities import format_time
from reconciler.yamlio import dump

RENDERED = "rendered/"
# Written into every rendered/<spoke>/ beside the Jobs.
KUSTOMIZATION, NAMESPACES = SPOKE_FILES = ("kustomization.yaml", "namespaces.yaml")
MANAGED_BY = "caspian"
# Argo CD shows an annotation with this prefix as a link on the resource.
ARGOCD_LINK = "link.argocd.argoproj.io/placement-history"
# On a Job stopped by its AppWrapper's spec.suspend, in place of its planned start.
HELD = "caspian.dev/held"


# What a manifest was made of (its job, its record as JSON, its history link),
# with its bytes, by its path; a ledger record's lines by the record as JSON.
Manifests = dict[str, tuple[tuple[JobRequest, str, str | None], bytes]]
RecordLines = dict[str, bytes]


class Renders:
    """What `render` wrote for each Job and each ledger record in its last call,
    kept by a caller that renders much the same fleet again and again (a
    watcher), so that one made of the same inputs is not written out again.
    At 5000 jobs, writing them all was half of a reconcile after a push that
    changed nothing (3.1 of 5.9 s under cProfile). A record is known by its
    JSON, which tells apart what equality would not (the offset of a time);
    a job by identity, since two equal templates can order their keys apart
    (a watcher's loading.JobFiles hands back the same job for the same file).
    Only the last call's are kept."""

    def __init__(self) -> None:
        # One attribute, assigned whole, as loading.JobFiles keeps its files.
        self.last: tuple[Manifests, RecordLines] = ({}, {})


def render(
    decision: Decision, *, previous: Mapping[str, bytes], known: Renders | None = None
) -> dict[str, bytes]:
    """All files under rendered/ and status/ for this decision. `previous` holds the
    files of the input commit, from which jobs held by a broken AppWrapper or spoke
    file, and those whose new place is proposed for review, are copied unchanged.
    `known` holds what the last call wrote, and is updated: the files are the
    same with it or without."""
    last_manifests, last_records = known.last if known is not None else ({}, {})
    manifests: Manifests = {}
    records: RecordLines = {}
    files: dict[str, bytes] = {}
    listed: dict[str, list[str]] = {spoke: [] for spoke in decision.spokes}
    # A spoke whose file does not load keeps its directory, if it had one.
    listed.update(
        (spoke, [])
        for spoke in decision.broken_spokes
        if f"{RENDERED}{spoke}/{KUSTOMIZATION}" in previous
    )
    for entry in decision.ledger.entries:
        if not entry.on_a_spoke or entry.spoke not in listed:
            continue
        if decision.retired(entry):
            continue  # Argo CD prunes the Job; the ledger keeps the record
        kept = entry.id in decision.held or entry.id in decision.proposed
        if entry.id not in decision.jobs and not kept:
            continue  # finished, and its AppWrapper removed: its Job goes with it
        path = job_path(entry)
        if kept:
            if path not in previous:
                continue
            files[path] = previous[path]
        else:
            job, history = decision.jobs[entry.id], history_link(decision.history_url, path)
            record = entry.model_dump_json()
            was = last_manifests.get(path)
            if was is not None and was[0][0] is job and was[0][1:] == (record, history):
                manifests[path] = was
            else:
                manifest = seal(
                    b"---\n".join(
                        [
                            dump(job_manifest(job, entry, history=history)),
                            *(dump(companion_manifest(c, job=job)) for c in job.companions),
                        ]
                    )
                )
                manifests[path] = ((job, record, history), manifest)
            files[path] = manifests[path][1]
        listed[entry.spoke].append(path.rsplit("/", 1)[1])
    for spoke, names in listed.items():
        used = sorted({name.split(".", 1)[0] for name in names})
        if used:
            files[f"{RENDERED}{spoke}/{NAMESPACES}"] = seal(
                b"---\n".join(dump(namespace(name)) for name in used)
            )
            names = [*names, NAMESPACES]
        files[f"{RENDERED}{spoke}/{KUSTOMIZATION}"] = seal(dump(kustomization(sorted(names))))
    files[LEDGER_PATH] = render_ledger(decision.ledger, known=(last_records, records))
    if known is not None:
        known.last = (manifests, records)
    return files


def job_path(entry: Entry) -> str:
    namespace = entry.id.split("/", 1)[0]
    return f"{RENDERED}{entry.spoke}/{namespace}.{entry.job_name}.yaml"


def kustomization(resources: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }


def namespace(name: str) -> dict[str, Any]:
    """The namespaces a spoke's Jobs need. Never pruned: emptying a queue must not
    delete a namespace that holds other things."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {"argocd.argoproj.io/sync-options": "Prune=false"},
        },
    }


def history_link(template: str | None, path: str) -> str | None:
    """The policy's historyUrl for the rendered file at `path`."""
    return None if template is None else template.replace("{path}", path)


def job_manifest(job: JobRequest, entry: Entry, *, history: str | None = None) -> dict[str, Any]:
    """The wrapped Job as the spoke will run it: named by its template hash,
    labelled as Caspian's, annotated with the placement, suspended until its start.
    With `history`, Argo CD's UI shows a link to it on the Job (the commits of its
    file, newest first: the placement commit among them)."""
    template = copy.deepcopy(job.job_template)
    metadata = template.get("metadata") or {}
    labels = {
        **(metadata.get("labels") or {}),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "caspian.dev/appwrapper": job.name,
        "caspian.dev/template-hash": job.template_hash,
    }
    annotations = {
        **(metadata.get("annotations") or {}),
        "caspian.dev/source": job.source,
        "caspian.dev/spoke": entry.spoke,
    }
    if entry.stopped:
        # No start to wait for: Argo CD's UI shows this instead (argocd/job-health.yaml).
        annotations[HELD] = (
            "its AppWrapper's spec.suspend is true"
            if job.suspended
            else "resumed, and waits for room here"
        )
    else:
        assert entry.planned_start is not None and entry.planned_end is not None  # it is placed
        annotations["caspian.dev/planned-start"] = format_time(entry.planned_start)
        annotations["caspian.dev/planned-end"] = format_time(entry.planned_end)
    assert entry.deadline is not None  # every valid job's record has one
    annotations["caspian.dev/deadline"] = format_time(entry.deadline)
    if entry.estimated_grams is not None:
        annotations["caspian.dev/estimated-gco2"] = f"{entry.estimated_grams:.1f}"
    if entry.qos_grams is not None:
        annotations["caspian.dev/qos-gco2"] = f"{entry.qos_grams:.1f}"
    if entry.emitted_grams is not None:
        # What its runs that ended emitted, measured (reconciler/emissions.py):
        # beside the estimate in Argo CD's UI, for as long as the Job stays.
        annotations["caspian.dev/emitted-gco2"] = f"{entry.emitted_grams:.1f}"
    if history is not None:
        annotations[ARGOCD_LINK] = history
    pod = template["spec"].get("template") or {}
    pod_metadata = dict(pod.get("metadata") or {})
    # Pods carry the label too, so a spoke observer can tell Caspian's pods apart.
    pod_metadata["labels"] = {
        **(pod_metadata.get("labels") or {}),
        "caspian.dev/appwrapper": job.name,
    }
    spec = {
        "suspend": entry.phase in (Phase.PLANNED, Phase.SUSPENDED),
        **{key: value for key, value in template["spec"].items() if key != "suspend"},
        "template": {
            "metadata": pod_metadata,
            **{key: value for key, value in pod.items() if key != "metadata"},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": entry.job_name,
            "namespace": job.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def companion_manifest(companion: Companion, *, job: JobRequest) -> dict[str, Any]:
    """A ConfigMap or Service the job's AppWrapper wraps beside its Job
    (companions.py), as its spoke gets it: in the Job's file, namespace and
    labels, so that it goes where the Job goes, and `kubectl get -l
    caspian.dev/appwrapper=NAME` lists all of a job."""
    template = copy.deepcopy(companion.template)
    metadata = template.get("metadata") or {}
    template["metadata"] = {
        **metadata,
        "name": companion.name,
        "namespace": job.namespace,
        "labels": {
            **(metadata.get("labels") or {}),
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "caspian.dev/appwrapper": job.name,
        },
        "annotations": {**(metadata.get("annotations") or {}), "caspian.dev/source": job.source},
    }
    return template


# Fields of an entry left out at these values: added after ledgers were written,
# they would otherwise change every entry of every ledger once.
UNSAID = {"retries": 0}


def render_ledger(
    ledger: Ledger,
    *,
    dumper: type | None = None,
    known: tuple[RecordLines, RecordLines] | None = None,
) -> bytes:
    """status/placements.yaml. Its records are written one by one, each as it
    would be inside the whole document (the lines under `entries:`), so that
    with `known`, the records written last time (by the default dumper) and
    a dict to fill with this time's, a record whose JSON is one written
    before is not written again."""
    head = ledger_document(ledger.model_copy(update={"entries": ()}))
    if not ledger.entries:
        return seal(dump(head, dumper=dumper))
    del head["entries"]
    last, now = known if known is not None and dumper is None else ({}, {})
    body = [dump(head, dumper=dumper), b"entries:\n"]
    for entry in ledger.entries:
        record = entry.model_dump_json()
        lines = last.get(record)
        if lines is None:
            whole = dump({"entries": [record_document(entry)]}, dumper=dumper)
            lines = whole.removeprefix(b"entries:\n")
        now[record] = lines
        body.append(lines)
    return seal(b"".join(body))


def ledger_document(ledger: Ledger) -> dict[str, Any]:
    """The ledger as status/placements.yaml holds it: its entries without the
    fields they leave empty (`caspian plan --json` prints them so too)."""
    document = ledger.model_dump(mode="json", by_alias=True, exclude={"entries"})
    if document["problem"] is None:
        del document["problem"]
    if not document["unsynced"]:
        del document["unsynced"]
    document["entries"] = [record_document(entry) for entry in ledger.entries]
    return document


def record_document(entry: Entry) -> dict[str, Any]:
    return {
        key: _whole(value)
        for key, value in entry.model_dump(mode="json", by_alias=True).items()
        if value not in (None, "", []) and UNSAID.get(key, ...) != value
    }


def _whole(value: Any) -> Any:
    """16.0 -> 16: resource figures read like the quantities people wrote."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
