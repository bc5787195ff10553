"""What each spoke has free. Here: the capacity declared in spokes/<spoke>.yaml,
the fallback whenever no cluster is reachable (the embedded default, tests)."""

from __future__ import annotations

from typing import Protocol

from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet


class Observer(Protocol):
    def observe(self, fleet: Fleet) -> dict[str, SpokeState]: ...


class DeclaredCapacity:
    """Every spoke is up and has exactly what its file declares."""

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        return {
            spoke.name: SpokeState(
                name=spoke.name,
                cpu=spoke.spec.capacity.cpu,
                memory_bytes=spoke.spec.capacity.memory,
                gpu=spoke.spec.capacity.gpu,
                source="declared",
            )
            for spoke in fleet.spokes
        }
