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

from reconciler.applications import (
    JOB_HEALTH_VERSION,
    NOT_BEGUN,
    PODLESS_SINCE,
    RAN,
    RUNNING_SINCE,
)
from reconciler.rendering import HELD

PATCH = Path(__file__).resolve().parents[2] / "argocd" / "job-health.yaml"
PLANNED = {"caspian.dev/planned-start": "2026-12-02T03:00:00Z"}
RESUMED = "2026-12-02T03:00:04Z"


def health(job: dict) -> tuple[str, str]:
    script = yaml.safe_load(PATCH.read_text())["data"]["resource.customizations.health.batch_Job"]
    runtime = lua51.LuaRuntime()
    # Argo CD opens only its base, table, package and a safe os library for a
    # check from argocd-cm (util/lua/lua.go): no string, math, io or debug.
    runtime.execute("string, math, io, debug = nil, nil, nil, nil")
    check = runtime.execute(f"return function(obj)\n{script}\nend")
    result = check(runtime.table_from(job, recursive=True))
    return result["status"], result["message"]


def job(
    *,
    suspend: bool | None,
    conditions: list[dict],
    annotations: dict | None = None,
    **counts: int | str,
) -> dict:
    """A Job; `counts` are the fields of its status the Job controller keeps
    (startTime, active, ready, succeeded, failed)."""
    spec = {} if suspend is None else {"suspend": suspend}
    status = ({"conditions": conditions} if conditions else {}) | counts
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "etl-daily-3e57853f", "annotations": annotations or {}},
        "spec": spec,
        "status": status,
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
    resumed = job(
        suspend=False,
        conditions=[condition("Suspended", "False")],
        startTime=RESUMED,
        active=1,
        ready=1,
    )
    assert health(resumed) == ("Progressing", f"running since {RESUMED}")
    never_suspended = job(suspend=None, conditions=[], startTime=RESUMED, active=1, ready=1)
    assert health(never_suspended) == ("Progressing", f"running since {RESUMED}")
    # Kubernetes 1.31+: criteria met or failure decided, pods still terminating.
    for interim in ("SuccessCriteriaMet", "FailureTarget"):
        assert health(job(suspend=False, conditions=[condition(interim)]))[0] == "Progressing"


def test_a_resumed_job_says_whether_it_has_begun() -> None:
    resumed = [condition("Suspended", "False")]

    def progressing(**counts) -> str:
        status, message = health(job(suspend=False, conditions=resumed, **counts))
        assert status == "Progressing"
        return message

    # Resumed, before the Job controller has counted anything.
    assert progressing() == "starting"
    # Its pods are refused: the Job controller made none.
    refused = progressing(startTime=RESUMED, active=0, ready=0)
    assert refused == f"no pod since {RESUMED}: see the Job's events"
    assert progressing(startTime=RESUMED) == refused
    # Its pods wait for a node, an image, a volume.
    assert progressing(startTime=RESUMED, active=2, ready=0) == f"no pod ready since {RESUMED}"
    # It has begun: a pod is ready, or one has ended (its next one may still wait).
    running = f"running since {RESUMED}"
    assert progressing(startTime=RESUMED, active=1, ready=1) == running
    assert progressing(startTime=RESUMED, active=1, ready=0, succeeded=1) == running
    assert progressing(startTime=RESUMED, active=1, ready=0, failed=1) == running
    # A Job controller that does not count ready pods: it cannot tell.
    assert progressing(startTime=RESUMED, active=1) == running
    assert RUNNING_SINCE.match(running) and not NOT_BEGUN.match(running)


def test_the_check_is_marked_with_the_version_the_observer_reads() -> None:
    script = yaml.safe_load(PATCH.read_text())["data"]["resource.customizations.health.batch_Job"]
    assert script.splitlines()[0] == JOB_HEALTH_VERSION
    refused = job(suspend=False, conditions=[], startTime=RESUMED)
    assert PODLESS_SINCE.match(health(refused)[1])
    waiting = job(suspend=False, conditions=[], startTime=RESUMED, active=1, ready=0)
    for message in (
        health(refused)[1],
        health(waiting)[1],
        health(job(suspend=False, conditions=[]))[1],
    ):
        assert NOT_BEGUN.match(message)


def test_a_finished_job_is_healthy_or_degraded_and_says_when_it_ran() -> None:
    resumed = condition("Suspended", "False")
    done = job(suspend=False, conditions=[resumed, condition("Complete")])
    assert health(done) == ("Healthy", "complete")
    ended = "2026-12-02T05:00:00Z"
    done = job(
        suspend=False,
        conditions=[resumed, condition("Complete")],
        startTime=RESUMED,
        completionTime=ended,
    )
    assert health(done) == ("Healthy", f"complete (began {RESUMED}, ended {ended})")
    ran = RAN.search(health(done)[1])
    assert (ran["began"], ran["ended"]) == (RESUMED, ended)
    why = "Job has reached the backoff limit"
    failed = job(suspend=False, conditions=[resumed, condition("Failed", message=why)])
    assert health(failed) == ("Degraded", why)
    # A Failed condition says when it became true.
    failed["status"]["conditions"][1]["lastTransitionTime"] = ended
    assert health(failed) == ("Degraded", f"{why} (ended {ended})")
    # A Complete condition without a completionTime: when it became true.
    done = job(suspend=False, conditions=[resumed, condition("Complete")])
    done["status"]["conditions"][1]["lastTransitionTime"] = ended
    assert health(done) == ("Healthy", f"complete (ended {ended})")


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
