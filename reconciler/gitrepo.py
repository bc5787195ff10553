"""Git I/O: the only module that imports pygit2.

Caspian keeps a bare mirror of the fleet repo in a cache directory, reads the
files of one commit straight from the object database (no work tree), writes its
commit on top of exactly that commit, and pushes it. A push the remote refuses,
whether libgit2 raises or only reports it per ref, becomes an error: when the
remote moved the caller fetches and decides again; when a hook or protection
refused, it stops. Nothing is ever force-pushed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pygit2
from pydantic import BaseModel, ConfigDict, field_validator
from pygit2.enums import FetchPrune, FileMode

# One way of printing a URL without its user and password, for git remotes
# as for the carbon providers' and the forge's URLs.
from carbon.http import shown_url as redact
from reconciler import packs
from reconciler.fleet import astray, astray_dir
from reconciler.history import Revision
from reconciler.overlay import WorkTree
from reconciler.signing import SigningError, SigningKey, sign

log = logging.getLogger("caspian.git")

POLICY = "caspian.yaml"
READ_PREFIXES = (POLICY, "spokes/", "jobs/", "status/", "rendered/")
MAX_CREDENTIAL_ATTEMPTS = 3
# libgit2 waits for ever on a server that takes the connection and then says
# nothing (one behind a stuck proxy, say), which would hold `caspian watch`
# with it, its /healthz still reporting the last reconcile.
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0  # of silence, not of the whole fetch or push


# How far back `last_by` looks for Caspian's own last commit: far beyond
# the user commits that come between two reconciles.
LOOKBACK = 500
# The tips of the branch a mirror keeps, as Caspian saw them and when: enough
# to date what a fast-forward merge brought (`FleetRepo.saw`).
SEEN_TIPS = 200
COMMIT_ID = re.compile(r"[0-9a-f]{40}")


class GitError(Exception):
    pass


class PushRejectedError(GitError):
    """The remote refused the commit (a hook, a protected branch): retrying won't help."""


class RemoteMovedError(GitError):
    """Someone pushed since Caspian fetched: decide again on the new tip."""


class Identity(BaseModel):
    """Who Caspian's commits are by, and the key that signs them (unsigned: None)."""

    model_config = ConfigDict(frozen=True)

    name: str = "caspian-bot"
    email: str = "caspian-bot@users.noreply.invalid"
    signing: SigningKey | None = None

    @field_validator("name", "email")
    @classmethod
    def _fits_a_signature(cls, text: str) -> str:
        # Git writes `name <email> time`: libgit2 refuses an empty part, angle
        # brackets and line breaks, and would at the commit, after a decision.
        if not text.strip():
            raise ValueError("is empty")
        if odd := sorted(set(text) & set("<>\n\r\0")):
            shown = ", ".join(repr(char) for char in odd)
            raise ValueError(f"{text!r} holds {shown}, which a git author cannot")
        return text.strip()


class Snapshot(BaseModel):
    """The files of one commit of the fleet repo."""

    model_config = ConfigDict(frozen=True)

    commit: str
    files: dict[str, bytes]
    # Which of `files` are symbolic links: git holds a link as a blob of the path
    # it points to, which is what `files` has for it.
    links: frozenset[str] = frozenset()
    # Git submodules among them: git holds only a commit of another repo there,
    # so a reconcile sees none of the files a checkout shows below it.
    submodules: frozenset[str] = frozenset()


def branch_refusal(name: str) -> str | None:
    """Why git would not take `name` as a branch's name (None: it would), as
    `git check-ref-format --branch` judges: libgit2 lets a leading "-" and
    "HEAD" through, which git itself refuses."""
    if name.startswith("refs/"):
        return f"give the branch's name ({name.removeprefix('refs/heads/')}), not its ref"
    if (
        name.startswith("-")
        or name == "HEAD"
        or not pygit2.reference_is_valid_name(f"refs/heads/{name}")
    ):
        return (
            f"{name!r} is no branch name git takes (none is HEAD, holds '..', a space, "
            "~ ^ : ? * [ \\ or a control character, begins with - or ., or ends with /, . or "
            ".lock): e.g. caspian/placement"
        )
    return None


def _is_local(url: str) -> bool:
    """A path, not a URL ("scheme://...") or an scp-like "user@host:path"."""
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def default_cache_dir(url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "caspian" / "repos" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials from the environment (never from git), bounded so a wrong key
    cannot loop; per-ref refusals turned into errors."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.refused: list[str] = []
        self.said: list[str] = []  # what the server's hooks wrote ("remote: ..." in git)

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: int
    ) -> pygit2.credentials.Keypair | pygit2.credentials.UserPass:
        self.attempts += 1
        if self.attempts > MAX_CREDENTIAL_ATTEMPTS:
            raise GitError(
                f"authentication to {redact(url)} failed {MAX_CREDENTIAL_ATTEMPTS} times: check "
                "CASPIAN_GIT_TOKEN and CASPIAN_GIT_USERNAME (HTTPS), or the key in ssh-agent"
            )
        token = os.environ.get("CASPIAN_GIT_TOKEN", "").strip()  # as a file gives it, or not
        if token and allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT:
            user = os.environ.get("CASPIAN_GIT_USERNAME", "").strip() or "git"
            return pygit2.UserPass(user, token)
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            return pygit2.KeypairFromAgent(username_from_url or "git")
        raise GitError(
            f"{redact(url)} asks for credentials: set CASPIAN_GIT_TOKEN (HTTPS) or load an "
            "SSH key into ssh-agent"
        )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message is not None:
            self.refused.append(f"{refname}: {message}")

    def sideband_progress(self, string: str) -> None:
        self.said.extend(line.strip() for line in string.splitlines() if line.strip())

    def refusal(self) -> str:
        """The refused refs, with the server's own words on why: a protected
        branch's hook says what it wants ("Changes must be made through a pull
        request")."""
        text = "; ".join(self.refused)
        words = [line for line in self.said if not _PROGRESS.match(line)]
        if words:
            said = redact(" ".join(words))
            text += (
                f" (the server says: {said[:MOST_SAID]}{'...' if len(said) > MOST_SAID else ''})"
            )
        return text


