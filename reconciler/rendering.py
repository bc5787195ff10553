"""render: a Decision as the files Caspian owns. Pure: the same Decision gives
byte-identical files, so an unchanged fleet produces no commit.

- rendered/<spoke>/kustomization.yaml for every spoke (Argo CD needs the path to
  exist even when the queue is empty),
- rendered/<spoke>/<namespace>.<job>.yaml for every Planned (suspended) and
  Dispatched, Running or finished job, and every job suspended by its
  AppWrapper after it started (suspended where it ran),
- rendered/<spoke>/namespaces.yaml with the namespaces those Jobs use,
- status/placements.yaml, the ledger.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from reconciler.decisions import Decision
from reconciler.fleet import JobRequest
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


def render(decision: Decision, *, previous: Mapping[str, bytes]) -> dict[str, bytes]:
    """All files under rendered/ and status/ for this decision. `previous` holds the
    files of the input commit, from which jobs held by a broken AppWrapper or spoke
    file, and those whose new place is proposed for review, are copied unchanged."""
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
            manifest = job_manifest(
                decision.jobs[entry.id], entry, history=history_link(decision.history_url, path)
            )
            files[path] = seal(dump(manifest))
        listed[entry.spoke].append(path.rsplit("/", 1)[1])
    for spoke, names in listed.items():
        used = sorted({name.split(".", 1)[0] for name in names})
        if used:
            files[f"{RENDERED}{spoke}/{NAMESPACES}"] = seal(
                b"---\n".join(dump(namespace(name)) for name in used)
            )
            names = [*names, NAMESPACES]
        files[f"{RENDERED}{spoke}/{KUSTOMIZATION}"] = seal(dump(kustomization(sorted(names))))
    files[LEDGER_PATH] = render_ledger(decision.ledger)
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
        annotations["caspian.dev/planned-start"] = format_time(entry.planned_start)
        annotations["caspian.dev/planned-end"] = format_time(entry.planned_end)
    annotations["caspian.dev/deadline"] = format_time(entry.deadline)
    if entry.estimated_grams is not None:
        annotations["caspian.dev/estimated-gco2"] = f"{entry.estimated_grams:.1f}"
    if entry.qos_grams is not None:
        annotations["caspian.dev/qos-gco2"] = f"{entry.qos_grams:.1f}"
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


# Fields of an entry left out at these values: added after ledgers were written,
# they would otherwise change every entry of every ledger once.
UNSAID = {"retries": 0}


def render_ledger(ledger: Ledger, *, dumper: type | None = None) -> bytes:
    return seal(dump(ledger_document(ledger), dumper=dumper))


def ledger_document(ledger: Ledger) -> dict[str, Any]:
    """The ledger as status/placements.yaml holds it: its entries without the
    fields they leave empty (`caspian plan --json` prints them so too)."""
    document = ledger.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    if document["problem"] is None:
        del document["problem"]
    document["entries"] = [
        {
            key: _whole(value)
            for key, value in entry.items()
            if value not in (None, "", []) and UNSAID.get(key, ...) != value
        }
        for entry in document["entries"]
    ]
    return document


def _whole(value: Any) -> Any:
    """16.0 -> 16: resource figures read like the quantities people wrote."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
