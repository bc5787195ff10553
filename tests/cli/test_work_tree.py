"""`caspian plan --work-tree`: a change planned before it is pushed, from a
user's clone of the fleet repo (real git), as if its edits had been pushed
on top of the branch."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.cli import EXIT_ERROR
from reconciler.gitrepo import create_bare_repo
from reconciler.quantities import timestamp
from reconciler.templates import template_files
from tests import gitutil
from tests.cli.test_cli import AT
from tests.conftest import BOT
from tests.fleet.helpers import appwrapper
from tests.watch.test_watch import run_git


def _cloned(run, tmp_path: Path) -> tuple[Path, Path]:
    """A fleet repo Caspian has reconciled once, and a user's clone of it."""
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    work = tmp_path / "work"
    run_git("clone", "-q", str(remote), str(work), cwd=tmp_path)
    return remote, work


def _planned(run, remote: Path, *more: str) -> dict:
    result = run("plan", "--repo", remote, *AT, "--json", *more)
    assert result.exit_code in (0, 2), result.output
    return json.loads(result.stdout)


def test_a_work_trees_edits_are_planned_as_the_push_of_them_would_be(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    # Committed in the clone and not pushed; changed and not committed;
    # new and untracked; deleted; and ignored, which git would not push.
    (work / "jobs" / "first.yaml").write_text(appwrapper("first"))
    run_git("add", "jobs/first.yaml", cwd=work)
    run_git("commit", "-q", "-m", "first", cwd=work)
    (work / "jobs" / "second.yaml").write_text(appwrapper("second"))
    (work / "jobs" / "etl-daily.yaml").write_text(appwrapper("etl-daily"))
    (work / "jobs" / "video-transcode.yaml").unlink()
    (work / ".gitignore").write_text("jobs/scratch.yaml\n")
    (work / "jobs" / "scratch.yaml").write_text(appwrapper("scratch"))
    # Meanwhile someone else pushed a job the clone lacks.
    gitutil.user_commit(remote, {"jobs/other.yaml": appwrapper("other").encode()})
    head = gitutil.head(remote)

    planned = _planned(run, remote, "--work-tree", work)
    assert planned["work_tree"]["edited"] == {
        "jobs/etl-daily.yaml": "changed",
        "jobs/first.yaml": "added",
        "jobs/second.yaml": "added",
        "jobs/video-transcode.yaml": "deleted",
    }
    assert planned["work_tree"]["crossed"] == []
    assert planned["input_commit"] == head == gitutil.head(remote)  # nothing committed
    jobs = {job["id"]: job for job in planned["jobs"]}
    assert {"batch/first", "batch/second", "batch/other"} <= jobs.keys()
    assert "batch/scratch" not in jobs
    assert jobs["media/video-transcode"]["phase"] == "Cancelled"

    # The same edits pushed: main's own plan is the one shown before.
    edits = {
        path: (work / path).read_bytes() if change != "deleted" else None
        for path, change in planned["work_tree"]["edited"].items()
    }
    gitutil.user_commit(remote, edits, "the clone's edits, pushed")
    pushed = _planned(run, remote)
    for field in ("changes", "subject", "jobs", "problems"):
        assert pushed[field] == planned[field], field


def test_a_pushed_branch_is_planned_from_where_it_forked(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    run_git("checkout", "-q", "-b", "add-job", cwd=work)
    (work / "jobs" / "fresh.yaml").write_text(appwrapper("fresh"))
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", "a new job", cwd=work)
    run_git("push", "-q", "origin", "add-job", cwd=work)  # the remote holds it now
    gitutil.user_commit(remote, {"jobs/other.yaml": appwrapper("other").encode()})
    planned = _planned(run, remote, "--work-tree", work)
    assert planned["work_tree"]["edited"] == {"jobs/fresh.yaml": "added"}
    assert {"batch/fresh", "batch/other"} <= {job["id"] for job in planned["jobs"]}
    # As CI checks out a pull request: main's tip merged with the branch.
    # Its edits are the branch's, not what main took since it forked.
    run_git("fetch", "-q", "origin", cwd=work)
    run_git("checkout", "-q", "--detach", "origin/main", cwd=work)
    run_git("merge", "-q", "--no-ff", "-m", "Merge add-job", "add-job", cwd=work)
    planned = _planned(run, remote, "--work-tree", work)
    assert planned["work_tree"]["base"] == gitutil.head(remote)
    assert planned["work_tree"]["edited"] == {"jobs/fresh.yaml": "added"}


def test_without_repo_the_clones_origin_is_the_fleet_repo(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    (work / "jobs" / "fresh.yaml").write_text(appwrapper("fresh"))
    given = _planned(run, remote, "--work-tree", work)
    result = run("plan", *AT, "--json", "--work-tree", work)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == given
    told = run("explain", "batch/fresh", *AT, "--work-tree", work)
    assert told.stdout.startswith("batch/fresh (jobs/fresh.yaml): Planned"), told.output
    # Without --work-tree, or with a clone that has no origin, --repo is needed.
    result = run("plan", *AT)
    assert result.exit_code == 2 and "Missing option '--repo'" in result.output
    run_git("remote", "remove", "origin", cwd=work)
    result = run("plan", *AT, "--work-tree", work)
    assert result.exit_code == 2
    assert f"{work} is no clone with a remote named origin: give --repo" in result.output
    assert "Missing option '--repo'" in run("reconcile", "--once", *AT).output


def test_a_file_both_sides_changed_is_planned_as_the_work_tree_has_it(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    ours = appwrapper("etl-daily", annotations={"caspian.dev/duration": "2h"})
    (work / "jobs" / "etl-daily.yaml").write_text(ours)
    theirs = appwrapper("etl-daily", annotations={"caspian.dev/duration": "3h"})
    gitutil.user_commit(remote, {"jobs/etl-daily.yaml": theirs.encode()})
    result = run("plan", "--repo", remote, *AT, "--work-tree", work)
    assert result.exit_code == 0, result.output
    assert "planned with the edits of the work tree " in result.stdout
    assert "  changed  jobs/etl-daily.yaml" in result.stdout
    assert "jobs/etl-daily.yaml: changed on main since " in result.stderr
    etl = next(j for j in _planned(run, remote, "--work-tree", work)["jobs"] if "etl" in j["id"])
    hours = (timestamp(etl["plannedEnd"]) - timestamp(etl["plannedStart"])).total_seconds() / 3600
    assert hours == 2


def test_a_work_tree_that_shares_no_commit_takes_its_own_job_files(run, tmp_path) -> None:
    remote, _ = _cloned(run, tmp_path)
    # As a CI job's checkout of one commit with its history left out would
    # be: the files, in a repository of its own.
    work = tmp_path / "lone"
    work.mkdir()
    gitutil.checkout(remote, work)
    (work / "jobs" / "report-urgent.yaml").unlink()
    (work / "status" / "placements.yaml").write_text("entries: []\n")  # not taken
    run_git("init", "-q", cwd=work)
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", "lone", cwd=work)
    gitutil.user_commit(remote, {"jobs/other.yaml": appwrapper("other").encode()})

    result = run("plan", "--repo", remote, *AT, "--work-tree", work)
    assert result.exit_code == 0, result.output
    assert "shares no commit with the remote" in result.stdout
    assert "a job added on main since it was checked out reads as deleted" in result.stdout
    planned = _planned(run, remote, "--work-tree", work)
    assert planned["work_tree"]["base"] is None
    assert planned["work_tree"]["edited"] == {
        "jobs/other.yaml": "deleted",
        "jobs/report-urgent.yaml": "deleted",
    }
    phases = {job["id"]: job["phase"] for job in planned["jobs"]}
    assert phases["batch/report-urgent"] == "Cancelled"
    assert phases["batch/finetune-llm"] == "Dispatched"  # main's ledger, not the lone one's


def test_explain_names_a_job_only_the_work_tree_holds(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    (work / "jobs" / "fresh.yaml").write_text(appwrapper("fresh"))
    result = run("explain", "batch/fresh", "--repo", remote, *AT, "--work-tree", work)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("batch/fresh (jobs/fresh.yaml): Planned")
    assert (
        "a new place, not committed yet: the first reconcile after the work tree's edits are "
        "pushed commits it"
    ) in result.stdout
    assert run("explain", "batch/fresh", "--repo", remote, *AT).exit_code != 0


def test_a_directory_in_no_git_work_tree_is_refused(run, tmp_path) -> None:
    remote, _ = _cloned(run, tmp_path)
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run("plan", "--repo", remote, *AT, "--work-tree", plain)
    assert result.exit_code == EXIT_ERROR
    assert f"{plain} is in no git work tree: give a clone of the fleet repo" in result.output
    # Another repo's clone, where every job of the fleet would read as deleted.
    run_git("init", "-q", cwd=plain)
    (plain / "main.py").write_text("print('not a fleet')\n")
    run_git("add", "-A", cwd=plain)
    run_git("commit", "-q", "-m", "app", cwd=plain)
    result = run("plan", "--repo", remote, *AT, "--work-tree", plain)
    assert result.exit_code == EXIT_ERROR
    assert f"{plain}: its work tree has no caspian.yaml: give a clone of the fleet repo" in (
        result.output
    )


def test_in_a_larger_repo_only_the_fleets_directory_is_read(run, tmp_path) -> None:
    remote = tmp_path / "mono.git"
    fleet = {f"teams/batch/{path}": text for path, text in template_files().items()}
    create_bare_repo(remote, files={**fleet, "README.md": b"# ours\n"}, message="M", author=BOT)
    work = tmp_path / "work"
    run_git("clone", "-q", str(remote), str(work), cwd=tmp_path)
    (work / "README.md").write_text("# changed\n")
    (work / "jobs").mkdir()
    (work / "jobs" / "astray.yaml").write_text(appwrapper("astray"))  # outside the fleet
    (work / "teams" / "batch" / "jobs" / "fresh.yaml").write_text(appwrapper("fresh"))
    planned = _planned(run, remote, "--path", "teams/batch", "--work-tree", work / "teams")
    assert planned["work_tree"]["edited"] == {"jobs/fresh.yaml": "added"}
    assert "batch/fresh" in {job["id"] for job in planned["jobs"]}
    # Edits outside the fleet alone: main's own plan.
    (work / "teams" / "batch" / "jobs" / "fresh.yaml").unlink()
    result = run("plan", "--repo", remote, "--path", "teams/batch", *AT, "--work-tree", work)
    assert result.stdout.startswith(
        f"the work tree {work} changes no file Caspian reads since {gitutil.head(remote)[:12]}: "
        "planned as main stands\n"
    )
