"""A spoke's nodes in pools by their taints and the labels jobs select on: the
optimizer counts for each job only the room of the nodes it may use, and a
started Job holds its room in the pool it runs in."""

from __future__ import annotations

from datetime import datetime, timedelta

from optimizer.model import Instance, Job, Slot, SpokeCapacity
from reconciler import pools, proposals
from reconciler.decisions import SpokeState
from reconciler.explaining import explain
from reconciler.fleet import JobRequest
from reconciler.pods import Node, Placement, Resources, Taint, Toleration
from reconciler.templates import template_files
from tests.conftest import NOW
from tests.reconcile.test_lifecycle import entries, step

GPU = Taint(key="nvidia.com/gpu", effect="NoSchedule")
SPOT = Taint(key="spot", value="yes", effect="NoExecute")
CPU_NODE = Resources(cpu=16, memory_bytes=64 * 2**30, gpu=0)
GPU_NODE = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)
HALF_FREE = Resources(cpu=8, memory_bytes=32 * 2**30, gpu=0)


def state(*nodes: Node) -> SpokeState:
    return SpokeState(name="paris", cpu=0, memory_bytes=0, gpu=0, nodes=nodes)


def test_a_spoke_whose_nodes_share_their_taints_is_one_pool() -> None:
    assert pools.pools(state(Node(allocatable=CPU_NODE, free=CPU_NODE))) == ()
    both_gpu = Node(allocatable=GPU_NODE, taints=(GPU,), free=GPU_NODE)
    assert pools.pools(state(both_gpu, both_gpu)) == ()
    # Without what is free on each node (declared capacity), no pools either.
    assert pools.pools(state(Node(allocatable=CPU_NODE), both_gpu)) == ()


def test_each_set_of_taints_is_a_pool_named_after_it_with_its_free_room() -> None:
    found = pools.pools(
        state(
            Node(allocatable=GPU_NODE, taints=(SPOT, GPU), free=GPU_NODE),
            Node(allocatable=CPU_NODE, free=CPU_NODE),
            Node(allocatable=CPU_NODE, free=HALF_FREE),
            Node(allocatable=GPU_NODE, taints=(GPU,), free=GPU_NODE),
        )
    )
    assert [(p.name, p.free.cpu, p.free.gpu) for p in found] == [
        ("paris[untainted]", 24, 0),
        ("paris[nvidia.com/gpu:NoSchedule]", 32, 4),
        ("paris[nvidia.com/gpu:NoSchedule,spot=yes:NoExecute]", 32, 4),
    ]
    assert {pools.spoke_of(p.name) for p in found} == {"paris"}


def instance_with(*jobs: Job) -> Instance:
    def capacity(name: str) -> SpokeCapacity:
        return SpokeCapacity(
            name=name, zone="FR", cpu=(1e3,) * 4, memory_bytes=(1e12,) * 4, gpu=(8,) * 4
        )

    return Instance(
        start=datetime(2026, 12, 1),
        slot_seconds=900,
        slots=4,
        spokes=(capacity("paris"), capacity("oslo")),
        intensity_g_per_kwh={"FR": (50.0,) * 8},
        jobs=jobs,
    )


def fixed_in(spoke: str, *, job_id: str = "batch/etl", gpu: float = 0) -> Job:
    """A job started at slot 0 on `spoke` (a spoke's name or one of its pools)."""
    return Job(
        id=job_id,
        cpu=4,
        memory_bytes=2**30,
        gpu=gpu,
        duration_slots=2,
        deadline_slot=4,
        allowed_spokes=("paris",),
        energy_kwh_per_slot={"paris": 0.1},
        fixed=Slot(spoke=spoke, start_slot=0),
    )


