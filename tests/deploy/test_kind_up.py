"""kind/up.sh run through, in both layouts, against stand-ins for docker, kind,
kubectl, git and caspian that answer as those tools do and record every call.
No cluster runs here, so this checks the script's own work: which clusters it
makes, what it applies where (the manifests, filled in, checked against the
real CRDs), and how it starts `caspian watch`. It cannot check that Argo CD
then syncs: that needs the clusters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_assets import errors

ROOT = Path(__file__).resolve().parents[2]
SPOKES = ("paris", "frankfurt", "california")
GATEWAY = "172.18.0.1"
REPO = f"git://{GATEWAY}:9418/fleet.git"
ARGOCD = "v3.1.9"

# One program for every tool: it records its name, arguments and (for
# `kubectl apply -f -`) what it was given, and answers what up.sh reads back.
STAND_IN = """\
import base64, json, os, sys
from pathlib import Path

tool, args = os.environ["FAKE_TOOL"], sys.argv[1:]
fed = sys.stdin.read() if tool == "kubectl" and args[-2:] == ["-f", "-"] else None
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": tool, "args": args, "stdin": fed}) + "\\n")
clusters = Path(os.environ["FAKE_STATE"]) / "clusters"
made = clusters.read_text().split() if clusters.exists() else []
if tool == "docker" and args[:2] == ["network", "inspect"]:
    print(os.environ["FAKE_GATEWAY"])
elif tool == "kind" and args[:2] == ["get", "clusters"]:
    print("\\n".join(made))
elif tool == "kind" and args[:2] == ["create", "cluster"]:
    clusters.write_text(" ".join([*made, args[args.index("--name") + 1]]))
elif tool == "kind" and args[:2] == ["get", "kubeconfig"]:
    name = args[args.index("--name") + 1]
    print("apiVersion: v1\\nclusters:\\n- cluster:")
    print(f"    certificate-authority-data: CA-{name}")
    print(f"    server: https://{name}-control-plane:6443")
    print(f"users:\\n- user:\\n    client-certificate-data: CERT-{name}")
    print(f"    client-key-data: KEY-{name}")
elif tool == "kubectl" and "--dry-run=client" in args:
    print("apiVersion: v1\\nkind: Namespace\\nmetadata:\\n  name: argocd")
elif tool == "kubectl" and "secret" in args:
    context = args[args.index("--context") + 1]
    print(base64.b64encode(f"initial-{context}".encode()).decode(), end="")
elif tool == "caspian" and args[:1] == ["init"]:
    Path(args[-1]).mkdir(parents=True)
