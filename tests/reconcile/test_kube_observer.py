"""The observer, through the real `kubernetes` client, against a local server that
answers the API paths it calls with real-shaped objects and failures."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from reconciler import kube
from reconciler.admission import LimitRangeItem, QuotaScope, ScopedQuota
from reconciler.appwrappers import RETRY_LIMIT
from reconciler.kube import KubeObserver
from reconciler.pods import Resources
from tests.fakehttp import Reply, serve
from tests.fleet.helpers import appwrapper_doc, fleet_with

GI = 2**30


def node(name, *, cpu="16", memory="64Gi", gpu=None, ready=True, cordoned=False, taint=None):
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpu:
        allocatable["nvidia.com/gpu"] = gpu
    spec = {"unschedulable": True} if cordoned else {}
    if taint:
        spec["taints"] = [{"key": taint, "effect": "NoSchedule"}]
    return {
        "metadata": {"name": name, "labels": {"pool": name}},
        "spec": spec,
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(name, node_name, phase, *, cpu="2", memory="4Gi", gpu=None, ours=False, init_cpu=None):
    requests = {"cpu": cpu, "memory": memory}
    limits = {"nvidia.com/gpu": gpu} if gpu else None
    spec = {
        "nodeName": node_name,
        "containers": [
            {"name": "c", "image": "x", "resources": {"requests": requests, "limits": limits}}
        ],
    }
    if init_cpu:
        spec["initContainers"] = [
            {"name": "i", "image": "x", "resources": {"requests": {"cpu": init_cpu}}}
        ]
    labels = {"caspian.dev/appwrapper": name} if ours else {"app": name}
    if ours:  # as the Job controller labels its pods
        labels["batch.kubernetes.io/job-name"] = f"{name}-0a1b2c3d"
    return {
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
        "status": {"phase": phase},
    }


def job(name, *, condition=None, namespace="batch", ready=True):
    """One of Caspian's Jobs: finished with `condition`, else with a pod active
    (and ready, unless not `ready`: its pods still wait)."""
    status = {"active": 0 if condition else 1, "ready": 1 if ready and not condition else 0}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True"}]
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "caspian"},
        },
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
        "status": status,
    }


def listing(kind, items):
    return {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}


def kubeconfig(tmp_path: Path, urls: dict[str, str]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": u}} for n, u in urls.items()],
        "users": [{"name": "caspian", "user": {"token": "kube-token-not-for-logs"}}],
        "contexts": [
            {"name": f"kind-{n}", "context": {"cluster": n, "user": "caspian"}} for n in urls
        ],
        "current-context": f"kind-{next(iter(urls))}",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def no_namespaced_objects(api) -> None:
    """Every namespace's lists (its ResourceQuotas, ...) empty, as an API server
    answers for a namespace that has none."""
    api.route("/api/v1/namespaces/", Reply(body=listing("List", [])))
    api.route("/api/v1/namespaces", Reply(body=listing("NamespaceList", [])))


def healthy(api) -> None:
    no_namespaced_objects(api)
    api.route(
        "/api/v1/nodes",
        Reply(
            body=listing(
                "NodeList",
                [
                    node("ready-1", cpu="16", memory="64Gi"),
                    node("ready-gpu", cpu="32", memory="128Gi", gpu="4", taint="nvidia.com/gpu"),
                    node("not-ready", ready=False),
                    node("cordoned", cordoned=True),
                    node("tainted", taint="dedicated"),
                ],
            )
        ),
    )
    api.route(
        "/api/v1/pods",
        Reply(
            body=listing(
                "PodList",
                [
                    pod("web", "ready-1", "Running", cpu="2", memory="4Gi"),
                    pod(
                        "starting",
                        "ready-gpu",
                        "Pending",
                        cpu="4",
                        memory="8Gi",
                        gpu="1",
                        init_cpu="6",
                    ),
                    pod("elsewhere", "cordoned", "Running", cpu="8"),
                    pod("unscheduled", None, "Pending", cpu="8"),
                    pod("ours", "ready-1", "Running", cpu="4", ours=True),
                    pod("done", "ready-1", "Succeeded", cpu="4"),
                    pod("lost", "ready-1", "Unknown", cpu="1"),
                ],
            )
        ),
    )
    api.route(
        "/apis/batch/v1/jobs",
        Reply(
            body=listing(
                "JobList",
                [
                    job("train-1a2b3c4d"),
                    job("etl-5e6f7a8b", condition="Complete"),
                    job("broken-0c1d2e3f", condition="Failed"),
                ],
            )
        ),
    )


def observe(tmp_path, urls, *, tolerated=(), fleet=None, **kwargs):
    fleet = fleet or fleet_with()
    context = {"paris": "kind-paris"}
    spokes = tuple(
        s.model_copy(
            update={
                "spec": s.spec.model_copy(
                    update={"kube_context": context.get(s.name), "tolerated_taints": tolerated}
                )
            }
        )
        for s in fleet.spokes
    )
    fleet = fleet.model_copy(update={"spokes": spokes})
    return KubeObserver(kubeconfig=kubeconfig(tmp_path, urls), **kwargs).observe(fleet)


def test_free_capacity_counts_usable_nodes_minus_pods_caspian_does_not_own(tmp_path) -> None:
    with serve() as api:
        healthy(api)
        state = observe(tmp_path, {"paris": api.url})["paris"]
        pods_asked = api.requests_to("/api/v1/pods")[0]
        jobs_asked = api.requests_to("/apis/batch/v1/jobs")[0]
    # ready-1 and ready-gpu only; minus web (2), starting (max(4, init 6)) and lost (1)
    assert state.up and state.source == "kube:kind-paris"
    assert state.cpu == 16 + 32 - 2 - 6 - 1
    assert state.memory_bytes == (64 + 128 - 4 - 8 - 4) * GI
    assert state.gpu == 4 - 1
    # What one pod could get on one node, and must tolerate there: the two usable
    # nodes, in the API's order.
    assert [
        (n.allocatable.cpu, n.allocatable.memory_bytes / GI, n.allocatable.gpu, n.labels)
        for n in state.nodes
    ] == [(16, 64, 0, {"pool": "ready-1"}), (32, 128, 4, {"pool": "ready-gpu"})]
    assert [[t.describe() for t in n.taints] for n in state.nodes] == [
        [],
        ["nvidia.com/gpu:NoSchedule"],
    ]
    assert [n.name for n in state.nodes] == ["ready-1", "ready-gpu"]
    # Where Caspian's own Jobs run, which takes nothing from the free room.
    assert state.placed_on == {"default/ours-0a1b2c3d": ("ready-1",)}
    # And what is free on each: ready-1 less web and lost, ready-gpu less starting.
    assert [(n.free.cpu, n.free.memory_bytes / GI, n.free.gpu) for n in state.nodes] == [
        (13, 56, 0),
        (26, 120, 3),
    ]
    assert state.jobs == {
        "batch/train-1a2b3c4d": "Running",
        "batch/etl-5e6f7a8b": "Succeeded",
        "batch/broken-0c1d2e3f": "Failed",
    }
    assert pods_asked.query["fieldSelector"] == ["status.phase!=Succeeded,status.phase!=Failed"]
    assert jobs_asked.query["labelSelector"] == ["app.kubernetes.io/managed-by=caspian"]
    assert pods_asked.headers["authorization"] == "Bearer kube-token-not-for-logs"


def test_a_failed_job_says_why_by_its_failed_condition(tmp_path) -> None:
    failed = job("broken-0c1d2e3f", condition="Failed")
    failed["status"]["conditions"][0] |= {
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the\n specified backoff limit",
    }
    quiet = job("silent-1a2b3c4d", condition="Failed")
    with serve() as api:
        healthy(api)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [failed, quiet])))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.jobs == {"batch/broken-0c1d2e3f": "Failed", "batch/silent-1a2b3c4d": "Failed"}
    assert state.said == {
        "batch/broken-0c1d2e3f": "BackoffLimitExceeded: Job has reached the specified backoff limit"
    }


def test_a_finished_job_says_when_it_ended(tmp_path) -> None:
    done = job("done-1a2b3c4d", condition="Complete")
    done["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-22T02:10:00Z"
    # Without a time on its condition, its completionTime says it.
    older = job("older-1a2b3c4d", condition="Complete")
    older["status"]["completionTime"] = "2026-11-22T01:50:00Z"
    failed = job("failed-1a2b3c4d", condition="Failed")
    failed["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-22T02:05:00Z"
    jobs = [done, older, failed, job("running-1a2b3c4d")]
    with serve() as api:
        healthy(api)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.ended == {
        "batch/done-1a2b3c4d": datetime(2026, 11, 22, 2, 10, tzinfo=UTC),
        "batch/older-1a2b3c4d": datetime(2026, 11, 22, 1, 50, tzinfo=UTC),
        "batch/failed-1a2b3c4d": datetime(2026, 11, 22, 2, 5, tzinfo=UTC),
    }


def test_a_job_says_when_it_began(tmp_path) -> None:
    # Its startTime, which Kubernetes sets again when a suspended Job is
    # resumed; a Job still suspended has none.
    began = job("began-1a2b3c4d", condition="Complete")
    began["status"]["startTime"] = "2026-11-22T01:05:00Z"
    runs = job("runs-1a2b3c4d")
    runs["status"]["startTime"] = "2026-11-22T02:00:00+01:00"
    jobs = [began, runs, job("waits-1a2b3c4d")]
    with serve() as api:
        healthy(api)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.started == {
        "batch/began-1a2b3c4d": datetime(2026, 11, 22, 1, 5, tzinfo=UTC),
        "batch/runs-1a2b3c4d": datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
    }


def test_the_exit_codes_of_failed_pods_are_read_where_an_appwrapper_asks(tmp_path) -> None:
    def ended(name, *codes, ours=True):
        """A failed pod whose containers exited with `codes`."""
        failed = pod(name, "ready-1", "Failed", ours=ours)
        failed["status"]["containerStatuses"] = [
            {
                "name": f"c{i}",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": code}},
            }
            for i, code in enumerate(codes)
        ]
        return failed

    waiting = ended("waits", 0)
    waiting["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "x"}}
    failed = [ended("broken", 3, 0, 137), ended("broken", 1), ended("clean", 0), waiting]
    failed.append(ended("theirs", 2, ours=False))

    def failed_only(seen):
        return seen.query.get("fieldSelector") == ["status.phase=Failed"]

    def pods(seen):
        return Reply(body=listing("PodList", failed if failed_only(seen) else []))

    doc = appwrapper_doc("trainer", annotations={RETRY_LIMIT: "1"})
    with serve() as api:
        healthy(api)
        api.routes["/api/v1/pods"] = pods
        fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
        state = observe(tmp_path, {"paris": api.url}, fleet=fleet)["paris"]
        asked = [seen for seen in api.requests_to("/api/v1/pods") if failed_only(seen)]
        # No job may run again: failed pods go unasked.
        plain = observe(tmp_path, {"paris": api.url})["paris"]
        unasked = [seen for seen in api.requests_to("/api/v1/pods") if failed_only(seen)]
        # The policy's retryLimit lets every job run again.
        policy = fleet_with().policy
        spec = policy.spec.model_copy(update={"retry_limit": 2})
        retrying = fleet_with().model_copy(
            update={"policy": policy.model_copy(update={"spec": spec})}
        )
        by_policy = observe(tmp_path, {"paris": api.url}, fleet=retrying)["paris"]
    assert state.up and state.exit_codes == {"default/broken-0a1b2c3d": (1, 3, 137)}
    assert [seen.query["labelSelector"] for seen in asked] == [["caspian.dev/appwrapper"]]
    assert plain.up and plain.exit_codes == {} and unasked == asked
    assert by_policy.exit_codes == state.exit_codes


def test_sidecars_overhead_and_pod_level_requests_of_other_pods_are_taken(tmp_path) -> None:
    meshed = pod("meshed", "ready-1", "Running", cpu="2", memory="1Gi")
    meshed["spec"]["initContainers"] = [
        {
            "name": "mesh",
            "image": "x",
            "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "1"}},
        },
        {"name": "setup", "image": "x", "resources": {"requests": {"cpu": "4"}}},
    ]
    meshed["spec"]["overhead"] = {"cpu": "250m", "memory": "128Mi"}
    sized = pod("sized", "ready-1", "Running", cpu="1", memory="1Gi")
    sized["spec"]["resources"] = {"requests": {"cpu": "6", "memory": "3Gi"}}
    with serve() as api:
        no_namespaced_objects(api)
        api.route("/api/v1/nodes", Reply(body=listing("NodeList", [node("ready-1", cpu="16")])))
        api.route("/api/v1/pods", Reply(body=listing("PodList", [meshed, sized])))
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [])))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    # meshed: max(2 + sidecar 1, sidecar 1 + setup 4) + 0.25; sized: its pod-level 6
    assert state.cpu == 16 - 5.25 - 6
    assert state.memory_bytes == 64 * GI - (1 + 1 / 8) * GI - 3 * GI


def test_a_spoke_file_can_count_nodes_with_taints_its_jobs_tolerate(tmp_path) -> None:
    with serve() as api:
        healthy(api)
        state = observe(tmp_path, {"paris": api.url}, tolerated=("dedicated",))["paris"]
    # the node tainted "dedicated" (16 cpu, 64Gi) counts now, beside the two
    assert state.cpu == 16 + 32 + 16 - 2 - 6 - 1
    assert len(state.nodes) == 3


def test_one_job_name_in_two_namespaces_is_two_jobs(tmp_path) -> None:
    # An AppWrapper copied to another team's namespace renders a Job of the same
    # name there. Keyed by name alone, one's Succeeded ended the other, still
    # running: its room freed and, after retention, its file pruned.
    twins = [
        job("etl-5e6f7a8b", condition="Complete"),
        job("etl-5e6f7a8b", namespace="media"),
    ]
    with serve() as api:
        healthy(api)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", twins)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.jobs == {"batch/etl-5e6f7a8b": "Succeeded", "media/etl-5e6f7a8b": "Running"}


def paged(kind, items, *, size, expire_once=False, stuck=False):
    """A list route that answers `size` items a page, with continue tokens as the
    API server gives them; `expire_once`: the first continued call gets 410."""
    expired = []

    def answer(seen):
        token = seen.query.get("continue", [""])[0]
        start = int(token) if token else 0
        if token and expire_once and not expired:
            expired.append(token)
            return Reply(status=410, body={"kind": "Status", "code": 410, "reason": "Expired"})
        end = start + size
        body = listing(kind, items[start:end])
        if end < len(items):
            body["metadata"]["continue"] = "1" if stuck else str(end)
        return Reply(body=body)

    return answer


def test_lists_are_read_page_by_page_to_the_end(tmp_path) -> None:
    nodes = [node(f"n-{i}", cpu="1", memory="1Gi") for i in range(7)]
    others = [pod(f"p-{i}", f"n-{i % 7}", "Running", cpu="100m", memory="1Mi") for i in range(12)]
    with serve() as api:
        no_namespaced_objects(api)
        api.routes["/api/v1/nodes"] = paged("NodeList", nodes, size=3)
        api.routes["/api/v1/pods"] = paged("PodList", others, size=5, expire_once=True)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [job("train-1a2b3c4d")])))
        state = observe(tmp_path, {"paris": api.url})["paris"]
        node_calls = api.requests_to("/api/v1/nodes")
        pod_calls = api.requests_to("/api/v1/pods")
    assert state.up, state.reason
    assert len(state.nodes) == 7
    assert state.cpu == pytest.approx(7 - 12 * 0.1)
    assert [c.query.get("continue") for c in node_calls] == [None, ["3"], ["6"]]
    assert all(c.query["limit"] == ["500"] for c in node_calls)
    # The expired token starts the list again: pages of one snapshot only.
    assert [c.query.get("continue") for c in pod_calls] == [None, ["5"], None, ["5"], ["10"]]
    assert all(c.query["fieldSelector"] for c in pod_calls)


def test_a_list_whose_pages_never_end_marks_the_spoke_down(tmp_path) -> None:
    nodes = [node(f"n-{i}") for i in range(5)]
    with serve() as api:
        api.routes["/api/v1/nodes"] = paged("NodeList", nodes, size=2, stuck=True)
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert not state.up
    assert state.reason == "its API gave the same continue token twice"


def test_spokes_without_a_context_keep_their_declared_capacity(tmp_path) -> None:
    with serve() as api:
        healthy(api)
        states = observe(tmp_path, {"paris": api.url})
    assert states["frankfurt"].source == "declared" and states["frankfurt"].cpu == 64


@pytest.mark.parametrize("status", [403, 500])
def test_an_api_error_marks_the_spoke_down(tmp_path, status) -> None:
    with serve() as api:
        api.route("/api/", Reply(status=status, body={"kind": "Status", "code": status}))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert not state.up and state.cpu == 0
    assert state.reason.startswith(f"HTTP {status}")
    assert "kube-token-not-for-logs" not in state.reason


@pytest.mark.parametrize(
    ("path", "reply", "reason"),
    [
        (
            "/api/v1/nodes",
            Reply(body=b"<html>502 Bad Gateway</html>", headers={"Content-Type": "text/html"}),
            "its API's answer to the node list is not a Kubernetes list",
        ),
        ("/api/v1/nodes", Reply(body=b""), "its API's answer to the node list is not"),
        (
            "/api/v1/pods",
            Reply(body={"kind": "PodList", "items": None}),
            "its API's answer to the pod list is not",
        ),
        (
            "/apis/batch/v1/jobs",
            Reply(body=listing("JobList", [{"status": {}}])),
            "its API answered an object without a field Caspian reads",
        ),
        (
            "/api/v1/nodes",
            Reply(body=listing("NodeList", [node("ready-1", cpu="lots")])),
            "its API answered an object Caspian cannot read: 'lots' is not a Kubernetes quantity",
        ),
        (
            "/api/v1/nodes",
            Reply(body=listing("NodeList", [{**node("ready-1"), "metadata": {}}])),
            "its API answered a Node Caspian cannot read: name",
        ),
        (  # past what Python's JSON reader recurses into: it crashed the reconcile
            "/api/v1/nodes",
            Reply(body=b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
            "its API's answer to the node list is not a Kubernetes list",
        ),
    ],
)
def test_an_answer_that_is_not_kubernetes_marks_the_spoke_down_not_the_loop(
    tmp_path, path, reply, reason
) -> None:
    with serve() as api:
        healthy(api)
        api.route(path, reply)
        states = observe(tmp_path, {"paris": api.url})
    assert not states["paris"].up and states["paris"].cpu == 0
    assert states["paris"].reason.startswith(reason)
    assert states["frankfurt"].up  # the other spokes are read as ever


def test_a_server_that_never_answers_is_down_within_the_timeout(tmp_path) -> None:
    with serve() as api:
        api.route("/api/", Reply(body={}, delay=5.0))
        started = time.monotonic()
        state = observe(tmp_path, {"paris": api.url}, timeout_s=0.3)["paris"]
        took = time.monotonic() - started
        # Asked once: urllib3's own retries made a hung spoke cost four timeouts.
        asked = len(api.requests_to("/api/v1/nodes"))
    assert not state.up and took < 4.0 and asked == 1
    assert state.reason == "no answer in time from /api/v1/nodes"


def test_a_list_that_comes_a_byte_at_a_time_is_cut_off_and_its_spoke_is_down(tmp_path) -> None:
    # Each byte within the 0.3 s timeout; the 91 bytes in 9 s, which the timeout
    # alone let hold the loop.
    with serve() as api:
        healthy(api)
        api.route("/api/v1/nodes", Reply(body=listing("NodeList", []), drip=0.1))
        started = time.monotonic()
        states = observe(tmp_path, {"paris": api.url}, timeout_s=0.3, whole_answer_s=1.0)
        took = time.monotonic() - started
        time.sleep(0.2)  # were the spoke's thread still going, it would ask on
        asked_after = api.requests_to("/api/v1/pods")
    assert not states["paris"].up and states["paris"].cpu == 0
    assert states["paris"].reason == "its API did not answer whole within 1 s"
    assert took < 3.0 and asked_after == []
    assert states["frankfurt"].up


def test_a_slow_answer_that_comes_whole_in_time_is_read(tmp_path) -> None:
    with serve() as api:
        healthy(api)
        api.route("/api/v1/nodes", Reply(body=listing("NodeList", [node("n")]), drip=0.002))
        state = observe(tmp_path, {"paris": api.url}, timeout_s=0.3, whole_answer_s=10.0)["paris"]
    assert state.up and [n.allocatable.cpu for n in state.nodes] == [16]


def test_a_version_that_never_comes_is_a_timeout_not_a_wait_without_end(tmp_path) -> None:
    with serve() as api:
        healthy(api)
        api.route("/version", Reply(body={"major": "1", "minor": "30"}, delay=6.0))
        started = time.monotonic()
        state = observe(tmp_path, {"paris": api.url}, timeout_s=0.3)["paris"]
        took = time.monotonic() - started
    assert not state.up and state.reason == "no answer in time from /version/"
    assert took < 3.0


def waiting_plugin(tmp_path: Path, url: str, *, cluster: str = "paris") -> tuple[Path, Path]:
    """A kubeconfig whose user's credential plugin waits 4 s, as one waiting
    for a login would, and the file it notes each of its runs in."""
    runs = tmp_path / "runs"
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": "sh"}
    plugin["args"] = ["-c", f"echo run >> {runs}; sleep 4"]
    plugin["interactiveMode"] = "Never"
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": cluster, "cluster": {"server": url}}],
                "users": [{"name": "sso", "user": {"exec": plugin}}],
                "contexts": [
                    {"name": f"kind-{cluster}", "context": {"cluster": cluster, "user": "sso"}}
                ],
            }
        )
    )
    return config, runs


def test_a_read_held_by_a_credential_plugin_leaves_the_spoke_down_and_runs_once(tmp_path) -> None:
    # The client runs a kubeconfig's exec plugin with no timeout: one waiting for
    # a login held the reconcile for as long as it waited.
    with serve() as api:
        healthy(api)
        config, runs = waiting_plugin(tmp_path, api.url)
        fleet = fleet_with()
        contexts = {"paris": "kind-paris"}
        spokes = tuple(
            s.model_copy(
                update={"spec": s.spec.model_copy(update={"kube_context": contexts.get(s.name)})}
            )
            for s in fleet.spokes
        )
        fleet = fleet.model_copy(update={"spokes": spokes})
        now = [datetime(2026, 12, 5, 10, 0, tzinfo=UTC)]
        observer = KubeObserver(kubeconfig=str(config), whole_answer_s=0.5, clock=lambda: now[0])
        started = time.monotonic()
        first = observer.observe(fleet)
        now[0] += timedelta(minutes=1)
        second = observer.observe(fleet)  # the first read still waits on the plugin
        took = time.monotonic() - started
        ran = runs.read_text().count("run")
    assert took < 3.0 and ran == 1
    assert first["paris"].reason == (
        "its read has not ended in 1 s (a credential plugin of the kubeconfig that waits for a "
        "login, say)"
    )
    assert second["paris"].reason.startswith("its read begun at 2026-12-05T10:00:00Z has not ended")
    assert first["frankfurt"].up and second["frankfurt"].up


def every_spoke_asked(fleet):
    spokes = tuple(
        s.model_copy(update={"spec": s.spec.model_copy(update={"kube_context": f"kind-{s.name}"})})
        for s in fleet.spokes
    )
    return fleet.model_copy(update={"spokes": spokes})


def test_hung_spokes_are_waited_for_together_not_one_after_another(tmp_path) -> None:
    fleet = every_spoke_asked(fleet_with())
    with serve() as api:
        api.route("/api/", Reply(body={}, delay=5.0))
        config = kubeconfig(tmp_path, {s.name: api.url for s in fleet.spokes})
        started = time.monotonic()
        states = KubeObserver(kubeconfig=config, timeout_s=1.0).observe(fleet)
        took = time.monotonic() - started
    assert sorted(states) == ["california", "frankfurt", "paris"]
    assert not any(state.up for state in states.values())
    assert took < 2.5  # three timeouts of 1 s at once; one after another took 3 s and more


def test_a_spoke_queued_behind_slow_reads_has_its_whole_time_from_when_its_read_begins(
    tmp_path, monkeypatch
) -> None:
    # One read at a time, each about 1.3 s, and no grace past the cut: the third
    # begins about 2.6 s in. Timed from the observation's start, its time was up
    # before it began, and it was reported as a read that never ended.
    monkeypatch.setattr(kube, "MAX_PARALLEL", 1)
    monkeypatch.setattr(kube, "GRACE_S", 0.0)
    fleet = every_spoke_asked(fleet_with())
    with serve() as api:
        healthy(api)
        api.route("/api/v1/nodes", Reply(body=listing("NodeList", [node("n")]), delay=0.8))
        config = kubeconfig(tmp_path, {s.name: api.url for s in fleet.spokes})
        observer = KubeObserver(kubeconfig=config, timeout_s=1.0, whole_answer_s=2.0)
        started = time.monotonic()
        states = observer.observe(fleet)
        took = time.monotonic() - started
        asked = len(api.requests_to("/api/v1/nodes"))
    assert {name: state.reason for name, state in states.items() if not state.up} == {}
    assert took > 2.0 and asked == 3  # longer than one read's time: they did queue


def test_spokes_queued_behind_reads_that_never_end_are_down_at_once_and_read_next_time(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(kube, "MAX_PARALLEL", 1)
    fleet = every_spoke_asked(fleet_with())
    assert fleet.spokes[0].name == "california"  # the first read begun
    with serve() as api:
        healthy(api)
        config, runs = waiting_plugin(tmp_path, api.url, cluster="california")
        doc = yaml.safe_load(config.read_text())
        doc["users"].append({"name": "caspian", "user": {"token": "kube-token-not-for-logs"}})
        for name in ("frankfurt", "paris"):
            doc["clusters"].append({"name": name, "cluster": {"server": api.url}})
            doc["contexts"].append(
                {"name": f"kind-{name}", "context": {"cluster": name, "user": "caspian"}}
            )
        config.write_text(yaml.safe_dump(doc))
        now = [datetime(2026, 12, 5, 10, 0, tzinfo=UTC)]
        observer = KubeObserver(kubeconfig=str(config), whole_answer_s=0.5, clock=lambda: now[0])
        started = time.monotonic()
        first = observer.observe(fleet)
        now[0] += timedelta(minutes=1)
        second = observer.observe(fleet)  # the plugin still waits, in the slot it had
        took = time.monotonic() - started
        ran = runs.read_text().count("run")
    assert took < 3.0 and ran == 1
    assert first["california"].reason.startswith("its read has not ended in 1 s")
    for name in ("frankfurt", "paris"):
        assert first[name].reason == (
            "its read was not begun: reads of other spokes that had not ended in 1 s (a "
            "credential plugin of the kubeconfig that waits for a login, say) held every slot"
        )
        assert second[name].up  # the read left running holds no slot of a later observation
    assert second["california"].reason.startswith("its read begun at 2026-12-05T10:00:00Z")


def test_an_unknown_context_is_a_down_spoke_not_a_crash(tmp_path) -> None:
    state = observe(tmp_path, {"lyon": "http://127.0.0.1:9"})["paris"]
    assert not state.up and "kind-paris" in state.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # The parser's own message would quote this line, token and all.
        (
            "users: [{name: u, user: {token: kube-token-not-for-logs}}]\n bad: [\n",
            "the kubeconfig is not valid YAML at line 2",
        ),
        ("[1]\n", "the kubeconfig is not shaped like one"),
        ("apiVersion: v1\nkind: Config\ncontexts: 5\n", "the kubeconfig is not shaped like one"),
    ],
)
def test_a_garbled_kubeconfig_is_a_down_spoke_not_a_crash(tmp_path, caplog, text, reason) -> None:
    path = tmp_path / "garbled"
    path.write_text(text)
    fleet = fleet_with()
    paris = next(s for s in fleet.spokes if s.name == "paris")
    state = KubeObserver(kubeconfig=str(path)).observe(
        fleet.model_copy(update={"spokes": (paris,)})
    )["paris"]
    assert not state.up and state.reason.startswith(reason), state.reason
    assert "kube-token-not-for-logs" not in state.reason + caplog.text


def test_a_missing_kubeconfig_is_named_with_the_fix(tmp_path, monkeypatch) -> None:
    fleet = fleet_with()
    paris = next(s for s in fleet.spokes if s.name == "paris")
    alone = fleet.model_copy(update={"spokes": (paris,)})
    missing = tmp_path / "missing"
    state = KubeObserver(kubeconfig=str(missing)).observe(alone)["paris"]
    assert not state.up
    assert state.reason == f"no kubeconfig at {missing}: give --kubeconfig, or set KUBECONFIG"
    # From the environment, as kubectl reads it.
    monkeypatch.setenv("KUBECONFIG", str(missing))
    state = KubeObserver(kubeconfig=None).observe(alone)["paris"]
    assert state.reason == f"no kubeconfig at {missing}: give --kubeconfig, or set KUBECONFIG"


def test_a_spoke_that_left_the_fleet_leaves_the_up_gauge(tmp_path) -> None:
    up = lambda spoke: REGISTRY.get_sample_value("caspian_spoke_up", {"spoke": spoke})  # noqa: E731
    with serve() as api:
        api.route("/api/", Reply(status=503, body={"kind": "Status", "code": 503}))
        observe(tmp_path, {"paris": api.url})
    assert up("paris") == 0  # down, and alerting
    fleet = fleet_with()
    without_paris = fleet.model_copy(
        update={"spokes": tuple(s for s in fleet.spokes if s.name != "paris")}
    )
    KubeObserver(kubeconfig=kubeconfig(tmp_path, {"lyon": "http://127.0.0.1:9"})).observe(
        without_paris
    )
    assert up("paris") is None  # gone, not down for ever


def test_the_objects_jobs_need_are_listed_in_their_namespaces_only(tmp_path, caplog) -> None:
    doc = appwrapper_doc("trainer")
    pod_spec = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod_spec["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "checkpoints"}},
        {"name": "settings", "configMap": {"name": "trainer"}},
    ]
    pod_spec["priorityClassName"] = "batch-low"
    pod_spec["serviceAccountName"] = "trainer"
    pod_spec["containers"][0]["envFrom"] = [{"secretRef": {"name": "hf-token"}}]
    fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
    claims = [{"metadata": {"name": n, "namespace": "batch"}} for n in ("checkpoints", "other")]
    # As the API server answers a request for metadata alone: no data, ever.
    secrets = {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "7"},
        "items": [
            {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": {"name": "hf-token", "namespace": "batch"},
            }
        ],
    }
    classes = [{"metadata": {"name": "batch-low"}, "value": 10}]
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
    caplog.set_level(logging.WARNING)
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/namespaces/batch/persistentvolumeclaims",
            Reply(body=listing("PersistentVolumeClaimList", claims)),
        )
        api.route("/api/v1/namespaces/batch/configmaps", Reply(status=403, body=forbidden))
        api.route("/api/v1/namespaces/batch/secrets", Reply(body=secrets))
        api.route(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            Reply(body=listing("PriorityClassList", classes)),
        )
        api.route(
            "/api/v1/namespaces/batch/serviceaccounts",
            Reply(body=listing("ServiceAccountList", [{"metadata": {"name": "default"}}])),
        )
        state = observe(tmp_path, {"paris": api.url}, fleet=fleet)["paris"]
        asked = {s.path for s in api.seen if "/namespaces/" in s.path or "classes" in s.path}
        accepts = {s.path: s.headers.get("accept") for s in api.seen}
    asked -= {
        f"/api/v1/namespaces/{ns}/{kind}"
        for ns in ("batch", "media")
        for kind in ("resourcequotas", "limitranges")
    }
    assert asked == {
        "/api/v1/namespaces/batch/persistentvolumeclaims",
        "/api/v1/namespaces/batch/configmaps",
        "/api/v1/namespaces/batch/secrets",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        "/api/v1/namespaces/batch/serviceaccounts",
    }
    # Names are all Caspian reads of a namespace's objects, so it asks for no more.
    names_only = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    by_name = {path for path in asked if "/namespaces/" in path}
    assert len(by_name) == 4
    assert all(accepts[path].startswith(names_only) for path in by_name)
    # A cluster's classes come whole: the client's RuntimeClass needs its handler.
    assert not accepts["/apis/scheduling.k8s.io/v1/priorityclasses"].startswith(names_only)
    assert not accepts["/api/v1/nodes"].startswith(names_only)
    # Not allowed to list ConfigMaps: those are not known, and the spoke is up.
    assert state.up
    assert state.objects == {
        "PersistentVolumeClaim batch": frozenset({"checkpoints", "other"}),
        "Secret batch": frozenset({"hf-token"}),
        "PriorityClass": frozenset({"batch-low"}),
        "ServiceAccount batch": frozenset({"default"}),
    }
    assert "may not list ConfigMaps in batch (HTTP 403)" in caplog.text
    # Without a job that needs one, nothing is listed.
    with serve() as api:
        healthy(api)
        assert observe(tmp_path, {"paris": api.url})["paris"].objects == {}
        assert not [
            s
            for s in api.seen
            if "/namespaces/" in s.path and not s.path.endswith(("quotas", "limitranges"))
        ]


def test_a_listed_object_without_a_name_is_none_a_job_needs(tmp_path) -> None:
    doc = appwrapper_doc("trainer")
    pod_spec = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod_spec["volumes"] = [{"name": "settings", "configMap": {"name": "trainer"}}]
    maps = [{"metadata": {}}, {"metadata": {"name": None}}, {"metadata": {"name": "trainer"}}]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/namespaces/batch/configmaps", Reply(body=listing("ConfigMapList", maps)))
        fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
        state = observe(tmp_path, {"paris": api.url}, fleet=fleet)["paris"]
    assert state.up and state.objects == {"ConfigMap batch": frozenset({"trainer"})}


def test_secrets_it_may_not_list_are_not_checked_and_no_cause_for_a_warning(
    tmp_path, caplog
) -> None:
    doc = appwrapper_doc("trainer")
    pod_spec = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod_spec["volumes"] = [
        {"name": "token", "secret": {"secretName": "hf-token"}},
        {"name": "settings", "configMap": {"name": "trainer"}},
    ]
    pod_spec["priorityClassName"] = "batch-low"
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
    caplog.set_level(logging.INFO)
    with serve() as api:
        healthy(api)
        api.route("/api/v1/namespaces/batch/secrets", Reply(status=403, body=forbidden))
        api.route("/api/v1/namespaces/batch/configmaps", Reply(status=403, body=forbidden))
        api.route("/apis/scheduling.k8s.io/v1/priorityclasses", Reply(status=403, body=forbidden))
        fleet = fleet_with(jobs__trainer=yaml.safe_dump(doc))
        state = observe(tmp_path, {"paris": api.url}, fleet=fleet)["paris"]
    assert state.up and state.objects == {}
    assert set(state.unread) == {"Secrets in batch", "ConfigMaps in batch", "PriorityClasses"}
    said = {r.getMessage(): r.levelno for r in caplog.records if "may not list" in r.getMessage()}
    # deploy/spoke-rbac.yaml grants ConfigMaps: not having it is an older file.
    assert said == {
        "spoke paris: may not list ConfigMaps in batch (HTTP 403), so jobs are not checked "
        "against them there; deploy/spoke-rbac.yaml grants it": logging.WARNING,
        "spoke paris: may not list Secrets in batch (HTTP 403), so jobs are not checked "
        "against them there; deploy/spoke-rbac-secrets.yaml grants it": logging.INFO,
        "spoke paris: may not list PriorityClasses (HTTP 403), so jobs are not checked "
        "against them there; deploy/spoke-rbac.yaml grants it": logging.WARNING,
    }


def quota(name, hard, **spec):
    return {"metadata": {"name": name, "namespace": "batch"}, "spec": {"hard": hard, **spec}}


def test_the_resource_quotas_of_the_jobs_namespaces_give_the_most_they_may_ask(tmp_path) -> None:
    quotas = [
        quota("team", {"requests.cpu": "24", "requests.memory": "96Gi", "pods": "50"}),
        quota("old-style", {"cpu": "16"}),  # the same as requests.cpu: the lower holds
        quota("gpus", {"requests.nvidia.com/gpu": "2"}),
        # Scoped quotas count only some pods: not read.
        quota("urgent", {"requests.cpu": "1", "pods": "3"}, scopes=["PriorityClass"]),
        quota("few", {"pods": "40"}),
        quota(
            "best-effort",
            {"limits.memory": "1"},
            scopeSelector={
                "matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["low"]}
                ]
            },
        ),
    ]
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/namespaces/batch/resourcequotas",
            Reply(body=listing("ResourceQuotaList", quotas)),
        )
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.up
    assert state.quotas == {"batch": Resources(cpu=16, memory_bytes=96 * GI, gpu=2)}
    # How many pods the namespace may hold, the lower of the two.
    assert state.quota_pods == {"batch": 40}
    # The cpu and memory they count, which every container must then set (a
    # count of pods or GPUs asks nothing of a container; scoped ones not read).
    assert state.quota_needs == {"batch": frozenset({"requests.cpu", "requests.memory", "cpu"})}
    # Those with scopes are kept apart, to be matched to each job's pods.
    assert state.scoped_quotas == {
        "batch": (
            ScopedQuota(
                name="batch/urgent",
                scopes=(QuotaScope(scope="PriorityClass"),),
                most={"cpu": 1, "pods": 3},
                needs=frozenset({"requests.cpu"}),
            ),
            ScopedQuota(
                name="batch/best-effort",
                scopes=(QuotaScope(scope="PriorityClass", operator="In", values=("low",)),),
                needs=frozenset({"limits.memory"}),
            ),
        )
    }
    with serve() as api:  # no quota in either namespace: nothing to hold jobs to
        healthy(api)
        nothing = observe(tmp_path, {"paris": api.url})["paris"]
    assert nothing.quotas == {} and nothing.quota_needs == {} and nothing.quota_pods == {}


def test_the_limit_ranges_of_the_jobs_namespaces_are_read_with_the_apis_defaults(
    tmp_path, caplog
) -> None:
    ranges = [
        {
            "metadata": {"name": "bounds", "namespace": "batch"},
            "spec": {
                "limits": [
                    {"type": "Container", "max": {"cpu": "4", "example.com/foo": "1"}},
                    {"type": "Pod", "min": {"memory": "512Mi"}},
                    # A claim's bounds say nothing of pods.
                    {"type": "PersistentVolumeClaim", "max": {"storage": "1Ti"}},
                ]
            },
        },
        {
            "metadata": {"name": "defaults", "namespace": "batch"},
            "spec": {"limits": [{"type": "Container", "default": {"memory": "2Gi"}}]},
        },
    ]
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/namespaces/batch/limitranges", Reply(body=listing("LimitRangeList", ranges))
        )
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.up
    assert state.limit_ranges == {
        "batch": (
            # max is the default limit, and that the default request.
            LimitRangeItem(
                limit_range="batch/bounds",
                type="Container",
                max={"cpu": 4},
                default={"cpu": 4},
                default_request={"cpu": 4},
            ),
            LimitRangeItem(limit_range="batch/bounds", type="Pod", min={"memory": GI / 2}),
            LimitRangeItem(
                limit_range="batch/defaults",
                type="Container",
                default={"memory": 2 * GI},
                default_request={"memory": 2 * GI},
            ),
        )
    }
    # Where Caspian may not list them, they are not known, and the spoke is up.
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
    caplog.set_level(logging.WARNING)
    with serve() as api:
        healthy(api)
        api.route("/api/v1/namespaces/batch/limitranges", Reply(status=403, body=forbidden))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.up and state.limit_ranges == {}
    assert "may not list LimitRanges in batch (HTTP 403)" in caplog.text
    # A bound that is no quantity: nothing read from that answer can be trusted.
    ranges[0]["spec"]["limits"][0]["max"]["cpu"] = "four"
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/namespaces/batch/limitranges", Reply(body=listing("LimitRangeList", ranges))
        )
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert not state.up and "cannot read" in state.reason


def test_the_pod_security_level_the_jobs_namespaces_enforce_is_read(tmp_path) -> None:
    def namespace(name, level=None):
        labels = {"kubernetes.io/metadata.name": name}
        if level is not None:
            labels["pod-security.kubernetes.io/enforce"] = level
        return {"metadata": {"name": name, "labels": labels}}

    spaces = [
        namespace("batch", "restricted"),
        namespace("media", "privileged"),  # enforces nothing
        namespace("web", "baseline"),  # no job's namespace
    ]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/namespaces", Reply(body=listing("NamespaceList", spaces)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.up and state.pod_security == {"batch": "restricted"}
    spaces[1] = namespace("media", "baseline")
    # As the API server answers a request for metadata alone, which is what
    # Caspian asks for: labels are metadata.
    metadata_only = {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "9"},
        "items": [
            {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", **space}
            for space in spaces
        ],
    }
    with serve() as api:
        healthy(api)
        api.route("/api/v1/namespaces", Reply(body=metadata_only))
        state = observe(tmp_path, {"paris": api.url})["paris"]
        accepts = [s.headers.get("accept") for s in api.seen if s.path == "/api/v1/namespaces"]
    assert state.pod_security == {"batch": "restricted", "media": "baseline"}
    assert accepts and all(
        accept.startswith("application/json;as=PartialObjectMetadataList;") for accept in accepts
    )


def _waiting_pod(name, job_name, *, since, reason="Unschedulable", node=None, message=None):
    """One of Caspian's pods as the scheduler leaves it when it finds no node."""
    found = pod(name, node, "Pending", ours=True)
    found["metadata"]["labels"]["batch.kubernetes.io/job-name"] = job_name
    found["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "lastTransitionTime": since,
            "message": message,
        }
    ]
    return found


