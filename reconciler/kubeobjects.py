"""What a spoke's own objects say, as the Kubernetes client hands them back
(nodes, pods, Jobs, events, ResourceQuotas, LimitRanges, Namespaces): what is
free on each node, which of Caspian's Jobs have begun, wait for a node, are
refused or cannot start, and why, how they ended, and what quotas and
LimitRanges hold the pods of a namespace to. `reconciler/kube.py` lists the
objects; this module only reads them, so it needs neither the client nor a
cluster. Optional fields are read as the API may leave them out; an object
without one every object has (its metadata) raises, and kube.py then takes
the spoke's whole answer for one it cannot read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler import admission, podsecurity
from reconciler.admission import LimitRangeItem, QuotaScope, ScopedQuota
from reconciler.fleet import printable
from reconciler.pods import InitContainer, Node, Resources, Taint, effective_request
from reconciler.quantities import quantity

OWNED_POD_LABEL = "caspian.dev/appwrapper"
# Set on a Job's pods by the Job controller (job-name before Kubernetes 1.27).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
RESOURCES = {"cpu": "cpu", "memory": "memory", "gpu": "nvidia.com/gpu"}
MOST_SAID = 240  # characters of what a spoke says of a Job, in a commit message
# Why a container with a node waits, when only its spoke could end the wait: its
# image cannot be pulled there (a registry, pull secret or platform the spoke
# lacks), or a Secret or ConfigMap key it reads is not there. A container still
# pulling its image waits as ContainerCreating, and is left to it.
CANNOT_START = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# The same, said only in the pod's events: its volumes cannot be mounted there
# (a Secret that is not there, a disk in another zone), or the spoke's network
# cannot give it a sandbox.
CANNOT_START_EVENTS = frozenset({"FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox"})
# An event older than this says nothing of now: the kubelet tries a mount again
# at least every two minutes, and reports each failure.
FRESH_EVENT = timedelta(minutes=5)
# The keys of a ResourceQuota's hard limits on what pods request (an extended
# resource is limited by its requests. key only).
QUOTA_KEYS = {
    "cpu": ("requests.cpu", "cpu"),
    "memory": ("requests.memory", "memory"),
    "gpu": ("requests.nvidia.com/gpu",),
}
# The quota on how many pods a namespace may hold that have not ended.
POD_COUNT_KEY = "pods"


def usable(node: Any, *, tolerated: set[str]) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    for taint in (node.spec.taints or []) if node.spec is not None else []:
        if taint.effect in ("NoSchedule", "NoExecute") and taint.key not in tolerated:
            return False
    conditions = (node.status.conditions or []) if node.status is not None else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def usable_nodes(nodes: list[Any], pods: list[Any], *, tolerated: set[str]) -> tuple[Node, ...]:
    """Each usable node: its allocatable, labels, the taints a pod must tolerate
    there (those `usable` lets pass), and what is free on it, less the requests of
    the pods there that Caspian does not own (its own Jobs are in the plan)."""
    taken: dict[str, dict[str, float]] = {}
    for pod in pods:
        labels = pod.metadata.labels or {}
        if OWNED_POD_LABEL in labels or pod.spec is None or not pod.spec.node_name:
            continue
        if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
            continue
        on_node = taken.setdefault(pod.spec.node_name, dict.fromkeys(RESOURCES, 0.0))
        for ours, need in pod_requests(pod.spec).items():
            on_node[ours] += need
    found = []
    for node in nodes:
        if not usable(node, tolerated=tolerated):
            continue
        allocatable = node.status.allocatable or {}
        amount = {ours: quantity(allocatable.get(theirs, 0)) for ours, theirs in RESOURCES.items()}
        used = taken.get(node.metadata.name, {})
        left = {ours: max(0.0, amount[ours] - used.get(ours, 0.0)) for ours in RESOURCES}
        taints = tuple(
            Taint(key=t.key, value=t.value or "", effect=t.effect)
            for t in node.spec.taints or []
            if t.effect in ("NoSchedule", "NoExecute")
        )
        found.append(
            Node(
                name=node.metadata.name,
                allocatable=_resources(amount),
                labels=dict(node.metadata.labels or {}),
                taints=taints,
                free=_resources(left),
            )
        )
    return tuple(found)


def job_key(job: Any) -> str:
    """A Job's namespace/name, as the ledger's entries key it."""
    return f"{job.metadata.namespace}/{job.metadata.name}"


def owning_job(pod: Any) -> str | None:
    """The namespace/name of the Job of one of Caspian's pods, or None for
    another pod (the Job controller labels its pods with the Job's name)."""
    labels = pod.metadata.labels or {}
    job_name = labels.get(JOB_NAME_LABEL) or labels.get("job-name")
    if OWNED_POD_LABEL not in labels or not job_name:
        return None
    return f"{pod.metadata.namespace}/{job_name}"


def placed_on(pods: list[Any]) -> dict[str, tuple[str, ...]]:
    """The nodes each of Caspian's Jobs has pods on, by the Job's namespace/name:
    which of a spoke's pools its room is taken from."""
    found: dict[str, set[str]] = {}
    for pod in pods:
        key = owning_job(pod)
        if key and pod.spec is not None and pod.spec.node_name:
            found.setdefault(key, set()).add(pod.spec.node_name)
    return {key: tuple(sorted(nodes)) for key, nodes in found.items()}


def suspended(jobs: list[Any]) -> frozenset[str]:
    """Caspian's Jobs there whose spec.suspend is true: waiting for their
    start, or for Argo CD to apply the resume the branch holds."""
    return frozenset(job_key(job) for job in jobs if job.spec is not None and job.spec.suspend)


def _ran(jobs: list[Any]) -> set[str]:
    """Caspian's Jobs that have run a pod to its end there: never moved."""
    return {
        job_key(job)
        for job in jobs
        if job.status is not None and ((job.status.succeeded or 0) or (job.status.failed or 0))
    }


def unscheduled(
    jobs: list[Any], pods: list[Any], *, placed: Mapping[str, tuple[str, ...]]
) -> dict[str, datetime]:
    """Caspian's Jobs that have run no pod and have none on a node, while the
    scheduler finds no node for one of their pods (its PodScheduled condition
    False, Unschedulable): since when, by the Job's namespace/name. Room Caspian
    counted there was taken, or the nodes it counted are gone."""
    ran = _ran(jobs)
    since: dict[str, datetime] = {}
    for pod in pods:
        key = owning_job(pod)
        if key is None or key in placed or key in ran:
            continue
        if (moment := _unschedulable_since(pod)) is not None:
            since[key] = min(since.get(key, moment), moment)
    return dict(sorted(since.items()))


def nodeless(jobs: list[Any], pods: list[Any]) -> dict[str, datetime]:
    """Caspian's Jobs there, not suspended, with no pod on a node but ones
    being deleted, while the scheduler finds no node for one of their pods:
    since when, by namespace/name, whether they have run a pod before or not.
    For a running job, the nodes its pods ran on went (drained, failed, a spot
    instance taken back) and no room is left for them; its pods on a node
    that is gone stay, being deleted, until the node's object goes."""
    held = suspended(jobs)
    on_node = {
        key
        for pod in pods
        if pod.spec is not None
        and pod.spec.node_name
        and pod.metadata.deletion_timestamp is None
        and (key := owning_job(pod)) is not None
    }
    since: dict[str, datetime] = {}
    for pod in pods:
        key = owning_job(pod)
        if key is None or key in held or key in on_node or pod.metadata.deletion_timestamp:
            continue
        if (moment := _unschedulable_since(pod)) is not None:
            since[key] = min(since.get(key, moment), moment)
    return dict(sorted(since.items()))


def _unschedulable_since(pod: Any) -> datetime | None:
    """When the scheduler found no node for a pod that has none (its
    PodScheduled condition False, Unschedulable); None for any other pod."""
    if pod.spec is not None and pod.spec.node_name:
        return None
    for condition in (pod.status.conditions or []) if pod.status is not None else []:
        moment = condition.last_transition_time
        if (condition.type, condition.status, condition.reason) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ) and isinstance(moment, datetime):
            return moment
    return None


