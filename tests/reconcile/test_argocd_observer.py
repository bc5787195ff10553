"""Job status from the hub's Argo CD Applications (`--observer argocd`), through
the real `kubernetes` client, against a local server that answers the paths it
calls as the API server would."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from functools import partial

import yaml
from click.testing import CliRunner
from prometheus_client import REGISTRY

from reconciler.applications import loose_ends
from reconciler.cli import Target, main
from reconciler.kube import ArgoCDObserver, ArgoCDs, KubeObserver, SpokesArgoCDs
from reconciler.observing import StatusFilledIn
from tests import gitutil
from tests.deploy.test_job_health import PATCH
from tests.fakehttp import Reply, serve
from tests.fleet.helpers import fleet_with
from tests.fleet.test_companions import CONFIG, wrapping
from tests.reconcile.test_kube_observer import healthy, kubeconfig, waiting_plugin

APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
SETTINGS = "/api/v1/namespaces/argocd/configmaps/argocd-cm"
PROJECTS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/appprojects"
CHECK = yaml.safe_load(PATCH.read_text())["data"]["resource.customizations.health.batch_Job"]
CHECKED = {"resource.customizations.health.batch_Job": CHECK}
SINCE = "2026-12-02T03:00:04Z"  # when a Job was resumed, as the check quotes it


def application(spoke: str, resources: list[dict], **status) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"caspian-{spoke}",
            "namespace": "argocd",
            "labels": {"app.kubernetes.io/part-of": "caspian", "caspian.dev/spoke": spoke},
        },
        # As argocd/applicationset.yaml makes it.
        "spec": {
            "project": "caspian-jobs",
            "destination": {"name": spoke, "namespace": "batch"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True, "allowEmpty": True}},
        },
        "status": {"resources": resources, **status},
    }


def job(name: str, health: str | None, namespace: str = "batch", message: str = "") -> dict:
    resource = {"group": "batch", "version": "v1", "kind": "Job", "namespace": namespace}
    resource |= {"name": name, "status": "Synced"}
    if health:
        resource["health"] = {"status": health} | ({"message": message} if message else {})
    return resource


def applications(*items: dict) -> Reply:
    body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList", "items": list(items)}
    body["metadata"] = {"resourceVersion": "7"}
    return Reply(body=body)


def projects(*windows: dict) -> Reply:
    """The hub's AppProjects: argocd/appproject.yaml's, with `windows`."""
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "caspian-jobs", "namespace": "argocd"},
        "spec": {"syncWindows": list(windows)},
    }
    other = project | {"metadata": {"name": "default"}, "spec": {"syncWindows": [DENY_ALL]}}
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProjectList",
        "items": [other, project],
    }
    return Reply(body=body | {"metadata": {"resourceVersion": "7"}})


# A window of another project, which applies to none of Caspian's Applications.
DENY_ALL = {"kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["*"]}


def settings(data: dict) -> Reply:
    return Reply(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": data})


def observe_hub(tmp_path, *apps: dict, appprojects: Reply | None = None):
    """What the observer makes of a hub that holds `apps`, with the job
    health check, and answers the list of AppProjects with `appprojects`."""
    with serve() as api:
        api.route(APPS, applications(*apps))
        api.route(SETTINGS, settings(CHECKED))
        if appprojects is not None:
            api.route(PROJECTS, appprojects)
        return observe(tmp_path, api.url)


def observe(tmp_path, url):
    config = kubeconfig(tmp_path, {"hub": url})
    observer = ArgoCDObserver(kubeconfig=config, context="kind-hub", timeout_s=2.0)
    return observer.observe(fleet_with())


PARIS = [
    job("queued-1a2b3c4d", "Suspended"),
    job("train-5e6f7a8b", "Progressing"),
    job("etl-9a8b7c6d", "Healthy"),
    job("broken-0c1d2e3f", "Degraded"),
    job("new-11223344", "Missing"),
    job("unsynced-55667788", None),
    {"group": "", "version": "v1", "kind": "Namespace", "name": "batch", "health": {}},
]


def test_job_health_in_the_applications_moves_the_jobs_of_each_spoke(tmp_path) -> None:
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS), application("mars", PARIS)))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
        asked = api.requests_to(APPS)[0]
    assert asked.query["labelSelector"] == ["app.kubernetes.io/part-of=caspian"]
    assert states["paris"].jobs == {
        "batch/train-5e6f7a8b": "Running",
        "batch/etl-9a8b7c6d": "Succeeded",
        "batch/broken-0c1d2e3f": "Failed",
    }
    assert states["paris"].source == "declared+argocd:kind-hub"
    # Capacity stays as the spoke files declare it; other spokes are as declared.
    declared = {s.name: s.spec.capacity for s in fleet_with().spokes}
    assert states["paris"].cpu == declared["paris"].cpu and states["paris"].up
    assert states["frankfurt"].jobs == {} and states["frankfurt"].source == "declared"
    assert "mars" not in states
    assert up() == 1
    # Every Job it lists is on the spoke but the one Argo CD calls Missing; a
    # spoke with no Application has none, since nothing syncs its directory.
    names = {"queued-1a2b3c4d", "train-5e6f7a8b", "etl-9a8b7c6d", "broken-0c1d2e3f"}
    assert states["paris"].listed == {f"batch/{n}" for n in names | {"unsynced-55667788"}}
    assert states["frankfurt"].listed == frozenset()
    # The one Suspended by the check: waiting for its start, or for its resume.
    assert states["paris"].suspended == {"batch/queued-1a2b3c4d"}


def test_a_job_runs_once_argo_cd_says_it_has_begun_and_one_with_no_pod_is_podless(
    tmp_path,
) -> None:
    since = SINCE
    resources = [
        job("train-5e6f7a8b", "Progressing", message="running"),
        job("pulling-1a2b3c4d", "Progressing", message=f"no pod ready since {since}"),
        job("resumed-0c1d2e3f", "Progressing", message="starting"),
        job("refused-9a8b7c6d", "Progressing", message=f"no pod since {since}: see its events"),
    ]
    with serve() as api:
        api.route(APPS, applications(application("paris", resources)))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    # Until a pod of it is ready, or one has ended, a Job is not running yet.
    assert paris.jobs == {"batch/train-5e6f7a8b": "Running"}
    # One whose pods are refused, since it was resumed: requeued as the kube
    # observer's would be.
    assert paris.podless == {"batch/refused-9a8b7c6d": datetime(2026, 12, 2, 3, 0, 4, tzinfo=UTC)}
    # One whose pods wait, since it was resumed: requeued only by a warmup grace.
    assert paris.unready == {"batch/pulling-1a2b3c4d": datetime(2026, 12, 2, 3, 0, 4, tzinfo=UTC)}
    assert paris.source == "declared+argocd:kind-hub"


def test_an_older_check_is_read_as_before_and_a_warning_says_to_reapply_it(
    tmp_path, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    older = {"resource.customizations.health.batch_Job": CHECK.split("\n", 1)[1]}
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(older))
        states = observe(tmp_path, api.url)
    assert states["paris"].jobs["batch/train-5e6f7a8b"] == "Running"
    assert "a Job reads running from when it is resumed" in caplog.text
    assert "re-apply argocd/job-health.yaml" in caplog.text
    caplog.clear()
    # Version 2 says whether a Job has begun, not when.
    second = {"resource.customizations.health.batch_Job": CHECK.replace("health 3", "health 2")}
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(second))
        observe(tmp_path, api.url)
    assert "when a Job began and ended is not read" in caplog.text
    assert "re-apply argocd/job-health.yaml" in caplog.text
    caplog.clear()
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(CHECKED))
        observe(tmp_path, api.url)
    assert "argocd/job-health.yaml" not in caplog.text


def test_when_a_job_began_and_ended_is_read_from_the_checks_messages(tmp_path) -> None:
    began, ended = "2026-12-02T03:00:04Z", "2026-12-02T05:30:00Z"
    why = "Job has reached the specified backoff limit"
    resources = [
        job("train-5e6f7a8b", "Progressing", message=f"running since {began}"),
        job("etl-9a8b7c6d", "Healthy", message=f"complete (began {began}, ended {ended})"),
        job("broken-0c1d2e3f", "Degraded", message=f"{why} (began {began}, ended {ended})"),
        job("quiet-1a2b3c4d", "Degraded", message=f"(ended {ended})"),
        job("old-55667788", "Progressing", message="running"),  # a version 2 check's
        job("odd-11223344", "Healthy", message="complete (ended 2026-13-45T99:00:00Z)"),
        job("said-99887766", "Degraded", message="a (reason) of its own ()"),
    ]
    with serve() as api:
        api.route(APPS, applications(application("paris", resources)))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    at = {name: datetime.fromisoformat(text) for name, text in (("b", began), ("e", ended))}
    assert paris.started == {
        "batch/train-5e6f7a8b": at["b"],
        "batch/etl-9a8b7c6d": at["b"],
        "batch/broken-0c1d2e3f": at["b"],
    }
    assert paris.ended == {
        "batch/etl-9a8b7c6d": at["e"],
        "batch/broken-0c1d2e3f": at["e"],
        "batch/quiet-1a2b3c4d": at["e"],
    }
    # Why it failed is its message, less when it ran.
    assert paris.said == {
        "batch/broken-0c1d2e3f": why,
        "batch/said-99887766": "a (reason) of its own ()",
    }
    assert paris.jobs["batch/old-55667788"] == "Running"
    assert paris.jobs["batch/odd-11223344"] == "Succeeded"


def test_garbled_health_moves_nothing_and_breaks_nothing(tmp_path) -> None:
    resources = [
        job("train-5e6f7a8b", "Progressing") | {"health": "Progressing"},
        job("wrong-1a2b3c4d", "Progressing") | {"health": {"status": "Progressing", "message": 7}},
        job("never-0c1d2e3f", "Progressing", message="no pod since 2026-13-45T99:00:00Z"),
        job("listed-9a8b7c6d", "Progressing") | {"health": {"status": ["Healthy"]}},
        job("", "Healthy"),
        job("etl-9a8b7c6d", "Healthy"),
    ]
    # Applications no schema checked: the custom-objects API hands them back as stored.
    odd = [
        application("frankfurt", resources) | {"metadata": "caspian-frankfurt"},
        application("frankfurt", resources) | {"status": ["Synced"]},
        application("california", resources),
    ]
    odd[2]["metadata"]["labels"]["caspian.dev/spoke"] = ["california"]
    with serve() as api:
        api.route(APPS, applications(application("paris", resources), *odd))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    paris = states["paris"]
    # A message that is no text says nothing against the health it comes with.
    assert paris.jobs == {"batch/wrong-1a2b3c4d": "Running", "batch/etl-9a8b7c6d": "Succeeded"}
    assert paris.podless == {}
    assert states["frankfurt"].jobs == states["california"].jobs == {}
    # A Job whose health is garbled counts as there; an Application whose
    # status is garbled lists nothing, rather than every Job missing.
    names = ["train-5e6f7a8b", "wrong-1a2b3c4d", "never-0c1d2e3f", "listed-9a8b7c6d"]
    assert paris.listed == {f"batch/{n}" for n in [*names, "etl-9a8b7c6d"]}
    assert states["frankfurt"].listed is None
    assert up() == 1


REFUSED = 'admission webhook "validate.kyverno.svc-fail" denied the request: require-limits'


def failed_sync(*results: dict, finished: str | None = "2026-12-02T03:00:09Z") -> dict:
    """The operationState of an automated sync that failed to apply some of
    its resources (`results`, as `sync_result` makes them)."""
    state = {
        "phase": "Failed",
        "message": "one or more objects failed to apply, reason: " + REFUSED,
        "startedAt": "2026-12-02T03:00:05Z",
        "operation": {"sync": {"revision": "0" * 40}, "initiatedBy": {"automated": True}},
        "syncResult": {"revision": "0" * 40, "resources": list(results)},
    }
    return state | ({"finishedAt": finished} if finished else {})


def sync_result(name: str, status: str, message: str, namespace: str = "batch") -> dict:
    return {
        "group": "batch",
        "version": "v1",
        "kind": "Job",
        "namespace": namespace,
        "name": name,
        "status": status,
        "message": message,
        "hookPhase": "Failed" if status == "SyncFailed" else "Running",
        "syncPhase": "Sync",
    }


def out_of_sync(name: str, health: str | None) -> dict:
    return job(name, health) | {"status": "OutOfSync"}


def test_a_job_the_last_sync_failed_to_apply_is_unapplied_with_the_spokes_words(
    tmp_path,
) -> None:
    resources = [
        out_of_sync("refused-1a2b3c4d", "Missing"),
        out_of_sync("unresumed-0c1d2e3f", "Suspended"),
        job("applied-9a8b7c6d", "Progressing", message="running"),
        job("mended-11223344", "Suspended"),
    ]
    operation = failed_sync(
        sync_result("refused-1a2b3c4d", "SyncFailed", REFUSED),
        sync_result("unresumed-0c1d2e3f", "SyncFailed", 'jobs.batch "x" is forbidden:\n quota'),
        sync_result("applied-9a8b7c6d", "Synced", "job.batch/applied-9a8b7c6d configured"),
        # Failed then, applied since (by hand, or a later sync): in sync now.
        sync_result("mended-11223344", "SyncFailed", REFUSED),
        # No longer in the Application's resources: its file left rendered/.
        sync_result("gone-55667788", "SyncFailed", REFUSED),
    )
    with serve() as api:
        app = application("paris", resources, operationState=operation)
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    finished = datetime(2026, 12, 2, 3, 0, 9, tzinfo=UTC)
    assert paris.unapplied == {
        "batch/refused-1a2b3c4d": finished,
        "batch/unresumed-0c1d2e3f": finished,
    }
    assert paris.said == {
        "batch/refused-1a2b3c4d": REFUSED,
        "batch/unresumed-0c1d2e3f": 'jobs.batch "x" is forbidden: quota',
    }
    assert paris.jobs == {"batch/applied-9a8b7c6d": "Running"}


def test_a_degraded_job_says_why_it_failed(tmp_path) -> None:
    why = "Job has reached the specified backoff limit"
    resources = [
        job("broken-0c1d2e3f", "Degraded", message=why),
        job("quiet-1a2b3c4d", "Degraded"),
        job("etl-9a8b7c6d", "Healthy", message="Job completed"),
    ]
    with serve() as api:
        api.route(APPS, applications(application("paris", resources)))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    assert paris.said == {"batch/broken-0c1d2e3f": why}


def test_a_sync_still_retrying_dates_its_failures_from_its_start(tmp_path) -> None:
    operation = failed_sync(
        sync_result("refused-1a2b3c4d", "SyncFailed", REFUSED), finished=None
    ) | {"phase": "Running", "retryCount": 2}
    with serve() as api:
        app = application(
            "paris", [out_of_sync("refused-1a2b3c4d", "Missing")], operationState=operation
        )
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    assert paris.unapplied == {"batch/refused-1a2b3c4d": datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC)}


def test_garbled_sync_results_say_nothing_and_break_nothing(tmp_path) -> None:
    refused = out_of_sync("refused-1a2b3c4d", "Missing")
    good = sync_result("refused-1a2b3c4d", "SyncFailed", REFUSED)
    garbled = [
        "Failed",
        {"phase": "Failed", "syncResult": ["not", "a", "map"]},
        failed_sync(good, finished="yesterday") | {"startedAt": 7},
        failed_sync(good, finished="2026-12-02T03:00:09") | {"startedAt": "2026-12-02T03:00:05"},
        failed_sync(good) | {"syncResult": {"resources": "none"}},
        failed_sync(
            "a string", good | {"name": 7}, good | {"namespace": ""}, {**good, "kind": "Pod"}
        ),
        failed_sync(good | {"message": 7}),
    ]
    for operation in garbled:
        with serve() as api:
            app = application("paris", [refused], operationState=operation)
            api.route(APPS, applications(app))
            api.route(SETTINGS, settings(CHECKED))
            paris = observe(tmp_path, api.url)["paris"]
        assert paris.said == {} and up() == 1
        if operation is not garbled[-1]:
            assert paris.unapplied == {}
    # A refusal without words still counts.
    assert list(paris.unapplied) == ["batch/refused-1a2b3c4d"]


UNREACHABLE = (
    'Failed to load live state: failed to get cluster info for "https://paris-control-plane:6443":'
    " error synchronizing cache state : dial tcp 172.18.0.3:6443: connect: connection refused"
)


def condition(kind: str, message: str, since: str = "2026-12-02T03:00:00Z") -> dict:
    return {"type": kind, "message": message, "lastTransitionTime": since}


def syncable(spoke: str) -> float | None:
    return REGISTRY.get_sample_value("caspian_argocd_spoke_syncable", {"spoke": spoke})


def test_a_spoke_argo_cd_cannot_sync_takes_no_new_work(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    paris = application("paris", PARIS, conditions=[condition("ComparisonError", UNREACHABLE)])
    # One sync that failed is not a spoke that cannot be synced: its Jobs say why.
    failed_once = condition("SyncError", "Failed last sync attempt: one or more objects failed")
    frankfurt = application("frankfurt", PARIS, conditions=[failed_once])
    with serve() as api:
        api.route(APPS, applications(paris, frankfurt))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    assert not states["paris"].up and states["paris"].cpu == 0
    assert states["paris"].reason.startswith(
        "Argo CD cannot sync its Application: ComparisonError: Failed to load live state: "
    )
    assert len(states["paris"].reason) <= 160
    assert states["paris"].down_since == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    # What it said of the Jobs there still counts: they are where they were.
    assert states["paris"].jobs["batch/etl-9a8b7c6d"] == "Succeeded"
    assert states["frankfurt"].up and states["frankfurt"].cpu > 0
    assert (syncable("paris"), syncable("frankfurt"), syncable("california")) == (0, 1, None)
    assert "spoke paris takes no new work" in caplog.text
    # Mended, it is back.
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(CHECKED))
        assert observe(tmp_path, api.url)["paris"].up
    assert (syncable("paris"), syncable("frankfurt")) == (1, None)


def test_a_spoke_whose_application_does_not_sync_by_itself_takes_no_new_work(
    tmp_path, caplog
) -> None:
    # Its automated sync turned off (`argocd app set --sync-policy none`, or
    # enabled: false): what Caspian commits starts only when someone syncs it.
    caplog.set_level(logging.WARNING)
    manual = application("paris", PARIS)
    del manual["spec"]["syncPolicy"]
    off = application("frankfurt", PARIS)
    off["spec"]["syncPolicy"]["automated"]["enabled"] = False
    # Present, even empty, turns it on; without prune or self-heal, a warning each.
    bare = application("california", PARIS)
    bare["spec"]["syncPolicy"] = {"automated": {}}
    with serve() as api:
        api.route(APPS, applications(manual, off, bare))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    why = (
        "Argo CD does not sync its Application by itself (spec.syncPolicy.automated is off); "
        "set it, as argocd/applicationset.yaml does"
    )
    assert [(states[n].up, states[n].reason) for n in ("paris", "frankfurt", "california")] == [
        (False, why),
        (False, why),
        (True, ""),
    ]
    assert (syncable("paris"), syncable("frankfurt"), syncable("california")) == (0, 0, 1)
    pruning = [r.getMessage() for r in caplog.records if "does not prune" in r.getMessage()]
    assert pruning == [
        "Application caspian-california does not prune: a Job whose file leaves "
        "rendered/california/ (a requeued job's, a cancelled one's) stays on the spoke, and may "
        "run there still; set spec.syncPolicy.automated.prune to true, as "
        "argocd/applicationset.yaml does"
    ]
    unhealed = [r.getMessage() for r in caplog.records if "self-heal" in r.getMessage()]
    assert unhealed == [
        "Application caspian-california does not self-heal: a Job suspended, changed or deleted "
        "on the spoke by hand stays so until Argo CD next syncs it for a new commit; set "
        "spec.syncPolicy.automated.selfHeal to true, as argocd/applicationset.yaml does"
    ]
    # Each is asked of its own.
    pruning_only = application("paris", PARIS)
    pruning_only["spec"]["syncPolicy"]["automated"]["selfHeal"] = False
    assert [w.split(":")[0] for w in loose_ends(pruning_only, spoke="paris")] == [
        "Application caspian-paris does not self-heal"
    ]


def up() -> float | None:
    return REGISTRY.get_sample_value("caspian_argocd_up")


def test_without_the_job_health_check_only_failures_count(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings({"url": "https://argocd.example.invalid"}))
        states = observe(tmp_path, api.url)
    # Argo CD's own check reads a Job resumed from suspend as Healthy while it runs.
    assert states["paris"].jobs == {"batch/broken-0c1d2e3f": "Failed"}
    # Nor is its word on a suspended Job relied on.
    assert states["paris"].suspended == frozenset()
    assert "apply argocd/job-health.yaml" in caplog.text
    assert up() == 0


def test_health_kept_out_of_the_application_moves_nothing_and_says_why(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    # Argo CD 3's default: the health goes to the resource tree; syncs stay.
    refused = failed_sync(sync_result("sweep-1a2b3c4d", "SyncFailed", REFUSED))
    resources = [*PARIS, out_of_sync("sweep-1a2b3c4d", None)]
    app = application("paris", resources, resourceHealthSource="appTree", operationState=refused)
    with serve() as api:
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    assert states["paris"].jobs == {} and states["paris"].podless == {}
    assert list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
    # Without health, no Job reads Missing: which are there is not known.
    assert states["paris"].listed is None
    assert 'controller.resource.health.persist: "true"' in caplog.text
    assert up() == 0


def test_a_hub_that_cannot_be_read_leaves_declared_capacity_and_no_status(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    nested = Reply(
        body=b"[" * 100_000 + b"]" * 100_000
    )  # past what Python's JSON reader recurses into
    for reply in (
        Reply(status=403, body={"kind": "Status"}),
        Reply(body=b"<html>proxy</html>"),
        nested,
    ):
        with serve() as api:
            api.route(APPS, reply)
            api.route(SETTINGS, settings(CHECKED))
            states = observe(tmp_path, api.url)
        assert all(state.up and state.jobs == {} for state in states.values())
        assert all(state.source == "declared" for state in states.values())
        assert up() == 0
    assert "HTTP 403" in caplog.text
    assert "kube-token-not-for-logs" not in caplog.text


def test_a_hub_that_sends_its_applications_a_byte_at_a_time_is_cut_off(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    slow = applications(application("paris", PARIS))
    slow.drip = 0.05  # each byte well within the timeout, the whole in a minute and more
    with serve() as api:
        api.route(APPS, slow)
        api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": api.url})
        started = time.monotonic()
        states = ArgoCDObserver(
            kubeconfig=config, context="kind-hub", timeout_s=2.0, whole_answer_s=1.0
        ).observe(fleet_with())
        took = time.monotonic() - started
    assert took < 3.0
    assert all(state.up and state.jobs == {} for state in states.values())
    assert all(state.source == "declared" for state in states.values())
    assert "did not answer whole within 1 s" in caplog.text and up() == 0


def test_a_hub_read_held_by_a_credential_plugin_is_given_up_and_runs_once(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(CHECKED))
        config, runs = waiting_plugin(tmp_path, api.url, cluster="hub")
        observer = ArgoCDObserver(kubeconfig=str(config), context="kind-hub", whole_answer_s=0.5)
        started = time.monotonic()
        first, second = observer.observe(fleet_with()), observer.observe(fleet_with())
        took = time.monotonic() - started
        ran = runs.read_text().count("run")
    assert took < 3.0 and ran == 1
    for states in (first, second):
        assert all(state.source == "declared" and state.jobs == {} for state in states.values())
    assert "its read has not ended in 1 s (a credential plugin" in caplog.text
    assert "has not ended (a credential plugin" in caplog.text.split("its read has not ended")[1]


def test_reconcile_with_the_argocd_observer_records_a_job_finished(tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    runner_env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = CliRunner()
    at = ["--now", "2026-11-22T02:00:00Z"]
    assert run.invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    first = run.invoke(main, ["reconcile", "--once", "--repo", str(remote), *at], env=runner_env)
    assert first.exit_code == 0, first.output
    started = next(e for e in gitutil.ledger(remote).values() if e["phase"] == "Dispatched")
    namespace = started["id"].split("/")[0]
    done = application(started["spoke"], [job(started["jobName"], "Healthy", namespace)])
    with serve() as api:
        api.route(APPS, applications(done))
        api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": api.url})
        args = ["--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config]
        later = ["--now", "2026-11-22T02:20:00Z"]
        second = run.invoke(
            main, ["reconcile", "--once", "--repo", str(remote), *args, *later], env=runner_env
        )
    assert second.exit_code == 0, second.output
    assert gitutil.ledger(remote)[started["id"]]["phase"] == "Succeeded"


def test_a_planned_job_argo_cd_says_runs_is_recorded_running_from_then(tmp_path) -> None:
    # Resumed on its spoke outside Caspian: Argo CD's health is the live Job's.
    remote = tmp_path / "fleet.git"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = CliRunner()
    assert run.invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    first = run.invoke(
        main,
        ["reconcile", "--once", "--repo", str(remote), "--now", "2026-11-22T02:00:00Z"],
        env=env,
    )
    assert first.exit_code == 0, first.output
    planned = max(
        (e for e in gitutil.ledger(remote).values() if e["phase"] == "Planned"),
        key=lambda e: e["plannedStart"],
    )
    namespace = planned["id"].split("/")[0]
    runs = application(
        planned["spoke"], [job(planned["jobName"], "Progressing", namespace, message="running")]
    )
    with serve() as api:
        api.route(APPS, applications(runs))
        api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": api.url})
        args = ["--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config]
        line = ["reconcile", "--once", "--repo", str(remote), *args]
        second = run.invoke(main, [*line, "--now", "2026-11-22T02:20:00Z"], env=env)
    assert second.exit_code == 0, second.output
    entry = gitutil.ledger(remote)[planned["id"]]
    # Argo CD does not say since when: from the reconcile that saw it.
    assert (entry["phase"], entry["plannedStart"]) == ("Running", "2026-11-22T02:20:00Z")
    path = f"rendered/{planned['spoke']}/{namespace}.{planned['jobName']}.yaml"
    assert yaml.safe_load(gitutil.read(remote, path))["spec"]["suspend"] is False
    assert "started outside Caspian: 1 job" in gitutil.message(remote).splitlines()[0]


class _Fleet:
    """A fleet repo reconciled once at 02:00, with `started` dispatched, then
    reconciled through `--observer argocd` with what the hub's Argo CD says."""

    def __init__(self, tmp_path, **policy) -> None:
        self.tmp_path = tmp_path
        self.remote = tmp_path / "fleet.git"
        self.env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
        assert CliRunner().invoke(main, ["init", "--bare", str(self.remote)]).exit_code == 0
        if policy:
            written = yaml.safe_load(gitutil.read(self.remote, "caspian.yaml"))
            written["spec"] |= policy
            gitutil.user_commit(self.remote, {"caspian.yaml": yaml.safe_dump(written).encode()})
        self.reconcile([], "2026-11-22T02:00:00Z")
        ledger = gitutil.ledger(self.remote).values()
        self.started = next(e for e in ledger if e["phase"] == "Dispatched")

    def job(self, health: str, message: str = "") -> dict:
        namespace = self.started["id"].split("/")[0]
        return job(self.started["jobName"], health, namespace, message=message)

    def synced(self, app: dict) -> dict:
        """`app` listing too, as there, each Job the branch holds for its spoke
        that it does not list: Argo CD applied them, and they wait suspended,
        or, resumed, to begin."""
        spoke = app["metadata"]["labels"]["caspian.dev/spoke"]
        resources = list(app["status"]["resources"])
        named = {(r.get("namespace"), r.get("name")) for r in resources}
        for path in gitutil.files(self.remote, f"rendered/{spoke}/"):
            for doc in yaml.safe_load_all(gitutil.read(self.remote, path)):
                if doc and doc["kind"] == "Job":
                    there = (doc["metadata"]["namespace"], doc["metadata"]["name"])
                    if there not in named and doc["spec"]["suspend"]:
                        resources.append(job(there[1], "Suspended", there[0]))
                    elif there not in named:
                        resources.append(job(there[1], "Progressing", there[0], "starting"))
        return app | {"status": app["status"] | {"resources": resources}}

    def reconcile_seeing(
        self,
        app: dict,
        now: str,
        *,
        command: str = "reconcile",
        windows: tuple[dict, ...] = (),
        job: str | None = None,
        unmade: tuple[str, ...] = (),
    ) -> str:
        """`command` with the hub's Argo CD holding `app`, and the other
        spokes' Applications as the ApplicationSet makes them, but for the
        spokes `unmade`."""
        spoke = app["metadata"]["labels"]["caspian.dev/spoke"]
        others = [application(name, []) for name in self.spokes() if name not in (spoke, *unmade)]
        with serve() as api:
            api.route(APPS, applications(*(self.synced(a) for a in (app, *others))))
            api.route(SETTINGS, settings(CHECKED))
            api.route(PROJECTS, projects(*windows))
            config = kubeconfig(self.tmp_path, {"hub": api.url})
            return self.reconcile(
                ["--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config],
                now,
                command=command,
                job=job,
            )

    def reconcile(
        self, args: list[str], now: str, *, command: str = "reconcile", job: str | None = None
    ) -> str:
        """`command`: reconcile, spokes, or explain of `job` or the started one."""
        once = {"reconcile": ["--once"], "spokes": []}.get(command)
        if once is None:
            once = [job or self.started["id"]]
        line = [command, *once, "--repo", str(self.remote), *args, "--now", now]
        result = CliRunner().invoke(main, line, env=self.env)
        assert result.exit_code == 0, result.output
        return result.output

    def spokes(self) -> list[str]:
        return [
            p.split("/")[-1].removesuffix(".yaml") for p in gitutil.files(self.remote, "spokes/")
        ]

    def entry(self) -> dict:
        return gitutil.ledger(self.remote)[self.started["id"]]

    def requeued_seeing(self, app: dict) -> str:
        """Reconciles seeing `app` within the policy's requeueUnscheduled (15m)
        of the dispatch, then past it: the job waits, then leaves its spoke.
        The requeue's commit message."""
        spoke = self.started["spoke"]
        self.reconcile_seeing(app, "2026-11-22T02:10:00Z")
        assert self.entry()["phase"] == "Dispatched"
        self.reconcile_seeing(app, "2026-11-22T02:20:00Z")
        assert self.entry()["requeuedFrom"] == [spoke] and self.entry()["spoke"] != spoke
        return gitutil.message(self.remote)


def test_reconcile_with_the_argocd_observer_requeues_a_job_that_makes_no_pod(tmp_path) -> None:
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    said = "no pod since 2026-11-22T02:00:04Z: see the Job's events"
    message = fleet.requeued_seeing(application(spoke, [fleet.job("Progressing", said)]))
    assert f"its Job created no pod (see its events) on {spoke} from " in message


def test_a_run_counts_from_when_argo_cd_says_it_began_to_when_it_ended(tmp_path) -> None:
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    began, ended = "2026-11-22T02:03:00Z", "2026-11-22T02:40:00Z"
    running = application(spoke, [fleet.job("Progressing", f"running since {began}")])
    fleet.reconcile_seeing(running, "2026-11-22T02:10:00Z")
    assert fleet.entry()["phase"] == "Running"
    ran = f"complete (began {began}, ended {ended})"
    fleet.reconcile_seeing(application(spoke, [fleet.job("Healthy", ran)]), "2026-11-22T03:00:00Z")
    entry = fleet.entry()
    # Seen at 03:00, it ended at 02:40: not counted to the reconcile that saw it.
    assert (entry["phase"], entry["finishedAt"]) == ("Succeeded", ended)
    # A version 2 check says neither: from its planned start to 03:00.
    other = _Fleet(tmp_path / "older")
    old = application(spoke, [other.job("Healthy", "complete")])
    other.reconcile_seeing(old, "2026-11-22T03:00:00Z")
    assert other.entry()["finishedAt"] == "2026-11-22T03:00:00Z"
    assert entry["emittedGrams"] < other.entry()["emittedGrams"]


def test_a_finished_jobs_job_is_pruned_in_a_commit_past_the_retention(tmp_path) -> None:
    fleet = _Fleet(tmp_path, retention="30m")
    spoke, name = fleet.started["spoke"], fleet.started["jobName"]
    path = f"rendered/{spoke}/{fleet.started['id'].split('/')[0]}.{name}.yaml"
    done = application(spoke, [fleet.job("Healthy")])
    fleet.reconcile_seeing(done, "2026-11-22T02:20:00Z")
    assert fleet.entry()["finishedAt"] == "2026-11-22T02:20:00Z"
    told = fleet.reconcile_seeing(done, "2026-11-22T02:21:00Z", command="explain")
    assert (
        f"its Job leaves rendered/{spoke}/ at 2026-11-22T02:50:00Z (Argo CD deletes it then): "
        "30m after it succeeded (the policy's retention)"
    ) in told
    head = gitutil.head(fleet.remote)
    fleet.reconcile_seeing(done, "2026-11-22T02:21:00Z")
    assert gitutil.head(fleet.remote) == head and path in gitutil.files(fleet.remote)
    fleet.reconcile_seeing(done, "2026-11-22T02:50:00Z")
    assert path not in gitutil.files(fleet.remote)
    message = gitutil.message(fleet.remote)
    assert "prune: 1 job (finished)" in message.splitlines()[0]
    assert f"- {fleet.started['id']}: Job {name} on {spoke}, succeeded; kept 30m after " in message
    assert fleet.entry()["phase"] == "Succeeded"
    # The next reconcile has nothing to prune, and commits nothing.
    head = gitutil.head(fleet.remote)
    fleet.reconcile_seeing(application(spoke, []), "2026-11-22T02:51:00Z")
    assert gitutil.head(fleet.remote) == head


def test_reconcile_with_the_argocd_observer_requeues_a_job_argo_cd_cannot_apply(tmp_path) -> None:
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    refused = fleet.job("Missing") | {"status": "OutOfSync"}
    result = sync_result(fleet.started["jobName"], "SyncFailed", REFUSED, refused["namespace"])
    # Refused since before its dispatch, while it was planned there, suspended.
    failed = failed_sync(result, finished="2026-11-22T01:30:00Z")
    message = fleet.requeued_seeing(application(spoke, [refused], operationState=failed))
    assert f"Argo CD could not apply its Job on {spoke} from 2026-11-22T02:00:00Z to " in message
    assert f'({spoke} says: "{REFUSED}")' in message


def test_reconcile_with_the_argocd_observer_requeues_a_job_argo_cd_never_applied(tmp_path) -> None:
    # Its Application's automated sync is off: Argo CD lists the Job, Missing on
    # its spoke, and has tried no sync that could say why.
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    missing = fleet.job("Missing") | {"status": "OutOfSync"}
    message = fleet.requeued_seeing(application(spoke, [missing]))
    assert f"- requeued {fleet.started['id']}: its Job has not appeared on {spoke} from " in message
    # The others there are, so the spoke stays up.
    assert "Down (no new work" not in message


def test_reconcile_with_the_argocd_observer_requeues_a_job_argo_cd_never_resumed(
    tmp_path,
) -> None:
    # Argo CD applied the Job suspended, as planned, and its automated sync has
    # been off since: it lists the Job Suspended, out of sync.
    fleet = _Fleet(tmp_path)
    spoke, namespace = fleet.started["spoke"], fleet.started["id"].split("/")[0]
    key = f"{namespace}/{fleet.started['jobName']}"
    held = application(spoke, [fleet.job("Suspended") | {"status": "OutOfSync"}])
    told = fleet.reconcile_seeing(held, "2026-11-22T02:10:00Z", command="explain")
    assert f"  not running yet: its Job has not been resumed on {spoke} since " in told
    assert "it is requeued at 2026-11-22T02:15:00Z unless it starts" in told
    listed = fleet.reconcile_seeing(held, "2026-11-22T02:10:00Z", command="spokes")
    assert "| 1 not resumed by Argo CD |" in listed
    assert f"{spoke}: Job {key} not resumed by Argo CD since 2026-11-22T02:00:00Z" in listed
    message = fleet.requeued_seeing(held)
    assert f"- requeued {fleet.started['id']}: its Job has not been resumed on {spoke} from " in (
        message
    )
    assert f"({spoke} holds Job {key} suspended, as the branch held it before its start: " in (
        message
    )
    assert REGISTRY.get_sample_value("caspian_jobs_not_resumed", {"spoke": spoke}) == 1
    assert "Down (no new work" not in message


def test_reconcile_runs_a_failed_job_again_as_the_policy_allows(tmp_path) -> None:
    fleet = _Fleet(tmp_path, retryLimit=1)
    spoke, name = fleet.started["spoke"], fleet.started["jobName"]
    why = "Job has reached the specified backoff limit"
    failed = application(spoke, [fleet.job("Degraded", why)])
    fleet.reconcile_seeing(failed, "2026-11-22T02:30:00Z")
    entry = fleet.entry()
    assert (entry["retries"], entry["jobName"]) == (1, f"{name}-r1")
    assert entry["phase"] in ("Planned", "Dispatched")
    message = gitutil.message(fleet.remote)
    assert message.startswith("retry: 1 job")
    assert f'its Job {name} failed on {spoke} ({spoke} says: "{why}"); now ' in message
    # The failed Job, reported until Argo CD prunes it, is not the new one's.
    head = gitutil.head(fleet.remote)
    fleet.reconcile_seeing(failed, "2026-11-22T02:30:00Z")
    assert gitutil.head(fleet.remote) == head
    told = fleet.reconcile_seeing(failed, "2026-11-22T02:30:00Z", command="explain")
    assert "run again once after a Job of it failed" in told and f"{name}-r1" in told


def test_reconcile_plans_nothing_more_where_argo_cd_cannot_sync(tmp_path) -> None:
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    planned = [e for e in gitutil.ledger(fleet.remote).values() if e["phase"] == "Planned"]
    planned = [e for e in planned if e["spoke"] == spoke]
    assert planned
    blocked = [condition("ComparisonError", UNREACHABLE, since="2026-11-22T02:03:00Z")]
    app = application(spoke, [], conditions=blocked)
    fleet.reconcile_seeing(app, "2026-11-22T02:05:00Z")
    # Within the policy's spokeDownGrace (5m) of the condition, its planned
    # jobs wait there; the one dispatched there stays, as it would on a spoke
    # that is down.
    after = gitutil.ledger(fleet.remote)
    for entry in planned:
        assert after[entry["id"]]["spoke"] == spoke
        assert after[entry["id"]]["spokeDownSince"] == "2026-11-22T02:03:00Z"
    assert (fleet.entry()["phase"], fleet.entry()["spoke"]) == ("Dispatched", spoke)
    assert REGISTRY.get_sample_value("caspian_jobs_waiting_for_spoke") == len(planned)
    message = gitutil.message(fleet.remote)
    assert "\nDown (no new work; what was dispatched there stays):\n" in message
    assert f"\n- {spoke}: Argo CD cannot sync its Application: ComparisonError: " in message
    assert "wait for it, undispatched, until 2026-11-22 02:08" in message
    # Seen down again within the slot: nothing to commit.
    head = gitutil.head(fleet.remote)
    fleet.reconcile_seeing(app, "2026-11-22T02:07:00Z")
    assert gitutil.head(fleet.remote) == head
    # Past it, they go elsewhere, and the commit says why, carbon or not.
    fleet.reconcile_seeing(app, "2026-11-22T02:09:00Z")
    after = gitutil.ledger(fleet.remote)
    assert all(after[e["id"]]["spoke"] != spoke for e in planned)
    assert all("spokeDownSince" not in after[e["id"]] for e in planned)
    assert REGISTRY.get_sample_value("caspian_jobs_waiting_for_spoke") == 0
    message = gitutil.message(fleet.remote)
    left = [line for line in message.splitlines() if line.startswith(("- moved ", "- dispatched "))]
    assert len(left) == len(planned)
    assert all(
        f"; {spoke} takes no new work (down since 2026-11-22 02:03, longer than" in line
        for line in left
    )


def test_explain_says_a_job_waits_for_its_spoke(tmp_path) -> None:
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    ledger = gitutil.ledger(fleet.remote).values()
    waiting = next(e for e in ledger if e["phase"] == "Planned" and e["spoke"] == spoke)
    blocked = [condition("ComparisonError", UNREACHABLE, since="2026-11-22T02:03:00Z")]
    app = application(spoke, [], conditions=blocked)
    with serve() as api:
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": api.url})
        line = ["explain", waiting["id"], "--repo", str(fleet.remote), "--now"]
        line += ["2026-11-22T02:05:00Z", "--observer", "argocd", "--argocd-context", "kind-hub"]
        told = CliRunner().invoke(main, [*line, "--kubeconfig", config], env=fleet.env)
    assert told.exit_code == 0, told.output
    assert (
        f"  waits for {spoke}, down since 2026-11-22T02:03:00Z (Argo CD cannot sync its "
        "Application: ComparisonError: "
    ) in told.output
    assert (
        "it is not dispatched there, and is planned elsewhere from 2026-11-22T02:08:00Z (the "
        "policy's spokeDownGrace 5m) if it is down still"
    ) in told.output


def test_with_the_kube_observer_argo_cd_answers_for_spokes_without_a_context_and_its_syncs(
    tmp_path,
) -> None:
    fleet = fleet_with()
    context = {"paris": "kind-paris"}  # the others have none: Caspian may not ask them
    paris_asked = tuple(
        s.model_copy(
            update={"spec": s.spec.model_copy(update={"kube_context": context.get(s.name)})}
        )
        for s in fleet.spokes
    )
    fleet = fleet.model_copy(update={"spokes": paris_asked})
    with serve() as paris, serve() as hub:
        healthy(paris)
        # Argo CD's word on paris: a Job it failed to apply, which paris's own
        # API cannot tell from one not synced yet, and a health paris overrules.
        refused = failed_sync(sync_result("sweep-1a2b3c4d", "SyncFailed", REFUSED))
        paris_app = application(
            "paris",
            [job("etl-5e6f7a8b", "Degraded"), out_of_sync("sweep-1a2b3c4d", "Missing")],
            operationState=refused,
        )
        frankfurt_app = application(
            "frankfurt",
            [
                job("report-12345678", "Healthy"),
                job("etl-0c1d2e3f", "Progressing", message=f"no pod since {SINCE}"),
            ],
        )
        hub.route(APPS, applications(paris_app, frankfurt_app))
        hub.route(SETTINGS, settings(CHECKED))
        hub.route(PROJECTS, projects({**DENY_ALL, "clusters": ["paris"], "applications": []}))
        config = kubeconfig(tmp_path, {"paris": paris.url, "hub": hub.url})
        observer = StatusFilledIn(
            KubeObserver(kubeconfig=config),
            ArgoCDObserver(kubeconfig=config, context="kind-hub"),
        )
        states = observer.observe(fleet)
    # paris answers for itself; frankfurt, which Caspian may not ask, through
    # Argo CD; the source names each, and the hub by its context.
    assert states["paris"].source == "kube:kind-paris+argocd:kind-hub"
    assert states["paris"].jobs["batch/etl-5e6f7a8b"] == "Succeeded"
    assert list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
    assert states["paris"].said == {"batch/sweep-1a2b3c4d": REFUSED}
    # Only the hub knows its AppProjects' sync windows.
    assert [w.schedule for w in states["paris"].sync_windows] == ["* * * * *"]
    assert states["frankfurt"].sync_windows == ()
    assert states["paris"].up and states["frankfurt"].up
    assert states["frankfurt"].jobs == {"batch/report-12345678": "Succeeded"}
    assert list(states["frankfurt"].podless) == ["batch/etl-0c1d2e3f"]
    assert states["frankfurt"].source == "declared+argocd:kind-hub"
    assert states["california"].jobs == {} and states["california"].up


def test_a_spoke_that_answers_for_itself_takes_no_new_work_where_argo_cd_cannot_sync(
    tmp_path,
) -> None:
    fleet = fleet_with()
    asked = tuple(
        s.model_copy(update={"spec": s.spec.model_copy(update={"kube_context": f"kind-{s.name}"})})
        for s in fleet.spokes
    )
    fleet = fleet.model_copy(update={"spokes": asked})
    with serve() as paris, serve() as frankfurt, serve() as hub:
        healthy(paris)
        healthy(frankfurt)
        blocked = [condition("InvalidSpecError", "cluster 'paris' has not been configured")]
        unreachable = [condition("ComparisonError", UNREACHABLE)]
        hub.route(
            APPS,
            applications(
                application("paris", [], conditions=blocked),
                application("california", [], conditions=unreachable),
            ),
        )
        hub.route(SETTINGS, settings(CHECKED))
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "hub": hub.url}
        config = kubeconfig(tmp_path, urls | {"california": "http://127.0.0.1:9"})
        observer = StatusFilledIn(
            KubeObserver(kubeconfig=config, timeout_s=1.0),
            ArgoCDObserver(kubeconfig=config, context="kind-hub"),
        )
        states = observer.observe(fleet)
    assert states["paris"].source == "kube:kind-paris+argocd:kind-hub" and not states["paris"].up
    assert states["paris"].cpu == states["paris"].gpu == 0
    assert states["paris"].reason == (
        "Argo CD cannot sync its Application: InvalidSpecError: cluster 'paris' has not been "
        "configured"
    )
    assert states["paris"].down_since == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    # The hub holds no Application for frankfurt: the Jobs it lists, if any,
    # are ones applied before (reconciler/arrivals.py).
    assert states["frankfurt"].up and states["frankfurt"].no_application
    assert not states["paris"].no_application
    # Down for its own API too, it keeps that reason.
    assert not states["california"].up
    assert "Argo CD" not in states["california"].reason


