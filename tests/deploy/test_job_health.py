"""Argo CD's health check for Caspian's Jobs (argocd/job-health.yaml), run in
Lua 5.1, the language of Argo CD's interpreter (gopher-lua), on Jobs as the Job
controller reports them at each step of Caspian's lifecycle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import lupa.lua51 as lua51
import pytest
import yaml

from reconciler.rendering import HELD

PATCH = Path(__file__).resolve().parents[2] / "argocd" / "job-health.yaml"
PLANNED = {"caspian.dev/planned-start": "2026-12-02T03:00:00Z"}


def health(job: dict) -> tuple[str, str]:
    script = yaml.safe_load(PATCH.read_text())["data"]["resource.customizations.health.batch_Job"]
    runtime = lua51.LuaRuntime()
    check = runtime.execute(f"return function(obj)\n{script}\nend")
    result = check(runtime.table_from(job, recursive=True))
    return result["status"], result["message"]


def job(*, suspend: bool | None, conditions: list[dict], annotations: dict | None = None) -> dict:
    spec = {} if suspend is None else {"suspend": suspend}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl-daily-3e57853f", "annotations": annotations or {}},
        "spec": spec,
        "status": {"conditions": conditions} if conditions else {},
    }


def condition(kind: str, status: str = "True", message: str = "") -> dict:
    return {"type": kind, "status": status, "message": message}


def test_a_planned_job_is_suspended_and_says_until_when() -> None:
    queued = job(suspend=True, conditions=[condition("Suspended")], annotations=PLANNED)
    assert health(queued) == ("Suspended", "waiting for its planned start, 2026-12-02T03:00:00Z")
    # Before the Job controller has seen it, and without Caspian's annotation.
    assert health(job(suspend=True, conditions=[])) == ("Suspended", "suspended")


def test_a_job_stopped_by_its_appwrapper_says_it_is_held_not_waiting() -> None:
    stopped = {HELD: "its AppWrapper's spec.suspend is true"}
    # Suspended after it ran: the condition is True, the planned start long past.
    ran = job(suspend=True, conditions=[condition("Suspended")], annotations=stopped)
    assert health(ran) == ("Suspended", "held: its AppWrapper's spec.suspend is true")


def test_a_dispatched_job_runs_as_progressing_not_healthy() -> None:
    # Argo CD's built-in check counts the Suspended condition, True or False, as
    # done: this Job would show Healthy.
    resumed = job(suspend=False, conditions=[condition("Suspended", "False")])
    assert health(resumed) == ("Progressing", "running")
    assert health(job(suspend=None, conditions=[])) == ("Progressing", "running")
    # Kubernetes 1.31+: criteria met or failure decided, pods still terminating.
    for interim in ("SuccessCriteriaMet", "FailureTarget"):
        assert health(job(suspend=False, conditions=[condition(interim)]))[0] == "Progressing"


def test_a_finished_job_is_healthy_or_degraded() -> None:
    resumed = condition("Suspended", "False")
    done = job(suspend=False, conditions=[resumed, condition("Complete")])
    assert health(done)[0] == "Healthy"
    failed = job(
        suspend=False,
        conditions=[resumed, condition("Failed", message="Job has reached the backoff limit")],
    )
    assert health(failed) == ("Degraded", "Job has reached the backoff limit")


def test_the_patch_touches_only_the_job_check() -> None:
    patch = yaml.safe_load(PATCH.read_text())
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    assert list(patch["data"]) == ["resource.customizations.health.batch_Job"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_applied_as_a_merge_patch_it_keeps_the_rest_of_argocd_cm(tmp_path) -> None:
    installed = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd", "labels": {"a": "b"}},
        "data": {"url": "https://argocd.example.invalid"},
    }
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(installed))
    command = ["kubectl", "patch", "--local", "-f", tmp_path / "cm.yaml", "--type", "merge"]
    patched = subprocess.run(
        [*command, "--patch-file", PATCH, "-o", "yaml"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = yaml.safe_load(patched.stdout)
    assert result["metadata"]["labels"] == {"a": "b"}
    assert sorted(result["data"]) == ["resource.customizations.health.batch_Job", "url"]
