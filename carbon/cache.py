"""The last good answer of each live source, on disk, so that an outage falls back
to recent real data before it falls back to 2023."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from carbon.points import Point


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
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "fetched_at": fetched_at.isoformat(),
            "forecast": [p.model_dump(mode="json") for p in forecast],
            "history": [p.model_dump(mode="json") for p in history],
        }
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(path)  # atomic: a crash never leaves half a cache file

    def load(self, key: str) -> tuple[datetime, list[Point], list[Point]] | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            document = json.loads(path.read_text())
            return (
                datetime.fromisoformat(document["fetched_at"]),
                [Point.model_validate(p) for p in document["forecast"]],
                [Point.model_validate(p) for p in document["history"]],
            )
        except (ValueError, KeyError, TypeError):
            return None  # a damaged cache is no cache
