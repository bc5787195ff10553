"""The object files of the bare mirror Caspian keeps: when to fold them together.

Each fetch that brings something new writes one more pack into the mirror, and
each commit of Caspian's writes loose objects; git folds them now and then
(`git gc --auto`), and libgit2 never does. Left so, every reconcile opened each
pack (a file descriptor a pack: with 310 of them and a limit of 200 open files,
it failed with "Too many open files", as it would with more packs than any
soft limit of open files, 1,024 being common) and looked objects up pack by
pack. `gitrepo.FleetRepo` asks `due` after each fetch and, where it says so,
writes the objects of the packs it names and the loose ones into one new pack,
then removes what that pack holds.

Which packs: as `git repack --geometric=2` picks them, the smallest, so that
most folds take only the newest, small packs and a large, old pack is
rewritten rarely. A pack with a `.keep` file is never taken.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

# As git's gc.autoPackLimit and gc.auto: past these, fold.
MOST_PACKS = 50
MOST_LOOSE = 6700
_IDX_MAGIC = b"\377tOc"
_OID_BYTES = 20  # SHA-1: libgit2 makes the mirror so
_IDX_HEAD = 8 + 256 * 4  # magic, version, fan-out table


class Pack(NamedTuple):
    idx: Path
    objects: int

    @property
    def files(self) -> list[Path]:
        """Its files: its index first, by which readers find a pack, then the
        pack and what git writes beside them."""
        stem = self.idx.with_suffix("")
        return [stem.with_suffix(s) for s in (".idx", ".pack", ".rev", ".mtimes", ".bitmap")]


class Fold(NamedTuple):
    """What to write into one new pack, and remove once it is written."""

    packs: list[Pack]
    loose: list[Path]


def due(objects: Path) -> Fold | None:
    """What to fold in the object directory `objects`: past MOST_PACKS packs,
    those `_geometric` picks, where it picks two or more; past MOST_LOOSE
    loose objects, those, and with either, both. None where nothing is due."""
    found = _packs(objects)
    picked = _geometric(found) if len(found) > MOST_PACKS else []
    if len(picked) < 2 and _loose_estimate(objects) <= MOST_LOOSE:
        return None
    return Fold(packs=picked if len(picked) >= 2 else [], loose=_loose(objects))


def names(idx: Path) -> list[bytes]:
    """The object names the pack of index `idx` holds."""
    data = idx.read_bytes()
    start, total = _IDX_HEAD, _count(data[:_IDX_HEAD], idx)
    return [data[start + i * _OID_BYTES : start + (i + 1) * _OID_BYTES] for i in range(total)]


def _count(head: bytes, idx: Path) -> int:
    """How many objects a pack holds, from the head of its index (version 2)."""
    if len(head) < _IDX_HEAD or head[:4] != _IDX_MAGIC or head[4:8] != b"\0\0\0\2":
        raise ValueError(f"{idx.name}: not a version 2 pack index")
    # The last entry of the fan-out table counts every object.
    return int(struct.unpack(">I", head[-4:])[0])


def loose_name(path: Path) -> bytes:
    """The object name of a loose object's file (objects/ab/cdef...)."""
    return bytes.fromhex(path.parent.name + path.name)


def _packs(objects: Path) -> list[Pack]:
    """The packs a fold may take: not kept, and with an index that reads whole
    (one a fold beside this one has just removed does not)."""
    found = []
    for idx in sorted((objects / "pack").glob("pack-*.idx")):
        if idx.with_suffix(".keep").exists():
            continue
        try:
            with idx.open("rb") as file:
                pack = Pack(idx=idx, objects=_count(file.read(_IDX_HEAD), idx))
            # Each object takes a name, a checksum and an offset; two checksums end it.
            whole = idx.stat().st_size >= _IDX_HEAD + pack.objects * (_OID_BYTES + 8) + 40
        except (OSError, ValueError):
            continue
        if whole:  # a cut one is left to whoever cut it, as what is no index is
            found.append(pack)
    return found


def _geometric(packs: list[Pack]) -> list[Pack]:
    """The packs to fold, as git's `--geometric=2` picks them: the smallest,
    so that each pack left holds at least twice the objects of the next
    smaller one left, and the smallest left twice those folded together."""
    ordered = sorted(packs, key=lambda pack: pack.objects)
    cut = 0
    for index in range(len(ordered) - 1, 0, -1):
        if ordered[index].objects < 2 * ordered[index - 1].objects:
            cut = index
            break
    folded = sum(pack.objects for pack in ordered[:cut])
    while cut < len(ordered) and ordered[cut].objects < 2 * folded:
        folded += ordered[cut].objects
        cut += 1
    return ordered[:cut]


def _loose_estimate(objects: Path) -> int:
    """About how many loose objects there are, from one of the 256 directories
    they are spread over, as git estimates it."""
    sample = objects / "17"
    try:
        return 256 * sum(1 for _ in sample.iterdir())
    except OSError:
        return 0


def _loose(objects: Path) -> list[Path]:
    return [
        path
        for directory in sorted(objects.glob("[0-9a-f][0-9a-f]"))
        for path in sorted(directory.iterdir())
        if len(path.name) == 2 * _OID_BYTES - 2
    ]
