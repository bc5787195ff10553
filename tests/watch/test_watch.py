"""`caspian watch` against real git over the network: users push while it runs."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pygit2
import pytest
import yaml

from reconciler import reconciling
from reconciler.gitrepo import FleetRepo
from reconciler.observing import DeclaredCapacity
from reconciler.proposing import Proposing
from reconciler.serving import serve, stop
from reconciler.watching import Watcher, WatchSettings
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.fakeforge import PullRequests
from tests.fleet.helpers import appwrapper
from tests.gitdaemon import GIT, free_port, git_daemon

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")
ROOT = Path(__file__).resolve().parents[2]


def run_git(*args: str, cwd: Path) -> str:
    env = {
        "GIT_AUTHOR_NAME": "u",
        "GIT_AUTHOR_EMAIL": "u@example.invalid",
        "GIT_COMMITTER_NAME": "u",
        "GIT_COMMITTER_EMAIL": "u@example.invalid",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [GIT, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def user_push(clone: Path, files: dict[str, str], message: str) -> str:
    """Commit in a user's clone and push, pulling first if the remote moved."""
    for path, text in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    run_git("add", "-A", cwd=clone)
    run_git("commit", "-q", "-m", message, cwd=clone)
    for _ in range(20):
        try:
            run_git("push", "-q", "origin", "HEAD:main", cwd=clone)
            return run_git("rev-parse", "HEAD", cwd=clone).strip()
        except subprocess.CalledProcessError:
            run_git("pull", "-q", "--rebase", "origin", "main", cwd=clone)
    raise AssertionError("could not push")


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except KeyError:  # nothing placed yet
            pass
        time.sleep(0.1)
    return False


def watcher_for(url: str, tmp_path: Path, **settings) -> Watcher:
    clock_start = time.monotonic()
    return Watcher(
        FleetRepo(url, cache_dir=tmp_path / "mirror.git"),
        author=BOT,
        observer=DeclaredCapacity(),
        settings=WatchSettings(**{"interval_s": 0.3, "debounce_s": 0.1, **settings}),
        clock=lambda: NOW + timedelta(seconds=time.monotonic() - clock_start),
    )


def test_pushes_while_watching_are_all_kept_and_each_job_placed_once(remote, tmp_path) -> None:
    with git_daemon(remote.parent) as base:
        url = base + remote.name
        clone = tmp_path / "user"
        run_git("clone", "-q", url, str(clone), cwd=tmp_path)
        watcher = watcher_for(url, tmp_path)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        other = tmp_path / "other"
        run_git("clone", "-q", url, str(other), cwd=tmp_path)
        pushed, noise = [], []

        def chatter() -> None:  # unrelated commits racing Caspian's pushes
            for i in range(6):
                noise.append(user_push(other, {f"docs/note-{i}.md": f"{i}\n"}, f"note {i}"))
                time.sleep(0.15)

        racer = threading.Thread(target=chatter)
        racer.start()
        for i in range(4):
            pushed.append(
                user_push(
                    clone, {f"jobs/extra-{i}.yaml": appwrapper(f"extra-{i}")}, f"add extra-{i}"
                )
            )
            time.sleep(0.2)
        racer.join()
        assert wait_for(lambda: all(f"batch/extra-{i}" in gitutil.ledger(remote) for i in range(4)))
        assert wait_for(lambda: watcher.status.result.startswith(("unchanged", "skipped")))
        watcher.stop()
        thread.join(timeout=30)
    history = gitutil.history(remote)
    assert all(commit in history for commit in pushed + noise)
    ledger = gitutil.ledger(remote)
    assert len(ledger) == 14
    rendered = [p for p in gitutil.files(remote, "rendered/") if "/batch." in p or "/media." in p]
    names = [p.rsplit("/", 1)[1] for p in rendered]
    assert len(names) == len(set(names)) == 14  # each job in exactly one spoke
    _no_job_dispatched_twice(remote)


def _no_job_dispatched_twice(remote: Path) -> None:
    """Along history, once a job is Dispatched its spoke and start never change."""
    repo = pygit2.Repository(str(remote))
    fixed: dict[str, tuple[str, str]] = {}
    for commit in reversed(
        list(
            repo.walk(repo.references["refs/heads/main"].target, pygit2.enums.SortMode.TOPOLOGICAL)
        )
    ):
        try:
            raw = repo[commit.tree["status/placements.yaml"].id].data
        except KeyError:
            continue
        for entry in yaml.safe_load(raw)["entries"]:
            if entry.get("phase") == "Dispatched":
                place = (entry["spoke"], entry["plannedStart"])
                assert fixed.setdefault(entry["id"], place) == place, entry["id"]


