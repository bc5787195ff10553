"""Argo CD's link on a rendered Job leads, through git's history of its file, to
the commit that placed it: checked on a real repo with git's own log."""

from __future__ import annotations

import subprocess

import yaml

from reconciler.reconciling import reconcile_once
from reconciler.rendering import ARGOCD_LINK
from tests import gitutil
from tests.conftest import BOT, NOW

PREFIX = "https://git.example.invalid/acme/fleet/commits/main/"


def test_the_newest_commit_of_a_linked_file_is_the_placement_commit(fleet_repo, remote) -> None:
    policy = yaml.safe_load(gitutil.read(remote, "caspian.yaml"))
    policy["spec"]["historyUrl"] = PREFIX + "{path}"
    gitutil.user_commit(remote, {"caspian.yaml": yaml.safe_dump(policy).encode()})
    placed = reconcile_once(fleet_repo, now=NOW, author=BOT).commit
    assert placed is not None
    jobs = [p for p in gitutil.files(remote, "rendered/") if p.count(".") == 2]
    assert len(jobs) == 10
    for path in jobs:
        link = yaml.safe_load(gitutil.read(remote, path))["metadata"]["annotations"][ARGOCD_LINK]
        assert link.startswith(PREFIX)
        linked_path = link.removeprefix(PREFIX)
        newest = subprocess.run(
            ["git", "-C", str(remote), "log", "-1", "--format=%H", "main", "--", linked_path],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert newest == placed, path
