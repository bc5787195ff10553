"""How much of one resource a pod takes from a node, and which nodes it may run
on, by the scheduler's rules.

The fleet (a Job's pod template, read as plain YAML) and the kube observer (other
people's pods, read through the client) both need the first, and an undercount
either way puts a job where it does not fit: so the rule lives here once. A pod
also runs on one node, one its node selection allows and whose taints it
tolerates, so a spoke with no such node big enough can never run it, however
much room its nodes have together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict


class InitContainer(NamedTuple):
    amount: float
    # restartPolicy: Always: a native sidecar, which keeps running beside the
    # containers instead of finishing before they start.
    sidecar: bool


def effective_request(
    *,
    containers: Iterable[float],
    init_containers: Iterable[InitContainer] = (),
    pod_level: float | None = None,
    overhead: float = 0.0,
) -> float:
    """One pod's request of one resource.

    Init containers run one at a time, each beside the sidecars started before
    it; the containers run beside every sidecar. The pod needs the most of any of
    those moments. A pod-level request, where the pod sets one, replaces that sum.
    The runtime's overhead comes on top either way.
    """
    sidecars = 0.0
    init_peak = 0.0
    for amount, sidecar in init_containers:
        if sidecar:
            sidecars += amount
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, sidecars + amount)
    running = sum(containers) + sidecars
    own = max(running, init_peak) if pod_level is None else pod_level
    return own + overhead


class Resources(BaseModel):
    """cpu, memory and GPUs: what one pod asks for, or what one node can give."""

    model_config = ConfigDict(frozen=True)

    cpu: float
    memory_bytes: float
    gpu: float

    def fits_in(self, node: Resources) -> bool:
        return (
            self.cpu <= node.cpu and self.memory_bytes <= node.memory_bytes and self.gpu <= node.gpu
        )

    def describe(self) -> str:
        memory = f"{self.memory_bytes / 2**30:g}Gi"
        return f"{self.cpu:g} cpu, {memory} memory, {self.gpu:g} GPUs"


class Taint(BaseModel):
    """A NoSchedule or NoExecute taint: a pod that does not tolerate it is not
    scheduled on the node. (PreferNoSchedule only steers, so it is not kept.)"""

    model_config = ConfigDict(frozen=True)

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "NoExecute"]

    def describe(self) -> str:
        value = f"={self.value}" if self.value else ""
        return f"{self.key}{value}:{self.effect}"


class Toleration(BaseModel):
    """One entry of a pod's tolerations, matched as the scheduler matches it: an
    empty key with Exists tolerates every taint, an empty effect every effect."""

    model_config = ConfigDict(frozen=True)

    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


class Node(BaseModel):
    """A usable node as a pod sees it: what it can give one pod, its labels, the
    taints a pod must tolerate to run there, and what is free on it now (None
    where only its size is known)."""

    model_config = ConfigDict(frozen=True)

    allocatable: Resources
    name: str = ""
    labels: dict[str, str] = {}
    taints: tuple[Taint, ...] = ()
    free: Resources | None = None

    def selected_by(self, placement: Placement) -> bool:
        return placement.allows(self.labels, name=self.name)


class Requirement(BaseModel):
    """One matchExpression of a required node affinity term, on a label; or, with
    `field`, one of its matchFields, on the node's name (metadata.name)."""

    model_config = ConfigDict(frozen=True)

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    values: tuple[str, ...] = ()
    field: bool = False

    def holds(self, labels: Mapping[str, str], *, name: str = "") -> bool:
        value = (name or None) if self.field else labels.get(self.key)
        match self.operator:
            case "In":
                return value in self.values
            case "NotIn":
                return value not in self.values
            case "Exists":
                return value is not None
            case "DoesNotExist":
                return value is None
        # Gt and Lt compare a label holding an integer with the one value given.
        try:
            label, bound = int(value or ""), int(self.values[0])
        except (ValueError, IndexError):
            return False
        return label > bound if self.operator == "Gt" else label < bound

    def describe(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{self.key} {self.operator}"
        return f"{self.key} {self.operator} ({', '.join(self.values)})"


class Placement(BaseModel):
    """Which nodes a pod may run on: its nodeSelector, the terms of its required
    node affinity (any one term, all of its expressions and fields), its
    tolerations, and whether it must have a node to itself among its Job's pods."""

    model_config = ConfigDict(frozen=True)

    node_selector: dict[str, str] = {}
    terms: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    # Each pod of the Job needs a node of its own: a required pod anti-affinity
    # on kubernetes.io/hostname against the Job's own pods (one per node, as
    # distributed training often asks).
    own_node: bool = False

    def allows(self, labels: Mapping[str, str], *, name: str = "") -> bool:
        if any(labels.get(key) != value for key, value in self.node_selector.items()):
            return False
        return not self.terms or any(all(r.holds(labels, name=name) for r in t) for t in self.terms)

    def tolerates(self, taint: Taint) -> bool:
        return any(toleration.tolerates(taint) for toleration in self.tolerations)

    def describe(self) -> str:
        parts = [f"{key}={value}" for key, value in sorted(self.node_selector.items())]
        if self.terms:
            parts.append(" or ".join(" and ".join(r.describe() for r in t) for t in self.terms))
        return "; ".join(parts)
