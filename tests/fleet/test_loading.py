"""Reading a fleet repo: what valid files give, and what each kind of mistake says."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from reconciler import appwrappers, crd, quantities
from reconciler.fleet import Fleet, FleetConfigError, printable
from reconciler.loading import JobFiles, load_fleet
from reconciler.templates import template_files
from tests.fleet.helpers import appwrapper, appwrapper_doc, fleet_with, problems_of

SPOKE_HEAD = "apiVersion: caspian.dev/v1alpha1\nkind: Spoke\n"
POLICY_HEAD = "apiVersion: caspian.dev/v1alpha1\nkind: Policy\n"


def test_the_template_fleet_loads_cleanly() -> None:
    fleet = fleet_with()
    assert [s.name for s in fleet.spokes] == ["california", "frankfurt", "paris"]
    assert len(fleet.jobs) == 10
    assert fleet.problems == ()


def test_every_template_appwrapper_validates_against_the_real_crd() -> None:
    for path, raw in template_files().items():
        if path.startswith("jobs/"):
            assert crd.check_appwrapper(yaml.safe_load(raw)) == [], path


def test_resources_are_pod_requests_times_parallelism() -> None:
    job = {j.name: j for j in fleet_with().jobs}["render-frames"]
    assert (job.cpu, job.memory_bytes, job.gpu) == (16.0, 8 * 4 * 2**30, 0.0)


def test_a_limit_stands_in_for_a_missing_request_and_init_containers_count() -> None:
    text = appwrapper(
        pod_spec={
            "initContainers": [
                {"name": "fetch", "image": "busybox", "resources": {"requests": {"cpu": "6"}}}
            ]
        },
        resources={"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}},
    )
    job = {j.name: j for j in fleet_with(jobs__extra=text).jobs}["extra"]
    assert (job.cpu, job.gpu) == (6.0, 1.0)


def job_annotated(annotations: dict[str, str]) -> str:
    doc = appwrapper_doc()
    doc["spec"]["components"][0]["template"]["metadata"] = {"annotations": annotations}
    return yaml.safe_dump(doc, sort_keys=False)


def test_argocd_annotations_that_keep_a_plain_apply_stay_on_the_job() -> None:
    text = job_annotated(
        {
            "argocd.argoproj.io/sync-options": "ServerSideApply=true",
            "argocd.argoproj.io/sync-wave": "1",
        }
    )
    fleet = fleet_with(jobs__extra=text)
    assert problems_of(fleet) == []
    job = {j.name: j for j in fleet.jobs}["extra"]
    assert job.job_template["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"


def test_a_job_pod_without_restart_policy_is_a_problem_not_a_failed_sync() -> None:
    doc = appwrapper_doc()
    del doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]["restartPolicy"]
    lines = problems_of(fleet_with(jobs__extra=yaml.safe_dump(doc)))
    assert lines == [
        "jobs/extra.yaml: spec.components[0].template.spec.template.spec.restartPolicy: missing: "
        "Kubernetes runs a Job's pods only with Never or OnFailure; add restartPolicy: Never"
    ]


def test_a_job_that_names_a_kueue_queue_is_a_problem_and_its_appwrapper_may() -> None:
    for part in ("labels", "annotations"):
        doc = appwrapper_doc()
        doc["spec"]["components"][0]["template"]["metadata"] = {
            part: {"kueue.x-k8s.io/queue-name": "team-a"}
        }
        (line,) = problems_of(fleet_with(jobs__extra=yaml.safe_dump(doc)))
        assert line.startswith(
            f"jobs/extra.yaml: spec.components[0].template.metadata.{part}."
            "kueue.x-k8s.io/queue-name: remove it: Kueue on a spoke would suspend this Job"
        ), line
    # The AppWrapper itself never reaches a spoke: Caspian renders its Job only.
    doc = appwrapper_doc()
    doc["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
    assert problems_of(fleet_with(jobs__extra=yaml.safe_dump(doc))) == []


def test_a_selector_with_manual_selector_is_the_users_to_keep() -> None:
    job_spec = {"manualSelector": True, "selector": {"matchLabels": {"app": "extra"}}}
    assert problems_of(fleet_with(jobs__extra=appwrapper(job_spec=job_spec))) == []


def sidecar_fleet_job(pod_spec: dict) -> tuple[float, float, float]:
    text = appwrapper(
        pod_spec=pod_spec,
        job_spec={"parallelism": 2},
        resources={"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}},
    )
    job = {j.name: j for j in fleet_with(jobs__extra=text).jobs}["extra"]
    return job.cpu, job.memory_bytes / 2**30, job.gpu


def init(name: str, cpu: str, *, sidecar: bool = False) -> dict:
    container = {"name": name, "image": "busybox", "resources": {"requests": {"cpu": cpu}}}
    return {**container, "restartPolicy": "Always"} if sidecar else container


def test_native_sidecars_run_beside_the_containers_and_the_later_init_containers() -> None:
    # The mesh sidecar starts first and keeps running: the setup step after it
    # needs 1 + 4 at once, the containers 2 + 1. Per pod 5, two pods.
    cpu, _, _ = sidecar_fleet_job(
        {"initContainers": [init("mesh", "1", sidecar=True), init("setup", "4")]}
    )
    assert cpu == 10.0
    # A sidecar started after the setup step does not run beside it.
    cpu, _, _ = sidecar_fleet_job(
        {"initContainers": [init("setup", "4"), init("mesh", "1", sidecar=True)]}
    )
    assert cpu == 8.0
    cpu, _, _ = sidecar_fleet_job({"initContainers": [init("mesh", "1", sidecar=True)]})
    assert cpu == 6.0


def test_pod_overhead_and_pod_level_requests_count() -> None:
    assert sidecar_fleet_job({"overhead": {"cpu": "250m", "memory": "512Mi"}})[:2] == (4.5, 3.0)
    # Pod-level requests replace the containers' sum, for cpu and memory only.
    assert sidecar_fleet_job({"resources": {"requests": {"cpu": "3"}}}) == (6.0, 2.0, 2.0)
    assert sidecar_fleet_job({"resources": {"limits": {"memory": "4Gi"}}})[:2] == (4.0, 8.0)


def _bare(pod_spec: dict | None = None, **container_fields) -> str:
    """An AppWrapper whose container asks for nothing, unless told."""
    doc = appwrapper_doc(pod_spec=pod_spec)
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["containers"][0].pop("resources", None)
    pod["containers"][0].update(container_fields)
    return yaml.safe_dump(doc, sort_keys=False)


def _job(fleet, name: str = "extra"):
    return {j.name: j for j in fleet.jobs}[name]


def test_a_fleet_read_again_reads_only_the_appwrappers_that_changed(monkeypatch) -> None:
    reads: list[str] = []
    load = appwrappers.load_job_file

    def counted(path, raw, **kwargs):
        reads.append(path)
        return load(path, raw, **kwargs)

    monkeypatch.setattr(appwrappers, "load_job_file", counted)
    known = JobFiles()
    selected = appwrapper("picky", annotations={"caspian.dev/spoke-selector": "tier=gpu"})
    files = {
        **template_files(),
        "jobs/extra.yaml": _bare().encode(),
        "jobs/picky.yaml": selected.encode(),
    }

    def read(files: dict[str, bytes]) -> tuple[Fleet, list[str]]:
        reads.clear()
        fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper, known=known)
        read_now = sorted(reads)
        assert fleet == load_fleet(files, appwrapper_schema=crd.check_appwrapper), "as without"
        return fleet, read_now

    every = sorted(p for p in files if p.startswith("jobs/"))
    assert read(files)[1] == every
    assert read(files)[1] == []
    edited = {**files, "jobs/extra.yaml": _bare(resources={"requests": {"cpu": "3"}}).encode()}
    fleet, again = read(edited)
    assert again == ["jobs/extra.yaml"] and _job(fleet).cpu == 3.0
    # What a file reads to depends on the policy and the spokes' labels too.
    policy = POLICY_HEAD + "spec: {defaults: {requests: {cpu: 250m, memory: 512Mi}}}\n"
    fleet, again = read({**edited, "caspian.yaml": policy.encode()})
    assert again == every and _job(fleet).memory_bytes == 2**29
    paris = files["spokes/paris.yaml"].replace(
        b"region: eu-west", b"region: eu-west\n    tier: gpu"
    )
    fleet, again = read({**edited, "caspian.yaml": policy.encode(), "spokes/paris.yaml": paris})
    assert again == every and _job(fleet, "picky").allowed_spokes == ("paris",)


def test_a_container_that_asks_for_nothing_counts_the_policys_default_request() -> None:
    # Counted as nothing, it would take no room anywhere and cost no carbon.
    job = _job(fleet_with(jobs__extra=_bare()))
    assert (job.cpu, job.memory_bytes, job.gpu) == (1.0, 2**30, 0.0)
    assert job.defaulted == ("containers[0] cpu", "containers[0] memory")
    assert "resources" not in job.job_template["spec"]["template"]["spec"]["containers"][0]
    # Per resource, as a LimitRange fills in; a limit stands in for a request.
    job = _job(fleet_with(jobs__extra=_bare(resources={"limits": {"memory": "3Gi"}})))
    assert (job.cpu, job.memory_bytes, job.defaulted) == (1.0, 3 * 2**30, ("containers[0] cpu",))
    # An explicit zero is the user's word.
    zero = _bare(resources={"requests": {"cpu": "0", "memory": "0"}})
    assert (
        _job(fleet_with(jobs__extra=zero)).cpu,
        _job(fleet_with(jobs__extra=zero)).defaulted,
    ) == (
        0.0,
        (),
    )
    # Init containers are filled in too; a pod-level request leaves nothing to fill.
    fetch = {"name": "fetch", "image": "busybox", "resources": {"requests": {"memory": "8Gi"}}}
    job = _job(fleet_with(jobs__extra=_bare(pod_spec={"initContainers": [fetch]})))
    assert (job.cpu, job.memory_bytes) == (1.0, 8 * 2**30)
    assert job.defaulted == ("containers[0] cpu", "initContainers[0] cpu", "containers[0] memory")
    level = {"resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}
    job = _job(fleet_with(jobs__extra=_bare(pod_spec=level)))
    assert (job.cpu, job.memory_bytes, job.defaulted) == (2.0, 2 * 2**30, ())


def test_the_default_request_is_the_policys_to_set() -> None:
    policy = POLICY_HEAD + "spec: {defaults: {requests: {cpu: 250m, memory: 512Mi}}}\n"
    job = _job(fleet_with(caspian=policy, jobs__extra=_bare()))
    assert (job.cpu, job.memory_bytes) == (0.25, 2**29)
    nothing = POLICY_HEAD + "spec: {defaults: {requests: {cpu: 0, memory: 0}}}\n"
    job = _job(fleet_with(caspian=nothing, jobs__extra=_bare()))
    assert (job.cpu, job.memory_bytes) == (0.0, 0.0)
    with pytest.raises(FleetConfigError) as raised:
        fleet_with(caspian=POLICY_HEAD + "spec: {defaults: {requests: {cpu: -1}}}\n")
    assert raised.value.problems[0].line().startswith("caspian.yaml: spec.defaults.requests.cpu:")


def test_hints_come_from_caspian_annotations() -> None:
    job = {j.name: j for j in fleet_with().jobs}["backfill-eu"]
    assert job.duration == timedelta(hours=6)
    assert job.complete_within == timedelta(hours=48)
    assert job.allowed_spokes == ("paris", "frankfurt")
    assert job.namespace == "batch"  # the policy's default


def test_a_namespace_in_the_appwrapper_wins() -> None:
    job = {j.name: j for j in fleet_with().jobs}["video-transcode"]
    assert job.id == "media/video-transcode"


def appwrapper_doc_with(**more: dict) -> str:
    """An AppWrapper with fields added to its spec or metadata."""
    doc = appwrapper_doc()
    for part, fields in more.items():
        doc[part].update(fields)
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: AppWrapper\nspec: [unclosed\n", "jobs/extra.yaml: not valid YAML: "),
        (
            appwrapper_doc_with(spec={"components": 3}),
            "jobs/extra.yaml: spec.components: 3 is not of type 'array'",
        ),
        (
            appwrapper(annotations={"caspian.dev/deadline": "tomorrow"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/deadline: 'tomorrow' is not an "
            "RFC 3339 time",
        ),
        (
            appwrapper(annotations={"caspian.dev/deadline": "2026-12-01T10:00:00"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/deadline: '2026-12-01T10:00:00' "
            "has no time zone",
        ),
        (
            # A date alone: "add Z" would not parse, so the fix is spelt out.
            appwrapper(annotations={"caspian.dev/deadline": "2026-12-01"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/deadline: '2026-12-01' is a date "
            "without a time: write 2026-12-01T00:00:00Z (or another time of that day)",
        ),
        (
            appwrapper(annotations={"caspian.dev/deadline": "12h"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/deadline: '12h' is not an RFC 3339 "
            "time (e.g. 2026-11-22T18:00:00Z); '12h' is a length of time: give it as "
            "caspian.dev/complete-within",
        ),
        (
            appwrapper(annotations={"caspian.dev/complete-within": "2026-12-01T10:00:00Z"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/complete-within: "
            "'2026-12-01T10:00:00Z' is not a duration (e.g. 45m, 2h, 1h30m, 3d); "
            "'2026-12-01T10:00:00Z' is a time: give it as caspian.dev/deadline",
        ),
        (
            appwrapper(annotations={"caspian.dev/spokes": "paris,tokyo"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/spokes: unknown spoke(s) tokyo",
        ),
        (
            appwrapper(annotations={"caspian.dev/spokes": " , "}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/spokes: names no spoke: give some "
            "of california, frankfurt, paris, comma-separated, or remove it to allow any",
        ),
        (
            appwrapper(annotations={"caspian.dev/dedline": "2026-12-01T10:00:00Z"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/dedline: unknown Caspian annotation",
        ),
        (
            appwrapper().replace(
                "  - template:", "  - podSetInfos:\n    - nodeSelector: {zone: a}\n    template:"
            ),
            "jobs/extra.yaml: spec.components[0].podSetInfos: Kueue's admission of it on one "
            "cluster, as `kubectl get -o yaml` copies it: remove it",
        ),
        (
            appwrapper(annotations={"workload.codeflare.dev.appwrapper/retrylimit": "2"}),
            "jobs/extra.yaml: metadata.annotations.workload.codeflare.dev.appwrapper/retrylimit: "
            "unknown AppWrapper annotation, which nothing reads; did you mean "
            "workload.codeflare.dev.appwrapper/retryLimit? known: admissionGracePeriodDuration",
        ),
        (
            appwrapper(annotations={"caspian.dev/power-watts": "450W"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/power-watts: '450W' is not a "
            "number of watts (e.g. 450)",
        ),
        (
            appwrapper(annotations={"caspian.dev/power-watts": "-5"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/power-watts: '-5' must be a "
            "positive",
        ),
        (
            appwrapper(job_spec={"ttlSecondsAfterFinished": 60}),
            "jobs/extra.yaml: spec.components[0].template.spec.ttlSecondsAfterFinished: remove it",
        ),
        (
            # A hold written on the Job would be lost at the render, and the Job started.
            appwrapper(job_spec={"suspend": True}),
            "jobs/extra.yaml: spec.components[0].template.spec.suspend: the Job's suspend is "
            "Caspian's, which keeps it suspended until its start: to hold the job, set the "
            "AppWrapper's spec.suspend: true instead",
        ),
        (
            appwrapper().replace("kind: Job", "kind: Deployment"),
            "jobs/extra.yaml: spec.components[0].template: expected a batch/v1 Job, found "
            "batch/v1/Deployment",
        ),
        (
            appwrapper(resources={"requests": {"cpu": "two"}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.containers[0]"
            ".resources.requests[cpu]: 'two' is not a Kubernetes quantity",
        ),
        (
            appwrapper(resources={"limits": {"nvidia.com/gpu": "-1"}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.containers[0]"
            ".resources.limits[nvidia.com/gpu]: '-1' is negative",
        ),
        (
            appwrapper(pod_spec={"overhead": {"cpu": "lots"}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.overhead[cpu]: "
            "'lots' is not a Kubernetes quantity",
        ),
        (
            appwrapper(pod_spec={"resources": {"limits": {"memory": "-2Gi"}}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.resources"
            ".limits[memory]: '-2Gi' is negative",
        ),
        (
            appwrapper(resources={"limits": {"amd.com/gpu": "1"}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.containers[0]"
            ".resources.limits[amd.com/gpu]: Caspian plans GPUs as nvidia.com/gpu only",
        ),
        (
            appwrapper(
                pod_spec={
                    "initContainers": [
                        {
                            "name": "warm",
                            "image": "busybox",
                            "resources": {
                                "requests": {"nvidia.com/mig-1g.5gb": "1"},
                                "limits": {"nvidia.com/mig-1g.5gb": "1"},
                            },
                        }
                    ]
                }
            ),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.initContainers[0]"
            ".resources.requests[nvidia.com/mig-1g.5gb]: Caspian plans GPUs as nvidia.com/gpu",
        ),
        (
            job_annotated({"argocd.argoproj.io/hook": "PostSync"}),
            "jobs/extra.yaml: spec.components[0].template.metadata.annotations.argocd.argoproj.io"
            "/hook: remove it: a sync hook runs again at every sync",
        ),
        (
            job_annotated({"argocd.argoproj.io/sync-options": "ServerSideApply=true, Prune=false"}),
            "jobs/extra.yaml: spec.components[0].template.metadata.annotations.argocd.argoproj.io"
            "/sync-options: remove Prune=false: Caspian starts a Job",
        ),
        (
            appwrapper(annotations={"caspian.dev/power-watts": "4e7"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/power-watts: '4e7' is more than "
            "10,000,000 W: is it in watts?",
        ),
        (
            appwrapper(annotations={"caspian.dev/duration": "99999999999d"}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/duration: '99999999999d' is longer "
            "than 3650d",
        ),
        (
            appwrapper(pod_spec={"restartPolicy": "Always"}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.restartPolicy: "
            "'Always': Kubernetes runs a Job's pods only with Never or OnFailure; add "
            "restartPolicy: Never",
        ),
        (
            appwrapper(
                job_spec={"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "1"}}}
            ),
            "jobs/extra.yaml: spec.components[0].template.spec.selector: Kubernetes generates a "
            "Job's selector",
        ),
        (
            appwrapper(pod_spec={"nodeName": "gpu-07"}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.nodeName: 'gpu-07' "
            "binds every pod to one node of one cluster",
        ),
        (
            appwrapper(job_spec={"backoffLimit": -1}),
            "jobs/extra.yaml: spec.components[0].template.spec.backoffLimit: -1 is negative",
        ),
        (
            appwrapper(job_spec={"activeDeadlineSeconds": 0}),
            "jobs/extra.yaml: spec.components[0].template.spec.activeDeadlineSeconds: 0: "
            "Kubernetes requires more than 0",
        ),
        # The CRD leaves the wrapped Job open; Kubernetes' Job schema is not.
        (
            appwrapper(job_spec={"parallelism": "two"}),
            "jobs/extra.yaml: spec.components[0].template.spec.parallelism: 'two' is not of "
            "type 'integer'",
        ),
        # A misspelt field: Kubernetes would drop it (or refuse the Job), and what
        # it says would not be done.
        (
            appwrapper(job_spec={"backofLimit": 2}),
            "jobs/extra.yaml: spec.components[0].template.spec.backofLimit: unknown field, "
            "which Kubernetes would refuse or drop; did you mean backoffLimit?",
        ),
        (
            appwrapper_doc_with(spec={"suspended": True}),
            "jobs/extra.yaml: spec.suspended: unknown field, which Kubernetes would refuse or "
            "drop; did you mean suspend?",
        ),
        (
            appwrapper_doc_with(spec={"colour": "blue"}),
            "jobs/extra.yaml: spec.colour: unknown field, which Kubernetes would refuse or drop; "
            "known: components, managedBy, suspend",
        ),
        (  # Too many to name.
            appwrapper(pod_spec={"colour": "blue"}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.colour: unknown "
            "field, which Kubernetes would refuse or drop; check its spelling (`kubectl explain` "
            "lists the fields there)",
        ),
        (
            appwrapper_doc_with(metadata={"lables": {"team": "a"}}),
            "jobs/extra.yaml: metadata.lables: unknown field, which Kubernetes would refuse or "
            "drop; did you mean labels?",
        ),
        (
            appwrapper(pod_spec={"initContainers": {"name": "setup"}}),
            "jobs/extra.yaml: spec.components[0].template.spec.template.spec.initContainers: "
            "{'name': 'setup'} is not of type 'array'",
        ),
        (
            appwrapper(annotations={"caspian.dev/power-watts": 300}),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/power-watts: 300 is read as a "
            "number, not text: put it in quotes",
        ),
        (
            appwrapper(job_spec={"completions": -2}),
            "jobs/extra.yaml: spec.components[0].template.spec.completions: -2 is negative",
        ),
        (
            appwrapper().replace("kind: Job", "kind: Job\n      metadata: {namespace: other}"),
            "jobs/extra.yaml: spec.components[0].template.metadata.namespace: 'other' is not the "
            "AppWrapper's namespace 'batch'",
        ),
        (
            appwrapper().replace(
                "metadata:\n  name: extra", f"metadata:\n  name: extra\n  namespace: {'n' * 64}"
            ),
            f"jobs/extra.yaml: metadata.namespace: '{'n' * 64}' is not a valid namespace",
        ),
        (
            appwrapper().replace("name: extra", "name: extra\n  namespace: ml-team"),
            "jobs/extra.yaml: metadata.namespace: 'ml-team' is not among caspian.yaml's "
            "spec.namespaces (batch, media), the namespaces Argo CD's project admits",
        ),
        (
            appwrapper(name="Bad_Name"),
            "jobs/extra.yaml: metadata.name: 'Bad_Name' is not a DNS label: lower-case "
            "letters, digits and '-', e.g. 'bad-name'",
        ),
        (
            appwrapper().replace("metadata:\n  name: extra\n", "metadata:\n", 1),
            "jobs/extra.yaml: metadata.name: required: a DNS label (lower-case letters, digits "
            "and '-', at most 63)",
        ),
        (
            appwrapper(name="n" * 64),
            f"jobs/extra.yaml: metadata.name: '{'n' * 64}' is 64 characters: a DNS label has "
            "at most 63",
        ),
        (
            appwrapper().replace("metadata:\n  name: extra", "metadata:\n  name: 2024", 1),
            "jobs/extra.yaml: metadata.name: 2024 is read as a number, not text: put it in quotes",
        ),
        (  # a deadline written bare, the likeliest way to write one
            appwrapper().replace(
                "caspian.dev/duration: 1h", "caspian.dev/deadline: 2026-12-05T10:00:00Z"
            ),
            "jobs/extra.yaml: metadata.annotations.caspian.dev/deadline: 2026-12-05T10:00:00+00:00 "
            "is read as a time, not text: put it in quotes",
        ),
        (
            appwrapper(annotations={"nightly": True}),
            "jobs/extra.yaml: metadata.annotations.nightly: true is read as true or false, not "
            "text: put it in quotes",
        ),
        (
            appwrapper().replace("apiVersion: workload.codeflare.dev/v1beta2", "apiVersion: v1"),
            "jobs/extra.yaml: kind: expected workload.codeflare.dev/v1beta2 AppWrapper, found "
            "v1/AppWrapper",
        ),
        (  # a Kubernetes user's first file, most likely
            yaml.safe_dump(yaml.safe_load(appwrapper())["spec"]["components"][0]["template"]),
            "jobs/extra.yaml: kind: expected workload.codeflare.dev/v1beta2 AppWrapper, found "
            "batch/v1/Job: Caspian places AppWrappers, each holding one Job: wrap it (apiVersion: "
            "workload.codeflare.dev/v1beta2, kind: AppWrapper, the Job under "
            "spec.components[0].template)",
        ),
        (
            appwrapper().replace("kind: AppWrapper", "kind: Appwrapper"),
            "jobs/extra.yaml: kind: 'Appwrapper': kinds are read as written, in their case: "
            "write AppWrapper",
        ),
        (
            appwrapper().replace("codeflare.dev/v1beta2", "codeflare.dev/v1beta1"),
            "jobs/extra.yaml: apiVersion: 'workload.codeflare.dev/v1beta1': Caspian reads the "
            "AppWrapper of workload.codeflare.dev/v1beta2, with the Job under "
            "spec.components[0].template: write apiVersion: workload.codeflare.dev/v1beta2",
        ),
        (
            appwrapper().replace("apiVersion: workload.codeflare.dev/v1beta2\n", ""),
            "jobs/extra.yaml: apiVersion: required: write apiVersion: "
            "workload.codeflare.dev/v1beta2",
        ),
        (
            "replicas: 3\n",
            "jobs/extra.yaml: kind: no apiVersion and kind: an AppWrapper's are "
            "workload.codeflare.dev/v1beta2 and AppWrapper",
        ),
        (
            yaml.safe_dump({k: v for k, v in yaml.safe_load(appwrapper()).items() if k != "spec"}),
            "jobs/extra.yaml: spec: required: the AppWrapper's spec",
        ),
    ],
)
def test_a_bad_appwrapper_is_one_problem_naming_file_field_and_fix(
    text: str, expected: str
) -> None:
    fleet = fleet_with(jobs__extra=text)
    lines = problems_of(fleet)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    assert len(fleet.jobs) == 10  # every valid job is still there


def test_every_problem_of_an_appwrapper_is_named_at_once() -> None:
    doc = appwrapper_doc(
        annotations={
            "caspian.dev/duration": "1 hour",
            "caspian.dev/deadlines": "tomorrow",
            "caspian.dev/spokes": "paris, atlantis",
            "workload.codeflare.dev.appwrapper/retryLimit": "two",
            "workload.codeflare.dev.appwrapper/successTTLDuration": "a day",
            "caspian.dev/after": "extra",
        },
        job_spec={"ttlSecondsAfterFinished": 60},
        pod_spec={"restartPolicy": "Always"},
        resources={"requests": {"cpu": "lots", "cpus": "2"}},
    )
    fleet = fleet_with(jobs__extra=yaml.safe_dump(doc, sort_keys=False))
    job = "jobs/extra.yaml: spec.components[0].template.spec."
    container = job + "template.spec.containers[0].resources."
    annotation = "jobs/extra.yaml: metadata.annotations."
    expected = [
        job + "ttlSecondsAfterFinished: remove it",
        container + "requests[cpu]: 'lots' is not a Kubernetes quantity",
        job + "template.spec.restartPolicy: 'Always'",
        container + "requests[cpus]: 'cpus' is no resource Kubernetes knows",
        annotation + "caspian.dev/deadlines: unknown Caspian annotation",
        annotation + "caspian.dev/spokes: unknown spoke(s) atlantis",
        annotation + "caspian.dev/duration: '1 hour' is not a duration",
        annotation + "workload.codeflare.dev.appwrapper/retryLimit: 'two' is not a whole number",
        annotation + "caspian.dev/after: it names the job itself (batch/extra)",
        annotation + "workload.codeflare.dev.appwrapper/successTTLDuration: 'a day' is not",
    ]
    lines = problems_of(fleet)
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert len(fleet.jobs) == 10  # every valid job is still there


def test_a_bad_name_or_namespace_is_named_with_the_other_problems() -> None:
    doc = appwrapper_doc(
        "Bad_Name",
        annotations={"caspian.dev/duration": "1 hour"},
        resources={"requests": {"cpu": "lots"}},
    )
    doc["metadata"]["namespace"] = "ml-team"
    two = appwrapper_doc("Also_Bad")
    two["spec"]["components"] *= 2
    fleet = fleet_with(
        jobs__extra=yaml.safe_dump(doc, sort_keys=False),
        jobs__two=yaml.safe_dump(two, sort_keys=False),
    )
    container = "spec.components[0].template.spec.template.spec.containers[0].resources."
    expected = [
        "jobs/extra.yaml: metadata.name: 'Bad_Name' is not a DNS label",
        "jobs/extra.yaml: metadata.namespace: 'ml-team' is not among caspian.yaml's",
        f"jobs/extra.yaml: {container}requests[cpu]: 'lots' is not a Kubernetes quantity",
        "jobs/extra.yaml: metadata.annotations.caspian.dev/duration: '1 hour' is not a",
        "jobs/two.yaml: metadata.name: 'Also_Bad' is not a DNS label",
        "jobs/two.yaml: spec.components: Caspian places AppWrappers that wrap one batch/v1 Job",
    ]
    lines = problems_of(fleet)
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert len(fleet.jobs) == 10


def test_every_annotation_of_the_appwrapper_controller_is_taken() -> None:
    prefix = "workload.codeflare.dev.appwrapper/"
    durations = [
        "admissionGracePeriodDuration",
        "warmupGracePeriodDuration",
        "failureGracePeriodDuration",
        "retryPausePeriodDuration",
        "successTTLDuration",
        "deletionOnFailureGracePeriodDuration",
        "forcefulDeletionGracePeriodDuration",
    ]
    annotations = {prefix + name: "5m" for name in durations}
    annotations |= {
        prefix + "retryLimit": "2",
        prefix + "terminalExitCodes": "3",
        prefix + "retryableExitCodes": "137",
    }
    fleet = fleet_with(jobs__extra=appwrapper(annotations=annotations))
    assert problems_of(fleet) == []
    (job,) = [job for job in fleet.jobs if job.name == "extra"]
    assert (job.retry_limit, job.success_ttl, job.admission_grace) == (
        2,
        timedelta(minutes=5),
        timedelta(minutes=5),
    )


def test_a_job_without_parallelism_runs_one_pod_and_none_with_zero() -> None:
    one = {
        j.name: j for j in fleet_with(jobs__extra=appwrapper(job_spec={"parallelism": None})).jobs
    }
    none = {j.name: j for j in fleet_with(jobs__extra=appwrapper(job_spec={"parallelism": 0})).jobs}
    assert one["extra"].cpu > 0
    assert none["extra"].cpu == 0


def _job_of(name: str, raw: bytes):
    fleet = load_fleet({**template_files(), name: raw}, appwrapper_schema=crd.check_appwrapper)
    (job,) = [job for job in fleet.jobs if job.source == name]
    return job


def test_an_appwrapper_in_json_is_read_as_its_yaml_twin_tabs_and_all() -> None:
    doc = appwrapper_doc("twin", annotations={"caspian.dev/deadline": "2026-12-09T10:00:00Z"})
    from_json = _job_of("jobs/twin.json", json.dumps(doc, indent="\t").encode())
    from_yaml = _job_of("jobs/twin.yaml", yaml.safe_dump(doc).encode())
    assert from_json.model_dump(exclude={"source"}) == from_yaml.model_dump(exclude={"source"})


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"kind": "AppWrapper",\n "spec": {}\n "x": 1}', "not valid JSON: Expecting ',' "),
        (b'{"kind": "AppWrapper",\n"kind": "Job"}', "key 'kind' is given twice in one object"),
        (b"\xff\xfe{", "not valid JSON: "),
        (b"[1, 2]", "expected a mapping (an AppWrapper object)"),
    ],
)
def test_a_broken_json_file_says_where_and_why(raw: bytes, said: str) -> None:
    fleet = load_fleet(
        {**template_files(), "jobs/broken.json": raw}, appwrapper_schema=crd.check_appwrapper
    )
    (problem,) = [p.line() for p in fleet.problems if p.file == "jobs/broken.json"]
    assert said in problem
    assert len(fleet.jobs) == 10  # the template's, every one


@pytest.mark.parametrize(
    ("others", "fix"),
    [
        (["job"], "found 2 components (batch/v1/Job, batch/v1/Job): split them into one"),
        (None, "this one wraps nothing: wrap the Job to run"),
    ],
)
def test_other_than_one_job_is_refused_with_the_way_out(others, fix) -> None:
    doc = appwrapper_doc()
    extra = {"job": doc["spec"]["components"][0]}
    if others is None:
        doc["spec"]["components"] = []
    else:
        doc["spec"]["components"] += [extra[other] for other in others]
    fleet = fleet_with(jobs__extra=yaml.safe_dump(doc))
    assert fix in problems_of(fleet)[0]
    assert "extra" not in {job.name for job in fleet.jobs}


def test_a_bad_document_in_a_multi_document_file_is_named_by_index() -> None:
    fleet = fleet_with(
        jobs__extra=appwrapper("one")
        + "---\n"
        + appwrapper("two", annotations={"caspian.dev/duration": "soon"})
    )
    assert [j.name for j in fleet.jobs if j.name in ("one", "two")] == ["one"]
    assert problems_of(fleet)[0].startswith("jobs/extra.yaml#1: metadata.annotations")


def _aliased(levels: int) -> str:
    """An AppWrapper whose containers' commands nest aliases `levels` deep, ten
    to a level: 1.4 KB at eight levels, standing for ten to the `levels` + 1 values."""
    lines = appwrapper("aliased").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "containers:") + 1
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    extra = [f"{indent}- {{name: c0, image: busybox, command: &a0 [{', '.join(['x'] * 10)}]}}"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        extra.append(
            f"{indent}- {{name: c{level}, image: busybox, command: &a{level} [{aliases}]}}"
        )
    return "\n".join([*lines[:at], *extra, *lines[at:]]) + "\n"


def test_aliases_that_expand_past_a_bound_are_refused_and_the_rest_loads() -> None:
    # Eight levels stood for a billion values: validating took over 120 s and 6.3 GiB.
    fleet = fleet_with(jobs__aliased=_aliased(6))
    assert problems_of(fleet) == [
        "jobs/aliased.yaml: not valid YAML: its aliases add 12,345,660 values to those "
        "written, more than 100,000: write the values out, or alias less (line 1, column 1)"
    ]
    assert len(fleet.jobs) == len(fleet_with().jobs)


def test_a_few_aliases_load_and_one_inside_its_own_anchor_is_refused() -> None:
    # A block reused by an alias is YAML people write: only a type is wrong here.
    assert "is not of type 'string'" in problems_of(fleet_with(jobs__aliased=_aliased(2)))[0]
    duration = "    caspian.dev/duration: 1h\n"
    looped = appwrapper("looped").replace("annotations:", "annotations: &m", 1)
    looped = looped.replace(duration, duration + "    again: *m\n", 1)
    [problem] = problems_of(fleet_with(jobs__looped=looped))
    assert "an alias inside its own anchor makes a value without end" in problem


def test_a_reason_quoting_a_huge_value_is_cut_to_its_ends() -> None:
    doc = appwrapper_doc("wordy")
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["containers"][0]["command"] = [[f"word-{i:05d}" for i in range(2_000)]]
    [problem] = problems_of(fleet_with(jobs__wordy=yaml.safe_dump(doc)))
    assert len(problem) < 1_200
    assert problem.startswith("jobs/wordy.yaml: spec.components[0].template.spec.template")
    assert "characters left out" in problem
    assert "is not of type 'string'" in problem[-100:]


def test_the_same_name_twice_keeps_the_first_and_names_both_files() -> None:
    fleet = fleet_with(jobs__zz_copy=appwrapper("etl-daily"))
    assert problems_of(fleet) == [
        "jobs/zz-copy.yaml: metadata.name: batch/etl-daily is already defined in "
        "jobs/etl-daily.yaml; give one of them another name"
    ]


def test_the_same_name_twice_keeps_the_file_caspian_placed_it_from() -> None:
    files = {**template_files(), "jobs/a-copy.yaml": appwrapper("etl-daily").encode()}
    check = crd.check_appwrapper
    first = load_fleet(files, appwrapper_schema=check)
    placed = {"batch/etl-daily": "jobs/etl-daily.yaml"}
    held = load_fleet(files, appwrapper_schema=check, held=placed)
    assert [j.source for j in first.jobs if j.name == "etl-daily"] == ["jobs/a-copy.yaml"]
    assert [j.source for j in held.jobs if j.name == "etl-daily"] == ["jobs/etl-daily.yaml"]
    assert problems_of(held) == [
        "jobs/a-copy.yaml: metadata.name: batch/etl-daily is already defined in "
        "jobs/etl-daily.yaml (where Caspian placed it from); give one of them another name"
    ]


@pytest.mark.parametrize(
    ("written", "grace"),
    [
        ("{}", timedelta(minutes=5)),
        ("{spokeDownGrace: 0}", timedelta(0)),
        ("{spokeDownGrace: 0s}", timedelta(0)),
        ("{spokeDownGrace: 1h30m}", timedelta(minutes=90)),
        ("{spokeDownGrace: null}", None),
    ],
)
def test_the_spoke_down_grace_may_be_zero_or_none(written, grace) -> None:
    fleet = fleet_with(caspian=POLICY_HEAD + f"spec: {written}\n")
    assert fleet.policy.spec.spoke_down_grace == grace


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"caspian": "apiVersion: caspian.dev/v1alpha1\nkind: Policy\nspec: {slott: 15m}\n"},
            "caspian.yaml: spec.slott: unknown field: did you mean slot?",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {solver: {name: highs, timelimit: 5s}}\n"},
            "caspian.yaml: spec.solver.timelimit: unknown field: did you mean timeLimit?",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {colour: red}\n"},
            "caspian.yaml: spec.colour: unknown field: check its spelling",
        ),
        (  # No far guess: a GPU is no cpu.
            {"caspian": POLICY_HEAD + "spec: {defaults: {requests: {gpu: 1}}}\n"},
            "caspian.yaml: spec.defaults.requests.gpu: unknown field: check its spelling",
        ),
        (
            {"caspian": "apiVersion: caspian.dev/v1alpha1\nkind: Policy\nspec: {slot: 7m}\n"},
            "caspian.yaml: spec.slot: slot must be whole minutes that divide an hour",
        ),
        (
            {"caspian": "apiVersion: caspian.dev/v1alpha1\nkind: Policy\nspec: {horizon: soon}\n"},
            "caspian.yaml: spec.horizon: 'soon' is not a duration",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {historyUrl: 'https://git.example/f/commits/main'}\n"},
            "caspian.yaml: spec.historyUrl: historyUrl must hold {path} once",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {historyUrl: 'git.example/{path}'}\n"},
            "caspian.yaml: spec.historyUrl: historyUrl must be an http(s) URL",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {slot: 1m, horizon: 3d}\n"},
            "caspian.yaml: spec.horizon: horizon / slot gives 4320 slots, more than "
            "2880: shorten the horizon or lengthen the slot",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {namespace: default, namespaces: [batch]}\n"},
            "caspian.yaml: spec: namespace 'default' is not among namespaces (batch): add it "
            "there, or name one of those",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {namespaces: []}\n"},
            "caspian.yaml: spec.namespaces: an empty list admits no job: list the namespaces "
            "Argo CD's AppProject admits, or leave it out to take any",
        ),
        ({"caspian": "apiVersion: [\n"}, "caspian.yaml: not valid YAML"),
        (
            {"caspian": POLICY_HEAD + "spec: {requeueUnscheduled: 0m}\n"},
            "caspian.yaml: spec.requeueUnscheduled: '0m' must be longer than zero",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {spokeDownGrace: soon}\n"},
            "caspian.yaml: spec.spokeDownGrace: 'soon' is not a duration",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {spokeDownGrace: -5m}\n"},
            "caspian.yaml: spec.spokeDownGrace: '-5m' is not a duration",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {requeueLimit: -1}\n"},
            "caspian.yaml: spec.requeueLimit: Input should be greater than or equal to 0, found -1",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {slot: 15m, horizon: 10m}\n"},
            "caspian.yaml: spec.horizon: 10m is shorter than one slot (15m): make the horizon "
            "at least the slot",
        ),
        (
            {"caspian": POLICY_HEAD + "spec: {namespaces: batch}\n"},
            "caspian.yaml: spec.namespaces: 'batch' is one value where a list is wanted: write "
            "[batch]",
        ),
        ({"caspian": None}, "caspian.yaml: missing"),
        (
            {"caspian": "- apiVersion: caspian.dev/v1alpha1\n"},
            "caspian.yaml: expected a mapping (apiVersion, kind, metadata, spec), found a list",
        ),
        (
            {"caspian": "42\n"},
            "caspian.yaml: expected a mapping (apiVersion, kind, metadata, spec), found 42",
        ),
    ],
)
def test_a_bad_policy_stops_everything_with_a_clear_line(changes, expected) -> None:
    with pytest.raises(FleetConfigError) as raised:
        fleet_with(**changes)
    assert raised.value.problems[0].line().startswith(expected), raised.value.problems[0].line()


@pytest.mark.parametrize("name", ["caspian.yml", "Caspian.yaml", "caspian.json"])
def test_a_policy_under_another_name_is_named_in_the_fix(name) -> None:
    files = template_files()
    files[name] = files.pop("caspian.yaml")
    with pytest.raises(FleetConfigError) as raised:
        load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    assert [p.line() for p in raised.value.problems] == [
        f"caspian.yaml: missing: rename {name} to it"
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris, labels: {tier: top gold}}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 4, memory: 1Gi}}\n"
            },
            "spokes/paris.yaml: metadata.labels: 'top gold' is not a label value",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: lyon}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 4, memory: 1Gi}}\n"
            },
            "spokes/paris.yaml: metadata.name: 'lyon' must match the file name",
        ),
        (
            {"spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\nspec: {carbon: {zone: FR}}\n"},
            "spokes/paris.yaml: spec.capacity: required field is missing",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: [32], memory: 1Gi}}\n"
            },
            "spokes/paris.yaml: spec.capacity.cpu: [32] is not a quantity: write a "
            "number or a string like 16Gi",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 8, memory: 1Gi}, power: {pue: 115}}\n"
            },
            "spokes/paris.yaml: spec.power.pue: Input should be less than or equal to 5, found 115",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: '-3', memory: 1Gi}}\n"
            },
            # As the file has it, not as the quantity it converts to (-3.0).
            "spokes/paris.yaml: spec.capacity.cpu: Input should be greater than or equal to 0, "
            "found '-3'",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, "
                "capacity: {cpu: 8, memory: 1Gi, nvidia.com/gpu: '1.5'}}\n"
            },
            "spokes/paris.yaml: spec.capacity.nvidia.com/gpu: 1.5: nvidia.com/gpu comes in "
            "whole units",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 8, memory: 1Gi}, "
                "power: {wattsPerGpu: lots}}\n"
            },
            "spokes/paris.yaml: spec.power.wattsPerGpu: Input should be a valid number, unable "
            "to parse string as a number, found 'lots'",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR, provider: electricitymap}, "
                "capacity: {cpu: 8, memory: 1Gi}}\n"
            },
            "spokes/paris.yaml: spec.carbon.provider: Input should be 'embedded', 'constant', "
            "'electricitymaps', 'ukci', 'watttime' or 'carbonaware', found 'electricitymap' "
            "(did you mean 'electricitymaps'?)",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 8, memory: 1Gi}, kubeContext: 5}\n"
            },
            "spokes/paris.yaml: spec.kubeContext: 5 is read as a number, not text: put it in "
            "quotes",
        ),
        (  # YAML 1.1 reads yes as true: a number it is not.
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 8, memory: 1Gi}, kubeContext: yes}\n"
            },
            "spokes/paris.yaml: spec.kubeContext: true is read as true or false, not text: put it "
            "in quotes",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {zone: FR}, capacity: {cpu: 8, memory: 1Gi},\n"
                "  maintenance: {start: '2026-12-05T22:00:00Z', end: '2026-12-06T02:00:00Z'}}\n"
            },
            "spokes/paris.yaml: spec.maintenance: one entry where a list is wanted: begin it "
            "with '- '",
        ),
        (
            {
                "spokes__paris": SPOKE_HEAD + "metadata: {name: paris}\n"
                "spec: {carbon: {provider: ukci, zone: GB-london, region: london},\n"
                "  capacity: {cpu: 8, memory: 1Gi}}\n"
            },
            "spokes/paris.yaml: spec.carbon.region: 'london' is not a UK region id: give its "
            "number, 1 to 18 (1 North Scotland ... 13 London",
        ),
        (
            {"spokes__paris": "paris\n"},
            "spokes/paris.yaml: expected a mapping (apiVersion, kind, metadata, spec), "
            "found a string",
        ),
    ],
)
def test_a_bad_spoke_file_is_a_problem_of_its_own(changes, expected) -> None:
    fleet = fleet_with(**changes)
    assert problems_of(fleet)[0].startswith(expected), problems_of(fleet)
    assert {p.file for p in fleet.problems} == {"spokes/paris.yaml"}
    assert fleet.broken_spokes == {"paris": "spokes/paris.yaml"}
    assert "paris" not in [spoke.name for spoke in fleet.spokes] and fleet.spokes
    # Every job is still read, and may still go there once the file loads.
    assert len(fleet.jobs) == len(fleet_with().jobs)
    assert all("paris" in job.allowed_spokes for job in fleet.jobs)


def test_with_no_spoke_that_loads_nothing_can_be_planned() -> None:
    names = [s.name for s in fleet_with().spokes]
    broken = {f"spokes__{name}": "not: [valid" for name in names}
    with pytest.raises(FleetConfigError) as raised:
        fleet_with(**broken)
    assert sorted(p.file for p in raised.value.problems) == [f"spokes/{n}.yaml" for n in names]
    with pytest.raises(FleetConfigError, match=r"no spokes: add spokes/<name>\.yaml"):
        fleet_with(**dict.fromkeys(broken))


def test_a_job_may_name_or_select_a_spoke_whose_file_is_broken() -> None:
    """Its labels are not known, so it is not refused: it waits for the file."""
    select = {"caspian.dev/spoke-selector": "tier=gold"}
    fleet = fleet_with(
        spokes__paris="not: [valid",
        jobs__named=appwrapper("named", annotations={"caspian.dev/spokes": "paris"}),
        jobs__selects=appwrapper("selects", annotations=select),
    )
    allowed = {job.name: job.allowed_spokes for job in fleet.jobs}
    assert allowed["named"] == ("paris",)
    assert allowed["selects"] == ("paris",)  # no spoke that loads is labelled tier=gold
    assert [p.file for p in fleet.problems] == ["spokes/paris.yaml"]
    refused = fleet_with(jobs__selects=appwrapper("selects", annotations=select))
    assert problems_of(refused)[0].startswith(
        "jobs/selects.yaml: metadata.annotations.caspian.dev/spoke-selector: selects none"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", 0.5), ("4", 4.0), ("16Gi", 16 * 2**30), ("1.5G", 1.5e9), ("2e3", 2000.0), (3, 3.0)],
)
def test_kubernetes_quantities(text, value) -> None:
    assert quantities.quantity(text) == value


@pytest.mark.parametrize("value", ["1e999", "9Ei", 1e300, float("nan")])
def test_a_quantity_beyond_what_kubernetes_holds_is_refused(value) -> None:
    with pytest.raises(ValueError, match=r"larger than any Kubernetes quantity"):
        quantities.quantity(value)


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "1900-01-01T00:00:00Z"]
)
def test_a_time_out_of_range_is_refused_not_a_crash(text) -> None:
    with pytest.raises(ValueError, match="is not a time between 1970 and 9000"):
        quantities.timestamp(text)


def test_a_duration_past_ten_years_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 3650d"):
        quantities.duration("99999999999d")
    assert quantities.duration("3650d") == timedelta(days=3650)


def test_times_print_in_utc_with_a_z() -> None:
    assert quantities.format_time(quantities.timestamp("1970-01-02T03:04:05+01:00")) == (
        "1970-01-02T02:04:05Z"
    )


@pytest.mark.parametrize(
    ("text", "minutes"), [("45m", 45), ("1h30m", 90), ("2d", 2880), ("90s", 1.5)]
)
def test_durations(text, minutes) -> None:
    assert quantities.duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["", "1x", "h", "0m", "1h 30"])
def test_bad_durations_say_what_a_good_one_looks_like(text) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 45m"):
        quantities.duration(text)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


_LEFT_OUT = object()


@pytest.mark.parametrize("path", ["jobs/train-resnet.yaml", "spokes/paris.yaml"])
@pytest.mark.parametrize("value", [None, [1], -1, _LEFT_OUT])
def test_no_value_anywhere_in_a_file_makes_loading_crash(path: str, value) -> None:
    """Each field of a template file in turn set to a value of the wrong shape,
    or left out: the file loads, or is problem lines about it alone, never an
    exception. Lists and nulls at odd places once crashed it, and an
    AppWrapper without its spec."""
    original = yaml.safe_load(template_files()[path])
    for where in list(_paths(original))[1:]:
        doc = yaml.safe_load(template_files()[path])
        node = doc
        for key in where[:-1]:
            node = node[key]
        if value is _LEFT_OUT:
            del node[where[-1]]
        else:
            node[where[-1]] = value
        change = {
            path.removesuffix(".yaml").replace("/", "__").replace("-", "_"): yaml.safe_dump(doc)
        }
        fleet = fleet_with(**change)
        assert {p.file for p in fleet.problems} <= {path}, where
        if path.startswith("spokes/"):
            assert bool(fleet.problems) == ("paris" in fleet.broken_spokes), where


@pytest.mark.parametrize(
    ("seconds", "annotation", "minutes"),
    [
        (1800, None, 30),  # shorter than the policy's 1h: the Job is ended by then
        (7200, None, 60),  # longer: the default stands
        (9 * 10**18, None, 60),  # "never", as some write it
        (1800, "45m", 30),  # its own duration too: Kubernetes ends it after 30m all the same
        (3600, "45m", 45),  # its own, shorter, stands
    ],
)
def test_a_job_runs_at_most_its_active_deadline(seconds, annotation, minutes) -> None:
    doc = appwrapper_doc()
    doc["metadata"]["annotations"].pop("caspian.dev/duration")
    if annotation:
        doc["metadata"]["annotations"]["caspian.dev/duration"] = annotation
    doc["spec"]["components"][0]["template"]["spec"]["activeDeadlineSeconds"] = seconds
    fleet = fleet_with(jobs__extra=yaml.safe_dump(doc))
    assert problems_of(fleet) == []
    job = {j.name: j for j in fleet.jobs}["extra"]
    assert job.duration == timedelta(minutes=minutes)
    cut = annotation is not None and minutes * 60 == seconds
    assert job.duration_cut == (quantities.duration(annotation) if cut else None)


@pytest.mark.parametrize(
    ("not_before", "duration", "problem"),
    [
        ("2026-12-07T02:00:00Z", "1h", True),
        ("2026-12-06T06:00:00Z", "1h", True),  # at the deadline: no time at all
        ("2026-12-06T05:59:00Z", "1h", False),  # planned, late: a duration is an estimate
        ("2026-12-06T02:00:00Z", "4h", False),
    ],
)
def test_a_not_before_at_or_past_the_deadline_is_a_problem(not_before, duration, problem) -> None:
    window = {
        "caspian.dev/not-before": not_before,
        "caspian.dev/deadline": "2026-12-06T06:00:00Z",
        "caspian.dev/duration": duration,
    }
    fleet = fleet_with(jobs__extra=appwrapper(annotations=window))
    assert problems_of(fleet) == (
        [
            f"jobs/extra.yaml: metadata.annotations.caspian.dev/not-before: {not_before} is "
            "not before its caspian.dev/deadline 2026-12-06T06:00:00Z: no start meets it; "
            "move one of them"
        ]
        if problem
        else []
    )
    assert ("extra" in {j.name for j in fleet.jobs}) != problem


def test_a_file_left_out_for_its_suffix_is_a_problem_not_a_silence() -> None:
    files = template_files()
    paris = files["spokes/paris.yaml"]
    fleet = load_fleet(
        {
            **files,
            "jobs/Train.YAML": appwrapper("train-caps").encode(),
            "jobs/notes.md": b"# not a job\n",
            "spokes/lyon.json": paris.replace(b"name: paris", b"name: lyon"),
            "spokes/nice.YAML": paris.replace(b"name: paris", b"name: nice"),
        },
        appwrapper_schema=crd.check_appwrapper,
    )
    assert problems_of(fleet) == [
        "spokes/lyon.json: spoke files end in .yaml: rename it spokes/lyon.yaml",
        "spokes/nice.YAML: spoke files end in .yaml: rename it spokes/nice.yaml",
        "jobs/Train.YAML: Caspian reads AppWrappers from files ending in .yaml, .yml or "
        ".json, in lower case: rename it jobs/Train.yaml",
    ]
    # Jobs that name them wait for them, as for any spoke whose file does not load.
    assert set(fleet.broken_spokes) == {"lyon", "nice"}


def test_an_appwrapper_or_a_spoke_outside_jobs_and_spokes_is_named_not_left_out() -> None:
    files = template_files()
    paris = files["spokes/paris.yaml"]
    lyon = paris.replace(b"name: paris", b"name: lyon")
    as_json = json.dumps(appwrapper_doc("in-json"), indent=2).encode()
    fleet = load_fleet(
        {
            **files,
            "train.yaml": appwrapper("at-top").encode(),
            "job/train.yaml": appwrapper("in-job").encode(),
            "Jobs/etl.yml": appwrapper("in-capitals").encode(),
            "appwrappers/sweep.json": as_json,
            "spoke/lyon.yml": lyon,
            # Not named: no AppWrapper, or a directory named like none of Caspian's,
            # or too deep to be a slip.
            "renovate.json": b'{"extends": ["config:recommended"]}\n',
            "kustomization.yaml": b"resources: [rendered/paris]\n",
            "docs/example.yaml": appwrapper("example").encode(),
            "job/old/train.yaml": appwrapper("archived").encode(),
            ".github/workflows/jobs.yaml": b"jobs: {}\n",
        },
        appwrapper_schema=crd.check_appwrapper,
    )
    move = "where Caspian reads none, so it is left out: move it there"
    assert problems_of(fleet) == [
        f"Jobs/etl.yml: kind: an AppWrapper outside jobs/, {move} (git mv Jobs/etl.yml "
        "jobs/etl.yml)",
        "appwrappers/sweep.json: kind: an AppWrapper outside jobs/, "
        f"{move} (git mv appwrappers/sweep.json jobs/sweep.json)",
        f"job/train.yaml: kind: an AppWrapper outside jobs/, {move} (git mv job/train.yaml "
        "jobs/train.yaml)",
        f"spoke/lyon.yml: kind: a spoke outside spokes/, {move} (git mv spoke/lyon.yml "
        "spokes/lyon.yaml)",
        f"train.yaml: kind: an AppWrapper outside jobs/, {move} (git mv train.yaml "
        "jobs/train.yaml)",
    ]
    assert {j.name for j in fleet.jobs} == {j.name for j in fleet_with().jobs}
    assert "lyon" not in {s.name for s in fleet.spokes} and not fleet.broken_spokes


def test_a_spoke_in_jobs_and_an_appwrapper_in_spokes_are_each_one_line_saying_where() -> None:
    files = template_files()
    fleet = load_fleet(
        {
            **files,
            "jobs/lyon.yml": files["spokes/paris.yaml"].replace(b"name: paris", b"name: lyon"),
            "spokes/train.yaml": appwrapper("train").encode(),
        },
        appwrapper_schema=crd.check_appwrapper,
    )
    assert problems_of(fleet) == [
        "spokes/train.yaml: kind: an AppWrapper, in spokes/ where spoke files are: move it "
        "(git mv spokes/train.yaml jobs/train.yaml)",
        "jobs/lyon.yml: kind: a spoke, in jobs/ where AppWrappers are: move it (git mv "
        "jobs/lyon.yml spokes/lyon.yaml)",
    ]


def test_annotations_where_they_are_not_read_are_problems_not_ignored() -> None:
    doc = appwrapper_doc("misplaced")
    job = doc["spec"]["components"][0]["template"]
    doc["metadata"]["labels"] = {"caspian.dev/deadline": "tomorrow", "team": "ml"}
    doc["spec"]["components"][0]["annotations"] = {"caspian.dev/spokes": "paris"}
    job["metadata"] = {"annotations": {"caspian.dev/not-before": "2026-12-06T00:00:00Z"}}
    job["metadata"]["labels"] = {"caspian.dev/duration": "3h"}  # the AppWrapper says 1h
    job["spec"]["template"]["metadata"] = {
        "annotations": {"caspian.dev/power-watts": "300"},
        "labels": {"workload.codeflare.dev.appwrapper/retryLimit": "5"},
    }
    fleet = fleet_with(jobs__misplaced=yaml.safe_dump(doc))
    assert "misplaced" not in {j.name for j in fleet.jobs}
    moved = "read on the AppWrapper's own metadata.annotations alone, so ignored here"
    assert [line.split(": read on")[0] for line in problems_of(fleet)] == [
        "jobs/misplaced.yaml: metadata.labels.caspian.dev/deadline",
        "jobs/misplaced.yaml: spec.components[0].annotations.caspian.dev/spokes",
        "jobs/misplaced.yaml: spec.components[0].template.metadata.annotations."
        "caspian.dev/not-before",
        "jobs/misplaced.yaml: spec.components[0].template.metadata.labels.caspian.dev/duration",
        "jobs/misplaced.yaml: spec.components[0].template.spec.template.metadata.annotations."
        "caspian.dev/power-watts",
        "jobs/misplaced.yaml: spec.components[0].template.spec.template.metadata.labels."
        "workload.codeflare.dev.appwrapper/retryLimit",
    ]
    assert all(moved in line for line in problems_of(fleet))
    assert problems_of(fleet)[3].endswith("(the AppWrapper's says '1h'): remove it")
    # A copy of what the AppWrapper says (a Job Caspian rendered, pasted in) is no problem.
    del doc["metadata"]["labels"], job["spec"]["template"]["metadata"]
    del doc["spec"]["components"][0]["annotations"]
    del job["metadata"]["annotations"]
    doc["metadata"]["annotations"]["caspian.dev/duration"] = "3h"
    copied = fleet_with(jobs__misplaced=yaml.safe_dump(doc))
    (loaded,) = [j for j in copied.jobs if j.name == "misplaced"]
    assert loaded.duration == timedelta(hours=3)


def test_names_and_keys_with_control_characters_are_escaped_in_problem_lines() -> None:
    files = template_files()
    keyed = appwrapper("keyed").replace("spec:", 'spec:\n  "a\\nb": 1', 1)
    fleet = load_fleet(
        {
            **files,
            "jobs/a\rb.yaml": appwrapper("carriage").encode(),
            "spokes/\u2028lyon.yaml": files["spokes/paris.yaml"],
            "jobs/keyed.yaml": keyed.encode(),
        },
        appwrapper_schema=crd.check_appwrapper,
    )
    lines = problems_of(fleet)
    assert lines[:2] == [
        "jobs/a\\rb.yaml: its name holds a control character, so it is not read: rename it "
        "(git mv), as Kubernetes, Argo CD and Caspian's ledger write names",
        "spokes/\\u2028lyon.yaml: its name holds a control character, so it is not read: "
        "rename it (git mv), as Kubernetes, Argo CD and Caspian's ledger write names",
    ]
    assert lines[2].startswith("jobs/keyed.yaml: spec.a\\nb: unknown field")
    assert "carriage" not in {j.name for j in fleet.jobs}


SURROGATE_FIX = (
    'holds a lone UTF-16 surrogate (an escape such as "\\udce9"), which no UTF-8 text can, '
    "nor Kubernetes keep: write the character itself"
)


def test_a_lone_surrogate_written_as_an_escape_is_a_problem_not_a_crash() -> None:
    # YAML's and JSON's escapes can write one; rendering the Job crashed every reconcile.
    files = template_files()
    doc = appwrapper_doc("escaped")
    doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "CITY", "value": "caf\udce9"}
    ]
    as_json = json.dumps(appwrapper_doc("keyed", annotations={"team\ud800": "x"}))
    spoke = files["spokes/paris.yaml"].replace(b"name: paris", b"name: lyon")
    spoke = spoke.replace(b"region: eu-west", b'region: "eu-\\ud800"')
    fleet = load_fleet(
        {
            **files,
            "jobs/escaped.yaml": yaml.safe_dump(doc).encode(),
            "jobs/keyed.json": as_json.encode(),
            "spokes/lyon.yaml": spoke,
        },
        appwrapper_schema=crd.check_appwrapper,
    )
    assert problems_of(fleet) == [
        f"spokes/lyon.yaml: metadata.labels.region: {SURROGATE_FIX}",
        "jobs/escaped.yaml: spec.components[0].template.spec.template.spec.containers[0].env[0]"
        f".value: {SURROGATE_FIX}",
        f"jobs/keyed.json: metadata.annotations: {SURROGATE_FIX}",
    ]
    assert {j.name for j in fleet.jobs} == {j.name for j in fleet_with().jobs}
    # Printed, any surrogate comes escaped: a file name's undecodable byte as that byte.
    assert (printable("a\ud800"), printable("caf\udce9")) == ("a\\ud800", "caf\\xe9")
