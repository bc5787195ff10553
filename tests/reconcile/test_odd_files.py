"""Files of odd shapes, through a whole decision (read, decide, render, the
commit message): one bad job or spoke file is problem lines about that file,
and every other job is still decided. A seeded fuzz: one to three fields of a
template file set to values of the wrong shape or left out, or the whole file
replaced. Single fields are `test_no_value_anywhere_in_a_file_makes_loading_crash`'s."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import yaml

from optimizer import baselines
from reconciler import deciding, reconciling
from reconciler.gitrepo import Snapshot
from reconciler.observing import DeclaredCapacity
from reconciler.templates import template_files
from tests.conftest import NOW

ODD_VALUES: list[Any] = [
    None, 0, -1, 2**70, 1.5, float("inf"), "", "x", "-1", "1e400", "10Gi", "-1h", "0s",
    "2026-13-45T00:00:00Z", "P1D", "NaN", [], [1], ["a", "b"], {}, {"a": 1}, True,
    "a" * 300, "paris,unknown", "batch/train-resnet", "tier in (gold)",
]  # fmt: skip
ODD_FILES = [b"", b"- a\n", b"x\n", b"42\n", b"a: [", b"\x00\xff", b"---\n---\n"]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _changed(raw: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.1:
        return rng.choice(ODD_FILES)
    doc = yaml.safe_load(raw)
    for _ in range(rng.choice((1, 1, 2, 3))):
        where = rng.choice(_paths(doc)[1:])
        node = doc
        for key in where[:-1]:
            node = node[key]
        if rng.random() < 0.25:
            del node[where[-1]]
        else:
            # A copy: the same dict set twice, and then set inside itself, nested without end.
            node[where[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return yaml.safe_dump(doc).encode()


@pytest.mark.parametrize("seed", range(4))
def test_no_odd_job_or_spoke_file_stops_the_others(monkeypatch, seed) -> None:
    # The greedy baseline in the optimizer's place: these are about reading
    # and deciding, and it takes milliseconds.
    monkeypatch.setattr(deciding, "optimize", lambda instance, settings: baselines.greedy(instance))
    rng = random.Random(seed)
    base = template_files()
    jobs = reconciling.fleet_in(base, links=()).jobs
    targets = sorted(p for p in base if p.startswith(("jobs/", "spokes/")))
    for _ in range(40):
        path = rng.choice(targets)
        files = {**base, path: _changed(base[path], rng)}
        snapshot = Snapshot(commit="0" * 40, files=files, links=frozenset())
        outcome = reconciling._decide_on(snapshot, now=NOW, observer=DeclaredCapacity())
        decision = outcome.decision
        assert {p.file for p in decision.problems} <= {path}, (path, decision.problems)
        others = {job.id for job in jobs if not job.source.startswith(path)}
        assert others <= set(decision.jobs), path
        assert outcome.message
