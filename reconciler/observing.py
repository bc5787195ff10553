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


class StatusFilledIn:
    """`spokes` observes each spoke; where it could only take the spoke file's word
    (no kubeContext), `status` says how Caspian's Jobs there are doing, and
    which make no pod: the hub's Argo CD for spokes Caspian may not ask."""

    def __init__(self, spokes: Observer, status: Observer) -> None:
        self.spokes = spokes
        self.status = status

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        states = self.spokes.observe(fleet)
        if all(state.source != "declared" for state in states.values()):
            return states
        reported = self.status.observe(fleet)
        return {
            name: (
                state.model_copy(
                    update={
                        "jobs": reported[name].jobs,
                        "podless": reported[name].podless,
                        "source": reported[name].source,
                    }
                )
                if state.source == "declared" and name in reported
                else state
            )
            for name, state in states.items()
        }
