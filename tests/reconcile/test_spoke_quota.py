"""A spoke's quota: the most Caspian's jobs may hold there at once, whatever
room is free, so that the cluster keeps room for its other work."""

from __future__ import annotations

import yaml

from reconciler.pods import Node, Resources, Taint
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper, fleet_with, problems_of
from tests.reconcile.test_lifecycle import entries, step


def _with_quota(files, spoke: str, **quota) -> dict:
    doc = yaml.safe_load(files[f"spokes/{spoke}.yaml"])
    doc["spec"]["quota"] = quota
    return {**files, f"spokes/{spoke}.yaml": yaml.safe_dump(doc).encode()}


def _paris_use(decision, slot: int) -> float:
    """The cpu Caspian's jobs on paris hold in `slot`, by the plan."""
    jobs = {job.id: job for job in decision.instance.jobs}
    return sum(
        jobs[a.id].cpu
        for a in decision.plan.assignments
        if a.spoke.startswith("paris")
        and a.start_slot <= slot < a.start_slot + jobs[a.id].duration_slots
    )


def test_the_plan_keeps_caspian_within_a_spoke_s_quota() -> None:
    free, _ = step(template_files(), now=NOW)
    busiest = max(_paris_use(free, t) for t in range(free.window.slots))
    assert busiest > 24  # without a quota, paris holds more than it would allow
    files = _with_quota(template_files(), "paris", cpu="24", memory="64Gi")
    decision, _ = step(files, now=NOW)
    paris = next(s for s in decision.instance.spokes if s.name == "paris")
    assert set(paris.cpu) == {24} and set(paris.memory_bytes) == {64 * 2**30}
    assert set(paris.gpu) == {2}  # no quota on GPUs: the declared capacity stands
    assert all(_paris_use(decision, t) <= 24 for t in range(decision.window.slots))
    assert_valid_plan(decision.instance, decision.plan)


def test_a_quota_holds_for_all_the_pools_of_a_spoke_together() -> None:
    taint = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
    cpu_node = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=0)
    gpu_node = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)
    nodes = (
        *(Node(allocatable=cpu_node, free=cpu_node),) * 2,
        *(Node(allocatable=gpu_node, taints=(taint,), free=gpu_node),) * 2,
    )
    files = _with_quota(template_files(), "paris", cpu="32")
    decision, _ = step(files, now=NOW, states={"paris": {"cpu": 128, "gpu": 8, "nodes": nodes}})
    pools = [s for s in decision.instance.spokes if s.name.startswith("paris")]
    assert len(pools) == 2
    assert sum(pool.cpu[0] for pool in pools) == 32
    assert all(pool.cpu[0] == 16 for pool in pools)  # each its share of the 64 free
    assert sum(pool.gpu[0] for pool in pools) == 8  # no quota on GPUs
    assert_valid_plan(decision.instance, decision.plan)


def test_a_job_larger_than_the_quota_of_its_only_spoke_waits_and_says_why() -> None:
    files = _with_quota(template_files(), "paris", cpu="8")
    files["jobs/wide.yaml"] = appwrapper(
        "wide",
        annotations={"caspian.dev/spokes": "paris"},
        resources={"requests": {"cpu": "12", "memory": "1Gi"}},
    ).encode()
    decision, _ = step(files, now=NOW)
    wide = entries(decision)["batch/wide"]
    assert wide.phase == "Pending"
    assert wide.reason == (
        "no spoke it may use can take it: paris (it needs 12 cpu, more than its 8 cpu: the "
        "quota spokes/paris.yaml gives Caspian's jobs there (spec.quota))"
    )


def test_a_quota_that_does_not_read_is_a_problem_of_its_spoke_file() -> None:
    for quota, expected in (
        ("{cpu: lots}", "spokes/paris.yaml: spec.quota.cpu: 'lots' is not a Kubernetes quantity"),
        ("{cpu: -1}", "spokes/paris.yaml: spec.quota.cpu: "),
        ("{gpus: 2}", "spokes/paris.yaml: spec.quota.gpus: unknown field"),
    ):
        text = template_files()["spokes/paris.yaml"].decode() + f"  quota: {quota}\n"
        fleet = fleet_with(spokes__paris=text)
        assert any(line.startswith(expected) for line in problems_of(fleet)), problems_of(fleet)
        assert "paris" in fleet.broken_spokes
