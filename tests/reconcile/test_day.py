"""Sixteen hours of direct mode, a reconcile a slot, against spokes that run
what is dispatched to them. Users add, edit, remove, suspend and resume
jobs, chain them and break their files; spokes go down, are cordoned and
leave the fleet for a while; pods find no node; Jobs fail and run again.
What must hold throughout: a second reconcile in the same slot changes
nothing, a started Job moves only by a requeue, a suspend or its spoke
leaving, a finished Job does not run again, every placed job has its
manifest (suspended until it is dispatched), and the plan fits the spokes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import yaml

from reconciler.ledger import FIXED, Entry, Phase
from reconciler.rendering import job_path
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper
from tests.reconcile.test_lifecycle import entries, step

SPOKES = ("paris", "frankfurt", "california")
PLACED = (Phase.PLANNED, Phase.DISPATCHED, Phase.RUNNING)


class World:
    """The spokes as the observer reports them: each Job dispatched there runs
    from its start and ends at its planned end, failed one time in ten or an
    hour late one in twenty, unless its spoke is down or its pods find no
    node; Argo CD prunes a Job that left its spoke."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fate: dict[str, str] = {}
        self.reported: dict[str, dict[str, str]] = {}
        self.no_node: dict[str, dict[str, datetime]] = {}
        self.down: dict[str, tuple[datetime, datetime]] = {}

    def states(self, files: dict[str, bytes]) -> dict[str, dict]:
        """What each spoke of the fleet reports."""
        states: dict[str, dict] = {
            name: {
                "jobs": dict(self.reported.get(name, {})),
                "unscheduled": dict(self.no_node.get(name, {})),
            }
            for name in SPOKES
            if f"spokes/{name}.yaml" in files
        }
        for name, (since, _) in self.down.items():
            if name in states:
                states[name].update(up=False, reason="unreachable", down_since=since, jobs={})
        return states

    def run(self, records: dict[str, Entry], now: datetime) -> None:
        there = {(e.spoke, e.job_key) for e in records.values() if e.phase in FIXED}
        for name, keys in self.no_node.items():
            self.no_node[name] = {k: t for k, t in keys.items() if (name, k) in there}
        self.down = {name: span for name, span in self.down.items() if span[1] > now}
        self.reported = {}
        for e in records.values():
            if e.phase in (Phase.SUCCEEDED, Phase.FAILED):
                self.reported.setdefault(e.spoke, {})[e.job_key] = e.phase.value
            if e.phase not in FIXED or e.spoke in self.down:
                continue
            if e.job_key in self.no_node.get(e.spoke, {}):
                continue
            fate = self.fate.setdefault(
                e.job_key, self.rng.choices(["ok", "fail", "overrun"], [17, 2, 1])[0]
            )
            end = e.planned_end + (timedelta(hours=1) if fate == "overrun" else timedelta())
            phase = "Running" if now < end else ("Failed" if fate == "fail" else "Succeeded")
            self.reported.setdefault(e.spoke, {})[e.job_key] = phase


def _edit(files: dict[str, bytes], path: str, change) -> None:
    doc = yaml.safe_load(files[path])
    change(doc)
    files[path] = yaml.safe_dump(doc).encode()


def _new_job(rng: random.Random, name: str, *, after: str | None = None) -> bytes:
    hints = {
        "caspian.dev/duration": rng.choice(["15m", "1h", "2h", "6h"]),
        "caspian.dev/complete-within": rng.choice(["1h", "3h", "8h", "24h"]),
    }
    if after:
        hints["caspian.dev/after"] = after
    if rng.random() < 0.3:
        hints["caspian.dev/spokes"] = ",".join(rng.sample(SPOKES, 2))
    if rng.random() < 0.3:
        hints["workload.codeflare.dev.appwrapper/retryLimit"] = "1"
    cpu, memory = rng.randint(1, 16), rng.randint(1, 32)
    resources = {"requests": {"cpu": str(cpu), "memory": f"{memory}Gi"}}
    return appwrapper(name, annotations=hints, resources=resources).encode()


