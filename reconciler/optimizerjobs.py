"""What the optimizer is told of each job: its size and energy on each spoke,
the slots it may start in, the spokes open to it, and whether it is fixed
where it started. Pure: no clock, no environment, no I/O."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from datetime import datetime

from optimizer.model import Job, Slot
from reconciler.chains import Gate
from reconciler.decisions import Window
from reconciler.fleet import Fleet, JobRequest, Spoke, effective_deadline
from reconciler.ledger import FIXED, Entry, Phase


def optimizer_job(
    job: JobRequest,
    prev: Entry | None,
    *,
    fleet: Fleet,
    closed: Mapping[str, str],
    horizon: Window,
    now: datetime,
    down: Collection[str],
    gate: Gate | None,
    due: datetime | None = None,
    overrunning: bool = False,
    pinned: bool = False,
    offered: Entry | None = None,
) -> Job:
    """The optimizer's view of `job`: its deadline (or the earlier one that the
    jobs running after it need), its energy per slot on every spoke, the slots
    and spokes open to it, and its place where it is fixed there (started, due
    now, or pinned by a review) or was planned before (moving it costs): by the
    main branch, or by an open proposal (`offered`, its record there)."""
    first_seen = prev.first_seen if prev and prev.first_seen else now
    deadline = effective_deadline(job, first_seen=first_seen, fleet=fleet)
    if due is not None:
        deadline = min(deadline, due)
    energy = {
        spoke.name: kwh_per_slot(job, spoke=spoke, slot_seconds=horizon.slot_seconds)
        for spoke in fleet.spokes
    }
    fixed = previous = None
    if is_fixed(prev, horizon=horizon, now=now, down=down, gate=gate):
        fixed = planned_slot(prev, horizon=horizon)
    elif pinned:  # its move was declined in a review: it keeps main's place
        fixed = planned_place(prev, horizon=horizon)
    else:
        previous = planned_place(offered, horizon=horizon) or planned_place(prev, horizon=horizon)
    duration = horizon.slots_in(job.duration)
    if fixed is not None and overrunning:
        # A Job runs as long as it runs, not as long as its annotation says. One
        # still running past its planned end holds its room through the next
        # slot, and again at every reconcile until it ends, so that nothing more
        # is planned on top of it.
        duration = max(duration, horizon.slot_of(now) + 2 - fixed.start_slot)
    # Its caspian.dev/not-before, a run again's pause after the failure, and
    # the end of the jobs it runs after.
    after = gate.after if gate else None
    earliest = [t for t in (job.not_before, prev.rerun_after if prev else None, after) if t]
    release = release_slot(max(earliest), horizon) if earliest else 0
    return Job(
        id=job.id,
        cpu=job.cpu,
        memory_bytes=job.memory_bytes,
        gpu=job.gpu,
        duration_slots=duration,
        release_slot=release,
        # A deadline already past makes every start equally late in all but its
        # end: counted from now, so that lateness from a year ago does not outweigh
        # the cost of leaving the job unplaced, and it runs as soon as it can.
        deadline_slot=max(0, horizon.slot_of(deadline)),
        # A fixed job keeps its place on a closed spoke: fixed jobs are not
        # held to their allowed spokes.
        allowed_spokes=open_spokes(job, prev, closed=closed),
        energy_kwh_per_slot=energy,
        fixed=fixed,
        previous=previous,
        lateness_weight=fleet.policy.spec.weights.of(job.priority_class),
    )


def is_fixed(
    prev: Entry | None,
    *,
    horizon: Window,
    now: datetime,
    down: Collection[str],
    gate: Gate | None = None,
) -> bool:
    """Started, or to start now: planned for the slot `now` is in, on a spoke
    that is not `down` (nothing would reach it: its API does not answer, or
    its sync windows keep Argo CD from syncing it now), with every job it
    runs after (`gate`) succeeded. A planned job whose slot went by with no
    reconcile to dispatch it (the remote or Caspian down) never started: it
    is planned again, or it would start now held to a place in the past, and
    hold no room for the hours it runs."""
    if prev is None or prev.planned_start is None:
        return False
    return prev.phase in FIXED or (
        prev.phase == Phase.PLANNED
        and prev.planned_start <= now
        and not prev.start_went_by(horizon.start)
        and prev.spoke not in down
        and (gate is None or gate.done)
    )


def planned_place(entry: Entry | None, *, horizon: Window) -> Slot | None:
    """Where `entry` plans its job, if it does and its start is still to come."""
    if entry is None or entry.phase != Phase.PLANNED or entry.start_went_by(horizon.start):
        return None
    return planned_slot(entry, horizon=horizon)


def planned_slot(entry: Entry | None, *, horizon: Window) -> Slot | None:
    """The spoke (its pool there) and slot `entry` has its job start in, where it has both."""
    if entry is None or entry.planned_start is None or entry.spoke is None:
        return None
    return Slot(spoke=entry.pool or entry.spoke, start_slot=horizon.slot_of(entry.planned_start))


def release_slot(moment: datetime, horizon: Window) -> int:
    """The first slot that starts at or after `moment`."""
    return max(0, math.ceil((moment - horizon.start).total_seconds() / horizon.slot_seconds))


def open_spokes(
    job: JobRequest, prev: Entry | None, *, closed: Mapping[str, str]
) -> tuple[str, ...]:
    """The spokes a job may be planned on now. One resumed after its AppWrapper
    stopped it goes back where its Job is, as Kubernetes resumes a Job: what it
    counted is there (an Indexed Job's completed indexes), and often its data;
    only where that spoke is closed to it does it go elsewhere."""
    allowed = tuple(s for s in job.allowed_spokes if s not in closed)
    home = prev.home if prev is not None else None
    return (home,) if home in allowed else allowed


def kwh_per_slot(job: JobRequest, *, spoke: Spoke, slot_seconds: int) -> float:
    """Facility energy of one slot of `job` on `spoke`: its declared power, or the
    spoke's power model of its requests, times the spoke's PUE."""
    watts = job.power_watts or spoke.it_watts(
        cpu=job.cpu, memory_bytes=job.memory_bytes, gpu=job.gpu
    )
    return watts * spoke.spec.power.pue * slot_seconds / 3600 / 1000