"""


class Run:
    """One run of kind/up.sh: its exit, its output, and the calls it made."""

    def __init__(self, result: subprocess.CompletedProcess[str], log: Path) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.log = log

    def calls(self, tool: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [c for c in map(json.loads, lines) if c["tool"] == tool]

    def applied(self, context: str) -> list[dict[str, Any]]:
        """The documents piped to `kubectl --context CONTEXT apply -f -`."""
        return [
            document
            for call in self.calls("kubectl")
            if call["stdin"] is not None and call["args"][1] == context
            for document in yaml.safe_load_all(call["stdin"])
            if document
        ]

    def applied_files(self, context: str) -> list[str]:
        return [
            Path(call["args"][call["args"].index("-f") + 1]).name
            for call in self.calls("kubectl")
            if call["args"][1] == context and "apply" in call["args"] and call["stdin"] is None
        ]

    def watch(self) -> list[str]:
        """The arguments `caspian watch` was started with (it runs in the background)."""
        for _ in range(200):
            started = [c["args"] for c in self.calls("caspian") if c["args"][:1] == ["watch"]]
            if started:
                return started[0]
            time.sleep(0.05)
        raise AssertionError("caspian watch was not started")


@pytest.fixture
def up(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    program = tools / "stand-in.py"
    program.write_text(STAND_IN)
    for tool in ("docker", "kind", "kubectl", "git", "caspian"):
        shim = tools / tool
        shim.write_text(f'#!/bin/sh\nFAKE_TOOL={tool} exec "{sys.executable}" "{program}" "$@"\n')
        shim.chmod(0o755)
    state = tmp_path / "state"
    log = tmp_path / "calls.jsonl"
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CASPIAN": str(tools / "caspian"),
        "CASPIAN_KIND_STATE": str(state),
        "FAKE_LOG": str(log),
        "FAKE_STATE": str(tmp_path),
        "FAKE_GATEWAY": GATEWAY,
        "ARGOCD_VERSION": ARGOCD,  # as a user pins another
    }

    def run(*args: str) -> Run:
        result = subprocess.run(
            ["/bin/bash", str(ROOT / "kind" / "up.sh"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return Run(result, log)

    return run


def _argocd_installed_on(run: Run) -> set[str]:
    """The contexts given Argo CD, its Job health check and its health kept in Applications."""

    def did(what) -> set[str]:
        return {c["args"][1] for c in run.calls("kubectl") if what(" ".join(c["args"]))}

    return (
        did(lambda line: f"/argo-cd/{ARGOCD}/manifests/install.yaml" in line)
        & did(lambda line: line.endswith("argocd/job-health.yaml"))
        & did(lambda line: "controller.resource.health.persist" in line)
    )


def _argocd_contexts(args: list[str]) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == "--argocd-context"]


class TestTheHubLayout:
    def test_one_hub_argo_cd_syncs_every_spoke_and_caspian_reads_it(self, up) -> None:
        run = up()
        assert run.returncode == 0, run.stderr
        made = [c["args"] for c in run.calls("kind") if c["args"][:2] == ["create", "cluster"]]
        assert [a[a.index("--name") + 1] for a in made] == ["hub", *SPOKES]
        assert made[0][made[0].index("--config") + 1].endswith("kind/hub.yaml")
        assert _argocd_installed_on(run) == {"kind-hub"}

        on_hub = run.applied("kind-hub")
        appset = next(d for d in on_hub if d["kind"] == "ApplicationSet")
        assert appset["spec"]["generators"][0]["git"]["repoURL"] == REPO
        assert errors(appset) == []
        # Each spoke registered by the address kind gives inside its network.
        secrets = {d["metadata"]["name"]: d for d in on_hub if d["kind"] == "Secret"}
        assert len(secrets) == len(SPOKES)
        for secret in secrets.values():
            spoke = secret["metadata"]["labels"]["caspian.dev/spoke"]
            assert secret["stringData"]["server"] == f"https://{spoke}-control-plane:6443"
            assert f"CERT-{spoke}" in secret["stringData"]["config"]
        for spoke in SPOKES:
            assert run.applied_files(f"kind-{spoke}") == ["spoke-rbac.yaml"]

        watch = run.watch()
        assert watch[watch.index("--observer") + 1] == "kube"
        assert _argocd_contexts(watch) == ["kind-hub"]
        assert "initial-kind-hub" in run.stdout


class TestEachSpokesOwnArgoCD:
    def test_each_spoke_syncs_its_own_directory_and_caspian_reads_every_one(self, up) -> None:
        run = up("--layout", "each-spoke")
        assert run.returncode == 0, run.stderr
        made = [c["args"] for c in run.calls("kind") if c["args"][:2] == ["create", "cluster"]]
        assert [a[a.index("--name") + 1] for a in made] == list(SPOKES)
        assert _argocd_installed_on(run) == {f"kind-{spoke}" for spoke in SPOKES}

        for spoke in SPOKES:
            documents = run.applied(f"kind-{spoke}")
            kinds = sorted(d["kind"] for d in documents if d["kind"] != "Namespace")
            assert kinds == ["AppProject", "Application"], spoke
            project = next(d for d in documents if d["kind"] == "AppProject")
            application = next(d for d in documents if d["kind"] == "Application")
            assert project["spec"]["sourceRepos"] == [REPO]
            assert application["spec"]["source"]["repoURL"] == REPO
            assert application["spec"]["source"]["path"] == f"rendered/{spoke}"
            assert application["metadata"]["labels"]["caspian.dev/spoke"] == spoke
            assert application["spec"]["project"] == project["metadata"]["name"]
            assert errors(project) == [] and errors(application) == []
            assert run.applied_files(f"kind-{spoke}") == [
                "install.yaml",
                "spoke-rbac.yaml",
                "spoke-rbac-argocd.yaml",
            ]

        watch = run.watch()
        assert "--argocd-on-spokes" in watch and _argocd_contexts(watch) == []
        # Caspian reads each Argo CD through the spoke's kubeContext: the
        # context of the cluster the script put it in.
        for spoke in SPOKES:
            spec = yaml.safe_load((ROOT / "repo-template" / "spokes" / f"{spoke}.yaml").read_text())
            assert spec["spec"]["kubeContext"] == f"kind-{spoke}"
            assert f"password initial-kind-{spoke}" in run.stdout
        assert "--observer kube --argocd-on-spokes" in run.stdout


class TestArguments:
    @pytest.mark.parametrize("layout", ["hub", "each-spoke"])
    def test_run_again_it_makes_no_cluster_and_no_fleet_repo_anew(self, up, layout) -> None:
        def made(run: Run) -> list[str]:
            # Each run's log holds the calls of the runs before it too.
            return [
                " ".join(c["args"][:2])
                for c in run.calls("kind") + run.calls("caspian")
                if c["args"][:1] in (["create"], ["init"])
            ]

        first = up("--layout", layout)
        assert first.returncode == 0, first.stderr
        before = made(first)
        assert "init --bare" in before and "create cluster" in before
        again = up("--layout", layout)
        assert again.returncode == 0, again.stderr
        assert made(again) == before

    def test_another_layout_over_a_fleet_already_made_is_refused(self, up) -> None:
        assert up().returncode == 0
        run = up("--layout=each-spoke")
        assert run.returncode == 1
        assert "made with --layout hub: run kind/down.sh first" in run.stderr
        # Nothing of the other layout was begun.
        assert _argocd_installed_on(run) == {"kind-hub"}

    @pytest.mark.parametrize("args", [("--layout", "spokes"), ("--layout",), ("--hub",)])
    def test_an_unknown_layout_or_argument_is_named(self, up, args) -> None:
        run = up(*args)
        assert run.returncode == 1
        assert "kind/up.sh:" in run.stderr and "hub" in run.stderr
        assert run.calls("kind") == []
