"""What each spoke really has free, and how Caspian's Jobs there are doing, from
its API server (`KubeObserver`), or how they are doing from the hub's Argo CD
Applications (`ArgoCDObserver`): the only module that imports `kubernetes`.

Free capacity = allocatable of nodes that are Ready, schedulable and carry no
NoSchedule/NoExecute taint Caspian's Jobs would not tolerate, minus the requests
of running or pending pods placed on those nodes that Caspian does not own (its
own Jobs are already in the plan), node by node: the nodes are reported with
their taints and what is free on each, for the pools of `reconciler/pools.py`.
A spoke whose API does not answer in time is reported down: it gets no new
work, and its running Jobs keep their place. It also reports what jobs need
from it: the names of the claims, ConfigMaps, ServiceAccounts and classes they
name, the ResourceQuotas and LimitRanges of their namespaces, and the Pod
Security Standard those enforce; and which of Caspian's Jobs there cannot run:
their pods find no node, are not made, or cannot start, with the spoke's word.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from reconciler import admission, jobspec, kubeversions, metrics, podsecurity
from reconciler.admission import LimitRangeItem, QuotaScope, ScopedQuota
from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet, Spoke
from reconciler.observing import declared
from reconciler.pods import InitContainer, Node, Resources, Taint, effective_request
from reconciler.quantities import quantity
from reconciler.rendering import MANAGED_BY

log = logging.getLogger("caspian.kube")

OWNED_POD_LABEL = "caspian.dev/appwrapper"
# Set on a Job's pods by the Job controller (job-name before Kubernetes 1.27).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
MAX_PARALLEL = 16
# Lists come in pages, as kubectl asks for them: each page is one call within the
# timeout, where a large cluster's pods in one answer could take longer.
PAGE = 500
MOST_PAGES = 1000  # half a million objects; past that, an answer going round
RESOURCES = {"cpu": "cpu", "memory": "memory", "gpu": "nvidia.com/gpu"}
# The kinds that hold the pods of a namespace to their rules, and the call that
# lists them there.
HOLDING_PODS = {
    "ResourceQuota": "list_namespaced_resource_quota",
    "LimitRange": "list_namespaced_limit_range",
}
# Events are asked for Job by Job: past this many podless Jobs on one spoke, the
# rest are requeued without the spoke's word; past this many Jobs whose pods
# wait on a node for no reason their containers give, the pods there the
# shortest are taken to be pulling their image, until the others are gone.
MOST_EVENT_LISTS = 16
MOST_SAID = 240  # characters of what a spoke says of a Job, in a commit message
MOST_REASON = 160  # characters of why a spoke is down
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


class KubeObserver:
    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        timeout_s: float = 5.0,
        tolerated_taints: Iterable[str] = ("nvidia.com/gpu",),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.timeout = timeout_s
        self.clock = clock
        self.tolerated = set(tolerated_taints)

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        # The kinds and namespaces of the objects jobs need (jobspec.needs), and
        # the namespaces whose quotas and LimitRanges hold them.
        wanted = sorted({jobspec.scope_of(need)[0] for job in fleet.jobs for need in job.needs})
        namespaces = sorted({job.namespace for job in fleet.jobs})
        # Failed pods are listed only where some job may run again, which turns on
        # how they exited and is told with it: they pile up until their Jobs are
        # pruned.
        default = fleet.policy.spec.retry_limit
        exits = any(
            (job.retry_limit if job.retry_limit is not None else default) > 0 for job in fleet.jobs
        )
        # All spokes at once: asked one after another, each hung spoke added its
        # timeout to every reconcile. Each has its own ApiClient.
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(fleet.spokes) or 1)) as pool:
            states = list(
                pool.map(
                    lambda spoke: self._spoke(
                        spoke, wanted=wanted, namespaces=namespaces, exits=exits
                    ),
                    fleet.spokes,
                )
            )
        asked = {spoke.name for spoke in fleet.spokes if spoke.spec.kube_context}
        metrics.keep_only(metrics.SPOKE_UP, "spoke", asked)
        return {state.name: state for state in states}

    def _spoke(
        self, spoke: Spoke, *, wanted: list[str], namespaces: list[str], exits: bool
    ) -> SpokeState:
        context = spoke.spec.kube_context
        if not context:  # no cluster to ask: trust the declaration
            return declared(spoke)
        asking = "node list"
        unread: list[str] = []  # what Caspian may not list there
        try:
            api = _client(self.kubeconfig, context=context)
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            nodes = self._all(core.list_node)
            version = _version(api) or spoke.spec.kubernetes_version
            asking = "pod list"
            pods = self._all(
                core.list_pod_for_all_namespaces,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
            )
            asking = "Job list"
            jobs = self._all(
                batch.list_job_for_all_namespaces,
                label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}",
            )
            asking = "failed pod list"
            failed_pods = (
                self._all(
                    core.list_pod_for_all_namespaces,
                    label_selector=OWNED_POD_LABEL,
                    field_selector="status.phase=Failed",
                )
                if exits
                else []
            )
            objects = {}
            for key in wanted:
                kind, _, namespace = key.partition(" ")
                asking = f"{kind} list" + (f" in {namespace}" if namespace else "")
                names = self._names(api, key, spoke=spoke, unread=unread)
                if names is not None:
                    objects[key] = names
            # Per kind, its objects in each namespace that jobs use.
            listed: dict[str, dict[str, list[Any]]] = {kind: {} for kind in HOLDING_PODS}
            for namespace in namespaces:
                for kind, lister in HOLDING_PODS.items():
                    asking = f"{kind} list in {namespace}"
                    items = self._listed(
                        getattr(core, lister),
                        namespace,
                        what=f"{kind}s",
                        spoke=spoke,
                        unread=unread,
                    )
                    if items is not None:
                        listed[kind][namespace] = items
            quota_lists, range_lists = listed["ResourceQuota"], listed["LimitRange"]
            asking = "Namespace list"
            spaces = (
                self._listed(core.list_namespace, "", what="Namespaces", spoke=spoke, unread=unread)
                if namespaces
                else []
            )
        except (
            ApiException,
            HTTPError,
            OSError,
            config.ConfigException,
            KubeconfigError,
            PagingError,
        ) as error:
            return self._down(spoke, _reason(error))
        except (ValueError, TypeError):
            # The client's models refuse a body that is no Kubernetes list: a
            # proxy's error page, an empty answer. Its message quotes the body.
            return self._down(spoke, f"its API's answer to the {asking} is not a Kubernetes list")
        try:
            tolerated = self.tolerated | set(spoke.spec.tolerated_taints)
            shapes = usable_nodes(nodes, pods, tolerated=tolerated)
            where = placed_on(pods)
            waiting = unscheduled(jobs, pods, placed=where)
            refused = podless(jobs, pods)
            said = scheduler_messages(pods, waiting)
            # Pods on a node that have not begun, oldest first, by Job.
            on_nodes = unstarted(jobs, pods)
            not_starting, words = self._not_starting(
                core, on_nodes, refused=list(refused), spoke=spoke, unread=unread
            )
            said.update(words)
            said.update(failures(jobs))
            exited = exit_codes(failed_pods)
            # A Job runs once a container of it has started, or it has run a pod:
            # until then (its pods find no node, are refused, pull their image or
            # cannot start) it is not running yet, though no condition of its
            # status says so.
            begun = started(jobs, pods)
            unready = {
                key: since
                for key, there in on_nodes.items()
                if (since := _on_node_since(there[0])) is not None
            }
            phases = {
                key: phase
                for key, phase in ((job_key(job), job_phase(job.status)) for job in jobs)
                if phase != "Running" or key in begun
            }
            ended = {job_key(job): moment for job in jobs if (moment := job_ended(job.status))}
            limits = {namespace: quota_limits(items) for namespace, items in quota_lists.items()}
            needs = {namespace: quota_needs(items) for namespace, items in quota_lists.items()}
            counts = {namespace: quota_pods(items) for namespace, items in quota_lists.items()}
            scoped = {namespace: scoped_quotas(items) for namespace, items in quota_lists.items()}
            levels = enforced_levels(spaces or [], wanted=namespaces)
            bounds = {
                namespace: limit_range_items(items) for namespace, items in range_lists.items()
            }
        except ValueError as error:  # a quantity that does not parse
            return self._down(spoke, f"its API answered an object Caspian cannot read: {error}")
        except (TypeError, AttributeError):
            # An object without its metadata, say: no capacity read from such an
            # answer can be trusted.
            return self._down(spoke, "its API answered an object without a field Caspian reads")
        metrics.SPOKE_UP.labels(spoke=spoke.name).set(1)
        room = [node.free for node in shapes if node.free is not None]
        return SpokeState(
            name=spoke.name,
            cpu=sum(free.cpu for free in room),
            memory_bytes=sum(free.memory_bytes for free in room),
            gpu=sum(free.gpu for free in room),
            source=f"kube:{context}",
            jobs=phases,
            ended=ended,
            nodes=shapes,
            placed_on=where,
            unscheduled=waiting,
            podless=refused,
            not_starting=dict(sorted(not_starting.items())),
            unready=unready,
            said=said,
            exit_codes=exited,
            unread=tuple(unread),
            objects=objects,
            quotas={namespace: limit for namespace, limit in limits.items() if limit is not None},
            quota_needs={namespace: names for namespace, names in needs.items() if names},
            quota_pods={namespace: most for namespace, most in counts.items() if most is not None},
            scoped_quotas={namespace: items for namespace, items in scoped.items() if items},
            limit_ranges={namespace: items for namespace, items in bounds.items() if items},
            pod_security=levels,
            kubernetes_version=version,
        )

    def _not_starting(
        self,
        core: client.CoreV1Api,
        on_nodes: Mapping[str, list[Any]],
        *,
        refused: list[str],
        spoke: Spoke,
        unread: list[str],
    ) -> tuple[dict[str, datetime], dict[str, str]]:
        """Caspian's Jobs there whose pods on a node cannot start, since when,
        and what the spoke says of those and of the `refused` ones: the words
        of their waiting containers, else of their events (the Job's own for
        one that makes no pod, those of its pod on a node the longest).
        `on_nodes` holds the pods on a node of each Job that has not begun."""
        stuck = cannot_start(on_nodes)
        longest = sorted(
            (pods_there[0].status.start_time, key)
            for key, pods_there in on_nodes.items()
            if key not in stuck
        )
        saying = partial(failed_start, now=self.clock())
        heard = self._event_words(
            core,
            [(key, *_job_events(key), latest_message) for key in refused[:MOST_EVENT_LISTS]]
            + [
                (key, *_pod_events(on_nodes[key][0]), saying)
                for _, key in longest[:MOST_EVENT_LISTS]
            ],
            spoke=spoke,
            unread=unread,
        )
        not_starting = {key: since for key, (since, _) in stuck.items()}
        for key in on_nodes.keys() & heard.keys():
            not_starting[key] = on_nodes[key][0].status.start_time
        return not_starting, {**{key: words for key, (_, words) in stuck.items()}, **heard}

    def _event_words(
        self,
        core: client.CoreV1Api,
        asks: list[tuple[str, str, str, Callable[[list[Any]], str | None]]],
        *,
        spoke: Spoke,
        unread: list[str],
    ) -> dict[str, str]:
        """What the events of each ask (a Job's namespace/name, the namespace
        and field selector of the events, how to read them) say, by Job. An
        answer that fails is logged, and no more are asked of that spoke, so a
        spoke that hangs holds the loop one timeout, not one per Job: the Jobs
        not heard of are requeued without the spoke's word, or taken to be
        starting."""
        found = {}
        for key, namespace, selector, read in asks:
            try:
                events = self._all(
                    core.list_namespaced_event, namespace=namespace, field_selector=selector
                )
                words = read(events)
            except (
                ApiException,
                HTTPError,
                OSError,
                PagingError,
                ValueError,
                TypeError,
                AttributeError,
            ) as error:
                rbac = isinstance(error, ApiException) and error.status in (401, 403)
                log.warning(
                    "spoke %s: the events of Job %s could not be read (%s), so Caspian cannot "
                    "say why its pods are not made or do not start there%s",
                    spoke.name,
                    key,
                    _reason(error),
                    "; deploy/spoke-rbac.yaml grants the right to list them" if rbac else "",
                )
                if rbac:
                    unread.append(f"events in {namespace}")
                break
            if words:
                found[key] = words
        return found

    def _names(
        self, api: client.ApiClient, key: str, *, spoke: Spoke, unread: list[str]
    ) -> frozenset[str] | None:
        """The names of the objects of one kind in one namespace ("ConfigMap
        batch"), or of a cluster's own kind ("PriorityClass"); None where Caspian
        may not list them, so they are not checked."""
        kind, _, namespace = key.partition(" ")
        core = client.CoreV1Api(api)
        lists = {
            "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
            "ConfigMap": core.list_namespaced_config_map,
            "ServiceAccount": core.list_namespaced_service_account,
            "PriorityClass": client.SchedulingV1Api(api).list_priority_class,
            "RuntimeClass": client.NodeV1Api(api).list_runtime_class,
        }
        items = self._listed(lists[kind], namespace, what=f"{kind}s", spoke=spoke, unread=unread)
        if items is None:
            return None
        # An object without a name, as a garbled answer has, is none a job needs.
        named = (getattr(item.metadata, "name", None) for item in items)
        return frozenset(name for name in named if isinstance(name, str))

    def _listed(
        self,
        list_call: Callable[..., Any],
        namespace: str,
        *,
        what: str,
        spoke: Spoke,
        unread: list[str],
    ) -> list[Any] | None:
        """Every item of a list Caspian may lack the right to (an older
        deploy/spoke-rbac.yaml): None then, noted in `unread`, and jobs are not
        checked against it."""
        try:
            return self._all(list_call, **({"namespace": namespace} if namespace else {}))
        except ApiException as error:
            if error.status not in (401, 403):
                raise
            log.warning(
                "spoke %s: may not list %s%s (HTTP %s), so jobs are not checked against them "
                "there; deploy/spoke-rbac.yaml grants it",
                spoke.name,
                what,
                f" in {namespace}" if namespace else "",
                error.status,
            )
            unread.append(what + (f" in {namespace}" if namespace else ""))
            return None

    def _all(self, list_call: Callable[..., Any], **query: str) -> list[Any]:
        """Every item of a list. A continue token that expired (410) starts the
        list again, once: pages of two snapshots could count a pod twice."""
        try:
            return self._pages(list_call, **query)
        except ApiException as error:
            if error.status != 410:
                raise
            return self._pages(list_call, **query)

    def _pages(self, list_call: Callable[..., Any], **query: str) -> list[Any]:
        items: list[Any] = []
        token, seen = None, set()
        for _ in range(MOST_PAGES):
            page = list_call(limit=PAGE, _continue=token, _request_timeout=self.timeout, **query)
            items.extend(page.items)
            token = page.metadata._continue if page.metadata is not None else None
            if not token:
                return items
            if token in seen:
                raise PagingError("its API gave the same continue token twice")
            seen.add(token)
        raise PagingError(f"its API answered more than {MOST_PAGES} pages of {PAGE}")

    def _down(self, spoke: Spoke, reason: str) -> SpokeState:
        context = spoke.spec.kube_context
        log.warning("spoke %s (context %s) is down: %s", spoke.name, context, reason)
        metrics.SPOKE_UP.labels(spoke=spoke.name).set(0)
        return SpokeState(
            name=spoke.name,
            up=False,
            cpu=0,
            memory_bytes=0,
            gpu=0,
            source=f"kube:{context}",
            reason=_cut(reason, MOST_REASON),
        )


IN_CLUSTER = "in-cluster"  # a context name that means the pod's service account
# Argo CD's Applications for the spokes, as argocd/applicationset.yaml labels them.
APPLICATIONS = "app.kubernetes.io/part-of=caspian"
SPOKE_LABEL = "caspian.dev/spoke"
JOB_HEALTH_CHECK = "resource.customizations.health.batch_Job"
# The first line of argocd/job-health.yaml's check since its Progressing
# message says whether the Job has begun; an older check says "running" from
# the moment the Job is resumed.
JOB_HEALTH_VERSION = "-- caspian job health 2"
# Argo CD's health of a Job, as Caspian's lifecycle reads it. Suspended (not yet
# dispatched) and Missing (not yet synced) say nothing of how it ran.
HEALTH_PHASES = {"Progressing": "Running", "Healthy": "Succeeded", "Degraded": "Failed"}
# The check's Progressing messages for a Job that has not begun: its pods wait,
# or it has none since it was resumed (its pods are refused).
NOT_BEGUN = re.compile(r"starting$|no pod ready since |no pod since ")
PODLESS_SINCE = re.compile(r"no pod since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
UNREADY_SINCE = re.compile(r"no pod ready since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
# The conditions of an Application that stop Argo CD from syncing it at all.
# (A SyncError is one sync that failed: its Jobs are read one by one.)
BLOCKING = ("ComparisonError", "InvalidSpecError")


class ArgoCDObserver:
    """Declared capacity, and the status of Caspian's Jobs as the hub's Argo CD
    reports them in its Applications: for spokes whose API Caspian may not ask.

    Argo CD's built-in Job health reads a Job resumed from suspend as Healthy
    while it runs, so Healthy and Progressing count only where argocd-cm holds
    the check of argocd/job-health.yaml; Degraded counts either way. That
    check's Progressing message says whether the Job has begun, and since when
    it has made no pod, which is all Argo CD shows of its pods. Since 3.0
    Argo CD keeps resources' health out of the Application unless
    `controller.resource.health.persist` is "true". Where the hub cannot be read,
    the spokes keep their declared capacity and no Job status moves."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str = "argocd",
        timeout_s: float = 5.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self.timeout = timeout_s

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        states = {spoke.name: declared(spoke) for spoke in fleet.spokes}
        try:
            items, check = self._read()
        except (ApiException, HTTPError, OSError, config.ConfigException, KubeconfigError) as error:
            return _unread(states, _reason(error))
        except (ValueError, TypeError):
            return _unread(states, "the answer is no Kubernetes list")
        checked = check is not None
        if not checked:
            log.warning(
                "argocd-cm has no %s: a resumed Job reads Healthy there while it runs, so only "
                "failures are read; apply argocd/job-health.yaml",
                JOB_HEALTH_CHECK,
            )
        elif JOB_HEALTH_VERSION not in check:
            log.warning(
                "argocd-cm's %s is older than this Caspian's: a Job reads running from when it "
                "is resumed, and one whose pods are refused is not requeued; re-apply "
                "argocd/job-health.yaml",
                JOB_HEALTH_CHECK,
            )
        trusted = checked
        syncable: dict[str, bool] = {}
        for application in items:
            spoke, seen, health = _application_jobs(application, checked=checked)
            trusted = trusted and health
            if spoke not in states:
                continue
            if any(seen):
                states[spoke] = states[spoke].model_copy(
                    update={**seen._asdict(), "source": "declared+argocd"}
                )
            blocked = _blocked(application)
            syncable[spoke] = blocked is None
            if blocked is not None:
                states[spoke] = _undeliverable(states[spoke], *blocked)
        for spoke, ok in syncable.items():
            metrics.ARGOCD_SYNCABLE.labels(spoke=spoke).set(1 if ok else 0)
        metrics.keep_only(metrics.ARGOCD_SYNCABLE, "spoke", set(syncable))
        metrics.ARGOCD_UP.set(1 if trusted else 0)
        return states

    def _read(self) -> tuple[list[Any], str | None]:
        """Caspian's Applications, and argocd-cm's Job health check (None where
        it holds none)."""
        api = _client(self.kubeconfig, context=self.context)
        applications = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            self.namespace,
            "applications",
            label_selector=APPLICATIONS,
            _request_timeout=self.timeout,
        )
        settings = client.CoreV1Api(api).read_namespaced_config_map(
            "argocd-cm", self.namespace, _request_timeout=self.timeout
        )
        # The custom-objects API hands back the body as it came: a proxy's page, say.
        items = applications.get("items") if isinstance(applications, dict) else None
        if not isinstance(items, list):
            raise TypeError("no list of Applications")
        check = ((settings.data or {}) if settings is not None else {}).get(JOB_HEALTH_CHECK)
        return items, check if isinstance(check, str) else None