def _own_argo_cd(api, *apps: dict, windows: tuple[dict, ...] = ()) -> None:
    """A spoke's API server that runs its own Argo CD as well, holding `apps`."""
    healthy(api)
    api.route(APPS, applications(*apps))
    api.route(SETTINGS, settings(CHECKED))
    api.route(PROJECTS, projects(*windows))


def _in_cluster(app: dict) -> dict:
    """An Application as a spoke's own Argo CD holds it: into its own cluster."""
    app["spec"]["destination"] = {"name": "in-cluster", "namespace": "batch"}
    return app


def _with_contexts(fleet, context: dict[str, str]):
    """`fleet` with each spoke's kubeContext as `context` gives (none where it gives none)."""
    asked = tuple(
        s.model_copy(
            update={"spec": s.spec.model_copy(update={"kube_context": context.get(s.name)})}
        )
        for s in fleet.spokes
    )
    return fleet.model_copy(update={"spokes": asked})


def test_where_each_spoke_runs_its_own_argo_cd_each_is_read_from_its_own(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    context = {"paris": "kind-paris", "frankfurt": "kind-frankfurt"}
    fleet = _with_contexts(fleet_with(), context)
    refused = failed_sync(sync_result("sweep-1a2b3c4d", "SyncFailed", REFUSED))
    paris_app = _in_cluster(
        application("paris", [out_of_sync("sweep-1a2b3c4d", "Missing")], operationState=refused)
    )
    blocked = [condition("ComparisonError", UNREACHABLE)]
    frankfurt_app = _in_cluster(application("frankfurt", [], conditions=blocked))
    nightly = {
        "kind": "deny",
        "schedule": "0 1 * * *",
        "duration": "2h",
        "clusters": ["in-cluster"],
    }
    with serve() as paris, serve() as frankfurt:
        _own_argo_cd(paris, paris_app, windows=(nightly,))
        _own_argo_cd(frankfurt, frankfurt_app)
        config = kubeconfig(tmp_path, {"paris": paris.url, "frankfurt": frankfurt.url})

        def seen() -> dict:
            own = [ArgoCDObserver(kubeconfig=config, context=c) for c in context.values()]
            return StatusFilledIn(KubeObserver(kubeconfig=config), ArgoCDs(own)).observe(fleet)

        states = seen()
        # Each Argo CD's word on its own spoke: a Job it could not apply there,
        # its sync windows; one that cannot sync its Application.
        assert states["paris"].up and list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
        assert [w.schedule for w in states["paris"].sync_windows] == ["0 1 * * *"]
        assert not states["frankfurt"].up
        assert states["frankfurt"].reason.startswith("Argo CD cannot sync its Application")
        assert (syncable("paris"), syncable("frankfurt")) == (1, 0)
        # None holds california's Application: nothing given syncs it.
        assert states["california"].no_application
        assert not states["paris"].no_application and not states["frankfurt"].no_application
        # An Argo CD that cannot be read may hold it: nothing is taken for that.
        frankfurt.route(APPS, Reply(status=503, body={"kind": "Status", "code": 503}))
        states = seen()
        assert not states["california"].no_application and states["frankfurt"].up
        # Its spoke's gauge reads as it was last read.
        assert (syncable("paris"), syncable("frankfurt")) == (1, 0)
        # Two that hold one spoke's: the first given is read, and a warning says so.
        frankfurt.route(APPS, applications(_in_cluster(application("paris", []))))
        states = seen()
        assert list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
    assert "two Argo CDs hold an Application for spoke paris: that in argocd (context " in (
        caplog.text
    )


def test_each_spokes_own_argo_cd_is_found_through_the_spokes_own_context(tmp_path) -> None:
    # --argocd-on-spokes: no context named, the spoke files say where to look.
    refused = failed_sync(sync_result("sweep-1a2b3c4d", "SyncFailed", REFUSED))
    paris_app = _in_cluster(
        application("paris", [out_of_sync("sweep-1a2b3c4d", "Missing")], operationState=refused)
    )
    blocked = [condition("ComparisonError", UNREACHABLE)]
    with serve() as paris, serve() as frankfurt, serve() as hub:
        _own_argo_cd(paris, paris_app)
        _own_argo_cd(frankfurt, _in_cluster(application("frankfurt", [], conditions=blocked)))
        _own_argo_cd(hub)  # a hub that holds none of the spokes' Applications
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "hub": hub.url}
        config = kubeconfig(tmp_path, urls)
        fleet = _with_contexts(fleet_with(), {"paris": "kind-paris"})
        observer = SpokesArgoCDs(kubeconfig=config)
        states = observer.observe(fleet)
        assert list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
        # frankfurt and california have no kubeContext: nothing is known of
        # their Argo CDs, so neither is taken for one nothing syncs.
        assert states["frankfurt"].up and not states["frankfurt"].no_application
        assert not states["california"].no_application
        # frankfurt given its kubeContext: its Argo CD is read from the next observation on.
        fleet = _with_contexts(fleet, {"paris": "kind-paris", "frankfurt": "kind-frankfurt"})
        states = observer.observe(fleet)
        assert not states["frankfurt"].up
        assert states["frankfurt"].reason.startswith("Argo CD cannot sync its Application")
        assert list(states["paris"].unapplied) == ["batch/sweep-1a2b3c4d"]
        assert not states["california"].no_application
        # One with a kubeContext whose Argo CD holds no Application for it
        # is one nothing syncs.
        everyone = {"paris": "kind-paris", "frankfurt": "kind-frankfurt", "california": "kind-hub"}
        states = observer.observe(_with_contexts(fleet, everyone))
        assert states["california"].no_application and not states["paris"].no_application
        # With a hub named besides, every spoke's Application is looked for
        # in one of them: california's is in none.
        beside = SpokesArgoCDs(
            kubeconfig=config, others=[ArgoCDObserver(kubeconfig=config, context="kind-hub")]
        )
        states = beside.observe(fleet)
        assert states["california"].no_application
        assert not states["paris"].no_application and not states["frankfurt"].up
        # No spoke has a kubeContext and nothing else is named: each as declared.
        states = SpokesArgoCDs(kubeconfig=config).observe(_with_contexts(fleet, {}))
        assert all(s.source == "declared" and not s.no_application for s in states.values())
        assert REGISTRY.get_sample_value("caspian_argocd_up") == 0


