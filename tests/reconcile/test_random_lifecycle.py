"""Days of reconciles against spokes that do what Argo CD and Kubernetes may
do, drawn at random: apply a Job late or not at all, resume it late, run it,
fail it, lose it, suspend it by hand, lose its node, refuse it, go down,
hold off syncing in a deny window, or sync nothing (from the start, or from
some time in the day, keeping what was applied) until someone adds an
Application; and people who add, edit, hold and cancel jobs meanwhile.
After each decision, what must hold whatever happened: the same inputs give
the same decision and files, the plan fits, no job is lost, a finished job
stays finished, a running one stays where it runs, and `rendered/` holds
what the ledger says."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import yaml

from reconciler.ledger import Entry, Phase
from reconciler.owned import OWNED_PREFIXES
from reconciler.rendering import RENDERED, job_path, render
from reconciler.syncwindows import SyncWindow
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper
from tests.reconcile.test_lifecycle import entries, step

REQUEUE_UNSCHEDULED = timedelta(minutes=15)  # the template's policy


def day_seeds(runs: int) -> range:
    """The seeds of days drawn: `runs` of them, or CASPIAN_DAY_RUNS where set,
    from 0 or from CASPIAN_DAY_FIRST, so that a long hunt can go on past the
    seeds already run."""
    first = int(os.environ.get("CASPIAN_DAY_FIRST", 0))
    return range(first, first + int(os.environ.get("CASPIAN_DAY_RUNS", runs)))


@dataclass
class _Job:
    """One Job on a spoke, as its API would report it."""

    suspended: bool
    resumed: datetime | None = None  # its status.startTime, once resumed
    began: datetime | None = None
    ended: datetime | None = None
    outcome: str | None = None  # Succeeded or Failed, once ended
    # Since when its pods have found no node, once begun: its node went.
    nodeless: datetime | None = None


@dataclass
class _World:
    """The spokes: the Jobs each holds, by namespace/name, which are down, and
    the deny windows of some."""

    rng: random.Random
    jobs: dict[str, dict[str, _Job]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    # A deny window on some spokes' AppProject: Argo CD syncs nothing there then.
    windows: dict[str, SyncWindow] = field(default_factory=dict)
    # On some days a spoke no Application syncs, from the start or from some
    # time in the day (its Application deleted, say: the Argo CD view serves
    # none for it): nothing more reaches it until someone adds one.
    unsynced: set[str] = field(default_factory=set)
    # Since when the branch has held each Job resumed, by spoke and
    # namespace/name.
    resumed_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # What the branch held for each spoke when Argo CD last read it: each
    # Job's namespace/name, and whether it was suspended there.
    refreshed: dict[str, dict[str, bool]] = field(default_factory=dict)
    # The Jobs each spoke's API refuses (an admission webhook), since when;
    # and when Argo CD last tried to sync each spoke: here once a step, as
    # it does after each commit, or with self-heal after each failure.
    refused: dict[str, dict[str, datetime]] = field(default_factory=dict)
    tried: dict[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rng.random() < 0.3:
            self.unsynced.add(self.rng.choice(("california", "frankfurt", "paris")))
        for spoke in ("california", "frankfurt", "paris"):
            if self.rng.random() < 0.3:
                hour, hours = self.rng.randrange(24), self.rng.choice((1, 3, 8))
                self.windows[spoke] = SyncWindow(
                    project="caspian-jobs",
                    kind="deny",
                    schedule=f"0 {hour} * * *",
                    duration=timedelta(hours=hours),
                )

    def barred(self, spoke: str, at: datetime) -> bool:
        window = self.windows.get(spoke)
        return window is not None and bool(window.on(at, at + timedelta(seconds=1)))

    def follow(self, files: dict[str, bytes], *, now: datetime, since: datetime) -> None:
        """What Argo CD and the spokes did with the branch's `rendered/` from
        `since` to `now`: each change applied, late or not at all; each Job
        resumed begins (or not), and each begun ends (or not)."""
        held: dict[str, dict[str, bool]] = {}
        for path, job in _rendered_jobs(files).items():
            key = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
            held.setdefault(path.split("/")[1], {})[key] = bool(job["spec"].get("suspend"))
        self.refreshed = held
        resumed = {(spoke, key) for spoke, keys in held.items() for key, s in keys.items() if not s}
        self.resumed_at = {at: self.resumed_at.get(at, since) for at in sorted(resumed)}
        # In a fixed order, so that a seed draws the same days in any process.
        for spoke in sorted(set(self.jobs) | set(held)):
            there = self.jobs.setdefault(spoke, {})
            if spoke in self.down or spoke in self.unsynced or self.barred(spoke, now):
                continue
            for key in sorted(set(there) - set(held.get(spoke, {}))):
                if self.rng.random() < 0.9:  # pruned
                    del there[key]
            self.tried[spoke] = min(since + timedelta(minutes=3), now)
            refused = self.refused.setdefault(spoke, {})
            for key, suspended in sorted(held.get(spoke, {}).items()):
                job = there.get(key)
                if job is None and key not in refused:
                    if self.rng.random() < 0.05:
                        refused[key] = self.tried[spoke]
                    elif self.rng.random() < 0.85:  # applied
                        there[key] = _Job(suspended, resumed=None if suspended else since)
                    continue
                if job is None:  # refused again
                    continue
                if job.suspended != suspended and self.rng.random() < 0.85:
                    job.suspended = suspended
                    # Kubernetes resets a Job's startTime when it is resumed.
                    job.resumed = job.resumed if suspended else since
        for _, there in sorted(self.jobs.items()):
            for key, job in sorted(there.items()):
                self._run(job, now=now, since=since)
                # By hand: a Job deleted, or one running suspended. Or the
                # node of one running goes, and none is left for its pods
                # (until one comes back).
                if job.outcome is None and self.rng.random() < 0.02:
                    del there[key]
                elif job.began and job.outcome is None and self.rng.random() < 0.02:
                    job.suspended = True
                elif job.began and job.outcome is None and self.rng.random() < 0.02:
                    span = (now - since).total_seconds()
                    job.nodeless = job.nodeless or since + timedelta(
                        seconds=self.rng.uniform(0, span)
                    )
                elif job.nodeless and self.rng.random() < 0.2:
                    job.nodeless = None
        if self.unsynced and self.rng.random() < 0.1:
            self.unsynced.clear()  # an Application added at last
        for spoke in sorted(self.jobs):
            if spoke not in self.unsynced and self.rng.random() < 0.02:
                self.unsynced.add(spoke)  # its Jobs stay, and run on
            if spoke in self.down and self.rng.random() < 0.6:
                self.down.discard(spoke)
            elif self.rng.random() < 0.05:
                self.down.add(spoke)

    def _run(self, job: _Job, *, now: datetime, since: datetime) -> None:
        span = (now - since).total_seconds()
        if job.suspended or job.outcome is not None or job.nodeless:
            return
        if job.began is None:
            if self.rng.random() < 0.8:
                job.began = since + timedelta(seconds=self.rng.uniform(0, span))
            return
        if self.rng.random() < 0.35:
            job.ended = max(job.began, since) + timedelta(seconds=self.rng.uniform(0, span) / 2)
            job.ended = min(job.ended, now)
            job.outcome = "Failed" if self.rng.random() < 0.25 else "Succeeded"

    def states(self) -> dict[str, dict]:
        """What each spoke reports, as `step` takes it: an observer that lists
        every Job (the kube observer's view)."""
        reported = {}
        for spoke, there in sorted(self.jobs.items()):
            if spoke in self.down:
                reported[spoke] = {"up": False, "reason": "unreachable", "cpu": 0.0}
                continue
            # As the kube observer reads a Job: running once it has begun (a
            # suspended one has no pods left), its end once it has ended.
            running = {
                key
                for key, job in there.items()
                if job.began and not job.suspended and job.outcome is None
            }
            reported[spoke] = {
                # Its own list, which holds while Caspian sends it no new
                # work (SpokeState.listed_by_itself).
                "source": f"kube:kind-{spoke}",
                "jobs": {
                    key: job.outcome or "Running"
                    for key, job in there.items()
                    if job.outcome or key in running
                },
                "listed": frozenset(there),
                "suspended": frozenset(key for key, job in there.items() if job.suspended),
                "started": {
                    key: job.began for key, job in there.items() if key in running or job.outcome
                },
                "ended": {key: job.ended for key, job in there.items() if job.ended},
                "nodeless": {
                    key: job.nodeless
                    for key, job in there.items()
                    if job.nodeless and key in running
                },
            }
            if spoke in self.windows:
                reported[spoke]["sync_windows"] = (self.windows[spoke],)
            if self.rng.random() < 0.1:  # nodes gone, or taken by work not Caspian's
                reported[spoke]["cpu"] = self.rng.choice((4.0, 16.0))
        return reported


def _reconcile(files: dict[str, bytes], *, now: datetime, states: dict) -> tuple:
    """One decision, and the tree the reconcile commits: what Caspian owns
    (`rendered/`, `status/`) as rendered now, the rest as it was."""
    decision, _ = step(files, now=now, states=states)
    kept = {path: raw for path, raw in files.items() if not path.startswith(OWNED_PREFIXES)}
    return decision, {**kept, **render(decision, previous=files)}


def _rendered_jobs(files: dict[str, bytes]) -> dict[str, dict]:
    """The Job of each file of `rendered/` that holds one, by path."""
    found = {}
    for path, raw in files.items():
        if path.startswith(RENDERED):
            first = next(iter(yaml.safe_load_all(raw)))
            if first.get("kind") == "Job":
                found[path] = first
    return found


def _people(files: dict[str, bytes], rng: random.Random, *, turn: int) -> dict[str, bytes]:
    """Now and then someone adds a job, cancels one, or edits one: more cpu
    (a new Job), or its AppWrapper's spec.suspend turned over."""
    files = dict(files)
    draw = rng.random()
    if draw < 0.3:
        hours = rng.choice((2, 6, 20))
        files[f"jobs/added-{turn}.yaml"] = appwrapper(
            f"added-{turn}",
            annotations={
                "caspian.dev/duration": rng.choice(("30m", "1h", "3h")),
                "caspian.dev/complete-within": f"{hours}h",
            },
        ).encode()
    elif draw < 0.4:
        mine = sorted(p for p in files if p.startswith("jobs/"))
        if mine:
            del files[rng.choice(mine)]
    elif draw < 0.55:
        # An edit: more cpu (a new Job), or its AppWrapper held and let go.
        mine = sorted(p for p in files if p.startswith("jobs/"))
        if mine:
            path = rng.choice(mine)
            doc = yaml.safe_load(files[path])
            if rng.random() < 0.5:
                doc["spec"]["suspend"] = not doc["spec"].get("suspend", False)
            else:
                job = doc["spec"]["components"][0]["template"]
                container = job["spec"]["template"]["spec"]["containers"][0]
                container.setdefault("resources", {}).setdefault("requests", {})["cpu"] = str(
                    rng.choice((1, 2, 4))
                )
            files[path] = yaml.safe_dump(doc, sort_keys=False).encode()
    return files


def _check(
    decision, files: dict[str, bytes], before: dict[str, Entry], *, every_job: bool = True
) -> None:
    """What must hold of `decision` and the `files` it made from a ledger
    whose records were `before`; `every_job` False where a new job's record
    waits for review (pull-request mode)."""
    assert_valid_plan(decision.instance, decision.plan)
    now = entries(decision)
    # No job in jobs/ goes without a record.
    if every_job:
        assert set(decision.jobs) <= set(now)
    for job_id, old in before.items():
        new = now.get(job_id)
        if new is None:
            continue
        # Finished, it runs again only as a new Job (its wrapped Job edited).
        if old.phase == Phase.SUCCEEDED and new.template_hash == old.template_hash:
            assert new.phase == Phase.SUCCEEDED, (job_id, old.phase, new.phase)
        # What a run emitted is not taken back.
        if new.template_hash == old.template_hash and old.emitted_grams is not None:
            assert (new.emitted_grams or 0.0) >= old.emitted_grams - 0.05, job_id
        # Running, it is not planned again: it runs where it runs, or ends, or
        # runs again as a new Job (a retry, an edit).
        if old.phase == Phase.RUNNING and new.job_name == old.job_name:
            assert new.phase not in (Phase.PENDING, Phase.PLANNED, Phase.DISPATCHED), job_id
            assert new.spoke == old.spoke, job_id
    # rendered/ holds each planned, dispatched or running job's Job, on its
    # spoke, suspended only while planned; no Job that no record names.
    named = {job_path(e) for e in now.values() if e.spoke and e.job_name}
    rendered = _rendered_jobs(files)
    for entry in now.values():
        if entry.phase not in (Phase.PLANNED, Phase.DISPATCHED, Phase.RUNNING):
            continue
        job = rendered.get(job_path(entry))
        assert job is not None, (entry.id, entry.phase, job_path(entry))
        assert bool(job["spec"].get("suspend")) == (entry.phase == Phase.PLANNED), entry.id
    assert set(rendered) <= named, set(rendered) - named
    # A finished one's Job leaves once the policy's retention is up.
    for entry in now.values():
        if decision.retired(entry):
            assert job_path(entry) not in rendered, entry.id


def _elsewhere(decision, job_id: str, spoke: str) -> bool:
    """Whether a spoke other than `spoke` that the job may use takes it now
    (where none does, a job that cannot run where it is waits there)."""
    shut = {
        **decision.closed,
        **decision.no_node_fits.get(job_id, {}),
        **decision.missing.get(job_id, {}),
    }
    allowed = decision.jobs[job_id].allowed_spokes if job_id in decision.jobs else ()
    return any(other != spoke and other not in shut for other in allowed)


def _unapplied_go(decision, before: dict[str, Entry], world: _World, *, now: datetime) -> None:
    """A job dispatched to a spoke whose Job is not there, or there but
    suspended (nothing syncs the spoke, the resume was not applied, the
    spoke refuses the Job, someone deleted it), has left it once the
    policy's requeueUnscheduled is past since the branch held it resumed
    (no deny window between), where another spoke it may use takes it."""
    for job_id, new in entries(decision).items():
        old, spoke = before.get(job_id), new.spoke or ""
        if old is None or (old.phase, old.spoke, old.job_name) != (
            Phase.DISPATCHED,
            spoke,
            new.job_name,
        ):
            continue
        resumed = world.resumed_at.get((spoke, new.job_key))
        if resumed is None or spoke in world.down:
            continue
        window = world.windows.get(spoke)
        if world.barred(spoke, now) or (window is not None and window.on(resumed, now)):
            continue
        job = world.jobs.get(spoke, {}).get(new.job_key)
        if job is not None and not job.suspended:
            continue
        if now - resumed > REQUEUE_UNSCHEDULED and _elsewhere(decision, job_id, spoke):
            assert (new.phase, new.spoke) != (Phase.DISPATCHED, spoke), (job_id, resumed, job)


def _lost_runs_fail(
    decision,
    world: _World,
    *,
    now: datetime,
    unseen: frozenset[str] = frozenset(),
    pods_seen: bool = True,
    start: Callable[[_Job], datetime | None] | None = lambda job: job.began,
) -> None:
    """A job recorded Running past its planned end, on a spoke that is up
    and whose Jobs are read (not `unseen`), has its Job there, not
    suspended: one deleted or suspended there by hand is taken for failed
    then. Nor, where the observer sees pods (`pods_seen`), have its pods
    found no node for requeueUnscheduled, whenever it was planned to end.
    Before then, its record says since when its Job is missing, if it is,
    and when the Job there began, as `start` tells it of the world's Job
    (None: the observer's view does not say which)."""
    for job_id, new in entries(decision).items():
        spoke = new.spoke or ""
        if new.phase != Phase.RUNNING or spoke in world.down or spoke in unseen:
            continue
        job = world.jobs.get(spoke, {}).get(new.job_key)
        assert (new.gone_since is None) == (job is not None), (job_id, new.gone_since, job)
        assert new.gone_since is None or new.gone_since <= now, (job_id, new.gone_since)
        # Its run counts from when its Job there began: one made again began anew.
        began = start(job) if start is not None and job is not None else None
        if began is not None and new.started_at is not None:
            assert new.started_at == began, (job_id, new.started_at, job)
        if pods_seen and job is not None and job.nodeless and not job.suspended:
            assert now - job.nodeless < REQUEUE_UNSCHEDULED, (job_id, job)
        if new.planned_end is None or now < new.planned_end:
            continue
        assert job is not None and not job.suspended, (job_id, new.planned_end, job)


def _as_seen(decision, before: dict[str, Entry], world: _World) -> None:
    """A job `decision` finds running or succeeded, where its record before
    said otherwise, has a Job on its spoke that began, or succeeded: what
    the observer read of the spoke was read right."""
    for job_id, new in entries(decision).items():
        old = before.get(job_id)
        if old is not None and (old.phase, old.job_name) == (new.phase, new.job_name):
            continue
        job = world.jobs.get(new.spoke or "", {}).get(new.job_key) if new.job_name else None
        if new.phase == Phase.RUNNING:
            assert job is not None and job.began is not None, (job_id, new.phase, job)
        elif new.phase == Phase.SUCCEEDED:
            assert job is not None and job.outcome == "Succeeded", (job_id, new.phase, job)
            # As the spoke says when it ended: Argo CD's message, to the second.
            assert job.ended is not None and new.finished_at is not None, (job_id, job)
            assert abs(new.finished_at - job.ended) < timedelta(seconds=1), (job_id, job)


@pytest.mark.parametrize("seed", day_seeds(8))
def test_whatever_the_spokes_do_each_decision_keeps_what_must_hold(seed: int) -> None:
    rng = random.Random(seed)
    world = _World(rng)
    files = template_files()
    policy = files["caspian.yaml"]
    if seed % 2:  # failed Jobs run again, as new Jobs
        policy = policy.replace(b"retryLimit: 0 ", b"retryLimit: 2 ")
    else:  # finished Jobs leave rendered/ within the days drawn
        policy = policy.replace(b"retention: 24h ", b"retention: 3h ")
    assert policy != files["caspian.yaml"]
    files["caspian.yaml"] = policy
    at = NOW
    decision, files = step(files, now=at)
    for turn in range(14):
        before = entries(decision)
        later = at + timedelta(minutes=rng.choice((5, 15, 40, 90, 180)))
        world.follow(files, now=later, since=at)
        files = _people(files, rng, turn=turn)
        at, states = later, world.states()
        decision, after = _reconcile(files, now=at, states=states)
        again, same = _reconcile(files, now=at, states=states)
        assert again.ledger == decision.ledger and same == after, f"turn {turn}"
        _check(decision, after, before)
        _as_seen(decision, before, world)
        _lost_runs_fail(decision, world, now=at)
        files = after
