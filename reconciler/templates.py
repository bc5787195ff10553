"""The starting content of a fleet repo (repo-template/ in this project), and a fleet
repo's work tree read as git would hold it."""

from __future__ import annotations

import os
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "repo-template"


def template_files() -> dict[str, bytes]:
    if not TEMPLATE_DIR.is_dir():
        raise FileNotFoundError(
            f"repo-template not found at {TEMPLATE_DIR}: install Caspian from its source "
            "checkout (pip install -e .)"
        )
    return read_tree(TEMPLATE_DIR)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file below `root`, by its slash-separated path relative to it (no .git),
    as git would hold it: a symbolic link is the path it points to, not followed."""
    return {
        name: os.fsencode(path.readlink()) if path.is_symlink() else path.read_bytes()
        for name, path in _entries(root)
        if path.is_symlink() or path.is_file()
    }


def links_in(root: Path) -> frozenset[str]:
    """Which of read_tree's files are symbolic links."""
    return frozenset(name for name, path in _entries(root) if path.is_symlink())


def _entries(root: Path) -> list[tuple[str, Path]]:
    """Below `root` (no .git). rglob does not descend into a linked directory, as
    git does not: the link is one entry."""
    return [
        (path.relative_to(root).as_posix(), path)
        for path in sorted(root.rglob("*"))
        if ".git" not in path.relative_to(root).parts
    ]


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
