"""The random days of test_random_lifecycle.py seen as `--observer argocd`
sees them: each spoke's Application on the hub, as Argo CD lists it after
its last read of the branch (a Job committed since is not in it yet), with
the health argocd/job-health.yaml gives each Job, and the AppProject's deny
windows, served to the real client by a local API server; or, where each
spoke runs its own Argo CD, each spoke's by its own. A spoke that is down is
one Argo CD cannot reach (its own cannot be read); one no Application syncs
has none; one that refuses a Job has it among the failures of the last
sync. After each reconcile, one more at the same time commits nothing, the
commit holds what the decision says, and a job dispatched to a spoke that
refuses its Job, or lacks it or its resume for any reason, has left it once
the policy's requeueUnscheduled is past, where another spoke takes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial

import pytest

from reconciler.decisions import SpokeState
from reconciler.fleet import Fleet
from reconciler.kube import ArgoCDObserver, SpokesArgoCDs
from reconciler.ledger import Entry, Phase
from reconciler.observing import Observer, StatusFilledIn
from reconciler.quantities import format_duration, format_time
from reconciler.reconciling import reconcile_once
from tests.conftest import BOT, NOW
from tests.fakehttp import Reply, Seen, serve
from tests.reconcile.test_argocd_observer import (
    APPS,
    CHECKED,
    PROJECTS,
    SETTINGS,
    application,
    applications,
    settings,
)
from tests.reconcile.test_kube_observer import kubeconfig
from tests.reconcile.test_lifecycle import entries
from tests.reconcile.test_random_lifecycle import (
    REQUEUE_UNSCHEDULED,
    _as_seen,
    _check,
    _elsewhere,
    _Job,
    _lost_runs_fail,
    _unapplied_go,
    _World,
    day_seeds,
)
from tests.reconcile.test_random_reconciles import TURNS, _settled, _start, _time_passes, _tip


class _OwnAPI:
    """The drawn spokes as each answers for itself (the kube observer), for
    `--observer kube --argocd-context`: the hub's Argo CD fills in what only
    it knows."""

    def __init__(self, seeing: Observer) -> None:
        self.seeing = seeing

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        return {
            name: state.model_copy(update={"source": f"kube:kind-{name}"})
            for name, state in self.seeing.observe(fleet).items()
        }


class _Reading(ArgoCDObserver):
    """The observer, keeping what it saw last."""

    last: dict[str, SpokeState]

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        self.last = super().observe(fleet)
        return self.last


class _EachReading(SpokesArgoCDs):
    """Each spoke's own Argo CD, keeping what they said last."""

    last: dict[str, SpokeState]

    def observe(self, fleet: Fleet) -> dict[str, SpokeState]:
        self.last = super().observe(fleet)
        return self.last


def _health(job: _Job) -> dict:
    """A live Job's health by argocd/job-health.yaml's check: its status
    decides, then spec.suspend; `resumed` stands for status.startTime."""
    resumed = format_time(job.resumed) if job.resumed else None
    ran = f" (began {resumed}, ended {format_time(job.ended)})" if job.ended and resumed else ""
    if job.outcome == "Succeeded":
        return {"status": "Healthy", "message": f"Job completed{ran}"}
    if job.outcome == "Failed":
        return {
            "status": "Degraded",
            "message": f"Job has reached the specified backoff limit{ran}",
        }
    if job.suspended:
        return {"status": "Suspended", "message": "suspended"}
    if resumed is None:
        return {"status": "Progressing", "message": "starting"}
    if job.began:
        return {"status": "Progressing", "message": f"running since {resumed}"}
    return {"status": "Progressing", "message": f"no pod ready since {resumed}"}


def _said_start(job: _Job) -> datetime | None:
    """When a Job began, as its health (`_health`) says it: its startTime
    once it runs or has ended; nothing before."""
    return job.resumed if job.began or job.outcome else None