def _blocked(application: Any) -> tuple[str, datetime | None] | None:
    """Why Argo CD cannot sync an Application at all, by its conditions: it
    cannot reach the spoke's cluster, or find it registered, or build the
    directory; and since when, where the condition says. None where nothing
    stops it."""
    conditions = _map(_map(application).get("status")).get("conditions")
    for condition in conditions if isinstance(conditions, list) else []:
        condition = _map(condition)
        kind, message = condition.get("type"), condition.get("message")
        if isinstance(kind, str) and kind in BLOCKING:
            why = f"{kind}: {one_line(message)}" if isinstance(message, str) else kind
            return why, _time(condition.get("lastTransitionTime"))
    return None


def _undeliverable(state: SpokeState, why: str, since: datetime | None) -> SpokeState:
    """A spoke whose Application Argo CD cannot sync: no new work goes there,
    since none would reach it, as for a spoke that is down."""
    log.warning(
        "spoke %s takes no new work: Argo CD cannot sync its Application: %s", state.name, why
    )
    reason = _cut(f"Argo CD cannot sync its Application: {why}", MOST_REASON)
    return state.down(reason, since=since)


def _unread(states: dict[str, SpokeState], why: str) -> dict[str, SpokeState]:
    log.warning("Argo CD's Applications could not be read: %s", why)
    metrics.ARGOCD_UP.set(0)
    return states


