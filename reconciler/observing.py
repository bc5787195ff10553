"""What each spoke has free. Here: the capacity declared in spokes/<spoke>.yaml,
the fallback whenever no cluster is reachable (the embedded default, tests)."""

from __future__ import annotations

from typing import Protocol

from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet, Spoke


class Observer(Protocol):
    def observe(self, fleet: Fleet) -> dict[str, SpokeState]: ...


class DeclaredCapacity:
    """Every spoke is up and has exactly what its file declares."""

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        return {spoke.name: declared(spoke) for spoke in fleet.spokes}


def declared(spoke: Spoke) -> SpokeState:
    """A spoke as its file declares it: up, with its declared capacity."""
    capacity = spoke.spec.capacity
    return SpokeState(
        name=spoke.name,
        cpu=capacity.cpu,
        memory_bytes=capacity.memory,
        gpu=capacity.gpu,
        source="declared",
    )