def scheduler_messages(pods: list[Any], waiting: Mapping[str, datetime]) -> dict[str, str]:
    """The scheduler's latest word on a pod of each of the `waiting` Jobs it
    finds no node for ("0/3 nodes are available: 3 Insufficient cpu.")."""
    found: dict[str, tuple[datetime, str]] = {}
    for pod in pods:
        key = owning_job(pod)
        if key is None or key not in waiting or pod.status is None:
            continue
        for condition in pod.status.conditions or []:
            moment, message = condition.last_transition_time, condition.message
            if (
                (condition.type, condition.status) == ("PodScheduled", "False")
                and isinstance(moment, datetime)
                and isinstance(message, str)
                and message.strip()
                and (key not in found or found[key][0] <= moment)
            ):
                found[key] = (moment, message)
    return {key: one_line(message) for key, (_, message) in sorted(found.items())}


def latest_message(events: list[Any]) -> str | None:
    """The message of the latest of some events, by when each last happened."""

    def when(event: Any) -> datetime:
        return _last_said(event) or datetime.min.replace(tzinfo=UTC)

    said = [e for e in events if isinstance(e.message, str) and e.message.strip()]
    return one_line(max(said, key=when).message) if said else None


def one_line(message: str) -> str:
    """A message from a spoke as one line of a commit message, cut short: it may
    be as long as a webhook cares to make it. URLs in it lose their user and
    query: a failed image pull can quote a registry's pre-signed URL, whose
    signature is a credential, and a commit keeps it for ever."""
    text = printable(" ".join(message.split()))
    text = re.sub(r"(?<=://)[^/\s@]+@", "", text)
    text = re.sub(r"(://[^\s?\"']*)\?[^\s\"']*", r"\1?...", text)
    return cut(text, MOST_SAID)


