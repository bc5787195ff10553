"""The `caspian` command as a user runs it: exit codes and what it prints."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import REGISTRY

from reconciler.appwrappers import RETRY_PAUSE, TERMINAL_EXIT_CODES
from reconciler.cli import EXIT_ERROR, EXIT_PARTIAL, main
from reconciler.cli.common import JsonLines
from reconciler.gitrepo import Identity, create_bare_repo
from reconciler.ledger import LEDGER_PATH, MOST_NAMED, Entry, Ledger, Phase
from reconciler.quantities import format_time, timestamp
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import BOT
from tests.fleet.helpers import appwrapper, appwrapper_doc
from tests.reconcile.test_kept_plan import Restless

AT = ["--now", "2026-11-22T02:00:00Z"]


def test_init_writes_the_template_and_it_validates(run, tmp_path) -> None:
    target = tmp_path / "fleet"
    assert run("init", target).exit_code == 0
    assert (target / "caspian.yaml").exists() and len(list((target / "jobs").iterdir())) == 10
    result = run("validate", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the ok line goes to stderr


def test_init_writes_into_a_repo_that_has_no_fleet_yet_and_keeps_its_readme(run, tmp_path) -> None:
    # `git init`, or a clone of a repo just made on a forge: .git, a README, a LICENSE.
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "README.md").write_text("# our fleet\n")
    (repo / "LICENSE").write_text("ours\n")
    result = run("init", repo)
    assert result.exit_code == 0, result.output
    assert "kept your README.md" in result.output and "git init" not in result.output
    assert (repo / "README.md").read_text() == "# our fleet\n"
    assert (repo / "LICENSE").read_text() == "ours\n"
    assert run("validate", repo).exit_code == 0
    # A fleet repo there already is not written over, nor mixed with the examples.
    again = run("init", repo)
    assert again.exit_code == 1
    assert "holds caspian.yaml, jobs, spokes already: is it a fleet repo?" in again.output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "jobs").mkdir()
    assert "holds jobs already" in run("init", tmp_path / "half").output
    assert not (tmp_path / "half" / "caspian.yaml").exists()


def test_init_in_a_directory_of_a_larger_repo_names_the_path_to_reconcile(run, tmp_path) -> None:
    repo = tmp_path / "mono"
    (repo / ".git").mkdir(parents=True)
    result = run("init", repo / "teams" / "batch")
    assert result.exit_code == 0, result.output
    assert "git init" not in result.output
    assert "caspian reconcile --repo URL --path teams/batch --once" in result.output
    # A new directory of its own: no repo yet, and the fleet at its root.
    alone = run("init", tmp_path / "fleet")
    assert "next: git init -b main, " in alone.output and "--path" not in alone.output


def test_init_bare_refuses_a_directory_that_is_not_empty(run, tmp_path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    result = run("init", "--bare", tmp_path / "busy")
    assert result.exit_code != 0 and "not empty" in result.output


def test_validate_prints_one_line_per_problem_and_exits_1(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    (target / "jobs" / "bad.yaml").write_text(
        appwrapper("bad", annotations={"caspian.dev/not-before": "soon", "caspian.dev/spokes": "x"})
    )
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    monkeypatch.chdir(target)  # files are named from there
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 3  # both of bad.yaml's, and worse.yaml's
    text = (target / "jobs" / "bad.yaml").read_text().splitlines()
    spokes, not_before = (
        next(i for i, line in enumerate(text, 1) if words in line)
        for words in ("caspian.dev/spokes:", "caspian.dev/not-before:")
    )
    # As a compiler says it, for an editor to jump to, in the file's order.
    assert not_before < spokes
    assert lines[0].startswith(
        f"jobs/bad.yaml:{not_before}: metadata.annotations.caspian.dev/not-before: "
    )
    assert lines[1].startswith(f"jobs/bad.yaml:{spokes}: metadata.annotations.caspian.dev/spokes: ")
    assert lines[2].startswith("jobs/worse.yaml:1: not valid YAML")
    only = run("validate", target / "jobs" / "worse.yaml")
    assert only.output.strip().splitlines() == [lines[2]]


def test_validate_json_gives_the_line_of_each_problem(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    bad = appwrapper(
        "bad",
        annotations={"caspian.dev/not-before": "soon"},
        resources={"requests": {"cpu": "lots"}},
    )
    (target / "jobs" / "two.yaml").write_text(f"{appwrapper('fine')}---\n{bad}")
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    result = run("validate", target, "--json")
    assert result.exit_code == EXIT_ERROR
    found = [json.loads(line) for line in result.output.splitlines()]
    text = (target / "jobs" / "two.yaml").read_text().splitlines()
    after = text.index("---") + 1  # the second document's first line, from 0

    def line_with(words: str) -> int:
        return next(i for i, line in enumerate(text) if words in line and i >= after) + 1

    assert all(p["path"] == f"{target}/{p['file']}" for p in found)  # not under the cwd
    assert [(p["file"], p["document"], p["line"]) for p in found] == [
        ("jobs/two.yaml", 1, line_with("caspian.dev/not-before: soon")),
        ("jobs/two.yaml", 1, line_with("cpu: lots")),
        ("jobs/worse.yaml", 0, 1),  # where it stops being YAML
    ]
    monkeypatch.chdir(target)  # files are named from there
    plain = run("validate", target).output.splitlines()
    assert [f"{p['file']}:{p['line']}: {p['field']}: {p['reason']}" for p in found] == [
        *plain[:2],
        plain[2].replace(": not valid", ": -: not valid"),
    ]


def test_validate_annotates_a_pull_request_on_github(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    bad = appwrapper("bad", annotations={"caspian.dev/not-before": "soon, or later: 50%"})
    (target / "jobs" / "bad.yaml").write_text(bad)
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    monkeypatch.chdir(tmp_path)  # a workflow runs at the root of the repo that holds the fleet
    result = run("validate", "fleet", "--format", "github")
    assert result.exit_code == EXIT_ERROR
    lines = result.output.splitlines()
    line = 1 + next(i for i, t in enumerate(bad.splitlines()) if "not-before" in t)
    # Workflow commands take properties with `:` and `,` escaped, and `%` in both parts.
    assert re.fullmatch(
        rf"::error file=fleet/jobs/bad\.yaml,line={line},title=caspian%3A "
        r"metadata\.annotations\.caspian\.dev/not-before::.*soon, or later: 50%25.*",
        lines[0],
    ), lines[0]
    assert lines[1].startswith("::error file=fleet/jobs/worse.yaml,line=1,title=caspian::not valid")
    assert len(lines) == 2
    one = run("validate", "fleet/jobs/worse.yaml", "--format", "github")
    assert one.output.splitlines() == lines[1:]
    both = run("validate", "fleet", "--format", "github", "--json")
    assert both.exit_code == 2 and "--json is --format json" in both.output


def test_validate_writes_a_gitlab_code_quality_report(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    bad = appwrapper(
        "bad", annotations={"caspian.dev/not-before": "soon", "caspian.dev/spokes": "x"}
    )
    (target / "jobs" / "bad.yaml").write_text(bad)
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    monkeypatch.chdir(tmp_path)  # a pipeline runs at the root of the repo that holds the fleet
    result = run("validate", "fleet", "--format", "gitlab")
    assert result.exit_code == EXIT_ERROR
    issues = json.loads(result.stdout)  # one report, the artifact GitLab reads
    line = 1 + next(i for i, t in enumerate(bad.splitlines()) if "not-before" in t)
    assert [(i["location"]["path"], i["location"]["lines"]["begin"]) for i in issues] == [
        ("fleet/jobs/bad.yaml", line),
        ("fleet/jobs/bad.yaml", line + 1),
        ("fleet/jobs/worse.yaml", 1),
    ]
    assert issues[0]["description"].startswith(
        "metadata.annotations.caspian.dev/not-before: 'soon' is not an RFC 3339 time"
    )
    assert issues[0]["check_name"] == "caspian: metadata.annotations.caspian.dev/not-before"
    assert {i["severity"] for i in issues} == {"major"}
    # One issue is the same one in the next pipeline, and another one is not.
    again = json.loads(run("validate", "fleet", "--format", "gitlab").stdout)
    assert [i["fingerprint"] for i in again] == [i["fingerprint"] for i in issues]
    assert len({i["fingerprint"] for i in issues}) == 3
    # The same problem in two documents of one file is two issues.
    soon = {"caspian.dev/not-before": "soon"}
    twice = f"{appwrapper('one', annotations=soon)}---\n{appwrapper('two', annotations=soon)}"
    (target / "jobs" / "twice.yaml").write_text(twice)
    both = json.loads(run("validate", "fleet/jobs/twice.yaml", "--format", "gitlab").stdout)
    assert len(both) == 2 and both[0]["fingerprint"] != both[1]["fingerprint"]
    (target / "jobs" / "twice.yaml").unlink()
    (tmp_path / "fleet" / "jobs" / "bad.yaml").unlink()
    (tmp_path / "fleet" / "jobs" / "worse.yaml").unlink()
    clean = run("validate", "fleet", "--format", "gitlab")
    assert clean.exit_code == 0 and json.loads(clean.stdout) == []


def test_validate_warns_of_a_caspian_dev_after_that_names_no_job_and_fails_nothing(
    run, tmp_path, monkeypatch
) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    after = {"caspian.dev/after": "backfil-eu, gone"}
    (target / "jobs" / "late.yaml").write_text(appwrapper("late", annotations=after))
    monkeypatch.chdir(target)
    line = 1 + next(
        i
        for i, t in enumerate((target / "jobs" / "late.yaml").read_text().splitlines())
        if "caspian.dev/after" in t
    )
    text = run("validate")
    assert text.exit_code == 0
    typo, gone = (
        f"jobs/late.yaml:{line}: warning: metadata.annotations.caspian.dev/after: batch/{job} "
        f"is not in jobs/{near}: batch/late is held until it is"
        for job, near in [("backfil-eu", " (did you mean batch/backfill-eu?)"), ("gone", "")]
    )
    assert text.stdout.splitlines() == [typo, gone]
    assert text.stderr == "ok: 3 spokes, 11 jobs, 2 warnings\n"
    found = [json.loads(each) for each in run("validate", "--json").stdout.splitlines()]
    assert [(f["line"], f["severity"]) for f in found] == [(line, "warning")] * 2
    github = run("validate", "--format", "github").stdout.splitlines()
    assert [each.split(" ", 1)[0] for each in github] == ["::warning"] * 2
    gitlab = json.loads(run("validate", "--format", "gitlab").stdout)
    assert [issue["severity"] for issue in gitlab] == ["minor"] * 2
    # With a problem beside them, it fails for the problem, and says both.
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    both = run("validate")
    assert both.exit_code == EXIT_ERROR
    lines = both.stdout.splitlines()
    assert lines[:2] == [typo, gone] and lines[2].startswith("jobs/worse.yaml:1: not valid YAML")
    severities = [
        json.loads(each)["severity"] for each in run("validate", "--json").stdout.splitlines()
    ]
    assert severities == ["warning", "warning", "error"]


def test_validate_takes_a_file_or_directory_as_the_shell_names_it(
    run, tmp_path, monkeypatch
) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    (target / "jobs" / "worse.yaml").write_text("kind: [")
    spoke = target / "spokes" / "paris.yaml"
    spoke.write_text(spoke.read_text().replace("cpu:", "cpus:"))
    monkeypatch.chdir(target)
    everything = run("validate").output.splitlines()
    assert len(everything) == 3 and everything[0].startswith("jobs/worse.yaml:")
    # A path from the working directory, and names from there too.
    assert run("validate", "jobs/worse.yaml").output.splitlines() == everything[:1]
    assert run("validate", "jobs").output.splitlines() == everything[:1]
    assert run("validate", "./spokes/").output.splitlines() == everything[1:]
    (target / "jobs" / "worse").mkdir()
    (target / "jobs" / "worse" / "again.yaml").write_text("kind: [")
    again = run("validate", "jobs/worse").output.splitlines()
    assert again == [everything[0].replace("worse.yaml", "worse/again.yaml")]
    (target / "jobs" / "worse" / "again.yaml").unlink()
    monkeypatch.chdir(target / "jobs")
    assert run("validate", "../jobs/worse.yaml").output.splitlines() == [
        everything[0].replace("jobs/", "", 1)
    ]
    monkeypatch.chdir(tmp_path)
    assert run("validate", "fleet").output.splitlines() == [f"fleet/{e}" for e in everything]
    # Several, as an editor or a pre-commit hook gives the files it changed; from
    # two fleet repos, each checked on its own.
    (tmp_path / "other").mkdir()
    run("init", tmp_path / "other" / "fleet")
    (tmp_path / "other" / "fleet" / "jobs" / "bad.yaml").write_text("kind: [")
    several = run("validate", "fleet/jobs/worse.yaml", "other/fleet/jobs", "fleet/spokes")
    assert several.exit_code == EXIT_ERROR
    assert several.stdout.splitlines() == [
        *(f"fleet/{e}" for e in everything),
        "other/fleet/jobs/bad.yaml:1: " + everything[0].split(":1: ", 1)[1],
    ]
    clean = run("validate", "other/fleet/spokes", "other/fleet/caspian.yaml")
    assert clean.exit_code == 0 and clean.stdout == ""
    assert run("validate", "fleet/jobs/worse.yaml", "other/fleet/spokes").exit_code == EXIT_ERROR
    nowhere = run("validate", tmp_path)
    assert nowhere.exit_code == EXIT_ERROR
    assert "no caspian.yaml in it or above it: is this a fleet repo?" in nowhere.output


def test_validate_reads_links_as_git_holds_them_not_what_they_point_to(
    run, tmp_path, monkeypatch
) -> None:
    target, outside = tmp_path / "fleet", tmp_path / "outside"
    assert run("init", target).exit_code == 0
    outside.mkdir()
    (outside / "shared.yaml").write_text(appwrapper("shared"))
    (target / "jobs" / "shared.yaml").symlink_to(outside / "shared.yaml")
    (target / "jobs" / "team").symlink_to(outside, target_is_directory=True)
    monkeypatch.chdir(target)  # files are named from there
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip().splitlines() == [
        f"jobs/shared.yaml: a symbolic link (to '{outside / 'shared.yaml'}'): Caspian reads "
        "files, not links; commit the file itself at this path",
        # git cannot say a link is to a directory; one without a suffix is taken for one
        f"jobs/team: a symbolic link (to '{outside}'): Caspian reads files, not links; "
        "commit the files it points to below this path instead",
    ]


def test_validate_names_repos_nested_in_the_fleet_as_git_holds_them(
    run, tmp_path, monkeypatch
) -> None:
    target = tmp_path / "fleet"
    assert run("init", target).exit_code == 0
    # A submodule's checkout holds a .git file, a repo cloned inside a .git directory.
    team, vendored = target / "jobs" / "team-b", target / "rendered" / "paris" / "vendor"
    for nested in (team, vendored):
        nested.mkdir(parents=True)
    (team / ".git").write_text("gitdir: ../../.git/modules/team-b\n")
    (team / "train.yaml").write_text(appwrapper("team-b-train"))
    (vendored / ".git").mkdir()
    (vendored / "extra.yaml").write_text("kind: Job\n")
    monkeypatch.chdir(target)  # files are named from there
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip().splitlines() == [
        "jobs/team-b: a git submodule: git holds a commit of another repo here, not its "
        "files, so Caspian reads none of them; commit the files into this repo instead",
        "rendered/paris/vendor: a git submodule: Caspian owns rendered/ and status/, and takes "
        "it out at the next reconcile; make the change in jobs/, spokes/ or caspian.yaml "
        "(git rm rendered/paris/vendor)",
    ]


def test_validate_gives_json_files_their_lines(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    assert run("init", target).exit_code == 0
    doc = yaml.safe_load(appwrapper("in-json", annotations={"caspian.dev/duration": "soon"}))
    (target / "jobs" / "in-json.json").write_text(json.dumps(doc, indent=2))
    (target / "jobs" / "tabbed.json").write_text(json.dumps(doc, indent="\t"))
    # A comma YAML would take and JSON does not.
    (target / "jobs" / "broken.json").write_text('{\n  "kind": "AppWrapper",\n  "spec": {},\n}\n')
    monkeypatch.chdir(target)  # files are named from there
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert lines[0] == (
        "jobs/broken.json:4: not valid JSON: Expecting property name enclosed in double "
        "quotes (line 4, column 1)"
    )
    duration = "metadata.annotations.caspian.dev/duration: 'soon' is not a duration"
    assert lines[1].startswith(f"jobs/in-json.json:7: {duration}")
    assert lines[2].startswith(f"jobs/tabbed.json:7: {duration}")
    assert len(lines) == 3


def test_validate_names_rendered_files_edited_or_added_by_hand(run, tmp_path, monkeypatch) -> None:
    target, remote = tmp_path / "fleet", tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    gitutil.checkout(remote, target)
    monkeypatch.chdir(target)  # files are named from there
    assert run("validate", target).exit_code == 0
    job = next(
        p for p in (target / "rendered").rglob("batch.*.yaml") if "suspend: true" in p.read_text()
    )
    job.write_text(job.read_text().replace("suspend: true", "suspend: false"))
    (target / "rendered" / "paris" / "extra.yaml").write_text("kind: Job\n")
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    lines = sorted(result.output.strip().splitlines())
    edited = job.relative_to(target).as_posix()
    assert lines == [
        f"{edited}: edited by hand (it no longer matches the digest Caspian wrote): Caspian "
        "owns rendered/ and rewrites it at every reconcile; make the change in jobs/, spokes/ "
        f"or caspian.yaml and revert this file (git checkout -- {edited})",
        "rendered/paris/extra.yaml: Caspian did not write it (it lacks Caspian's header): "
        "Caspian owns rendered/ and rewrites it at every reconcile; make the change in jobs/, "
        "spokes/ or caspian.yaml and revert this file (git checkout -- rendered/paris/extra.yaml)",
    ]


def test_validate_says_a_ledger_that_does_not_read_once(run, tmp_path, monkeypatch) -> None:
    target, remote = tmp_path / "fleet", tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    gitutil.checkout(remote, target)
    monkeypatch.chdir(target)
    ledger = target / "status" / "placements.yaml"
    ledger.write_text(ledger.read_text() + "  - id: [\n")
    broken = run("validate")
    assert broken.exit_code == EXIT_ERROR
    line = len(ledger.read_text().splitlines())  # the line added, where YAML ends
    assert broken.output.startswith(f"status/placements.yaml:{line}: edited by hand ("), (
        broken.output
    )
    # A caspian.yaml that does not load is said first, as a reconcile says it.
    policy = (target / "caspian.yaml").read_text()
    (target / "caspian.yaml").write_text("spec: [\n")
    assert run("validate").output.startswith("caspian.yaml:")
    (target / "caspian.yaml").write_text(policy)
    ledger.unlink()
    missing = run("validate").output
    assert missing.startswith("status/placements.yaml: is missing while rendered/ holds ")


def test_validate_reports_a_broken_spoke(run, tmp_path, monkeypatch) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    (target / "spokes" / "paris.yaml").write_text(
        (target / "spokes" / "paris.yaml").read_text().replace("cpu:", "cpus:")
    )
    monkeypatch.chdir(target)  # files are named from there
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    assert result.output.splitlines() == [
        "spokes/paris.yaml:12: spec.capacity.cpu: required field is missing",
        "spokes/paris.yaml:13: spec.capacity.cpus: unknown field: did you mean cpu?",
    ]


@pytest.mark.parametrize(
    ("name", "nearest"),
    [("gurobi", "GUROBI or GUROBI_CMD"), ("CBC", "cbc"), ("higs", "highs or highs_cmd")],
)
def test_validate_names_a_solver_that_is_none(run, tmp_path, monkeypatch, name, nearest) -> None:
    target = tmp_path / "fleet"
    run("init", target)
    policy = target / "caspian.yaml"
    text = policy.read_text()
    policy.write_text(text.replace("    name: highs ", f"    name: {name} ", 1))
    line = next(i for i, each in enumerate(text.splitlines(), 1) if "name: highs " in each)
    monkeypatch.chdir(target)
    result = run("validate", target)
    assert result.exit_code == EXIT_ERROR
    assert result.output.splitlines() == [
        f"caspian.yaml:{line}: spec.solver.name: {name!r} names no solver: give highs (the "
        "default), highs_cmd, cbc, highs_pulp, or one of PuLP's solvers by its name (GUROBI, "
        f"CPLEX_CMD, ...); did you mean {nearest}?"
    ]
    # A solver PuLP drives by its own name is one, installed here or not.
    policy.write_text(text.replace("    name: highs ", "    name: GUROBI_CMD ", 1))
    assert run("validate", target).exit_code == 0


def test_reconcile_commits_once_then_finds_nothing_to_do(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    first = run("reconcile", "--repo", remote, "--once", *AT)
    assert first.exit_code == 0, first.output
    assert "committed " in first.output and "% less" in first.output
    head = gitutil.head(remote)
    second = run("reconcile", "--repo", remote, "--once", *AT)
    assert second.exit_code == 0
    assert "no change" in second.output
    assert gitutil.head(remote) == head


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CASPIAN_GIT_AUTHOR_NAME", "Fleet <Bot>"),
        ("CASPIAN_GIT_AUTHOR_NAME", "two\nlines"),
        ("CASPIAN_GIT_AUTHOR_EMAIL", "<bot@example.invalid>"),
    ],
)
def test_an_author_git_cannot_write_stops_the_reconcile_before_it_decides(
    tmp_path, variable, value
) -> None:
    remote = tmp_path / "fleet.git"
    runner = CliRunner()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), variable: value}
    assert runner.invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    head = gitutil.head(remote)
    refused = runner.invoke(main, ["reconcile", "--repo", str(remote), "--once", *AT], env=env)
    assert refused.exit_code == 1
    assert refused.output.startswith(f"Error: {variable}: {value!r} holds ")
    assert "Traceback" not in refused.output and gitutil.head(remote) == head


def test_the_author_comes_from_the_environment_and_an_empty_one_is_the_default(
    tmp_path,
) -> None:
    remote = tmp_path / "fleet.git"
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    named = {"CASPIAN_GIT_AUTHOR_NAME": " Fleet Bot\n", "CASPIAN_GIT_AUTHOR_EMAIL": ""}
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), **named}
    done = runner.invoke(main, ["reconcile", "--repo", str(remote), "--once", *AT], env=env)
    assert done.exit_code == 0, done.output
    assert gitutil.author(remote) == ("Fleet Bot", Identity().email)


@pytest.mark.parametrize(
    ("branch", "said"),
    [
        ("bad..name", "'bad..name' is no branch name git takes"),
        ("a b", "'a b' is no branch name git takes"),
        ("-x", "'-x' is no branch name git takes"),
        ("HEAD", "'HEAD' is no branch name git takes (none is HEAD"),
        ("x.lock", "'x.lock' is no branch name git takes"),
        ("refs/heads/review", "give the branch's name (review), not its ref"),
    ],
)
def test_a_branch_git_cannot_name_is_refused_before_anything_is_decided(
    run, tmp_path, branch, said
) -> None:
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    head = gitutil.head(remote)
    for command in (("reconcile", "--once"), ("plan",)):
        refused = run(*command, "--repo", remote, "--propose", branch, *AT)
        assert refused.exit_code == 2 and said in refused.output, refused.output
    # Nor did a push of the proposal make a ref.
    assert gitutil.branches(remote) == ["main"] and gitutil.head(remote) == head


def test_plan_and_explain_decide_from_the_plan_under_review(run, tmp_path, monkeypatch) -> None:
    """With --propose, as the reconcile that proposed: the plan under review
    on that branch is kept where the problem is the one it answered."""
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    review = ("--repo", remote, "--propose", "caspian/placement", *AT)
    assert run("reconcile", "--once", *review).exit_code == 0
    tip = gitutil.head(remote, branch="caspian/placement")
    proposed = Ledger.model_validate(yaml.safe_load(gitutil.read(remote, LEDGER_PATH, tip)))
    shown = json.loads(run("plan", "--json", *review).output)
    assert [Entry.model_validate(job) for job in shown["jobs"]] == list(proposed.entries)
    placed = next(e for e in proposed.entries if e.spoke is not None)
    told = json.loads(run("explain", placed.id, "--json", *review).output)
    assert (told["spoke"], timestamp(told["planned_start"])) == (placed.spoke, placed.planned_start)
    # Not "the next reconcile commits it": the open proposal holds it already.
    assert told["notes"][0] == (
        "proposed for review on caspian/placement: main does not hold it yet, and it starts "
        "there once the pull request is merged"
    )
    assert restless.calls == 1
    # Without it, main's plan alone (none yet): solved again.
    assert run("plan", "--json", "--repo", remote, *AT).exit_code == 0
    assert restless.calls == 2


def test_a_path_above_the_fleet_or_none_at_all_names_the_fleet_below(run, tmp_path) -> None:
    remote = tmp_path / "mono.git"
    fleet = {f"teams/batch/{path}": text for path, text in template_files().items()}
    create_bare_repo(remote, files={**fleet, "README.md": b"# ours\n"}, message="M", author=BOT)
    for path in ("teams", ""):
        result = run("plan", "--repo", remote, *(("--path", path) if path else ()), *AT)
        assert result.exit_code == 1
        where = path or "the repo's root"
        assert (
            f"{where} holds no caspian.yaml, but teams/batch does: give --path teams/batch"
        ) in result.output
        assert gitutil.files(remote, "teams/batch/status/") == []
    # A fleet that lost its caspian.yaml is no fleet elsewhere: it is told what is missing.
    gitutil.user_commit(remote, {"jobs/x.yaml": appwrapper("x").encode()})
    result = run("plan", "--repo", remote, *AT)
    assert result.exit_code == 1
    assert "caspian.yaml: missing" in result.output and "--path" not in result.output


def test_a_fleet_in_a_directory_of_a_larger_repo_is_read_and_written_there(run, tmp_path) -> None:
    remote = tmp_path / "mono.git"
    fleet = {f"teams/batch/{path}": text for path, text in template_files().items()}
    app = {"app/main.py": b"print('hello')\n", "README.md": b"# our monorepo\n"}
    create_bare_repo(remote, files={**fleet, **app}, message="Monorepo", author=BOT)
    at = ("--repo", remote, "--path", "teams/batch", *AT)
    first = run("reconcile", "--once", *at)
    assert first.exit_code == 0, first.output
    written = gitutil.files(remote)
    assert "teams/batch/status/placements.yaml" in written
    assert any(p.startswith("teams/batch/rendered/paris/") for p in written)
    assert not any(p.startswith(("rendered/", "status/")) for p in written)
    assert all(gitutil.read(remote, path) == text for path, text in app.items())
    # A change outside it is no change to the fleet; one inside is.
    gitutil.user_commit(remote, {"app/main.py": b"print('bye')\n"})
    assert "no change" in run("reconcile", "--once", *at).output
    gitutil.user_commit(remote, {"teams/batch/jobs/late.yaml": appwrapper("late").encode()})
    assert run("reconcile", "--once", *at).exit_code == 0
    placed = yaml.safe_load(gitutil.read(remote, "teams/batch/status/placements.yaml"))
    assert "batch/late" in {entry["id"] for entry in placed["entries"]}
    late = [p for p in gitutil.files(remote, "teams/batch/rendered/") if ".late-" in p]
    assert len(late) == 1
    # Cancelled: its Job leaves the fleet's rendered/.
    gitutil.user_commit(remote, {"teams/batch/jobs/late.yaml": None})
    run("reconcile", "--once", *at)
    assert late[0] not in gitutil.files(remote)
    gitutil.user_commit(remote, {"teams/batch/jobs/late.yaml": appwrapper("late").encode()})
    run("reconcile", "--once", *at)
    # The other commands take it too; paths in what they say are the fleet's own.
    history = run("history", "late", "--repo", remote, "--path", "teams/batch", "--json")
    assert json.loads(history.output.splitlines()[0])["what"] == "added jobs/late.yaml"
    assert "batch/late (jobs/late.yaml): " in run("explain", "late", *at).output
    # As the shell completes it.
    shell = ("--repo", remote, "--path", "./teams/batch/", *AT)
    assert "batch/late (jobs/late.yaml): " in run("explain", "late", *shell).output
    spokes = CliRunner().invoke(
        main,
        ["spokes", "--repo", str(remote), *AT, "--json"],
        env={"CASPIAN_FLEET_PATH": "teams/batch", "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert spokes.exit_code == 0, spokes.output
    assert {json.loads(line)["name"] for line in spokes.output.splitlines()} == {
        "california",
        "frankfurt",
        "paris",
    }
    text = gitutil.read(remote, "teams/batch/jobs/late.yaml")
    moved = {"teams/batch/jobs/late.yaml": None, "teams/batch/jobs/team/late.yaml": text}
    gitutil.user_commit(remote, moved)
    run("reconcile", "--once", *at)
    history = run("history", "late", "--repo", remote, "--path", "teams/batch")
    assert "moved jobs/late.yaml to jobs/team/late.yaml" in history.output
    missing = run("plan", "--repo", remote, "--path", "teams/nope", *AT)
    assert missing.exit_code == EXIT_ERROR
    assert "teams/nope/ is no directory at the tip of main: check --path" in missing.output


def test_reconcile_says_partial_with_exit_3(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    gitutil.user_commit(remote, {"jobs/bad.yaml": b"kind: ["})
    result = run("reconcile", "--repo", remote, "--once", *AT)
    assert result.exit_code == EXIT_PARTIAL
    assert "invalid: jobs/bad.yaml: not valid YAML" in result.output


def test_a_broken_policy_exits_1_and_commits_nothing(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    gitutil.user_commit(
        remote,
        {"caspian.yaml": b"apiVersion: caspian.dev/v1alpha1\nkind: Policy\nspec: {horizon: 0h}\n"},
    )
    head = gitutil.head(remote)
    result = run("reconcile", "--repo", remote, "--once", *AT)
    assert result.exit_code == EXIT_ERROR
    assert (
        "caspian.yaml: spec.horizon:" in result.output and "nothing was committed" in result.output
    )
    assert gitutil.head(remote) == head


def test_plan_lists_changes_and_commits_nothing(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    head = gitutil.head(remote)
    result = run("plan", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    assert "added    status/placements.yaml" in result.output
    assert gitutil.head(remote) == head


def test_plan_says_when_a_revert_took_the_ledger_back_past_a_dispatch(run, tmp_path) -> None:
    """As CI would run it on a pull request that reverts Caspian's commit."""
    import pygit2

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    repo = pygit2.Repository(str(remote))
    tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    who = pygit2.Signature("Fleet User", "user@example.invalid")
    repo.create_commit("refs/heads/main", who, who, "Revert", tip.parents[0].tree.id, [tip.id])
    result = run("plan", "--repo", remote, *AT)
    assert result.exit_code == 1
    assert "status/placements.yaml went back to an older state" in result.output


