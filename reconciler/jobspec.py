"""What a wrapped Job's spec asks of a spoke, and what of it the API server or
Argo CD would refuse.

The Job schema holds the spec to its shapes; these are the rules beyond it that
would otherwise surface as a failed sync on the spoke, long after the commit,
and the reading of what one pod needs and where it may run. Each bad value
raises `FieldError` with its path under the Job's spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from reconciler import quantities
from reconciler.pods import (
    InitContainer,
    Placement,
    Requirement,
    Resources,
    Toleration,
    effective_request,
)


class FieldError(Exception):
    """A bad value at `field`, a path relative to the object being read."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason


def placement(job_spec: Mapping[str, Any]) -> Placement:
    """The nodes a pod of the Job may run on: its nodeSelector, the terms of its
    required node affinity (labels and node names), and its tolerations. A bad
    expression, or a nodeName, raises FieldError with its path."""
    pod = (job_spec.get("template") or {}).get("spec") or {}
    if pod.get("nodeName"):
        # Its pods would go straight to that node, past the scheduler and the
        # taints, wherever Caspian places the job: on another spoke, nowhere.
        raise FieldError(
            "template.spec.nodeName",
            f"{pod['nodeName']!r} binds every pod to one node of one cluster, past the "
            "scheduler; Caspian chooses the cluster: to keep to that node, select it in a "
            "required node affinity term (matchFields: metadata.name In [its name]) instead",
        )
    # The Job schema has already held these to their shapes (maps of strings, lists).
    selector = {str(k): str(v) for k, v in (pod.get("nodeSelector") or {}).items()}
    where = "template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = []
    for t, term in enumerate(required.get("nodeSelectorTerms") or []):
        requirements = []
        for e, expression in enumerate((term or {}).get("matchExpressions") or []):
            field = f"{where}.nodeSelectorTerms[{t}].matchExpressions[{e}]"
            try:
                requirement = Requirement(
                    key=expression.get("key"),
                    operator=expression.get("operator"),
                    values=tuple(str(v) for v in expression.get("values") or ()),
                )
            except ValidationError:
                raise FieldError(
                    f"{field}.operator",
                    f"{expression.get('operator')!r}: Kubernetes knows In, NotIn, Exists, "
                    "DoesNotExist, Gt and Lt",
                ) from None
            if requirement.operator in ("Gt", "Lt") and not _one_integer(requirement.values):
                raise FieldError(
                    f"{field}.values", f"{requirement.operator} takes exactly one integer"
                )
            requirements.append(requirement)
        for e, expression in enumerate((term or {}).get("matchFields") or []):
            field = f"{where}.nodeSelectorTerms[{t}].matchFields[{e}]"
            requirements.append(_by_node_name(expression, field=field))
        terms.append(tuple(requirements))
    return Placement(node_selector=selector, terms=tuple(terms), tolerations=tolerations(pod))


def _by_node_name(expression: Mapping[str, Any], *, field: str) -> Requirement:
    """A matchFields entry, which the API server takes only on the node's name,
    with In or NotIn and one value."""
    if expression.get("key") != "metadata.name":
        raise FieldError(
            f"{field}.key",
            f"{expression.get('key')!r}: Kubernetes selects nodes by field only on "
            "metadata.name; select on a label in matchExpressions instead",
        )
    operator, values = expression.get("operator"), expression.get("values") or ()
    if operator not in ("In", "NotIn"):
        raise FieldError(f"{field}.operator", f"{operator!r}: matchFields takes In or NotIn")
    if len(values) != 1:
        raise FieldError(f"{field}.values", "matchFields on metadata.name takes exactly one value")
    return Requirement(key="metadata.name", operator=operator, values=(str(values[0]),), field=True)