# paris with untainted nodes and a GPU pool; oslo, as declared capacity, one pool.
TWO_POOLS = {
    "paris": state(
        Node(name="cpu-1", allocatable=CPU_NODE, free=CPU_NODE),
        Node(name="gpu-1", allocatable=GPU_NODE, taints=(GPU,), free=GPU_NODE),
    ),
    "oslo": SpokeState(name="oslo", cpu=1e3, memory_bytes=1e12, gpu=8),
}
ONE_POOL = {**TWO_POOLS, "paris": SpokeState(name="paris", cpu=1, memory_bytes=1, gpu=0)}


def test_a_job_without_its_request_holds_its_room_in_the_most_tainted_pool() -> None:
    # A job held as committed while its file is broken: its tolerations are not
    # known, so its room is kept where a tolerating job would most likely run.
    held = fixed_in("paris", job_id="batch/held", gpu=1)
    pooled = pools.split(instance_with(held), TWO_POOLS, {}, job_keys={})
    assert [s.name for s in pooled.spokes] == [
        "paris[untainted]",
        "paris[nvidia.com/gpu:NoSchedule]",
        "oslo",
    ]
    (job,) = pooled.jobs
    assert job.fixed == Slot(spoke="paris[nvidia.com/gpu:NoSchedule]", start_slot=0)
    assert job.energy_kwh_per_slot["paris[nvidia.com/gpu:NoSchedule]"] == 0.1
    # Nothing to split: the same instance.
    assert pools.split(instance_with(held), ONE_POOL, {}, job_keys={}) == instance_with(held)


def test_a_started_job_keeps_the_pool_its_plan_chose_while_that_pool_is_there() -> None:
    def place(pool: str, spokes: dict[str, SpokeState]) -> str:
        (job,) = pools.split(instance_with(fixed_in(pool)), spokes, {}, job_keys={}).jobs
        assert job.fixed is not None
        return job.fixed.spoke

    assert place("paris[untainted]", TWO_POOLS) == "paris[untainted]"
    # Its pool is gone: a guess among the spoke's pools; no pools: the spoke.
    assert place("paris[spot=yes:NoExecute]", TWO_POOLS) == "paris[nvidia.com/gpu:NoSchedule]"
    assert place("paris[untainted]", ONE_POOL) == "paris"


def test_nodes_apart_in_a_label_jobs_select_on_are_pools_apart() -> None:
    def gpu_node(product: str, host: str) -> Node:
        labels = {"gpu.product": product, "kubernetes.io/hostname": host}
        return Node(allocatable=GPU_NODE, labels=labels, taints=(GPU,), free=GPU_NODE)

    paris = state(gpu_node("A100", "a"), gpu_node("A100", "b"), gpu_node("H100", "c"))
    # No job selects on a label: the GPU nodes are one pool, the spoke one pool.
    assert pools.pools(paris) == ()
    assert [(p.name, p.free.gpu) for p in pools.pools(paris, keys={"gpu.product"})] == [
        ("paris[nvidia.com/gpu:NoSchedule; gpu.product=A100]", 8),
        ("paris[nvidia.com/gpu:NoSchedule; gpu.product=H100]", 4),
    ]
    # A label of every node's own (a selector by host name) would make a pool of
    # each: past MOST_POOLS the labels are left out.
    many = state(*(gpu_node("A100", f"n{i}") for i in range(pools.MOST_POOLS + 1)))
    assert len(pools.pools(many, keys={"kubernetes.io/hostname"})) == 0
    fewer = state(*(gpu_node("A100", f"n{i}") for i in range(pools.MOST_POOLS)))
    assert len(pools.pools(fewer, keys={"kubernetes.io/hostname"})) == pools.MOST_POOLS


