"""What a wrapped Job's spec asks of a spoke: what one pod needs, how many run
at once, and where they may run.

The Job schema holds the spec to its shapes; reading it also holds the values it
reads to the rules the API server adds (`refusals.py` has the others). Each bad
value raises `FieldError` with its path under the Job's spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from reconciler import admission, quantities
from reconciler.admission import ContainerResources, PodResources
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
            _expression_entry(expression, field=field)
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
            _expression_entry(expression, field=field)
            requirements.append(_by_node_name(expression, field=field))
        terms.append(tuple(requirements))
    return Placement(
        node_selector=selector,
        terms=tuple(terms),
        tolerations=tolerations(pod),
        own_node=_one_pod_per_node(job_spec),
    )


HOSTNAME = "kubernetes.io/hostname"


def _one_pod_per_node(job_spec: Mapping[str, Any]) -> bool:
    """Whether a required pod anti-affinity keeps the Job's pods off each other's
    nodes: a term on kubernetes.io/hostname whose label selector matches the pod
    template's own labels. (A term without a selector matches no pod; an empty
    one, every pod.)"""
    template = job_spec.get("template") or {}
    labels = {
        str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()
    }
    anti = ((template.get("spec") or {}).get("affinity") or {}).get("podAntiAffinity") or {}
    where = "template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    for t, term in enumerate(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
        selector = (term or {}).get("labelSelector")
        for e, expression in enumerate((selector or {}).get("matchExpressions") or []):
            _expression_entry(expression, field=f"{where}[{t}].labelSelector.matchExpressions[{e}]")
        if (term or {}).get("topologyKey") != HOSTNAME or selector is None:
            continue
        wanted = selector.get("matchLabels") or {}
        if any(labels.get(str(k)) != str(v) for k, v in wanted.items()):
            continue
        try:
            expressions = [
                Requirement(
                    key=e.get("key"),
                    operator=e.get("operator"),
                    values=tuple(str(v) for v in e.get("values") or ()),
                )
                for e in selector.get("matchExpressions") or []
            ]
        except ValidationError:
            continue  # an operator a label selector does not know: the API refuses it
        if all(r.holds(labels) for r in expressions):
            return True
    return False


def _expression_entry(expression: Any, *, field: str) -> None:
    """A null entry (`- ~`) of a list of expressions, which the schema lets
    through and the API server refuses (it has no key), raises FieldError."""
    if not isinstance(expression, Mapping):
        raise FieldError(field, "expected an expression: its key, operator and values")


def _by_node_name(expression: Mapping[str, Any], *, field: str) -> Requirement:
    """A matchFields entry, which the API server takes only on the node's name,
    with In or NotIn and one value."""
    if expression.get("key") != "metadata.name":
        raise FieldError(
            f"{field}.key",
            f"{expression.get('key')!r}: Kubernetes selects nodes by field only on "
            "metadata.name; select on a label in matchExpressions instead",
        )
    operator, values = expression.get("operator"), list(expression.get("values") or ())
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
        found.append(
            Toleration.model_validate(
                {"key": key, "operator": operator, "value": value, "effect": effect}
            )
        )
    return tuple(found)


def _one_integer(values: tuple[str, ...]) -> bool:
    # ASCII digits, as the API server parses it: str.isdigit() takes "²".
    return len(values) == 1 and re.fullmatch(r"[+-]?[0-9]+", values[0]) is not None


class Requests(NamedTuple):
    pod: Resources  # one pod's effective request
    pods_at_once: int
    # The containers that ask for no cpu or no memory, each `containers[0] cpu`:
    # counted at the default instead.
    defaulted: tuple[str, ...] = ()


def requests(
    job_spec: Mapping[str, Any], *, default: Mapping[str, float] | None = None
) -> Requests:
    """One pod's effective request (`effective_request`), and how many pods
    run at once (the Job's parallelism, at most its completions). A container
    that neither requests nor limits cpu or memory counts `default` of it, as
    a LimitRange's defaultRequest would fill it in: counted as nothing, a job
    would take no room and cost no carbon. A bad value raises FieldError with
    its path under the Job's spec."""
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

    def need(where: str, resources: Any, key: str) -> float | None:
        resources = resources or {}
        part, value = "requests", (resources.get("requests") or {}).get(key)
        if value is None:  # Kubernetes defaults a request to its limit
            part, value = "limits", (resources.get("limits") or {}).get(key)
        return None if value is None else _amount(f"{where}resources.{part}[{key}]", value)

    for kind in ("containers", "initContainers"):
        for index, container in enumerate(pod.get(kind) or []):
            if not isinstance(container, dict):
                raise FieldError(f"template.spec.{kind}[{index}]", "expected a container")
            _refuse_other_accelerators(f"{kind}[{index}].", container.get("resources"))
    _refuse_other_accelerators("", pod.get("resources"))
    inits = list(enumerate(pod.get("initContainers") or []))
    defaulted: list[str] = []
    fills = default or {}

    def counted(kind: str, index: int, container: Mapping[str, Any], key: str, fill: bool) -> float:
        found = need(f"{kind}[{index}].", container.get("resources"), key)
        if found is None and fill and key in fills:
            defaulted.append(f"{kind}[{index}] {key}")
            return fills[key]
        return found or 0.0

    totals = []
    for key in ("cpu", "memory", "nvidia.com/gpu"):
        overhead = (pod.get("overhead") or {}).get(key)
        # Kubernetes takes pod-level requests for cpu and memory only; where the
        # pod sets one, its containers' do not count, and nothing is filled in.
        pod_level = need("", pod.get("resources"), key) if key != "nvidia.com/gpu" else None
        fill = pod_level is None
        one_pod = effective_request(
            containers=[counted("containers", i, c, key, fill) for i, c in enumerate(containers)],
            init_containers=[
                InitContainer(
                    amount=counted("initContainers", i, c, key, fill),
                    sidecar=c.get("restartPolicy") == "Always",
                )
                for i, c in inits
            ],
            pod_level=pod_level,
            overhead=0.0 if overhead is None else _amount(f"overhead[{key}]", overhead),
        )
        totals.append(one_pod)
    return Requests(
        pod=Resources(cpu=totals[0], memory_bytes=totals[1], gpu=totals[2]),
        pods_at_once=parallelism,
        defaulted=tuple(defaulted),
    )


def _amount(where: str, value: Any) -> float:
    """A quantity at `template.spec.<where>` (a key with dots in brackets, as
    the API server writes it)."""
    field = f"template.spec.{where}"
    try:
        parsed = quantities.quantity(value)
    except ValueError as error:
        raise FieldError(field, str(error)) from None
    if parsed < 0:
        raise FieldError(field, f"{value!r} is negative: Kubernetes requires 0 or more")
    return parsed


def pod_resources(job_spec: Mapping[str, Any]) -> PodResources:
    """What each container of the Job's pod requests and limits, of what
    LimitRanges bound, as the API server holds it before admission: a request
    not set is its limit's. (`requests` has already held the pod to its shapes.)"""
    pod = (job_spec.get("template") or {}).get("spec") or {}
    found = []
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(kind) or []):
            where = f"{kind}[{index}]"
            resources = container.get("resources") or {}
            parts = {
                part: {
                    key: _amount(f"{where}.resources.{part}[{key}]", value)
                    for key, value in (resources.get(part) or {}).items()
                    if key in admission.KEYS
                }
                for part in ("requests", "limits")
            }
            found.append(
                ContainerResources(
                    where=where,
                    requests={**parts["limits"], **parts["requests"]},
                    limits=parts["limits"],
                    init=kind == "initContainers",
                    sidecar=kind == "initContainers" and container.get("restartPolicy") == "Always",
                )
            )
    deadline = pod.get("activeDeadlineSeconds")
    return PodResources(
        containers=tuple(found),
        priority_class=str(pod.get("priorityClassName") or ""),
        terminating=isinstance(deadline, int) and deadline >= 0,
    )


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