class _Seen(NamedTuple):
    """What an Application says of Caspian's Jobs on its spoke."""

    jobs: dict[str, str]  # phases by namespace/name
    podless: dict[str, datetime]  # since when each has made no pod
    unready: dict[str, datetime]  # since when each has had pods, none ready
    unapplied: dict[str, datetime]  # since when Argo CD has failed to apply each
    said: dict[str, str]  # why it failed, in the words of the spoke's API


def _application_jobs(application: Any, *, checked: bool) -> tuple[str | None, _Seen, bool]:
    """The spoke an Application syncs, what it says of its Jobs, and whether
    it holds their health (Argo CD may keep it out: then only its syncs say
    anything)."""
    nothing = _Seen({}, {}, {}, {}, {})
    if not isinstance(application, dict):
        return None, nothing, True
    metadata, status = _map(application.get("metadata")), _map(application.get("status"))
    spoke = _map(metadata.get("labels")).get(SPOKE_LABEL)
    if not isinstance(spoke, str):
        return None, nothing, True
    unapplied, said = _sync_failures(status)
    if status.get("resourceHealthSource") == "appTree":
        log.warning(
            "Argo CD keeps the health of %s's resources out of its Application: set "
            'controller.resource.health.persist: "true" in argocd-cmd-params-cm',
            metadata.get("name"),
        )
        return spoke, _Seen({}, {}, {}, unapplied, said), False
    jobs, podless, unready, failed = _job_health(status.get("resources"), checked=checked)
    return spoke, _Seen(jobs, podless, unready, unapplied, failed | said), True


