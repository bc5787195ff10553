"""The last good answer of each live source, on disk, so that an outage falls back
to recent real data before it falls back to 2023."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from carbon.points import Point, sane

log = logging.getLogger(__name__)
_UNWRITABLE: set[Path] = set()


class Cache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / (key.replace("/", "_") + ".json")

    def save(
        self, key: str, *, fetched_at: datetime, forecast: list[Point], history: list[Point]
    ) -> None:
        path = self._path(key)
        if path is None:
            return
        document = {
            "fetched_at": fetched_at.isoformat(),
            "forecast": [p.model_dump(mode="json") for p in forecast],
            "history": [p.model_dump(mode="json") for p in history],
        }
        temporary = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(document))
            temporary.replace(path)  # atomic: a crash never leaves half a cache file
        except OSError as error:
            # The answer in hand still serves this plan; only an outage's fallback is
            # lost. Said once a process: a watcher would say it at every reconcile.
            if path.parent in _UNWRITABLE:
                return
            _UNWRITABLE.add(path.parent)
            log.warning(
                "carbon cache %s cannot be written (%s): an outage falls back to the "
                "embedded data; set XDG_CACHE_HOME to a writable directory",
                path.parent,
                error.strerror or error,
            )

    def load(self, key: str) -> tuple[datetime, list[Point], list[Point]] | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            document = json.loads(path.read_text())
            fetched_at = datetime.fromisoformat(document["fetched_at"])
            if fetched_at.tzinfo is None:
                return None  # no moment: its age could not be told
            # What a fresh answer drops is dropped here too: the file may have
            # been edited since.
            return (
                fetched_at,
                sane(Point.model_validate(p) for p in document["forecast"]),
                sane(Point.model_validate(p) for p in document["history"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged or unreadable cache is no cache
