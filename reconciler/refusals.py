"""What the API server or Argo CD would refuse in a wrapped Job, beyond the Job
schema's shapes, or what would fight how Caspian runs Jobs through Argo CD, each
with its fix.

Argo CD dry-runs every manifest of an Application before it applies any, and one
that fails fails the whole sync: a single Job the API server refuses would keep
every Job of its spoke from starting, and finished ones from being pruned. So
the rules the API server applies to a Job (its own validation, not the OpenAPI
schema, which holds only types) are checked here, in the fleet repo, where the
problem is one line naming the file and the field. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from reconciler import quantities

# (field under the wrapped Job, reason with the fix)
Refusal = tuple[str, str]

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The name of a label or annotation key, and a label's value (which may be empty).
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# All of an object's annotations, keys and values, the API server takes.
MAX_ANNOTATION_BYTES = 256 * 1024
# Resources the scheduler counts without a limit; any other (an extended
# resource: GPUs) must have a limit, and a request only equal to it.
OVERCOMMITTABLE = ("cpu", "memory", "ephemeral-storage")
POD = "spec.template."
JOB_CONTROLLER = "kubernetes.io/job-controller"


def refused_by_api_server(job: Mapping[str, Any]) -> tuple[Refusal, ...]:
    """Each field of the wrapped Job (apiVersion, kind, metadata, spec) that the
    API server would refuse, in the order of the Job's fields."""
    spec = job.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    checks = (
        _metadata(job.get("metadata") or {}, where="metadata"),
        _job_spec(spec),
        _metadata((spec.get("template") or {}).get("metadata") or {}, where=POD + "metadata"),
        _labels(pod.get("nodeSelector") or {}, where=POD + "spec.nodeSelector"),
        _containers(pod),
        _volumes(pod),
        _object_names(pod),
    )
    return tuple(refusal for check in checks for refusal in check)


# Annotations on the wrapped Job that would change how Argo CD applies it. A hook
# runs again at every sync and is deleted by its policy. When Caspian flips
# suspend, Replace=true fails on the selector Kubernetes generated for the Job
# and Force=true deletes and re-creates it (runs it again); Prune=false keeps a
# cancelled or finished Job on the spoke, and Prune=confirm waits for a person.
_HOOKS = ("argocd.argoproj.io/hook", "argocd.argoproj.io/hook-delete-policy", "helm.sh/hook")
_SYNC_OPTIONS = ("argocd.argoproj.io/sync-options",)
_REFUSED_OPTIONS = ("replace=true", "force=true", "prune=false", "prune=confirm")
# Kueue manages a Job that names a queue: it suspends the Job when it is created
# and releases it when admitted, against the suspend Caspian sets in git. Once
# the legacy annotation, now the label.
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"


def fought_by_argocd(job: Mapping[str, Any]) -> tuple[Refusal, ...]:
    """Each field of the wrapped Job that would change how Argo CD applies it,
    or hand its suspend to another controller."""
    return tuple(_fought(job))


def _fought(job: Mapping[str, Any]) -> Iterator[Refusal]:
    metadata = job.get("metadata") or {}
    for part in ("labels", "annotations"):
        if KUEUE_QUEUE in (metadata.get(part) or {}):
            yield (
                f"metadata.{part}.{KUEUE_QUEUE}",
                "remove it: Kueue on a spoke would suspend this Job and release it "
                "itself, against the spec.suspend Caspian sets through Argo CD, each "
                "undoing the other; Caspian queues the job across spokes",
            )
    for key, value in (metadata.get("annotations") or {}).items():
        if why := _argocd_override(str(key), str(value)):
            yield f"metadata.annotations.{key}", why
    if (job.get("spec") or {}).get("suspend") is True:
        # Caspian sets it at every render: a hold written here would be lost, and
        # the Job started at its planned time.
        yield (
            "spec.suspend",
            "the Job's suspend is Caspian's, which keeps it suspended until its start: "
            "to hold the job, set the AppWrapper's spec.suspend: true instead",
        )
    if "ttlSecondsAfterFinished" in (job.get("spec") or {}):
        yield (
            "spec.ttlSecondsAfterFinished",
            "remove it: Argo CD would re-create a Job that deletes itself; "
            "Caspian removes finished Jobs from rendered/ instead",
        )


