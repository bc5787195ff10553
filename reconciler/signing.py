"""Signing placement commits: the only module that runs an outside program.

Git signs a commit by putting a detached signature of the commit object's text
into its `gpgsig` header, whatever the format. Caspian makes the same
signature with the same programs git calls (`gpg` for OpenPGP, `ssh-keygen -Y
sign` for SSH keys), so `git verify-commit`, `git log --show-signature` and a
forge's "Verified" badge treat the bot's commits like anyone's.

The key never passes through Caspian: for OpenPGP it is a key id in the
keyring of `GNUPGHOME`; for SSH a private key file, or a public key file whose
private half is in ssh-agent. Both are named by environment variables and live
outside git.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict

# The namespace git signs commits in (`ssh-keygen -Y sign -n git`): a signature
# made for another namespace does not verify as a commit's.
SSH_NAMESPACE = "git"
TIMEOUT_S = 30.0
PROGRAMS = {"openpgp": "gpg", "ssh": "ssh-keygen"}


class SigningError(Exception):
    """The commit cannot be signed: nothing is committed."""


SigningFormat = Literal["openpgp", "ssh"]


class SigningKey(BaseModel):
    """How placement commits are signed (git's `gpg.format` and `user.signingKey`)."""

    model_config = ConfigDict(frozen=True)

    format: SigningFormat
    key: str  # an OpenPGP key id or fingerprint; an SSH key file's path


def from_settings(key: str | None, format_name: str | None) -> SigningKey | None:
    """The signing key named by CASPIAN_SIGNING_KEY and CASPIAN_SIGNING_FORMAT,
    None when no key is named; SigningError saying what to fix otherwise."""
    if not key:
        if format_name:
            raise SigningError(
                "CASPIAN_SIGNING_FORMAT is set but CASPIAN_SIGNING_KEY is not: name the key "
                "(an OpenPGP key id, or an SSH key file) or unset both"
            )
        return None
    chosen = format_name or "openpgp"  # git's default
    if chosen not in PROGRAMS:
        raise SigningError(
            f"CASPIAN_SIGNING_FORMAT={chosen!r} is not a signing format: use openpgp or ssh"
        )
    if chosen == "ssh" and not Path(key).expanduser().is_file():
        raise SigningError(
            f"CASPIAN_SIGNING_KEY: no SSH key file at {key}: give the path of a private key, "
            "or of a public key whose private key is loaded into ssh-agent"
        )
    return SigningKey(
        format=cast(SigningFormat, chosen),
        key=str(Path(key).expanduser()) if chosen == "ssh" else key,
    )


def sign(payload: str, *, key: SigningKey) -> str:
    """An ASCII-armoured detached signature of `payload` (a commit object's text)."""
    program = shutil.which(PROGRAMS[key.format])
    if program is None:
        raise SigningError(
            f"signing with {key.format} needs {PROGRAMS[key.format]} on PATH: install it, "
            "or unset CASPIAN_SIGNING_KEY"
        )
    if key.format == "ssh":
        command = [program, "-Y", "sign", "-n", SSH_NAMESPACE, "-f", key.key]
    else:
        command = [program, "--batch", "--yes", "--armor", "--detach-sign", "-u", key.key]
    try:
        done = subprocess.run(
            command,
            input=payload.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SigningError(
            f"{PROGRAMS[key.format]} did not sign within {TIMEOUT_S:.0f}s: a key that asks "
            "for a passphrase cannot be used unattended (use an agent, or a key without one)"
        ) from None
    signature = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "-----BEGIN" not in signature:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise SigningError(
            f"{PROGRAMS[key.format]} could not sign with CASPIAN_SIGNING_KEY={key.key}: "
            f"{reason[-1] if reason else f'exit {done.returncode}'}"
        )
    return signature
