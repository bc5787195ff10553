"""libyaml writes and reads Caspian's files exactly as PyYAML's own code does, so
the files are the same bytes on a machine whose PyYAML was built without it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from reconciler import ledger, rendering
from reconciler.ledger import Entry, Ledger, Phase
from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render

pytestmark = pytest.mark.skipif(
    not yaml.__with_libyaml__, reason="this PyYAML has no libyaml: its own code is used"
)

# Strings that the two emitters could quote, fold or escape differently.
AWKWARD = (
    "will finish after its deadline: it runs 3d, so it ends 2026-11-25T02:00:00Z at the "
    "earliest, after its deadline 2026-11-23T02:00:00Z: give it a later caspian.dev/deadline",
    "yes",
    "0123",
    "1e3",
    "null",
    "~",
    "- a dash",
    "a: colon",
    "tab\there",
    "line\nbreak",
    "trailing space ",
    "'quoted' and \"double\"",
    "Zürich — ünïcode ✓",
    "#not a comment",
    "",
)


def awkward_ledger() -> Ledger:
    return Ledger(
        entries=tuple(
            Entry(
                id=f"batch/job-{i}",
                source=f"jobs/job-{i}.yaml",
                phase=Phase.CANCELLED,
                spoke="paris",
                planned_start=NOW + timedelta(minutes=15 * i),
                removed_at=NOW,
                memory_bytes=8e9 + i,
                estimated_grams=0.1 * i,
                reason=text,
            )
            for i, text in enumerate(AWKWARD)
        )
    )


def test_libyaml_writes_the_same_bytes_as_pyyaml(monkeypatch) -> None:
    _, rendered, _ = decide_and_render(NOW)
    files = {**rendered, "awkward.yaml": rendering.render_ledger(awkward_ledger())}
    monkeypatch.setattr(rendering, "_Dumper", rendering.PyYamlDumper)
    _, by_pyyaml, _ = decide_and_render(NOW)
    by_pyyaml["awkward.yaml"] = rendering.render_ledger(awkward_ledger())
    assert files == by_pyyaml


def test_libyaml_reads_the_ledger_as_pyyaml_does() -> None:
    raw = rendering.render_ledger(awkward_ledger())
    assert ledger.parse(raw) == ledger.parse(raw, loader=yaml.SafeLoader) == awkward_ledger()