def podless(jobs: list[Any], pods: list[Any]) -> dict[str, datetime]:
    """Caspian's Jobs that started there (not suspended) and have no pod, none
    active and none that ran, since when they started, by namespace/name: the
    Job controller's pods are refused (a LimitRange's bounds, Pod Security, a
    policy webhook, a quota Caspian could not read), which only the Job's
    events tell."""
    with_pods = {owning_job(pod) for pod in pods} - {None}
    found = {}
    for job in jobs:
        key = job_key(job)
        status = job.status
        if key in with_pods or status is None or job.spec is None or job.spec.suspend:
            continue
        counts = (status.active, status.succeeded, status.failed, status.ready)
        ended = any(c.status == "True" for c in status.conditions or [])
        if any(counts) or ended or not isinstance(status.start_time, datetime):
            continue
        found[key] = status.start_time
    return dict(sorted(found.items()))


def job_events(key: str) -> tuple[str, str]:
    """The namespace and field selector of a Job's FailedCreate events."""
    namespace, _, name = key.partition("/")
    return namespace, f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate"


def pod_events(pod: Any) -> tuple[str, str]:
    """The namespace and field selector of a pod's warnings."""
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod.metadata.name},type=Warning"
    return pod.metadata.namespace, selector


def unstarted(jobs: list[Any], pods: list[Any]) -> dict[str, list[Any]]:
    """Caspian's Jobs that have run no pod and started no container, with their
    pods on a node, oldest on its node first, by namespace/name: why those wait
    is read from their containers (`cannot_start`) or their events
    (`failed_start`). Pods still finding a node are `unscheduled`'s."""
    begun = started(jobs, pods)
    found: dict[str, list[tuple[datetime, Any]]] = {}
    for pod in pods:
        key, since = owning_job(pod), on_node_since(pod)
        if key is None or key in begun or since is None:
            continue
        found.setdefault(key, []).append((since, pod))
    return {
        key: [pod for _, pod in sorted(found[key], key=lambda pair: pair[0])]
        for key in sorted(found)
    }


def started(jobs: list[Any], pods: list[Any]) -> set[str]:
    """Caspian's Jobs that have begun: a container of theirs has run, or they
    have run a pod to its end, or have one ready."""
    ready = {job_key(job) for job in jobs if job.status is not None and (job.status.ready or 0)}
    pods_begun = {key for pod in pods if _started(pod) and (key := owning_job(pod)) is not None}
    return _ran(jobs) | ready | pods_begun