def _job_health(
    resources: Any, *, checked: bool
) -> tuple[dict[str, str], dict[str, datetime], dict[str, datetime], dict[str, str]]:
    """The phases of the Jobs an Application lists, by their health; since
    when each that has made no pod has not, and each whose pods wait has had
    none ready; and why each failed Job failed, as its health's message. A Job
    that has not begun (by the check's message) is not running yet; one that
    has made no pod since it was resumed is `podless`, and one whose pods wait
    `unready`, as the kube observer would find them."""
    jobs: dict[str, str] = {}
    podless: dict[str, datetime] = {}
    unready: dict[str, datetime] = {}
    failed: dict[str, str] = {}
    for resource in resources if isinstance(resources, list) else []:
        key = _job_key(resource)
        if key is None:
            continue
        health = _map(resource.get("health"))
        word, message = health.get("status"), health.get("message")
        phase = HEALTH_PHASES.get(word) if isinstance(word, str) else None
        message = message if isinstance(message, str) else ""
        if phase == "Running" and checked and NOT_BEGUN.match(message):
            if (since := _since(PODLESS_SINCE, message)) is not None:
                podless[key] = since
            elif (since := _since(UNREADY_SINCE, message)) is not None:
                unready[key] = since
        elif phase and (checked or phase == "Failed"):
            jobs[key] = phase
            if phase == "Failed" and message.strip():
                failed[key] = one_line(message)
    return jobs, dict(sorted(podless.items())), dict(sorted(unready.items())), failed


