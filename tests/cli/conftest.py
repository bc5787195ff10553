"""The `run` fixture: the `caspian` command through click's runner, with its
cache in the test's own directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main


@pytest.fixture
def run(tmp_path: Path):
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(
            main, [str(a) for a in args], env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
        )

    return invoke
