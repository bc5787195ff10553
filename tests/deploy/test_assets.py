"""What users apply to clusters, checked without a cluster: Argo CD manifests
against the real CRD schemas (strictly: a misspelled field fails), core kinds with
kubernetes-validate, kustomize builds, kind configs, the scripts, and the
pre-commit hook fleet repos can use."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from reconciler import applications, companions
from reconciler.cli import main
from reconciler.crd import closed

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "schemas" / "argocd"
CRDS = {
    "Application": "application-crd.yaml",
    "ApplicationSet": "applicationset-crd.yaml",
    "AppProject": "appproject-crd.yaml",
}
KUBECTL = shutil.which("kubectl")


@cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.load((SCHEMAS / CRDS[kind]).read_text(), Loader=yaml.CSafeLoader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    # The CRD schemas allow unknown fields; a check that catches typos must not.
    schema = closed(version["schema"]["openAPIV3Schema"])
    # metadata is checked by the API server, not by the CRD
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def documents(*paths: Path) -> list[dict[str, Any]]:
    return [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]


def argocd_documents() -> list[dict[str, Any]]:
    return [
        d
        for d in documents(*sorted((ROOT / "argocd").glob("*.yaml")))
        if d.get("apiVersion") == "argoproj.io/v1alpha1"
    ]


def errors(document: dict[str, Any]) -> list[str]:
    return [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator(document["kind"]).iter_errors(document)
    ]


def test_argocd_manifests_validate_strictly_against_the_real_crds() -> None:
    kinds = []
    for document in argocd_documents():
        assert errors(document) == [], document["metadata"]["name"]
        kinds.append(document["kind"])
    assert sorted(kinds) == ["AppProject", "Application", "Application", "ApplicationSet"]


@pytest.mark.parametrize(
    ("kind", "path", "typo"),
    [
        ("ApplicationSet", ["spec", "template", "spec", "syncPolicy", "automated"], "prnue"),
        ("ApplicationSet", ["spec", "generators", 0, "git"], "directory"),
        ("AppProject", ["spec"], "namespaceResourceWhitelst"),
        ("Application", ["spec", "syncPolicy"], "automatd"),
    ],
)
def test_a_misspelled_field_fails_the_check(kind, path, typo) -> None:
    document = copy.deepcopy(next(d for d in argocd_documents() if d["kind"] == kind))
    target = document
    for key in path:
        target = target[key]
    target[typo] = True
    assert errors(document), f"{typo} passed"


def test_the_applicationset_makes_one_application_per_spoke_directory() -> None:
    appset = next(d for d in argocd_documents() if d["kind"] == "ApplicationSet")
    generator = appset["spec"]["generators"][0]["git"]
    spec = appset["spec"]["template"]["spec"]
    assert generator["directories"] == [{"path": "rendered/*"}]
    assert spec["destination"]["name"] == "{{.path.basename}}"
    assert spec["source"]["path"] == "{{.path.path}}"
    assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": True}
    assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
    # What --observer argocd asks of an Application it places Jobs through.
    made = {"spec": spec}
    assert applications.blocked(made) is None
    assert applications.loose_ends(made, spoke="paris") == []


def test_a_spokes_own_application_syncs_its_directory_into_its_own_cluster() -> None:
    # As the ApplicationSet's would, from the spoke's own Argo CD.
    template = (ROOT / "argocd" / "spoke-application.template.yaml").read_text()
    made = yaml.safe_load(template.replace("${SPOKE}", "paris"))
    appset = next(d for d in argocd_documents() if d["kind"] == "ApplicationSet")
    from_hub = appset["spec"]["template"]
    assert made["metadata"]["labels"] == {
        "app.kubernetes.io/part-of": "caspian",
        "caspian.dev/spoke": "paris",
    }
    assert made["spec"]["source"]["path"] == "rendered/paris"
    assert made["spec"]["destination"] == {"name": "in-cluster", "namespace": "batch"}
    for key in ("project", "syncPolicy"):
        assert made["spec"][key] == from_hub["spec"][key], key
    assert errors(made) == []
    # What the observer reads of it: the spoke it syncs, and nothing it lacks.
    assert applications.application_jobs(made, checked=True)[0] == "paris"
    assert applications.blocked(made) is None
    assert applications.loose_ends(made, spoke="paris") == []


def test_a_spokes_own_argo_cd_is_read_with_the_hubs_rights_by_the_spokes_observer() -> None:
    on_spoke = documents(ROOT / "deploy" / "spoke-rbac-argocd.yaml")
    on_hub = documents(ROOT / "deploy" / "hub-argocd" / "rbac.yaml")
    role = next(d for d in on_spoke if d["kind"] == "Role")
    assert role == next(d for d in on_hub if d["kind"] == "Role")
    observer = next(
        d for d in documents(ROOT / "deploy" / "spoke-rbac.yaml") if d["kind"] == "ServiceAccount"
    )
    binding = next(d for d in on_spoke if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": observer["metadata"]["name"],
            "namespace": observer["metadata"]["namespace"],
        }
    ]


def test_the_project_admits_what_caspian_renders_and_nothing_more() -> None:
    # A kind Caspian renders that the project does not admit fails the sync of
    # its spoke: every wrapped kind must be there, and nothing else.
    project = next(d for d in argocd_documents() if d["kind"] == "AppProject")["spec"]
    rendered = [companions.JOB, *companions.KINDS]
    assert project["namespaceResourceWhitelist"] == [
        {"group": api.rpartition("/")[0], "kind": kind} for api, kind in rendered
    ]
    assert project["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


def test_the_template_policy_allows_the_namespaces_the_project_admits() -> None:
    # A Job outside the project's namespaces fails its spoke's whole sync, so the
    # policy refuses it in the repo instead; the two lists must agree.
    project = next(d for d in argocd_documents() if d["kind"] == "AppProject")["spec"]
    admitted = {d["namespace"] for d in project["destinations"]}
    policy = yaml.safe_load((ROOT / "repo-template" / "caspian.yaml").read_text())["spec"]
    assert set(policy["namespaces"]) == admitted
    assert policy["namespace"] in admitted


def test_core_kinds_validate_strictly() -> None:
    version = kubernetes_validate.latest_version()
    paths = [
        ROOT / "argocd" / "cluster-secret.template.yaml",
        ROOT / "argocd" / "job-health.yaml",
        *sorted((ROOT / "deploy").glob("*.yaml")),
        ROOT / "deploy" / "hub-argocd" / "rbac.yaml",
    ]
    kinds = set()
    for document in documents(*paths):
        if document["kind"] == "Kustomization":
            continue
        kubernetes_validate.validate(document, version, strict=True)
        kinds.add(document["kind"])
    expected = {"Secret", "ConfigMap", "Deployment", "Service", "ServiceAccount", "ClusterRole"}
    assert expected <= kinds


def test_the_argocd_reader_lists_applications_and_projects_and_reads_one_configmap() -> None:
    role = next(
        d for d in documents(ROOT / "deploy" / "hub-argocd" / "rbac.yaml") if d["kind"] == "Role"
    )
    assert role["metadata"]["namespace"] == "argocd"
    assert sorted((tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]) == [
        (("applications", "appprojects"), ("list",)),
        (("configmaps",), ("get",)),
    ]
    assert [r.get("resourceNames") for r in role["rules"]] == [None, ["argocd-cm"]]


def test_the_observer_role_only_lists() -> None:
    role = next(
        d for d in documents(ROOT / "deploy" / "spoke-rbac.yaml") if d["kind"] == "ClusterRole"
    )
    assert {verb for rule in role["rules"] for verb in rule["verbs"]} == {"list"}
    # What reconciler/kube.py lists, and no Secrets: listing them reads them.
    listed = {resource for rule in role["rules"] for resource in rule["resources"]}
    assert listed == {
        *("nodes", "pods", "jobs", "persistentvolumeclaims", "configmaps", "serviceaccounts"),
        *("priorityclasses", "runtimeclasses", "resourcequotas", "limitranges", "events"),
        "namespaces",
    }


def test_the_right_to_list_secrets_is_granted_apart_and_only_in_the_jobs_namespaces() -> None:
    granted = documents(ROOT / "deploy" / "spoke-rbac-secrets.yaml")
    (role,) = [d for d in granted if d["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
    # Bound namespace by namespace, never cluster-wide.
    assert {d["kind"] for d in granted} == {"ClusterRole", "RoleBinding"}
    bindings = [d for d in granted if d["kind"] == "RoleBinding"]
    policy = yaml.safe_load((ROOT / "repo-template" / "caspian.yaml").read_text())["spec"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(policy["namespaces"])
    observer = next(
        d for d in documents(ROOT / "deploy" / "spoke-rbac.yaml") if d["kind"] == "ServiceAccount"
    )
    for binding in bindings:
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": observer["metadata"]["name"],
                "namespace": observer["metadata"]["namespace"],
            }
        ]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", ["argocd", "deploy"])
def test_kustomize_builds(directory) -> None:
    built = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / directory)], capture_output=True, text=True, check=True
    )
    assert list(yaml.safe_load_all(built.stdout))


def built_with(component: str, tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """deploy/ built by kustomize with `component` turned on as
    deploy/kustomization.yaml's comment says (uncomment `components:` and its
    line), each object by kind and name."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    base = tmp_path / "deploy" / "kustomization.yaml"
    turned_on = base.read_text().replace("# components:", "components:")
    turned_on = turned_on.replace(f"#   - {component}", f"  - {component}")
    assert turned_on.count(f"\n  - {component}\n") == 1  # its line is there
    base.write_text(turned_on)
    built = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path / "deploy")], capture_output=True, text=True, check=True
    )
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(built.stdout)}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_hub_argocd_component_turns_on_argo_cd_status_with_its_rights(tmp_path) -> None:
    objects = built_with("hub-argocd", tmp_path)
    container = objects["Deployment", "caspian"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--argocd-context", "in-cluster"]
    account = objects["ServiceAccount", "caspian"]
    assert account["automountServiceAccountToken"] is True
    binding = objects["RoleBinding", "caspian-argocd-reader"]
    subject = binding["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("caspian", account["metadata"]["namespace"])
    assert objects["Role", "caspian-argocd-reader"]["metadata"]["namespace"] == "argocd"
    # Left off, the pod gets no token and asks only the spokes.
    alone = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, check=True
    )
    kinds = {d["kind"] for d in yaml.safe_load_all(alone.stdout)}
    assert "Role" not in kinds and "--argocd-context" not in alone.stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_spoke_argocd_component_reads_each_spokes_own_argo_cd(tmp_path) -> None:
    objects = built_with("spoke-argocd", tmp_path)
    container = objects["Deployment", "caspian"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-1] == "--argocd-on-spokes"
    # The spokes grant the rights (deploy/spoke-rbac-argocd.yaml): nothing here.
    assert not any(kind in ("Role", "RoleBinding") for kind, _ in objects)
    assert objects["ServiceAccount", "caspian"]["automountServiceAccountToken"] is False
    # The arguments are ones `caspian watch` takes.
    options = {o for p in main.commands["watch"].params for o in p.opts}
    assert {a for a in container["args"] if a.startswith("--")} <= options


KIND_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string"},
        "featureGates": {"type": "object"},
        "runtimeConfig": {"type": "object"},
        "networking": {"type": "object"},
        "kubeadmConfigPatches": {"type": "array"},
        "kubeadmConfigPatchesJSON6902": {"type": "array"},
        "containerdConfigPatches": {"type": "array"},
        "containerdConfigPatchesJSON6902": {"type": "array"},
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extraMounts": {"type": "array"},
                    "kubeadmConfigPatches": {"type": "array"},
                    "kubeadmConfigPatchesJSON6902": {"type": "array"},
                    "extraPortMappings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["containerPort"],
                            "properties": {
                                "containerPort": {"type": "integer"},
                                "hostPort": {"type": "integer"},
                                "listenAddress": {"type": "string"},
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("name", ["hub.yaml", "spoke.yaml"])
def test_kind_configs_use_only_v1alpha4_fields(name) -> None:
    jsonschema.validate(yaml.safe_load((ROOT / "kind" / name).read_text()), KIND_SCHEMA)


def test_the_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck") or str(Path(os.sys.executable).parent / "shellcheck")
    result = subprocess.run(
        [shellcheck, *map(str, sorted((ROOT / "kind").glob("*.sh")))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("script", "missing"), [("up.sh", "docker"), ("down.sh", "kind")])
def test_the_scripts_name_a_missing_prerequisite(tmp_path, script, missing) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "cat", "sed", "grep", "head"):
        if found := shutil.which(tool):
            (tools / tool).symlink_to(found)
    result = subprocess.run(
        ["/bin/bash", str(ROOT / "kind" / script)],
        capture_output=True,
        text=True,
        env={"PATH": str(tools)},
    )
    assert result.returncode == 1
    assert f"'{missing}' is not installed" in result.stderr


def test_the_pre_commit_hook_runs_validate_on_the_whole_fleet_repo(tmp_path, monkeypatch) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    program, *args = hook["entry"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[program] == "reconciler.cli:main"  # what pip installs for the hook
    fires = re.compile(hook["files"])
    changed = ["caspian.yaml", "jobs/team/etl.yaml", "spokes/paris.yaml", "rendered/paris/x.yaml"]
    assert all(fires.search(path) for path in changed)
    assert not any(fires.search(p) for p in ("README.md", "docs/jobs/x.yaml", "caspian.yaml.bak"))
    # pre-commit runs it at the root of the repo being committed.
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "fleet")]).exit_code == 0
    monkeypatch.chdir(tmp_path / "fleet")
    assert runner.invoke(main, args).exit_code == 0
    Path("jobs/bad.yaml").write_text("kind: [")
    failed = runner.invoke(main, args)
    assert failed.exit_code == 1 and failed.stdout.startswith("jobs/bad.yaml:1: not valid YAML")
