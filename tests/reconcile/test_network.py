"""Reconciling a fleet repo served by `git daemon` over the network."""

from __future__ import annotations

import pytest

from reconciler.gitrepo import FleetRepo, PushRejectedError
from reconciler.reconciling import reconcile_once
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.gitdaemon import GIT, git_daemon

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
        with pytest.raises(PushRejectedError, match=r"main is protected|pre-receive"):
            reconcile_once(repo, now=NOW, author=BOT, attempts=3, sleep=slept.append)
    assert slept == []  # a refusal is final: no retry
    assert gitutil.head(remote) == before
