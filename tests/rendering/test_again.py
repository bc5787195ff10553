"""A watcher renders and reads much the same fleet at every reconcile: what it
wrote last time is kept (rendering.Renders), and what each ledger record read to
(ledger.Records), so that only what changed is written or read again, to the
same bytes and the same ledger as from nothing."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta, timezone
from typing import Any

import pytest

from reconciler import ledger as ledger_module
from reconciler import rendering, yamlio
from reconciler.decisions import Decision
from reconciler.ledger import Entry, Ledger
from reconciler.owned import seal
from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render
from tests.rendering.test_libyaml import awkward_ledger


def whole_document(ledger: Ledger, *, dumper: type | None = None) -> bytes:
    """The ledger dumped as one document, as it was written before records
    were written one by one."""
    return seal(yamlio.dump(rendering.ledger_document(ledger), dumper=dumper))


@pytest.mark.parametrize("dumper", [None, yamlio.PyYamlDumper], ids=["libyaml", "pyyaml"])
def test_a_ledger_written_record_by_record_is_the_whole_document_to_the_byte(dumper) -> None:
    decided = decide_and_render(NOW)[0].ledger
    for ledger in (
        decided,
        decided.model_copy(update={"problem": None}),
        awkward_ledger(),
        Ledger(),
        Ledger(problem="sha256:00"),
    ):
        assert rendering.render_ledger(ledger, dumper=dumper) == whole_document(
            ledger, dumper=dumper
        )


@pytest.fixture
def dumped(monkeypatch) -> Counter[str]:
    """What rendering dumps, by kind: a Job, one ledger record, anything else."""
    counts: Counter[str] = Counter()

    def counting(document: Any, **kwargs: Any) -> bytes:
        if document.get("kind") == "Job":
            counts["job"] += 1
        elif list(document) == ["entries"] and len(document["entries"]) == 1:
            counts["record"] += 1
        else:
            counts["other"] += 1
        return yamlio.dump(document, **kwargs)

    monkeypatch.setattr(rendering, "dump", counting)
    return counts


def rendered(decision: Decision, known: rendering.Renders, counts: Counter[str]):
    """`decision` rendered with `known`, checked against a render from nothing,
    with how many Jobs and records it wrote out."""
    counts.clear()
    files = rendering.render(decision, previous={}, known=known)
    written = (counts["job"], counts["record"])
    assert files == rendering.render(decision, previous={})
    return files, written


def with_entry(decision: Decision, changed: Entry) -> Decision:
    entries = tuple(changed if e.id == changed.id else e for e in decision.ledger.entries)
    return decision.model_copy(
        update={"ledger": decision.ledger.model_copy(update={"entries": entries})}
    )


def test_a_render_again_writes_out_only_the_jobs_and_records_that_changed(dumped) -> None:
    decision = decide_and_render(NOW)[0]
    jobs = sum(1 for e in decision.ledger.entries if e.on_a_spoke and e.id in decision.jobs)
    records = len(decision.ledger.entries)
    assert jobs >= 3
    known = rendering.Renders()

    first, written = rendered(decision, known, dumped)
    assert written == (jobs, records)
    assert rendered(decision, known, dumped) == (first, (0, 0))

    # One job planned a slot later: its Job and its record, and nothing else.
    entry = next(e for e in decision.ledger.entries if e.on_a_spoke and e.id in decision.jobs)
    later = entry.model_copy(
        update={
            "planned_start": entry.planned_start + timedelta(minutes=15),
            "planned_end": entry.planned_end + timedelta(minutes=15),
        }
    )
    moved = with_entry(decision, later)
    files, written = rendered(moved, known, dumped)
    assert written == (1, 1)
    assert files != first
    assert rendered(moved, known, dumped)[1] == (0, 0)

    # Back as it was: only the last call's are kept, so it is written again.
    assert rendered(decision, known, dumped) == (first, (1, 1))


def test_a_job_or_record_equal_to_the_last_but_written_otherwise_is_written_again(dumped) -> None:
    decision = decide_and_render(NOW)[0]
    known = rendering.Renders()
    rendered(decision, known, dumped)
    entry = next(e for e in decision.ledger.entries if e.on_a_spoke and e.id in decision.jobs)

    # The same template with its keys in another order: an equal job, whose
    # Job lists them in its own order.
    job = decision.jobs[entry.id]
    reordered = dict(reversed(list(job.job_template.items())))
    twin = job.model_copy(update={"job_template": reordered})
    assert twin == job
    swapped = decision.model_copy(update={"jobs": {**decision.jobs, entry.id: twin}})
    files, written = rendered(swapped, known, dumped)
    assert written == (1, 0)

    # The same moments at another offset: an equal record, which the ledger
    # writes with its offset.
    paris = timezone(timedelta(hours=1))
    shifted = entry.model_copy(
        update={
            "planned_start": entry.planned_start.astimezone(paris),
            "deadline": entry.deadline.astimezone(paris),
        }
    )
    assert shifted == entry
    files, written = rendered(with_entry(swapped, shifted), known, dumped)
    assert written == (1, 1)
    assert b"+01:00" in files["status/placements.yaml"]


@pytest.fixture
def loads(monkeypatch) -> list[bytes]:
    """What the ledger module reads as YAML, each text."""
    texts: list[bytes] = []
    load = yamlio.load

    def counting(raw: bytes, **kwargs: Any) -> Any:
        texts.append(raw)
        return load(raw, **kwargs)

    monkeypatch.setattr(ledger_module.yamlio, "load", counting)
    return texts


def test_a_ledger_read_again_reads_only_the_records_that_changed(loads) -> None:
    decided = decide_and_render(NOW)[0].ledger
    assert len(decided.entries) >= 3
    known = ledger_module.Records()
    for each in (decided, awkward_ledger(), Ledger(), Ledger(problem="sha256:00")):
        raw = rendering.render_ledger(each)
        assert ledger_module.parse(raw, known=known) == ledger_module.parse(raw) == each

    raw = rendering.render_ledger(decided)
    loads.clear()
    assert ledger_module.parse(raw, known=known) == decided
    assert len(loads) == 1 + len(decided.entries)  # the head, and every record
    loads.clear()
    assert ledger_module.parse(raw, known=known) == decided
    assert len(loads) == 1

    first = decided.entries[0]
    later = first.model_copy(update={"planned_end": first.planned_end + timedelta(minutes=15)})
    moved = decided.model_copy(update={"entries": (later, *decided.entries[1:])})
    loads.clear()
    assert ledger_module.parse(rendering.render_ledger(moved), known=known) == moved
    assert len(loads) == 2 and b"- id: " + first.id.encode() in loads[1]


def test_a_ledger_not_laid_out_as_caspian_writes_it_reads_as_it_would_whole() -> None:
    decided = decide_and_render(NOW)[0].ledger.model_copy(update={"problem": None})
    # From before digests, so no digest tells of the hand edits.
    body = rendering.render_ledger(decided).split(b"\n", 2)[2]
    twice = body + b"- " + body.split(b"\n- ", 1)[1].split(b"\n- ", 1)[0] + b"\n"
    after = body + b"problem: sha256:11\n"
    # One record's source named, and the next one's taken from it.
    first, second, rest = body.split(b"\n  source: ", 2)
    aliased = b"".join(
        [first, b"\n  source: &s ", second, b"\n  source: *s\n", rest.split(b"\n", 1)[1]]
    )
    for raw in (twice, after, aliased):
        whole = ledger_module.parse(raw)
        assert ledger_module.parse(raw, known=ledger_module.Records()) == whole
    assert ledger_module.parse(twice).entries[-1] == decided.entries[0]
    assert ledger_module.parse(after).problem == "sha256:11"
    assert len({e.source for e in ledger_module.parse(aliased).entries[:2]}) == 1

    for bogus in (
        body.replace(b"  phase: ", b"  bogus: 1\n  phase: ", 1),
        body.replace(b"\nentries:\n", b"\nentries: []\nentries:\n"),
    ):
        with pytest.raises(ledger_module.LedgerError) as whole_error:
            ledger_module.parse(bogus)
        with pytest.raises(ledger_module.LedgerError) as by_records:
            ledger_module.parse(bogus, known=ledger_module.Records())
        assert str(by_records.value) == str(whole_error.value)