def test_a_spoke_whose_own_argo_cd_is_unread_holds_back_no_other_spoke(tmp_path) -> None:
    # --argocd-on-spokes: paris is down, and its Argo CD unread with it.
    # california's own Argo CD holds no Application for it: that one was
    # read, and only a hub named besides may hold it as well.
    with serve() as paris, serve() as frankfurt, serve() as california, serve() as hub:
        _own_argo_cd(paris, _in_cluster(application("paris", [])))
        _own_argo_cd(frankfurt, _in_cluster(application("frankfurt", [])))
        _own_argo_cd(california)
        _own_argo_cd(hub)
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "california": california.url}
        config = kubeconfig(tmp_path, {**urls, "hub": hub.url})
        fleet = _with_contexts(fleet_with(), {name: f"kind-{name}" for name in urls})
        observer = SpokesArgoCDs(kubeconfig=config)
        assert observer.observe(fleet)["california"].no_application
        paris.route(APPS, Reply(status=503, body={"kind": "Status", "code": 503}))
        states = observer.observe(fleet)
        assert states["california"].no_application
        assert not states["paris"].no_application and not states["frankfurt"].no_application
        assert REGISTRY.get_sample_value("caspian_argocd_up") == 0
        # california's own unread: it may hold california's Application.
        california.route(APPS, Reply(status=503, body={"kind": "Status", "code": 503}))
        assert not observer.observe(fleet)["california"].no_application
        # A hub named besides may hold any spoke's: unread, it holds back each.
        california.route(APPS, applications())
        beside = SpokesArgoCDs(
            kubeconfig=config, others=[ArgoCDObserver(kubeconfig=config, context="kind-hub")]
        )
        assert beside.observe(fleet)["california"].no_application
        hub.route(APPS, Reply(status=503, body={"kind": "Status", "code": 503}))
        assert not beside.observe(fleet)["california"].no_application