# The cluster's own objects a pod may name, and the field that names them.
CLASSES = (("PriorityClass", "priorityClassName"), ("RuntimeClass", "runtimeClassName"))


def needs(job_spec: Mapping[str, Any], *, namespace: str) -> tuple[str, ...]:
    """The objects a pod of the Job cannot start without, as `Kind namespace/name`
    (or `Kind name` for a cluster's own): the PersistentVolumeClaims of its
    volumes, the ConfigMaps and Secrets of its volumes and environment that are
    not marked optional, its ServiceAccount, and its PriorityClass and
    RuntimeClass. They are made cluster by cluster: on a spoke without them its
    pods would wait, or be refused, for ever. (A Secret named only as an image
    pull secret is left out: without it the kubelet still pulls a public
    image.)"""
    pod = (job_spec.get("template") or {}).get("spec") or {}
    claims: set[str] = set()
    maps: set[str] = set()
    secrets: set[str] = set()
    for volume in _mappings(pod.get("volumes")):
        claim = volume.get("persistentVolumeClaim") or {}
        if claim.get("claimName"):
            claims.add(claim["claimName"])
        maps.update(_named(volume.get("configMap")))
        secrets.update(_named(volume.get("secret"), field="secretName"))
        for source in _mappings((volume.get("projected") or {}).get("sources")):
            maps.update(_named(source.get("configMap")))
            secrets.update(_named(source.get("secret")))
    for container in _mappings(
        [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    ):
        for source in _mappings(container.get("envFrom")):
            maps.update(_named(source.get("configMapRef")))
            secrets.update(_named(source.get("secretRef")))
        for variable in _mappings(container.get("env")):
            value_from = variable.get("valueFrom") or {}
            maps.update(_named(value_from.get("configMapKeyRef")))
            secrets.update(_named(value_from.get("secretKeyRef")))
    classes = [f"{kind} {pod[field]}" for kind, field in CLASSES if pod.get(field)]
    # Every namespace has "default"; another (one a cloud's workload identity
    # binds, say) is made cluster by cluster, and without it no pod is created.
    account = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
    accounts = [] if account == "default" else [f"ServiceAccount {namespace}/{account}"]
    return tuple(
        [f"PersistentVolumeClaim {namespace}/{name}" for name in sorted(claims)]
        + [f"ConfigMap {namespace}/{name}" for name in sorted(maps)]
        + [f"Secret {namespace}/{name}" for name in sorted(secrets)]
        + accounts
        + classes
    )


def _mappings(items: Any) -> list[Mapping[str, Any]]:
    """The entries of a list that are mappings: a null entry (`- ~`) names
    nothing, and is the API server's to refuse."""
    return [item for item in items or [] if isinstance(item, Mapping)]


def scope_of(need: str) -> tuple[str, str]:
    """(where to look, name) of a need: ("ConfigMap batch", "settings") for
    `ConfigMap batch/settings`, ("PriorityClass", "high") for `PriorityClass high`."""
    kind, reference = need.split(" ", 1)
    if kind in dict(CLASSES):
        return kind, reference
    namespace, name = reference.split("/", 1)
    return f"{kind} {namespace}", name


def _named(reference: Any, *, field: str = "name") -> tuple[str, ...]:
    """The name a reference to a ConfigMap or Secret gives, unless it is
    optional (the kubelet starts the pod without it then)."""
    if not isinstance(reference, Mapping) or reference.get("optional") is True:
        return ()
    name = reference.get(field)
    return (name,) if isinstance(name, str) and name else ()