# What a server sends while it takes a push that is progress, not a reason.
_PROGRESS = re.compile(r"(Resolving deltas|Counting objects|Compressing objects|Total \d)")
MOST_SAID = 300


class FleetRepo:
    def __init__(
        self,
        url: str,
        *,
        branch: str = "main",
        cache_dir: Path | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
        root: str = "",
    ) -> None:
        """`root` is the fleet repo's directory within the git repository
        ("" for all of it): every path Caspian reads, writes or looks up is
        taken from there, and nothing outside it changes."""
        # libgit2's timeouts are the process's: the last repo opened sets them.
        pygit2.settings.server_connect_timeout = round(CONNECT_TIMEOUT_S * 1000)
        pygit2.settings.server_timeout = round(read_timeout_s * 1000)
        self.url = url
        self.branch = branch
        # As the shell completes it: ./teams/batch/ is teams/batch, and . the root.
        where = posixpath.normpath(root.strip("/") or ".")
        self.root = "" if where == "." else f"{where}/"
        self.path = cache_dir or default_cache_dir(url)
        if (self.path / "HEAD").exists():
            self.repo = pygit2.Repository(str(self.path))
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.repo = pygit2.init_repository(str(self.path), bare=True)
        if "origin" in self.repo.remotes.names():
            self.repo.remotes.set_url("origin", url)
        else:
            self.repo.remotes.create("origin", url, "+refs/heads/*:refs/remotes/origin/*")

    @property
    def _memo(self) -> Path:
        """Where the mirror keeps what the last decision on this branch (and
        fleet directory) answered: beside git's files, never in a commit."""
        key = hashlib.sha256(f"{self.branch}\n{self.root}".encode()).hexdigest()[:16]
        return self.path / "caspian" / f"answered-{key}"

    def remembered(self) -> str | None:
        """The digest `remember` kept; None where none was, or where it
        reads as no digest."""
        try:
            text = self._memo.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if DIGEST.fullmatch(text) else None

    def remember(self, digest: str) -> str | None:
        """Keep `digest` (the problem a decision answered) for the next
        reconcile of this branch, in this process or a later one. Says why
        where it cannot: the next reconcile then solves again."""
        return _write_whole(self._memo, digest + "\n")

    def fetch(self) -> Snapshot:
        """Fetch the remote and read the fleet files at the tip of its branch."""
        commit = self.repo[self.fetch_tip()].peel(pygit2.Commit)
        files: dict[str, bytes] = {}
        links: set[str] = set()
        submodules: set[str] = set()
        tree = self._fleet_tree(commit.tree)
        if tree is None:
            raise GitError(
                f"{self.root.rstrip('/')}/ is no directory at the tip of {self.branch}: "
                "check --path, the fleet repo's directory within the git repo"
            )
        if not any(part.rstrip("/") in tree for part in READ_PREFIXES):
            self._no_fleet_here(tree)
        _read_tree(tree, files=files, links=links, submodules=submodules)
        return Snapshot(
            commit=str(commit.id),
            files=files,
            links=frozenset(links),
            submodules=frozenset(submodules),
        )

    def _no_fleet_here(self, tree: pygit2.Tree) -> None:
        """Where the fleet's directory holds nothing of a fleet but a directory
        below it holds a caspian.yaml, --path names the wrong one: say which.
        Otherwise the fleet is new, and loading it says what is missing."""
        below = _fleets_below(tree)
        if below:
            where = self.root.rstrip("/") or "the repo's root"
            paths = [self.root + path for path in below]
            raise GitError(
                f"{where} holds no caspian.yaml, but {' and '.join(paths)} "
                f"{'does' if len(paths) == 1 else 'do'}: give --path {paths[0]}"
            )

    def _fleet_tree(self, tree: pygit2.Tree) -> pygit2.Tree | None:
        """The tree of the fleet repo's directory in a commit's `tree`; None
        where the commit has no such directory."""
        if not self.root:
            return tree
        name = self.root.rstrip("/")
        if name not in tree:
            return None
        found = tree[name]
        return found if isinstance(found, pygit2.Tree) else None

    def commit(
        self,
        *,
        parent: str,
        files: Mapping[str, bytes],
        owned: tuple[str, ...],
        message: str,
        author: Identity,
        now: datetime,
    ) -> str | None:
        """Replace everything under the `owned` prefixes of `parent` with `files`.
        Returns the new commit id, or None when the tree would not change."""
        parent_commit = self.repo[parent].peel(pygit2.Commit)
        index = pygit2.Index()
        index.read_tree(parent_commit.tree)
        files = {self.root + path: data for path, data in files.items()}
        owned = tuple(self.root + prefix for prefix in owned)
        for entry in list(index):
            if entry.path.startswith(owned) and entry.path not in files:
                index.remove(entry.path)
        for path, data in sorted(files.items()):
            index.add(pygit2.IndexEntry(path, self.repo.create_blob(data), FileMode.BLOB))
        tree = index.write_tree(self.repo)
        if tree == parent_commit.tree.id:
            return None
        when = int(now.timestamp())
        signature = pygit2.Signature(author.name, author.email, when, 0)
        return _create_commit(
            self.repo, None, signature, message, tree, [parent_commit.id], key=author.signing
        )

    def fetch_tip(self) -> str:
        """Fetch, and return the remote branch's commit without reading its files."""
        try:
            # Pruned: a branch deleted there (a merged proposal's, say) is not
            # taken for one that still holds what it held.
            self.repo.remotes["origin"].fetch(callbacks=_Callbacks(), prune=FetchPrune.PRUNE)
        except (pygit2.GitError, OSError) as error:
            why = redact(str(error))
            if _is_local(self.url) and not Path(self.url).exists():
                # libgit2 says "unsupported URL protocol" for a path that is not there.
                why = "no such directory (give the path of a bare repo, or a git URL)"
            raise GitError(f"cannot fetch {redact(self.url)}: {why}") from None
        self._fold_objects()
        ref = self.repo.references.get(f"refs/remotes/origin/{self.branch}")
        if ref is None:
            raise GitError(self._no_branch())
        return str(ref.target)

    def _fold_objects(self) -> None:
        """The mirror's packs and loose objects folded where there are too many."""
        if _fold(self.repo, self.path / "objects", where="the mirror"):
            # The packs removed are let go of here too: the object database is
            # read again, with the new pack, when next asked.
            self.repo.free()

    def _no_branch(self) -> str:
        prefix = "refs/remotes/origin/"
        branches = sorted(
            name[len(prefix) :]
            for name in self.repo.references
            if name.startswith(prefix) and name != f"{prefix}HEAD"
        )
        where = f"{redact(self.url)} has no branch {self.branch!r}"
        if not branches:
            return f"{where}: push a fleet repo to it first (`caspian init DIR` makes one)"
        # A fresh `git init` names its branch after the user's git config, often
        # "master", so the likeliest fix is the option, not a new push.
        return f"{where} (it has: {', '.join(branches)}): pass --branch with one of them"

    def remote_tree(self, branch: str) -> str | None:
        """The tree of a remote branch as last fetched, or None if it has none."""
        tip = self.remote_tip(branch)
        return None if tip is None else self.tree_of(tip)

    def remote_tip(self, branch: str) -> str | None:
        """The commit of a remote branch as last fetched, or None if it has none."""
        ref = self.repo.references.get(f"refs/remotes/origin/{branch}")
        return None if ref is None else str(self.repo[ref.target].peel(pygit2.Commit).id)

    def file_at(self, commit: str, path: str) -> bytes | None:
        """One fleet file (`path` within the fleet repo) at `commit`; None
        where it has none."""
        tree = self._fleet_tree(self.repo[commit].peel(pygit2.Commit).tree)
        if tree is None:
            return None
        try:
            found = tree[path]
        except KeyError:
            return None
        blob = self.repo[found.id]
        return blob.data if isinstance(blob, pygit2.Blob) else None

    def work_tree(self, path: Path, *, tip: str) -> WorkTree:
        """The fleet files of the work tree at `path` (a clone of the fleet
        repo, any directory of it), as they stand on disk, committed or not
        (git's ignore rules kept), with those of its base: where its history
        meets that of the branch's `tip` (`_base`). Where it does not, within
        `LOOKBACK` commits, the base is None."""
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise GitError(f"{path} is in no git work tree: give a clone of the fleet repo")
        work = pygit2.Repository(found)
        if work.is_bare or work.workdir is None:
            raise GitError(f"{path} is a bare repository: give a clone, which has a work tree")
        if work.head_is_unborn:
            raise GitError(
                f"{path}: its repository has no commit yet: give a clone of the fleet repo"
            )
        head = work.head.peel(pygit2.Commit)
        files, links = self._fleet_files(head.tree)
        untracked = pygit2.enums.DiffOption.INCLUDE_UNTRACKED | (
            pygit2.enums.DiffOption.RECURSE_UNTRACKED_DIRS
        )
        for delta in head.tree.diff_to_workdir(flags=untracked).deltas:
            gone = delta.status == pygit2.enums.DeltaStatus.DELETED
            whole = (delta.old_file if gone else delta.new_file).path
            name = whole.removeprefix(self.root)
            if not whole.startswith(self.root) or not _read_here(name):
                continue
            files.pop(name, None)
            links.discard(name)
            disk = Path(work.workdir, whole)
            if gone or delta.new_file.mode == FileMode.COMMIT:
                continue
            if disk.is_symlink():  # git holds a link as the path it points to
                files[name] = os.fsencode(disk.readlink())
                links.add(name)
            else:
                files[name] = disk.read_bytes()
        if POLICY not in files:  # another repo's clone: every job would read as deleted
            raise GitError(
                f"{path}: its work tree has no {self.root}{POLICY}: give a clone of the fleet "
                "repo (and --path, where the fleet is a directory of it)"
            )
        base = self._base(work, head, tip=pygit2.Oid(hex=tip))
        return WorkTree(
            where=str(path),
            base=None if base is None else str(base),
            base_files={} if base is None else self._fleet_files(self.repo[base].tree)[0],
            files=files,
            links=frozenset(links),
        )

    def _base(
        self, work: pygit2.Repository, head: pygit2.Commit, *, tip: pygit2.Oid
    ) -> pygit2.Oid | None:
        """Where the history of `head` (in the `work` repo) meets the branch's
        `tip`: of the newest commits of it the mirror holds (a pushed branch's
        tip, or the branch's own commit a local one was made on), the merge
        base with `tip` that is newest. A pull request's merge commit, made of
        the branch and the pull request's, so meets it at the branch's, not at
        where the pull request forked. None where they do not meet within
        `LOOKBACK` commits of `head`, or at all."""
        held: list[pygit2.Oid] = []
        seen: set[pygit2.Oid] = set()
        waiting = [head.id]
        while waiting and len(seen) < LOOKBACK:
            oid = waiting.pop(0)
            if oid in seen:
                continue
            seen.add(oid)
            if oid in self.repo:  # fetched: so is all it descends from
                held.append(oid)
            elif oid in work:  # past a shallow clone's edge, neither holds it
                waiting.extend(work[oid].peel(pygit2.Commit).parent_ids)
        bases = {base for oid in held if (base := self.repo.merge_base(tip, oid)) is not None}
        for base in bases:
            if all(base == other or self.repo.descendant_of(base, other) for other in bases):
                return base
        return next(iter(sorted(bases, key=str)), None)

    def _fleet_files(self, tree: pygit2.Tree) -> tuple[dict[str, bytes], set[str]]:
        """The files of the fleet's directory in a commit's `tree` that Caspian
        reads, and which of them are links; none where it has no such directory."""
        files: dict[str, bytes] = {}
        links: set[str] = set()
        found = self._fleet_tree(tree)
        if found is not None:
            _read_tree(found, files=files, links=links, submodules=set())
        return files, links

    def others_on(self, branch: str, *, base: str, bot: str) -> list[str]:
        """The commits of the remote `branch`, as last fetched, that `base`
        lacks and whose author's email is not `bot`, newest first ("1a2b3c4d5e6f
        by Name"); none where the branch is not there."""
        tip = self.remote_tip(branch)
        if tip is None:
            return []
        walker = self.repo.walk(pygit2.Oid(hex=tip), pygit2.enums.SortMode.TOPOLOGICAL)
        walker.hide(pygit2.Oid(hex=base))
        return [f"{c.id!s:.12} by {c.author.name}" for c in walker if c.author.email != bot]

    def last_by(
        self, email: str, path: str, *, since: str, most: int = LOOKBACK
    ) -> tuple[str, bytes | None] | None:
        """The newest commit reachable from `since` whose author's email is
        `email`, within `most` commits, with its fleet file `path`; None where
        none is that near."""
        order = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME
        walker = self.repo.walk(pygit2.Oid(hex=since), order)
        # A topological walk sorts all it may reach before it yields the first
        # commit: a reconcile took longer with every commit the fleet repo had
        # (45 ms at 9,000). Hiding what lies `most` first parents back bounds it.
        boundary = self.repo[since].peel(pygit2.Commit)
        for _ in range(most):
            if not boundary.parents:
                break
            boundary = boundary.parents[0]
        else:
            walker.hide(boundary.id)
        for count, commit in enumerate(walker):
            if count >= most:
                return None
            if commit.author.email == email:
                return str(commit.id), self.file_at(str(commit.id), path)
        return None

    @property
    def _tips(self) -> Path:
        """Where the mirror keeps the branch's tips as Caspian saw them."""
        key = hashlib.sha256(self.branch.encode()).hexdigest()[:16]
        return self.path / "caspian" / f"tips-{key}"

    def saw(self, commit: str, *, at: datetime) -> str | None:
        """Note that the branch's tip was `commit` at `at`, where the last tip
        noted is another (the last `SEEN_TIPS` are kept). A commit merged by
        fast-forward keeps the time it was made, hours before a reviewer
        merged it: `held_since` dates it from when a tip that holds it was
        first seen. Says why where it cannot write."""
        seen = self._seen()
        if seen and seen[-1][0] == commit:
            return None
        kept = [*seen[-(SEEN_TIPS - 1) :], (commit, at.astimezone(UTC))]
        return _write_whole(self._tips, "".join(f"{c} {t.isoformat()}\n" for c, t in kept))

    def _seen(self) -> list[tuple[str, datetime]]:
        """The tips `saw` noted, oldest first; a line that does not read is passed over."""
        try:
            lines = self._tips.read_text(encoding="ascii").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        seen = []
        for line in lines:
            commit, _, at = line.partition(" ")
            try:
                when = datetime.fromisoformat(at)
            except ValueError:
                continue
            if COMMIT_ID.fullmatch(commit) and when.tzinfo is not None:
                seen.append((commit, when))
        return seen

    def _arrived(
        self, commit: pygit2.Commit, seen: Sequence[tuple[str, datetime]], *, now: datetime
    ) -> datetime | None:
        """When the branch took `commit`, as the tips seen up to `now` tell:
        when the first of them that holds it was seen, where the first seen
        did not. None where none tells (the first holds it: it came before).
        A branch moves forward, so once a tip holds it, the later ones do:
        halving the tips between asks `_holds` a few times, where asking
        each took 0.3 s over 200 tips."""
        tips = [(tip, at) for tip, at in seen if at <= now]
        if not tips or self._holds(tips[0][0], commit.id):
            return None
        without, holding = 0, len(tips)  # tips[without] does not hold it; tips[holding] does
        while holding - without > 1:
            middle = (without + holding) // 2
            if self._holds(tips[middle][0], commit.id):
                holding = middle
            else:
                without = middle
        return tips[holding][1] if holding < len(tips) else None

    def _holds(self, tip: str, commit: pygit2.Oid) -> bool:
        """Whether `commit` is `tip` or one of its ancestors; a tip the
        mirror no longer has (the branch was pushed over) holds nothing."""
        oid = pygit2.Oid(hex=tip)
        try:
            return oid == commit or self.repo.descendant_of(oid, commit)
        except (pygit2.GitError, KeyError, ValueError):
            return False

    def held_since(
        self,
        commit: str,
        paths: Collection[str],
        *,
        as_is: bool = False,
        now: datetime | None = None,
        most: int = LOOKBACK,
    ) -> dict[str, datetime]:
        """Since when the branch has held each fleet file of `paths` that
        `commit` holds (`as_is`: as it is there, byte for byte): the time of the
        oldest commit of the unbroken run of first parents back from `commit`
        that holds it, as a merged pull request brings it to the branch when
        merged. Given `now`, a commit is dated from when the tips `saw` noted
        up to then first held it, where that is later: a fast-forward merge
        brings a commit made before it. A run longer than `most` first
        parents counts from the one `most` back."""
        # By directory: a directory whose tree did not change holds the same
        # files, and a name looked up in its tree costs a hundredth of a path
        # looked up from the root (which reads each tree on the way down).
        left: dict[str, dict[str, str]] = {}
        for path in paths:
            folder, _, name = (self.root + path).rpartition("/")
            left.setdefault(folder, {})[name] = path
        current = self.repo[commit].peel(pygit2.Commit)
        trees = {folder: _subtree(current.tree, folder) for folder in left}
        # Each file's blob at `commit`, where it counts only as it is there.
        blobs: dict[tuple[str, str], pygit2.Oid] = {}
        for folder, names in left.items():
            tree = trees[folder]
            left[folder] = {n: p for n, p in names.items() if tree is not None and n in tree}
            if as_is and tree is not None:
                blobs.update(((folder, n), tree[n].id) for n in left[folder])
        since: dict[str, pygit2.Commit] = {}
        for _ in range(most):
            left = {folder: names for folder, names in left.items() if names}
            parent = current.parents[0] if current.parents else None
            if not left or parent is None:
                break
            for folder, names in left.items():
                before, after = _subtree(parent.tree, folder), trees[folder]
                if before is not None and after is not None and before.id == after.id:
                    continue
                for name in [
                    n
                    for n in names
                    if before is None
                    or n not in before
                    or (as_is and before[n].id != blobs[(folder, n)])
                ]:
                    since[names.pop(name)] = current
                trees[folder] = before
            current = parent
        since.update((p, current) for names in left.values() for p in names.values())
        seen = self._seen() if now is not None else []
        dated: dict[str, datetime] = {}  # by commit, each dated once
        for first in since.values():
            if str(first.id) not in dated:
                arrived = self._arrived(first, seen, now=now) if now is not None else None
                made = _committed(first)
                dated[str(first.id)] = max(made, arrived) if arrived is not None else made
        return {path: dated[str(first.id)] for path, first in since.items()}

    def tree_of(self, commit: str) -> str:
        return str(self.repo[commit].peel(pygit2.Commit).tree.id)

    def push(self, commit: str, *, branch: str | None = None) -> None:
        """Fast-forward the remote `branch` (default: the main branch) to `commit`;
        RemoteMovedError when it moved meanwhile, PushRejectedError when the server
        refused. Only a proposal branch, never the main one, is force-pushed."""
        branch = branch or self.branch
        force = "+" if branch != self.branch else ""
        if not force:
            self._refuse_checked_out_branch()
        local = f"refs/caspian/push/{branch}"
        self.repo.references.create(local, pygit2.Oid(hex=commit), force=True)
        callbacks = _Callbacks()
        try:
            self.repo.remotes["origin"].push(
                [f"{force}{local}:refs/heads/{branch}"], callbacks=callbacks
            )
        except pygit2.GitError as error:
            self._raise_refusal(commit, redact(str(error)))
        if callbacks.refused:
            self._raise_refusal(commit, callbacks.refusal())
        self.repo.references.create(
            f"refs/remotes/origin/{branch}", pygit2.Oid(hex=commit), force=True
        )
        if _is_local(self.url):
            # git's receive-pack runs `git gc --auto` in a repository pushed to;
            # libgit2 does not, and a fleet repo on a local path took one pack
            # a push, each of which every fetch from it opened.
            with contextlib.suppress(pygit2.GitError, OSError):  # the push is done
                remote = pygit2.Repository(self.url)
                try:
                    _fold(remote, Path(remote.path) / "objects", where=redact(self.url))
                finally:
                    remote.free()

    def delete_branch(self, branch: str) -> bool:
        """Delete a proposal `branch` on the remote, as last fetched; False
        where it has none. The main branch is never deleted."""
        if branch == self.branch:
            raise GitError(f"refusing to delete {branch!r}, the fleet repo's own branch")
        if self.remote_tree(branch) is None:
            return False
        callbacks = _Callbacks()
        try:
            self.repo.remotes["origin"].push([f":refs/heads/{branch}"], callbacks=callbacks)
        except pygit2.GitError as error:
            raise PushRejectedError(
                f"{redact(self.url)} refused to delete {branch}: {redact(str(error))}"
            ) from None
        if callbacks.refused:
            raise PushRejectedError(
                f"{redact(self.url)} refused to delete {branch}: {callbacks.refusal()}"
            )
        # libgit2 drops the remote-tracking branch with it, as git does.
        return True

    def _raise_refusal(self, commit: str, text: str) -> None:
        """A push did not land: because someone pushed first (decide again), or
        because the server refused (final). libgit2's words for the first vary by
        transport, so ask the remote where its branch is now."""
        parent = self.repo[commit].peel(pygit2.Commit).parent_ids[0]
        if self._remote_moved_from(parent):
            raise RemoteMovedError(f"{redact(self.url)} moved on: {text}")
        raise PushRejectedError(f"{redact(self.url)} refused the push: {text}")

    def _remote_moved_from(self, parent: pygit2.Oid) -> bool:
        """Whether the remote branch is no longer at `parent` (libgit2's words for a
        non-fast-forward vary by transport, so ask the remote instead)."""
        try:
            self.repo.remotes["origin"].fetch(callbacks=_Callbacks())
        except pygit2.GitError:
            return False
        ref = self.repo.references.get(f"refs/remotes/origin/{self.branch}")
        return ref is not None and ref.target != parent

    def _refuse_checked_out_branch(self) -> None:
        """A push into a non-bare repo's checked-out branch would leave its work tree
        silently behind (git refuses it too): ask for a bare repo instead."""
        path = Path(self.url.removeprefix("file://"))
        if not path.is_dir():
            return
        try:
            target = pygit2.Repository(str(path))
        except pygit2.GitError:
            return
        try:
            checked_out = (
                not target.is_bare
                and not target.head_is_unborn
                and target.head.shorthand == self.branch
            )
        finally:
            # A pygit2 Repository lives in a reference cycle until Python's
            # collector comes by, holding the files of every pack it opened.
            target.free()
        if checked_out:
            raise GitError(
                f"{path} is a work tree with {self.branch!r} checked out: point --repo at a "
                "bare repository or a server (git clone --bare), as you would for git push"
            )

    def show(self, commit: str) -> str:
        """Like `git log --stat -1 COMMIT`."""
        c = self.repo[commit].peel(pygit2.Commit)
        when = datetime.fromtimestamp(c.author.time, UTC).strftime("%a %b %d %H:%M:%S %Y +0000")
        diff = self.repo.diff(c.parents[0], c) if c.parents else c.tree.diff_to_tree(swap=True)
        stats = _stat(diff)
        body = "\n".join(("    " + line).rstrip() for line in c.message.rstrip().splitlines())
        return (
            f"commit {c.id}\nAuthor: {c.author.name} <{c.author.email}>\nDate:   {when}\n\n"
            f"{body}\n\n{stats}"
        )

    def revisions(self, paths: Sequence[str]) -> Iterator[Revision]:
        """The commits of the branch, as last fetched, that changed any of
        `paths`, newest first, as `git log -- PATHS` lists them: a merge only
        where it matches none of its parents there (a pull request merged
        shows as the commit it merged)."""
        ref = self.repo.references.get(f"refs/remotes/origin/{self.branch}")
        if ref is None:
            return
        order = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME
        paths = [self.root + path for path in paths]
        for commit in self.repo.walk(ref.target, order):
            blobs = _blobs(commit.tree, paths)
            parents = [_blobs(parent.tree, paths) for parent in commit.parents]
            if blobs in parents or (not parents and not any(blobs.values())):
                continue
            yield Revision(
                commit=str(commit.id),
                author=commit.author.name,
                time=_committed(commit),
                message=commit.message,
                files={
                    path.removeprefix(self.root): None
                    if blob is None
                    else self.repo[blob].read_raw()
                    for path, blob in blobs.items()
                },
            )

    def former_paths(self, path: str) -> list[str]:
        """The paths the file at `path` had before, newest first, as `git log
        --follow` finds them: where a commit of the branch added it, the file
        that commit deleted with the most like content (libgit2's rename
        detection) was it before."""
        ref = self.repo.references.get(f"refs/remotes/origin/{self.branch}")
        if ref is None:
            return []
        found: list[str] = []
        now = self.root + path
        order = pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME
        for commit in self.repo.walk(ref.target, order):
            if not commit.parents or now not in commit.tree:
                continue
            if any(now in parent.tree for parent in commit.parents):
                continue
            diff = commit.parents[0].tree.diff_to_tree(commit.tree)
            diff.find_similar()
            renamed = [
                delta.old_file.path
                for delta in diff.deltas
                if delta.status == pygit2.enums.DeltaStatus.RENAMED and delta.new_file.path == now
            ]
            if not renamed or not renamed[0].startswith(self.root):
                break  # added afresh, or from outside the fleet: its history begins here
            now = renamed[0]
            found.append(now.removeprefix(self.root))
        return found


