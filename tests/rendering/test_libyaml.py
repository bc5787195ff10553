"""libyaml writes and reads Caspian's files exactly as PyYAML's own code does, so
the files are the same bytes on a machine whose PyYAML was built without it, and
a broken file gets PyYAML's own message."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import yaml

from reconciler import crd, ledger, rendering, yamlio
from reconciler.ledger import Entry, Ledger, Phase
from reconciler.loading import load_fleet
from reconciler.templates import template_files
from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render

needs_libyaml = pytest.mark.skipif(
    not yamlio.FAST, reason="this PyYAML has no libyaml: its own code is used"
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
    # Text of many lines is written as a literal block where one can hold it.
    "line \nbreak after a space",
    "two\n\nparagraphs\n",
    " indented\nfirst line",
    "ends in\n\n\n",
    "\ttab\nfirst",
    "a: b\n- c\n# d\n",
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


@needs_libyaml
def test_libyaml_writes_the_same_bytes_as_pyyaml(monkeypatch) -> None:
    _, rendered, _ = decide_and_render(NOW)
    files = {**rendered, "awkward.yaml": rendering.render_ledger(awkward_ledger())}
    monkeypatch.setattr(yamlio, "_Dumper", yamlio.PyYamlDumper)
    _, by_pyyaml, _ = decide_and_render(NOW)
    by_pyyaml["awkward.yaml"] = rendering.render_ledger(awkward_ledger())
    assert files == by_pyyaml


@needs_libyaml
def test_libyaml_reads_the_ledger_as_pyyaml_does() -> None:
    raw = rendering.render_ledger(awkward_ledger())
    assert ledger.parse(raw) == ledger.parse(raw, loader=yaml.SafeLoader) == awkward_ledger()


@needs_libyaml
def test_libyaml_reads_the_template_fleet_as_pyyaml_does() -> None:
    yaml_files = {n: raw for n, raw in template_files().items() if n.endswith(".yaml")}
    assert len(yaml_files) > 10
    for name, raw in yaml_files.items():
        assert yamlio.load_all(raw) == yamlio.load_all(raw, loader=yaml.SafeLoader), name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"spec:\n\t- a\n",
            "found character '\\t' that cannot start any token: YAML indents with spaces, "
            "not tabs (line 2, column 1)",
        ),
        (b"a: *nope\n", "found undefined alias 'nope' (line 1, column 4)"),
        (b"a: b: c\n", "mapping values are not allowed here (line 1, column 5)"),
        (
            b"kind: AppWrapper\nkind: Job\n",
            "key 'kind' is given twice in one mapping (first at line 1): keep one, as kubectl "
            "and Argo CD refuse it (line 2, column 1)",
        ),
    ],
)
def test_a_broken_file_gets_pyyamls_own_message(text, message) -> None:
    fleet = load_fleet(
        {**template_files(), "jobs/broken.yaml": text}, appwrapper_schema=crd.check_appwrapper
    )
    (problem,) = [p for p in fleet.problems if p.file == "jobs/broken.yaml"]
    assert problem.reason == f"not valid YAML: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"a: !!timestamp 2026-13-45\n",
            "not valid YAML: a value that cannot be read: month must be in 1..12",
        ),
        (  # refused before any reader recurses
            b"[" * 5000,
            "nested more than 256 levels deep (line 1, column 257), which no Kubernetes object "
            "is: not read",
        ),
    ],
)
def test_a_file_pyyaml_fails_on_with_a_python_error_is_a_problem_line(text, message) -> None:
    # Both crashed the whole load (and so the reconcile) with ValueError or RecursionError.
    fleet = load_fleet(
        {**template_files(), "jobs/broken.yaml": text}, appwrapper_schema=crd.check_appwrapper
    )
    (problem,) = [p for p in fleet.problems if p.file == "jobs/broken.yaml"]
    assert problem.reason == message
    assert len(fleet.jobs) == 10


# A merge conflict resolved by keeping both sides gives a key twice.
TWICE = b"""metadata:
  annotations:
    caspian.dev/deadline: "2026-12-01T00:00:00Z"
    caspian.dev/duration: 1h
    caspian.dev/deadline: "2026-12-03T00:00:00Z"
"""


@pytest.mark.parametrize("loader", [None, yamlio.SafeLoader], ids=["libyaml", "pyyaml"])
def test_a_key_given_twice_is_refused_at_the_second(loader) -> None:
    with pytest.raises(yamlio.YAMLError) as refused:
        yamlio.load_all(TWICE, loader=loader)
    assert yamlio.describe(refused.value) == (
        "key 'caspian.dev/deadline' is given twice in one mapping (first at line 3): keep one, "
        "as kubectl and Argo CD refuse it (line 5, column 5)"
    )
    assert yamlio.error_place(refused.value, TWICE) == 5


def test_keys_a_merge_brings_may_be_given_again() -> None:
    raw = b"base: &base {cpu: 1, memory: 2}\nspec:\n  <<: *base\n  cpu: 4\n"
    assert yamlio.load(raw)["spec"] == {"cpu": 4, "memory": 2}
    assert yamlio.load(b"a: 1\n'1': 2\n1: 3\n") == {"a": 1, "1": 2, 1: 3}  # three keys


class _PlainDumper(yamlio.NoAliases, yaml.SafeDumper):
    """PyYAML's own choice of style for every string."""


def _kept(text: str, dumper: type) -> bool:
    """Whether `text` reads back as written, in a document and in a ledger
    record written alone and joined to another (as render_ledger joins them)."""
    try:
        doc = {"entries": [{"id": "x", "reason": text}], "after": text}
        if yaml.safe_load(yamlio.dump(doc, dumper=dumper)) != doc:
            return False
        one = yamlio.dump({"entries": [{"id": "x", "reason": text}]}, dumper=dumper)
        joined = one + one.removeprefix(b"entries:\n")
        return yaml.safe_load(joined) == {"entries": [{"id": "x", "reason": text}] * 2}
    except yaml.YAMLError:
        return False


def test_text_of_many_lines_is_a_literal_block_that_reads_back_as_written() -> None:
    assert yamlio.dump({"config": "epochs: 3\nlr: 0.1\n"}) == b"config: |\n  epochs: 3\n  lr: 0.1\n"
    assert yamlio.dump({"one": "epochs: 3\n"}) == b"one: |\n  epochs: 3\n"
    chars = ["a", " ", "\n", "\r", "\t", "#", ":", "-", "'", '"', "\u2028", "\x85", "é", "|"]
    rng = random.Random(5)
    for _ in range(1500):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 14)))
        # PyYAML's own style loses a few of these (a NEL in quotes): none more.
        if _kept(text, _PlainDumper):
            assert _kept(text, yamlio._Dumper), repr(text)
            assert _kept(text, yamlio.PyYamlDumper), repr(text)
        # Text not written as a block is written as PyYAML writes it.
        written = yamlio.dump({"k": text}, dumper=yamlio.PyYamlDumper)
        assert written.startswith(b"k: |") or written == yamlio.dump(
            {"k": text}, dumper=_PlainDumper
        ), repr(text)
