"""Rendering is pure and stable: golden files, and a second pass changes nothing.

Regenerate the golden files after an intended change with
`CASPIAN_UPDATE_GOLDEN=1 pytest tests/rendering` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render

GOLDEN = Path(__file__).parent / "golden" / "template-2026-11-22T0200Z"


def test_rendered_files_match_the_golden_files() -> None:
    _, rendered, message = decide_and_render(NOW)
    produced = {**rendered, "commit-message.txt": message.encode()}
    if os.environ.get("CASPIAN_UPDATE_GOLDEN"):
        for path in GOLDEN.rglob("*"):
            if path.is_file():
                path.unlink()
        for name, data in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    expected = {
        p.relative_to(GOLDEN).as_posix(): p.read_bytes() for p in GOLDEN.rglob("*") if p.is_file()
    }
    assert sorted(produced) == sorted(expected)
    for name in expected:
        assert produced[name].decode() == expected[name].decode(), name


def test_the_same_inputs_render_byte_identical_files() -> None:
    first = decide_and_render(NOW)
    second = decide_and_render(NOW)
    assert first[1] == second[1]
    assert first[2] == second[2]


def test_rendering_on_its_own_output_is_a_fixed_point() -> None:
    """Feeding the output back in (as the next reconcile does) changes no byte."""
    from reconciler.templates import template_files

    files = template_files()
    _, rendered, _ = decide_and_render(NOW, files)
    _, again, _ = decide_and_render(NOW, {**files, **rendered})
    assert again == rendered


@pytest.mark.parametrize("name", ["rendered/paris/kustomization.yaml", "status/placements.yaml"])
def test_owned_files_say_so(name) -> None:
    _, rendered, _ = decide_and_render(NOW)
    assert rendered[name].startswith(b"# Owned by Caspian")
