"""`caspian plan --work-tree DIR --comment N`: what Caspian would commit, kept
as one comment on the pull request, against a forge's API on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from reconciler.cli import EXIT_ERROR
from reconciler.overlay import Edits
from reconciler.plancomment import MARKER, MOST_CHARS, plan_comment
from tests.cli.test_cli import AT
from tests.cli.test_work_tree import _cloned
from tests.fakeforge import PullComments, serve_forge
from tests.fleet.helpers import appwrapper


@pytest.fixture(autouse=True)
def _token(monkeypatch) -> None:
    monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "forge-token")


def _forge(kind: str, url: str) -> tuple[str, ...]:
    root = f"{url}/api/v4" if kind == "gitlab" else url
    return ("--forge", kind, "--forge-url", root, "--forge-repo", "platform/fleet")


@pytest.mark.parametrize("kind", ["github", "gitea", "gitlab"])
def test_one_comment_holds_the_plan_and_each_run_rewrites_it(run, tmp_path, kind) -> None:
    remote, work = _cloned(run, tmp_path)
    (work / "jobs" / "fresh.yaml").write_text(appwrapper("fresh"))
    forge = PullComments(7)
    forge.comments.append({"id": 1, "pull": 7, "body": "LGTM"})  # a reviewer's, left alone
    scheme = "token" if kind == "gitea" else "Bearer"
    with serve_forge(forge, scheme=scheme) as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge(kind, url))
        result = run(*at, "--comment", "7")
        assert result.exit_code == 0, result.output
        assert "Caspian's plan comment on pull request 7: posted" in result.stderr
        assert result.stdout.startswith("planned with the edits of the work tree")
        [said] = [body for body in forge.on(7) if body.startswith(MARKER)]
        assert "Planned with: `jobs/fresh.yaml` added." in said
        assert "\n**place: 1 job (" in said
        assert "| batch/fresh " in said  # the placement table, folded
        assert said.count("<details>") == 1 and said.rstrip().endswith("</details>")
        # The same plan again: nothing to change. With --json, stdout is the object alone.
        result = run(*at, "--comment", "7", "--json")
        assert "pull request 7: unchanged" in result.stderr
        assert json.loads(result.stdout)["work_tree"]["edited"] == {"jobs/fresh.yaml": "added"}
        # A push to the pull request: the same comment, rewritten.
        (work / "jobs" / "fresh.yaml").unlink()
        result = run(*at, "--comment", "7")
        assert "pull request 7: updated" in result.stderr
        assert (forge.posts, forge.updates) == (1, 1)
        assert forge.on(7)[0] == "LGTM" and len(forge.on(7)) == 2
        assert "Planned with: no file Caspian reads." in forge.on(7)[1]
        assert "A reconcile would commit nothing" in forge.on(7)[1]
        assert "forge-token" not in result.output


@pytest.mark.parametrize(("kind", "lists"), [("github", 2), ("gitea", 1)])
def test_the_comment_is_found_past_the_first_page(run, tmp_path, kind, lists) -> None:
    remote, work = _cloned(run, tmp_path)
    forge = PullComments(7)
    forge.comments += [{"id": n, "pull": 7, "body": f"review {n}"} for n in range(60)]
    with serve_forge(forge, scheme="token" if kind == "gitea" else "Bearer") as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge(kind, url))
        # None of Caspian's among them: every page read once, then posted.
        assert "pull request 7: posted" in run(*at, "--comment", "7").stderr
        assert forge.lists == lists
        forge.comments[-1]["body"] = f"{MARKER}\nan older plan"
        assert "pull request 7: updated" in run(*at, "--comment", "7").stderr
    assert forge.posts == 1 and forge.comments[-1]["body"] != f"{MARKER}\nan older plan"


def test_a_pull_request_the_forge_does_not_find_is_named(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    with serve_forge(PullComments(7)) as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge("github", url))
        result = run(*at, "--comment", "8")
    assert result.exit_code == EXIT_ERROR
    assert result.stdout.startswith("the work tree ")  # the plan, printed first
    assert "error: cannot comment on pull request 8: GET http://127.0.0.1:" in result.stderr
    assert "HTTP 404 (Not Found): no pull request 8 in platform/fleet at " in result.stderr


def test_a_wrong_token_a_token_that_may_not_comment_or_a_garbled_answer_says_what_to_fix(
    run, tmp_path, monkeypatch
) -> None:
    remote, work = _cloned(run, tmp_path)
    with serve_forge(PullComments(7)) as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge("github", url))
        monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "not-the-token")
        result = run(*at, "--comment", "7")
        assert result.exit_code == EXIT_ERROR
        assert "HTTP 401 (Bad credentials): check the token in CASPIAN_FORGE_TOKEN" in (
            result.stderr
        )
        assert "not-the-token" not in result.output

    monkeypatch.setenv("CASPIAN_FORGE_TOKEN", "forge-token")

    # A token that may read the pull request, not comment on it.
    def read_only(seen, method, body):
        if method == "GET":
            return 200, []
        return 403, {"message": "Resource not accessible by integration"}

    with serve_forge(read_only) as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge("github", url))
        result = run(*at, "--comment", "7")
        assert result.exit_code == EXIT_ERROR
        assert (
            "HTTP 403 (Resource not accessible by integration): the token in "
            "CASPIAN_FORGE_TOKEN may not comment on pull request 7 of platform/fleet"
        ) in result.stderr
    with serve_forge(lambda seen, method, body: (200, {"comments": []})) as url:
        at = ("plan", "--repo", remote, *AT, "--work-tree", work, *_forge("github", url))
        result = run(*at, "--comment", "7")
        assert result.exit_code == EXIT_ERROR
        assert "the forge answered an object, not a list of comments" in result.stderr


def test_comment_needs_the_forge_and_a_work_tree(run, tmp_path) -> None:
    remote, work = _cloned(run, tmp_path)
    result = run("plan", "--repo", remote, *AT, "--work-tree", work, "--comment", "7")
    assert result.exit_code == 2
    assert "--comment needs --forge, --forge-url, --forge-repo and CASPIAN_FORGE_TOKEN" in (
        result.output
    )
    forge = _forge("github", "http://127.0.0.1:9")
    result = run("plan", "--repo", remote, *AT, *forge, "--comment", "7")
    assert result.exit_code == 2
    assert "--comment needs --work-tree" in result.output


def test_a_plan_too_long_for_a_comment_is_cut_at_a_lines_end() -> None:
    rows = [
        f"| batch/job-{n:05} | paris | Planned | 2026-11-22 02:00 | 1 | 2 |" for n in range(3000)
    ]
    message = "\n".join(["place: 3000 jobs (paris 3000)", "", *rows])
    edits = Edits(where=".", base=None, edited={"jobs/a.yaml": "added"}, crossed=("jobs/b.yaml",))
    now = datetime(2026, 11, 22, 2, tzinfo=UTC)
    said = plan_comment(edits=edits, message=message, branch="main", input_commit="0" * 40, now=now)
    assert len(said) <= MOST_CHARS < len(message)
    kept = [line for line in said.splitlines() if line.startswith("| batch/")]
    assert kept == rows[: len(kept)] and len(kept) > 100
    assert f"... {len(rows) - len(kept)} more lines: `caspian plan --work-tree .` prints" in said
    assert said.endswith("</details>\n")
    assert "This checkout shares no commit with the remote" in said
    assert "Changed on main as well, planned as this pull request has them: `jobs/b.yaml`." in said