def test_plan_json_is_what_the_reconcile_then_commits(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    head = gitutil.head(remote)
    gitutil.user_commit(remote, {"jobs/bad.yaml": b"kind: ["}, "a file that is not YAML")
    result = run("plan", "--repo", remote, *AT, "--json")
    assert result.exit_code == EXIT_PARTIAL, result.output  # bad.yaml is invalid
    planned = json.loads(result.output)  # one object
    assert planned["input_commit"] == gitutil.head(remote) != head
    assert planned["problems"] == [
        {
            "file": "jobs/bad.yaml",
            "field": "-",
            "reason": "not valid YAML: expected the node content, but found '<stream end>' "
            "(line 1, column 8)",
        }
    ]
    assert planned["partial"] is True
    assert planned["changes"]["status/placements.yaml"] == "added"
    assert planned["message"].partition("\n")[0] == planned["subject"]
    assert run("reconcile", "--repo", remote, "--once", *AT).exit_code == EXIT_PARTIAL
    assert gitutil.ledger(remote) == {job["id"]: job for job in planned["jobs"]}
    assert gitutil.message(remote) == planned["message"]
    rendered = sorted(gitutil.files(remote, "rendered/"))
    assert sorted(planned["changes"]) == [*rendered, "status/placements.yaml"]
    again = json.loads(run("plan", "--repo", remote, *AT, "--json").output)
    assert (again["changes"], again["subject"], again["message"]) == ({}, None, None)
    assert again["jobs"] == planned["jobs"]


def test_a_fleet_with_no_jobs_yet_says_so(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    gitutil.user_commit(remote, dict.fromkeys(gitutil.files(remote, "jobs/")), "No jobs yet")
    result = run("reconcile", "--repo", remote, "--once", *AT)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("No job is waiting, placed or running.\n")
    message = gitutil.message(remote)
    assert "\n\nJobs: none.\n\nNo job is waiting, placed or running.\n" in message


def test_plan_json_of_a_fleet_that_cannot_be_planned_holds_its_problems(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    policy = gitutil.read(remote, "caspian.yaml")
    gitutil.user_commit(remote, {"caspian.yaml": b"apiVersion: caspian.dev/v1alpha1\nkind: ["})
    result = run("plan", "--repo", remote, *AT, "--json")
    assert result.exit_code == EXIT_ERROR
    planned = json.loads(result.stdout)  # the same shape, its problems all it holds
    assert planned["changes"] == {} and planned["jobs"] == []
    assert planned["input_commit"] is None and planned["partial"] is True
    assert [(p["file"], p["field"]) for p in planned["problems"]] == [("caspian.yaml", "-")]
    assert planned["problems"][0]["reason"].startswith("not valid YAML")
    # So does a ledger edited by hand, which stops every plan too.
    gitutil.user_commit(remote, {"caspian.yaml": policy})
    reconciled = run("reconcile", "--repo", remote, "--once", *AT)
    assert reconciled.exit_code == 0, reconciled.output
    text = gitutil.read(remote, "status/placements.yaml")
    gitutil.user_commit(remote, {"status/placements.yaml": text.replace(b"Planned", b"Planed", 1)})
    result = run("plan", "--repo", remote, *AT, "--json")
    assert result.exit_code == EXIT_ERROR
    planned = json.loads(result.stdout)
    assert planned["changes"] == {} and planned["jobs"] == []
    assert [(p["file"], p["field"]) for p in planned["problems"]] == [
        ("status/placements.yaml", "-")
    ]
    assert planned["problems"][0]["reason"].startswith("edited by hand")


def test_a_remote_without_the_branch_names_the_branches_it_has(run, tmp_path) -> None:
    import pygit2

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    repo = pygit2.Repository(str(remote))
    # As a fresh `git init` with git's old default pushes it: the fleet on "master".
    repo.references.create("refs/heads/master", repo.references["refs/heads/main"].target)
    repo.references.delete("refs/heads/main")
    result = run("plan", "--repo", remote, *AT)
    assert result.exit_code == EXIT_ERROR
    assert "has no branch 'main' (it has: master): pass --branch" in result.output
    result = run("plan", "--repo", remote, "--branch", "master", *AT)
    assert result.exit_code == 0, result.output
    assert "added    status/placements.yaml" in result.output


def test_an_empty_remote_is_told_to_push_a_fleet_first(run, tmp_path) -> None:
    import pygit2

    remote = tmp_path / "empty.git"
    pygit2.init_repository(str(remote), bare=True)
    result = run("plan", "--repo", remote, *AT)
    assert result.exit_code == EXIT_ERROR
    assert "has no branch 'main': push a fleet repo to it first" in result.output


def test_reconcile_needs_once(run, tmp_path) -> None:
    result = run("reconcile", "--repo", tmp_path)
    assert result.exit_code == 2 and "--once" in result.output


def test_reconcile_refuses_a_work_tree_with_the_branch_checked_out(run, tmp_path) -> None:
    import pygit2

    work = tmp_path / "work"
    run("init", work)
    repo = pygit2.init_repository(str(work), initial_head="main")
    index = repo.index
    index.add_all()
    index.write()
    who = pygit2.Signature("u", "u@example.invalid")
    repo.create_commit("HEAD", who, who, "init", index.write_tree(), [])
    result = run("reconcile", "--repo", work, "--once", *AT)
    assert result.exit_code == EXIT_ERROR
    assert "bare repository" in result.output


def test_an_unreachable_remote_is_a_clear_error(run, tmp_path) -> None:
    result = run("reconcile", "--repo", "git://127.0.0.1:9/nowhere.git", "--once", *AT)
    assert result.exit_code == EXIT_ERROR
    assert result.output.startswith("error: cannot fetch git://127.0.0.1:9/nowhere.git")


def test_a_path_that_is_not_there_says_so(run, tmp_path) -> None:
    result = run("plan", "--repo", tmp_path / "no-such.git", *AT)
    assert result.exit_code == EXIT_ERROR
    assert "no-such.git: no such directory (give the path of a bare repo" in result.output


def test_credentials_in_a_url_never_reach_the_output(run) -> None:
    result = run("reconcile", "--repo", "http://bob:s3cr3t-token@127.0.0.1:9/x.git", "--once", *AT)
    assert result.exit_code == EXIT_ERROR
    assert "s3cr3t" not in result.output and "bob" not in result.output


def test_demo_shows_table_savings_and_the_commit(run) -> None:
    result = run("demo", *AT)
    assert result.exit_code == 0, result.output
    assert "| job " in result.output
    assert "% less" in result.output
    assert (
        "second reconcile: no change, no commit; solver: kept (the problem the last plan answered)"
        in result.output
    )
    assert "$ git log --stat -1" in result.output
    assert "status/placements.yaml" in result.output


def test_explain_shows_the_place_and_the_cleaner_places_that_were_taken(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    head = gitutil.head(remote)
    result = run("explain", "etl-daily", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "batch/etl-daily (jobs/etl-daily.yaml): Planned"
    chosen = [line for line in lines if line.endswith("chosen")]
    assert len(chosen) == 1 and chosen[0].split()[0] in lines[1]
    assert any(line.endswith("taken by other jobs") for line in lines)
    assert gitutil.head(remote) == head  # explain commits nothing


def test_explain_says_when_a_place_is_not_the_one_committed(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    new = "a new place, not committed yet: the next reconcile commits it"
    assert new in run("explain", "etl-daily", "--repo", remote, *AT).output
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    # Committed where it is planned: nothing to say.
    assert "committed yet" not in run("explain", "etl-daily", "--repo", remote, *AT).output
    # Its Job edited: a new Job, placed anew.
    was = Entry.model_validate(gitutil.ledger(remote)["batch/etl-daily"])
    doc = yaml.safe_load(gitutil.read(remote, "jobs/etl-daily.yaml"))
    doc["spec"]["components"][0]["template"]["metadata"]["labels"] = {"run": "2"}
    gitutil.user_commit(remote, {"jobs/etl-daily.yaml": yaml.safe_dump(doc).encode()})
    edited = run("explain", "etl-daily", "--repo", remote, *AT).output
    assert (
        f"  not committed yet: the ledger holds it Planned on {was.spoke} from "
        f"{format_time(was.planned_start)}; the next reconcile commits it (with --propose, "
        "proposes it for review)"
    ) in edited.splitlines()


def test_explain_json_holds_what_the_text_says(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    text = run("explain", "etl-daily", "--repo", remote, *AT)
    result = run("explain", "etl-daily", "--repo", remote, *AT, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)  # one object
    assert (found["job"], found["source"], found["phase"]) == (
        "batch/etl-daily",
        "jobs/etl-daily.yaml",
        "Planned",
    )
    lines = text.output.splitlines()
    on = f"  on {found['spoke']} from {found['planned_start']} to {found['planned_end']}"
    assert lines[1] == on
    for note in found["notes"]:
        assert f"  {note}" in lines
    assert any(" gCO2 planned vs " in note for note in found["notes"])
    chosen = [place for place in found["places"] if place["chosen"]]
    assert len(chosen) == 1
    assert (chosen[0]["spoke"], chosen[0]["start"]) == (found["spoke"], found["planned_start"])
    rows = [line for line in lines if " gCO2  " in line]
    assert [row.split()[0] for row in rows] == [place["spoke"] for place in found["places"]]
    assert found["forecasts"] and all(source in text.output for source in found["forecasts"])
    # Its file as the shell completes it names it too.
    assert run("explain", "./jobs/etl-daily.yaml", "--repo", remote, *AT).output == text.output


def test_explain_names_the_spokes_a_selector_leaves_out(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    text = appwrapper("eu-only", annotations={"caspian.dev/spoke-selector": "region!=us-west"})
    gitutil.user_commit(remote, {"jobs/eu-only.yaml": text.encode()})
    result = run("explain", "eu-only", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    assert "  not on california: not among the spokes its caspian.dev/spokes or " in result.output
    places = [line.split()[0] for line in result.output.splitlines() if " gCO2  " in line]
    assert places
    assert "california" not in places
    everywhere = run("explain", "etl-daily", "--repo", remote, *AT)
    assert "not among the spokes" not in everywhere.output


def test_explain_names_an_allowed_spoke_that_is_never_large_enough(run, tmp_path) -> None:
    # Four pods of 16 cpu at once: paris (32 cpu) never has room, frankfurt (64) does.
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    text = appwrapper(
        "wide",
        annotations={"caspian.dev/spokes": "paris,frankfurt"},
        job_spec={"parallelism": 4, "completions": 8},
        resources={"requests": {"cpu": "16", "memory": "8Gi"}},
    )
    gitutil.user_commit(remote, {"jobs/wide.yaml": text.encode()})
    result = run("explain", "wide", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    assert "  on frankfurt from " in result.output
    assert (
        "  not on paris: it needs 64 cpu at once (4 pods), and paris has room for 32 cpu at "
        "most in the planning horizon\n"
    ) in result.output
    assert "not on frankfurt" not in result.output


def _explain_added(run, tmp_path, doc):
    """A template fleet repo with the AppWrapper `doc` added as jobs/NAME.yaml,
    and `caspian explain NAME` on it (which must succeed)."""
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    name = doc["metadata"]["name"]
    gitutil.user_commit(remote, {f"jobs/{name}.yaml": yaml.safe_dump(doc).encode()})
    result = run("explain", name, "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    return remote, result


def test_explain_names_the_containers_counted_at_the_default_request(run, tmp_path) -> None:
    doc = appwrapper_doc("bare")
    doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ] = {"requests": {"memory": "2Gi"}}
    remote, result = _explain_added(run, tmp_path, doc)
    assert (
        "  counted at caspian.yaml's spec.defaults.requests, as it asks for none: "
        "containers[0] cpu\n"
    ) in result.output
    assert "defaults.requests" not in run("explain", "etl-daily", "--repo", remote, *AT).output


def test_explain_says_an_active_deadline_cuts_the_duration_planned(run, tmp_path) -> None:
    doc = appwrapper_doc("capped")
    doc["metadata"]["annotations"]["caspian.dev/duration"] = "3h"
    doc["spec"]["components"][0]["template"]["spec"]["activeDeadlineSeconds"] = 3600
    remote, result = _explain_added(run, tmp_path, doc)
    assert (
        "  planned to run 1h, not its caspian.dev/duration 3h: its Job's activeDeadlineSeconds "
        "(3600) ends it then; raise that if it needs longer\n"
    ) in result.output
    start, end = re.search(r"from (\S+) to (\S+)", result.output).groups()
    ran = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert ran == timedelta(hours=1)
    assert "activeDeadlineSeconds" not in run("explain", "etl-daily", "--repo", remote, *AT).output


def test_explain_names_the_maintenance_of_the_spokes_a_job_may_use(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    spoke = yaml.safe_load(gitutil.read(remote, "spokes/frankfurt.yaml"))
    window = {"start": "2026-11-22T04:00:00Z", "end": "2026-11-22T10:00:00Z", "reason": "upgrade"}
    spoke["spec"]["maintenance"] = [window]
    gitutil.user_commit(remote, {"spokes/frankfurt.yaml": yaml.safe_dump(spoke).encode()})
    result = run("explain", "backfill-eu", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    assert (
        "  frankfurt takes no work from 2026-11-22T04:00:00Z to 2026-11-22T10:00:00Z "
        "(maintenance: upgrade): nothing of it is planned to run there then\n"
    ) in result.output
    # Not a spoke it may use (california): not said.
    spoke = yaml.safe_load(gitutil.read(remote, "spokes/california.yaml"))
    spoke["spec"]["maintenance"] = [window]
    gitutil.user_commit(remote, {"spokes/california.yaml": yaml.safe_dump(spoke).encode()})
    assert (
        "california takes no work"
        not in run("explain", "backfill-eu", "--repo", remote, *AT).output
    )
    # A schedule of many windows: the first few only.
    spoke = yaml.safe_load(gitutil.read(remote, "spokes/frankfurt.yaml"))
    spoke["spec"]["maintenance"] = [{"schedule": "*/15 * * * *", "duration": "5m"}]
    gitutil.user_commit(remote, {"spokes/frankfurt.yaml": yaml.safe_dump(spoke).encode()})
    told = run("explain", "backfill-eu", "--repo", remote, *AT).output
    assert told.count("  frankfurt takes no work from ") == 5


def test_explain_says_a_job_runs_after_another(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    hints = {"caspian.dev/duration": "1h", "caspian.dev/not-before": "2026-11-22T05:00:00Z"}
    prep = appwrapper("prep", annotations=hints)
    train = appwrapper("train", annotations={"caspian.dev/after": "prep"})
    gitutil.user_commit(
        remote, {"jobs/prep.yaml": prep.encode(), "jobs/train.yaml": train.encode()}
    )
    waiting = run("explain", "train", "--repo", remote, *AT)
    assert "  waits for batch/prep to start (its caspian.dev/after)\n" in waiting.output
    # Not planned yet, as a job deferred past the horizon is not: the exit says so.
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 3
    prep_starts = gitutil.ledger(remote)["batch/prep"]["plannedStart"]
    later = ["--now", prep_starts]
    assert run("reconcile", "--once", "--repo", remote, *later).exit_code == 0
    planned = run("explain", "train", "--repo", remote, *later)
    end = timestamp(prep_starts) + timedelta(hours=1)
    assert (
        f"  it runs after batch/prep, so it starts no earlier than its end {format_time(end)}, "
        "and is dispatched once that has succeeded (its caspian.dev/after)\n"
    ) in planned.output


def test_explain_names_the_allowed_spokes_that_take_no_new_work(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    started = [
        e["id"]
        for e in gitutil.ledger(remote).values()
        if (e["spoke"], e["phase"]) == ("paris", "Dispatched")
    ]
    spoke = yaml.safe_load(gitutil.read(remote, "spokes/paris.yaml"))
    spoke["spec"]["unschedulable"] = True
    gitutil.user_commit(remote, {"spokes/paris.yaml": yaml.safe_dump(spoke).encode()})
    moved = run("explain", "climate-sim", "--repo", remote, *AT)
    assert moved.exit_code == 0, moved.output
    assert "  not on paris: unschedulable in spokes/paris.yaml\n" in moved.output
    assert started  # they stay on paris, and nothing says they may not
    assert "not on paris" not in run("explain", started[0], "--repo", remote, *AT).output


def test_a_broken_spoke_file_is_reported_and_the_reconcile_goes_on(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    started = next(
        e["id"]
        for e in gitutil.ledger(remote).values()
        if (e["spoke"], e["phase"]) == ("paris", "Dispatched")
    )
    text = gitutil.read(remote, "spokes/paris.yaml").replace(b"pue:", b"pue: [")
    gitutil.user_commit(remote, {"spokes/paris.yaml": text})
    head = gitutil.head(remote)
    result = run("reconcile", "--once", "--repo", remote, *AT)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert gitutil.head(remote) != head
    held = run("explain", started, "--repo", remote, *AT)
    assert "  spokes/paris.yaml does not load, so it is held on paris as it was; " in held.output
    moved = run("explain", "climate-sim", "--repo", remote, *AT)
    assert "  not on paris: spokes/paris.yaml does not load; fix it\n" in moved.output
    problem = run("explain", "paris", "--repo", remote, *AT)
    assert problem.output.startswith("spokes/paris.yaml: Invalid\n")
    work_tree = tmp_path / "work"
    gitutil.checkout(remote, work_tree)
    checked = run("validate", work_tree)
    assert checked.exit_code == EXIT_ERROR
    assert re.match(rf"{work_tree}/spokes/paris\.yaml:\d+: not valid YAML", checked.output)


def _set_suspend(remote, path: str, value: bool) -> None:
    doc = yaml.safe_load(gitutil.read(remote, path))
    doc["spec"]["suspend"] = value
    gitutil.user_commit(remote, {path: yaml.safe_dump(doc, sort_keys=False).encode()})


def test_suspending_a_started_job_and_resuming_it_keeps_its_job_where_it_ran(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    started = next(e for e in gitutil.ledger(remote).values() if e["phase"] == "Dispatched")
    path = f"rendered/{started['spoke']}/batch.{started['jobName']}.yaml"
    _set_suspend(remote, started["source"], True)
    stop = run("reconcile", "--once", "--repo", remote, "--now", "2026-11-22T02:20:00Z")
    assert stop.exit_code == 0, stop.output  # a held job is no failure
    assert yaml.safe_load(gitutil.read(remote, path))["spec"]["suspend"] is True
    assert gitutil.ledger(remote)[started["id"]]["phase"] == "Suspended"
    _set_suspend(remote, started["source"], False)
    later = ["--now", "2026-11-22T03:00:00Z"]
    assert run("reconcile", "--once", "--repo", remote, *later).exit_code == 0
    resumed = gitutil.ledger(remote)[started["id"]]
    assert (resumed["phase"], resumed["spoke"]) == ("Planned", started["spoke"])
    assert path in gitutil.files(remote, "rendered/")  # the same Job, never pruned
    why = run("explain", started["id"], "--repo", remote, *later)
    assert f"  only on {started['spoke']}: its Job waits there, suspended" in why.output


def kube_spoke(api, *, cpu: str, gpu_node: bool = False) -> None:
    """A spoke's API server with one node of `cpu` cpu (and a GPU node tainted
    nvidia.com/gpu), and nothing running."""
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import listing, no_namespaced_objects, node

    nodes = [node("n1", cpu=cpu, memory="256Gi")]
    if gpu_node:
        nodes.append(node("gpu-1", cpu="64", memory="512Gi", gpu="8", taint="nvidia.com/gpu"))
    api.route("/api/v1/nodes", Reply(body=listing("NodeList", nodes)))
    api.route("/api/v1/pods", Reply(body=listing("PodList", [])))
    api.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [])))
    no_namespaced_objects(api)


def explain_on_kube(run, tmp_path, job: str, *, cpu: dict[str, str], gpu_on: str = "", routes=None):
    """`explain job` with the kube observer, against three local API servers;
    `routes(name, api)` adds answers to a spoke's."""
    from tests.fakehttp import serve
    from tests.reconcile.test_kube_observer import kubeconfig

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    if routes is not None:
        doc = appwrapper_doc("trainer")
        pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "ckpt"}}]
        gitutil.user_commit(remote, {"jobs/trainer.yaml": yaml.safe_dump(doc).encode()})
    with serve() as paris, serve() as frankfurt, serve() as california:
        apis = {"paris": paris, "frankfurt": frankfurt, "california": california}
        for name, api in apis.items():
            kube_spoke(api, cpu=cpu[name], gpu_node=name == gpu_on)
            if routes is not None:
                routes(name, api)
        config = kubeconfig(tmp_path, {name: api.url for name, api in apis.items()})
        return run(
            "explain", job, "--repo", remote, "--observer", "kube", "--kubeconfig", config, *AT
        )


def test_explain_names_a_spoke_whose_nodes_are_too_small_for_the_pod(run, tmp_path) -> None:
    # climate-sim's pod asks for 24 cpu: paris's one node has 16, frankfurt's 64.
    cpu = {"paris": "16", "frankfurt": "64", "california": "96"}
    result = explain_on_kube(run, tmp_path, "climate-sim", cpu=cpu)
    assert result.exit_code == 0, result.output
    assert (
        "  not on paris: its pod needs 24 cpu, 48Gi memory, 0 GPUs; no node there has that much "
        "(the largest: 16 cpu, 256Gi memory, 0 GPUs)\n"
    ) in result.output
    assert "not on frankfurt" not in result.output


def test_explain_names_a_spoke_without_the_claim_the_pods_need(run, tmp_path) -> None:
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import listing

    def claims(name, api) -> None:
        names = ["ckpt"] if name != "paris" else ["scratch"]
        items = [{"metadata": {"name": n, "namespace": "batch"}} for n in names]
        path = "/api/v1/namespaces/batch/persistentvolumeclaims"
        api.route(path, Reply(body=listing("PersistentVolumeClaimList", items)))

    cpu = dict.fromkeys(("paris", "frankfurt", "california"), "64")
    result = explain_on_kube(run, tmp_path, "trainer", cpu=cpu, routes=claims)
    assert result.exit_code == 0, result.output
    assert (
        "  not on paris: its pods need PersistentVolumeClaim batch/ckpt, and it is not there\n"
    ) in result.output
    assert "  on paris" not in result.output


def test_explain_lists_the_pools_of_a_spoke_whose_gpu_nodes_are_tainted(run, tmp_path) -> None:
    cpu = dict.fromkeys(("paris", "frankfurt", "california"), "64")
    result = explain_on_kube(run, tmp_path, "train-resnet", cpu=cpu, gpu_on="paris")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # Its 4 GPUs are only in paris's tainted pool, which its toleration lets it use.
    assert lines[1].startswith("  on paris from ")
    chosen = [line.split() for line in lines if line.endswith("chosen")]
    assert chosen and chosen[0][0] == "paris[nvidia.com/gpu:NoSchedule]"
    assert not any("[untainted]" in line for line in lines)


def test_explain_finds_a_broken_file_by_its_name_and_says_what_is_wrong(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    assert run("reconcile", "--once", "--repo", remote, *AT).exit_code == 0
    broken = yaml.safe_load(gitutil.read(remote, "jobs/etl-daily.yaml"))
    broken["metadata"]["annotations"]["caspian.dev/duration"] = "soon"
    fresh = appwrapper_doc("nightly")
    fresh["spec"]["components"][0]["template"]["spec"]["parallelism"] = "two"
    gitutil.user_commit(
        remote,
        {
            "jobs/etl-daily.yaml": yaml.safe_dump(broken).encode(),
            "jobs/nightly.yaml": yaml.safe_dump(fresh).encode(),
        },
    )
    # Never valid: found by its file's name, with the problem.
    result = run("explain", "nightly", "--repo", remote, *AT)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("jobs/nightly.yaml: Invalid\n")
    assert "parallelism: 'two' is not of type 'integer'" in result.output
    # Each of a file's problems on a line of its own.
    worse = appwrapper_doc("worse", annotations={"caspian.dev/duration": "soon"})
    worse["metadata"]["annotations"]["caspian.dev/spokes"] = "atlantis"
    gitutil.user_commit(remote, {"jobs/worse.yaml": yaml.safe_dump(worse).encode()})
    lines = run("explain", "worse", "--repo", remote, *AT).output.splitlines()
    assert lines[1].startswith("  metadata.annotations.caspian.dev/spokes: unknown spoke(s)")
    assert lines[2].startswith("  metadata.annotations.caspian.dev/duration: 'soon' is not a")
    # Placed, then broken: held where it was, and explain says why.
    held = run("explain", "etl-daily", "--repo", remote, *AT)
    assert held.exit_code == 0, held.output
    assert (
        "  its file has a problem, so it is held as it was: "
        "jobs/etl-daily.yaml: metadata.annotations.caspian.dev/duration: "
    ) in held.output


def test_explain_lists_the_jobs_when_it_finds_none(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    result = run("explain", "no-such-job", "--repo", remote, *AT)
    assert result.exit_code == EXIT_ERROR
    assert "'no-such-job' is no job in the ledger" in result.output
    assert "batch/etl-daily" in result.output
    typo = run("explain", "etl-dialy", "--repo", remote, *AT)
    assert "'etl-dialy' is no job in the ledger (did you mean batch/etl-daily?); jobs: " in (
        typo.output
    )
    part = run("explain", "sweep", "--repo", remote, *AT)
    assert "(did you mean batch/hyperparam-sweep?)" in part.output


def test_a_job_not_found_in_a_large_ledger_is_not_answered_with_every_name() -> None:
    entries = [
        Entry(id=f"team-{n}/job-{n}", source=f"jobs/team-{n}.yaml", phase=Phase.PLANNED)
        for n in range(MOST_NAMED + 1)
    ]
    with pytest.raises(LookupError) as found:
        Ledger(entries=tuple(entries)).find("jobs/team-7.yml")
    said = str(found.value)
    # The closest first, and a count where the names would be.
    assert said.startswith("'jobs/team-7.yml' is no job in the ledger (did you mean team-7/job-7")
    assert said.endswith(f"?); it has {MOST_NAMED + 1} (`caspian plan` lists them)")
    with pytest.raises(LookupError, match="; jobs: team-1/job-1, "):
        Ledger(entries=tuple(entries[1:])).find("x")  # few enough to name


def test_explain_names_the_jobs_an_ambiguous_name_matches(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    twin = appwrapper_doc("etl-daily")
    twin["metadata"]["namespace"] = "media"
    gitutil.user_commit(remote, {"jobs/etl-media.yaml": yaml.safe_dump(twin).encode()})
    result = run("explain", "etl-daily", "--repo", remote, *AT)
    assert result.exit_code == EXIT_ERROR
    assert "matches several jobs (batch/etl-daily, media/etl-daily): name one" in result.output
    assert run("explain", "media/etl-daily", "--repo", remote, *AT).exit_code == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--now", "yesterday"], "Invalid value for '--now': 'yesterday' is not an RFC 3339 time"),
        (
            ["--now", "2026-11-22T02:00:00"],
            "Invalid value for '--now': '2026-11-22T02:00:00' has no",
        ),
    ],
)
def test_a_bad_option_value_is_a_usage_error_not_a_traceback(run, tmp_path, args, expected) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    result = run("plan", "--repo", remote, *args)
    assert result.exit_code == 2 and expected in result.output, result.output
    forecast = run("carbon", "forecast", "--zone", "FR", "--slot", "soon")
    assert forecast.exit_code == 2
    assert "Invalid value for '--slot': 'soon' is not a duration" in forecast.output


def test_reconcile_names_a_late_job_and_why(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    job = appwrapper("long", annotations={"caspian.dev/duration": "3d"})
    gitutil.user_commit(remote, {"jobs/long.yaml": job.encode()})
    result = run("reconcile", "--repo", remote, "--once", *AT)
    assert result.exit_code == 0, result.output
    assert "late: batch/long: will finish after its deadline: it runs 3d" in result.output
    assert "Late:\n- batch/long: will finish after its deadline" in gitutil.message(remote)


@pytest.mark.parametrize("listen", ["abc", "127.0.0.1:http", "127.0.0.1:99999", "::1:8080", ":8²"])
def test_a_bad_listen_address_is_a_usage_error(run, tmp_path, listen) -> None:
    result = run("watch", "--repo", tmp_path / "x.git", "--listen", listen)
    assert result.exit_code == 2
    assert f"Invalid value for '--listen': {listen!r}: give HOST:PORT" in result.output


def test_an_address_it_cannot_bind_is_a_clear_error(run, tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    # 192.0.2.0/24 is for documentation: no interface here has it.
    result = run("watch", "--repo", remote, "--listen", "192.0.2.7:8080")
    assert result.exit_code == EXIT_ERROR
    assert "cannot listen on 192.0.2.7:8080:" in result.output


def test_paths_it_cannot_write_are_usage_errors_before_any_work(run, tmp_path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = run("init", a_file)
    assert result.exit_code == 2 and "a file is there, not a directory" in result.output
    result = run("init", a_file / "below")
    assert result.exit_code == 2 and "cannot write in" in result.output
    result = run(
        "bench", "optimizer", "--jobs", "3", "--spokes", "2", "--dump", a_file / "x", "--json"
    )
    assert result.exit_code == 2 and "Invalid value for '--dump': cannot write in" in result.output
    started = time.monotonic()
    result = run("simulate", "--days", "1", "--plot", tmp_path / "no-dir" / "plot.svg")
    assert result.exit_code == 2 and "Invalid value for '--plot': cannot write" in result.output
    assert time.monotonic() - started < 5  # refused before the replay, not after it


def test_bench_ledger_prints_json_medians_for_each_yaml_engine(run) -> None:
    result = run("bench", "ledger", "--records", "30", "--records", "60", "--repeat", "1", "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["records"] for r in runs] == [30, 60]
    assert runs[1]["bytes"] > runs[0]["bytes"] > 0
    engines = ("pyyaml", "libyaml") if yaml.__with_libyaml__ else ("pyyaml",)
    for engine in engines:
        assert runs[0][engine]["total_s"] > 0


def test_bench_nodes_prints_json_with_the_pools_and_the_planner_apart(run) -> None:
    args = ["--jobs", "24", "--spokes", "2", "--nodes", "10", "--repeat", "1", "--json"]
    result = run("bench", "nodes", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Each spoke: its untainted CPU nodes, and GPU nodes of two products, which
    # the H100 jobs' selector sets apart.
    assert report["pools"] == 2 * 3
    assert report["jobs_no_node_fits"] == 0
    for kind in ("nodes", "sums"):
        assert 0 < report[f"planner_with_{kind}_s"] < report[f"decide_with_{kind}_s"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--start", "2022-01-01"], "Invalid value for '--start': 2022-01-01: the embedded data"),
        (["--start", "march"], "Invalid value for '--start': 'march': give a date like"),
        (["--forecast", "bogus"], "Invalid value for '--forecast': unknown forecast 'bogus'"),
    ],
)
def test_simulate_names_a_bad_option_as_click_does(run, args, expected) -> None:
    result = run("simulate", *args)
    assert result.exit_code == 2 and expected in result.output, result.output


def synced(remote, spoke: str, *own: dict):
    """A spoke's Job list as Argo CD leaves it, synced: each Job the branch
    holds in rendered/<spoke>/, as applied (its status empty: suspended, or
    its pods not made yet), with the test's `own` Jobs in place of those of
    their names. A route's answer, read when asked."""
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import listing

    def jobs(_seen):
        named = {job["metadata"]["name"]: job for job in own}
        for path in gitutil.files(remote, f"rendered/{spoke}/"):
            for doc in yaml.safe_load_all(gitutil.read(remote, path)):
                if doc and doc["kind"] == "Job":
                    named.setdefault(doc["metadata"]["name"], {**doc, "status": {}})
        return Reply(body=listing("JobList", list(named.values())))

    return jobs


@contextmanager
def kube_spokes(tmp_path, remote):
    """The three spokes' API servers, each with a 64-cpu node and a GPU node,
    where Argo CD applies what the branch holds (`synced`), and the arguments
    that point the CLI's kube observer at them."""
    from tests.fakehttp import serve
    from tests.reconcile.test_kube_observer import kubeconfig

    with serve() as paris, serve() as frankfurt, serve() as california:
        apis = {"paris": paris, "frankfurt": frankfurt, "california": california}
        for name, api in apis.items():
            kube_spoke(api, cpu="64", gpu_node=True)
            api.routes["/apis/batch/v1/jobs"] = synced(remote, name)
        config = kubeconfig(tmp_path, {name: api.url for name, api in apis.items()})
        yield apis, ["--repo", remote, "--observer", "kube", "--kubeconfig", config]


def _backfill_dispatched_on_paris(run, remote, kube):
    """Reconciles until backfill-eu is dispatched on paris: its planned start, and
    its Job's name."""
    assert run("reconcile", "--once", *kube, *AT).exit_code == 0
    planned = gitutil.ledger(remote)["batch/backfill-eu"]
    assert (planned["phase"], planned["spoke"]) == ("Planned", "paris")
    start = timestamp(planned["plannedStart"])
    at = ["--now", (start + timedelta(minutes=1)).isoformat()]
    assert run("reconcile", "--once", *kube, *at).exit_code == 0
    started = gitutil.ledger(remote)["batch/backfill-eu"]
    assert (started["phase"], started["spoke"]) == ("Dispatched", "paris")
    return start, started["jobName"]


def test_a_planned_job_its_spoke_runs_already_is_held_there_end_to_end(run, tmp_path) -> None:
    # Resumed on paris outside Caspian, hours before its planned start: the
    # kube observer sees it run, and the reconcile records it so.
    from tests.reconcile.test_kube_observer import job

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    with kube_spokes(tmp_path, remote) as (apis, kube):
        assert run("reconcile", "--once", *kube, *AT).exit_code == 0
        planned = gitutil.ledger(remote)["batch/backfill-eu"]
        assert (planned["phase"], planned["spoke"]) == ("Planned", "paris")
        began = timestamp(AT[1]) + timedelta(minutes=5)
        assert timestamp(planned["plannedStart"]) > began + timedelta(hours=1)
        running = job(planned["jobName"])
        running["status"]["startTime"] = began.isoformat()
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", running)

        def counted() -> float:
            sample = REGISTRY.get_sample_value("caspian_started_outside_total", {"spoke": "paris"})
            return sample or 0.0

        before = counted()
        later = ["--now", (began + timedelta(minutes=10)).isoformat()]
        assert run("reconcile", "--once", *kube, *later).exit_code == 0
        entry = gitutil.ledger(remote)["batch/backfill-eu"]
        assert (entry["phase"], entry["spoke"]) == ("Running", "paris")
        assert timestamp(entry["plannedStart"]) == began
        path = f"rendered/paris/batch.{planned['jobName']}.yaml"
        assert yaml.safe_load(gitutil.read(remote, path))["spec"]["suspend"] is False
        message = gitutil.message(remote)
        assert "started outside Caspian: 1 job" in message.splitlines()[0]
        assert "- batch/backfill-eu started on paris 2026-11-22 02:05, before Caspian " in message
        assert counted() == before + 1
        head = gitutil.head(remote)
        assert run("reconcile", "--once", *kube, *later).exit_code == 0
        assert gitutil.head(remote) == head and counted() == before + 1
    history = run("history", "backfill-eu", "--repo", remote).output
    assert f"Running on paris[untainted] from {format_time(began)} (Job {planned['jobName']})" in (
        history
    )


def test_what_a_run_emitted_is_kept_when_its_spoke_reports_its_job_ended(run, tmp_path) -> None:
    # Through the kube observer and the embedded data read back over the
    # hours just gone, as a reconcile reads them.
    from tests.reconcile.test_kube_observer import job

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    with kube_spokes(tmp_path, remote) as (apis, kube):
        start, name = _backfill_dispatched_on_paris(run, remote, kube)
        began, ended = start + timedelta(minutes=4), start + timedelta(hours=2, minutes=4)
        done = job(name, condition="Complete")
        done["status"]["startTime"] = began.isoformat()
        done["status"]["conditions"][0]["lastTransitionTime"] = ended.isoformat()
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", done)

        def emitted(name: str = "caspian_emitted_grams_total") -> float:
            return REGISTRY.get_sample_value(name, {"spoke": "paris"}) or 0.0

        measured = "caspian_finished_measured_grams_total"
        baseline = "caspian_finished_measured_baseline_grams_total"
        before, measured_before, baseline_before = emitted(), emitted(measured), emitted(baseline)
        later = ["--now", (ended + timedelta(minutes=10)).isoformat()]
        assert run("reconcile", "--once", *kube, *later).exit_code == 0
        counted = emitted() - before
        entry = gitutil.ledger(remote)["batch/backfill-eu"]
        assert (entry["phase"], timestamp(entry["startedAt"])) == ("Succeeded", began)
        # Two of its six planned hours, on France's grid of the same hours of 2023.
        assert 0 < entry["emittedGrams"] < entry["estimatedGrams"] / 2
        assert counted == pytest.approx(entry["emittedGrams"])
        # Where and when qos would have started it, measured too: the saving, as measured.
        assert entry["qosEmittedGrams"] > entry["emittedGrams"]
        assert emitted(measured) - measured_before == pytest.approx(entry["emittedGrams"])
        assert emitted(baseline) - baseline_before == pytest.approx(entry["qosEmittedGrams"])
        line = f"succeeded on paris; ran 2h from {began:%Y-%m-%d %H:%M}; emitted "
        assert line in gitutil.message(remote)
        # The next reconcile counts it no more.
        assert run("reconcile", "--once", *kube, *later).exit_code == 0
        assert emitted() - before == counted
        explained = run("explain", "backfill-eu", *kube, *later).output
        grams = entry["emittedGrams"]
        qos = entry["qosEmittedGrams"]
        assert (
            f"  {grams:,.1f} gCO2 emitted by its run that ended, as counted, "
            f"vs {qos:,.1f} gCO2 as qos placed it, measured too ("
        ) in explained
    history = run("history", "backfill-eu", "--repo", remote).output
    assert f"Succeeded on paris[untainted] (Job {name}, emitted {grams:,.0f} gCO2)" in history
    # The period's report, read back from the ledgers of its commits.
    until = (ended + timedelta(hours=1)).isoformat()
    period = ["--repo", remote, "--since", "2026-11-22", "--until", until]
    found = json.loads(run("report", *period, "--json").output)
    paris = next(tally for tally in found["groups"] if tally["group"] == "paris")
    assert (paris["succeeded"], paris["failed"], paris["measured_jobs"]) == (1, 0, 1)
    assert paris["emitted_grams"] == pytest.approx(grams)
    assert paris["measured_qos_grams"] == pytest.approx(qos)
    assert found["complete"] is True and found["commits_read"] >= 3
    text = run("report", *period).output
    assert f"from the ledgers of {found['commits_read']:,} commits of main:" in text
    assert f"| {grams:,.0f} (1) | {1 - grams / qos:.0%} less (1) |" in text
    teams = json.loads(run("report", *period, "--by", "namespace", "--json").output)
    assert [tally["group"] for tally in teams["groups"]] == ["batch"]
    assert teams["total"] == found["total"]
    # A period that ends before it finished has none of it.
    early = run("report", "--repo", remote, "--since", "2026-11-22", "--until", began.isoformat())
    assert "| all | 0 | 0 | 0 |" in early.output
    wrong = run("report", "--repo", remote, "--since", "2026-12-01", "--until", "2026-11-30")
    assert wrong.exit_code == 2 and "2026-12-01T00:00:00Z is not before" in wrong.output


def test_a_running_job_suspended_on_its_spoke_is_taken_for_failed_at_its_planned_end(
    run, tmp_path
) -> None:
    # Suspended on paris by hand (or by Kueue preempting it) after a pod of it
    # failed: the kube observer calls it Running, and nothing resumes it.
    from tests.reconcile.test_kube_observer import job

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    with kube_spokes(tmp_path, remote) as (apis, kube):
        start, name = _backfill_dispatched_on_paris(run, remote, kube)
        began = start + timedelta(minutes=4)
        running = job(name)
        running["status"]["startTime"] = began.isoformat()
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", running)
        soon = ["--now", (start + timedelta(minutes=10)).isoformat()]
        assert run("reconcile", "--once", *kube, *soon).exit_code == 0
        entry = gitutil.ledger(remote)["batch/backfill-eu"]
        assert entry["phase"] == "Running"
        end = timestamp(entry["plannedEnd"])
        suspended = job(name)
        suspended["spec"]["suspend"] = True
        at = began + timedelta(hours=1)
        condition = {"type": "Suspended", "status": "True", "lastTransitionTime": at.isoformat()}
        suspended["status"] = {"startTime": began.isoformat(), "failed": 1}
        suspended["status"]["conditions"] = [condition]
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", suspended)
        before_end = ["--now", (end - timedelta(minutes=5)).isoformat()]
        assert run("reconcile", "--once", *kube, *before_end).exit_code == 0
        assert gitutil.ledger(remote)["batch/backfill-eu"]["phase"] == "Running"
        after_end = ["--now", (end + timedelta(minutes=10)).isoformat()]
        assert run("reconcile", "--once", *kube, *after_end).exit_code == 0
    # Its run counts to when it was suspended, as its Suspended condition says.
    failed = gitutil.ledger(remote)["batch/backfill-eu"]
    assert (failed["phase"], timestamp(failed["finishedAt"])) == ("Failed", at)
    why = (
        f"its Job {name} was suspended on paris at {format_time(at)} after it began and has "
        "run no pod since (suspended there by hand, or preempted by Kueue, with Argo CD's "
        f"self-heal off?), so at its planned end {format_time(end)} it is taken for failed "
        f"from {format_time(at)}"
    )
    assert failed["reason"] == why
    assert f"- batch/backfill-eu failed on paris: {why}; ran " in gitutil.message(remote)


def test_a_running_job_whose_node_went_runs_again_once_its_pod_has_found_none_for_long(
    run, tmp_path
) -> None:
    # paris's node n1 failed an hour into the run: its pod was evicted
    # (counted failed) and the one made in its place finds no node.
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import _waiting_pod, job, listing

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    policy = gitutil.read(remote, "caspian.yaml").replace(b"retryLimit: 0", b"retryLimit: 1")
    gitutil.user_commit(remote, {"caspian.yaml": policy})
    with kube_spokes(tmp_path, remote) as (apis, kube):
        start, name = _backfill_dispatched_on_paris(run, remote, kube)
        running = job(name)
        running["status"]["startTime"] = start.isoformat()
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", running)
        soon = ["--now", (start + timedelta(minutes=10)).isoformat()]
        assert run("reconcile", "--once", *kube, *soon).exit_code == 0
        assert gitutil.ledger(remote)["batch/backfill-eu"]["phase"] == "Running"
        lost = start + timedelta(hours=1)
        stranded = job(name, ready=False)
        stranded["status"] |= {"startTime": start.isoformat(), "failed": 1}
        apis["paris"].routes["/apis/batch/v1/jobs"] = synced(remote, "paris", stranded)
        waiting = _waiting_pod(
            "backfill-eu-x", name, since=lost.isoformat(), message="0/1 nodes are available."
        )
        waiting["metadata"]["namespace"] = "batch"
        apis["paris"].route("/api/v1/pods", Reply(body=listing("PodList", [waiting])))
        soon = ["--now", (lost + timedelta(minutes=14)).isoformat()]
        told = run("explain", "backfill-eu", *kube, *soon).output
        assert (
            f"  not running now: its pods have had no node on paris since {format_time(lost)} "
            '(paris says: "0/1 nodes are available.") (its nodes gone?): it is taken for failed '
            f"at {format_time(lost + timedelta(minutes=15))} unless they find one"
        ) in told
        for minutes, phase in ((14, "Running"), (16, "Planned")):
            at = ["--now", (lost + timedelta(minutes=minutes)).isoformat()]
            assert run("reconcile", "--once", *kube, *at).exit_code == 0
            assert gitutil.ledger(remote)["batch/backfill-eu"]["phase"] == phase, minutes
    again = gitutil.ledger(remote)["batch/backfill-eu"]
    assert (again["retries"], again["jobName"]) == (1, f"{name}-r1")
    message = gitutil.message(remote)
    assert (
        f"- retried batch/backfill-eu (1 of 1): its Job {name} failed on paris (paris says: "
        f'"0/1 nodes are available."; its Job {name} has had no pod on a node on paris since '
        f"{format_time(lost)}, the scheduler finding none"
    ) in message
    assert f"so it is taken for failed from {format_time(lost)})" in message


@pytest.mark.parametrize("terminal", ["", "137"])
def test_a_failed_job_runs_again_unless_it_exited_as_its_appwrapper_says_ends_it(
    run, tmp_path, caplog, terminal
) -> None:
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import job, listing, pod

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    policy = gitutil.read(remote, "caspian.yaml").replace(b"retryLimit: 0", b"retryLimit: 1")
    doc = yaml.safe_load(gitutil.read(remote, "jobs/backfill-eu.yaml"))
    # Its exit code ends it, or it pauses half an hour before it runs again.
    said = {TERMINAL_EXIT_CODES: terminal} if terminal else {RETRY_PAUSE: "30m"}
    doc["metadata"]["annotations"].update(said)
    changes = {"caspian.yaml": policy, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}
    gitutil.user_commit(remote, changes)
    with kube_spokes(tmp_path, remote) as (apis, kube):
        paris = apis["paris"]
        start, name = _backfill_dispatched_on_paris(run, remote, kube)
        # Its Job failed there, its pod's container killed (137).
        failed = job(name, condition="Failed")
        failed["status"]["conditions"][0] |= {"reason": "BackoffLimitExceeded"}
        killed = pod("backfill-eu", "n1", "Failed", ours=True)
        killed["metadata"] |= {"namespace": "batch"}
        killed["metadata"]["labels"]["batch.kubernetes.io/job-name"] = name
        killed["status"]["containerStatuses"] = [
            {
                "name": "main",
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }
        ]

        def pods(seen):
            failed_only = seen.query.get("fieldSelector") == ["status.phase=Failed"]
            return Reply(body=listing("PodList", [killed] if failed_only else []))

        paris.routes["/api/v1/pods"] = pods
        paris.routes["/apis/batch/v1/jobs"] = synced(remote, "paris", failed)

        def counted() -> float:
            sample = REGISTRY.get_sample_value("caspian_retries_total", {"spoke": "paris"})
            return sample or 0.0

        before = counted()
        later = ["--now", (start + timedelta(hours=1)).isoformat()]
        assert run("reconcile", "--once", *kube, *later).exit_code == 0
        explained = run("explain", "backfill-eu", *kube, *later).output
    message, entry = gitutil.message(remote), gitutil.ledger(remote)["batch/backfill-eu"]
    if terminal:
        why = (
            "exit code 137, one of its AppWrapper's terminalExitCodes (137), "
            "so it does not run again"
        )
        assert (entry["phase"], entry.get("retries", 0), counted()) == ("Failed", 0, before)
        assert f"- batch/backfill-eu failed on paris with {why}; ran 1h from " in message
        assert f"batch/backfill-eu does not run again: {why}" in caplog.text
        assert f"  its Job {name} failed with {why}\n" in explained
        return
    assert (entry["retries"], entry["jobName"], counted()) == (1, f"{name}-r1", before + 1)
    assert message.startswith("retry: 1 job")
    assert (
        f"- retried batch/backfill-eu (1 of 1): its Job {name} failed on paris "
        '(exit code 137; paris says: "BackoffLimitExceeded"); now '
    ) in message
    assert f", after its AppWrapper's retryPausePeriodDuration 30m, as Job {name}-r1\n" in message
    paused_until = timestamp(entry["rerunAfter"])
    assert paused_until == start + timedelta(hours=1, minutes=30)
    assert f"  it starts no earlier than {format_time(paused_until)}: its AppWrapper's " in (
        explained
    )
    assert f"batch/backfill-eu's Job {name} failed on paris: running it again (1 of 1)" in (
        caplog.text
    )
    assert "  run again once after a Job of it failed" in explained


@pytest.mark.parametrize(
    ("cause", "limit"), [("found no node", 3), ("could not start", 3), ("could not start", 0)]
)
def test_a_job_whose_pods_cannot_run_is_requeued_end_to_end(
    run, tmp_path, caplog, cause, limit
) -> None:
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import (
        _pod_on_node,
        _waiting_pod,
        _waits,
        job,
        listing,
    )

    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    policy = gitutil.read(remote, "caspian.yaml").replace(
        b"requeueLimit: 3", f"requeueLimit: {limit}".encode()
    )
    gitutil.user_commit(remote, {"caspian.yaml": policy})
    with kube_spokes(tmp_path, remote) as (apis, kube):
        paris = apis["paris"]
        start, name = _backfill_dispatched_on_paris(run, remote, kube)
        since = (start + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if cause == "found no node":  # paris's scheduler finds no node for its pod
            word = "0/3 nodes are available: 3 Insufficient cpu."
            stuck = _waiting_pod("backfill-eu-x", name, since=since, message=word)
        else:  # its pod has a node there, which cannot pull its image
            pulling = _waits("ImagePullBackOff", 'Back-off pulling image "x"')
            stuck = _pod_on_node("backfill-eu-x", name, statuses=[pulling], start=since)
            word = 'ImagePullBackOff: Back-off pulling image "x"'
        stuck["metadata"]["namespace"] = "batch"
        paris.route("/api/v1/pods", Reply(body=listing("PodList", [stuck])))
        paris.routes["/apis/batch/v1/jobs"] = synced(remote, "paris", job(name, ready=False))
        later = ["--now", (start + timedelta(minutes=20)).isoformat()]
        sooner = ["--now", (start + timedelta(minutes=10)).isoformat()]
        waits = run("explain", "backfill-eu", *kube, *sooner).output
        assert f"  not running yet: its pods {cause} on paris since " in waits
        assert f'(paris says: "{word}"): it is requeued at ' in waits

        def counted() -> float:
            sample = REGISTRY.get_sample_value("caspian_requeues_total", {"spoke": "paris"})
            return sample or 0.0

        before = counted()
        result = run("reconcile", "--once", *kube, *later)
        assert counted() == before + 1
        # A job given up on is one not planned: the exit says so.
        assert result.exit_code == (3 if limit == 0 else 0), result.output
        message = gitutil.message(remote)
        assert message.startswith("requeue: 1 job")
        assert f"- requeued batch/backfill-eu: its pods {cause} on paris from " in message
        assert f'and goes (paris says: "{word}"); now ' in message
        entry = gitutil.ledger(remote)["batch/backfill-eu"]
        assert f"rendered/paris/batch.{name}.yaml" not in gitutil.files(remote, "rendered/")
        given_up = REGISTRY.get_sample_value("caspian_jobs_given_up")
        if limit == 0:  # its one requeue is one too many: planned nowhere
            assert (entry["phase"], entry.get("spoke"), given_up) == ("Pending", None, 1)
            assert "gave up on batch/backfill-eu: it was requeued once (paris)" in caplog.text
            assert "now pending: it was requeued once (paris) without running, more than " in (
                message
            )
            return
        assert (entry["spoke"], entry["requeuedFrom"], given_up) == ("frankfurt", ["paris"], 0)
        explained = run("explain", "backfill-eu", *kube, *later)
        assert "  not on paris: it could not run there when it was last dispatched " in (
            explained.output
        )


def fresh_fleet(run, tmp_path):
    """A bare fleet repo `caspian init` made, for reconciles at `at` minutes."""
    remote = tmp_path / "fleet.git"
    run("init", "--bare", remote)
    return remote


def at(minutes: int) -> list[str]:
    """The option that sets the clock `minutes` after 2026-11-22T02:00Z."""
    begin = datetime(2026, 11, 22, 2, tzinfo=UTC)
    return ["--now", (begin + timedelta(minutes=minutes)).isoformat()]


def test_jobs_argo_cd_never_applies_are_requeued_and_their_spoke_cut_off(run, tmp_path) -> None:
    # No Application syncs rendered/paris/: paris lists none of Caspian's Jobs,
    # while the other spokes' Argo CD applies what the branch holds.
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import listing

    remote = fresh_fleet(run, tmp_path)

    def not_there(spoke: str) -> float | None:
        return REGISTRY.get_sample_value("caspian_jobs_not_on_spoke", {"spoke": spoke})

    def unsynced(spoke: str) -> float | None:
        return REGISTRY.get_sample_value("caspian_spoke_unsynced", {"spoke": spoke})

    with kube_spokes(tmp_path, remote) as (apis, kube):
        paris = apis["paris"]
        paris.route("/apis/batch/v1/jobs", Reply(body=listing("JobList", [])))
        assert run("reconcile", "--once", *kube, *at(0)).exit_code == 0
        assert unsynced("paris") == 0
        ledger = gitutil.ledger(remote)
        there = [e for e in ledger.values() if e.get("spoke") == "paris"]
        sent = [e for e in there if e["phase"] == "Dispatched"]
        assert sent and len(there) > len(sent)  # some are planned there for later
        job_id, name = sent[0]["id"], sent[0]["jobName"]
        waits = run("explain", job_id, *kube, *at(10)).output
        assert "  not running yet: its Job has not appeared on paris since " in waits
        assert f"(paris has no Job batch/{name}: does an Argo CD Application sync " in waits
        spokes = run("spokes", *kube, *at(10)).output
        assert "| paris | FR | kube:kind-paris | up |" in spokes
        assert f"| {len(there)} not there |" in spokes
        # One line for them all: one cause misses them all.
        (line,) = [line for line in spokes.splitlines() if " not there" in line and "|" not in line]
        assert line.startswith("paris: Jobs batch/") and " not there, which " in line
        assert line.endswith(
            "(the first): Argo CD has not applied rendered/paris/ here; does an Application "
            "sync it to this spoke?"
        )

        assert run("reconcile", "--once", *kube, *at(20)).exit_code == 0
        message = gitutil.message(remote)
        assert "; cut off: paris (nothing syncs it)" in message.splitlines()[0]
        after, files = gitutil.ledger(remote), gitutil.files(remote)
        # What that reconcile saw, before it requeued them.
        assert (not_there("paris"), not_there("frankfurt"), not_there("california")) == (
            len(there),
            0,
            0,
        )
        assert (unsynced("paris"), unsynced("frankfurt"), unsynced("california")) == (1, 0, 0)
        # With all it held gone elsewhere, the ledger remembers it: it takes
        # no work back until an hour on, and the next reconcile commits nothing.
        assert gitutil.ledger_document(remote)["unsynced"] == {
            "paris": {"since": "2026-11-22T02:20:00Z", "until": "2026-11-22T03:20:00Z"}
        }
        head = gitutil.head(remote)
        assert run("reconcile", "--once", *kube, *at(21)).exit_code == 0
        assert gitutil.head(remote) == head
        spokes = run("spokes", *kube, *at(21)).output
        assert "| paris | FR | kube:kind-paris | down |" in spokes
        assert run("reconcile", "--once", *kube, *at(81)).exit_code == 0
        spokes = run("spokes", *kube, *at(81)).output
        assert "| paris | FR | kube:kind-paris | up |" in spokes
        assert (
            "paris: on trial: cut off from 2026-11-22T02:20:00Z to 2026-11-22T03:20:00Z, as the "
            "Jobs the branch held for it did not appear there; it takes work again, and should "
            "the next Job planned there not appear within requeueUnscheduled, it is cut off for "
            "2h\n"
        ) in spokes
        # On trial: paris takes work again, and the ledger keeps its cut, as
        # does the gauge, so that the alert does not go quiet.
        assert unsynced("paris") == 1
        trial = gitutil.ledger_document(remote)["unsynced"]
        assert trial == {
            "paris": {"since": "2026-11-22T02:20:00Z", "until": "2026-11-22T03:20:00Z"}
        }
        assert any(e.get("spoke") == "paris" for e in gitutil.ledger(remote).values())
        # Its Jobs missing again past requeueUnscheduled, it is cut off for two hours.
        assert run("reconcile", "--once", *kube, *at(97)).exit_code == 0
        assert "cut off: paris (nothing syncs it)" in gitutil.message(remote).splitlines()[0]
        assert gitutil.ledger_document(remote)["unsynced"] == {
            "paris": {"since": "2026-11-22T03:37:00Z", "until": "2026-11-22T05:37:00Z"}
        }
        spokes = run("spokes", *kube, *at(98)).output
        assert "| paris | FR | kube:kind-paris | down |" in spokes
        assert "It is tried again at 2026-11-22T05:37:00Z (2h on: cut off before)" in spokes
    assert (
        "Down (no new work; what was dispatched there stays):\n- paris: Argo CD has not "
        "applied rendered/paris/ there: none of the Jobs the branch held for it was there at "
        "2026-11-22T02:20:00Z; does an Application sync that directory to it? It is tried "
        "again at 2026-11-22T03:20:00Z, or once one of them is there\n"
    ) in message
    for entry in there:
        moved = after[entry["id"]]
        assert moved["spoke"] != "paris"
        namespace = entry["id"].split("/")[0]
        assert f"rendered/paris/{namespace}.{entry['jobName']}.yaml" not in files
        if entry in sent:
            assert (
                f"- requeued {entry['id']}: its Job has not appeared on paris from "
                "2026-11-22T02:00:00Z to 2026-11-22T02:20:00Z, more than the policy's "
                "requeueUnscheduled 15m"
            ) in message
            assert moved["requeuedFrom"] == ["paris"]
        else:  # planned there for later, moved as off a spoke down past spokeDownGrace
            assert f"- moved {entry['id']}: paris " in message
            assert "requeuedFrom" not in moved


def test_a_spoke_whose_application_went_after_its_jobs_arrived_is_cut_off(run, tmp_path) -> None:
    # With --argocd-context, the hub's Argo CD says which spokes an
    # Application syncs. paris's went (deleted, or left out of the
    # ApplicationSet) after it had applied the first reconcile's Jobs: those
    # stay there, and nothing the branch holds for paris from then on comes.
    from tests.fakehttp import serve
    from tests.reconcile.test_argocd_observer import (
        APPS,
        CHECKED,
        PROJECTS,
        SETTINGS,
        application,
        applications,
        projects,
        settings,
    )
    from tests.reconcile.test_kube_observer import kubeconfig

    remote = fresh_fleet(run, tmp_path)
    names = ("paris", "frankfurt", "california")
    with serve() as paris, serve() as frankfurt, serve() as california, serve() as hub:
        apis = {"paris": paris, "frankfurt": frankfurt, "california": california}
        for name, api in apis.items():
            kube_spoke(api, cpu="64", gpu_node=True)
            api.routes["/apis/batch/v1/jobs"] = synced(remote, name)
        synced_by = set(names)
        hub.routes[APPS] = lambda _seen: applications(
            *(application(name, []) for name in names if name in synced_by)
        )
        hub.route(SETTINGS, settings(CHECKED))
        hub.route(PROJECTS, projects())
        config = kubeconfig(tmp_path, {name: api.url for name, api in {**apis, "hub": hub}.items()})
        kube = ["--repo", remote, "--observer", "kube", "--kubeconfig", config]
        kube += ["--argocd-context", "kind-hub"]
        assert run("reconcile", "--once", *kube, *at(0)).exit_code == 0
        kept = synced(remote, "paris")(None)
        assert kept.body["items"]
        paris.routes["/apis/batch/v1/jobs"] = lambda _seen: kept
        synced_by.discard("paris")
        # A job that may run on paris alone, due soon: placed there at once.
        urgent = appwrapper(
            "paris-only",
            annotations={"caspian.dev/spokes": "paris", "caspian.dev/complete-within": "3h"},
        )
        gitutil.user_commit(remote, {"jobs/paris-only.yaml": urgent.encode()}, "add paris-only")
        assert run("reconcile", "--once", *kube, *at(5)).exit_code == 0
        assert gitutil.ledger(remote)["batch/paris-only"]["spoke"] == "paris"
        # Its Job missing past requeueUnscheduled: the Jobs paris lists are
        # ones applied before its Application went.
        assert run("reconcile", "--once", *kube, *at(25)).exit_code == 0
        assert "cut off: paris (nothing syncs it)" in gitutil.message(remote).splitlines()[0]
        assert gitutil.ledger_document(remote)["unsynced"] == {
            "paris": {"since": "2026-11-22T02:25:00Z", "until": "2026-11-22T03:25:00Z"}
        }
        spokes = run("spokes", *kube, *at(26)).output
        assert "| paris | FR | kube:kind-paris | down |" in spokes
        assert "no Argo CD Caspian reads holds an Application syncing rendered/paris/" in spokes
        # Its Application back, the cut is forgotten at the next reconcile.
        synced_by.add("paris")
        paris.routes["/apis/batch/v1/jobs"] = synced(remote, "paris")
        assert run("reconcile", "--once", *kube, *at(30)).exit_code == 0
        assert "forget cut: paris" in gitutil.message(remote).splitlines()[0]
        assert "unsynced" not in gitutil.ledger_document(remote)


def test_a_dispatched_job_its_spoke_holds_suspended_is_requeued(run, tmp_path) -> None:
    # Argo CD applied paris's Jobs suspended, as planned, and none of the
    # resumes since (its Application's automated sync turned off).
    from tests.fakehttp import Reply
    from tests.reconcile.test_kube_observer import listing

    remote = fresh_fleet(run, tmp_path)

    def held_suspended(_seen):
        jobs = []
        for path in gitutil.files(remote, "rendered/paris/"):
            for doc in yaml.safe_load_all(gitutil.read(remote, path)):
                if doc and doc["kind"] == "Job":
                    jobs.append({**doc, "spec": {**doc["spec"], "suspend": True}, "status": {}})
        return Reply(body=listing("JobList", jobs))

    with kube_spokes(tmp_path, remote) as (apis, kube):
        apis["paris"].routes["/apis/batch/v1/jobs"] = held_suspended
        assert run("reconcile", "--once", *kube, *at(0)).exit_code == 0
        sent = [e for e in gitutil.ledger(remote).values() if e.get("spoke") == "paris"]
        sent = [e for e in sent if e["phase"] == "Dispatched"]
        assert sent
        job_id, key = sent[0]["id"], f"{sent[0]['id'].split('/')[0]}/{sent[0]['jobName']}"
        waits = run("explain", job_id, *kube, *at(10)).output
        assert "  not running yet: its Job has not been resumed on paris since " in waits
        assert f"(paris holds Job {key} suspended, as the branch held it before its start: " in (
            waits
        )
        spokes = run("spokes", *kube, *at(10)).output
        assert f"paris: Job {key} not resumed by Argo CD since 2026-11-22T02:00:00Z" in spokes
        assert run("reconcile", "--once", *kube, *at(20)).exit_code == 0
    message = gitutil.message(remote)
    assert (
        f"- requeued {job_id}: its Job has not been resumed on paris from 2026-11-22T02:00:00Z "
        "to 2026-11-22T02:20:00Z, more than the policy's requeueUnscheduled 15m"
    ) in message
    # The planned Jobs there are suspended, as they should be: the spoke stays up.
    assert "Down (no new work" not in message
    assert gitutil.ledger(remote)[job_id]["spoke"] != "paris"


def test_logs_are_one_json_object_per_line_for_a_log_collector(run, tmp_path) -> None:
    remote, kubeconfig = tmp_path / "fleet.git", tmp_path / "kubeconfig"
    run("init", "--bare", remote)
    kubeconfig.write_text("garbage: [\n")  # every spoke down, each a warning
    command = [sys.executable, "-c", "from reconciler.cli import main; main()"]
    args = ["spokes", "--repo", str(remote), "--observer", "kube", "--kubeconfig", str(kubeconfig)]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    by_env = subprocess.run(
        [*command, *args], env={**env, "CASPIAN_LOG_FORMAT": "json"}, capture_output=True, text=True
    )
    logged = [json.loads(line) for line in by_env.stderr.splitlines()]
    assert len(logged) == 3  # a spoke down, three times
    assert {(line["level"], line["logger"]) for line in logged} == {("warning", "caspian.kube")}
    assert all(
        "is down: the kubeconfig is not valid YAML" in line["message"]
        and datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)
        for line in logged
    )
    by_option = subprocess.run(
        [*command, "--log-format", "json", *args], env=env, capture_output=True, text=True
    )
    assert [json.loads(line)["message"] for line in by_option.stderr.splitlines()]
    text = subprocess.run([*command, *args], env=env, capture_output=True, text=True)
    assert text.stderr.startswith("WARNING caspian.kube: spoke ")


def test_a_json_log_line_holds_the_traceback_of_an_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "caspian.watch", logging.ERROR, __file__, 1, "reconcile %s", ("failed",), sys.exc_info()
        )
    line = json.loads(JsonLines().format(record))
    assert line["message"] == "reconcile failed" and line["level"] == "error"
    assert line["error"].startswith("Traceback") and "ValueError: boom" in line["error"]


def test_a_one_shot_reconcile_can_propose_for_review_on_a_forge(run, tmp_path, monkeypatch):
    import pygit2

    from tests.fakeforge import PullRequests, serve_forge

    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    api = PullRequests()
    pulls = api.pulls

    # As a mounted Secret or `$(cat file)` gives it: the forge sees the token alone.
    monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "forge-token\n")
    main_before = gitutil.head(remote)
    with serve_forge(api) as url:
        propose = ["--propose", "caspian/placement", "--pr-file", tmp_path / "pr.md"]
        propose += ["--forge", "github", "--forge-url", url, "--forge-repo", "fleet/jobs"]
        first = run("reconcile", "--once", "--repo", remote, *propose, *AT)
        assert first.exit_code == 0, first.output
        proposal = pygit2.Repository(str(remote)).references["refs/heads/caspian/placement"]
        assert first.output.splitlines()[-1] == (
            f"proposed {str(proposal.target)[:12]} on caspian/placement for review "
            "(pull request #1 opened)"
        )
        assert gitutil.head(remote) == main_before  # a first plan is all new places
        assert REGISTRY.get_sample_value("caspian_jobs_awaiting_review") == 10
        assert (tmp_path / "pr.md").read_text().startswith("# place: ")
        # Merged: nothing is left to propose, and the branch goes.
        pygit2.Repository(str(remote)).references["refs/heads/main"].set_target(proposal.target)
        pulls[0]["state"] = "closed"
        merged = run("reconcile", "--once", "--repo", remote, *propose, *AT)
        assert merged.exit_code == 0, merged.output
        assert merged.output.splitlines()[-1].startswith("nothing to place anew at ")
        assert REGISTRY.get_sample_value("caspian_jobs_awaiting_review") == 0
        assert "refs/heads/caspian/placement" not in pygit2.Repository(str(remote)).references
        assert not (tmp_path / "pr.md").exists()
    refused = run("reconcile", "--once", "--repo", remote, "--propose", "main", *AT)
    assert refused.exit_code == 2 and "other than the main one" in refused.output
    monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "\n")
    tokenless = run("reconcile", "--once", "--repo", remote, *propose, *AT)
    assert tokenless.exit_code == 2 and "--forge needs" in tokenless.output


def test_a_one_shot_reconcile_records_a_pull_request_closed_unmerged_as_declined(
    run, tmp_path, monkeypatch
):
    import pygit2

    from tests.fakeforge import PullRequests, serve_forge

    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    api = PullRequests()
    pulls = api.pulls

    monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "forge-token")
    with serve_forge(api) as url:
        propose = ["--propose", "caspian/placement", "--forge", "github", "--forge-url", url]
        propose += ["--forge-repo", "fleet/jobs"]
        assert run("reconcile", "--once", "--repo", remote, *propose, *AT).exit_code == 0
        tip = str(pygit2.Repository(str(remote)).references["refs/heads/caspian/placement"].target)
        pulls[0].update(state="closed", head={"ref": "caspian/placement", "sha": tip})
        # As a scheduled CI job runs it: each time from a fresh checkout, no mirror kept.
        shutil.rmtree(tmp_path / "cache")
        declined = run("reconcile", "--once", "--repo", remote, *propose, *AT)
        # Held by a reviewer's choice, not for want of room: no partial exit.
        assert declined.exit_code == 0, declined.output
        said = declined.output.splitlines()
        assert said[-2] == (
            f"pull request #1 was closed unmerged: committed {gitutil.head(remote)[:12]}, which "
            "declines its new places (batch/backfill-eu, batch/climate-sim, batch/etl-daily, "
            "batch/eval-nightly, batch/finetune-llm, batch/hyperparam-sweep, "
            "batch/render-frames, batch/report-urgent, batch/train-resnet, and 1 more); each "
            "is proposed again once its AppWrapper changes"
        )
        assert said[-1].startswith("nothing to place anew at ")
        assert REGISTRY.get_sample_value("caspian_jobs_declined") == 10
        again = run("reconcile", "--once", "--repo", remote, *propose, *AT)
        assert again.exit_code == 0 and len(pulls) == 1  # not opened again


def test_pull_request_mode_is_also_set_from_the_environment(run, tmp_path, monkeypatch):
    """As the hub's ConfigMap (deploy/caspian.yaml) sets it."""
    remote = tmp_path / "fleet.git"
    assert run("init", "--bare", remote).exit_code == 0
    monkeypatch.setenv("CASPIAN_PROPOSE", "caspian/placement")
    proposed = run("reconcile", "--once", "--repo", remote, *AT)
    assert proposed.exit_code == 0, proposed.output
    assert " on caspian/placement for review" in proposed.output.splitlines()[-1]
    monkeypatch.setenv("CASPIAN_FORGE", "gitlab")
    assert "--forge needs" in run("reconcile", "--once", "--repo", remote, *AT).output
