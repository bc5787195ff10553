"""A spoke's nodes in pools by their taints, so the optimizer counts only the room
a job can have.

The optimizer sees each spoke as one sum of capacity. Where some of a spoke's
nodes are tainted (a GPU pool tainted `nvidia.com/gpu`, say), a job that does
not tolerate the taint cannot use their room, though the sum counts it: it would
be planned into room it cannot have, and wait on the spoke. So where a spoke's
nodes carry more than one set of taints, each set becomes a spoke of its own in
the optimizer's instance: `paris[untainted]`, `paris[nvidia.com/gpu:NoSchedule]`.
A job may use the pools whose taints it tolerates and where one of its pods fits
a node it may use. Plans name the pools; `spoke_of` gives the spoke back, and the
ledger keeps the pool beside the spoke. A started Job holds its room in the pool
its pods run in, as the spoke reports, or else the one it was planned into.

Nodes apart in a label that some job's node selection reads (`gpu.product`,
say) are pools apart too, `paris[untainted; gpu.product=A100]`, so that a job
counts only the room of the nodes its selector allows; up to MOST_POOLS pools a
spoke, past which labels are left out and only taints split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from optimizer.model import Instance, Job, Slot, SpokeCapacity
from reconciler.decisions import SpokeState
from reconciler.fleet import JobRequest
from reconciler.pods import Node, Placement, Resources, Taint

# Nodes by what a pod must fit in and tolerate there: a spoke of a hundred nodes
# has a few such groups, and every job is held against each.
NodeGroups = Mapping[tuple[Resources, tuple[Taint, ...]], list[Node]]


def node_groups(nodes: Iterable[Node]) -> NodeGroups:
    groups: dict[tuple[Resources, tuple[Taint, ...]], list[Node]] = {}
    for node in nodes:
        groups.setdefault((node.allocatable, node.taints), []).append(node)
    return groups


def some_node_takes(pod: Resources, placement: Placement, groups: NodeGroups) -> bool:
    """Whether a node of `groups` can take the pod: big enough, allowed by its
    node selection, every taint tolerated."""
    return any(
        pod.fits_in(size)
        and all(placement.tolerates(t) for t in taints)
        and any(node.selected_by(placement) for node in nodes)
        for (size, taints), nodes in groups.items()
    )


def nodes_taking(pod: Resources, placement: Placement, groups: NodeGroups) -> int:
    """How many nodes of `groups` could each take one such pod."""
    return sum(
        sum(node.selected_by(placement) for node in nodes)
        for (size, taints), nodes in groups.items()
        if pod.fits_in(size) and all(placement.tolerates(t) for t in taints)
    )


class Pool(NamedTuple):
    """The nodes of one spoke alike in their taints and the labels jobs select
    on, and their free room."""

    name: str
    taints: tuple[Taint, ...]
    groups: NodeGroups
    free: Resources
    node_names: frozenset[str]


# More pools than this on one spoke (a selector on a label every node has its own
# value of, say) and the labels are left out: the optimizer's model grows with
# every pool.
MOST_POOLS = 8


def pools(state: SpokeState, *, keys: Iterable[str] = ()) -> tuple[Pool, ...]:
    """The pools of a spoke: its nodes by their taints and their values of the
    label `keys` (those some job's node selection reads). None where that makes
    one pool, or where the nodes' free room is not known (declared capacity)."""
    label_keys = sorted(set(keys))
    if any(node.free is None for node in state.nodes):
        return ()
    by_kind: dict[tuple[str, ...], list[Node]] = {}
    for node in state.nodes:
        taints = ",".join(sorted(t.describe() for t in node.taints)) or "untainted"
        labels = (f"{k}={node.labels[k]}" if k in node.labels else f"no {k}" for k in label_keys)
        by_kind.setdefault((taints, *labels), []).append(node)
    if len(by_kind) > MOST_POOLS and label_keys:
        return pools(state)
    if len(by_kind) < 2:
        return ()
    found = []
    for kind, nodes in sorted(
        by_kind.items(), key=lambda item: (item[0][0] != "untainted", item[0])
    ):
        free = [node.free for node in nodes if node.free is not None]
        found.append(
            Pool(
                name=f"{state.name}[{'; '.join(kind)}]",
                taints=nodes[0].taints,
                groups=node_groups(nodes),
                free=Resources(
                    cpu=sum(f.cpu for f in free),
                    memory_bytes=sum(f.memory_bytes for f in free),
                    gpu=sum(f.gpu for f in free),
                ),
                node_names=frozenset(node.name for node in nodes),
            )
        )
    return tuple(found)


def spoke_of(name: str) -> str:
    """The spoke of a name in a pooled instance (spoke names hold no '[')."""
    return name.split("[", 1)[0]


def split(
    instance: Instance,
    spokes: Mapping[str, SpokeState],
    jobs: Mapping[str, JobRequest],
    *,
    job_keys: Mapping[str, str],
) -> Instance:
    """`instance` with each spoke of several pools replaced by its pools, and each
    job's fixed and previous place in a pool of its spoke: the pool its Job (by
    job id, the namespace/name in `job_keys`) has pods in, where a spoke says. A
    job without its request (held as committed while its file is broken) may use
    every pool."""
    # The labels some job's node selection reads: nodes that differ in them are
    # pools apart, so that a selector counts only the room of the nodes it allows.
    keys = {
        key
        for request in jobs.values()
        for key in (
            *request.placement.node_selector,
            *(r.key for term in request.placement.terms for r in term if not r.field),
        )
    }
    by_spoke = {name: found for name, state in spokes.items() if (found := pools(state, keys=keys))}
    capacities: list[SpokeCapacity] = []
    for capacity in instance.spokes:
        if capacity.name not in by_spoke:
            capacities.append(capacity)
            continue
        # A down spoke has no nodes, so no pools: each pool's room is what is free.
        slots = instance.slots
        capacities.extend(
            SpokeCapacity(
                name=pool.name,
                zone=capacity.zone,
                cpu=(pool.free.cpu,) * slots,
                memory_bytes=(pool.free.memory_bytes,) * slots,
                gpu=(pool.free.gpu,) * slots,
            )
            for pool in by_spoke[capacity.name]
        )
    # Built anew, not copied, so that the instance's own checks run on the pools.
    return Instance(
        start=instance.start,
        slot_seconds=instance.slot_seconds,
        slots=instance.slots,
        spokes=tuple(capacities),
        intensity_g_per_kwh=instance.intensity_g_per_kwh,
        jobs=tuple(
            _pooled(job, jobs.get(job.id), by_spoke, spokes, job_key=job_keys.get(job.id))
            for job in instance.jobs
        ),
        weights=instance.weights,
    )


def _pooled(
    job: Job,
    request: JobRequest | None,
    by_spoke: Mapping[str, tuple[Pool, ...]],
    spokes: Mapping[str, SpokeState],
    *,
    job_key: str | None,
) -> Job:
    def usable(spoke: str) -> list[Pool]:
        found = by_spoke[spoke]
        if request is None:
            return list(found)
        return [p for p in found if some_node_takes(request.pod, request.placement, p.groups)]

    def pooled_slot(slot: Slot | None) -> Slot | None:
        """The pool its pods run in, as the spoke reports; else the pool the last
        plan chose, where it is still one; else a guess."""
        spoke = spoke_of(slot.spoke) if slot is not None else ""
        if slot is None or spoke not in by_spoke:
            return None if slot is None else slot.model_copy(update={"spoke": spoke})
        found = by_spoke[spoke]
        # A job that ran again is known by its latest Job's name, not its first.
        on = set(spokes[spoke].placed_on.get(job_key, ())) if job_key else set()
        if seen := [pool for pool in found if pool.node_names & on]:
            chosen = max(seen, key=lambda pool: len(pool.node_names & on))
        elif slot.spoke in {pool.name for pool in found}:
            return slot
        else:
            # Its room is held where it most likely runs: the pool it may use whose
            # taints it was written to tolerate.
            chosen = max(usable(spoke) or list(found), key=lambda pool: len(pool.taints))
        return slot.model_copy(update={"spoke": chosen.name})

    allowed: list[str] = []
    for spoke in job.allowed_spokes:
        if spoke in by_spoke:
            allowed.extend(pool.name for pool in usable(spoke))
        else:
            allowed.append(spoke)
    energy = dict(job.energy_kwh_per_slot)
    for spoke, found in by_spoke.items():
        if spoke in job.energy_kwh_per_slot:
            energy.update({pool.name: job.energy_kwh_per_slot[spoke] for pool in found})
    return job.model_copy(
        update={
            "allowed_spokes": tuple(allowed),
            "energy_kwh_per_slot": energy,
            "fixed": pooled_slot(job.fixed),
            "previous": pooled_slot(job.previous),
        }
    )
