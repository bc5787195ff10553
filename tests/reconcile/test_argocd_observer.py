"""Job status from the hub's Argo CD Applications (`--observer argocd`), through
the real `kubernetes` client, against a local server that answers the paths it
calls as the API server would."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import yaml
from click.testing import CliRunner
from prometheus_client import REGISTRY

from reconciler.cli import Target, main
from reconciler.kube import ArgoCDObserver, KubeObserver
from reconciler.observing import StatusFilledIn
from tests import gitutil
from tests.deploy.test_job_health import PATCH
from tests.fakehttp import Reply, serve
from tests.fleet.helpers import fleet_with
from tests.reconcile.test_kube_observer import healthy, kubeconfig

APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
SETTINGS = "/api/v1/namespaces/argocd/configmaps/argocd-cm"
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
        "spec": {},
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


def settings(data: dict) -> Reply:
    return Reply(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": data})


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
    assert states["paris"].source == "declared+argocd"
    # Capacity stays as the spoke files declare it; other spokes are as declared.
    declared = {s.name: s.spec.capacity for s in fleet_with().spokes}
    assert states["paris"].cpu == declared["paris"].cpu and states["paris"].up
    assert states["frankfurt"].jobs == {} and states["frankfurt"].source == "declared"
    assert "mars" not in states
    assert up() == 1


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
    assert paris.source == "declared+argocd"


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
    assert "re-apply argocd/job-health.yaml" in caplog.text
    caplog.clear()
    with serve() as api:
        api.route(APPS, applications(application("paris", PARIS)))
        api.route(SETTINGS, settings(CHECKED))
        observe(tmp_path, api.url)
    assert "argocd/job-health.yaml" not in caplog.text


def test_garbled_health_moves_nothing_and_breaks_nothing(tmp_path) -> None:
    resources = [
        job("train-5e6f7a8b", "Progressing") | {"health": "Progressing"},
        job("wrong-1a2b3c4d", "Progressing") | {"health": {"status": "Progressing", "message": 7}},
        job("never-0c1d2e3f", "Progressing", message="no pod since 2026-13-45T99:00:00Z"),
        job("", "Healthy"),
        job("etl-9a8b7c6d", "Healthy"),
    ]
    with serve() as api:
        api.route(APPS, applications(application("paris", resources)))
        api.route(SETTINGS, settings(CHECKED))
        paris = observe(tmp_path, api.url)["paris"]
    # A message that is no text says nothing against the health it comes with.
    assert paris.jobs == {"batch/wrong-1a2b3c4d": "Running", "batch/etl-9a8b7c6d": "Succeeded"}
    assert paris.podless == {}
    assert up() == 1


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
    assert "apply argocd/job-health.yaml" in caplog.text
    assert up() == 0


def test_health_kept_out_of_the_application_moves_nothing_and_says_why(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    app = application("paris", PARIS, resourceHealthSource="appTree")
    with serve() as api:
        api.route(APPS, applications(app))
        api.route(SETTINGS, settings(CHECKED))
        states = observe(tmp_path, api.url)
    assert states["paris"].jobs == {}
    assert 'controller.resource.health.persist: "true"' in caplog.text
    assert up() == 0


def test_a_hub_that_cannot_be_read_leaves_declared_capacity_and_no_status(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    for reply in (Reply(status=403, body={"kind": "Status"}), Reply(body=b"<html>proxy</html>")):
        with serve() as api:
            api.route(APPS, reply)
            api.route(SETTINGS, settings(CHECKED))
            states = observe(tmp_path, api.url)
        assert all(state.up and state.jobs == {} for state in states.values())
        assert all(state.source == "declared" for state in states.values())
        assert up() == 0
    assert "HTTP 403" in caplog.text
    assert "kube-token-not-for-logs" not in caplog.text


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


def test_reconcile_with_the_argocd_observer_requeues_a_job_that_makes_no_pod(tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    runner_env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = CliRunner()
    at = ["--now", "2026-11-22T02:00:00Z"]
    assert run.invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    first = run.invoke(main, ["reconcile", "--once", "--repo", str(remote), *at], env=runner_env)
    assert first.exit_code == 0, first.output
    started = next(e for e in gitutil.ledger(remote).values() if e["phase"] == "Dispatched")
    namespace = started["id"].split("/")[0]
    said = "no pod since 2026-11-22T02:00:04Z: see the Job's events"
    refused = job(started["jobName"], "Progressing", namespace, message=said)

    def reconcile_at(now: str) -> None:
        with serve() as api:
            api.route(APPS, applications(application(started["spoke"], [refused])))
            api.route(SETTINGS, settings(CHECKED))
            config = kubeconfig(tmp_path, {"hub": api.url})
            args = ["--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config]
            result = run.invoke(
                main,
                ["reconcile", "--once", "--repo", str(remote), *args, "--now", now],
                env=runner_env,
            )
        assert result.exit_code == 0, result.output

    # Within the policy's requeueUnscheduled (15m) it waits, not running yet.
    reconcile_at("2026-11-22T02:10:00Z")
    assert gitutil.ledger(remote)[started["id"]]["phase"] == "Dispatched"
    reconcile_at("2026-11-22T02:20:00Z")
    entry = gitutil.ledger(remote)[started["id"]]
    assert entry["requeuedFrom"] == [started["spoke"]]
    assert entry["spoke"] != started["spoke"]
    assert f"its Job created no pod (see its events) on {started['spoke']} from " in (
        gitutil.message(remote)
    )


def test_with_the_kube_observer_only_spokes_without_a_context_take_argo_cds_word(
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
        hub.route(
            APPS,
            applications(
                application("paris", [job("etl-5e6f7a8b", "Degraded")]),
                application(
                    "frankfurt",
                    [
                        job("report-12345678", "Healthy"),
                        job("etl-0c1d2e3f", "Progressing", message=f"no pod since {SINCE}"),
                    ],
                ),
            ),
        )
        hub.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"paris": paris.url, "hub": hub.url})
        observer = StatusFilledIn(
            KubeObserver(kubeconfig=config),
            ArgoCDObserver(kubeconfig=config, context="kind-hub"),
        )
        states = observer.observe(fleet)
    # paris answers for itself; frankfurt, which Caspian may not ask, through Argo CD.
    assert states["paris"].source == "kube:kind-paris"
    assert states["paris"].jobs["batch/etl-5e6f7a8b"] == "Succeeded"
    assert states["frankfurt"].jobs == {"batch/report-12345678": "Succeeded"}
    assert list(states["frankfurt"].podless) == ["batch/etl-0c1d2e3f"]
    assert states["frankfurt"].source == "declared+argocd"
    assert states["california"].jobs == {} and states["california"].up


def test_the_options_choose_the_observer() -> None:
    def chosen(kind: str, context: str | None) -> type:
        target = Target("fleet.git", "main", None, kind, None, argocd_context=context)
        return type(target.observer())

    assert chosen("kube", None) is KubeObserver
    assert chosen("kube", "kind-hub") is StatusFilledIn
    assert chosen("argocd", None) is ArgoCDObserver
