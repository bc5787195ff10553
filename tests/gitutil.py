"""Acting as a user on a bare fleet repo, with pygit2 directly (not through Caspian)."""

from __future__ import annotations

from pathlib import Path

import pygit2
import yaml


def user_commit(
    remote: Path,
    changes: dict[str, bytes | None],
    message: str = "user change",
    *,
    links: dict[str, str] | None = None,
    submodules: dict[str, str] | None = None,
    branch: str = "main",
) -> str:
    """Commit on top of `branch` in the bare repo, as a push from a user would
    land; `links` adds symbolic links (path: where it points), `submodules`
    git submodules (path: the other repo's commit, which this repo does not hold)."""
    repo = pygit2.Repository(str(remote))
    parent = repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(parent.tree)
    for path, data in changes.items():
        if data is None:
            index.remove(path)
        else:
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
    for path, target in (links or {}).items():
        blob = repo.create_blob(target.encode())
        index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.LINK))
    for path, commit in (submodules or {}).items():
        index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=commit), pygit2.enums.FileMode.COMMIT))
    tree = index.write_tree(repo)
    who = pygit2.Signature("Fleet User", "user@example.invalid")
    return str(repo.create_commit(f"refs/heads/{branch}", who, who, message, tree, [parent.id]))


def head(remote: Path, branch: str = "main") -> str:
    return str(pygit2.Repository(str(remote)).references[f"refs/heads/{branch}"].target)


def history(remote: Path) -> list[str]:
    repo = pygit2.Repository(str(remote))
    return [str(c.id) for c in repo.walk(repo.references["refs/heads/main"].target)]


def read(remote: Path, path: str, commit: str | None = None) -> bytes:
    repo = pygit2.Repository(str(remote))
    tree = repo[commit or head(remote)].peel(pygit2.Commit).tree
    return repo[tree[path].id].data


def files(remote: Path, prefix: str = "") -> list[str]:
    repo = pygit2.Repository(str(remote))
    tree = repo[head(remote)].peel(pygit2.Commit).tree
    found = []

    def walk(t: pygit2.Tree, base: str) -> None:
        for entry in t:
            if entry.filemode == pygit2.enums.FileMode.TREE:
                walk(repo[entry.id], base + entry.name + "/")
            elif (base + entry.name).startswith(prefix):
                found.append(base + entry.name)

    walk(tree, "")
    return sorted(found)


def ledger_document(remote: Path) -> dict:
    """status/placements.yaml at the tip, as YAML reads it."""
    return yaml.safe_load(read(remote, "status/placements.yaml"))


def ledger(remote: Path) -> dict[str, dict]:
    return {entry["id"]: entry for entry in ledger_document(remote)["entries"]}


def message(remote: Path, commit: str | None = None) -> str:
    repo = pygit2.Repository(str(remote))
    return repo[commit or head(remote)].peel(pygit2.Commit).message


def branches(remote: Path) -> list[str]:
    """The names of the bare repo's branches, sorted."""
    return sorted(pygit2.Repository(str(remote)).branches.local)


def author(remote: Path, commit: str | None = None) -> tuple[str, str]:
    """The (name, email) a commit (main's tip by default) is authored by."""
    signature = pygit2.Repository(str(remote))[commit or head(remote)].peel(pygit2.Commit).author
    return signature.name, signature.email


def checkout(remote: Path, target: Path) -> None:
    """Main's files written out as a work tree (without .git), as a clone has them."""
    for path in files(remote):
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(read(remote, path))