def test_the_options_choose_the_observer() -> None:
    def chosen(kind: str, *contexts: str, on_spokes: bool = False) -> type:
        target = Target(
            "fleet.git",
            "main",
            None,
            kind,
            None,
            argocd_contexts=contexts,
            argocd_on_spokes=on_spokes,
        )
        return type(target.observer())

    assert chosen("kube") is KubeObserver
    assert chosen("kube", "kind-hub") is StatusFilledIn
    assert chosen("kube", on_spokes=True) is StatusFilledIn
    assert chosen("argocd") is ArgoCDObserver
    assert chosen("argocd", "kind-paris", "kind-frankfurt") is ArgoCDs
    assert chosen("argocd", on_spokes=True) is SpokesArgoCDs
    assert chosen("argocd", "kind-hub", on_spokes=True) is SpokesArgoCDs


def test_a_configmap_of_a_job_that_argo_cd_could_not_apply_holds_that_job_back(tmp_path) -> None:
    fleet = fleet_with(jobs__trainer=wrapping(CONFIG))
    (trainer,) = [job for job in fleet.jobs if job.name == "trainer"]
    again = trainer.job_name_for(retry=2)  # its third run's Job
    config = sync_result("trainer-config", "SyncFailed", REFUSED) | {
        "group": "",
        "kind": "ConfigMap",
    }
    stranger = config | {"name": "someone-elses"}
    resources = [out_of_sync(again, "Missing"), out_of_sync("other-1a2b3c4d", "Missing")]
    with serve() as api:
        app = application("paris", resources, operationState=failed_sync(config, stranger))
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        observer = ArgoCDObserver(
            kubeconfig=kubeconfig(tmp_path, {"hub": api.url}), context="kind-hub"
        )
        paris = observer.observe(fleet)["paris"]
    finished = datetime(2026, 12, 2, 3, 0, 9, tzinfo=UTC)
    assert paris.unapplied == {f"batch/{again}": finished}
    assert paris.said == {f"batch/{again}": f"its ConfigMap trainer-config: {REFUSED}"}
    # A Job's own failure is told in its own words.
    own = sync_result(trainer.job_name, "SyncFailed", "quota")
    with serve() as api:
        first = [out_of_sync(trainer.job_name, "Missing")]
        app = application("paris", first, operationState=failed_sync(config, own))
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        observer = ArgoCDObserver(
            kubeconfig=kubeconfig(tmp_path, {"hub": api.url}), context="kind-hub"
        )
        assert observer.observe(fleet)["paris"].said == {f"batch/{trainer.job_name}": "quota"}