def _resources(world: _World, spoke: str) -> list[dict]:
    """What the Application lists: each Job the branch held at Argo CD's last
    read, Missing where the spoke lacks it, and each Job there that it
    would prune."""
    there, held = world.jobs.get(spoke, {}), world.refreshed.get(spoke, {})
    listed = []
    for key in sorted(set(there) | set(held)):
        namespace, name = key.split("/")
        job = there.get(key)
        synced = job is not None and key in held and job.suspended == held[key]
        resource = {"group": "batch", "version": "v1", "kind": "Job", "namespace": namespace}
        resource |= {"name": name, "status": "Synced" if synced else "OutOfSync"}
        if key not in held:
            resource["requiresPruning"] = True
        if spoke in world.down:
            resource["health"] = {"status": "Unknown"}
        else:
            resource["health"] = {"status": "Missing"} if job is None else _health(job)
        listed.append(resource)
    return listed


def _refusals(world: _World, spoke: str) -> list[dict]:
    """The last sync's result for each Job of the branch the spoke refuses."""
    failed = []
    for key in sorted(world.refused.get(spoke, {}).keys() & world.refreshed.get(spoke, {}).keys()):
        namespace, name = key.split("/")
        result = {"group": "batch", "version": "v1", "kind": "Job", "namespace": namespace}
        result |= {"name": name, "status": "SyncFailed", "syncPhase": "Sync"}
        result["message"] = 'admission webhook "deny.example.com" denied the request: no'
        failed.append(result)
    return failed


def _refused_go(decision, before: dict[str, Entry], world: _World, *, now: datetime) -> None:
    """A job dispatched to a spoke that refuses its Job, since before this
    reconcile, has left it once the policy's requeueUnscheduled is past
    since the branch held it resumed (a reconcile late in the slot
    dispatches it after its planned start), where another spoke it may use
    takes it."""
    for job_id, new in entries(decision).items():
        old, spoke = before.get(job_id), new.spoke or ""
        refused = world.refused.get(spoke, {}).get(new.job_key)
        if refused is None or old is None or old.planned_start is None:
            continue
        if (old.phase, old.spoke, old.job_name) != (Phase.DISPATCHED, spoke, new.job_name):
            continue
        if spoke in world.down or world.barred(spoke, now):
            continue
        resumed = world.resumed_at.get((spoke, new.job_key), old.planned_start)
        if now - max(refused, resumed) > REQUEUE_UNSCHEDULED and _elsewhere(
            decision, job_id, spoke
        ):
            assert (new.phase, new.spoke) != (Phase.DISPATCHED, spoke), (job_id, refused)


def _hub(world: _World, *, now: datetime) -> tuple[list[dict], dict]:
    """The hub's Applications, one per spoke some Application syncs, and the
    AppProject that holds the deny windows."""
    apps = []
    for spoke in sorted({"california", "frankfurt", "paris"} - world.unsynced):
        status: dict = {}
        if spoke in world.down:
            status["conditions"] = [
                {
                    "type": "ComparisonError",
                    "message": f"failed to get cluster info for {spoke}: connection refused",
                    "lastTransitionTime": format_time(now),
                }
            ]
        elif failed := _refusals(world, spoke):
            # Its Application keeps only its last sync: when that one failed.
            when = format_time(world.tried[spoke])
            status["operationState"] = {
                "phase": "Failed",
                "message": "one or more objects failed to apply",
                "startedAt": when,
                "finishedAt": when,
                "syncResult": {"resources": failed},
            }
        apps.append(application(spoke, _resources(world, spoke), **status))
    windows = [
        {
            "kind": "deny",
            "schedule": window.schedule,
            "duration": format_duration(window.duration),
            "applications": [f"caspian-{spoke}"],
        }
        for spoke, window in sorted(world.windows.items())
    ]
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "caspian-jobs", "namespace": "argocd"},
        "spec": {"syncWindows": windows},
    }
    return apps, project


def _projects(hub: dict) -> Callable[[Seen], Reply]:
    def listed(_: Seen) -> Reply:
        listing = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProjectList"}
        return Reply(body=listing | {"items": [hub["project"]], "metadata": {}})

    return listed