def tolerations(pod: Mapping[str, Any]) -> tuple[Toleration, ...]:
    """The pod's tolerations, held to the API server's own rules (which the schema
    does not state); a refused one raises FieldError with its path."""
    found = []
    for index, entry in enumerate(pod.get("tolerations") or []):
        entry = entry or {}
        field = f"template.spec.tolerations[{index}]"
        key, value = str(entry.get("key") or ""), str(entry.get("value") or "")
        operator, effect = entry.get("operator") or "Equal", entry.get("effect") or ""
        if operator not in ("Exists", "Equal"):
            raise FieldError(
                f"{field}.operator", f"{operator!r}: Kubernetes knows Exists and Equal"
            )
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute", ""):
            raise FieldError(
                f"{field}.effect",
                f"{effect!r}: Kubernetes knows NoSchedule, PreferNoSchedule and NoExecute",
            )
        if not key and operator != "Exists":
            raise FieldError(
                f"{field}.operator",
                "must be Exists when the key is empty (to tolerate every taint); "
                "or give the taint's key",
            )
        if operator == "Exists" and value:
            raise FieldError(
                f"{field}.value", "must be empty with operator Exists; remove it, or use Equal"
            )
        if entry.get("tolerationSeconds") is not None and effect != "NoExecute":
            raise FieldError(
                f"{field}.tolerationSeconds",
                "only a NoExecute toleration takes tolerationSeconds; remove it, "
                "or set effect: NoExecute",
            )
        found.append(Toleration(key=key, operator=operator, value=value, effect=effect))
    return tuple(found)


def _one_integer(values: tuple[str, ...]) -> bool:
    return len(values) == 1 and values[0].lstrip("-").isdigit()


def requests(job_spec: Mapping[str, Any]) -> tuple[Resources, int]:
    """One pod's effective request (`effective_request`), and how many pods
    run at once (the Job's parallelism, at most its completions). A bad value
    raises FieldError with its path under the Job's spec."""
    pod = (job_spec.get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        raise FieldError("template.spec.containers", "the pod template needs a container")
    for key in ("parallelism", "completions"):
        value = job_spec.get(key)
        if value is not None and value < 0:
            raise FieldError(key, f"{value} is negative: Kubernetes requires 0 or more")
    parallelism = job_spec.get("parallelism")
    parallelism = 1 if parallelism is None else parallelism
    completions = job_spec.get("completions")
    if completions:
        parallelism = min(parallelism, completions)

    def amount(where: str, part: str, value: Any) -> float:
        # As the API server writes it: a key with dots in brackets.
        field = f"template.spec.{where}{part}"
        try:
            parsed = quantities.quantity(value)
        except ValueError as error:
            raise FieldError(field, str(error)) from None
        if parsed < 0:
            raise FieldError(field, f"{value!r} is negative: Kubernetes requires 0 or more")
        return parsed

    def need(where: str, resources: Any, key: str) -> float | None:
        resources = resources or {}
        part, value = "requests", (resources.get("requests") or {}).get(key)
        if value is None:  # Kubernetes defaults a request to its limit
            part, value = "limits", (resources.get("limits") or {}).get(key)
        return None if value is None else amount(where, f"resources.{part}[{key}]", value)

    for kind in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(kind) or []):
            if not isinstance(container, dict):
                raise FieldError(f"template.spec.{kind}[{index}]", "expected a container")
            _refuse_other_accelerators(f"{kind}[{index}].", container.get("resources"))
    _refuse_other_accelerators("", pod.get("resources"))
    inits = list(enumerate(pod.get("initContainers") or []))
    totals = []
    for key in ("cpu", "memory", "nvidia.com/gpu"):
        overhead = (pod.get("overhead") or {}).get(key)
        one_pod = effective_request(
            containers=(
                need(f"containers[{i}].", c.get("resources"), key) or 0.0
                for i, c in enumerate(containers)
            ),
            init_containers=[
                InitContainer(
                    amount=need(f"initContainers[{i}].", c.get("resources"), key) or 0.0,
                    sidecar=c.get("restartPolicy") == "Always",
                )
                for i, c in inits
            ],
            # Kubernetes takes pod-level requests for cpu and memory only.
            pod_level=need("", pod.get("resources"), key) if key != "nvidia.com/gpu" else None,
            overhead=0.0 if overhead is None else amount("", f"overhead[{key}]", overhead),
        )
        totals.append(one_pod)
    return Resources(cpu=totals[0], memory_bytes=totals[1], gpu=totals[2]), parallelism