def test_a_spoke_whose_application_has_none_of_its_jobs_lists_none(tmp_path) -> None:
    # Automated sync off from the start: every Job Missing there, nothing else said.
    missing = [job("queued-1a2b3c4d", "Missing") | {"status": "OutOfSync"}]
    with serve() as api:
        api.route(APPS, applications(application("paris", missing), application("frankfurt", [])))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    assert states["paris"].listed == frozenset() and states["frankfurt"].listed == frozenset()
    # Nor has a spoke with no Application, where the hub holds Caspian's.
    assert states["california"].listed == frozenset()


def test_a_hub_with_none_of_caspians_applications_tells_no_spoke_lists_none(
    tmp_path, caplog
) -> None:
    # Applications made without the ApplicationSet's label, say: nothing to go by.
    with caplog.at_level(logging.WARNING):
        states = observe_hub(tmp_path, application("mars", PARIS))
    assert all(state.listed is None for state in states.values())
    assert (
        "no Application labelled app.kubernetes.io/part-of=caspian in argocd (context kind-hub) "
        "syncs a spoke of the fleet, so no Job status is read: apply argocd/applicationset.yaml"
    ) in caplog.text


def test_the_sync_windows_of_each_spokes_project_are_read(tmp_path) -> None:
    paris_only = {"kind": "deny", "schedule": "0 9 * * *", "duration": "2h", "clusters": ["paris"]}
    broken = {"kind": "deny", "schedule": "at nine", "duration": "2h", "clusters": ["*"]}
    apps = (application("paris", PARIS), application("frankfurt", []))
    states = observe_hub(tmp_path, *apps, appprojects=projects(paris_only, broken))
    assert [(w.project, w.kind, w.schedule) for w in states["paris"].sync_windows] == [
        ("caspian-jobs", "deny", "0 9 * * *")
    ]
    # Not the other project's, nor a window for another cluster.
    assert states["frankfurt"].sync_windows == () and states["california"].sync_windows == ()
    assert states["paris"].jobs  # and the rest is read as before


