"""What a choice costs, and why a job has no choice at all."""

from __future__ import annotations

from collections.abc import Iterable

from optimizer.model import RESOURCES, Instance, Job

# Among choices of equal carbon, start earlier: a thousandth of a gram per slot
# of delay breaks ties the same way on every solver and machine.
TIE_BREAK_G_PER_SLOT = 1e-3


def carbon_of(instance: Instance, *, job: Job, spoke: str, start_slot: int) -> float:
    """Grams emitted by `job` on `spoke` from `start_slot`, over the slots the
    intensity series covers (a fixed job that started before the horizon counts
    from slot 0)."""
    zone = instance.spoke(spoke).zone
    series = instance.intensity_g_per_kwh[zone]
    first = max(start_slot, 0)
    # A run that ended before slot 0 covers nothing (a slice to a negative end
    # would count from the back).
    last = max(first, min(start_slot + job.duration_slots, len(series)))
    return float(sum(series[first:last]) * job.energy_kwh_per_slot[spoke])


def late_slots(job: Job, start_slot: int) -> int:
    return max(0, start_slot + job.duration_slots - job.deadline_slot)


def defer_cost(instance: Instance, job: Job) -> float:
    """Cost of leaving a job unplaced: above the worst cost of any placement inside
    the horizon, so a plan defers a job only when capacity leaves no other choice."""
    peak = max(max(series) for series in instance.intensity_g_per_kwh.values())
    worst_carbon = max(job.energy_kwh_per_slot.values(), default=0.0) * peak * job.duration_slots
    per_slot = instance.weights.lateness_g_per_slot * job.lateness_weight
    worst_late = per_slot * (instance.slots + job.duration_slots)
    return 2 * (worst_carbon + worst_late + instance.weights.move_g) + 1000.0


def why_unplaceable(instance: Instance, job: Job) -> str:
    """A sentence a user can act on, for a job with no (spoke, start) at all."""
    if job.release_slot >= instance.slots:
        return "deferred: not-before lies beyond the planning horizon"
    parts = [
        f"{name} {need:g} > largest allowed spoke's {most:g}"
        for name, need, most in shortfall(instance, job, spokes=job.allowed_spokes)
    ]
    if parts:
        return "no allowed spoke is large enough: " + "; ".join(parts)
    if not job.allowed_spokes:
        return "no allowed spoke is up"
    starts = set(range(max(job.release_slot, 0), instance.slots))
    if all(starts <= set(instance.spoke(name).closed_starts) for name in job.allowed_spokes):
        return "Argo CD's sync windows bar every start on its allowed spokes in the horizon"
    return "work already running holds its allowed spokes for the whole planning horizon"


def shortfall(
    instance: Instance, job: Job, *, spokes: Iterable[str]
) -> list[tuple[str, float, float]]:
    """(resource, the job's need, the most room) for each resource that none of
    `spokes` has room enough of in any slot of the horizon."""
    wanted = set(spokes)
    chosen = [s for s in instance.spokes if s.name in wanted]
    short = []
    for name in RESOURCES:
        most = max((max(s.resource(name), default=0.0) for s in chosen), default=0.0)
        if job.demand(name) > most + 1e-9:
            short.append((name, job.demand(name), most))
    return short
