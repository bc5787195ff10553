"""Random edits of parsed YAML or JSON, drawn from values users, typos and
garbled answers write: a value replaced, a key removed or added."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

ODD = (
    None, "", 0, -1, 1, 2**70, 1e308, float("nan"), "x" * 300, [], {}, True,
    "2026-13-45T00:00:00Z", "2026-11-22T05:00:00Z", "1970-01-01T00:00:00Z", "NaN", "inf",
    "-5", "1e400", "0.0001", [1, 2], {"a": 1}, "ü∞", "1h", "-1h", "0s", "999999999d",
    "100Ti", "1Ei", "999m", "1n", "0.5m", "1e7", 1e12, "paris", "a,b,,", "\t", "0x10",
    ".5", "1_000",
)  # fmt: skip


def paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path in `node`, parents before their children."""
    if prefix:
        yield prefix
    if isinstance(node, dict | list):
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            yield from paths(value, (*prefix, key))


def edit(doc: Any, rng: random.Random, *, values: Sequence[Any], keys: Sequence[str]) -> None:
    """One edit at a random place in `doc` (a dict or list): a value replaced
    by one of `values`, a key removed, or one of `keys` added."""
    places = list(paths(doc))
    if not places:  # emptied by an edit before: all that is left is to add
        value = copy.deepcopy(rng.choice(values))
        if isinstance(doc, dict):
            doc[rng.choice(keys)] = value
        else:
            doc.append(value)
        return
    path = rng.choice(places)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    draw = rng.random()
    if draw < 0.6 or not isinstance(parent, dict):
        parent[path[-1]] = copy.deepcopy(rng.choice(values))
    elif draw < 0.8:
        del parent[path[-1]]
    else:
        parent[rng.choice(keys)] = copy.deepcopy(rng.choice(values))