def _started(pod: Any) -> bool:
    """Whether one of the pod's own containers has run, now or before (an init
    container that ran has not begun the Job's work: moved, it runs again)."""
    for status in (pod.status.container_statuses or []) if pod.status is not None else []:
        state, last = status.state, status.last_state
        if (state is not None and (state.running or state.terminated)) or (
            last is not None and last.terminated
        ):
            return True
    return False


def on_node_since(pod: Any) -> datetime | None:
    """When the kubelet of the pod's node took it; None for a pod with no node."""
    if pod.spec is None or not pod.spec.node_name or pod.status is None:
        return None
    moment = pod.status.start_time
    return moment if isinstance(moment, datetime) else None


def cannot_start(waiting: Mapping[str, list[Any]]) -> dict[str, tuple[datetime, str]]:
    """Of the `unstarted` Jobs, those with a container that waits for what only
    its spoke could change (CANNOT_START): since when its pod is on its node,
    and the container's reason and message, by namespace/name."""
    found = {}
    for key, pods in waiting.items():
        for pod in pods:
            said, since = _waiting_words(pod), on_node_since(pod)
            if said is not None and since is not None:
                found[key] = (since, said)
                break
    return found


def _waiting_words(pod: Any) -> str | None:
    statuses = [*(pod.status.init_container_statuses or []), *(pod.status.container_statuses or [])]
    for status in statuses:
        waiting = status.state.waiting if status.state is not None else None
        if waiting is not None and waiting.reason in CANNOT_START:
            message = waiting.message if isinstance(waiting.message, str) else ""
            return one_line(f"{waiting.reason}: {message}" if message.strip() else waiting.reason)
    return None


def failed_start(events: list[Any], *, now: datetime) -> str | None:
    """What the latest of a pod's events says of why it cannot start
    (CANNOT_START_EVENTS), if that is still so: it was said within
    FRESH_EVENT of `now`. A mount that failed once and then worked says nothing."""
    failures = [
        (moment, event)
        for event in events
        if event.reason in CANNOT_START_EVENTS
        and isinstance(event.message, str)
        and (moment := _last_said(event)) is not None
    ]
    if not failures:
        return None
    moment, event = max(failures, key=lambda pair: pair[0])
    return one_line(f"{event.reason}: {event.message}") if moment >= now - FRESH_EVENT else None


def _last_said(event: Any) -> datetime | None:
    """When an event last happened: a series' last, or the event's own time."""
    series = getattr(event, "series", None)
    for moment in (
        series.last_observed_time if series is not None else None,
        event.last_timestamp,
        event.event_time,
        event.first_timestamp,
    ):
        if isinstance(moment, datetime):
            return moment
    return None


def _resources(amount: dict[str, float]) -> Resources:
    return Resources(cpu=amount["cpu"], memory_bytes=amount["memory"], gpu=amount["gpu"])


def pod_requests(spec: Any) -> dict[str, float]:
    """Effective requests by the scheduler's rule (`effective_request`);
    limits stand in for missing requests."""

    def need(resources: Any, name: str) -> float | None:
        if resources is None:
            return None
        value = (resources.requests or {}).get(name)
        if value is None:
            value = (resources.limits or {}).get(name)
        return None if value is None else quantity(value)

    result = {}
    for ours, theirs in RESOURCES.items():
        result[ours] = effective_request(
            containers=(need(c.resources, theirs) or 0.0 for c in spec.containers or []),
            init_containers=[
                InitContainer(
                    amount=need(c.resources, theirs) or 0.0,
                    sidecar=c.restart_policy == "Always",
                )
                for c in spec.init_containers or []
            ],
            # Kubernetes takes pod-level requests for cpu and memory only.
            pod_level=need(spec.resources, theirs) if ours != "gpu" else None,
            overhead=quantity((spec.overhead or {}).get(theirs, 0)),
        )
    return result


