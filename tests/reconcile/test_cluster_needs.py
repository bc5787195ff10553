"""What a job's pods need from the cluster they run on: the claims, ConfigMaps
and classes they name, and room under their namespace's ResourceQuotas. A spoke
without it is not used for the job."""

from __future__ import annotations

import math

import yaml

from reconciler.admission import QuotaScope, ScopedQuota
from reconciler.pods import Resources
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper_doc
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