def _sync_failures(status: dict) -> tuple[dict[str, datetime], dict[str, str]]:
    """The Jobs the Application's last sync failed to apply and that are out of
    sync still, since when, and what the spoke's API answered: an admission
    webhook that refuses the Job (a policy engine checks a Job's pod template
    as it would a pod's), a quota on the count of Jobs. Such a Job never
    reaches its spoke, and the kube observer cannot tell it from one Argo CD
    has yet to sync."""
    operation = status.get("operationState")
    if not isinstance(operation, dict) or not isinstance(operation.get("syncResult"), dict):
        return {}, {}
    when = _time(operation.get("finishedAt")) or _time(operation.get("startedAt"))
    results = operation["syncResult"].get("resources")
    if when is None or not isinstance(results, list):
        return {}, {}
    listed = status.get("resources")
    out_of_sync = {
        _job_key(resource)
        for resource in (listed if isinstance(listed, list) else [])
        if isinstance(resource, dict) and resource.get("status") != "Synced"
    }
    since: dict[str, datetime] = {}
    said: dict[str, str] = {}
    for result in results:
        key = _job_key(result)
        if key is None or key not in out_of_sync or result.get("status") != "SyncFailed":
            continue
        since[key] = when
        message = result.get("message")
        if isinstance(message, str) and message.strip():
            said[key] = one_line(message)
    return dict(sorted(since.items())), said