def refused_by_api_server(job_spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """A field of the Job's spec that the API server's own checks (beyond the
    schema) refuse, with why and the fix; None when there is none."""
    restart = ((job_spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        # The API server refuses any other, and the default (Always).
        found = "missing" if restart is None else f"{restart!r}"
        return (
            "template.spec.restartPolicy",
            f"{found}: Kubernetes runs a Job's pods only with Never or OnFailure; "
            "add restartPolicy: Never",
        )
    if job_spec.get("selector") is not None and not job_spec.get("manualSelector"):
        # As `kubectl get job -o yaml` writes it, with the controller-uid labels.
        return (
            "selector",
            "Kubernetes generates a Job's selector and refuses one written in: remove "
            "spec.selector, and the controller-uid labels of the pod template",
        )
    backoff = job_spec.get("backoffLimit")
    if backoff is not None and backoff < 0:
        return "backoffLimit", f"{backoff} is negative: Kubernetes requires 0 or more"
    deadline = job_spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        return "activeDeadlineSeconds", f"{deadline}: Kubernetes requires more than 0"
    return None


# Annotations on the wrapped Job that would change how Argo CD applies it. A hook
# runs again at every sync and is deleted by its policy. When Caspian flips
# suspend, Replace=true fails on the selector Kubernetes generated for the Job
# and Force=true deletes and re-creates it (runs it again); Prune=false keeps a
# cancelled or finished Job on the spoke, and Prune=confirm waits for a person.
_HOOKS = ("argocd.argoproj.io/hook", "argocd.argoproj.io/hook-delete-policy", "helm.sh/hook")
_SYNC_OPTIONS = ("argocd.argoproj.io/sync-options",)
_REFUSED_OPTIONS = ("replace=true", "force=true", "prune=false", "prune=confirm")


def argocd_override(key: str, value: str) -> str | None:
    """Why the annotation `key: value` on the wrapped Job cannot stay, or None."""
    if key in _HOOKS or key.startswith("helm.sh/hook-"):
        return (
            "remove it: a sync hook runs again at every sync and Argo CD deletes it; "
            "Caspian's Jobs run once, when their start comes"
        )
    if key in _SYNC_OPTIONS:
        options = [o.strip() for o in value.split(",")]
        refused = [o for o in options if o.lower() in _REFUSED_OPTIONS]
        if refused:
            return (
                f"remove {', '.join(refused)}: Caspian starts a Job by changing its "
                "suspend in place and cancels it by removing its file, which needs "
                "Argo CD's plain apply and prune"
            )
    return None


def _refuse_other_accelerators(where: str, resources: Any) -> None:
    """Caspian plans whole NVIDIA GPUs only: a job asking for another accelerator
    (AMD, Intel, a MIG slice) would be placed as if it needed none, on a spoke
    that may not have it, and wait there unscheduled."""
    if not isinstance(resources, dict):
        return
    for part in ("requests", "limits"):
        for key in resources.get(part) or {}:
            name = str(key).lower()
            if name != "nvidia.com/gpu" and ("gpu" in name or name.startswith("nvidia.com/")):
                raise FieldError(
                    f"template.spec.{where}resources.{part}[{key}]",
                    "Caspian plans GPUs as nvidia.com/gpu only and would place this job "
                    "as if it needed none; ask for whole GPUs as nvidia.com/gpu, or run "
                    "this job outside Caspian",
                )
