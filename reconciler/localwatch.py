"""Noticing a push to a repository on this machine: the only module that imports
watchfiles. It watches the refs (git's own files), which watchfiles' default
filter would ignore."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles


def _is_ref(change: watchfiles.Change, path: str) -> bool:
    parts = Path(path).parts
    return "refs" in parts or parts[-1] in ("packed-refs", "HEAD")


def watch_refs(
    repository: Path, *, on_change: Callable[[str], None], stop: threading.Event
) -> threading.Thread:
    """Call `on_change` whenever a ref of `repository` (bare or .git) moves."""
    git_dir = repository / ".git" if (repository / ".git").is_dir() else repository

    def loop() -> None:
        for changes in watchfiles.watch(
            git_dir,
            watch_filter=_is_ref,
            stop_event=stop,
            debounce=200,
            rust_timeout=500,
            yield_on_timeout=False,
        ):
            on_change(f"refs changed in {repository} ({len(changes)} files)")

    thread = threading.Thread(target=loop, daemon=True, name="caspian-localwatch")
    thread.start()
    return thread
