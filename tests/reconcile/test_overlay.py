"""A work tree's edits over the branch's tip (`overlay.overlaid`), file by file."""

from __future__ import annotations

from reconciler.overlay import WorkTree, overlaid

TIP = {
    "jobs/kept.yaml": b"kept",
    "jobs/theirs.yaml": b"pushed since the clone",
    "jobs/both.yaml": b"theirs",
    "jobs/link.yaml": b"kept.yaml",
    "status/placements.yaml": b"the branch's ledger",
}
BASE = {
    "jobs/kept.yaml": b"kept",
    "jobs/both.yaml": b"as cloned",
    "jobs/gone.yaml": b"to delete",
    "jobs/link.yaml": b"kept.yaml",
    "status/placements.yaml": b"the clone's ledger",
}


def test_each_file_the_work_tree_changed_is_its_and_the_rest_the_tips() -> None:
    work = WorkTree(
        where=".",
        base="b" * 40,
        base_files=BASE,
        files={
            "jobs/kept.yaml": b"kept",
            "jobs/both.yaml": b"ours",
            "jobs/new.yaml": b"new",
            "jobs/link.yaml": b"now a file",
            "jobs/linked.yaml": b"new.yaml",
            "status/placements.yaml": b"the clone's ledger",
        },
        links=frozenset({"jobs/linked.yaml"}),
    )
    files, links, edits = overlaid(TIP, links=frozenset({"jobs/link.yaml"}), work=work)
    assert files == {
        "jobs/kept.yaml": b"kept",
        "jobs/theirs.yaml": b"pushed since the clone",
        "jobs/both.yaml": b"ours",
        "jobs/new.yaml": b"new",
        "jobs/link.yaml": b"now a file",
        "jobs/linked.yaml": b"new.yaml",
        "status/placements.yaml": b"the branch's ledger",  # unchanged in the clone
    }
    assert links == {"jobs/linked.yaml"}
    assert edits.edited == {
        "jobs/both.yaml": "changed",
        "jobs/gone.yaml": "deleted",
        "jobs/link.yaml": "changed",
        "jobs/linked.yaml": "added",
        "jobs/new.yaml": "added",
    }
    assert edits.crossed == ("jobs/both.yaml",)


def test_without_a_base_the_files_people_write_are_the_work_trees_whole() -> None:
    work = WorkTree(
        where=".",
        base=None,
        files={"jobs/kept.yaml": b"kept", "status/placements.yaml": b"a stale ledger"},
    )
    files, links, edits = overlaid(TIP, links=frozenset({"jobs/link.yaml"}), work=work)
    assert files == {"jobs/kept.yaml": b"kept", "status/placements.yaml": b"the branch's ledger"}
    assert links == frozenset()
    assert edits.edited == {
        "jobs/both.yaml": "deleted",
        "jobs/link.yaml": "deleted",
        "jobs/theirs.yaml": "deleted",
    }
    assert edits.crossed == ()
