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


def submodules_in(root: Path) -> frozenset[str]:
    """The directories below `root` that are git repos of their own (a
    submodule's checkout, say). Git holds a commit of another repo there, not
    files, so read_tree reads nothing below them."""
    return frozenset(_walk(root)[1])


def _entries(root: Path) -> list[tuple[str, Path]]:
    return _walk(root)[0]


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """What is below `root` (no .git), and the repos nested in it, by path
    relative to it. A linked directory is one entry and is not descended into,
    as git holds it."""
    entries: list[tuple[str, Path]] = []
    nested: list[str] = []
    for here, dirs, names in os.walk(root):
        base = Path(here)
        if base != root and ".git" in (*dirs, *names):
            nested.append(base.relative_to(root).as_posix())
            dirs.clear()
            continue
        dirs[:] = [name for name in dirs if name != ".git"]
        for name in (*dirs, *names):
            if name != ".git":
                entries.append(((base / name).relative_to(root).as_posix(), base / name))
    return sorted(entries), sorted(nested)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