def test_a_webhook_wakes_it_at_once(remote, tmp_path) -> None:
    watcher = watcher_for(str(remote), tmp_path, interval_s=60.0)
    server = serve(watcher, host="127.0.0.1", port=0, secret="hook-secret")
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: watcher.status.result.startswith("committed"))
        gitutil.user_commit(remote, {"jobs/late.yaml": appwrapper("late").encode()})
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        url = f"http://127.0.0.1:{server.server_port}/webhook"
        assert _post(url, body, "sha256=bad") == 401
        assert (
            _post(
                url,
                json.dumps({"ref": "refs/heads/other"}).encode(),
                _sign(json.dumps({"ref": "refs/heads/other"}).encode()),
            )
            == 202
        )
        started = time.monotonic()
        assert _post(url, body, _sign(body)) == 202
        assert wait_for(lambda: "batch/late" in gitutil.ledger(remote), timeout=10)
        assert time.monotonic() - started < 10
        health = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/healthz")
        assert json.loads(health.read())["result"] != "error"
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics").read()
        assert b'caspian_reconcile_total{result="committed"}' in metrics
        assert b"caspian_planned_emissions_grams" in metrics
        # Only the series described: no `_created` twin of each counter and histogram.
        assert b"_created" not in metrics
    finally:
        watcher.stop()
        thread.join(timeout=30)
        stop(server)


def _sign(body: bytes) -> str:
    return "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, signature: str) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"X-Hub-Signature-256": signature}
    )
    try:
        return urllib.request.urlopen(request).status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_gitlab_push_hook_with_its_token_wakes_it(tmp_path) -> None:
    watcher = watcher_for("/nonexistent.git", tmp_path)  # never run: only woken
    server = serve(watcher, host="127.0.0.1", port=0, secret="hook-secret")
    url = f"http://127.0.0.1:{server.server_port}/webhook"

    def hook(ref: str, token: str) -> int:
        body = json.dumps({"object_kind": "push", "ref": ref}).encode()
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": token}
        try:
            return urllib.request.urlopen(
                urllib.request.Request(url, data=body, method="POST", headers=headers)
            ).status
        except urllib.error.HTTPError as error:
            return error.code

    try:
        assert hook("refs/heads/main", "not-the-secret") == 401
        assert hook("refs/heads/main", "") == 401
        assert not watcher.wake.is_set()
        assert hook("refs/heads/other", "hook-secret") == 202  # another branch: ignored
        assert not watcher.wake.is_set()
        assert hook("refs/heads/main", "hook-secret") == 202
        assert watcher.wake.is_set()
    finally:
        stop(server)


def test_an_unchanged_tip_in_the_same_slot_is_skipped(remote, tmp_path) -> None:
    from prometheus_client import REGISTRY

    def timed() -> float | None:
        return REGISTRY.get_sample_value("caspian_reconcile_duration_seconds_count")

    watcher = watcher_for(str(remote), tmp_path)
    assert watcher.reconcile().result.startswith("committed")
    count = timed()
    assert watcher.reconcile().result == "skipped"
    # Timed, a fetch every minute would make the dashboard's p90 its own.
    assert timed() == count
    gitutil.user_commit(remote, {"docs/readme.md": b"hello\n"})
    assert watcher.reconcile().result.startswith("unchanged")
    assert timed() == count + 1


