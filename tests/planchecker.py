"""An independent plan checker: reads the plan-dump JSON documents only (no
Caspian types), recomputes everything from the instance and returns the list of
violations. Used on every plan the tests produce."""

from __future__ import annotations

from typing import Any

TOLERANCE = 1e-6


def check(instance: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    slots = instance["slots"]
    spokes = {s["name"]: s for s in instance["spokes"]}
    jobs = {j["id"]: j for j in instance["jobs"]}
    seen = set()
    used = {name: {r: [0.0] * slots for r in ("cpu", "memory_bytes", "gpu")} for name in spokes}
    carbon = 0.0
    for a in plan["assignments"]:
        job = jobs.get(a["id"])
        if job is None:
            problems.append(f"{a['id']}: not in the instance")
            continue
        if a["id"] in seen:
            problems.append(f"{a['id']}: assigned twice")
        seen.add(a["id"])
        spoke, start = a["spoke"], a["start_slot"]
        if job["fixed"] is not None:
            if (spoke, start) != (job["fixed"]["spoke"], job["fixed"]["start_slot"]):
                problems.append(f"{a['id']}: fixed job moved")
        else:
            if spoke not in job["allowed_spokes"]:
                problems.append(f"{a['id']}: spoke {spoke} not allowed")
            if start < job["release_slot"]:
                problems.append(f"{a['id']}: starts at {start} before release")
            if not 0 <= start < slots:
                problems.append(f"{a['id']}: start {start} outside the horizon")
            if start in spokes[spoke].get("closed_starts", []):
                problems.append(f"{a['id']}: starts at {start}, when {spoke} takes no start")
        zone = spokes[spoke]["zone"]
        series = instance["intensity_g_per_kwh"][zone]
        for slot in range(start, start + job["duration_slots"]):
            if 0 <= slot < slots:
                for r in ("cpu", "memory_bytes", "gpu"):
                    used[spoke][r][slot] += job[r]
            if 0 <= slot < len(series):
                carbon += job["energy_kwh_per_slot"][spoke] * series[slot]
    for n in plan["not_placed"]:
        if n["id"] in seen:
            problems.append(f"{n['id']}: both placed and not placed")
        seen.add(n["id"])
        if jobs[n["id"]]["fixed"] is not None:
            problems.append(f"{n['id']}: fixed job dropped")
    missing = set(jobs) - seen
    if missing:
        problems.append(f"jobs neither placed nor reported: {sorted(missing)}")
    for name, spoke in spokes.items():
        for r in ("cpu", "memory_bytes", "gpu"):
            for slot in range(slots):
                # fixed work may already exceed a shrunken capacity; only new work must fit
                if used[name][r][slot] > spoke["capacity"][r][slot] + TOLERANCE and any(
                    jobs[a["id"]]["fixed"] is None
                    and a["spoke"] == name
                    and a["start_slot"] <= slot < a["start_slot"] + jobs[a["id"]]["duration_slots"]
                    and jobs[a["id"]][r] > 0
                    for a in plan["assignments"]
                ):
                    problems.append(
                        f"{name} slot {slot}: {r} {used[name][r][slot]} > "
                        f"{spoke['capacity'][r][slot]}"
                    )
    if abs(carbon - plan["carbon_g"]) > 1e-6 * max(1.0, carbon):
        problems.append(f"carbon_g {plan['carbon_g']} != recomputed {carbon}")
    return problems


def late_jobs(instance: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    jobs = {j["id"]: j for j in instance["jobs"]}
    return [
        a["id"]
        for a in plan["assignments"]
        if a["start_slot"] + jobs[a["id"]]["duration_slots"] > jobs[a["id"]]["deadline_slot"]
    ]