# A ConfigMap's keys, and how much it may hold in all (data and binaryData).
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_CONFIGMAP_BYTES = 1024 * 1024
# A Service's name: a DNS-1035 label, which begins with a letter.
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def refused_in_companion(template: Mapping[str, Any]) -> tuple[Refusal, ...]:
    """Each field of a ConfigMap or Service wrapped beside a Job that the API
    server would refuse, or that would keep Argo CD from applying it as it
    applies the Job (companions.py checks its name and namespace)."""
    metadata = template.get("metadata") or {}
    found = list(_metadata(metadata, where="metadata"))
    found += [
        (f"metadata.annotations.{key}", why)
        for key, value in (metadata.get("annotations") or {}).items()
        if (why := _kept_apart(str(key), str(value)))
    ]
    if template.get("kind") == "ConfigMap":
        found += _config_map(template)
    else:
        found += _service(template.get("spec") or {})
    return tuple(found)


def _kept_apart(key: str, value: str) -> str | None:
    """Why the annotation `key: value` on a companion cannot stay, or None: a
    hook, or an option that keeps it on a spoke once its Job has left."""
    if key in _HOOKS or key.startswith("helm.sh/hook-"):
        return _argocd_override(key, value)
    if key in _SYNC_OPTIONS:
        options = [o.strip() for o in value.split(",")]
        kept = [o for o in options if o.lower() in ("prune=false", "prune=confirm")]
        if kept:
            return (
                f"remove {', '.join(kept)}: it goes from a spoke with its Job, when "
                "Caspian removes the Job's file and Argo CD prunes them both"
            )
    return None


def _config_map(config: Mapping[str, Any]) -> Iterator[Refusal]:
    size = 0
    for part in ("data", "binaryData"):
        for key, value in (config.get(part) or {}).items():
            size += len(str(key).encode()) + len(str(value).encode())
            if len(str(key)) > 253 or not CONFIG_KEY.match(str(key)):
                yield (
                    f"{part}[{key}]",
                    f"{key!r} is no ConfigMap key: letters, digits, '-', '_' and '.' only",
                )
    if size > MAX_CONFIGMAP_BYTES:
        yield (
            "data",
            f"{size} bytes, more than the {MAX_CONFIGMAP_BYTES} a ConfigMap holds: keep "
            "large data in the image or a volume",
        )
    if config.get("immutable") is True:
        # Argo CD applies an edit in place, the API server refuses it, and the
        # sync that carries it fails.
        yield (
            "immutable",
            "remove it: Caspian applies an edit of its AppWrapper to the ConfigMap in "
            "place, which Kubernetes refuses for an immutable one",
        )


def _service(spec: Mapping[str, Any]) -> Iterator[Refusal]:
    headless = spec.get("clusterIP") == "None"
    fixed = [ip for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])] if ip]
    if any(ip != "None" for ip in fixed):
        # One cluster's service range is not another's.
        yield (
            "spec.clusterIP"
            if spec.get("clusterIP") not in (None, "", "None")
            else "spec.clusterIPs",
            "an address of one cluster's service range, which the job's other spokes "
            "do not share: remove it (or write None, for a headless Service)",
        )
    if not spec.get("ports") and not headless and spec.get("type") != "ExternalName":
        yield (
            "spec.ports",
            "required: Kubernetes takes a Service without ports only if it is headless "
            "(clusterIP: None) or an ExternalName",
        )


def _argocd_override(key: str, value: str) -> str | None:
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


def _job_spec(spec: Mapping[str, Any]) -> Iterator[Refusal]:
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        # The API server refuses any other, and the default (Always).
        found = "missing" if restart is None else f"{restart!r}"
        yield (
            POD + "spec.restartPolicy",
            f"{found}: Kubernetes runs a Job's pods only with Never or OnFailure; "
            "add restartPolicy: Never",
        )
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        # As `kubectl get job -o yaml` writes it, with the controller-uid labels.
        yield (
            "spec.selector",
            "Kubernetes generates a Job's selector and refuses one written in: remove "
            "spec.selector, and the controller-uid labels of the pod template",
        )
    managed_by = spec.get("managedBy")
    if managed_by is not None and managed_by != JOB_CONTROLLER:
        # Taken by the API server, but the built-in Job controller then leaves the
        # Job to that other controller (MultiKueue's, say), which a spoke lacks.
        yield (
            "spec.managedBy",
            f"{managed_by!r}: Kubernetes' Job controller leaves such a Job to that "
            "controller, so on the spoke it would never run; Caspian places it across "
            "clusters itself: remove spec.managedBy",
        )
    backoff = spec.get("backoffLimit")
    if backoff is not None and backoff < 0:
        yield "spec.backoffLimit", f"{backoff} is negative: Kubernetes requires 0 or more"
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        yield "spec.activeDeadlineSeconds", f"{deadline}: Kubernetes requires more than 0"
    indexed = spec.get("completionMode") == "Indexed"
    if indexed and spec.get("completions") is None:
        yield (
            "spec.completions",
            "required with completionMode: Indexed (one index per completion); set it",
        )
    for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(key) is not None and not indexed:
            yield f"spec.{key}", "only an Indexed Job takes it: set completionMode: Indexed"
    if spec.get("podFailurePolicy") is not None and restart != "Never":
        yield (
            "spec.podFailurePolicy",
            "Kubernetes takes a pod failure policy only with restartPolicy: Never",
        )


