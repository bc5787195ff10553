"""What a job's pods need from the cluster they run on: the claims, ConfigMaps,
Secrets and classes they name, room under their namespace's ResourceQuotas, and a
Kubernetes that serves the fields its Job sets. A spoke without it is not used
for the job."""

from __future__ import annotations

import math

import pytest
import yaml

from reconciler import kubeversions
from reconciler.admission import QuotaScope, ScopedQuota
from reconciler.explaining import explain
from reconciler.pods import Resources
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper_doc
from tests.fleet.test_companions import CONFIG, wrapping
from tests.reconcile.test_lifecycle import entries, step


def _needing_a_claim() -> dict[str, bytes]:
    doc = appwrapper_doc("trainer", annotations={"caspian.dev/spokes": "paris,frankfurt"})
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "checkpoints"}}]
    return {**template_files(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}


def test_a_job_goes_only_where_the_claim_its_pods_need_is() -> None:
    has = {"objects": {"PersistentVolumeClaim batch": frozenset({"checkpoints"})}}
    lacks = {"objects": {"PersistentVolumeClaim batch": frozenset({"scratch"})}}
    decision, _ = step(_needing_a_claim(), now=NOW, states={"paris": lacks, "frankfurt": has})
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"] == {
        "paris": "its pods need PersistentVolumeClaim batch/checkpoints, and it is not there"
    }
    nowhere, _ = step(_needing_a_claim(), now=NOW, states={"paris": lacks, "frankfurt": lacks})
    waits = entries(nowhere)["batch/trainer"]
    assert waits.phase == "Pending"
    assert waits.reason.startswith(
        "no spoke it may use can take it: paris (its pods need PersistentVolumeClaim "
        "batch/checkpoints, and it is not there); frankfurt ("
    )
    # A cluster's own kinds are named without a namespace.
    doc = yaml.safe_load(_needing_a_claim()["jobs/trainer.yaml"])
    doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]["priorityClassName"] = (
        "low"
    )
    files = {**_needing_a_claim(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}
    classes = {"PriorityClass": frozenset({"low"})}
    states = {"paris": {"objects": {**has["objects"], "PriorityClass": frozenset()}}}
    states["frankfurt"] = {"objects": {**has["objects"], **classes}}
    by_class, _ = step(files, now=NOW, states=states)
    assert by_class.missing["batch/trainer"] == {
        "paris": "its pods need PriorityClass low, and it is not there"
    }
    # Where the spoke's objects are not known (declared capacity), nothing is checked.
    unknown, _ = step(_needing_a_claim(), now=NOW)
    assert entries(unknown)["batch/trainer"].phase in ("Planned", "Dispatched")
    assert unknown.missing == {}


def test_a_job_goes_only_where_the_secret_its_pods_read_is() -> None:
    doc = appwrapper_doc("trainer", annotations={"caspian.dev/spokes": "paris,frankfurt"})
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t"}}}
    ]
    files = {**template_files(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}
    has = {"objects": {"Secret batch": frozenset({"hf-token"})}}
    lacks = {"objects": {"Secret batch": frozenset({"registry"})}}
    decision, _ = step(files, now=NOW, states={"paris": lacks, "frankfurt": has})
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"] == {
        "paris": "its pods need Secret batch/hf-token, and it is not there"
    }
    # A spoke that does not let Caspian list Secrets (the default) is not held
    # to it, and `explain` says what was not checked there.
    forbidden = {"objects": {}, "unread": ("Secrets in batch",)}
    unknown, _ = step(files, now=NOW, states={"paris": forbidden, "frankfurt": lacks})
    placed = entries(unknown)["batch/trainer"]
    assert placed.spoke == "paris"
    why = (
        "not checked that Secret batch/hf-token is there: Caspian may not list Secrets in "
        "batch (deploy/spoke-rbac-secrets.yaml grants it)"
    )
    assert unknown.unchecked == {"batch/trainer": {"paris": why}}
    assert f"on paris, {why}" in explain(unknown, placed).notes
    # Of a spoke it does not go to, that is not said.
    elsewhere, _ = step(files, now=NOW, states={"paris": has, "frankfurt": forbidden})
    placed = entries(elsewhere)["batch/trainer"]
    assert placed.spoke == "paris"
    assert "frankfurt" in elsewhere.unchecked["batch/trainer"]
    assert not any("not checked" in note for note in explain(elsewhere, placed).notes)


