"""What the API server would refuse in a wrapped Job, beyond the schema, is a
problem line naming the field and the fix: Argo CD fails a spoke's whole sync
for one such Job, so it must not reach rendered/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from reconciler.refusals import refused_by_api_server
from tests.fleet.helpers import appwrapper_doc, fleet_with, problems_of

FIELD = "jobs/extra.yaml: spec.components[0].template."
POD = FIELD + "spec.template.spec."


def job(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["components"][0]["template"]


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    return job(doc)["spec"]["template"]["spec"]


def main(doc: dict[str, Any]) -> dict[str, Any]:
    return pod(doc)["containers"][0]


def sidecar_named(name: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        pod(doc)["initContainers"] = [{"name": name, "image": "busybox"}]

    return change


def mounts(*items: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> Callable:
    def change(doc: dict[str, Any]) -> None:
        main(doc)["volumeMounts"] = list(items)
        pod(doc)["volumes"] = volumes if volumes is not None else [{"name": "data", "emptyDir": {}}]

    return change


def resources(**parts: dict[str, str]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        main(doc)["resources"] = parts

    return change


def labels(where: str, values: dict[str, str]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target = job(doc) if where == "job" else job(doc)["spec"]["template"]
        target.setdefault("metadata", {})["labels"] = values

    return change


def job_spec(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        job(doc)["spec"].update(values)

    return change


def set_in(target: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    def change(doc: dict[str, Any]) -> None:
        target(doc)[key] = value

    return change


FAILURE_POLICY = {
    "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Containers
        (set_in(main, "name", "Main"), POD + "containers[0].name: 'Main' is not a DNS label"),
        (sidecar_named("main"), POD + "containers[0].name: 'main' is taken by another container"),
        (set_in(main, "image", ""), POD + "containers[0].image: required"),
        (
            set_in(main, "ports", [{"containerPort": 70000}]),
            POD + "containers[0].ports[0].containerPort: 70000 is not a port (1-65535)",
        ),
        (
            set_in(main, "ports", [{"containerPort": 80, "name": "http_metrics"}]),
            POD + "containers[0].ports[0].name: 'http_metrics' is not a port name",
        ),
        (
            set_in(main, "ports", [{"containerPort": 80, "name": "metrics-endpoint"}]),
            POD + "containers[0].ports[0].name: 'metrics-endpoint' is not a port name",
        ),
        (
            set_in(
                main,
                "ports",
                [{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}],
            ),
            POD + "containers[0].ports[1].name: 'web' names another port of the pod",
        ),
        # Volumes
        (
            mounts({"name": "scratch", "mountPath": "/data"}),
            POD + "containers[0].volumeMounts[0].name: 'scratch' names no volume of the pod",
        ),
        (
            mounts({"name": "data", "mountPath": "/d"}, {"name": "data", "mountPath": "/d"}),
            POD + "containers[0].volumeMounts[1].mountPath: '/d' is mounted twice",
        ),
        (
            mounts(volumes=[{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]),
            POD + "volumes[1].name: 'data' is taken by another volume",
        ),
        (
            mounts(volumes=[None]),
            POD + "volumes[0]: expected a volume: its name and its source",
        ),
        (
            set_in(main, "env", [{"name": "A", "value": "1"}, None]),
            POD + "containers[0].env[1]: expected a variable: its name and its value",
        ),
        (
            set_in(main, "envFrom", [None]),
            POD + "containers[0].envFrom[0]: expected a source: a configMapRef or secretRef",
        ),
        # Resources
        (
            resources(requests={"cpu": "2"}, limits={"cpu": "1"}),
            POD + "containers[0].resources.requests[cpu]: '2' is more than its limit '1'",
        ),
        (
            resources(requests={"cpu": "1", "nvidia.com/gpu": "1"}),
            POD + "containers[0].resources.limits[nvidia.com/gpu]: required: Kubernetes takes "
            "nvidia.com/gpu only with a limit, equal to the request; set limits[nvidia.com/gpu]: "
            "'1'",
        ),
        (
            resources(requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "2"}),
            POD + "containers[0].resources.requests[nvidia.com/gpu]: '1' differs from its limit",
        ),
        (
            resources(limits={"nvidia.com/gpu": "500m"}),
            POD + "containers[0].resources.limits[nvidia.com/gpu]: '500m': nvidia.com/gpu comes "
            "in whole units",
        ),
        (
            resources(requests={"cpus": "2", "memory": "1Gi"}),
            POD + "containers[0].resources.requests[cpus]: 'cpus' is no resource Kubernetes knows",
        ),
        (
            resources(limits={"Memory": "1Gi"}),
            POD + "containers[0].resources.limits[Memory]: 'Memory' is no resource",
        ),
        # Labels and annotations
        (
            labels("job", {"team": "data science"}),
            FIELD + "metadata.labels[team]: 'data science' is not a label value",
        ),
        (
            labels("pod", {"example.com/run": "x" * 64}),
            FIELD + "spec.template.metadata.labels[example.com/run]: '" + "x" * 64 + "' is not",
        ),
        (
            labels("job", {"Example.com/team": "a"}),
            FIELD + "metadata.labels[Example.com/team]: 'Example.com/team': its prefix "
            "'Example.com' is not a DNS subdomain",
        ),
        (
            set_in(job, "metadata", {"annotations": {"a/b/c": "x"}}),
            FIELD + "metadata.annotations[a/b/c]: 'a/b/c': a key is a name, or one DNS prefix",
        ),
        (
            set_in(job, "metadata", {"annotations": {"notes": "x" * 300_000}}),
            FIELD + "metadata.annotations: 300005 bytes, more than the 262144 Kubernetes takes",
        ),
        (
            set_in(pod, "nodeSelector", {"gpu.product": "A100 80GB"}),
            POD + "nodeSelector[gpu.product]: 'A100 80GB' is not a label value",
        ),
        # The Job's own fields
        (
            job_spec(completionMode="Indexed"),
            FIELD + "spec.completions: required with completionMode: Indexed",
        ),
        (
            job_spec(backoffLimitPerIndex=2),
            FIELD + "spec.backoffLimitPerIndex: only an Indexed Job takes it",
        ),
        (
            job_spec(podFailurePolicy=FAILURE_POLICY),
            "",  # restartPolicy is Never in the helper: allowed
        ),
        (
            job_spec(managedBy="kueue.x-k8s.io/multikueue"),
            FIELD + "spec.managedBy: 'kueue.x-k8s.io/multikueue': Kubernetes' Job controller "
            "leaves such a Job to that controller, so on the spoke it would never run",
        ),
        (job_spec(managedBy="kubernetes.io/job-controller"), ""),  # the default, written out
        (
            set_in(pod, "priorityClassName", "team/high"),
            POD + "priorityClassName: 'team/high' is not the name of an object",
        ),
        (
            set_in(pod, "serviceAccountName", "Trainer"),
            POD + "serviceAccountName: 'Trainer' is not the name of an object",
        ),
        (set_in(pod, "runtimeClassName", "gvisor.v2"), ""),
        (
            lambda doc: (
                job_spec(podFailurePolicy=FAILURE_POLICY)(doc),
                set_in(pod, "restartPolicy", "OnFailure")(doc),
            ),
            FIELD + "spec.podFailurePolicy: Kubernetes takes a pod failure policy only with "
            "restartPolicy: Never",
        ),
    ],
)
def test_what_the_api_server_refuses_is_one_problem_line(change, expected) -> None:
    doc = appwrapper_doc()
    change(doc)
    fleet = fleet_with(jobs__extra=yaml.safe_dump(doc, sort_keys=False))
    lines = problems_of(fleet)
    if not expected:
        assert lines == []
        return
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    assert len(fleet.jobs) == 10  # every other job is still there


def test_the_template_jobs_are_refused_nothing() -> None:
    fleet = fleet_with()
    for request in fleet.jobs:
        assert refused_by_api_server(request.job_template) == (), request.source


def test_what_the_api_server_takes_passes() -> None:
    doc = appwrapper_doc()
    main(doc).update(
        {
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "ports": [{"containerPort": 8080, "hostPort": 0, "name": "http-2"}],
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                "limits": {
                    "cpu": "1",
                    "memory": "1Gi",
                    "nvidia.com/gpu": "1",
                    "hugepages-2Mi": "4Mi",
                    "example.com/fpga-slot": "2",
                },
            },
        }
    )
    pod(doc)["volumes"] = [{"name": "data", "emptyDir": {}}]
    pod(doc)["initContainers"] = [{"name": "fetch", "image": "busybox"}]
    job(doc)["metadata"] = {
        "labels": {"app.kubernetes.io/name": "etl", "empty": "", "v": "1.2_3-x"},
        "annotations": {"example.com/notes": "free text, spaces and all"},
    }
    job(doc)["spec"].update({"completionMode": "Indexed", "completions": 4, "maxFailedIndexes": 1})
    assert refused_by_api_server(job(doc)) == ()
