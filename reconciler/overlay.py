"""What the fleet repo's branch would hold with a work tree's edits pushed on
top of it (`caspian plan --work-tree`), so that a change can be planned
before it is committed, pushed or merged.

A file the work tree changed since its history met the branch's (at its
`base`) is taken as the work tree has it; every other file as the branch's
tip has it, so that what others pushed since the work tree was cloned stays,
as it would after a rebase. Where the work tree shares no commit with the
branch (a shallow checkout of a merge commit, say), nothing tells its edits
from what it lacks:
the files people write (jobs/, spokes/, caspian.yaml) are taken as it has
them, and those Caspian owns (rendered/, status/) as the tip has them, since
a stale ledger would plan from a past the branch has left. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from reconciler.owned import is_owned

ADDED, CHANGED, DELETED = "added", "changed", "deleted"


class WorkTree(BaseModel):
    """The fleet files of a work tree of the fleet repo (gitrepo reads it),
    with those of its `base`: the branch's commit where the work tree's
    history meets it (None where it does not)."""

    model_config = ConfigDict(frozen=True)

    where: str  # the directory given, as given
    base: str | None
    base_files: dict[str, bytes] = {}
    files: dict[str, bytes]
    links: frozenset[str] = frozenset()


class Edits(BaseModel):
    """What a work tree changes of the branch, as `overlaid` took it."""

    model_config = ConfigDict(frozen=True)

    where: str
    base: str | None
    edited: dict[str, str]  # path -> added | changed | deleted, against `base`
    # Of those, the files the branch changed since `base` as well: the work
    # tree's are taken, as a rebase that kept "ours" would.
    crossed: tuple[str, ...] = ()


class Overlaid(NamedTuple):
    files: dict[str, bytes]
    links: frozenset[str]
    edits: Edits


def overlaid(tip: Mapping[str, bytes], *, links: frozenset[str], work: WorkTree) -> Overlaid:
    """The files of the branch's `tip` (and which of them are symbolic
    links) with the edits of `work` pushed on top."""
    if work.base is None:
        before = {path: data for path, data in tip.items() if not is_owned(path)}
        after = {path: data for path, data in work.files.items() if not is_owned(path)}
    else:
        before, after = work.base_files, work.files
    files = dict(tip)
    edited: dict[str, str] = {}
    crossed: list[str] = []
    for path in sorted(before.keys() | after.keys()):
        was, now = before.get(path), after.get(path)
        if was == now:
            continue
        edited[path] = ADDED if was is None else DELETED if now is None else CHANGED
        if work.base is not None and tip.get(path) not in (was, now):
            crossed.append(path)
        if now is None:
            files.pop(path, None)
        else:
            files[path] = now
    linked = (links - edited.keys()) | (work.links & edited.keys())
    edits = Edits(where=work.where, base=work.base, edited=edited, crossed=tuple(crossed))
    return Overlaid(files=files, links=frozenset(linked), edits=edits)