def test_a_started_job_holds_its_room_in_the_pool_its_pods_run_in() -> None:
    # It tolerates the GPU taint and needs no GPU: both pools may take it. Its
    # plan chose the untainted one, but the scheduler put its pod on the GPU node.
    request = JobRequest(
        id="batch/etl",
        name="etl",
        namespace="batch",
        source="jobs/etl.yaml",
        job_template={},
        template_hash="0a1b2c3d",
        cpu=4,
        memory_bytes=2**30,
        gpu=0,
        pod=Resources(cpu=4, memory_bytes=2**30, gpu=0),
        duration=timedelta(minutes=30),
        allowed_spokes=("paris",),
        placement=Placement(tolerations=(Toleration(operator="Exists"),)),
    )

    def pool_of(*, job_key: str, seen_as: str | None) -> str:
        paris = TWO_POOLS["paris"]
        if seen_as:
            paris = paris.model_copy(update={"placed_on": {seen_as: ("gpu-1",)}})
        (job,) = pools.split(
            instance_with(fixed_in("paris[untainted]")),
            {**TWO_POOLS, "paris": paris},
            {request.id: request},
            job_keys={request.id: job_key},
        ).jobs
        assert job.fixed is not None
        return job.fixed.spoke

    first, again = "batch/etl-0a1b2c3d", "batch/etl-0a1b2c3d-r1"
    assert pool_of(job_key=first, seen_as=None) == "paris[untainted]"
    assert pool_of(job_key=first, seen_as=first) == "paris[nvidia.com/gpu:NoSchedule]"
    # Run again after its first Job failed, it is known by its new Job's name: the
    # pods of the failed Job say nothing of where the new one runs.
    assert pool_of(job_key=again, seen_as=again) == "paris[nvidia.com/gpu:NoSchedule]"
    assert pool_of(job_key=again, seen_as=first) == "paris[untainted]"


def test_a_job_without_its_request_holds_its_room_where_its_pods_run() -> None:
    held = fixed_in("paris[untainted]", job_id="batch/held")
    paris = TWO_POOLS["paris"].model_copy(update={"placed_on": {"batch/held-1": ("gpu-1",)}})
    (job,) = pools.split(
        instance_with(held), {**TWO_POOLS, "paris": paris}, {}, job_keys={held.id: "batch/held-1"}
    ).jobs
    assert job.fixed == Slot(spoke="paris[nvidia.com/gpu:NoSchedule]", start_slot=0)


def test_a_started_job_keeps_its_pool_while_its_spoke_is_read_without_pools() -> None:
    """Its spoke down for a reconcile (no nodes read), or read as declared: the
    job runs where it ran, and its place is not new (pull-request mode would
    have proposed it for review)."""
    nodes = (
        Node(allocatable=CPU_NODE, labels={}, taints=(), free=CPU_NODE),
        Node(allocatable=GPU_NODE, labels={}, taints=(GPU,), free=GPU_NODE),
    )
    read = {"nodes": nodes, "cpu": 48.0, "memory_bytes": 192.0 * 2**30, "gpu": 4.0}
    first, files = step(template_files(), now=NOW, states={"paris": read})
    started = {e.id: e for e in entries(first).values() if e.phase == "Dispatched"}
    pooled = {job_id: e.pool for job_id, e in started.items() if e.spoke == "paris"}
    assert len(pooled) >= 2 and all(pooled.values())
    running = {"jobs": {e.job_key: "Running" for e in started.values()}}
    second, files = step(files, now=NOW + timedelta(minutes=15), states={"paris": read | running})
    down = {"up": False, "cpu": 0.0, "memory_bytes": 0.0, "gpu": 0.0, "reason": "unreachable"}
    third, _ = step(files, now=NOW + timedelta(minutes=30), states={"paris": down | running})
    after = entries(third)
    assert {job_id: after[job_id].pool for job_id in pooled} == pooled
    assert not set(pooled) & proposals.new_places(second.ledger, third.ledger)
    # Nor does explain, run with an observer that reads paris as declared,
    # call a running job's place not committed yet.
    declared, _ = step(files, now=NOW + timedelta(minutes=30), states={"paris": running})
    before = entries(second)
    for job_id in pooled:
        notes = explain(declared, entries(declared)[job_id], committed=before[job_id]).notes
        assert not [note for note in notes if "not committed yet" in note], notes
