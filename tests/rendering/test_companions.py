"""The ConfigMaps and Services an AppWrapper wraps beside its Job are rendered
in the Job's file, on whichever spoke the Job is placed: they build with
kustomize, validate strictly, and go where the Job goes.

Regenerate the golden file after an intended change with
`CASPIAN_UPDATE_GOLDEN=1 pytest tests/rendering` and review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from reconciler.templates import template_files
from tests.conftest import NOW
from tests.fleet.test_companions import CONFIG, PEERS, wrapping
from tests.rendering.scenario import decide_and_render

GOLDEN = Path(__file__).parent / "golden" / "companions" / "batch.trainer.yaml"
KUBECTL = shutil.which("kubectl")


def fleet(spokes: str = "paris") -> dict[str, bytes]:
    text = wrapping(CONFIG, PEERS, spokes=spokes)
    return {**template_files(), "jobs/trainer.yaml": text.encode()}


def trainer_files(rendered: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in rendered.items() if "/batch.trainer-" in path}


def test_the_job_file_holds_the_job_then_its_companions_as_golden() -> None:
    _, rendered, _ = decide_and_render(NOW, fleet())
    ((path, data),) = trainer_files(rendered).items()
    assert path.startswith("rendered/paris/batch.trainer-")
    if os.environ.get("CASPIAN_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(data)
    assert data.decode() == GOLDEN.read_text()
    documents = list(yaml.safe_load_all(data))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Job", path.rsplit("/", 1)[1].removeprefix("batch.").removesuffix(".yaml")),
        ("ConfigMap", "trainer-config"),
        ("Service", "trainer-peers"),
    ]
    for document in documents[1:]:
        assert document["metadata"]["namespace"] == "batch"
        assert document["metadata"]["labels"]["caspian.dev/appwrapper"] == "trainer"
        assert document["metadata"]["annotations"]["caspian.dev/source"] == "jobs/trainer.yaml"


def test_every_document_validates_strictly_against_kubernetes_schemas() -> None:
    _, rendered, _ = decide_and_render(NOW, fleet())
    version = kubernetes_validate.latest_version()
    ((_, data),) = trainer_files(rendered).items()
    kinds = []
    for document in yaml.safe_load_all(data):
        kubernetes_validate.validate(document, version, strict=True)
        kinds.append(document["kind"])
    assert kinds == ["Job", "ConfigMap", "Service"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_spoke_directory_builds_with_kubectl_kustomize(tmp_path) -> None:
    _, rendered, _ = decide_and_render(NOW, fleet())
    for name, data in rendered.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    built = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path / "rendered" / "paris")],
        capture_output=True,
        text=True,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    found = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("ConfigMap", "trainer-config"), ("Service", "trainer-peers")} <= found


def test_they_go_where_the_job_goes_and_nowhere_else() -> None:
    files = fleet("paris")
    _, first, _ = decide_and_render(NOW, files)
    (was,) = trainer_files(first)
    moved_files = {**fleet("california"), **first}
    _, moved, _ = decide_and_render(NOW, moved_files)
    (now,) = trainer_files(moved)
    assert was.startswith("rendered/paris/") and now.startswith("rendered/california/")
    assert [d["kind"] for d in yaml.safe_load_all(moved[now])] == ["Job", "ConfigMap", "Service"]
    listed = yaml.safe_load(moved["rendered/california/kustomization.yaml"])["resources"]
    assert now.rsplit("/", 1)[1] in listed
    assert (
        was.rsplit("/", 1)[1]
        not in yaml.safe_load(moved["rendered/paris/kustomization.yaml"])["resources"]
    )