def test_a_job_larger_than_a_spokes_quota_for_its_namespace_is_not_placed_there() -> None:
    # climate-sim asks for 24 cpu at once; paris's quota for batch allows 16 in all.
    tight = {"quotas": {"batch": Resources(cpu=16, memory_bytes=math.inf, gpu=math.inf)}}
    roomy = {"quotas": {"batch": Resources(cpu=64, memory_bytes=math.inf, gpu=math.inf)}}
    decision, _ = step(template_files(), now=NOW, states={"paris": tight, "frankfurt": roomy})
    climate = entries(decision)["batch/climate-sim"]
    assert climate.spoke != "paris"
    assert decision.missing["batch/climate-sim"]["paris"] == (
        "its pods ask for 24 cpu (the quota: 16) at once, more than the ResourceQuotas of "
        "batch there let all pods request"
    )
    # A quota for another namespace holds nothing here.
    other = {
        "quotas": {"media": Resources(cpu=1, memory_bytes=1, gpu=0)},
        "quota_pods": {"media": 1},
    }
    free, _ = step(template_files(), now=NOW, states={"paris": other})
    assert "batch/climate-sim" not in free.missing
    assert_valid_plan(decision.instance, decision.plan)


def test_a_job_running_more_pods_at_once_than_a_quota_lets_its_namespace_hold_goes_elsewhere() -> (
    None
):
    # render-frames runs 8 pods at once: where batch may hold 6, two would be refused.
    decision, _ = step(template_files(), now=NOW, states={"paris": {"quota_pods": {"batch": 6}}})
    assert decision.missing["batch/render-frames"]["paris"] == (
        "it runs 8 pods at once, more than the ResourceQuotas of batch there let it hold (6)"
    )
    assert entries(decision)["batch/render-frames"].spoke != "paris"
    assert "batch/etl-daily" not in decision.missing  # one pod at a time
    assert_valid_plan(decision.instance, decision.plan)
    # Room for 8 is room enough.
    roomy, _ = step(template_files(), now=NOW, states={"paris": {"quota_pods": {"batch": 8}}})
    assert "batch/render-frames" not in roomy.missing
    # A quota with scopes holds it only where it counts its pods (not BestEffort).
    scope = QuotaScope(scope="NotBestEffort")
    counted = ScopedQuota(name="batch/sized", scopes=(scope,), most={"pods": 4})
    scoped, _ = step(
        template_files(), now=NOW, states={"paris": {"scoped_quotas": {"batch": (counted,)}}}
    )
    assert "8 pods at once" in scoped.missing["batch/render-frames"]["paris"]
    other = counted.model_copy(update={"scopes": (QuotaScope(scope="BestEffort"),)})
    ignored, _ = step(
        template_files(), now=NOW, states={"paris": {"scoped_quotas": {"batch": (other,)}}}
    )
    assert "batch/render-frames" not in ignored.missing


def _with_job_fields(**fields) -> dict[str, bytes]:
    """The template fleet and a trainer for paris or frankfurt whose Job's spec
    sets `fields`."""
    doc = appwrapper_doc("trainer", annotations={"caspian.dev/spokes": "paris,frankfurt"})
    doc["spec"]["components"][0]["template"]["spec"].update(fields)
    return {**template_files(), "jobs/trainer.yaml": yaml.safe_dump(doc).encode()}


SUCCESS_POLICY = {
    "completionMode": "Indexed",
    "completions": 4,
    "parallelism": 4,
    "successPolicy": {"rules": [{"succeededIndexes": "0"}]},
}


def test_a_job_goes_only_where_kubernetes_serves_the_fields_its_job_sets() -> None:
    # A success policy is served from 1.31: an older API server drops it, and
    # the Job would run all its indexes there, not stop at the first.
    states = {
        "paris": {"kubernetes_version": (1, 29)},
        "frankfurt": {"kubernetes_version": (1, 31)},
    }
    decision, _ = step(_with_job_fields(**SUCCESS_POLICY), now=NOW, states=states)
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.missing["batch/trainer"] == {
        "paris": "it runs Kubernetes 1.29, which does not serve what its Job sets: "
        "spec.successPolicy (Kubernetes 1.31); its API server would drop or refuse it"
    }
    assert_valid_plan(decision.instance, decision.plan)
    # Both too old: it waits, saying why for each.
    old = {name: {"kubernetes_version": (1, 30)} for name in ("paris", "frankfurt")}
    nowhere, _ = step(_with_job_fields(**SUCCESS_POLICY), now=NOW, states=old)
    waits = entries(nowhere)["batch/trainer"]
    assert waits.phase == "Pending"
    assert "paris (it runs Kubernetes 1.30, which does not serve" in waits.reason
    # A Job without such fields goes anywhere; a version not known checks nothing.
    plain, _ = step(_with_job_fields(), now=NOW, states=old)
    assert "batch/trainer" not in plain.missing
    unknown, _ = step(_with_job_fields(**SUCCESS_POLICY), now=NOW)
    assert "batch/trainer" not in unknown.missing