def test_a_window_that_cannot_be_read_is_named_in_a_warning(tmp_path, caplog) -> None:
    broken = {"kind": "deny", "schedule": "at nine", "duration": "2h", "clusters": ["*"]}
    apps = (application("paris", PARIS), application("frankfurt", []))
    with caplog.at_level(logging.WARNING):
        states = observe_hub(tmp_path, *apps, appprojects=projects(broken))
    assert states["paris"].sync_windows == ()
    warning = "AppProject caspian-jobs: spec.syncWindows[0] is passed over: 'at nine'"
    # Once, though it matches both Applications.
    assert caplog.text.count(warning) == 1


def test_a_hub_that_does_not_let_caspian_list_projects_leaves_no_windows_and_says_so(
    tmp_path, caplog
) -> None:
    forbidden = Reply(status=403, body={"kind": "Status", "code": 403})
    with caplog.at_level(logging.WARNING):
        states = observe_hub(tmp_path, application("paris", PARIS), appprojects=forbidden)
    assert states["paris"].sync_windows == ()
    assert states["paris"].jobs and states["paris"].up
    assert "cannot list the hub's AppProjects (HTTP 403" in caplog.text
    assert "apply deploy/hub-argocd/rbac.yaml again" in caplog.text


def test_a_garbled_project_list_is_no_answer(tmp_path) -> None:
    garbled = Reply(body={"items": "none"})
    states = observe_hub(tmp_path, application("paris", PARIS), appprojects=garbled)
    assert states["paris"].jobs == {} and states["paris"].sync_windows == ()