def _days(
    world: _World, seeing, repo, remote, hub: dict, observer: Observer, *, view: str
) -> Iterator[int]:
    """Reconciles through the day drawn, `hub` holding the Applications and
    AppProject as Argo CD has them each time, with the checks of what must
    hold after each; each turn's number once it is checked."""
    hub["apps"], hub["project"] = _hub(world, now=NOW)
    outcome = reconcile_once(repo, now=NOW, author=BOT, observer=observer)
    at = NOW
    for turn in range(TURNS):
        before = outcome.decision.ledger.by_id()
        at = _time_passes(remote, world, seeing, at=at, turn=turn)
        hub["apps"], hub["project"] = _hub(world, now=at)
        outcome = _settled(repo, remote, observer, at=at, turn=turn)
        _check(outcome.decision, _tip(remote), before)
        _as_seen(outcome.decision, before, world)
        # With no Application at all, no Job status is read through Argo CD
        # (a warning says so): nothing tells Caspian what it has not applied.
        if view != "argocd" or world.unsynced != {"california", "frankfurt", "paris"}:
            _unapplied_go(outcome.decision, before, world, now=at)
            _refused_go(outcome.decision, before, world, now=at)
            # Through the hub alone, a spoke no Application syncs is not read.
            # Nor does it see pods.
            unseen = frozenset(world.unsynced) if view == "argocd" else frozenset()
            # Through Argo CD a Job's start is its startTime, set when it was
            # resumed, and said once it runs or has ended; the views that read
            # some spokes' own APIs mix the two.
            start = _said_start if view == "argocd" else None
            _lost_runs_fail(
                outcome.decision,
                world,
                now=at,
                unseen=unseen,
                pods_seen=view != "argocd",
                start=start,
            )
        yield turn


@pytest.mark.parametrize("view", ["argocd", "kube+argocd"])
@pytest.mark.parametrize("seed", day_seeds(6))
def test_seen_through_argo_cd_a_second_reconcile_commits_nothing(
    seed: int, view: str, remote, tmp_path
) -> None:
    world, seeing, repo = _start(seed, remote, tmp_path)
    hub: dict = {}
    with serve() as api:
        api.routes[APPS] = lambda _: applications(*hub["apps"])
        api.routes[PROJECTS] = _projects(hub)
        api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": api.url})
        reading = _Reading(kubeconfig=config, context="kind-hub", timeout_s=5.0)
        observer = reading if view == "argocd" else StatusFilledIn(_OwnAPI(seeing), reading)
        for turn in _days(world, seeing, repo, remote, hub, observer, view=view):
            # Each spoke an Application syncs was read through it.
            read = {
                n for n, state in reading.last.items() if state.source.startswith("declared+argocd")
            }
            assert read == {"california", "frankfurt", "paris"} - world.unsynced, turn


@pytest.mark.parametrize("seed", day_seeds(3))
def test_seen_through_each_spokes_own_argo_cd_a_second_reconcile_commits_nothing(
    seed: int, remote, tmp_path
) -> None:
    # Each spoke runs its own Argo CD (--argocd-on-spokes: read through the
    # spoke's kubeContext), which holds that spoke's Application, if any; one
    # whose spoke is down cannot be read.
    world, seeing, repo = _start(seed, remote, tmp_path)
    hub: dict = {}
    spokes = ("california", "frankfurt", "paris")

    def own(spoke: str, _: Seen) -> Reply:
        if spoke in world.down:
            return Reply(status=503, body={"kind": "Status", "code": 503})
        held = [a for a in hub["apps"] if a["metadata"]["labels"]["caspian.dev/spoke"] == spoke]
        return applications(*held)

    with serve() as california, serve() as frankfurt, serve() as paris:
        servers = {"california": california, "frankfurt": frankfurt, "paris": paris}
        for spoke, api in servers.items():
            api.routes[APPS] = partial(own, spoke)
            api.routes[PROJECTS] = _projects(hub)
            api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {spoke: api.url for spoke, api in servers.items()})
        reading = _EachReading(kubeconfig=config)
        observer = StatusFilledIn(_OwnAPI(seeing), reading)
        for turn in _days(world, seeing, repo, remote, hub, observer, view="kube+own"):
            # Each spoke is read through its own Argo CD, where that answers;
            # one that holds no Application for it is taken as one nothing
            # syncs, where some Argo CD read holds one (none at all is
            # nothing to go by, as with a hub). Another spoke's down, its Argo
            # CD unread, holds back none.
            last = reading.last
            read = {n for n, state in last.items() if state.source.startswith("declared+argocd")}
            assert read == set(spokes) - world.unsynced - world.down, turn
            told = {n for n, state in last.items() if state.no_application}
            assert told == (world.unsynced - world.down if read else set()), turn