def test_each_file_skipped_is_logged_where_the_log_is_all_there_is(
    remote, tmp_path, caplog
) -> None:
    gitutil.user_commit(remote, {"jobs/bad.yaml": b"kind: ["})
    watcher = watcher_for(str(remote), tmp_path)
    with caplog.at_level("WARNING", logger="caspian"):
        assert watcher.reconcile().result == "committed_partial"
    assert [r.getMessage() for r in caplog.records if r.name == "caspian.watch"] == [
        "skipping jobs/bad.yaml: not valid YAML: expected the node content, but found "
        "'<stream end>' (line 1, column 8)"
    ]
    # Said once, not at every reconcile while the file stays broken; and its mend.
    caplog.clear()
    gitutil.user_commit(remote, {"docs/readme.md": b"hello\n"})
    with caplog.at_level("INFO", logger="caspian.watch"):
        assert watcher.reconcile().result == "unchanged_partial"
        assert not [r for r in caplog.records if "skipping" in r.getMessage()]
        gitutil.user_commit(remote, {"jobs/bad.yaml": appwrapper("bad").encode()})
        assert watcher.reconcile().result == "committed"
    assert [r.getMessage() for r in caplog.records] == ["no longer skipping jobs/bad.yaml"]
    # A one-shot reconcile prints them with its outcome: not twice.
    caplog.clear()
    with caplog.at_level("WARNING", logger="caspian"):
        reconciling.reconcile_once(
            FleetRepo(str(remote), cache_dir=tmp_path / "once.git"), now=NOW, author=BOT
        )
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]


