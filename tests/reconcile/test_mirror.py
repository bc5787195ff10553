"""The bare mirror Caspian keeps of the fleet repo: every fetch that brings
something adds a pack to it and every commit loose objects, which libgit2 never
folds. Left so, each reconcile opened every pack (a file descriptor each) and
looked objects up pack by pack, until it met the open-files limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from reconciler import packs, reconciling
from reconciler.gitrepo import FleetRepo
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.fleet.helpers import appwrapper


def packs_in(mirror: Path) -> list[Path]:
    return sorted((mirror / "objects" / "pack").glob("pack-*.pack"))


def loose_in(mirror: Path) -> list[Path]:
    return [
        path
        for directory in (mirror / "objects").glob("[0-9a-f][0-9a-f]")
        for path in directory.iterdir()
    ]


def every_object_reads(mirror: Path, tip: str) -> int:
    """Walk the whole history from `tip` and read every tree and blob in it;
    how many objects that was."""
    repo = pygit2.Repository(str(mirror))
    seen: set[pygit2.Oid] = set()
    for commit in repo.walk(pygit2.Oid(hex=tip)):
        todo = [commit.tree]
        while todo:
            tree = todo.pop()
            if tree.id in seen:
                continue
            seen.add(tree.id)
            for entry in tree:
                if entry.type_str == "tree":
                    todo.append(repo[entry.id])
                elif entry.id not in seen:
                    seen.add(entry.id)
                    repo[entry.id].read_raw()  # raises where the object is missing
        seen.add(commit.id)
    return len(seen)


def pushes_and_reconciles(remote: Path, mirror: Path, rounds: int) -> FleetRepo:
    repo = FleetRepo(str(remote), cache_dir=mirror)
    for round_ in range(rounds):
        job = appwrapper(f"job-{round_}", annotations={"caspian.dev/duration": "30m"})
        gitutil.user_commit(remote, {f"jobs/job-{round_}.yaml": job.encode()})
        reconciling.reconcile_once(repo, now=NOW + timedelta(minutes=15 * round_), author=BOT)
    return repo


def test_the_mirrors_packs_are_folded_and_every_object_kept(remote, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(packs, "MOST_PACKS", 4)
    mirror = tmp_path / "mirror.git"
    repo = pushes_and_reconciles(remote, mirror, rounds=12)
    # A pack a fetch, and one a push in the remote on a local path: 12 each
    # without folding (checked with the fold taken out).
    assert len(packs_in(mirror)) <= 5
    assert len(packs_in(remote)) <= 5  # as git's receive-pack folds a repo pushed to
    tip = repo.fetch_tip()
    assert tip == gitutil.head(remote)
    # The same history, object for object, in both.
    assert every_object_reads(mirror, tip) == every_object_reads(remote, tip)
    # It reads and decides from the folded mirror as ever: a reconcile, and
    # one more at the same time that finds nothing to commit.
    later = NOW + timedelta(hours=3)
    first = reconciling.reconcile_once(repo, now=later, author=BOT)
    assert first.input_commit == tip
    assert reconciling.reconcile_once(repo, now=later, author=BOT).commit is None


def test_loose_objects_are_folded_into_a_pack_too(remote, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(packs, "MOST_LOOSE", -1)  # fold at every fetch
    mirror = tmp_path / "mirror.git"
    repo = pushes_and_reconciles(remote, mirror, rounds=3)
    assert loose_in(mirror)  # the last reconcile's own commit, since its fetch
    tip = repo.fetch_tip()
    assert loose_in(mirror) == []
    assert every_object_reads(mirror, tip) == every_object_reads(remote, tip)


def test_a_kept_pack_and_what_is_no_whole_pack_index_are_left_alone(
    remote, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(packs, "MOST_PACKS", 2)
    mirror = tmp_path / "mirror.git"
    repo = pushes_and_reconciles(remote, mirror, rounds=2)
    kept = packs_in(mirror)[0]
    kept.with_suffix(".keep").write_text("pinned by hand\n")
    garbage = mirror / "objects" / "pack" / ("pack-" + "0" * 40 + ".idx")
    garbage.write_bytes(b"not an index")
    cut = mirror / "objects" / "pack" / ("pack-" + "1" * 40 + ".idx")
    cut.write_bytes(kept.with_suffix(".idx").read_bytes()[:1100])  # its head, and no more
    pushes_and_reconciles(remote, mirror, rounds=6)
    tip = repo.fetch_tip()
    assert kept.exists() and garbage.read_bytes() == b"not an index" and cut.exists()
    assert len(packs_in(mirror)) <= 4
    assert every_object_reads(mirror, tip) == every_object_reads(remote, tip)


@pytest.mark.parametrize(
    ("sizes", "folded"),
    [
        ([5, 5, 5, 100], [5, 5, 5]),  # the small ones, not the large one
        ([10, 25, 60, 200], []),  # each twice the one below: left as they are
        ([1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]),
        ([3, 100, 101], [3, 100, 101]),  # 101 is less than twice 100 and 3
        ([], []),
    ],
)
def test_packs_are_folded_as_git_repack_geometric_picks_them(
    tmp_path, sizes: list[int], folded: list[int]
) -> None:
    found = [packs.Pack(idx=tmp_path / f"pack-{i}.idx", objects=n) for i, n in enumerate(sizes)]
    assert sorted(pack.objects for pack in packs._geometric(found)) == folded


def test_a_fold_that_fails_removes_nothing_fails_no_reconcile_and_is_said_once(
    remote, tmp_path, monkeypatch, caplog
) -> None:
    from reconciler import gitrepo

    monkeypatch.setattr(packs, "MOST_PACKS", 1)
    monkeypatch.setattr(gitrepo, "_UNFOLDABLE", set())

    def full_disk(self, **_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pygit2.Repository, "pack", full_disk)
    mirror = tmp_path / "mirror.git"
    repo = pushes_and_reconciles(remote, mirror, rounds=4)  # each pushed, as ever
    assert len(packs_in(mirror)) == 4 and gitutil.head(remote) == repo.fetch_tip()
    said = [r.getMessage() for r in caplog.records if "were not folded" in r.getMessage()]
    # Once for the mirror and once for the remote, not at every fetch and push.
    assert len(said) == 2 and all("No space left on device" in line for line in said)


def test_the_soak_benchmark_counts_what_folding_saves(monkeypatch) -> None:
    from reconciler import benchsoak

    monkeypatch.setattr(packs, "MOST_PACKS", 4)
    made = []  # each user commit's time, beside the loop's clock
    commit = benchsoak.commit_to_bare

    def remembered(path: Path, **kwargs) -> str:
        made_id = commit(path, **kwargs)
        repo = pygit2.Repository(str(path))
        made.append(datetime.fromtimestamp(repo[made_id].committer.time, UTC))
        repo.free()
        return made_id

    monkeypatch.setattr(benchsoak, "commit_to_bare", remembered)
    folded = benchsoak.soak(reconciles=12, every=6, now=NOW)
    # A minute before each reconcile: on a history whose times jumped days to
    # and fro, libgit2's fetch took 17 ms a call instead of 4 after 1,500.
    assert made == [NOW + timedelta(minutes=15 * i - 1) for i in range(12)]
    assert all(p["rss_mb"] > 0 for p in folded["points"])
    left = benchsoak.soak(reconciles=12, every=6, now=NOW, fold=False)
    assert folded["results"] == left["results"] == {"committed": 12}
    assert [p["reconciles"] for p in folded["points"]] == [6, 12]
    # A pack a fetch in the mirror and a pack a push in the remote, unless folded.
    assert [(p["mirror_packs"], p["remote_packs"]) for p in left["points"]] == [(6, 6), (12, 12)]
    last = folded["points"][-1]
    assert last["mirror_packs"] <= 5 and last["remote_packs"] <= 5
    assert packs.MOST_PACKS == 4  # put back after the run without folding
