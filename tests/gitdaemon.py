"""`git daemon` on 127.0.0.1 serving bare repos, with pushes enabled."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GIT = shutil.which("git")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """Serve every repo below `base`; yields the URL prefix git://127.0.0.1:PORT/."""
    port = free_port()
    process = subprocess.Popen(
        [
            GIT,
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"git daemon did not start: {process.stderr.read()!r}"
                    ) from None
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()
