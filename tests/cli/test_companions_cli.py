"""A job with a ConfigMap and a Service, through `caspian reconcile` and git:
committed in its Job's file, moved with it, left out when its AppWrapper is
refused (what was committed stays), and reconciled again to no change."""

from __future__ import annotations

import json

import yaml

from tests import gitutil
from tests.cli.test_cli import AT
from tests.fleet.test_companions import CONFIG, PEERS, wrapping


def trainer(spokes: str) -> bytes:
    return wrapping(CONFIG, PEERS, spokes=spokes).encode()


def trainer_file(remote) -> str:
    (path,) = [p for p in gitutil.files(remote, "rendered/") if "/batch.trainer-" in p]
    return path


def test_companions_are_committed_with_their_job_and_move_with_it(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    gitutil.user_commit(remote, {"jobs/trainer.yaml": trainer("paris")})
    first = run("reconcile", "--repo", remote, "--once", *AT)
    assert first.exit_code == 0, first.output
    path = trainer_file(remote)
    assert path.startswith("rendered/paris/")
    kinds = [d["kind"] for d in yaml.safe_load_all(gitutil.read(remote, path))]
    assert kinds == ["Job", "ConfigMap", "Service"]
    assert b"config.yaml: |\n    epochs: 3\n" in gitutil.read(remote, path)

    head = gitutil.head(remote)
    again = run("reconcile", "--repo", remote, "--once", *AT)
    assert "no change" in again.output
    assert gitutil.head(remote) == head

    # An edit of its ConfigMap alone rewrites its file, and the commit says so.
    edited = trainer("paris").replace(b"epochs: 3", b"epochs: 4")
    gitutil.user_commit(remote, {"jobs/trainer.yaml": edited})
    assert run("reconcile", "--repo", remote, "--once", *AT).exit_code == 0
    said = gitutil.message(remote)
    assert said.startswith("rewrite: 1 job (same place)"), said
    assert f"\n- batch/trainer: {path}\n" in said
    assert b"epochs: 4" in gitutil.read(remote, path)

    gitutil.user_commit(remote, {"jobs/trainer.yaml": trainer("california")})
    moved = run("reconcile", "--repo", remote, "--once", *AT)
    assert moved.exit_code == 0, moved.output
    assert trainer_file(remote).startswith("rendered/california/")
    assert not [p for p in gitutil.files(remote, "rendered/paris/") if "trainer" in p]
    told = run("explain", "trainer", "--repo", remote, *AT)
    assert (
        "its ConfigMap trainer-config and Service trainer-peers go wherever its Job goes, "
        "in its Job's file" in told.output
    ), told.output


def test_a_refused_companion_is_a_problem_line_and_the_committed_job_stays(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    gitutil.user_commit(remote, {"jobs/trainer.yaml": trainer("paris")})
    assert run("reconcile", "--repo", remote, "--once", *AT).exit_code == 0
    path = trainer_file(remote)
    committed = gitutil.read(remote, path)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}}
    broken = wrapping(CONFIG, secret, spokes="paris")
    gitutil.user_commit(remote, {"jobs/trainer.yaml": broken.encode()})
    result = run("reconcile", "--repo", remote, "--once", *AT)
    assert "jobs/trainer.yaml: spec.components[2].template: v1/Secret:" in result.output
    assert "its data would be in git" in result.output
    assert gitutil.read(remote, path) == committed


def test_validate_gives_each_companion_problem_its_line(run, tmp_path) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}}
    bad_key = {**CONFIG, "data": {"a b": "c"}}
    text = wrapping(bad_key, secret)
    (target / "jobs" / "trainer.yaml").write_text(text)
    result = run("validate", target, "--json")
    found = [json.loads(line) for line in result.output.splitlines()]
    lines = text.splitlines()
    config_at = next(i for i, line in enumerate(lines) if "a b: c" in line) + 1
    kind_at = next(i for i, line in enumerate(lines) if "kind: Secret" in line)
    secret_at = max(i for i, line in enumerate(lines[:kind_at]) if "template:" in line) + 1
    assert [(p["field"], p["line"]) for p in found] == [
        ("spec.components[1].template.data[a b]", config_at),
        ("spec.components[2].template", secret_at),
    ]


def test_validate_warns_of_a_job_that_needs_another_jobs_configmap(
    run, tmp_path, monkeypatch
) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    (target / "jobs" / "trainer.yaml").write_text(wrapping(CONFIG, PEERS))
    peers = PEERS | {"metadata": {"name": "evaluator-peers"}}
    borrower = wrapping(peers, name="evaluator", first=True)
    (target / "jobs" / "evaluator.yaml").write_text(borrower)
    monkeypatch.chdir(target)
    result = run("validate")
    assert result.exit_code == 0, result.output
    # The fourth spec: the AppWrapper's, its Service's, its Job's, then its pods'.
    spec_at = [i for i, t in enumerate(borrower.splitlines()) if t.strip() == "spec:"][3]
    assert result.stdout.splitlines() == [
        f"jobs/evaluator.yaml:{spec_at + 1}: warning: spec.components[1].template.spec.template"
        ".spec: its pods need ConfigMap batch/trainer-config, which jobs/trainer.yaml "
        "(batch/trainer) wraps: it is on a spoke only while that job is, and leaves with it; "
        "create it on the spokes, or wrap a copy of another name in this AppWrapper"
    ]
    # The trainer, whose pods need the same ConfigMap, wraps it: no warning.
    assert result.stderr == "ok: 3 spokes, 12 jobs, 1 warning\n"