def _object_names(pod: Mapping[str, Any]) -> Iterator[Refusal]:
    """The objects a pod names by their name alone, which the API server holds
    to the rule of names (lower case, digits, '-' and '.')."""
    for field in ("serviceAccountName", "serviceAccount", "priorityClassName", "runtimeClassName"):
        value = pod.get(field)
        if value is None or (len(str(value)) <= 253 and DNS_SUBDOMAIN.match(str(value))):
            continue
        yield (
            f"{POD}spec.{field}",
            f"{value!r} is not the name of an object: use lower case, digits, '-' and '.'",
        )


def _containers(pod: Mapping[str, Any]) -> Iterator[Refusal]:
    volumes = {v.get("name") for v in pod.get("volumes") or [] if isinstance(v, dict)}
    seen: set[str] = set()
    port_names: set[str] = set()
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(kind) or []):
            if not isinstance(container, dict):
                continue  # the schema says so
            where = f"{POD}spec.{kind}[{index}]."
            name = container.get("name")
            if not is_dns_label(name):
                yield where + "name", f"{name!r} is not a DNS label: use lower case, digits and '-'"
            elif name in seen:
                yield where + "name", f"{name!r} is taken by another container: rename one"
            seen.add(str(name))
            if not container.get("image"):
                yield where + "image", "required: the container's image"
            yield from _mounts(container, volumes=volumes, where=where)
            yield from _environment(container, where=where)
            yield from _ports(container, where=where, names=port_names)
            yield from _resources(container.get("resources") or {}, where=where + "resources.")


def _environment(container: Mapping[str, Any], *, where: str) -> Iterator[Refusal]:
    """Entries of env and envFrom that are no entries (`- ~`): the schema lets a
    null through, and the API server reads it as one without a name."""
    for index, variable in enumerate(container.get("env") or []):
        if not isinstance(variable, dict):
            yield f"{where}env[{index}]", "expected a variable: its name and its value"
    for index, source in enumerate(container.get("envFrom") or []):
        if not isinstance(source, dict):
            yield f"{where}envFrom[{index}]", "expected a source: a configMapRef or secretRef"


def _mounts(container: Mapping[str, Any], *, volumes: set[Any], where: str) -> Iterator[Refusal]:
    paths: set[str] = set()
    for index, mount in enumerate(container.get("volumeMounts") or []):
        if not isinstance(mount, dict):
            continue
        field = f"{where}volumeMounts[{index}]."
        if mount.get("name") not in volumes:
            yield (
                field + "name",
                f"{mount.get('name')!r} names no volume of the pod: add it to "
                "spec.template.spec.volumes, or fix the name",
            )
        path = mount.get("mountPath")
        if not path:
            yield field + "mountPath", "required: where the volume goes in the container"
        elif path in paths:
            yield field + "mountPath", f"{path!r} is mounted twice in this container"
        paths.add(str(path))


def _ports(container: Mapping[str, Any], *, where: str, names: set[str]) -> Iterator[Refusal]:
    """Port numbers, and port names (IANA service names, unique in the pod)."""
    for index, port in enumerate(container.get("ports") or []):
        if not isinstance(port, dict):
            continue
        for key, low in (("containerPort", 1), ("hostPort", 0)):
            value = port.get(key)
            if isinstance(value, int) and not low <= value <= 65535:
                yield f"{where}ports[{index}].{key}", f"{value} is not a port ({low}-65535)"
        name = port.get("name")
        if name is None:
            continue
        if not isinstance(name, str) or not _is_service_name(name):
            yield (
                f"{where}ports[{index}].name",
                f"{name!r} is not a port name: at most 15 lower-case letters, digits and "
                "single '-' inside, with a letter among them",
            )
        elif name in names:
            yield f"{where}ports[{index}].name", f"{name!r} names another port of the pod"
        names.add(str(name))