def frozen(tmp_path, duration: str) -> tuple[_Fleet, dict, dict]:
    """A fleet whose started job's spoke a deny window bars from 02:00 for
    `duration`, the window, and that spoke's Application: Argo CD has not
    applied the Job (Missing)."""
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    deny = {"kind": "deny", "schedule": "0 2 * * *", "duration": duration, "clusters": [spoke]}
    return fleet, deny, application(spoke, [fleet.job("Missing") | {"status": "OutOfSync"}])


def barred_now(spoke: str) -> float | None:
    return REGISTRY.get_sample_value("caspian_spoke_sync_barred", {"spoke": spoke})


def test_nothing_starts_where_a_sync_window_bars_argo_cd_and_nothing_is_requeued_for_it(
    tmp_path,
) -> None:
    # Sunday 2026-11-22: a deny window on the started job's spoke from 02:00
    # to 05:00. Argo CD has not applied its Job (Missing): it cannot sync.
    fleet, deny, app = frozen(tmp_path, "3h")
    spoke, started = fleet.started["spoke"], fleet.started["id"]
    in_window = partial(fleet.reconcile_seeing, app, "2026-11-22T02:20:00Z", windows=(deny,))
    head = gitutil.head(fleet.remote)
    in_window()
    assert gitutil.head(fleet.remote) != head
    assert {name: barred_now(name) for name in fleet.spokes()} == {
        name: (1 if name == spoke else 0) for name in fleet.spokes()
    }
    assert (
        "\nSync windows (Argo CD does not sync there; nothing starts there then):\n"
        f"- {spoke}: 2026-11-22 02:00 to 2026-11-22 05:00 (AppProject caspian-jobs's deny "
        "window '0 2 * * *' for 3h (UTC))\n"
    ) in gitutil.message(fleet.remote)
    ledger = gitutil.ledger(fleet.remote)
    assert ledger[started]["phase"] == "Dispatched" and ledger[started]["spoke"] == spoke
    there = [e for e in ledger.values() if e["phase"] == "Planned" and e["spoke"] == spoke]
    assert there, "the spoke has planned work to keep out of the window"
    assert all(e["plannedStart"] >= "2026-11-22T05:00:00Z" for e in there)
    told = in_window(command="explain")
    assert (
        f"  Argo CD applies its Job on {spoke} once it may sync it again, at 2026-11-22T05:00:00Z "
        "(AppProject caspian-jobs's deny window '0 2 * * *' for 3h (UTC)); it is not requeued "
        "for the wait\n"
    ) in told
    assert "has not appeared" not in told
    planned = in_window(command="explain", job=there[0]["id"])
    assert (
        f"  {spoke} takes no start from 2026-11-22T02:00:00Z to 2026-11-22T05:00:00Z: Argo CD "
        "does not sync it then (AppProject caspian-jobs's deny window '0 2 * * *' for 3h (UTC))\n"
    ) in planned
    told = in_window(command="spokes")
    assert (
        f"\n{spoke}: Argo CD does not sync it now, until 2026-11-22T05:00:00Z (AppProject "
        "caspian-jobs's deny window '0 2 * * *' for 3h (UTC)): nothing is planned to start "
        "there then\n"
    ) in told
    key = f"{started.split('/')[0]}/{fleet.started['jobName']}"
    assert "| 1 held back by sync windows |" in told
    assert f"\n{spoke}: Job {key} held back by sync windows since 2026-11-22T02:00:00Z\n" in told
    # Once it can sync, the Job has requeueUnscheduled (15m) to appear.
    fleet.reconcile_seeing(app, "2026-11-22T05:10:00Z", windows=(deny,))
    assert gitutil.ledger(fleet.remote)[started]["phase"] == "Dispatched"
    assert barred_now(spoke) == 0
    fleet.reconcile_seeing(app, "2026-11-22T05:20:00Z", windows=(deny,))
    assert gitutil.ledger(fleet.remote)[started]["requeuedFrom"] == [spoke]
    message = gitutil.message(fleet.remote)
    assert f"its Job has not appeared on {spoke} from 2026-11-22T05:00:00Z to " in message