def test_a_spoke_file_can_say_its_kubernetes_version_for_an_observer_that_cannot_ask() -> None:
    files = _with_job_fields(podReplacementPolicy="Failed")
    spoke = yaml.safe_load(files["spokes/paris.yaml"])
    spoke["spec"]["kubernetesVersion"] = "v1.28.9"
    files = {**files, "spokes/paris.yaml": yaml.safe_dump(spoke).encode()}
    decision, _ = step(files, now=NOW)
    assert decision.missing["batch/trainer"]["paris"].startswith(
        "it runs Kubernetes 1.28, which does not serve what its Job sets: "
        "spec.podReplacementPolicy (Kubernetes 1.29)"
    )
    # YAML reads 1.30 as the number 1.3: a problem line, not Kubernetes 1.3.
    spoke["spec"]["kubernetesVersion"] = 1.30
    files = {**files, "spokes/paris.yaml": yaml.safe_dump(spoke).encode()}
    broken, _ = step(files, now=NOW)
    assert broken.broken_spokes == {"paris": "spokes/paris.yaml"}
    said = [p.line() for p in broken.problems if p.file == "spokes/paris.yaml"]
    assert any(
        "spec.kubernetesVersion" in line and "write it quoted, e.g. '1.30'" in line for line in said
    ), said


@pytest.mark.parametrize(
    ("fields", "needs"),
    [
        ({"podFailurePolicy": {"rules": []}}, ("spec.podFailurePolicy", (1, 26))),
        ({"backoffLimitPerIndex": 1}, ("spec.backoffLimitPerIndex", (1, 29))),
        ({"podReplacementPolicy": "Failed"}, ("spec.podReplacementPolicy", (1, 29))),
        ({"successPolicy": {"rules": []}}, ("spec.successPolicy", (1, 31))),
        (
            {"template": {"spec": {"initContainers": [{}, {"restartPolicy": "Always"}]}}},
            ("spec.template.spec.initContainers[1].restartPolicy", (1, 29)),
        ),
        ({"template": {"spec": {"resources": {}}}}, ("spec.template.spec.resources", (1, 34))),
    ],
)
def test_each_job_field_a_newer_kubernetes_serves_is_known(fields, needs) -> None:
    assert kubeversions.features(fields) == (needs,)
    assert kubeversions.too_new(kubeversions.features(fields), needs[1]) == ()


def test_a_clusters_version_reads_as_its_api_and_people_write_it() -> None:
    assert kubeversions.served("1", "29+") == (1, 29)
    assert kubeversions.served("1", "31") == (1, 31)
    assert kubeversions.served("1", "") is None and kubeversions.served(None, "29") is None
    assert kubeversions.parse("v1.30.2-eks-1a2b") == (1, 30)
    assert kubeversions.parse("1.9") == (1, 9)
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        kubeversions.parse("one.thirty")
    # Compared as numbers: 1.9 is older than 1.29.
    assert kubeversions.too_new(kubeversions.features({"backoffLimitPerIndex": 1}), (1, 9))


def test_a_configmap_the_appwrapper_wraps_is_not_asked_of_the_spoke() -> None:
    lacks = {"objects": {"ConfigMap batch": frozenset({"other"})}}
    states = {"paris": lacks, "frankfurt": lacks, "california": lacks}
    wrapped = {**template_files(), "jobs/trainer.yaml": wrapping(CONFIG).encode()}
    decision, _ = step(wrapped, now=NOW, states=states)
    assert entries(decision)["batch/trainer"].phase in ("Planned", "Dispatched")
    assert "batch/trainer" not in decision.missing
    # Without it wrapped, no spoke has it.
    alone = {**template_files(), "jobs/trainer.yaml": wrapping().encode()}
    nowhere, _ = step(alone, now=NOW, states=states)
    assert entries(nowhere)["batch/trainer"].phase == "Pending"
    assert (
        "its pods need ConfigMap batch/trainer-config" in entries(nowhere)["batch/trainer"].reason
    )


def test_explain_says_a_job_needs_a_configmap_another_job_brings() -> None:
    peers = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "e-peers"}}
    peers["spec"] = {"clusterIP": "None"}
    files = {
        **template_files(),
        "jobs/trainer.yaml": wrapping(CONFIG).encode(),
        "jobs/evaluator.yaml": wrapping(peers, name="evaluator").encode(),
    }
    decision, _ = step(files, now=NOW)
    notes = explain(decision, entries(decision)["batch/evaluator"]).notes
    assert (
        "its pods need ConfigMap batch/trainer-config, which jobs/trainer.yaml (batch/trainer) "
        "wraps: it is on a spoke only while that job is, and leaves with it; create it on the "
        "spokes, or wrap a copy of another name in this AppWrapper"
    ) in notes
    assert not [
        n for n in explain(decision, entries(decision)["batch/trainer"]).notes if "wraps:" in n
    ]
