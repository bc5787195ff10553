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
        kubernetes_version=spoke.spec.kubernetes_version,
    )


class StatusFilledIn:
    """`spokes` observes each spoke; `status` (the hub's Argo CD, or each
    spoke's own) says how Caspian's Jobs are doing where `spokes` could only
    take the spoke file's word (no kubeContext: a spoke Caspian may not ask),
    and, which only Argo CD knows, which Jobs it could not apply anywhere, and
    where it cannot sync at all."""

    def __init__(self, spokes: Observer, status: Observer) -> None:
        self.spokes = spokes
        self.status = status

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        states = self.spokes.observe(fleet)
        reported = self.status.observe(fleet)
        return {
            name: _filled_in(state, reported[name]) if name in reported else state
            for name, state in states.items()
        }


def _filled_in(state: SpokeState, reported: SpokeState) -> SpokeState:
    if state.source == "declared":
        return reported
    # A spoke that answers for itself keeps its own words, and its own list.
    filled = state.model_copy(
        update={
            "source": _both(state.source, reported.source),
            "unapplied": reported.unapplied,
            "said": reported.said | state.said,
            "sync_windows": reported.sync_windows,
            "no_application": reported.no_application,
        }
    )
    # Where Argo CD cannot sync, new work would not reach the spoke.
    if state.up and not reported.up:
        return filled.down(reported.reason, since=reported.down_since)
    return filled


def _both(own: str, reported: str) -> str:
    """A spoke's source where its own API answered and an Argo CD may have
    filled its Jobs' status in: "kube:kind-paris+argocd:kind-hub", say."""
    if not reported.startswith("declared+"):
        return own  # no Argo CD holds its Application
    return f"{own}+{reported.removeprefix('declared+')}"