def test_jobs_whose_pods_find_no_node_are_reported_with_since_when(tmp_path) -> None:
    ran = job("half-9a9a9a9a", namespace="default")
    ran["status"]["succeeded"] = 1
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/pods",
            Reply(
                body=listing(
                    "PodList",
                    [
                        _waiting_pod(
                            "stuck-a",
                            "stuck-11111111",
                            since="2026-11-22T02:10:00Z",
                            message="0/3 nodes are available: 1 Insufficient cpu,\n"
                            "  2 Insufficient memory.",
                        ),
                        _waiting_pod(
                            "stuck-b",
                            "stuck-11111111",
                            since="2026-11-22T02:04:00Z",
                            message="0/3 nodes are available: 3 Insufficient cpu.",
                        ),
                        # Some of its pods run: it runs, short of room for the rest.
                        _waiting_pod(
                            "part-a",
                            "part-22222222",
                            since="2026-11-22T02:04:00Z",
                            message="0/3 nodes are available: 3 Insufficient cpu.",
                        ),
                        _waiting_pod(
                            "part-b", "part-22222222", since="2026-11-22T02:00:00Z", node="ready-1"
                        ),
                        # Held back on purpose, not for want of a node.
                        _waiting_pod(
                            "gated",
                            "gated-33333333",
                            since="2026-11-22T02:00:00Z",
                            reason="SchedulingGated",
                        ),
                        # It ran a pod before: not to be moved.
                        _waiting_pod("half-a", "half-9a9a9a9a", since="2026-11-22T02:00:00Z"),
                        pod("theirs", None, "Pending", cpu="8"),
                    ],
                )
            ),
        )
        stuck = job("stuck-11111111", namespace="default", ready=False)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [ran, stuck])))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.up
    assert {key: since.isoformat() for key, since in state.unscheduled.items()} == {
        "default/stuck-11111111": "2026-11-22T02:04:00+00:00"
    }
    # Not reported Running: the ledger keeps it Dispatched while it waits.
    assert state.jobs == {"default/half-9a9a9a9a": "Running"}
    assert state.placed_on == {"default/part-22222222": ("ready-1",)}
    # The scheduler's latest word on it, on one line.
    assert state.said == {
        "default/stuck-11111111": "0/3 nodes are available: 1 Insufficient cpu, "
        "2 Insufficient memory."
    }


