"""The files Caspian owns (rendered/, status/) carry a header with the digest of
what follows it, so a hand edit is told from Caspian's own writing without
history or a re-render: `caspian validate` names it, and a reconcile refuses a
hand-edited ledger and rewrites hand-edited manifests. A guard against
accidents (a merge resolved by hand, a quick fix in the wrong place), not
against someone who recomputes the digest. Pure."""

from __future__ import annotations

import hashlib

OWNED_PREFIXES = ("rendered/", "status/")
HEADER = "# Owned by Caspian: rewritten at every reconcile, do not edit by hand.\n"
DIGEST = "# caspian.dev/digest: sha256:"


def is_owned(path: str) -> bool:
    return path.startswith(OWNED_PREFIXES)


def seal(body: bytes) -> bytes:
    """`body` under the header and its digest."""
    return f"{HEADER}{DIGEST}{_digest(body)}\n".encode() + body


def hand_edit(raw: bytes) -> str | None:
    """Why `raw` is not as Caspian wrote it, or None."""
    if not raw.replace(b"\r\n", b"\n").startswith(HEADER.encode()):
        return "Caspian did not write it (it lacks Caspian's header)"
    if edited(raw):
        return "edited by hand (it no longer matches the digest Caspian wrote)"
    return None


def edited(raw: bytes) -> bool:
    """True where `raw` has Caspian's header and digest and the rest does not
    match it. A header without a digest is from before digests were written.
    A checkout with CRLF line ends (git's autocrlf on Windows) is no edit."""
    raw = raw.replace(b"\r\n", b"\n")
    if not raw.startswith(HEADER.encode()):
        return False
    rest = raw[len(HEADER.encode()) :]
    if not rest.startswith(DIGEST.encode()):
        return False
    line, _, body = rest.partition(b"\n")
    return line[len(DIGEST) :] != _digest(body).encode()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]