def _map(value: Any) -> dict:
    """A field of the custom-objects API's answer, which no schema checked."""
    return value if isinstance(value, dict) else {}


def _job_key(resource: Any) -> str | None:
    """namespace/name of a Job an Application lists; None for anything else."""
    if not isinstance(resource, dict):
        return None
    if (resource.get("group"), resource.get("kind")) != ("batch", "Job"):
        return None
    namespace, name = resource.get("namespace"), resource.get("name")
    if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name):
        return None
    return f"{namespace}/{name}"


def _since(pattern: re.Pattern[str], message: str) -> datetime | None:
    found = pattern.match(message)
    return _time(found.group(1)) if found else None


def _time(text: Any) -> datetime | None:
    """An RFC 3339 time as Argo CD writes it (UTC, "Z")."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # a time no clock shows
        return None
    return moment if moment.tzinfo is not None else None


class PagingError(Exception):
    """A paged list that does not end."""


class KubeconfigError(Exception):
    """The kubeconfig could not be read (not its contexts: ConfigException says those)."""


def _client(kubeconfig: str | None, *, context: str | None) -> client.ApiClient:
    settings = client.Configuration()
    # urllib3 would try a read that timed out three more times: a spoke that
    # hangs then held the loop for four timeouts. One retry is for a dropped
    # connection only.
    settings.retries = Retry(total=1, read=0)
    if context == IN_CLUSTER:
        # The pod's own service account, as Caspian runs on the hub (deploy/).
        config.load_incluster_config(client_configuration=settings)
        return client.ApiClient(configuration=settings)
    try:
        return config.new_client_from_config(
            config_file=kubeconfig,
            context=context,
            persist_config=False,
            client_configuration=settings,
        )
    except yaml.YAMLError as error:
        # Not the parser's own words: they quote the line, which can hold a token.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(f"the kubeconfig is not valid YAML{where}") from None
    except (TypeError, AttributeError, KeyError, ValueError):
        # The client's loader indexes into whatever the file holds.
        raise KubeconfigError(
            "the kubeconfig is not shaped like one (lists of clusters, contexts, users)"
        ) from None


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
        if pod.spec is not None and pod.spec.node_name:
            continue
        for condition in (pod.status.conditions or []) if pod.status is not None else []:
            moment = condition.last_transition_time
            if (condition.type, condition.status, condition.reason) == (
                "PodScheduled",
                "False",
                "Unschedulable",
            ) and isinstance(moment, datetime):
                since[key] = min(since.get(key, moment), moment)
    return dict(sorted(since.items()))


def scheduler_messages(pods: list[Any], waiting: Mapping[str, datetime]) -> dict[str, str]:
    """The scheduler's latest word on a pod of each of the `waiting` Jobs it
    finds no node for ("0/3 nodes are available: 3 Insufficient cpu.")."""
    found: dict[str, tuple[datetime, str]] = {}
    for pod in pods:
        key = owning_job(pod)
        if key not in waiting or pod.status is None:
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
    text = " ".join(message.split())
    text = re.sub(r"(?<=://)[^/\s@]+@", "", text)
    text = re.sub(r"(://[^\s?\"']*)\?[^\s\"']*", r"\1?...", text)
    return _cut(text, MOST_SAID)


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


def _job_events(key: str) -> tuple[str, str]:
    """The namespace and field selector of a Job's FailedCreate events."""
    namespace, _, name = key.partition("/")
    return namespace, f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate"