def _act(rng: random.Random, files, world: World, records, *, now, slot, pending, done) -> None:
    """One thing a user or an operator does, if any, counted in `done`."""
    jobs = sorted(p for p in files if p.startswith("jobs/") and p not in pending)
    roll = rng.random()
    if roll < 0.3:
        name = f"u{slot}"
        files[f"jobs/{name}.yaml"] = _new_job(rng, name)
        done["add"] += 1
    elif roll < 0.38:
        target = yaml.safe_load(files[rng.choice(jobs)])["metadata"]["name"]
        files[f"jobs/c{slot}.yaml"] = _new_job(rng, f"c{slot}", after=target)
        done["chain"] += 1
    elif roll < 0.46:
        _edit(
            files,
            rng.choice(jobs),
            lambda d: d["spec"]["components"][0]["template"].update(
                metadata={"labels": {"run": str(slot)}}
            ),
        )
        done["edit"] += 1
    elif roll < 0.52:
        del files[rng.choice(jobs)]
        done["remove"] += 1
    elif roll < 0.6:
        _edit(
            files,
            rng.choice(jobs),
            lambda d: d["spec"].update(suspend=not d["spec"].get("suspend", False)),
        )
        done["suspend"] += 1
    elif roll < 0.65:
        path = rng.choice(jobs)
        pending[path] = (files[path], slot + rng.randint(1, 6))
        files[path] = files[path].replace(b"spec:", b"spec: [", 1)
        done["break"] += 1
    elif roll < 0.69:
        path = f"spokes/{rng.choice(SPOKES)}.yaml"
        if path not in pending:
            pending[path] = (files.pop(path), slot + rng.randint(1, 6))
            done["spoke leaves"] += 1
    elif roll < 0.74:
        name = rng.choice(SPOKES)
        world.down.setdefault(name, (now, now + timedelta(minutes=15 * rng.randint(1, 8))))
        done["spoke down"] += 1
    elif roll < 0.78:
        path = f"spokes/{rng.choice(SPOKES)}.yaml"
        if path in files:
            _edit(
                files,
                path,
                lambda d: d["spec"].update(unschedulable=not d["spec"].get("unschedulable", False)),
            )
            done["cordon"] += 1
    elif roll < 0.84:
        dispatched = [e for e in records.values() if e.phase == Phase.DISPATCHED]
        if dispatched:
            e = rng.choice(dispatched)
            world.no_node.setdefault(e.spoke, {})[e.job_key] = now
            done["no node"] += 1


def _check(decision, files, *, started, finished, slot) -> None:
    assert_valid_plan(decision.instance, decision.plan)
    for e in entries(decision).values():
        run = (e.id, e.job_name)
        if e.phase in FIXED:
            was = started.setdefault(run, (e.spoke, e.planned_start))
            moved = was != (e.spoke, e.planned_start)
            assert not moved or e.requeued_from or was[0] not in decision.spokes, (slot, e)
            started[run] = (e.spoke, e.planned_start)
        else:
            started.pop(run, None)  # a suspend, a requeue or its spoke leaving
        if e.phase in (Phase.SUCCEEDED, Phase.FAILED):
            finished.add((*run, e.template_hash))
        else:
            assert (*run, e.template_hash) not in finished or e.phase == Phase.CANCELLED, e
        if e.phase in PLACED and e.id not in decision.held:
            manifest = yaml.safe_load(files[job_path(e)])
            assert manifest["spec"].get("suspend", False) == (e.phase == Phase.PLANNED), e
        if e.phase == Phase.PENDING:
            assert e.reason, e


def test_a_day_of_direct_mode_keeps_every_invariant() -> None:
    rng = random.Random(4)
    world = World(rng)
    files = template_files()
    pending: dict[str, tuple[bytes, int]] = {}  # broken or removed, until the slot
    started: dict[tuple[str, str], tuple[str, datetime]] = {}
    finished: set[tuple[str, str, str]] = set()
    done: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for slot in range(64):
        now = NOW + timedelta(minutes=15 * slot + rng.randint(0, 14))
        decision, new = step(files, now=now, states=world.states(files))
        again, same = step(new, now=now, states=world.states(files))
        assert same == new and again.ledger == decision.ledger, slot
        _check(decision, new, started=started, finished=finished, slot=slot)
        files = dict(new)
        records = entries(decision)
        phases.update(e.phase.value for e in records.values())
        world.run(records, now)
        for path, (content, until) in list(pending.items()):
            if slot >= until:
                del pending[path]
                if path.startswith("spokes/") or path in files:
                    files[path] = content
        _act(rng, files, world, records, now=now, slot=slot, pending=pending, done=done)
    # The seed makes a day with each kind of event, and jobs in each phase.
    assert set(done) == {
        "add",
        "chain",
        "edit",
        "remove",
        "suspend",
        "break",
        "spoke leaves",
        "spoke down",
        "cordon",
        "no node",
    }, done
    assert set(phases) == {p.value for p in Phase}, phases