# Object directories whose fold failed in this process: not tried again, where
# a fleet repo on a read-only path would otherwise warn at every push.
_UNFOLDABLE: set[Path] = set()


def _fold(repo: pygit2.Repository, objects: Path, *, where: str) -> bool:
    """Fold the packs and loose objects of `objects` where there are too many
    (`packs.due`): the new pack is written whole, and checked to hold every
    object, before anything it holds is removed. Where that fails, nothing is
    removed. Whether anything was."""
    if objects in _UNFOLDABLE:
        return False
    fold = packs.due(objects)
    if fold is None or not (fold.packs or fold.loose):
        return False
    try:
        wanted = {name for pack in fold.packs for name in packs.names(pack.idx)}
    except (OSError, ValueError):  # removed by a fold beside this one, say
        return False
    wanted |= {packs.loose_name(path) for path in fold.loose}
    before = set((objects / "pack").glob("pack-*.idx"))

    def add(builder: pygit2.PackBuilder) -> None:
        for name in sorted(wanted):
            builder.add(pygit2.Oid(raw=name))

    try:
        repo.pack(pack_delegate=add)
        written = set((objects / "pack").glob("pack-*.idx")) - before
        held = {name for idx in written for name in packs.names(idx)}
    except (pygit2.GitError, KeyError, OSError, ValueError) as error:
        _UNFOLDABLE.add(objects)
        log.warning("the objects of %s were not folded into one pack: %s", where, error)
        return False
    if not written or not wanted <= held:
        log.warning("the new pack of %s lacks objects it was to hold: nothing removed", where)
        return False
    for path in [*(f for pack in fold.packs for f in pack.files), *fold.loose]:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            path.unlink()
    log.info(
        "folded %d packs and %d loose objects of %s into one pack",
        len(fold.packs),
        len(fold.loose),
        where,
    )
    return True


