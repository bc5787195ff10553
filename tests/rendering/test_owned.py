"""The header and digest of the files Caspian owns tell its writing from a hand edit."""

from __future__ import annotations

from reconciler import owned
from tests.conftest import NOW
from tests.rendering.scenario import decide_and_render


def test_every_owned_file_is_sealed_and_passes_its_own_check() -> None:
    _, rendered, _ = decide_and_render(NOW)
    assert rendered and all(owned.is_owned(path) for path in rendered)
    for path, raw in rendered.items():
        assert raw.startswith(owned.HEADER.encode() + owned.DIGEST.encode()), path
        assert owned.hand_edit(raw) is None, path


def test_any_change_below_the_header_is_a_hand_edit() -> None:
    sealed = owned.seal(b"spec:\n  suspend: true\n")
    for edited in (
        sealed.replace(b"true", b"false"),
        sealed + b"\n",
        sealed.replace(b"  suspend", b"   suspend"),
    ):
        assert owned.edited(edited)
        assert owned.hand_edit(edited).startswith("edited by hand")


def test_a_file_without_the_header_was_not_written_by_caspian() -> None:
    assert owned.hand_edit(b"kind: Job\n").startswith("Caspian did not write it")
    assert not owned.edited(b"kind: Job\n")  # the ledger's own check lets it through


def test_a_header_from_before_digests_passes() -> None:
    legacy = owned.HEADER.encode() + b"entries: []\n"
    assert owned.hand_edit(legacy) is None and not owned.edited(legacy)


def test_a_checkout_with_crlf_line_ends_is_no_hand_edit() -> None:
    sealed = owned.seal(b"spec:\n  suspend: true\n")
    windows = sealed.replace(b"\n", b"\r\n")
    assert owned.hand_edit(windows) is None and not owned.edited(windows)
    assert owned.edited(windows.replace(b"true", b"false"))
