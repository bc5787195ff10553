"""`caspian spokes`: each spoke as Caspian sees it, through the real CLI, git
and (for the kube observer) the real client against local API servers."""

from __future__ import annotations

import pytest
import yaml
from prometheus_client import REGISTRY

from tests import gitutil
from tests.cli.test_cli import AT, kube_spoke
from tests.fakehttp import Reply, serve
from tests.reconcile.test_argocd_observer import (
    APPS,
    CHECKED,
    REFUSED,
    SETTINGS,
    SINCE,
    application,
    applications,
    failed_sync,
    settings,
    sync_result,
)
from tests.reconcile.test_argocd_observer import job as job_resource
from tests.reconcile.test_kube_observer import (
    _pod_on_node,
    _started_job,
    _waiting_pod,
    _waits,
    job,
    kubeconfig,
    listing,
)

HEADER = (
    "| spoke | zone | observed | state | room cpu | room memory | room GPUs | nodes "
    "| kubernetes | in the ledger | seen there |"
)


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by spoke, each as its cells."""
    found = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and line != HEADER and len(cells) == 11:
            found[cells[0]] = cells[1:]
    return found


def test_spokes_shows_each_spokes_room_and_placements_and_a_broken_file(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    placed = {}
    for entry in gitutil.ledger(remote).values():
        where = placed.setdefault(entry["spoke"], {})
        where[entry["phase"]] = where.get(entry["phase"], 0) + 1
    result = run("spokes", "--repo", remote)
    assert result.exit_code == 0, result.output
    assert HEADER in result.output
    table = rows(result.output)
    assert sorted(table) == ["california", "frankfurt", "paris"]
    paris = placed["paris"]
    ledger_cell = ", ".join(f"{paris[phase]} {phase}" for phase in sorted(paris))
    assert table["paris"] == [
        "FR",
        "declared",
        "up",
        "32",
        "128.0Gi",
        "2",
        "-",
        "-",
        ledger_cell,
        "-",
    ]
    # A spoke its file closes to new work: said, and not a failure.
    spoke = yaml.safe_load(gitutil.read(remote, "spokes/paris.yaml"))
    spoke["spec"]["unschedulable"] = True
    gitutil.user_commit(remote, {"spokes/paris.yaml": yaml.safe_dump(spoke).encode()})
    closed = run("spokes", "--repo", remote)
    assert closed.exit_code == 0, closed.output
    assert rows(closed.output)["paris"][2] == "unschedulable"
    assert "\nparis: unschedulable: its file sets spec.unschedulable" in closed.output
    # Its maintenance windows that have not ended, each with its reason, and
    # its quota.
    spoke["spec"]["quota"] = {"cpu": "24", "memory": "64Gi"}
    spoke["spec"]["maintenance"] = [
        {"start": "2026-11-21T04:00:00Z", "end": "2026-11-21T06:00:00Z"},
        {"start": "2026-11-22T04:00:00Z", "end": "2026-11-22T06:00:00Z", "reason": "upgrade"},
        {"schedule": "0 22 * * sat", "duration": "4h", "timeZone": "Europe/Paris"},
    ]
    gitutil.user_commit(remote, {"spokes/paris.yaml": yaml.safe_dump(spoke).encode()})
    upkeep = run("spokes", "--repo", remote, *AT)
    assert (
        "\nparis: maintenance from 2026-11-22T04:00:00Z to 2026-11-22T06:00:00Z (upgrade): "
        "nothing new is planned to run there then\n"
    ) in upkeep.output
    assert "2026-11-21T04:00:00Z" not in upkeep.output
    assert (
        "\nparis: maintenance every '0 22 * * sat' (Europe/Paris) for 4h, next from "
        "2026-11-28T21:00:00Z to 2026-11-29T01:00:00Z: nothing new is planned to run there "
        "then\n"
    ) in upkeep.output
    assert (
        "\nparis: Caspian's jobs hold at most 24 cpu, 64Gi memory there at once (its file's "
        "spec.quota)\n"
    ) in upkeep.output
    # A spoke file that does not load: named, with its problem, and exit 3.
    text = gitutil.read(remote, "spokes/frankfurt.yaml").replace(b"pue:", b"pue: [")
    gitutil.user_commit(remote, {"spokes/frankfurt.yaml": text})
    head = gitutil.head(remote)
    broken = run("spokes", "--repo", remote)
    assert broken.exit_code == 3, broken.output
    assert rows(broken.output)["frankfurt"][:3] == ["-", "-", "file does not load"]
    assert "\nfrankfurt: file does not load: spokes/frankfurt.yaml" in broken.output
    assert gitutil.head(remote) == head  # it commits nothing


def test_spokes_shows_what_the_kube_observer_sees_and_may_not_list(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}
    # A job whose pods read a Secret, which paris does not let Caspian list.
    doc = yaml.safe_load(gitutil.read(remote, "jobs/eval-nightly.yaml"))
    pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": "hf-token"}}]
    gitutil.user_commit(remote, {"jobs/eval-nightly.yaml": yaml.safe_dump(doc).encode()})
    with serve() as gone:
        stopped = gone.url  # california's API server: nothing answers there now
    with serve() as paris, serve() as frankfurt:
        kube_spoke(paris, cpu="48")
        paris.route("/api/v1/namespaces/batch/limitranges", Reply(status=403, body=forbidden))
        paris.route("/api/v1/namespaces/batch/secrets", Reply(status=403, body=forbidden))
        stuck = _waiting_pod("climate-x", "climate-sim-330fb802", since="2026-11-22T02:04:00Z")
        # It ran, and its node went: the pod made in place of its own finds none.
        lost = job("train-5a5a5a5a", namespace="default", ready=False)
        lost["status"]["failed"] = 1
        paris.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [lost])))
        stranded = _waiting_pod(
            "train-x", "train-5a5a5a5a", since="2026-11-22T01:30:00Z", message="0/1 nodes."
        )
        paris.route("/api/v1/pods", Reply(body=listing("PodList", [stuck, stranded])))
        label = {"pod-security.kubernetes.io/enforce": "restricted"}
        batch = {"metadata": {"name": "batch", "labels": label}}
        paris.route("/api/v1/namespaces", Reply(body=listing("NamespaceList", [batch])))
        hard = {"cpu": "16", "pods": "30"}
        quota = {"metadata": {"name": "q", "namespace": "batch"}, "spec": {"hard": hard}}
        urgent = {
            "metadata": {"name": "urgent", "namespace": "batch"},
            "spec": {"hard": {"cpu": "4"}, "scopes": ["PriorityClass"]},
        }
        paris.route(
            "/api/v1/namespaces/batch/resourcequotas",
            Reply(body=listing("ResourceQuotaList", [quota, urgent])),
        )
        # A managed cluster's minor version, with its suffix.
        version = {
            "major": "1",
            "minor": "29+",
            "gitVersion": "v1.29.3-eks-1a2b3c",
            "gitCommit": "0b2a1c3d",
            "gitTreeState": "clean",
            "buildDate": "2024-03-01T00:00:00Z",
            "goVersion": "go1.21.7",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
        paris.route("/version", Reply(body=version))
        kube_spoke(frankfurt, cpu="64")
        small = {
            "metadata": {"name": "small", "namespace": "batch"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}}]},
        }
        frankfurt.route(
            "/api/v1/namespaces/batch/limitranges",
            Reply(body=listing("LimitRangeList", [small])),
        )
        running, refused = job("etl-daily-3e57853f"), _started_job("report-urgent-79060c1d")
        jobs = listing("JobList", [running, refused])
        frankfurt.route("/apis/batch/v1/jobs", Reply(body=jobs))
        pulling = _waits("ImagePullBackOff", 'Back-off pulling image "x"')
        unpulled = _pod_on_node("backfill-x", "backfill-eu-1c0d9c1f", statuses=[pulling])
        frankfurt.route("/api/v1/pods", Reply(body=listing("PodList", [unpulled])))
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "california": stopped}
        config = kubeconfig(tmp_path, urls)
        result = run("spokes", "--repo", remote, "--observer", "kube", "--kubeconfig", config)
    assert result.exit_code == 3, result.output
    table = rows(result.output)
    assert table["paris"][:7] == ["FR", "kube:kind-paris", "up", "48", "256.0Gi", "0", "1"]
    assert table["paris"][-1] == "1 Running, 1 finding no node, 1 with its node gone"
    # Its Kubernetes version, as its /version says; frankfurt's does not answer.
    assert (table["paris"][7], table["frankfurt"][7]) == ("1.29", "-")
    assert table["frankfurt"][-1] == "1 Running, 1 making no pod, 1 not starting"
    # Each Job there that does not run yet, with what the spoke says of it.
    assert (
        "\nparis: Job default/climate-sim-330fb802 finding no node since 2026-11-22T02:04:00Z\n"
        "paris: Job default/train-5a5a5a5a with its node gone since 2026-11-22T01:30:00Z: "
        "0/1 nodes.\n"
    ) in result.output
    assert (
        "\nfrankfurt: Job default/backfill-eu-1c0d9c1f not starting since 2026-11-22T02:00:00Z: "
        'ImagePullBackOff: Back-off pulling image "x"\n'
    ) in result.output
    assert table["california"][2] == "down"
    assert "\ncalifornia: down: " in result.output
    # What each namespace there holds a job's pods to.
    assert (
        "\nparis: namespace batch: enforces restricted Pod Security; ResourceQuotas of 16 cpu, "
        "30 pods in all; ResourceQuotas with scopes batch/urgent\n"
    ) in result.output
    assert "\nfrankfurt: namespace batch: LimitRange batch/small\n" in result.output
    assert (
        "\nparis: may not list LimitRanges in batch, so jobs are not checked against them "
        "there; apply deploy/spoke-rbac.yaml on it\n"
    ) in result.output
    # Secrets are listed only where a spoke's admin chose to let Caspian.
    assert (
        "\nparis: may not list Secrets in batch, so the Secrets jobs need are not checked "
        "there (deploy/spoke-rbac-secrets.yaml grants it, if you choose)\n"
    ) in result.output


def test_spokes_names_a_running_jobs_job_missing_there(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    on_paris = [
        e
        for e in gitutil.ledger(remote).values()
        if (e["phase"], e["spoke"]) == ("Dispatched", "paris")
    ]
    assert len(on_paris) > 1
    gone, *others = on_paris
    key = f"{gone['id'].split('/')[0]}/{gone['jobName']}"

    def there(entries):
        listed = [job(e["jobName"], namespace=e["id"].split("/")[0]) for e in entries]
        return Reply(body=listing("JobList", listed))

    with serve() as paris, serve() as frankfurt, serve() as california:
        for api in (paris, frankfurt, california):
            kube_spoke(api, cpu="64", gpu_node=True)
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "california": california.url}
        kube = ("--repo", remote, "--observer", "kube", "--kubeconfig", kubeconfig(tmp_path, urls))
        paris.route("/apis/batch/v1/jobs", there(on_paris))
        assert run("reconcile", "--once", *kube, "--now", "2026-11-22T02:20:00Z").exit_code == 0
        assert gitutil.ledger(remote)[gone["id"]]["phase"] == "Running"
        paris.route("/apis/batch/v1/jobs", there(others))
        # Before a reconcile marks it, from now; then from the mark.
        first = run("spokes", *kube, "--now", "2026-11-22T02:40:00Z")
        assert run("reconcile", "--once", *kube, "--now", "2026-11-22T03:00:00Z").exit_code == 0
        assert gitutil.ledger(remote)[gone["id"]]["goneSince"] == "2026-11-22T03:00:00Z"
        counted = {
            spoke: REGISTRY.get_sample_value("caspian_jobs_gone_from_spoke", {"spoke": spoke})
            for spoke in urls
        }
        assert counted == {"paris": 1, "frankfurt": 0, "california": 0}
        later = run("spokes", *kube, "--now", "2026-11-22T03:30:00Z")
    assert rows(first.output)["paris"][-1].endswith(", 1 missing")
    for result, since in ((first, "02:40"), (later, "03:00")):
        assert (
            f"\nparis: Job {key} missing since 2026-11-22T{since}:00Z, Running in the ledger "
            "(deleted there, with Argo CD's self-heal off?): it keeps its room until its planned "
            "end, then, unless it is back, is taken for failed from then\n"
        ) in result.output, result.output


def test_spokes_json_prints_one_object_per_spoke(run, tmp_path) -> None:
    import json

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    result = run("spokes", "--repo", remote, "--json")
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.output.splitlines()]
    assert [r["name"] for r in reports] == ["california", "frankfurt", "paris"]
    assert reports[2]["observed"]["cpu"] == 32 and reports[2]["state"] == "up"


def test_spokes_shows_what_the_hubs_argo_cd_says_of_the_jobs(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    refused = job_resource("sweep-1a2b3c4d", "Missing") | {"status": "OutOfSync"}
    failure = sync_result("sweep-1a2b3c4d", "SyncFailed", REFUSED)
    paris = application(
        "paris",
        [
            job_resource("etl-5e6f7a8b", "Progressing", message="running"),
            job_resource("report-9a8b7c6d", "Progressing", message=f"no pod since {SINCE}"),
            refused,
        ],
        operationState=failed_sync(failure),
    )
    with serve() as hub:
        hub.route(APPS, applications(paris))
        hub.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": hub.url})
        options = ("--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config)
        result = run("spokes", "--repo", remote, *options)
    assert result.exit_code == 0, result.output
    table = rows(result.output)
    assert table["paris"][1] == "declared+argocd:kind-hub"
    assert table["paris"][-1] == "1 Running, 1 not applied by Argo CD, 1 making no pod"
    assert table["frankfurt"][-1] == "-"
    assert (
        "\nparis: Job batch/sweep-1a2b3c4d not applied by Argo CD since 2026-12-02T03:00:09Z: "
        f"{REFUSED}\n"
    ) in result.output
    assert "\nparis: Job batch/report-9a8b7c6d making no pod since 2026-12-02T03:00:04Z\n" in (
        result.output
    )


@pytest.mark.parametrize(
    "own",
    [
        ("--argocd-context", "kind-paris", "--argocd-context", "kind-frankfurt"),
        # Through each spoke's kubeContext; california's runs no Argo CD to read.
        ("--argocd-on-spokes",),
    ],
)
def test_spokes_reads_each_spokes_own_argo_cd_where_each_runs_one(run, tmp_path, own) -> None:
    from tests.reconcile.test_argocd_observer import PROJECTS, UNREACHABLE, condition, projects

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    blocked = [condition("ComparisonError", UNREACHABLE)]
    # Each of the two that run one says something of its own spoke only it knows.
    by_hand = application("frankfurt", [])
    del by_hand["spec"]["syncPolicy"]["automated"]
    held = {"paris": application("paris", [], conditions=blocked), "frankfurt": by_hand}
    with serve() as paris, serve() as frankfurt, serve() as california:
        for name, api in {"paris": paris, "frankfurt": frankfurt, "california": california}.items():
            kube_spoke(api, cpu="64")
            if name in held:
                held[name]["spec"]["destination"] = {"name": "in-cluster", "namespace": "batch"}
                api.route(APPS, applications(held[name]))
                api.route(SETTINGS, settings(CHECKED))
                api.route(PROJECTS, projects())
        urls = {"paris": paris.url, "frankfurt": frankfurt.url, "california": california.url}
        config = kubeconfig(tmp_path, urls)
        options = ("--observer", "kube", *own, "--kubeconfig", config)
        result = run("spokes", "--repo", remote, *options)
    table = rows(result.output)
    assert [table[name][2] for name in ("paris", "frankfurt", "california")] == [
        "down",
        "down",
        "up",
    ]
    # Each says which Argo CD held its Application: its own, by its context.
    assert [table[name][1] for name in ("paris", "frankfurt", "california")] == [
        "kube:kind-paris+argocd:kind-paris",
        "kube:kind-frankfurt+argocd:kind-frankfurt",
        "kube:kind-california",
    ]
    assert "\nparis: down: Argo CD cannot sync its Application: ComparisonError" in result.output
    assert "\nfrankfurt: down: Argo CD does not sync its Application by itself" in result.output


def test_spokes_says_until_when_the_jobs_planned_on_a_down_spoke_wait_for_it(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    ledger = gitutil.ledger(remote).values()
    planned = sum(1 for e in ledger if e["spoke"] == "paris" and e["phase"] == "Planned")
    assert planned > 1
    blocked = {
        "type": "ComparisonError",
        "message": "Failed to load live state: dial tcp: i/o timeout",
        "lastTransitionTime": "2026-11-22T02:03:00Z",
    }
    with serve() as hub:
        hub.route(APPS, applications(application("paris", [], conditions=[blocked])))
        hub.route(SETTINGS, settings(CHECKED))
        config = kubeconfig(tmp_path, {"hub": hub.url})
        options = ("--observer", "argocd", "--argocd-context", "kind-hub", "--kubeconfig", config)
        result = run("spokes", "--repo", remote, *options)
    assert result.exit_code == 3, result.output
    assert rows(result.output)["paris"][2] == "down"
    assert (
        f"\nparis: {planned} jobs planned there wait for it until 2026-11-22T02:08:00Z (the "
        "policy's spokeDownGrace 5m), then go elsewhere\n"
    ) in result.output
    assert "\nfrankfurt: " not in result.output