def test_jobs_with_no_pod_on_a_node_are_reported_whether_they_ran_or_not(tmp_path) -> None:
    # lost: its pod evicted from a node that failed (counted failed), the one
    # made in its place finds no node; the old one stays, being deleted, on
    # the node's object until that goes. fresh: it never ran. part: a pod of
    # it runs. held: suspended since, its pods going.
    lost = job("lost-11111111", namespace="default", ready=False)
    lost["status"]["failed"] = 1
    evicted = _waiting_pod("lost-a", "lost-11111111", since="2026-11-22T01:00:00Z", node="n9")
    evicted["metadata"]["deletionTimestamp"] = "2026-11-22T03:05:00Z"
    # A pod of fresh's that is being deleted says nothing.
    going = _waiting_pod("fresh-0", "fresh-22222222", since="2026-11-22T03:15:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-11-22T03:16:00Z"
    held = job("held-44444444", namespace="default", ready=False)
    held["spec"]["suspend"] = True
    waiting = {
        "lost-b": ("lost-11111111", "2026-11-22T03:10:00Z"),
        "fresh-a": ("fresh-22222222", "2026-11-22T03:20:00Z"),
        "part-a": ("part-33333333", "2026-11-22T03:00:00Z"),
        "held-a": ("held-44444444", "2026-11-22T03:00:00Z"),
    }
    pods = [
        evicted,
        going,
        _waiting_pod("part-b", "part-33333333", since="2026-11-22T02:00:00Z", node="ready-1"),
        *(
            _waiting_pod(name, job_name, since=since, message=f"0/3 nodes for {name}.")
            for name, (job_name, since) in waiting.items()
        ),
    ]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/pods", Reply(body=listing("PodList", pods)))
        jobs = [
            lost,
            held,
            *(job(n, namespace="default") for n in ("fresh-22222222", "part-33333333")),
        ]
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert {key: since.isoformat() for key, since in state.nodeless.items()} == {
        "default/lost-11111111": "2026-11-22T03:10:00+00:00",
        "default/fresh-22222222": "2026-11-22T03:20:00+00:00",
    }
    # It ran a pod: never requeued, but Running still, and what the scheduler
    # says of it is kept for the commit that ends it.
    assert state.jobs["default/lost-11111111"] == "Running"
    assert "default/lost-11111111" not in state.unscheduled
    assert state.said["default/lost-11111111"] == "0/3 nodes for lost-b."


def _started_job(name, *, suspend=False, start="2026-11-22T02:00:00Z", **status):
    found = job(name, namespace="default")
    found["spec"]["suspend"] = suspend
    found["status"] = {"startTime": start, **status} if start else dict(status)
    return found


def test_the_jobs_held_suspended_there_are_read(tmp_path) -> None:
    # Planned (suspended until its start), or resumed in git but not there.
    jobs = [
        _started_job("waiting-11111111", suspend=True, start=None),
        _started_job("resumed-22222222", active=1, ready=1),
        _started_job("again-33333333", suspend=True, succeeded=1),
    ]
    del jobs[1]["spec"]["suspend"]  # unset: not suspended

    # The Job controller's word on when it was suspended.
    condition = {
        "type": "Suspended",
        "status": "True",
        "lastTransitionTime": "2026-11-22T03:10:00Z",
    }
    jobs[2]["status"]["conditions"] = [condition]
    # Suspended again, or resumed, before the Job controller has marked it so.
    jobs[0]["status"]["conditions"] = [condition | {"status": "False"}]
    jobs[1]["status"]["conditions"] = [condition]
    with serve() as api:
        healthy(api)
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.suspended == {"default/waiting-11111111", "default/again-33333333"}
    assert state.listed == {*state.suspended, "default/resumed-22222222"}
    assert {key: at.isoformat() for key, at in state.suspended_at.items()} == {
        "default/again-33333333": "2026-11-22T03:10:00+00:00"
    }


def _failed_create(at, message):
    return {
        "metadata": {"name": f"refused.{at[-9:-1].replace(':', '')}", "namespace": "default"},
        "involvedObject": {"kind": "Job", "name": "refused-11111111", "namespace": "default"},
        "reason": "FailedCreate",
        "type": "Warning",
        "message": message,
        "lastTimestamp": at,
    }


def test_jobs_that_started_and_created_no_pod_are_reported_with_since_when(tmp_path) -> None:
    refusals = [
        ("2026-11-22T02:00:05Z", 'Error creating: pods "refused-11111111-a" is forbidden: x'),
        (
            "2026-11-22T02:06:40Z",
            'Error creating: pods "refused-11111111-b" is forbidden: maximum cpu usage per '
            "Container is 2, but limit is 4",
        ),
        ("2026-11-22T02:03:20Z", "Error creating: an earlier word"),
    ]
    failed = _started_job("failed-55555555")
    failed["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    jobs = [
        _started_job("refused-11111111"),  # admission refuses its pods
        _started_job("held-22222222", suspend=True),  # suspended there again
        _started_job("running-33333333", active=1, ready=1),
        _started_job("new-44444444"),  # its pod was just made: it has one
        failed,  # ended before a pod ran (its deadline passed, say)
        _started_job("ran-66666666", succeeded=1),
    ]
    with serve() as api:
        healthy(api)
        api.route(
            "/api/v1/pods",
            Reply(body=listing("PodList", [_waiting_pod("p", "new-44444444", since=None)])),
        )
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        api.route(
            "/api/v1/namespaces/default/events",
            Reply(body=listing("EventList", [_failed_create(at, m) for at, m in refusals])),
        )
        state = observe(tmp_path, {"paris": api.url})["paris"]
        asked = api.requests_to("/api/v1/namespaces/default/events")
    assert state.up
    assert {key: since.isoformat() for key, since in state.podless.items()} == {
        "default/refused-11111111": "2026-11-22T02:00:00+00:00"
    }
    # Its last FailedCreate event says why, asked for that Job alone.
    assert state.said == {"default/refused-11111111": refusals[1][1]}
    assert [seen.query["fieldSelector"] for seen in asked] == [
        ["involvedObject.kind=Job,involvedObject.name=refused-11111111,reason=FailedCreate"]
    ]
    # Where the events cannot be had (no right to list them, an error), the Jobs
    # are reported all the same, and no more events are asked for there.
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
    for failing in (Reply(status=403, body=forbidden), Reply(status=500), Reply(body=b"<html>")):
        with serve() as api:
            healthy(api)
            api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
            api.route("/api/v1/namespaces/default/events", failing)
            state = observe(tmp_path, {"paris": api.url})["paris"]
            asked = api.requests_to("/api/v1/namespaces/default/events")
        assert state.up and state.said == {}
        assert set(state.podless) == {"default/refused-11111111", "default/new-44444444"}
        assert len(asked) == 1
    assert "default/refused-11111111" not in state.jobs
    assert state.jobs["default/running-33333333"] == "Running"
    assert state.unscheduled == {}


def _pod_on_node(name, job_name, *, statuses, init=(), start="2026-11-22T02:00:00Z"):
    """One of Caspian's pods, on a node since `start`, its containers as given."""
    found = pod(name, "ready-1", "Pending", ours=True)
    found["metadata"]["labels"]["batch.kubernetes.io/job-name"] = job_name
    found["status"].update(
        startTime=start, containerStatuses=list(statuses), initContainerStatuses=list(init)
    )
    return found


def _waits(reason, message=None, *, crashed=False):
    status = {
        "name": "c",
        "image": "x",
        "imageID": "",
        "ready": False,
        "restartCount": 1 if crashed else 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if crashed:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return status


RUNS = {
    "name": "c",
    "image": "x",
    "imageID": "",
    "ready": True,
    "restartCount": 0,
    "state": {"running": {"startedAt": "2026-11-22T02:01:00Z"}},
}


def _pod_warning(pod_name, reason, message, *, at):
    return {
        "metadata": {"name": f"{pod_name}.{reason}", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": "default"},
        "reason": reason,
        "type": "Warning",
        "message": message,
        "firstTimestamp": "2026-11-22T02:00:30Z",
        "lastTimestamp": at,
        "count": 9,
    }


def test_jobs_whose_pods_on_a_node_cannot_start_are_reported_with_why(tmp_path) -> None:
    pull = 'Back-off pulling image "registry.example/train:v3"'
    secret = 'secret "wandb" not found'
    mount = 'MountVolume.SetUp failed for volume "creds" : secret "creds" not found'
    pods = [
        # Its image cannot be pulled there: the word of its pod there the longest.
        _pod_on_node(
            "pull-a",
            "pull-11111111",
            statuses=[_waits("ErrImagePull", "a later word")],
            start="2026-11-22T02:05:00Z",
        ),
        _pod_on_node("pull-b", "pull-11111111", statuses=[_waits("ImagePullBackOff", pull)]),
        # A key of its environment is in a Secret the spoke lacks; an init
        # container waits the same way for its image.
        _pod_on_node(
            "env", "env-22222222", statuses=[_waits("CreateContainerConfigError", secret)]
        ),
        _pod_on_node(
            "init",
            "init-33333333",
            statuses=[_waits("PodInitializing")],
            init=[_waits("ErrImagePull", "\n  rpc error: not found\n")],
        ),
        # Still pulling its image, with nothing gone wrong: left to it.
        _pod_on_node("slow", "slow-44444444", statuses=[_waits("ContainerCreating")]),
        # Its volume cannot be mounted, said only in its events.
        _pod_on_node("mount", "mount-55555555", statuses=[_waits("ContainerCreating")]),
        # It could not mount once, half an hour ago, and pulls since.
        _pod_on_node("once", "once-66666666", statuses=[_waits("ContainerCreating")]),
        # Its container ran and failed: the Job's own backoffLimit is for that.
        _pod_on_node(
            "crash", "crash-77777777", statuses=[_waits("CrashLoopBackOff", crashed=True)]
        ),
        # One of its pods runs: it runs, on a node that can pull its image.
        _pod_on_node("half-a", "half-88888888", statuses=[RUNS]),
        _pod_on_node("half-b", "half-88888888", statuses=[_waits("ErrImagePull", "denied")]),
        # It ran a pod to its end before: never moved.
        _pod_on_node("ran", "ran-99999999", statuses=[_waits("ImagePullBackOff", pull)]),
    ]
    warnings = {
        "mount": [
            _pod_warning("mount", "FailedMount", "an earlier word", at="2026-11-22T02:40:00Z"),
            _pod_warning("mount", "FailedMount", mount, at="2026-11-22T02:58:00Z"),
            _pod_warning(
                "mount", "BackOff", "a later word of no matter", at="2026-11-22T02:59:00Z"
            ),
        ],
        "once": [_pod_warning("once", "FailedMount", mount, at="2026-11-22T02:30:00Z")],
        "slow": [],
    }

    def events(seen):
        selector = seen.query["fieldSelector"][0]
        name = selector.split("involvedObject.name=")[1].split(",")[0]
        return Reply(body=listing("EventList", warnings[name]))

    ran = job("ran-99999999", namespace="default")
    ran["status"]["succeeded"] = 1
    names = ["pull-11111111", "env-22222222", "init-33333333", "slow-44444444", "mount-55555555"]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/pods", Reply(body=listing("PodList", pods)))
        jobs = [job(name, namespace="default", ready=False) for name in names] + [ran]
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        api.routes["/api/v1/namespaces/default/events"] = events
        now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
        state = observe(tmp_path, {"paris": api.url}, clock=lambda: now)["paris"]
        asked = api.requests_to("/api/v1/namespaces/default/events")
    assert state.up
    assert {key: since.isoformat() for key, since in state.not_starting.items()} == {
        "default/env-22222222": "2026-11-22T02:00:00+00:00",
        "default/init-33333333": "2026-11-22T02:00:00+00:00",
        "default/mount-55555555": "2026-11-22T02:00:00+00:00",
        "default/pull-11111111": "2026-11-22T02:00:00+00:00",
    }
    assert state.said == {
        "default/env-22222222": f"CreateContainerConfigError: {secret}",
        "default/init-33333333": "ErrImagePull: rpc error: not found",
        "default/mount-55555555": f"FailedMount: {mount}",
        "default/pull-11111111": f"ImagePullBackOff: {pull}",
    }
    # Only the pods waiting for no known reason had their warnings asked for.
    assert sorted(seen.query["fieldSelector"][0] for seen in asked) == [
        f"involvedObject.kind=Pod,involvedObject.name={name},type=Warning"
        for name in ("mount", "once", "slow")
    ]
    # Those that cannot start, and the one still pulling its image, are not
    # running yet: the ledger keeps them Dispatched.
    assert state.jobs == {"default/ran-99999999": "Running"}
    assert state.unscheduled == {} and state.podless == {}
    # Each whose pods wait on their node, whatever for, since it got there (a
    # warmup grace period requeues on this alone).
    assert set(state.unready) == set(state.not_starting) | {
        "default/slow-44444444",
        "default/once-66666666",
    }


def test_the_pods_waiting_on_a_node_the_longest_have_their_events_asked_first(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr("reconciler.kube.MOST_EVENT_LISTS", 2)
    starts = {"a": "02:30", "b": "02:10", "c": "02:20", "d": "02:00"}
    pods = [
        _pod_on_node(
            name,
            f"{name}-11111111",
            statuses=[_waits("ContainerCreating")],
            start=f"2026-11-22T{at}:00Z",
        )
        for name, at in starts.items()
    ]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/pods", Reply(body=listing("PodList", pods)))
        api.route("/api/v1/namespaces/default/events", Reply(body=listing("EventList", [])))
        state = observe(tmp_path, {"paris": api.url})["paris"]
        asked = api.requests_to("/api/v1/namespaces/default/events")
    assert state.up and state.not_starting == {}
    assert [seen.query["fieldSelector"][0].split(",")[1] for seen in asked] == [
        "involvedObject.name=d",
        "involvedObject.name=b",
    ]


def test_a_job_runs_once_a_container_of_it_has_started(tmp_path) -> None:
    # Its container runs, not yet ready.
    busy = _pod_on_node("busy", "busy-11111111", statuses=[{**RUNS, "ready": False}])
    # Its pod pulls its image: dispatched, not running yet.
    pulling = _pod_on_node("pulling", "pulling-22222222", statuses=[_waits("ContainerCreating")])
    # Its first pod ran to its end; the next is not made yet.
    between = job("between-33333333", namespace="default", ready=False)
    between["status"]["succeeded"] = 1
    jobs = [
        job("busy-11111111", namespace="default", ready=False),
        job("pulling-22222222", namespace="default", ready=False),
        between,
        job("ready-44444444", namespace="default"),  # the Job counts a ready pod
        job("done-55555555", namespace="default", condition="Complete"),
    ]
    with serve() as api:
        healthy(api)
        api.route("/api/v1/pods", Reply(body=listing("PodList", [busy, pulling])))
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.jobs == {
        "default/busy-11111111": "Running",
        "default/between-33333333": "Running",
        "default/ready-44444444": "Running",
        "default/done-55555555": "Succeeded",
    }


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (  # a failed pull can quote a registry's pre-signed blob URL: its signature is a
            # credential, and the words go into a commit message
            'failed to do request: Get "https://blobs.example/sha256/ab?X-Amz-Credential=AKIA'
            'EXAMPLE&X-Amz-Signature=0123abcd": i/o timeout; from https://bot:s3cret@reg.example/v2',
            'failed to do request: Get "https://blobs.example/sha256/ab?...": i/o timeout; from '
            "https://reg.example/v2",
        ),
        (  # the image's to write: these would colour a console or add a line to a commit
            "no such image\x1b[31m\u2028- batch/other: cancelled",
            "no such image\\x1b[31m - batch/other: cancelled",
        ),
    ],
)
def test_what_a_spoke_says_loses_credentials_and_comes_as_one_plain_line(
    tmp_path, message, said
) -> None:
    stuck = _pod_on_node("p", "pull-11111111", statuses=[_waits("ErrImagePull", message)])
    with serve() as api:
        healthy(api)
        api.route("/api/v1/pods", Reply(body=listing("PodList", [stuck])))
        jobs = [job("pull-11111111", namespace="default", ready=False)]
        api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", jobs)))
        state = observe(tmp_path, {"paris": api.url})["paris"]
    assert state.said == {"default/pull-11111111": f"ErrImagePull: {said}"}