def quota_limits(quotas: Iterable[Any]) -> Resources | None:
    """The most the ResourceQuotas of one namespace let all its pods request at
    once, or None where none limits cpu, memory or GPUs. A quota with scopes
    counts only some pods (by priority, say), so only quotas without are read."""
    most = {"cpu": math.inf, "memory": math.inf, "gpu": math.inf}
    for quota in quotas:
        spec = quota.spec
        if spec is None or spec.scopes or spec.scope_selector:
            continue
        hard = spec.hard or {}
        for ours, keys in QUOTA_KEYS.items():
            for key in keys:
                if key in hard:
                    most[ours] = min(most[ours], quantity(hard[key]))
    if all(math.isinf(value) for value in most.values()):
        return None
    return Resources(cpu=most["cpu"], memory_bytes=most["memory"], gpu=most["gpu"])


def quota_pods(quotas: Iterable[Any]) -> float | None:
    """The most pods the ResourceQuotas of one namespace let it hold at once
    (their `pods`), or None where none limits that. Only quotas without scopes."""
    most = [
        quantity(quota.spec.hard[POD_COUNT_KEY])
        for quota in quotas
        if quota.spec is not None
        and not (quota.spec.scopes or quota.spec.scope_selector)
        and POD_COUNT_KEY in (quota.spec.hard or {})
    ]
    return min(most) if most else None


def enforced_levels(namespaces: Iterable[Any], *, wanted: Iterable[str]) -> dict[str, str]:
    """The Pod Security Standard each of the `wanted` namespaces enforces, by
    its label, where that is baseline or restricted. (A namespace that does not
    exist yet is made by Argo CD from rendered/, without the label.)"""
    names = set(wanted)
    found = {}
    for namespace in namespaces:
        metadata = namespace.metadata
        if metadata is None or metadata.name not in names:
            continue
        level = (metadata.labels or {}).get(podsecurity.ENFORCE_LABEL)
        if level in ("baseline", "restricted"):
            found[metadata.name] = level
    return dict(sorted(found.items()))


def scoped_quotas(quotas: Iterable[Any]) -> tuple[ScopedQuota, ...]:
    """The ResourceQuotas of one namespace that count only the pods their
    scopes match (`scopes`, or a `scopeSelector`), with what they limit and
    what they make every container set; decide matches them to each job."""
    found = []
    for quota in quotas:
        spec = quota.spec
        if spec is None or not (spec.scopes or spec.scope_selector):
            continue
        scopes = [QuotaScope(scope=name) for name in spec.scopes or []]
        for expression in (
            (spec.scope_selector.match_expressions or []) if spec.scope_selector else []
        ):
            scopes.append(
                QuotaScope(
                    scope=expression.scope_name,
                    operator=expression.operator,
                    values=tuple(expression.values or ()),
                )
            )
        hard = spec.hard or {}
        most = {
            ours: min(quantity(hard[key]) for key in keys if key in hard)
            for ours, keys in QUOTA_KEYS.items()
            if any(key in hard for key in keys)
        }
        if POD_COUNT_KEY in hard:
            most["pods"] = quantity(hard[POD_COUNT_KEY])
        found.append(
            ScopedQuota(
                name=f"{quota.metadata.namespace}/{quota.metadata.name}",
                scopes=tuple(scopes),
                most=most,
                needs=admission.QUOTA_NEEDS.intersection(hard),
            )
        )
    return tuple(found)


def quota_needs(quotas: Iterable[Any]) -> frozenset[str]:
    """What the ResourceQuotas of one namespace make every container set: the
    cpu and memory they count (admission.QUOTA_NEEDS). Quotas with scopes,
    which count only some pods, are not read."""
    found: set[str] = set()
    for quota in quotas:
        spec = quota.spec
        if spec is None or spec.scopes or spec.scope_selector:
            continue
        found.update(admission.QUOTA_NEEDS.intersection(spec.hard or {}))
    return frozenset(found)


