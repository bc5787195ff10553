"""Signed placement commits, checked by git itself (`git verify-commit`), with
keys made for the test by the real ssh-keygen and gpg."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.gitrepo import GitError, Identity
from reconciler.reconciling import reconcile_once
from reconciler.signing import SigningError, SigningKey, from_settings
from tests import gitutil
from tests.conftest import BOT, NOW

needs_ssh = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="no gpg")


def ssh_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def verify(remote: Path, commit: str, *config: str, env: dict[str, str] | None = None):
    args = [arg for pair in config for arg in ("-c", pair)]
    return subprocess.run(
        ["git", *args, "-C", str(remote), "verify-commit", "-v", commit],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def allowed_signers(path: Path, key: Path) -> Path:
    path.write_text(f"{BOT.email} {key.with_suffix('.pub').read_text()}")
    return path


@needs_ssh
def test_an_ssh_signed_placement_commit_verifies_with_git(fleet_repo, remote, tmp_path) -> None:
    key = ssh_key(tmp_path, "bot")
    signer = BOT.model_copy(update={"signing": SigningKey(format="ssh", key=str(key))})
    commit = reconcile_once(fleet_repo, now=NOW, author=signer).commit
    assert commit is not None and gitutil.head(remote) == commit
    signers = allowed_signers(tmp_path / "allowed", key)
    checked = verify(remote, commit, f"gpg.ssh.allowedSignersFile={signers}")
    assert checked.returncode == 0, checked.stderr
    assert f'Good "git" signature for {BOT.email}' in checked.stderr
    # The same commit does not verify against another key: the signature is the
    # bot key's, not merely present.
    other = allowed_signers(tmp_path / "other", ssh_key(tmp_path, "stranger"))
    assert verify(remote, commit, f"gpg.ssh.allowedSignersFile={other}").returncode != 0


@needs_ssh
def test_an_unsigned_commit_does_not_verify(fleet_repo, remote, tmp_path) -> None:
    commit = reconcile_once(fleet_repo, now=NOW, author=BOT).commit
    assert commit is not None
    signers = allowed_signers(tmp_path / "allowed", ssh_key(tmp_path, "bot"))
    assert verify(remote, commit, f"gpg.ssh.allowedSignersFile={signers}").returncode != 0


@needs_ssh
def test_a_signed_commit_is_the_same_placement_and_reconciling_again_commits_nothing(
    fleet_repo, remote, tmp_path
) -> None:
    key = SigningKey(format="ssh", key=str(ssh_key(tmp_path, "bot")))
    signer = BOT.model_copy(update={"signing": key})
    first = reconcile_once(fleet_repo, now=NOW, author=signer)
    again = reconcile_once(fleet_repo, now=NOW, author=signer)
    assert first.commit is not None and again.commit is None
    assert gitutil.message(remote).startswith("place: ")


@pytest.fixture
def gnupg_home() -> Iterator[Path]:
    # gpg-agent's socket path must be short: pytest's tmp_path can be too long.
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    home.chmod(0o700)
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)})
    shutil.rmtree(home, ignore_errors=True)


@needs_gpg
def test_an_openpgp_signed_placement_commit_verifies_with_git(
    fleet_repo, remote, gnupg_home, monkeypatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(gnupg_home))
    user = f"Caspian Bot <{BOT.email}>"
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", user, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )
    signer = BOT.model_copy(update={"signing": SigningKey(format="openpgp", key=BOT.email)})
    commit = reconcile_once(fleet_repo, now=NOW, author=signer).commit
    assert commit is not None
    checked = verify(remote, commit)
    assert checked.returncode == 0, checked.stderr
    assert "Good signature from" in checked.stderr


@needs_ssh
def test_a_key_that_cannot_sign_commits_nothing_and_says_why(fleet_repo, remote, tmp_path) -> None:
    key = ssh_key(tmp_path, "bot")
    key.write_text("not a key\n")
    before = gitutil.head(remote)
    signer = BOT.model_copy(update={"signing": SigningKey(format="ssh", key=str(key))})
    with pytest.raises(GitError, match=r"cannot sign the commit: ssh-keygen could not sign"):
        reconcile_once(fleet_repo, now=NOW, author=signer)
    assert gitutil.head(remote) == before


@pytest.mark.parametrize(
    ("key", "format_name", "words"),
    [
        (None, "ssh", "CASPIAN_SIGNING_KEY is not"),
        ("ABCDEF", "x509", "use openpgp or ssh"),
        ("/nowhere/id_ed25519", "ssh", "no SSH key file at /nowhere/id_ed25519"),
    ],
)
def test_signing_settings_that_cannot_work_name_the_variable_and_the_fix(
    key: str | None, format_name: str, words: str
) -> None:
    with pytest.raises(SigningError, match=words):
        from_settings(key, format_name)


def test_no_key_means_unsigned_and_openpgp_is_the_default_format() -> None:
    assert from_settings(None, None) is None
    assert from_settings("ABCDEF", None) == SigningKey(format="openpgp", key="ABCDEF")


@needs_ssh
def test_the_cli_refuses_to_start_with_a_key_that_cannot_sign(remote, tmp_path) -> None:
    key = ssh_key(tmp_path, "bot")
    key.write_text("garbage\n")
    before = gitutil.head(remote)
    result = CliRunner().invoke(
        main,
        ["reconcile", "--repo", str(remote), "--once", "--cache-dir", str(tmp_path / "m.git")],
        env={"CASPIAN_SIGNING_KEY": str(key), "CASPIAN_SIGNING_FORMAT": "ssh"},
    )
    assert result.exit_code == 1
    assert "ssh-keygen could not sign with CASPIAN_SIGNING_KEY=" in result.output
    assert "garbage" not in result.output
    assert gitutil.head(remote) == before


@needs_ssh
def test_the_cli_signs_with_the_key_the_environment_names(remote, tmp_path) -> None:
    key = ssh_key(tmp_path, "bot")
    result = CliRunner().invoke(
        main,
        ["reconcile", "--repo", str(remote), "--once", "--cache-dir", str(tmp_path / "m.git")],
        env={"CASPIAN_SIGNING_KEY": str(key), "CASPIAN_SIGNING_FORMAT": "ssh"},
    )
    assert result.exit_code in (0, 3), result.output
    signers = tmp_path / "allowed"
    signers.write_text(f"{Identity().email} {key.with_suffix('.pub').read_text()}")
    checked = verify(remote, gitutil.head(remote), f"gpg.ssh.allowedSignersFile={signers}")
    assert checked.returncode == 0, checked.stderr