def watch_process(
    remote: Path,
    tmp_path: Path,
    *,
    port: int,
    first: tuple[str, ...] = (),
    then: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """`caspian [first] watch` on `remote`, as a process of its own, serving on `port`."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "caspian"),
            *first,
            "watch",
            "--repo",
            str(remote),
            "--cache-dir",
            str(tmp_path / "m.git"),
            "--listen",
            f"127.0.0.1:{port}",
            *then,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_sigterm_finishes_and_exits_cleanly(remote, tmp_path) -> None:
    port = free_port()
    # The secret as a mounted Secret gives it, with a line break the forge never signs with.
    secret = {"CASPIAN_WEBHOOK_SECRET": "hook-secret\n"}
    process = watch_process(
        remote,
        tmp_path,
        port=port,
        first=("--log-format", "json"),
        then=("--interval", "1"),
        env=secret,
    )
    try:

        def healthy() -> bool:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                return json.loads(body)["result"].startswith("committed")
            except (OSError, ValueError):
                return False

        assert wait_for(healthy, timeout=60)
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        assert _post(f"http://127.0.0.1:{port}/webhook", body, _sign(body)) == 202
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # Every line of its log is one JSON object, the first where it serves.
        logged = [json.loads(line) for line in process.stderr.read().splitlines()]
        assert logged[0]["message"] == (
            f"watching {remote} (main); http://127.0.0.1:{port}/metrics"
        )
        assert logged[-1]["message"] == "stopped" and len(logged) > 2
        # What it did is logged without -v: a service's log is all there is.
        pushed = [e for e in logged if e["message"].startswith("pushed ")]
        subject = gitutil.message(remote).splitlines()[0]
        assert pushed and pushed[-1]["message"].endswith(subject)  # a slot may pass: 2 pushes
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # waits, and closes its pipes


def test_watch_reads_and_writes_a_fleet_in_a_directory_of_a_larger_repo(tmp_path) -> None:
    from reconciler.gitrepo import create_bare_repo
    from reconciler.templates import template_files

    remote = tmp_path / "mono.git"
    fleet = {f"teams/batch/{path}": text for path, text in template_files().items()}
    create_bare_repo(
        remote, files={**fleet, "app/main.py": b"print(1)\n"}, message="Mono", author=BOT
    )
    process = watch_process(
        remote, tmp_path, port=free_port(), env={"CASPIAN_FLEET_PATH": "teams/batch"}
    )
    try:
        assert wait_for(lambda: "teams/batch/status/placements.yaml" in gitutil.files(remote), 60)
        written = gitutil.files(remote)
        assert any(path.startswith("teams/batch/rendered/paris/") for path in written)
        assert not any(path.startswith(("rendered/", "status/")) for path in written)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # waits, and closes its pipes


@contextmanager
def proposing_watcher(remote: Path, tmp_path: Path) -> Iterator[tuple[Watcher, PullRequests]]:
    """A watcher in pull-request mode, and the GitHub stand-in it opens them on."""
    from reconciler.forge import Forge
    from tests.fakeforge import serve_forge

    api = PullRequests()
    with serve_forge(api) as forge_url:
        forge = Forge(kind="github", url=forge_url, repo="fleet/jobs", token="forge-token")
        proposing = Proposing(branch="caspian/placement", pr_file=tmp_path / "pr.md", forge=forge)
        yield watcher_for(str(remote), tmp_path, proposing=proposing), api


def test_proposals_open_one_pull_request_and_a_merged_plan_commits_nothing(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        main_before = gitutil.head(remote)
        assert watcher.reconcile().result.startswith("committed")
        assert gitutil.head(remote) == main_before  # main untouched
        assert (watcher.status.pull, watcher.status.awaiting_review) == ("#1 opened", 10)
        watcher._seen = None
        watcher.reconcile()  # the same proposal again: no push, no new pull request
        assert api.posts == 1 and len(api.pulls) == 1
        assert (tmp_path / "pr.md").read_text().startswith("# place: ")
        # the team merges the pull request (fast-forward)
        repo = pygit2.Repository(str(remote))
        proposal = repo.references["refs/heads/caspian/placement"].target
        repo.references["refs/heads/main"].set_target(proposal)
        api.pulls[0]["state"] = "closed"
        watcher._seen = None
        assert watcher.reconcile().result.startswith("unchanged")
        assert gitutil.head(remote) == str(proposal)
        assert api.posts == 1 and api.comments == {}  # merged: nothing to say
        # Its branch goes, as a forge's "delete branch" button would do it.
        assert "refs/heads/caspian/placement" not in repo.references
        assert not (tmp_path / "pr.md").exists()
        # At the next planned start the approved job starts: on main, with no review.
        due = min(
            (
                e
                for e in yaml.safe_load(gitutil.read(remote, "status/placements.yaml"))["entries"]
                if e["phase"] == "Planned"
            ),
            key=lambda e: e["plannedStart"],
        )
        watcher.clock = lambda: datetime.fromisoformat(due["plannedStart"].replace("Z", "+00:00"))
        assert watcher.reconcile().result.startswith("committed")
        assert gitutil.message(remote).startswith("dispatch: 1 job")
        assert api.posts == 1 and "refs/heads/caspian/placement" not in repo.references
        assert watcher.reconcile().result == "skipped"  # its own commit is the tip it saw


def test_a_proposal_that_no_longer_applies_is_closed_and_its_branch_deleted(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        assert watcher.reconcile().result.startswith("committed")
        repo = pygit2.Repository(str(remote))
        assert "refs/heads/caspian/placement" in repo.references
        # Someone reconciles main directly: it holds a placement now, and the
        # open pull request, built on the main of before, is out of date.
        reconciling.reconcile_once(
            FleetRepo(str(remote), cache_dir=tmp_path / "other.git"), now=NOW, author=BOT
        )
        watcher._seen = None
        assert watcher.reconcile().result.startswith("unchanged")
        assert api.pulls[0]["state"] == "closed" and api.patches == 1
        (said,) = api.comments[1]
        assert said.startswith(
            f"Caspian closes this: a reconcile of main at {gitutil.head(remote)[:12]}"
        )
        assert "refs/heads/caspian/placement" not in repo.references
        assert not (tmp_path / "pr.md").exists()
        asked = api.gets
        watcher._seen = None
        watcher.reconcile()  # idle: the forge is not asked again
        assert api.gets == asked


def _close_unmerged(repo: pygit2.Repository, api: PullRequests) -> str:
    """A reviewer closes the first pull request unmerged; the forge names the
    commit its branch was at, which this returns."""
    tip = str(repo.references["refs/heads/caspian/placement"].target)
    api.pulls[0].update({"state": "closed", "head": {"ref": "caspian/placement", "sha": tip}})
    return tip


def test_a_pull_request_a_reviewer_closes_is_declined_not_opened_again(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        watcher.reconcile()
        repo = pygit2.Repository(str(remote))
        _close_unmerged(repo, api)
        main_before = gitutil.head(remote)
        watcher._seen = None
        assert watcher.reconcile().result.startswith("committed")
        # Recorded on main, on its tip of before: every job it placed is held.
        print(
            subprocess.run(
                ["git", "-C", str(remote), "log", "--format=%h %s", "-4"],
                capture_output=True,
                text=True,
            ).stdout
        )
        assert repo[gitutil.head(remote)].parent_ids == [pygit2.Oid(hex=main_before)]
        assert gitutil.message(remote).startswith(
            "decline: 10 jobs (pull request #1 closed unmerged)\n"
        )
        records = gitutil.ledger(remote)
        assert len(records) == 10
        assert all(
            r["phase"] == "Pending" and r["declined"]["pull"] == "pull request #1"
            for r in records.values()
        )
        assert not any(path.startswith("rendered/batch") for path in gitutil.files(remote))
        # Not proposed again: the branch is gone, no pull request opened.
        assert "refs/heads/caspian/placement" not in repo.references
        assert api.posts == 1 and watcher.status.awaiting_review == 0
        assert watcher.status.pull == "#1 declined"
        watcher._seen = None
        watcher.clock = lambda: NOW + timedelta(minutes=15)  # and not at the next slot
        watcher.reconcile()
        assert api.posts == 1 and "refs/heads/caspian/placement" not in repo.references
        # An edit to one AppWrapper lifts its hold: it alone is proposed.
        doc = yaml.safe_load(gitutil.read(remote, "jobs/etl-daily.yaml"))
        doc["metadata"]["annotations"]["caspian.dev/complete-within"] = "20h"
        gitutil.user_commit(remote, {"jobs/etl-daily.yaml": yaml.safe_dump(doc).encode()})
        watcher._seen = None
        watcher.reconcile()
        assert api.posts == 2 and api.pulls[1]["state"] == "open"
        assert watcher.status.pull == "#2 opened" and watcher.status.awaiting_review == 1


def test_a_job_pushed_while_its_proposal_was_declined_is_proposed_alone(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        watcher.reconcile()
        repo = pygit2.Repository(str(remote))
        tip = _close_unmerged(repo, api)
        gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
        watcher._seen = None
        watcher.reconcile()
        assert gitutil.message(remote).startswith("decline: 10 jobs")
        assert "batch/extra" not in gitutil.ledger(remote)  # not in what was declined
        # The branch now holds the next proposal: the new job alone, for review.
        proposal = repo.references["refs/heads/caspian/placement"].target
        assert str(proposal) != tip and repo[proposal].parents[0].id == repo.head.target
        assert api.posts == 2 and watcher.status.pull == "#2 opened"
        assert watcher.status.awaiting_review == 1


def _commit_on_branch(remote, branch: str, changes: dict[str, bytes]) -> str:
    """A reviewer pushes a commit of their own to the proposal branch."""
    repo = pygit2.Repository(str(remote))
    parent = repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(parent.tree)
    for path, data in changes.items():
        index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    who = pygit2.Signature("Reviewer", "reviewer@example.invalid")
    tree = index.write_tree(repo)
    return str(repo.create_commit(f"refs/heads/{branch}", who, who, "tweak", tree, [parent.id]))


def test_a_proposal_branch_someone_else_committed_to_is_left_as_it_is(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        watcher.reconcile()
        theirs = _commit_on_branch(
            remote, "caspian/placement", {"jobs/notes.md": b"run these after the freeze\n"}
        )
        # A new job changes the proposal; the reviewer's commit is not pushed over.
        gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
        watcher._seen = None
        watcher.reconcile()
        repo = pygit2.Repository(str(remote))
        assert str(repo.references["refs/heads/caspian/placement"].target) == theirs
        assert watcher.status.pull == "left as it is: it holds commits by others"
        assert api.posts == 1 and api.patches == 0  # its pull request is not rewritten
        # Merged (a merge commit), their commit with it: the job added since
        # is proposed as before, on top.
        main = repo.references["refs/heads/main"].peel(pygit2.Commit)
        index = pygit2.Index()
        index.read_tree(repo[theirs].tree)
        index.add(pygit2.IndexEntry("jobs/extra.yaml", main.tree["jobs/extra.yaml"].id, 0o100644))
        who = pygit2.Signature("Reviewer", "reviewer@example.invalid")
        repo.create_commit(
            "refs/heads/main", who, who, "Merge", index.write_tree(repo), [main.id, repo[theirs].id]
        )
        api.pulls[0].update(state="closed", merged_at="2026-11-22T02:30:00Z")
        watcher._seen = None
        watcher.reconcile()
        assert watcher.status.pull == "#2 opened" and watcher.status.awaiting_review == 1
        proposal = repo.references["refs/heads/caspian/placement"].peel(pygit2.Commit)
        assert proposal.author.email == BOT.email and "jobs/notes.md" in proposal.tree


def test_a_closed_proposal_someone_else_committed_to_is_declined_and_proposed_over(
    remote, tmp_path
):
    """Their commit stays with the closed pull request, which is no longer under review."""
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        watcher.reconcile()
        theirs = _commit_on_branch(remote, "caspian/placement", {"jobs/notes.md": b"no\n"})
        api.pulls[0].update(state="closed", head={"ref": "caspian/placement", "sha": theirs})
        gitutil.user_commit(remote, {"jobs/extra.yaml": appwrapper("extra").encode()})
        watcher._seen = None
        watcher.reconcile()
        assert gitutil.message(remote).startswith("decline: 10 jobs")
        assert watcher.status.pull == "#2 opened"


def test_a_forge_that_is_down_holds_up_no_dispatch_on_main(remote, tmp_path):
    with proposing_watcher(remote, tmp_path) as (watcher, api):
        watcher.reconcile()
        repo = pygit2.Repository(str(remote))
        proposal = repo.references["refs/heads/caspian/placement"].target
        repo.references["refs/heads/main"].set_target(proposal)  # merged
        due = min(
            (e for e in gitutil.ledger(remote).values() if e["phase"] == "Planned"),
            key=lambda e: e["plannedStart"],
        )
        api.down = True
        watcher.clock = lambda: datetime.fromisoformat(due["plannedStart"].replace("Z", "+00:00"))
        done = watcher.reconcile()
        # The dispatch is on main; then the pull request could not be closed.
        assert gitutil.message(remote).startswith("dispatch: 1 job")
        assert gitutil.ledger(remote)[due["id"]]["phase"] == "Dispatched"
        assert done.result == "error" and "HTTP 502" in done.error


def test_finished_jobs_leave_rendered_after_the_retention(remote, tmp_path) -> None:
    from reconciler.templates import template_files
    from tests.reconcile.test_lifecycle import entries, step

    decision, files = step(template_files(), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    _, files = step(
        files,
        now=NOW + timedelta(minutes=20),
        states={done.spoke: {"jobs": {done.job_key: "Succeeded"}}},
    )
    path = f"rendered/{done.spoke}/batch.{done.job_name}.yaml"
    assert path in files
    later, _ = step(files, now=done.planned_end + timedelta(hours=25))
    assert path not in render_paths(later)
    assert entries(later)[done.id].phase == "Succeeded"  # the ledger keeps the record


def render_paths(decision) -> set[str]:
    from reconciler.rendering import render

    return set(render(decision, previous={}))


def test_the_loop_benchmark_measures_latency_and_a_free_noop() -> None:
    from reconciler import benchloop

    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    latency = benchloop.latency(jobs=12, rounds=2, now=now)
    assert len(latency["push_to_placement_s"]) == 2 and latency["max_s"] < 60
    assert latency["p90_s"] == latency["max_s"]  # of two pushes, the slower
    assert latency["now"] == "2026-12-01T09:00:00+00:00"
    noop = benchloop.noop(jobs=15, repeats=2, now=now)
    assert noop["first_result"].startswith("committed") and noop["noop_committed"] is False
    assert noop["noop_p50_s"] < 1.0
    assert noop["unrelated_push_result"] == "unchanged"
    assert noop["unrelated_push_committed"] is False


def test_the_loop_benchmarks_p90_is_a_value_nine_in_ten_are_no_greater_than() -> None:
    from reconciler.benchloop import nearest_rank

    assert nearest_rank([0.43, 0.36], 0.9) == 0.43
    assert nearest_rank([float(x) for x in range(10, 0, -1)], 0.9) == 9.0
    assert nearest_rank([float(x) for x in range(1, 16)], 0.9) == 14.0
    assert nearest_rank([2.5], 0.9) == 2.5


def test_a_client_sending_a_byte_at_a_time_is_cut_off_at_the_request_timeout(tmp_path) -> None:
    # Each byte within the timeout: one client so held a thread for as long as it
    # went on, and many would hold as many.
    import select
    import socket

    watcher = watcher_for("/nonexistent.git", tmp_path)  # never run: only triggered
    server = serve(watcher, host="127.0.0.1", port=0, secret=None, request_timeout_s=0.5)
    try:
        slow = b"POST /webhook HTTP/1.0\r\nX-Slow: " + b"a" * 100  # 5 s at 0.05 s a byte
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            started, cut = time.monotonic(), None
            for byte in slow:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    cut = time.monotonic() - started
                    break
                if select.select([sock], [], [], 0.05)[0] and sock.recv(100) == b"":
                    cut = time.monotonic() - started
                    break
        assert cut is not None and cut < 2.0
        healthz = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/readyz", timeout=2)
        assert healthz.read() == b"ok\n"  # and it serves on
    finally:
        stop(server)


@pytest.mark.parametrize(
    ("request_head", "body", "status"),
    [
        # A signature that is not ASCII: refused, as any other wrong one.
        ("Content-Length: 2\r\nX-Hub-Signature-256: sha256=\xe9", b"{}", b"401"),
        ("Content-Length: 2\r\nX-Gitea-Signature: \xe9\xff", b"{}", b"401"),
        ("Content-Length: 2\r\nX-Gitlab-Token: \xe9", b"{}", b"401"),
        ("Content-Length: abc", b"", b"400"),
        ("Content-Length: -5", b"", b"400"),
        ("Content-Length: 4", b"\x80abc", b"400"),  # not UTF-8 text
        ("Content-Length: 200000", b"[" * 100_000 + b"]" * 100_000, b"400"),  # nested past reading
        ("Content-Length: 99999999", b"", b"413"),
        ("Content-Length: 2", b"[]", b"202"),  # JSON, but no ref: a wake-up all the same
    ],
)
def test_a_malformed_webhook_gets_an_answer_not_a_dead_thread(
    tmp_path, request_head, body, status
) -> None:
    import socket

    watcher = watcher_for("/nonexistent.git", tmp_path)  # never run: only triggered
    signed = "Signature" in request_head or "Token" in request_head
    server = serve(watcher, host="127.0.0.1", port=0, secret="hook-secret" if signed else None)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            head = f"POST /webhook HTTP/1.1\r\nHost: x\r\n{request_head}\r\n\r\n"
            sock.sendall(head.encode("latin-1") + body)
            reply = sock.recv(200)
        assert reply.split(b" ")[1] == status, reply
    finally:
        stop(server)


def test_stopping_the_server_frees_its_port(tmp_path) -> None:
    import socket

    server = serve(watcher_for("/nonexistent.git", tmp_path), host="127.0.0.1", port=0, secret=None)
    port = server.server_port
    stop(server)
    # Its socket is closed, not left to the collector: the port takes another at once.
    assert server.socket.fileno() == -1
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    "sent",
    [b"POST /webh", b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 90\r\n\r\n{"],
)
def test_a_client_that_stops_halfway_is_let_go(tmp_path, sent) -> None:
    import socket

    watcher = watcher_for("/nonexistent.git", tmp_path)
    server = serve(watcher, host="127.0.0.1", port=0, secret=None, request_timeout_s=0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(sent)
            began = time.monotonic()
            # The server closes its end: the read ends, with nothing (no reply to
            # half a request) rather than waiting for the client's timeout.
            assert sock.recv(200) == b""
            assert time.monotonic() - began < 5
        reply = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/healthz", timeout=5)
        assert reply.status == 200  # and it serves the next one
    finally:
        stop(server)


def test_it_stays_ready_for_webhooks_while_its_reconciles_fail(tmp_path) -> None:
    watcher = watcher_for("/nonexistent.git", tmp_path)
    server = serve(watcher, host="127.0.0.1", port=0, secret=None)
    try:
        assert watcher.reconcile().result == "error"
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(urllib.error.HTTPError) as failing:
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
        assert failing.value.code == 503
        assert json.loads(failing.value.read())["error"].startswith("cannot fetch")
        # The path the hub's Deployment asks for readiness.
        deployment = next(
            d
            for d in yaml.safe_load_all((ROOT / "deploy" / "caspian.yaml").read_text())
            if d["kind"] == "Deployment"
        )
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        for probe in ("readinessProbe", "livenessProbe"):  # nor restarted, which mends nothing
            path = container[probe]["httpGet"]["path"]
            assert urllib.request.urlopen(url + path, timeout=5).status == 200
    finally:
        stop(server)


class HeldObserver(DeclaredCapacity):
    """Declared capacity, once `go` is set: a read that nothing times out."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def observe(self, fleet):
        self.go.wait(30)
        return super().observe(fleet)


def test_a_reconcile_held_past_stuck_after_fails_livez_until_it_ends(
    remote, tmp_path, caplog
) -> None:
    watcher = watcher_for(str(remote), tmp_path, stuck_after_s=0.5)
    watcher.observer = held = HeldObserver()
    server = serve(watcher, host="127.0.0.1", port=0, secret=None)
    url = f"http://127.0.0.1:{server.server_port}"

    def livez() -> tuple[int, str]:
        try:
            reply = urllib.request.urlopen(f"{url}/livez", timeout=5)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        return reply.status, reply.read().decode()

    def healthz() -> dict:
        return json.loads(urllib.request.urlopen(f"{url}/healthz", timeout=5).read())

    try:
        assert livez() == (200, "ok\n") and healthz()["reconciling_since"] is None
        loop = threading.Thread(target=watcher.reconcile)
        loop.start()
        assert wait_for(lambda: healthz()["reconciling_since"] is not None)
        assert healthz()["reconciling_since"].startswith("2026-11-22T")
        assert livez()[0] == 200  # held, but not yet for long
        assert wait_for(lambda: livez()[0] == 503, timeout=5)
        reason = livez()[1]
        assert reason.startswith("the reconcile begun at 2026-11-22T") and reason.endswith(
            "past --stuck-after 0.5 s\n"
        )
        held.go.set()
        loop.join(30)
        assert livez() == (200, "ok\n") and healthz()["result"].startswith("committed")
        assert healthz()["reconciling_since"] is None
    finally:
        held.go.set()
        stop(server)
    # Said before /livez has cause to fail: a reconcile took over half the time.
    assert any("over half of --stuck-after (0.5 s)" in r.getMessage() for r in caplog.records)


def test_it_serves_on_ipv6_loopback_too(tmp_path) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    watcher = watcher_for("/nonexistent.git", tmp_path)
    server = serve(watcher, host="::1", port=0, secret=None)
    try:
        reply = urllib.request.urlopen(f"http://[::1]:{server.server_port}/metrics", timeout=5)
        assert reply.status == 200
    finally:
        stop(server)


def test_only_a_reconcile_that_works_moves_the_last_success_time(remote, tmp_path) -> None:
    """What CaspianNotReconciling (deploy/monitoring) alerts on the age of."""
    from prometheus_client import REGISTRY

    def last_success() -> float | None:
        return REGISTRY.get_sample_value("caspian_reconcile_last_success_timestamp_seconds")

    working = watcher_for(str(remote), tmp_path)
    assert working.reconcile().result.startswith("committed")
    moment = last_success()
    assert moment is not None and abs(moment - NOW.timestamp()) < 60
    assert working.reconcile().result == "skipped"  # a fetch that found nothing new works too
    assert last_success() > moment
    moment = last_success()
    broken = watcher_for(str(tmp_path / "gone.git"), tmp_path / "other")
    assert broken.reconcile().result == "error"
    assert last_success() == moment


def test_a_pull_request_closed_wakes_it_to_decide_again_on_the_same_tip(remote, tmp_path):
    """GitHub's and Gitea's pull_request event, GitLab's merge request hook:
    main has not moved, but what became of the proposal has."""
    with proposing_watcher(remote, tmp_path) as (watcher, _):
        server = serve(watcher, host="127.0.0.1", port=0, secret="hook-secret")
        url = f"http://127.0.0.1:{server.server_port}/webhook"
        try:
            assert watcher.reconcile().result.startswith("committed")
            assert watcher.reconcile().result == "skipped"
            for event, anew in [
                ({"action": "closed", "pull_request": {"head": {"ref": "team/x"}}}, False),
                (
                    {"action": "opened", "pull_request": {"head": {"ref": "caspian/placement"}}},
                    False,
                ),
                (
                    {"action": "closed", "pull_request": {"head": {"ref": "caspian/placement"}}},
                    True,
                ),
                (
                    {
                        "object_kind": "merge_request",
                        "object_attributes": {
                            "action": "close",
                            "source_branch": "caspian/placement",
                        },
                    },
                    True,
                ),
            ]:
                body = json.dumps(event).encode()
                assert _post(url, body, _sign(body)) == 202
                assert (watcher.reconcile().result != "skipped") == anew
                assert watcher.reconcile().result == "skipped"  # once only
        finally:
            stop(server)
