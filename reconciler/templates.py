"""The starting content of a fleet repo (repo-template/ in this project)."""

from __future__ import annotations

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
    """Every file below `root`, by its slash-separated path relative to it (no .git)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
