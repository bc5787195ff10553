"""Reconciling a fleet repo served by `git daemon` over the network."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading

import pytest

from reconciler.gitrepo import FleetRepo, GitError, PushRejectedError
from reconciler.reconciling import reconcile_once
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.gitdaemon import GIT, git_daemon
from tests.githttp import git_http

pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")


def test_reconcile_over_git_protocol_pushes_once_and_then_nothing(remote, tmp_path) -> None:
    with git_daemon(remote.parent) as base:
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        first = reconcile_once(repo, now=NOW, author=BOT)
        assert first.commit == gitutil.head(remote)
        second = reconcile_once(repo, now=NOW, author=BOT)
        assert second.commit is None
        assert gitutil.head(remote) == first.commit


def test_a_server_hook_refusal_is_an_error_not_a_silent_success(remote, tmp_path) -> None:
    """libgit2 does not raise on a per-ref refusal; Caspian must notice it."""
    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = gitutil.head(remote)
    with git_daemon(remote.parent) as base:
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        slept = []
        with pytest.raises(PushRejectedError) as refused:
            reconcile_once(repo, now=NOW, author=BOT, attempts=3, sleep=slept.append)
    said = str(refused.value)
    assert "refs/heads/main: pre-receive hook declined (the server says: main is protected)" in (
        said
    )
    assert "where main is protected, let Caspian's identity push there" in said
    assert slept == []  # a refusal is final: no retry
    assert gitutil.head(remote) == before


@pytest.mark.parametrize("scheme", ["git", "http", "ssh"])
def test_a_server_that_says_nothing_fails_the_fetch_instead_of_holding_it(tmp_path, scheme) -> None:
    """A server that takes the connection and never answers (a stuck proxy)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def take() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=take, daemon=True).start()
    url = f"{scheme}://127.0.0.1:{server.getsockname()[1]}/fleet.git"
    repo = FleetRepo(url, cache_dir=tmp_path / "mirror.git", read_timeout_s=0.5)
    failed: list[GitError] = []

    def fetch() -> None:
        try:
            repo.fetch()
        except GitError as error:
            failed.append(error)

    fetching = threading.Thread(target=fetch, daemon=True)
    fetching.start()
    fetching.join(timeout=20)  # without a timeout, for ever
    server.close()
    for conn in held:
        conn.close()
    assert not fetching.is_alive(), "the fetch still waits on a silent server"
    assert (
        len(failed) == 1
        and "timed out" in str(failed[0]).lower()
        and str(failed[0]).startswith(f"cannot fetch {url}")
    )


def test_a_proposal_branch_is_deleted_over_the_network_and_a_deleted_one_is_forgotten(
    remote, tmp_path
) -> None:
    import pygit2

    from reconciler.reconciling import propose_once

    with git_daemon(remote.parent) as base:
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        propose_once(repo, branch="caspian/placement", now=NOW, author=BOT)
        assert repo.remote_tree("caspian/placement") is not None
        assert repo.delete_branch("caspian/placement") is True
        assert "refs/heads/caspian/placement" not in pygit2.Repository(str(remote)).references
        assert repo.remote_tree("caspian/placement") is None
        assert repo.delete_branch("caspian/placement") is False  # nothing to delete
        with pytest.raises(GitError, match="refusing to delete 'main'"):
            repo.delete_branch("main")
        # Deleted on the server by someone else (a merged pull request's
        # branch): the next fetch forgets it too.
        proposal = propose_once(repo, branch="caspian/placement", now=NOW, author=BOT)
        pygit2.Repository(str(remote)).references.delete("refs/heads/caspian/placement")
        repo.fetch()
        assert proposal.proposed.commit and repo.remote_tree("caspian/placement") is None


def test_in_pull_request_mode_a_protected_main_says_what_caspian_pushes_there(
    remote, tmp_path
) -> None:
    """Proposals may go; what carries out the approved plan is refused, and
    the error says why Caspian pushes to main at all."""
    import pygit2

    from reconciler import ledger
    from reconciler.reconciling import propose_once

    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  [ "$ref" = refs/heads/main ] && { echo "main is protected" >&2; exit 1; }\n'
        "done\nexit 0\n"
    )
    hook.chmod(0o755)
    with git_daemon(remote.parent) as base:
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        first = propose_once(repo, branch="caspian/placement", now=NOW, author=BOT)
        assert first.proposed.commit is not None  # the proposal branch is not protected
        bare = pygit2.Repository(str(remote))  # merged, as the forge would, past the hook
        bare.references["refs/heads/main"].set_target(first.proposed.commit)
        planned = ledger.parse(gitutil.read(remote, ledger.LEDGER_PATH)).entries
        due = min((e for e in planned if e.phase == "Planned"), key=lambda e: e.planned_start)
        with pytest.raises(PushRejectedError) as refused:
            propose_once(repo, branch="caspian/placement", now=due.planned_start, author=BOT)
    said = str(refused.value)
    assert "refs/heads/main: pre-receive hook declined (the server says: main is protected)" in (
        said
    )
    assert said.endswith(
        "in pull-request mode Caspian pushes to main what carries out the plan it holds (Jobs "
        "dispatched at their planned start, what the spokes report): let its identity push "
        "there past the branch's protection"
    )


def test_over_http_the_token_from_the_environment_is_the_password(
    remote, tmp_path, monkeypatch
) -> None:
    """As a forge takes a bot's push over HTTPS: a token as the password, and the
    line break a mounted Secret ends with left off."""
    token = _made_up_token()
    monkeypatch.setenv("CASPIAN_GIT_TOKEN", token + "\n")
    monkeypatch.setenv("CASPIAN_GIT_USERNAME", "caspian-bot\n")
    with git_http(remote.parent, user="caspian-bot", password=token) as (base, sent):
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        first = reconcile_once(repo, now=NOW, author=BOT)
    assert first.commit is not None and first.commit == gitutil.head(remote)
    assert sent  # it was asked, and answered


@pytest.mark.parametrize("wrong", [False, True])
def test_over_http_a_missing_or_wrong_token_is_said_without_it(
    remote, tmp_path, monkeypatch, wrong
) -> None:
    token = _made_up_token() if wrong else None
    if token is None:
        monkeypatch.delenv("CASPIAN_GIT_TOKEN", raising=False)
    else:
        monkeypatch.setenv("CASPIAN_GIT_TOKEN", token)
    before = gitutil.head(remote)
    with git_http(remote.parent, user="git", password=_made_up_token()) as (base, sent):
        repo = FleetRepo(base + remote.name, cache_dir=tmp_path / "mirror.git")
        with pytest.raises(GitError) as failed:
            reconcile_once(repo, now=NOW, author=BOT)
    said = str(failed.value)
    if token is None:
        assert "asks for credentials: set CASPIAN_GIT_TOKEN (HTTPS)" in said
    else:
        assert "authentication to http://127.0.0.1:" in said
        assert said.endswith(
            "failed 3 times: check CASPIAN_GIT_TOKEN and CASPIAN_GIT_USERNAME "
            "(HTTPS), or the key in ssh-agent"
        )
        assert token not in said and len(sent) <= 4  # bounded: a wrong key cannot loop
    assert gitutil.head(remote) == before


def _made_up_token() -> str:
    """A token of the test's own, drawn afresh: none is written in the repo."""
    return secrets.token_hex(16)