def _pod_events(pod: Any) -> tuple[str, str]:
    """The namespace and field selector of a pod's warnings."""
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod.metadata.name},type=Warning"
    return pod.metadata.namespace, selector


def unstarted(jobs: list[Any], pods: list[Any]) -> dict[str, list[Any]]:
    """Caspian's Jobs that have run no pod and started no container, with their
    pods on a node, oldest on its node first, by namespace/name: why those wait
    is read from their containers (`cannot_start`) or their events
    (`failed_start`). Pods still finding a node are `unscheduled`'s."""
    begun = started(jobs, pods)
    found: dict[str, list[Any]] = {}
    for pod in pods:
        key = owning_job(pod)
        if key is None or key in begun or _on_node_since(pod) is None:
            continue
        found.setdefault(key, []).append(pod)
    return {key: sorted(found[key], key=_on_node_since) for key in sorted(found)}


def started(jobs: list[Any], pods: list[Any]) -> set[str]:
    """Caspian's Jobs that have begun: a container of theirs has run, or they
    have run a pod to its end, or have one ready."""
    ready = {job_key(job) for job in jobs if job.status is not None and (job.status.ready or 0)}
    return _ran(jobs) | ready | {owning_job(pod) for pod in pods if _started(pod)} - {None}


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


def _on_node_since(pod: Any) -> datetime | None:
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
            said = _waiting_words(pod)
            if said is not None:
                found[key] = (_on_node_since(pod), said)
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


def job_phase(status: Any) -> str:
    """A Job's status as Caspian's lifecycle: Succeeded, Failed or Running."""
    for condition in (status.conditions or []) if status is not None else []:
        if condition.status == "True" and condition.type == "Complete":
            return "Succeeded"
        if condition.status == "True" and condition.type == "Failed":
            return "Failed"
    return "Running"


def _version(api: client.ApiClient) -> kubeversions.Version | None:
    """The spoke's Kubernetes version, from its /version (which any client may
    read); None where that does not answer as one, and its file's
    kubernetesVersion, if any, holds."""
    try:
        info = client.VersionApi(api).get_code()
    except (ApiException, ValueError, TypeError):
        return None
    return kubeversions.served(getattr(info, "major", None), getattr(info, "minor", None))


def _cut(text: str, most: int) -> str:
    """`text` at most `most` characters long, "..." ending one cut short."""
    return text if len(text) <= most else text[: most - 3] + "..."


def _reason(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, MaxRetryError):
        if isinstance(error.reason, ReadTimeoutError):
            return f"no answer in time from {(error.url or '').split('?')[0]}"
        error = error.reason or error
    text = " ".join(str(error).split())  # a client's error may run over lines
    return _cut(text, MOST_REASON)
