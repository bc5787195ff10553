"""Whatever an edit does to the fleet's files, a decision either names the
problem or plans: it raises nothing but a broken policy's FleetConfigError,
warns of no overflow, overfills no spoke, and decides the same again. The
edits are drawn at random (seeded) from values users and typos write.
CASPIAN_EDIT_RUNS=3500 (five minutes, for the edits before any reconcile)
on the code before two fixes failed 4 of them: a weight that overflowed the
costs (seed 2971), and a spoke so large that the solver's tolerance hid
another's overfill (745, 2102, 2958). At 1 fleet in a thousand, their own
tests hold them (tests/reconcile/test_priority.py,
tests/optimizer/test_behaviour.py); the 120 here, each before a reconcile
and after one, are a net for the rest."""

from __future__ import annotations

import functools
import os
import random
import warnings
from datetime import timedelta

import pytest
import yaml

from reconciler.fleet import FleetConfigError
from reconciler.ledger import Phase
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.edits import ODD, edit
from tests.reconcile.test_lifecycle import step

KEYS = ("extra", "spec", "metadata", "resources", "nvidia.com/gpu", "caspian.dev/duration")
BASE = template_files()
EDITABLE = sorted(
    name
    for name in BASE
    if name == "caspian.yaml" or (name.startswith(("jobs/", "spokes/")) and name.endswith(".yaml"))
)
RUNS = int(os.environ.get("CASPIAN_EDIT_RUNS", "120"))


@functools.cache
def _placed() -> dict[str, bytes]:
    """The template fleet after a reconcile: jobs planned and dispatched, with
    their Jobs in rendered/ and their records in the ledger."""
    return step(BASE, now=NOW)[1]


def _edited(seed: int, *, base: dict[str, bytes]) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = dict(base)
    for name in rng.sample(EDITABLE, rng.choice((1, 1, 2))):
        doc = yaml.safe_load(files[name])
        for _ in range(rng.choice((1, 1, 2, 3))):
            edit(doc, rng, values=ODD, keys=KEYS)
        files[name] = yaml.safe_dump(doc, allow_unicode=True).encode()
    return files


@pytest.mark.parametrize("placed", [False, True], ids=["new", "placed"])
@pytest.mark.parametrize("seed", range(RUNS))
def test_an_edit_is_named_or_planned_and_never_overfills_a_spoke(seed, placed) -> None:
    # Edited before any reconcile, or half an hour after one placed the fleet
    # (where Jobs run that an edit can replace, hold or cancel).
    base = _placed() if placed else BASE
    now = NOW + timedelta(minutes=30) if placed else NOW
    files = _edited(seed, base=base)
    edited = {name for name in files if files[name] != base[name]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in the costs, say
        try:
            decision, after = step(files, now=now)
        except FleetConfigError as error:  # no policy, or no spoke, to plan with
            assert {p.file for p in error.problems} & edited
            return
        assert_valid_plan(decision.instance, decision.plan)
        after_again = step(after, now=now)[1]
    assert after_again == after
    # An edited AppWrapper is planned from, or named as a problem; never dropped.
    named = {p.file.split("#")[0] for p in decision.problems}
    # Not a cancelled record: after a reconcile, every file of the template has
    # one, and an edit that made its job vanish unsaid would leave only that.
    recorded = {
        e.source.split("#")[0] for e in decision.ledger.entries if e.phase != Phase.CANCELLED
    }
    for name in edited:
        if name.startswith("jobs/"):
            assert name in named | recorded, name
