"""The room each spoke offers the optimizer over the horizon: what its
observer says is free, within the quota its file gives Caspian, and none while
its maintenance is on; and held jobs as fixed work that keeps its room. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from optimizer.model import RESOURCES, Instance, Job, Slot, SpokeCapacity
from reconciler import pools, syncwindows
from reconciler.decisions import SpokeState, Window
from reconciler.fleet import Fleet, Span
from reconciler.ledger import Entry


def capacity_of(state: SpokeState, zone: str, horizon: Window) -> SpokeCapacity:
    scale = 1.0 if state.up else 0.0
    return SpokeCapacity(
        name=state.name,
        zone=zone,
        cpu=(state.cpu * scale,) * horizon.slots,
        memory_bytes=(state.memory_bytes * scale,) * horizon.slots,
        gpu=(state.gpu * scale,) * horizon.slots,
    )


def held_as_fixed(held: list[Entry], horizon: Window) -> list[Job]:
    """Held jobs keep their capacity so that nothing else is planned on top of them."""
    jobs = []
    for entry in held:
        assert entry.spoke is not None and entry.planned_start is not None  # held where placed
        start = horizon.slot_of(entry.planned_start)
        end = horizon.slot_of(entry.planned_end) if entry.planned_end else start + 1
        jobs.append(
            Job(
                id=entry.id,
                cpu=entry.cpu or 0.0,
                memory_bytes=entry.memory_bytes or 0.0,
                gpu=entry.gpu or 0.0,
                duration_slots=max(1, end - start),
                deadline_slot=end,
                allowed_spokes=(entry.spoke,),
                energy_kwh_per_slot={entry.spoke: 0.0},
                fixed=Slot(spoke=entry.pool or entry.spoke, start_slot=start),
            )
        )
    return jobs


def within_quotas(instance: Instance, fleet: Fleet) -> Instance:
    """`instance` with each spoke's room held to the quota its file gives
    Caspian's jobs there. Where its nodes form pools, the quota holds for all
    of them together: each pool's room shrinks by the same share, which keeps
    their sum within it (and may leave a pool less than the quota alone
    would)."""
    quotas = {s.name: s.spec.quota for s in fleet.spokes if s.spec.quota is not None}
    if not quotas:
        return instance
    # Per spoke and resource, the room of all its pools in each slot.
    totals: dict[tuple[str, str], list[float]] = {}
    for capacity in instance.spokes:
        spoke = pools.spoke_of(capacity.name)
        for resource in RESOURCES if spoke in quotas else ():
            room = capacity.resource(resource)
            summed = totals.setdefault((spoke, resource), [0.0] * len(room))
            totals[spoke, resource] = [a + b for a, b in zip(summed, room, strict=True)]
    capacities = []
    for capacity in instance.spokes:
        spoke = pools.spoke_of(capacity.name)
        if spoke not in quotas:
            capacities.append(capacity)
            continue
        update = {}
        for resource in RESOURCES:
            limit = quotas[spoke].of(resource)
            if limit is None:
                continue
            update[resource] = tuple(
                room * limit / total if total > limit else room
                for room, total in zip(
                    capacity.resource(resource), totals[spoke, resource], strict=True
                )
            )
        capacities.append(capacity.model_copy(update=update))
    return instance.model_copy(update={"spokes": tuple(capacities)})


def maintenance_in(fleet: Fleet, horizon: Window) -> dict[str, tuple[Span, ...]]:
    """Each spoke's maintenance windows that fall in the planning horizon."""
    end = horizon.time_of(horizon.slots)
    found = {
        spoke.name: tuple(
            once for w in spoke.spec.maintenance for once in w.within(horizon.start, end)
        )
        for spoke in fleet.spokes
    }
    return {name: windows for name, windows in found.items() if windows}


def shut_for_maintenance(
    instance: Instance, windows: Mapping[str, tuple[Span, ...]], horizon: Window
) -> Instance:
    """`instance` with no room on a spoke (on each of its pools) in the slots
    its maintenance windows overlap: nothing new runs there then. Work fixed
    there runs on; the optimizer lets it overfill a spoke."""
    if not windows:
        return instance
    capacities = []
    for capacity in instance.spokes:
        closed = _overlapped(windows.get(pools.spoke_of(capacity.name), ()), horizon)

        def open_only(values: tuple[float, ...], closed: set[int] = closed) -> tuple[float, ...]:
            return tuple(0.0 if t in closed else value for t, value in enumerate(values))

        capacities.append(
            capacity.model_copy(
                update={
                    "cpu": open_only(capacity.cpu),
                    "memory_bytes": open_only(capacity.memory_bytes),
                    "gpu": open_only(capacity.gpu),
                }
            )
            if closed
            else capacity
        )
    return instance.model_copy(update={"spokes": tuple(capacities)})


def barred_in(spokes: Mapping[str, SpokeState], horizon: Window) -> dict[str, tuple[Span, ...]]:
    """Each spoke's times in the planning horizon when its AppProject's sync
    windows keep Argo CD from syncing it (reconciler/syncwindows.py)."""
    end = horizon.time_of(horizon.slots)
    found = {
        name: syncwindows.barred(state.sync_windows, horizon.start, end)
        for name, state in spokes.items()
        if state.sync_windows
    }
    return {name: times for name, times in found.items() if times}


def closed_to_starts(
    instance: Instance, barred: Mapping[str, tuple[Span, ...]], horizon: Window
) -> Instance:
    """`instance` where nothing starts on a spoke (on any of its pools) in
    the slots its `barred` times overlap: a Job resumed then would wait for
    Argo CD to sync, so it is planned to start when Argo CD can. What runs
    there runs on."""
    if not barred:
        return instance
    capacities = []
    for capacity in instance.spokes:
        closed = _overlapped(barred.get(pools.spoke_of(capacity.name), ()), horizon)
        capacities.append(capacity.model_copy(update={"closed_starts": tuple(sorted(closed))}))
    return instance.model_copy(update={"spokes": tuple(capacities)})


def barred_now(barred: Mapping[str, tuple[Span, ...]], horizon: Window) -> frozenset[str]:
    """The spokes whose `barred` times close the horizon's first slot, the
    one now is in, to starts: a Job resumed there now would wait for Argo
    CD to sync."""
    return frozenset(name for name, times in barred.items() if 0 in _overlapped(times, horizon))


def _overlapped(windows: tuple[Span, ...], horizon: Window) -> set[int]:
    """Every slot of the horizon `windows` overlap: from the one each starts
    in to the one its last instant is in."""
    slots: set[int] = set()
    for window in windows:
        first = max(0, horizon.slot_of(window.start))
        last = min(horizon.slots - 1, horizon.slot_of(window.end - timedelta(microseconds=1)))
        slots.update(range(first, last + 1))
    return slots