def _is_service_name(name: str) -> bool:
    return (
        len(name) <= 15
        and bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name))
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def _resources(resources: Mapping[str, Any], *, where: str) -> Iterator[Refusal]:
    unknown = set()
    for part in ("requests", "limits"):
        for key in resources.get(part) or {}:
            if not _is_resource_name(str(key)):
                # A typo (cpus, Memory) would also be counted as asking for nothing.
                unknown.add(str(key))
                yield (
                    f"{where}{part}[{key}]",
                    f"{key!r} is no resource Kubernetes knows: use cpu, memory, "
                    "ephemeral-storage, hugepages-<size>, or a name with a domain "
                    "(nvidia.com/gpu)",
                )
    # A name that is a typo has no rules of its own to tell of.
    requests = {k: v for k, v in _amounts(resources.get("requests")).items() if k not in unknown}
    limits = {k: v for k, v in _amounts(resources.get("limits")).items() if k not in unknown}
    for key, (text, amount) in requests.items():
        if key in OVERCOMMITTABLE:
            if key in limits and amount > limits[key][1]:
                yield (
                    f"{where}requests[{key}]",
                    f"{text!r} is more than its limit {limits[key][0]!r}: Kubernetes "
                    "refuses a request above the limit; lower one or raise the other",
                )
        elif key not in limits:
            yield (
                f"{where}limits[{key}]",
                f"required: Kubernetes takes {key} only with a limit, equal to the "
                f"request; set limits[{key}]: {text!r}",
            )
        elif amount != limits[key][1]:
            yield (
                f"{where}requests[{key}]",
                f"{text!r} differs from its limit {limits[key][0]!r}: Kubernetes takes "
                f"{key} only with the request equal to the limit",
            )
    for key, (text, amount) in limits.items():
        if key not in OVERCOMMITTABLE and not key.startswith("hugepages-") and amount % 1:
            yield f"{where}limits[{key}]", f"{text!r}: {key} comes in whole units"


def _is_resource_name(key: str) -> bool:
    if key in OVERCOMMITTABLE or key.startswith("hugepages-"):
        return True
    prefix, _, name = key.partition("/")
    return bool(name) and bool(DNS_SUBDOMAIN.match(prefix)) and _bad_key(key) is None


def _amounts(values: Any) -> dict[str, tuple[Any, float]]:
    """Each quantity as written and as a number; one that does not parse is left
    to the reading of requests, which names it."""
    found = {}
    for key, text in (values or {}).items() if isinstance(values, dict) else ():
        try:
            found[str(key)] = (text, quantities.quantity(text))
        except ValueError:
            continue
    return found


def _volumes(pod: Mapping[str, Any]) -> Iterator[Refusal]:
    seen: set[str] = set()
    for index, volume in enumerate(pod.get("volumes") or []):
        if not isinstance(volume, dict):
            yield f"{POD}spec.volumes[{index}]", "expected a volume: its name and its source"
            continue
        name = volume.get("name")
        field = f"{POD}spec.volumes[{index}].name"
        if not is_dns_label(name):
            yield field, f"{name!r} is not a DNS label: use lower case, digits and '-'"
        elif name in seen:
            yield field, f"{name!r} is taken by another volume: rename one"
        seen.add(str(name))


def _metadata(metadata: Mapping[str, Any], *, where: str) -> Iterator[Refusal]:
    yield from _labels(metadata.get("labels") or {}, where=f"{where}.labels")
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        if why := _bad_key(str(key)):
            yield f"{where}.annotations[{key}]", why
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        yield (
            f"{where}.annotations",
            f"{size} bytes, more than the {MAX_ANNOTATION_BYTES} Kubernetes takes: keep "
            "large data in a ConfigMap or the image",
        )


def _labels(labels: Mapping[str, Any], *, where: str) -> Iterator[Refusal]:
    for key, value in labels.items():
        if why := _bad_key(str(key)):
            yield f"{where}[{key}]", why
        text = str(value)
        if len(text) > 63 or (text and not QUALIFIED_NAME.match(text)):
            yield (
                f"{where}[{key}]",
                f"{text!r} is not a label value: at most 63 letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit",
            )


def bad_label(key: str, value: str) -> str | None:
    """Why `key: value` is no Kubernetes label, or None."""
    return next((why for _, why in _labels({key: value}, where="")), None)


def _bad_key(key: str) -> str | None:
    """Why `key` is no label or annotation key ([prefix/]name), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (key.count("/") and not prefix):
        return f"{key!r}: a key is a name, or one DNS prefix, '/' and a name"
    if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return (
            f"{key!r}: its prefix {prefix!r} is not a DNS subdomain (lower case, digits, '-', '.')"
        )
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        return (
            f"{key!r}: its name must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def is_dns_label(value: Any) -> TypeGuard[str]:
    """A DNS-1123 label: what Kubernetes takes as a name of most things."""
    return isinstance(value, str) and len(value) <= 63 and bool(DNS_LABEL.match(value))
