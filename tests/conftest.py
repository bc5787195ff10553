from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from optimizer import dump, solving
from optimizer.model import Instance, Plan
from reconciler import templates
from reconciler.gitrepo import FleetRepo, Identity, create_bare_repo
from tests import planchecker

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
USER = Identity(name="Fleet User", email="user@example.invalid")
BOT = Identity(name="caspian-test-bot", email="bot@example.invalid")


@pytest.fixture
def template() -> dict[str, bytes]:
    return templates.template_files()


@pytest.fixture
def remote(tmp_path: Path, template: dict[str, bytes]) -> Path:
    """A bare fleet repo holding the template, as a user would have pushed it."""
    path = tmp_path / "fleet.git"
    create_bare_repo(path, files=template, message="Add fleet", author=USER)
    return path


@pytest.fixture
def fleet_repo(tmp_path: Path, remote: Path) -> FleetRepo:
    return FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")


def assert_valid_plan(instance: Instance, plan: Plan) -> None:
    problems = planchecker.check(dump.instance_document(instance), dump.plan_document(plan))
    assert problems == [], problems


@pytest.fixture(autouse=True)
def _one_core(monkeypatch) -> None:
    """No twin and no thread on the second core unless a test plugs them in:
    the `caspian` command plugs them in for the rest of the process, and a
    test's result must not turn on which ran before it."""
    monkeypatch.setattr(solving, "_second_core", None)
    monkeypatch.setattr(solving, "_threads", None)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch) -> None:
    """Mirrors and carbon caches go to a temporary directory, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    for name in ("ELECTRICITYMAPS_TOKEN", "WATTTIME_USERNAME", "WATTTIME_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
