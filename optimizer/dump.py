"""An instance and its plan as plain JSON (docs/plan-dump-format.md), so that a
plan can be checked by anyone without this code."""

from __future__ import annotations

import json
from typing import Any

from optimizer.model import Instance, Plan, iso

INSTANCE_FORMAT = "caspian-instance/1"
PLAN_FORMAT = "caspian-plan/1"


def instance_document(instance: Instance) -> dict[str, Any]:
    return {
        "format": INSTANCE_FORMAT,
        "start": iso(instance.start),
        "slot_seconds": instance.slot_seconds,
        "slots": instance.slots,
        "spokes": [
            {
                "name": spoke.name,
                "zone": spoke.zone,
                "capacity": {
                    "cpu": list(spoke.cpu),
                    "memory_bytes": list(spoke.memory_bytes),
                    "gpu": list(spoke.gpu),
                },
                # Only where there are some, so that dumps without them stay as they were.
                **({"closed_starts": list(spoke.closed_starts)} if spoke.closed_starts else {}),
            }
            for spoke in instance.spokes
        ],
        "intensity_g_per_kwh": {
            zone: list(values) for zone, values in sorted(instance.intensity_g_per_kwh.items())
        },
        "jobs": [
            {
                "id": job.id,
                "cpu": job.cpu,
                "memory_bytes": job.memory_bytes,
                "gpu": job.gpu,
                "duration_slots": job.duration_slots,
                "release_slot": job.release_slot,
                "deadline_slot": job.deadline_slot,
                "allowed_spokes": list(job.allowed_spokes),
                "energy_kwh_per_slot": dict(job.energy_kwh_per_slot),
                "fixed": job.fixed.model_dump() if job.fixed else None,
                "previous": job.previous.model_dump() if job.previous else None,
                # Only where it differs, so that dumps without priorities stay as they were.
                **({"lateness_weight": job.lateness_weight} if job.lateness_weight != 1 else {}),
            }
            for job in instance.jobs
        ],
        "weights": instance.weights.model_dump(),
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    return {
        "format": PLAN_FORMAT,
        "assignments": [
            {"id": a.id, "spoke": a.spoke, "start_slot": a.start_slot} for a in plan.assignments
        ],
        "not_placed": [{"id": n.id, "reason": n.reason} for n in plan.not_placed],
        "carbon_g": plan.carbon_g,
        "objective": plan.objective,
        "solver_status": plan.solver_status,
        "bound": plan.bound,
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=False) + "\n"