def limit_range_items(ranges: Iterable[Any]) -> tuple[LimitRangeItem, ...]:
    """The Container and Pod items of one namespace's LimitRanges, in the API's
    order, with the API's defaults (a copy made without them, say) filled in."""
    found = []
    for limit_range in ranges:
        name = f"{limit_range.metadata.namespace}/{limit_range.metadata.name}"
        for item in (limit_range.spec.limits or []) if limit_range.spec is not None else []:
            if item.type not in ("Container", "Pod"):
                continue  # a PersistentVolumeClaim's bounds say nothing of pods
            found.append(
                LimitRangeItem(
                    limit_range=name,
                    type=item.type,
                    max=_bounded_amounts(item.max),
                    min=_bounded_amounts(item.min),
                    default=_bounded_amounts(item.default),
                    default_request=_bounded_amounts(item.default_request),
                    max_limit_request_ratio=_bounded_amounts(item.max_limit_request_ratio),
                ).with_api_defaults()
            )
    return tuple(found)


def _bounded_amounts(values: Mapping[str, Any] | None) -> dict[str, float]:
    """The amounts of the resources Caspian reads LimitRanges for."""
    return {key: quantity(v) for key, v in (values or {}).items() if key in admission.KEYS}


def failures(jobs: list[Any]) -> dict[str, str]:
    """Why each of Caspian's failed Jobs there failed, by its Failed condition
    ("BackoffLimitExceeded: Job has reached the specified backoff limit"): the
    words that go with a run again."""
    found = {}
    for job in jobs:
        for condition in (job.status.conditions or []) if job.status is not None else []:
            if (condition.type, condition.status) != ("Failed", "True"):
                continue
            words = ": ".join(
                w for w in (condition.reason, condition.message) if isinstance(w, str) and w.strip()
            )
            if words:
                found[job_key(job)] = one_line(words)
    return found


def exit_codes(pods: list[Any]) -> dict[str, tuple[int, ...]]:
    """The exit codes other than 0 of the containers of Caspian's failed pods
    there, by their Job's namespace/name: what an AppWrapper's terminalExitCodes
    and retryableExitCodes are held against, as the AppWrapper controller does."""
    found: dict[str, set[int]] = {}
    for pod in pods:
        key = owning_job(pod)
        if key is None or pod.status is None or pod.status.phase != "Failed":
            continue
        for status in pod.status.container_statuses or []:
            ended = status.state.terminated if status.state is not None else None
            code = ended.exit_code if ended is not None else None
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                found.setdefault(key, set()).add(code)
    return {key: tuple(sorted(codes)) for key, codes in sorted(found.items())}


def job_ended(status: Any) -> datetime | None:
    """When a finished Job ended: the time of its Complete or Failed condition
    (its completionTime, where that condition has none); None for one that
    runs, or whose spoke does not say."""
    for condition in (status.conditions or []) if status is not None else []:
        if condition.status == "True" and condition.type in ("Complete", "Failed"):
            moment = condition.last_transition_time
            if moment is None and condition.type == "Complete":
                moment = status.completion_time
            return moment if isinstance(moment, datetime) and moment.tzinfo else None
    return None


def job_suspended(job: Any) -> datetime | None:
    """When a suspended Job was suspended: the time of its Suspended
    condition, which the Job controller sets True then (and False when it
    is resumed); None for one not suspended, or whose spoke does not say."""
    if job.spec is None or not job.spec.suspend or job.status is None:
        return None
    for condition in job.status.conditions or []:
        if (condition.type, condition.status) == ("Suspended", "True"):
            moment = condition.last_transition_time
            return moment if isinstance(moment, datetime) and moment.tzinfo else None
    return None


def job_started(status: Any) -> datetime | None:
    """When a Job began, as its status says (its startTime, which Kubernetes
    sets again when the Job is resumed); None for one that has not, or whose
    spoke does not say."""
    moment = getattr(status, "start_time", None) if status is not None else None
    return moment if isinstance(moment, datetime) and moment.tzinfo else None


def job_phase(status: Any) -> str:
    """A Job's status as Caspian's lifecycle: Succeeded, Failed or Running."""
    for condition in (status.conditions or []) if status is not None else []:
        if condition.status == "True" and condition.type == "Complete":
            return "Succeeded"
        if condition.status == "True" and condition.type == "Failed":
            return "Failed"
    return "Running"


def cut(text: str, most: int) -> str:
    """`text` at most `most` characters long, "..." ending one cut short."""
    return text if len(text) <= most else text[: most - 3] + "..."
