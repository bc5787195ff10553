"""What Argo CD will apply: every rendered/<spoke> builds with kustomize and every
Job is valid for a recent Kubernetes, strictly (unknown fields fail)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render

KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def rendered_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    _, files, _ = decide_and_render(NOW)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def spoke_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "rendered").iterdir() if p.is_dir())


def test_every_job_validates_strictly_against_kubernetes_schemas(rendered_tree) -> None:
    version = kubernetes_validate.latest_version()
    jobs = list(rendered_tree.glob("rendered/*/*.yaml"))
    checked = 0
    for path in jobs:
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(document, version, strict=True)
            checked += document["kind"] == "Job"
    assert checked == 10


def test_strict_validation_would_catch_a_misspelled_field() -> None:
    _, files, _ = decide_and_render(NOW)
    name = next(n for n in files if n.startswith("rendered/paris/batch."))
    document = yaml.safe_load(files[name])
    document["spec"]["suspnd"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_every_spoke_directory_builds_with_kubectl_kustomize(rendered_tree) -> None:
    total = 0
    for directory in spoke_dirs(rendered_tree):
        built = subprocess.run(
            [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, check=True
        )
        documents = [d for d in yaml.safe_load_all(built.stdout) if d]
        assert {(d["apiVersion"], d["kind"]) for d in documents} <= {
            ("batch/v1", "Job"),
            ("v1", "Namespace"),
        }
        jobs = [d for d in documents if d["kind"] == "Job"]
        namespaces = {d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"}
        assert {job["metadata"]["namespace"] for job in jobs} <= namespaces
        total += len(jobs)
    assert total == 10
    assert len(spoke_dirs(rendered_tree)) == 3