def _subtree(tree: pygit2.Tree, folder: str) -> pygit2.Tree | None:
    """The directory `folder` of `tree` (the root for ""), or None where it is
    not one there."""
    if not folder:
        return tree
    try:
        found = tree[folder]
    except KeyError:
        return None
    return found if isinstance(found, pygit2.Tree) else None


def _write_whole(path: Path, text: str) -> str | None:
    """Write `text` (ASCII) to `path` whole or not at all: through a file of
    this process's own, so that a reconcile running beside (a `caspian plan`
    beside `caspian watch`) neither reads a part nor writes into it. Says why
    where it cannot."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="ascii")
        partial.replace(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return f"cannot write {path}: {error.strerror or error}"
    return None


def _committed(commit: pygit2.Commit) -> datetime:
    return datetime.fromtimestamp(commit.committer.time, UTC)


def _blobs(tree: pygit2.Tree, paths: Sequence[str]) -> dict[str, pygit2.Oid | None]:
    return {path: tree[path].id if path in tree else None for path in paths}


def _stat(diff: pygit2.Diff, *, width: int = 100) -> str:
    """`git diff --stat` output (libgit2's own formatter draws '-' bars for files
    with no deletions)."""
    rows = []
    for patch in diff:
        assert patch is not None  # a diff of trees has a patch for every file
        _, added, deleted = patch.line_stats
        rows.append((patch.delta.new_file.path or patch.delta.old_file.path, added, deleted))
    if not rows:
        return " 0 files changed\n"
    name_width = max(len(r[0]) for r in rows)
    most = max(a + d for _, a, d in rows) or 1
    bar_width = max(20, width - name_width - 10)
    lines = []
    for path, added, deleted in rows:
        scale = min(1.0, bar_width / most)
        plus = "+" * (max(1, round(added * scale)) if added else 0)
        minus = "-" * (max(1, round(deleted * scale)) if deleted else 0)
        lines.append(f" {path.ljust(name_width)} | {added + deleted:4} {plus}{minus}")
    added = sum(r[1] for r in rows)
    deleted = sum(r[2] for r in rows)
    summary = f" {len(rows)} file{'s' if len(rows) != 1 else ''} changed"
    if added:
        summary += f", {added} insertion{'s' if added != 1 else ''}(+)"
    if deleted:
        summary += f", {deleted} deletion{'s' if deleted != 1 else ''}(-)"
    return "\n".join([*lines, summary]) + "\n"


def _create_commit(
    repo: pygit2.Repository,
    ref: str | None,
    signature: pygit2.Signature,
    message: str,
    tree: pygit2.Oid,
    parents: list[pygit2.Oid | str],
    *,
    key: SigningKey | None,
) -> str:
    """A commit by `signature`, signed with `key` when there is one; `ref`, when
    given, is moved to it."""
    if key is None:
        return str(repo.create_commit(ref, signature, signature, message, tree, parents))
    # The commit's text, to be signed (pygit2's type stubs say Oid).
    payload: str = repo.create_commit_string(signature, signature, message, tree, parents)  # type: ignore[assignment]
    try:
        commit = repo.create_commit_with_signature(payload, sign(payload, key=key))
    except SigningError as error:
        raise GitError(f"cannot sign the commit: {error}") from None
    if ref is not None:
        repo.references.create(ref, commit, force=True)
    return str(commit)


def _read_tree(
    tree: pygit2.Tree,
    prefix: str = "",
    *,
    files: dict[str, bytes],
    links: set[str],
    submodules: set[str],
) -> None:
    """Fill `files`, `links` and `submodules` with what `tree` holds under
    READ_PREFIXES, and the manifests that could be AppWrappers or spokes
    astray (at the fleet's top, or in job/), so that loading can name them."""
    for entry in tree:
        path = f"{prefix}{entry.name}"  # every entry of a tree has a name
        if isinstance(entry, pygit2.Tree):
            if (
                (path + "/").startswith(READ_PREFIXES)
                or any(p.startswith(path + "/") for p in READ_PREFIXES)
                or (not prefix and astray_dir(path))
            ):
                _read_tree(entry, path + "/", files=files, links=links, submodules=submodules)
        elif not _read_here(path):
            continue
        elif entry.filemode == FileMode.COMMIT:
            submodules.add(path)
        elif isinstance(entry, pygit2.Blob):
            files[path] = entry.data
            if entry.filemode == FileMode.LINK:
                links.add(path)


def origin_url(path: Path) -> str | None:
    """The URL of the remote named origin of the git work tree at `path`
    (any directory of it); None where it is in none, or has no such remote."""
    found = pygit2.discover_repository(str(path))
    if found is None:
        return None
    remotes = pygit2.Repository(found).remotes
    return remotes["origin"].url if "origin" in remotes.names() else None


def _read_here(path: str) -> bool:
    """Whether a file at `path` (within the fleet repo) is one Caspian reads."""
    return path.startswith(READ_PREFIXES) or astray(path)


MOST_TREES_SEARCHED = 2000


def _fleets_below(tree: pygit2.Tree, *, depth: int = 3, most: int = 2) -> list[str]:
    """Up to `most` directories under `tree`, `depth` levels down at most and the
    shallowest first, that hold a caspian.yaml. Only trees are read, and not
    many: a monorepo may hold thousands."""
    found: list[str] = []
    level = [("", tree)]
    visited = 0
    for _ in range(depth):
        deeper = []
        for prefix, node in level:
            for entry in node:
                if not isinstance(entry, pygit2.Tree) or visited >= MOST_TREES_SEARCHED:
                    continue
                visited += 1
                path = f"{prefix}{entry.name}"
                if POLICY in entry:
                    found.append(path)
                deeper.append((path + "/", entry))
        if found:
            return sorted(found)[:most]
        level = deeper
    return []


def create_bare_repo(
    path: Path, *, files: Mapping[str, bytes], message: str, author: Identity, branch: str = "main"
) -> str:
    """A new bare repository at `path` whose `branch` holds `files` in one commit."""
    repo = pygit2.init_repository(str(path), bare=True, initial_head=branch)
    index = pygit2.Index()
    for name, data in sorted(files.items()):
        index.add(pygit2.IndexEntry(name, repo.create_blob(data), FileMode.BLOB))
    tree = index.write_tree(repo)
    signature = pygit2.Signature(author.name, author.email)
    return _create_commit(
        repo, f"refs/heads/{branch}", signature, message, tree, [], key=author.signing
    )


def commit_to_bare(
    path: Path,
    *,
    files: Mapping[str, bytes],
    message: str,
    author: Identity,
    branch: str = "main",
    when: datetime | None = None,
) -> str:
    """Add or replace `files` on `branch` of the bare repo at `path`, as a user's
    push would land (used by the benchmarks), made `when` (by default now)."""
    repo = pygit2.Repository(str(path))
    try:
        parent = repo.references[f"refs/heads/{branch}"].peel(pygit2.Commit)
        index = pygit2.Index()
        index.read_tree(parent.tree)
        for name, data in sorted(files.items()):
            index.add(pygit2.IndexEntry(name, repo.create_blob(data), FileMode.BLOB))
        signature = (
            pygit2.Signature(author.name, author.email)
            if when is None
            else pygit2.Signature(author.name, author.email, int(when.timestamp()), 0)
        )
        tree = index.write_tree(repo)
        return str(
            repo.create_commit(
                f"refs/heads/{branch}", signature, signature, message, tree, [parent.id]
            )
        )
    finally:
        # Its packs' files let go of now, not when Python's collector comes by:
        # `caspian bench soak` counts the open files of Caspian, not its own.
        repo.free()
