"""What each spoke really has free, and how Caspian's Jobs there are doing, from
its API server (`KubeObserver`), or how they are doing from the hub's Argo CD
Applications (`ArgoCDObserver`; several at once, `ArgoCDs`; each spoke's own,
through the spoke's kubeContext, `SpokesArgoCDs`): the only module that
imports `kubernetes`.

Free capacity = allocatable of nodes that are Ready, schedulable and carry no
NoSchedule/NoExecute taint Caspian's Jobs would not tolerate, minus the requests
of running or pending pods placed on those nodes that Caspian does not own (its
own Jobs are already in the plan), node by node: the nodes are reported with
their taints and what is free on each, for the pools of `reconciler/pools.py`.
A spoke whose API does not answer in time is reported down: it gets no new
work, and its running Jobs keep their place. It also reports what jobs need
from it: the names of the claims, ConfigMaps, Secrets, ServiceAccounts and
classes they name (their names only: never a Secret's data), the ResourceQuotas
and LimitRanges of their namespaces, and the Pod Security Standard those
enforce; and which of Caspian's Jobs there cannot run: their pods find no node,
are not made, or cannot start, with the spoke's word.

This module asks; what the answers say is read by `reconciler/kubeobjects.py`
(a spoke's own objects) and `reconciler/applications.py` (Argo CD's
Applications), which need neither the client nor a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from reconciler import (
    applications,
    companions,
    jobspec,
    kubeobjects,
    kubeversions,
    metrics,
    syncwindows,
)
from reconciler.decisions import GRANTED_APART, SpokeState, granting, plural, unlisted
from reconciler.fleet import Fleet, Spoke, printable
from reconciler.observing import declared
from reconciler.rendering import MANAGED_BY

log = logging.getLogger("caspian.kube")
T = TypeVar("T")

MAX_PARALLEL = 16
# The timeout bounds each wait for a byte, not an answer: a server or proxy that
# sends a byte every few seconds held the loop for as long as it went on. A
# spoke's lists must all come within this, or it is down (`Cutoff`); pages of
# 500 keep a large cluster's well inside it.
WHOLE_ANSWER_S = 60.0
# How long past that a read may take to end once its connections are shut,
# and what may hold one beyond it.
GRACE_S = 5.0
HELD = "a credential plugin of the kubeconfig that waits for a login, say"
# Lists come in pages, as kubectl asks for them: each page is one call within the
# timeout, where a large cluster's pods in one answer could take longer.
PAGE = 500
MOST_PAGES = 1000  # half a million objects; past that, an answer going round
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
# One list of events to ask for: the key of the Job it is about, the list's
# namespace and field selector, and what to make of the events.
EventAsk = tuple[str, str, str, Callable[[list[Any]], str | None]]
MOST_REASON = 160  # characters of why a spoke is down
# Where only names are wanted, the API server is asked for each object's
# metadata alone (a PartialObjectMetadataList): a Secret's data never leaves
# its cluster, and ConfigMaps of a megabyte each cost little to list. A server
# or proxy that does not serve that form answers with the whole objects.
NAMES_ONLY = {
    "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
}
# The kinds asked for so, besides Namespaces (whose labels are read): the
# client's models of the others require fields besides metadata (a
# RuntimeClass its handler), and a cluster holds few of them, so they are
# listed whole.
BY_NAME = frozenset({"PersistentVolumeClaim", "ConfigMap", "Secret", "ServiceAccount"})


class Answers(NamedTuple):
    """What one spoke's API answered (`KubeObserver._ask`), as the client's objects."""

    nodes: list[Any]
    version: kubeversions.Version | None  # the API's, else the spoke file's
    pods: list[Any]  # not ended
    jobs: list[Any]  # Caspian's
    failed_pods: list[Any]  # Caspian's, where some job may run again
    objects: dict[str, frozenset[str]]  # names of what jobs need, by "Kind namespace"
    quotas: dict[str, list[Any]]  # ResourceQuotas by namespace
    ranges: dict[str, list[Any]]  # LimitRanges by namespace
    spaces: list[Any]  # the Namespaces, as metadata


class KubeObserver:
    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        timeout_s: float = 5.0,
        whole_answer_s: float = WHOLE_ANSWER_S,
        tolerated_taints: Iterable[str] = ("nvidia.com/gpu",),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.timeout = timeout_s
        self.whole_answer = whole_answer_s
        self.clock = clock
        self.tolerated = set(tolerated_taints)
        # Reads of a spoke that had not ended when their observation gave up on
        # them: none is begun again for that spoke until it ends.
        self._stuck: dict[str, _Reading[SpokeState]] = {}

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
        read = partial(self._spoke, wanted=wanted, namespaces=namespaces, exits=exits)
        states = self._all_spokes(fleet.spokes, read)
        asked = {spoke.name for spoke in fleet.spokes if spoke.spec.kube_context}
        metrics.keep_only(metrics.SPOKE_UP, "spoke", asked)
        return {spoke.name: states[spoke.name] for spoke in fleet.spokes}

    def _all_spokes(
        self, spokes: Iterable[Spoke], read: Callable[[Spoke], SpokeState]
    ) -> dict[str, SpokeState]:
        """Each spoke read in a thread of its own, MAX_PARALLEL at a time, each
        waited for until its whole answer's time and a little more from when it
        began: a spoke queued behind slow reads has its own time. What holds a
        read past that and past the cut of its connections (a kubeconfig's
        credential plugin waiting for a login: the client runs it with no
        timeout) leaves the spoke down, and the read running: a daemon thread,
        which the process does not wait for, which no later observation starts
        again while it runs, and which keeps its slot in this one."""
        states: dict[str, SpokeState] = {}
        queued: list[Spoke] = []
        for spoke in spokes:
            stuck = self._stuck.pop(spoke.name, None)
            if stuck is not None and (why := stuck.still()) is not None:
                self._stuck[spoke.name] = stuck
                states[spoke.name] = self._down(spoke, why)
            else:
                queued.append(spoke)
        held = _held(self.whole_answer)
        changed = threading.Event()  # set as each read ends
        running: dict[str, tuple[Spoke, _Reading[SpokeState]]] = {}
        holding: list[_Reading[SpokeState]] = []  # given up on here, still in their slots
        while queued or running:
            changed.clear()
            holding = [reading for reading in holding if not reading.ended.is_set()]
            while queued and len(running) + len(holding) < MAX_PARALLEL:
                spoke = queued.pop(0)
                reading = _Reading(
                    partial(read, spoke),
                    name=f"spoke-{spoke.name}",
                    now=self.clock(),
                    changed=changed,
                )
                running[spoke.name] = (spoke, reading)
            if not running:  # every slot held by a read that has not ended
                for spoke in queued:
                    states[spoke.name] = self._down(
                        spoke,
                        f"its read was not begun: reads of other spokes that had not ended in "
                        f"{held:g} s ({HELD}) held every slot",
                    )
                break
            done = [n for n, (_, r) in running.items() if r.ended.is_set() or r.age() >= held]
            if not done:  # wait for the next read to end, or the oldest's time to be up
                changed.wait(max(0.0, held - max(r.age() for _, r in running.values())))
                continue
            for name in done:
                spoke, reading = running.pop(name)
                if reading.ended.is_set():
                    states[name] = reading.result()
                else:
                    self._stuck[name] = reading
                    holding.append(reading)
                    states[name] = self._down(
                        spoke, f"its read has not ended in {held:g} s ({HELD})"
                    )
        return states

    def _spoke(
        self, spoke: Spoke, *, wanted: list[str], namespaces: list[str], exits: bool
    ) -> SpokeState:
        context = spoke.spec.kube_context
        if not context:  # no cluster to ask: trust the declaration
            return declared(spoke)
        with Cutoff(self.whole_answer) as cutoff:
            state = self._read_spoke(
                spoke, cutoff, wanted=wanted, namespaces=namespaces, exits=exits
            )
            if cutoff.fired and state.up:  # what was read before it is not the whole answer
                return self._down(spoke, cutoff.reason)
        return state

    def _read_spoke(
        self,
        spoke: Spoke,
        cutoff: Cutoff,
        *,
        wanted: list[str],
        namespaces: list[str],
        exits: bool,
    ) -> SpokeState:
        unread: list[str] = []  # what Caspian may not list there
        try:
            api = _client(self.kubeconfig, context=spoke.spec.kube_context)
            cutoff.watch(api)
            answers = self._ask(
                api, spoke, wanted=wanted, namespaces=namespaces, exits=exits, unread=unread
            )
        except (*UNANSWERED, PagingError) as error:
            return self._down(spoke, cutoff.reason if cutoff.fired else _reason(error))
        except NotAList as error:
            return self._down(spoke, f"its API's answer to the {error} is not a Kubernetes list")
        try:
            state = self._state(
                client.CoreV1Api(api), spoke, answers, namespaces=namespaces, unread=unread
            )
        except ValidationError as error:  # an object without a field Caspian's models need
            fields = ", ".join(sorted({".".join(map(str, e["loc"])) for e in error.errors()}))
            return self._down(
                spoke, f"its API answered a {error.title} Caspian cannot read: {fields}"
            )
        except ValueError as error:  # a quantity that does not parse
            return self._down(spoke, f"its API answered an object Caspian cannot read: {error}")
        except (TypeError, AttributeError):
            # An object without its metadata, say: no capacity read from such an
            # answer can be trusted.
            return self._down(spoke, "its API answered an object without a field Caspian reads")
        metrics.SPOKE_UP.labels(spoke=spoke.name).set(1)
        return state

    def _ask(
        self,
        api: client.ApiClient,
        spoke: Spoke,
        *,
        wanted: list[str],
        namespaces: list[str],
        exits: bool,
        unread: list[str],
    ) -> Answers:
        """Every list Caspian reads of one spoke. The client's models refuse a
        body that is no Kubernetes list (a proxy's error page, an empty answer),
        and their message quotes the body: `NotAList` names the list instead."""
        asking = "node list"
        try:
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            nodes = self._all(core.list_node)
            version = _version(api, timeout=self.timeout) or spoke.spec.kubernetes_version
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
                    label_selector=kubeobjects.OWNED_POD_LABEL,
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
                        what=plural(kind),
                        spoke=spoke,
                        unread=unread,
                    )
                    if items is not None:
                        listed[kind][namespace] = items
            asking = "Namespace list"
            spaces = (
                self._listed(
                    core.list_namespace,
                    "",
                    what="Namespaces",
                    spoke=spoke,
                    unread=unread,
                    headers=NAMES_ONLY,  # their labels are all that is read
                )
                if namespaces
                else []
            )
        except (ValueError, TypeError, RecursionError):  # nested past Python's JSON reader too
            raise NotAList(asking) from None
        return Answers(
            nodes=nodes,
            version=version,
            pods=pods,
            jobs=jobs,
            failed_pods=failed_pods,
            objects=objects,
            quotas=listed["ResourceQuota"],
            ranges=listed["LimitRange"],
            spaces=spaces or [],
        )

    def _state(
        self,
        core: client.CoreV1Api,
        spoke: Spoke,
        answers: Answers,
        *,
        namespaces: list[str],
        unread: list[str],
    ) -> SpokeState:
        """What one spoke's answers say: its room node by node, how Caspian's
        Jobs there are doing (with the events of those that cannot start,
        asked here), and what jobs need from it."""
        nodes, pods, jobs = answers.nodes, answers.pods, answers.jobs
        tolerated = self.tolerated | set(spoke.spec.tolerated_taints)
        shapes = kubeobjects.usable_nodes(nodes, pods, tolerated=tolerated)
        where = kubeobjects.placed_on(pods)
        waiting = kubeobjects.unscheduled(jobs, pods, placed=where)
        refused = kubeobjects.podless(jobs, pods)
        stranded = kubeobjects.nodeless(jobs, pods)
        said = kubeobjects.scheduler_messages(pods, {**stranded, **waiting})
        # Pods on a node that have not begun, oldest first, by Job.
        on_nodes = kubeobjects.unstarted(jobs, pods)
        not_starting, words = self._not_starting(
            core, on_nodes, refused=list(refused), spoke=spoke, unread=unread
        )
        said.update(words)
        said.update(kubeobjects.failures(jobs))
        # A Job runs once a container of it has started, or it has run a pod:
        # until then (its pods find no node, are refused, pull their image or
        # cannot start) it is not running yet, though no condition of its
        # status says so.
        begun = kubeobjects.started(jobs, pods)
        quotas = answers.quotas
        room = [node.free for node in shapes if node.free is not None]
        return SpokeState(
            name=spoke.name,
            cpu=sum(free.cpu for free in room),
            memory_bytes=sum(free.memory_bytes for free in room),
            gpu=sum(free.gpu for free in room),
            source=f"kube:{spoke.spec.kube_context}",
            jobs={
                key: phase
                for key, phase in (
                    (kubeobjects.job_key(job), kubeobjects.job_phase(job.status)) for job in jobs
                )
                if phase != "Running" or key in begun
            },
            listed=frozenset(kubeobjects.job_key(job) for job in jobs),
            suspended=kubeobjects.suspended(jobs),
            suspended_at={
                kubeobjects.job_key(job): moment
                for job in jobs
                if (moment := kubeobjects.job_suspended(job))
            },
            ended={
                kubeobjects.job_key(job): moment
                for job in jobs
                if (moment := kubeobjects.job_ended(job.status))
            },
            started={
                kubeobjects.job_key(job): moment
                for job in jobs
                if (moment := kubeobjects.job_started(job.status))
            },
            nodes=shapes,
            placed_on=where,
            unscheduled=waiting,
            nodeless=stranded,
            podless=refused,
            not_starting=dict(sorted(not_starting.items())),
            unready={
                key: since
                for key, there in on_nodes.items()
                if (since := kubeobjects.on_node_since(there[0])) is not None
            },
            said=said,
            exit_codes=kubeobjects.exit_codes(answers.failed_pods),
            unread=tuple(unread),
            objects=answers.objects,
            quotas=_each_namespace(quotas, kubeobjects.quota_limits),
            quota_needs=_each_namespace(quotas, kubeobjects.quota_needs),
            quota_pods=_each_namespace(quotas, kubeobjects.quota_pods),
            scoped_quotas=_each_namespace(quotas, kubeobjects.scoped_quotas),
            limit_ranges=_each_namespace(answers.ranges, kubeobjects.limit_range_items),
            pod_security=kubeobjects.enforced_levels(answers.spaces, wanted=namespaces),
            kubernetes_version=answers.version,
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
        stuck = kubeobjects.cannot_start(on_nodes)
        longest = sorted(
            (pods_there[0].status.start_time, key)
            for key, pods_there in on_nodes.items()
            if key not in stuck
        )
        saying = partial(kubeobjects.failed_start, now=self.clock())
        asks: list[EventAsk] = [
            (key, *kubeobjects.job_events(key), kubeobjects.latest_message)
            for key in refused[:MOST_EVENT_LISTS]
        ]
        asks += [
            (key, *kubeobjects.pod_events(on_nodes[key][0]), saying)
            for _, key in longest[:MOST_EVENT_LISTS]
        ]
        heard = self._event_words(core, asks, spoke=spoke, unread=unread)
        not_starting = {key: since for key, (since, _) in stuck.items()}
        for key in on_nodes.keys() & heard.keys():
            not_starting[key] = on_nodes[key][0].status.start_time
        return not_starting, {**{key: words for key, (_, words) in stuck.items()}, **heard}

    def _event_words(
        self,
        core: client.CoreV1Api,
        asks: list[EventAsk],
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
                RecursionError,
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
        lists: dict[str, Callable[..., Any]] = {
            "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
            "ConfigMap": core.list_namespaced_config_map,
            "Secret": core.list_namespaced_secret,
            "ServiceAccount": core.list_namespaced_service_account,
            "PriorityClass": client.SchedulingV1Api(api).list_priority_class,
            "RuntimeClass": client.NodeV1Api(api).list_runtime_class,
        }
        items = self._listed(
            lists[kind],
            namespace,
            what=plural(kind),
            spoke=spoke,
            unread=unread,
            headers=NAMES_ONLY if kind in BY_NAME else None,
        )
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
        headers: Mapping[str, str] | None = None,
    ) -> list[Any] | None:
        """Every item of a list Caspian may lack the right to (an older
        deploy/spoke-rbac.yaml, or Secrets not granted): None then, noted in
        `unread`, and jobs are not checked against it."""
        try:
            return self._all(
                list_call, headers=headers, **({"namespace": namespace} if namespace else {})
            )
        except ApiException as error:
            if error.status not in (401, 403):
                raise
            log.log(
                # Not granted by choice is no cause for a warning.
                logging.INFO if what in GRANTED_APART else logging.WARNING,
                "spoke %s: may not list %s%s (HTTP %s), so jobs are not checked against them "
                "there; %s grants it",
                spoke.name,
                what,
                f" in {namespace}" if namespace else "",
                error.status,
                granting(what),
            )
            unread.append(unlisted(what, namespace))
            return None

    def _all(
        self,
        list_call: Callable[..., Any],
        *,
        headers: Mapping[str, str] | None = None,
        **query: str,
    ) -> list[Any]:
        """Every item of a list. A continue token that expired (410) starts the
        list again, once: pages of two snapshots could count a pod twice."""
        try:
            return self._pages(list_call, headers=headers, **query)
        except ApiException as error:
            if error.status != 410:
                raise
            return self._pages(list_call, headers=headers, **query)

    def _pages(
        self,
        list_call: Callable[..., Any],
        *,
        headers: Mapping[str, str] | None = None,
        **query: str,
    ) -> list[Any]:
        items: list[Any] = []
        token, seen = None, set()
        # The client sends its own Accept header unless given one.
        asked = {"_headers": dict(headers)} if headers else {}
        for _ in range(MOST_PAGES):
            page = list_call(
                limit=PAGE, _continue=token, _request_timeout=self.timeout, **asked, **query
            )
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
            # One line: it goes into a commit message's list of spokes that are down.
            reason=kubeobjects.cut(printable(" ".join(reason.split())), MOST_REASON),
        )


IN_CLUSTER = "in-cluster"  # a context name that means the pod's service account
# Argo CD's Applications for the spokes, as argocd/applicationset.yaml labels them.
APPLICATIONS = "app.kubernetes.io/part-of=caspian"


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
        whole_answer_s: float = WHOLE_ANSWER_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self.timeout = timeout_s
        self.whole_answer = whole_answer_s
        self.clock = clock
        # A read that had not ended when its observation gave up on it (see
        # KubeObserver._all_spokes): none is begun again until it ends.
        self._stuck: _Reading[_Hub] | None = None

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        return merged(fleet, [self.report(fleet)])

    def report(self, fleet: Fleet) -> ArgoCDReport:
        """What this Argo CD says of the spokes it holds Applications for."""
        states = {spoke.name: declared(spoke) for spoke in fleet.spokes}
        if self._stuck is not None and (why := self._stuck.still()) is not None:
            return self._unread(states, why)
        with Cutoff(self.whole_answer) as cutoff:
            reading = _Reading(partial(self._read, cutoff), name="argocd", now=self.clock())
            held = _held(self.whole_answer)
            if not reading.within(held):
                self._stuck = reading
                return self._unread(states, f"its read has not ended in {held:g} s ({HELD})")
            try:
                items, check, projects = reading.result()
            except UNANSWERED as error:
                why = cutoff.reason if cutoff.fired else _reason(error)
                return self._unread(states, why)
            except (ValueError, TypeError, RecursionError):
                return self._unread(states, "the answer is no Kubernetes list")
        checked = check is not None
        if check is None:
            log.warning(
                "argocd-cm has no %s: a resumed Job reads Healthy there while it runs, so only "
                "failures are read; apply argocd/job-health.yaml",
                applications.JOB_HEALTH_CHECK,
            )
        elif (version := applications.check_version(check)) < 2:
            log.warning(
                "argocd-cm's %s is older than this Caspian's: a Job reads running from when it "
                "is resumed, and one whose pods are refused is not requeued; re-apply "
                "argocd/job-health.yaml",
                applications.JOB_HEALTH_CHECK,
            )
        elif version < 3:
            log.warning(
                "argocd-cm's %s is older than this Caspian's: when a Job began and ended is "
                "not read, so a run counts from its planned start to the reconcile that saw it "
                "end; re-apply argocd/job-health.yaml",
                applications.JOB_HEALTH_CHECK,
            )
        trusted = checked
        syncable: dict[str, bool] = {}
        unreadable: set[str] = set()  # sync windows: once, not once an Application
        wrapped = companions.owners(fleet.jobs)
        for application in items:
            spoke, seen, health = applications.application_jobs(
                application, checked=checked, companions=wrapped
            )
            if not health:
                log.warning(
                    "Argo CD keeps the health of %s's resources out of its Application: set "
                    'controller.resource.health.persist: "true" in argocd-cmd-params-cm',
                    application["metadata"].get("name"),
                )
            trusted = trusted and health
            if spoke not in states:
                continue
            if any(seen) or seen.listed is not None:
                states[spoke] = states[spoke].model_copy(
                    update={**seen._asdict(), "source": f"declared+{self._reader}"}
                )
            windows, unread = syncwindows.applying(
                projects.get(syncwindows.project_of(application) or ""), application
            )
            unreadable.update(unread)
            states[spoke] = states[spoke].model_copy(update={"sync_windows": windows})
            blocked = applications.blocked(application)
            syncable[spoke] = blocked is None
            if blocked is not None:
                states[spoke] = _undeliverable(states[spoke], *blocked)
            else:
                for warning in applications.loose_ends(application, spoke=spoke):
                    log.warning("%s", warning)
        for problem in sorted(unreadable):
            log.warning("%s", problem)
        return ArgoCDReport(states=states, syncable=syncable, trusted=trusted, where=self._where)

    def _unread(self, states: dict[str, SpokeState], why: str) -> ArgoCDReport:
        log.warning("Argo CD's Applications in %s could not be read: %s", self._where, why)
        return ArgoCDReport(states=states, syncable=None, trusted=False, where=self._where)

    @property
    def _reader(self) -> str:
        """How a spoke's source names this Argo CD: by the context it is read
        through, where one is named, so that `caspian spokes` says which of
        several held the spoke's Application."""
        return f"argocd:{self.context}" if self.context else "argocd"

    @property
    def _where(self) -> str:
        """Its namespace, and the context it is read through where one is named."""
        return f"{self.namespace} (context {self.context})" if self.context else self.namespace

    def _read(self, cutoff: Cutoff) -> _Hub:
        """Caspian's Applications, argocd-cm's Job health check (None where
        it holds none), and the AppProjects by name."""
        api = _client(self.kubeconfig, context=self.context)
        cutoff.watch(api)
        listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
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
        items = listed.get("items") if isinstance(listed, dict) else None
        if not isinstance(items, list):
            raise TypeError("no list of Applications")
        check = ((settings.data or {}) if settings is not None else {}).get(
            applications.JOB_HEALTH_CHECK
        )
        return _Hub(items, check if isinstance(check, str) else None, self._projects(api))

    def _projects(self, api: client.ApiClient) -> dict[str, Any]:
        """The AppProjects by name, for their sync windows; none where the hub
        does not let Caspian list them (a Role from before it did)."""
        try:
            listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
                "argoproj.io",
                "v1alpha1",
                self.namespace,
                "appprojects",
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            if error.status not in (401, 403, 404):
                raise
            log.warning(
                "cannot list the hub's AppProjects (%s), so their sync windows are not "
                "known: apply deploy/hub-argocd/rbac.yaml again",
                _reason(error),
            )
            return {}
        items = listed.get("items") if isinstance(listed, dict) else None
        if not isinstance(items, list):
            raise TypeError("no list of AppProjects")
        named = ((syncwindows.name_of(item), item) for item in items)
        return {name: item for name, item in named if name is not None}


class _Hub(NamedTuple):
    """What the hub's Argo CD holds for Caspian (ArgoCDObserver._read)."""

    applications: list[Any]
    job_health: str | None
    projects: dict[str, Any]


def _undeliverable(state: SpokeState, why: str, since: datetime | None) -> SpokeState:
    """A spoke whose Application Argo CD cannot sync, or does not by itself:
    no new work goes there, since none would reach it in time, as for a spoke
    that is down."""
    log.warning("spoke %s takes no new work: %s", state.name, why)
    return state.down(kubeobjects.cut(why, MOST_REASON), since=since)


class ArgoCDReport(NamedTuple):
    """What one Argo CD says of the spokes (ArgoCDObserver.report)."""

    # Each spoke: as its Application says where this Argo CD holds one, else
    # as declared.
    states: dict[str, SpokeState]
    # Whether Argo CD can sync each spoke it holds an Application for; None
    # where it could not be read.
    syncable: dict[str, bool] | None
    trusted: bool  # its Job health can be read (caspian_argocd_up)
    where: str  # its namespace, and context, for a warning


class ArgoCDs:
    """Several Argo CDs, each read as ArgoCDObserver reads one, at once: each
    spoke's own, where each runs one, or a hub's beside them. Each spoke is
    as the Argo CD that holds its Application says."""

    def __init__(self, observers: Sequence[ArgoCDObserver]) -> None:
        self.observers = tuple(observers)

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        return merged(fleet, _reports(self.observers, fleet))


class SpokesArgoCDs:
    """Each spoke's own Argo CD, read through the spoke's kubeContext, all at
    once as ArgoCDs reads them, and any `others` given (a hub's, say) after
    them. The contexts follow the spoke files, so a spoke added to the fleet
    is read from the next reconcile on. A spoke without a kubeContext has no
    Argo CD of its own to read here: unless `others` are given, which may hold
    its Application, it is not taken for one nothing syncs."""

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        namespace: str = "argocd",
        others: Sequence[ArgoCDObserver] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.others = tuple(others)
        # Kept between reconciles: each remembers a read of its own that has not ended.
        self._own: dict[str, ArgoCDObserver] = {}

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        asked = {spoke.name: c for spoke in fleet.spokes if (c := spoke.spec.kube_context)}
        self._own = {
            context: self._own.get(context)
            or ArgoCDObserver(kubeconfig=self.kubeconfig, context=context, namespace=self.namespace)
            for context in dict.fromkeys(asked.values())
        }
        observers = [*self._own.values(), *self.others]
        if not observers:
            log.warning(
                "no spoke has a kubeContext, so no spoke's own Argo CD is read: give one in "
                "its spoke file, or a hub's Argo CD with --argocd-context"
            )
            metrics.record_argocd(trusted=False)  # asked for, and none can be read
            return {spoke.name: declared(spoke) for spoke in fleet.spokes}
        reports = _reports(observers, fleet)
        heard = dict(zip(observers, reports, strict=True))
        hubs = [heard[observer] for observer in self.others]
        # A spoke's own Argo CD syncs into its own cluster (in-cluster, as
        # argocd/spoke-application.template.yaml does), so its Application is
        # looked for there and in a hub named besides, not in another spoke's:
        # one spoke down, its Argo CD unread with it, holds back no other.
        holders = {
            spoke.name: [heard[self._own[asked[spoke.name]]], *hubs]
            if spoke.name in asked
            else hubs
            for spoke in fleet.spokes
        }
        return merged(fleet, reports, holders=holders)


def _reports(observers: Sequence[ArgoCDObserver], fleet: Fleet) -> list[ArgoCDReport]:
    """What each of `observers` says, read at once: a reconcile waits for
    the slowest, not for them all one after another."""
    with ThreadPoolExecutor(max_workers=len(observers)) as pool:
        return list(pool.map(lambda observer: observer.report(fleet), observers))


def merged(
    fleet: Fleet,
    reports: Sequence[ArgoCDReport],
    *,
    holders: Mapping[str, Sequence[ArgoCDReport]] | None = None,
) -> dict[str, SpokeState]:
    """The spokes as the Argo CDs of `reports` say, each by the first that
    holds its Application; and the gauges of what they say. A spoke none holds
    is one nothing syncs, where one at least holds Caspian's Applications and
    each that may hold the spoke's (`holders`, by spoke: None, every one of
    `reports`; a spoke it leaves out, none) was read."""
    states = {spoke.name: declared(spoke) for spoke in fleet.spokes}
    syncable: dict[str, bool] = {}
    for report in reports:
        for spoke, ok in (report.syncable or {}).items():
            if spoke in syncable:
                log.warning(
                    "two Argo CDs hold an Application for spoke %s: that in %s is not read",
                    spoke,
                    report.where,
                )
                continue
            states[spoke], syncable[spoke] = report.states[spoke], ok
    read = all(report.syncable is not None for report in reports)
    if syncable:
        # Argo CD holds Caspian's Applications, and none for these spokes:
        # nothing syncs their directories, so none of their Jobs is there.
        # (Where an Argo CD that may hold theirs was not read, it may.)
        for spoke in states.keys() - syncable.keys():
            looked = reports if holders is None else holders.get(spoke, ())
            if not looked or any(report.syncable is None for report in looked):
                continue
            states[spoke] = states[spoke].model_copy(
                update={"listed": frozenset(), "no_application": True}
            )
    elif read:
        log.warning(
            "no Application labelled %s in %s syncs a spoke of the fleet, so no Job status "
            "is read: apply argocd/applicationset.yaml, whose Applications carry that label "
            "and caspian.dev/spoke",
            APPLICATIONS,
            " or ".join(report.where for report in reports),
        )
    for spoke, ok in syncable.items():
        metrics.ARGOCD_SYNCABLE.labels(spoke=spoke).set(1 if ok else 0)
    if read:  # else a spoke's may be in the Argo CD not read
        metrics.keep_only(metrics.ARGOCD_SYNCABLE, "spoke", set(syncable))
    metrics.record_argocd(trusted=read and all(report.trusted for report in reports))
    return states


class _Reading(Generic[T]):
    """One read, begun now in a daemon thread: the process does not wait for it
    to end. `changed`, if given, is set when it ends."""

    def __init__(
        self,
        read: Callable[[], T],
        *,
        name: str,
        now: datetime,
        changed: threading.Event | None = None,
    ) -> None:
        self.began = now
        self.ended = threading.Event()
        self._begun = time.monotonic()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._changed = changed
        threading.Thread(target=self._run, args=(read,), name=name, daemon=True).start()

    def _run(self, read: Callable[[], T]) -> None:
        try:
            self._value = read()
        except BaseException as error:  # raised where the reading is waited for
            self._error = error
        finally:
            self.ended.set()
            if self._changed is not None:
                self._changed.set()

    def age(self) -> float:
        """Seconds since it began."""
        return time.monotonic() - self._begun

    def within(self, seconds: float) -> bool:
        """Whether it ends within `seconds`."""
        return self.ended.wait(max(0.0, seconds))

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        assert self._value is not None  # ended without an error
        return self._value

    def still(self) -> str | None:
        """Why no read is begun again while this one runs; None once it has ended."""
        if self.ended.is_set():
            return None
        return (
            f"its read begun at {self.began.strftime('%Y-%m-%dT%H:%M:%SZ')} has not ended ({HELD})"
        )


def _held(whole_answer: float) -> float:
    """How long a read is waited for: its whole answer's time, and the grace
    after the cut of its connections."""
    return whole_answer + min(GRACE_S, whole_answer)


class Cutoff:
    """The time a whole answer has: past it, every connection opened through the
    clients it watches is shut, so a read blocked on a server that sends a byte
    now and then ends at once, and none is opened after. Sockets are shut, not
    closed: closing one under a thread that reads it leaves the read waiting."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._timer = threading.Timer(seconds, self.fire)
        self._timer.daemon = True

    @property
    def reason(self) -> str:
        return f"its API did not answer whole within {self.seconds:g} s"

    def __enter__(self) -> Cutoff:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            opened = list(self._open)
        for sock in opened:
            # The plain socket's shutdown, even for a TLS one: TLS's own would
            # write its goodbye over a connection another thread is reading. One
            # closed already, or handed over to TLS, has nothing to shut.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def watch(self, api: client.ApiClient) -> None:
        """Have `api`'s connections opened through this cutoff. The client's
        urllib3 pool manager makes one pool per server from these classes."""
        manager = api.rest_client.pool_manager
        manager.pool_classes_by_scheme = {
            scheme: self._pool(pool) for scheme, pool in manager.pool_classes_by_scheme.items()
        }

    def _pool(self, pool: type[Any]) -> type[Any]:
        base, cutoff = pool.ConnectionCls, self

        def new_conn(connection: Any) -> Any:  # the plain socket, before any TLS
            return cutoff._opened(base._new_conn(connection))

        def connect(connection: Any) -> None:  # the socket reads go through
            base.connect(connection)
            cutoff._opened(connection.sock)

        watched = type(base.__name__, (base,), {"_new_conn": new_conn, "connect": connect})
        return type(pool.__name__, (pool,), {"ConnectionCls": watched})

    def _opened(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if not self.fired:
                self._open.add(sock)
                return sock
        sock.close()
        raise CutOffError(self.reason)


class CutOffError(OSError):
    """A connection asked for after its `Cutoff` fired."""


class PagingError(Exception):
    """A paged list that does not end."""


class NotAList(Exception):
    """An answer that is no Kubernetes list; the exception's text names the list."""


class KubeconfigError(Exception):
    """The kubeconfig could not be read (not its contexts: ConfigException says those)."""


# How asking an API server fails, short of an answer that cannot be read.
UNANSWERED = (ApiException, HTTPError, OSError, config.ConfigException, KubeconfigError)


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
    except config.ConfigException as error:
        if "No configuration found" not in str(error):
            raise
        # The client's words name no file: which one was read is the fix.
        raise KubeconfigError(_no_configuration(kubeconfig)) from None


def _no_configuration(kubeconfig: str | None) -> str:
    """The client finds no configuration only where none of the paths it reads
    is a file (an empty one has words of its own): they are named here."""
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return f"no kubeconfig at {where}: give --kubeconfig, or set KUBECONFIG"


def _each_namespace(
    lists: Mapping[str, list[Any]], read: Callable[[list[Any]], T | None]
) -> dict[str, T]:
    """What `read` finds in each namespace's list, where it finds anything: a
    quota of 0 pods is something, no items is not."""
    found = {namespace: read(items) for namespace, items in lists.items()}
    return {
        namespace: value
        for namespace, value in found.items()
        if value is not None and value not in ((), frozenset())
    }


def _version(api: client.ApiClient, *, timeout: float) -> kubeversions.Version | None:
    """The spoke's Kubernetes version, from its /version (which any client may
    read); None where that does not answer as one, and its file's
    kubernetesVersion, if any, holds."""
    try:
        # Without a timeout of its own the call waited for as long as the server did.
        info = client.VersionApi(api).get_code(_request_timeout=timeout)
    except (ApiException, ValueError, TypeError, RecursionError):
        return None
    return kubeversions.served(getattr(info, "major", None), getattr(info, "minor", None))


def _reason(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    if isinstance(error, MaxRetryError):
        if isinstance(error.reason, ReadTimeoutError):
            return f"no answer in time from {(error.url or '').split('?')[0]}"
        error = error.reason or error
    text = " ".join(str(error).split())  # a client's error may run over lines
    return kubeobjects.cut(text, MOST_REASON)
