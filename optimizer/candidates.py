"""Where and when each job may start, and what each choice costs.

Shared by the MILP and the baselines so that they price a choice the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.model import RESOURCES, Instance, Job

# Among choices of equal carbon, start earlier: a thousandth of a gram per slot
# of delay breaks ties the same way on every solver and machine.
TIE_BREAK_G_PER_SLOT = 1e-3


@dataclass(frozen=True)
class Candidate:
    spoke: str
    start_slot: int
    carbon_g: float
    late_slots: int
    cost: float  # carbon + lateness penalty + move penalty


def carbon_of(instance: Instance, *, job: Job, spoke: str, start_slot: int) -> float:
    """Grams emitted by `job` on `spoke` from `start_slot`, over the slots the
    intensity series covers (a fixed job that started before the horizon counts
    from slot 0)."""
    zone = instance.spoke(spoke).zone
    series = instance.intensity_g_per_kwh[zone]
    first = max(start_slot, 0)
    last = min(start_slot + job.duration_slots, len(series))
    energy = job.energy_kwh_per_slot[spoke]
    return float(sum(series[first:last]) * energy)


def late_slots(job: Job, start_slot: int) -> int:
    return max(0, start_slot + job.duration_slots - job.deadline_slot)


def capacity_matrix(instance: Instance) -> dict[str, np.ndarray]:
    """Per spoke, a (resource x slot) array of capacity left for Caspian."""
    return {
        spoke.name: np.array([spoke.resource(r) for r in RESOURCES], dtype=float)
        for spoke in instance.spokes
    }


def demand_vector(job: Job) -> np.ndarray:
    return np.array([job.demand(r) for r in RESOURCES], dtype=float)


def fits_somewhere(job: Job, capacity: np.ndarray) -> bool:
    """Whether the job fits the spoke's capacity in at least one slot, ignoring others."""
    return bool((capacity.max(axis=1) >= demand_vector(job) - 1e-9).all())


def candidates(instance: Instance, job: Job) -> list[Candidate]:
    """Every (spoke, start) the job may take, priced; empty if none."""
    capacity = capacity_matrix(instance)
    result = []
    first = max(job.release_slot, 0)
    for spoke in job.allowed_spokes:
        if not fits_somewhere(job, capacity[spoke]):
            continue
        zone = instance.spoke(spoke).zone
        series = np.asarray(instance.intensity_g_per_kwh[zone], dtype=float)
        energy = job.energy_kwh_per_slot[spoke]
        for start in range(first, instance.slots):
            end = min(start + job.duration_slots, len(series))
            carbon = float(series[start:end].sum() * energy)
            late = late_slots(job, start)
            cost = (
                carbon + late * instance.weights.lateness_g_per_slot + start * TIE_BREAK_G_PER_SLOT
            )
            if job.previous is not None and (spoke, start) != (
                job.previous.spoke,
                job.previous.start_slot,
            ):
                cost += instance.weights.move_g
            result.append(Candidate(spoke, start, carbon, late, cost))
    return result


def why_unplaceable(instance: Instance, job: Job) -> str:
    """A sentence a user can act on, for a job with no candidate at all."""
    if job.release_slot >= instance.slots:
        return "deferred: not-before lies beyond the planning horizon"
    capacity = capacity_matrix(instance)
    need = demand_vector(job)
    parts = []
    for name, index in zip(RESOURCES, range(len(RESOURCES)), strict=True):
        best = max((capacity[s][index].max() for s in job.allowed_spokes), default=0.0)
        if need[index] > best + 1e-9:
            parts.append(f"{name} {_fmt(need[index])} > largest allowed spoke's {_fmt(best)}")
    if parts:
        return "no allowed spoke is large enough: " + "; ".join(parts)
    return "no allowed spoke"


def defer_cost(instance: Instance, job: Job) -> float:
    """Cost of leaving a job unplaced: above the worst cost of any placement inside
    the horizon, so the solver defers only when capacity leaves no other choice."""
    peak = max(max(series) for series in instance.intensity_g_per_kwh.values())
    worst_carbon = max(job.energy_kwh_per_slot.values(), default=0.0) * peak * job.duration_slots
    worst_late = instance.weights.lateness_g_per_slot * (instance.slots + job.duration_slots)
    return 2 * (worst_carbon + worst_late + instance.weights.move_g) + 1000.0


def _fmt(value: float) -> str:
    return f"{value:g}"