def test_a_dispatched_job_already_on_a_spoke_a_window_bars_is_not_said_to_wait_for_it(
    tmp_path,
) -> None:
    # Argo CD applied and resumed its Job before the window: its pods wait
    # for a node, whatever the window says.
    fleet, deny, _ = frozen(tmp_path, "3h")
    spoke = fleet.started["spoke"]
    there = application(
        spoke, [fleet.job("Progressing", "no pod ready since 2026-11-22T02:00:04Z")]
    )
    seeing = partial(fleet.reconcile_seeing, there, "2026-11-22T02:10:00Z", windows=(deny,))
    seeing()
    assert fleet.entry()["phase"] == "Dispatched"
    told = seeing(command="explain")
    assert f"on {spoke} from 2026-11-22T02:00:00Z" in told
    assert "once it may sync it again" not in told
    assert "held back" not in seeing(command="spokes")


def test_a_dispatched_job_a_long_window_would_make_late_goes_where_it_can_start(
    tmp_path,
) -> None:
    # A change freeze on its spoke from 02:00 to 22:00, before Argo CD applied its Job.
    fleet, deny, app = frozen(tmp_path, "20h")
    spoke, started = fleet.started["spoke"], fleet.started["id"]
    told = fleet.reconcile_seeing(app, "2026-11-22T02:20:00Z", windows=(deny,), command="explain")
    assert (
        f"\n  requeued off {spoke}: Argo CD may not sync {spoke} until 2026-11-22T22:00:00Z "
        in (told)
    )
    fleet.reconcile_seeing(app, "2026-11-22T02:20:00Z", windows=(deny,))
    entry = fleet.entry()
    assert entry["spoke"] != spoke and entry["phase"] == "Dispatched"
    message = gitutil.message(fleet.remote)
    assert (
        f"- requeued {started}: Argo CD may not sync {spoke} until 2026-11-22T22:00:00Z "
        "(AppProject caspian-jobs's deny window '0 2 * * *' for 20h (UTC)), and its Job, not "
        f"there yet, would then end after its deadline {fleet.started['deadline']}: it is "
        f"planned where it can start sooner; now {entry['spoke']} "
    ) in message
    # Its file left the spoke's directory: when Argo CD syncs there again, it is not there.
    assert not [
        p for p in gitutil.files(fleet.remote, f"rendered/{spoke}/") if entry["jobName"] in p
    ]


def test_a_spoke_argo_cd_has_no_application_for_gets_its_jobs_requeued_and_is_cut_off(
    tmp_path,
) -> None:
    # The ApplicationSet made none for it (a path filter that leaves it out, say).
    fleet = _Fleet(tmp_path)
    spoke = fleet.started["spoke"]
    other = next(name for name in fleet.spokes() if name != spoke)
    app = application(other, [])
    fleet.reconcile_seeing(app, "2026-11-22T02:10:00Z", unmade=(spoke,))
    assert fleet.entry()["phase"] == "Dispatched"
    fleet.reconcile_seeing(app, "2026-11-22T02:20:00Z", unmade=(spoke,))
    assert fleet.entry()["requeuedFrom"] == [spoke]
    message = gitutil.message(fleet.remote)
    assert f"- requeued {fleet.started['id']}: its Job has not appeared on {spoke} from " in message
    assert (
        f"\n- {spoke}: no Argo CD Caspian reads holds an Application syncing rendered/{spoke}/ "
        "(Caspian's are labelled app.kubernetes.io/part-of=caspian and caspian.dev/spoke), so "
        "no Job the branch holds for it reaches it (found at 2026-11-22T02:20:00Z)" in message
    )
    assert "It is tried again at 2026-11-22T03:20:00Z, or once an Application syncs it" in message
