"""The second core: a thread that shares ascent's steps, then a second search,
a forked copy of the optimizer that goes on from the same point by another
path and sends back the plan it ends with, of which the cheaper wins. The
one adapter of the operating system's processes and threads: the `caspian`
command plugs `Twin.start` and `threads` into the optimizer
(`solving.use_second_core`), which imports nothing of this.

Fork, not a fresh interpreter: the child starts with the columns, the room
and ascent's prices already in its memory (shared until written), where a
new interpreter took 0.4-1.1 s to import and read the instance
(docs/optimizer-history.md, "Two workers"). The child only computes with
numpy: it calls no solver (HiGHS keeps worker threads that a forked child
does not have), writes no log and touches no lock another thread may hold,
and ends with `os._exit`, so nothing of the parent's (open files, atexit
hooks, the watch loop's threads) runs twice.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def cores() -> int:
    """How many cores this process may run on: its CPU affinity, and a cgroup
    v2 quota where one is set (a container limited to one CPU on a large node
    would see the node's cores)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, int(int(quota) / int(period))))


@contextlib.contextmanager
def threads() -> Iterator[Callable[[Callable[[Any], None], Sequence[Any]], None] | None]:
    """While the block runs, a way to run work on several items side by side
    (`lagrange.Spread`): the first item on this thread, the others on a
    thread of the second core. None where there is no second core. The
    thread ends with the block, before any twin is forked: a child would
    not have it.

    Ascent's steps price the columns of the two halves of the jobs so
    (`lagrange.Pricing`); numpy lets go of Python's lock for the gathers and
    sums that make a step. At 1000 x 10 a step took a median of 5.8-6.7 ms
    so against 8.1-9.0 ms on one thread (three runs, 400 steps each)."""
    if cores() < 2:
        yield None
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="caspian-ascent") as pool:

        def spread(work: Callable[[Any], None], items: Sequence[Any]) -> None:
            if not items:
                return
            first, *rest = items
            others = [pool.submit(work, item) for item in rest]
            try:
                work(first)
            finally:
                for other in others:  # done before the arrays it writes are read
                    other.result()

        yield spread


def _first_to_go() -> None:
    """Where memory runs out (a container's limit), the kernel ends this
    process before any other: the twin, never the reconcile that forked it.
    Any process may raise its own score; where /proc is not there, nothing."""
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


class Twin:
    """A forked child running one search; `result` reads its plan."""

    def __init__(self, pid: int, reader: int, *, jobs: int) -> None:
        self.pid, self.reader, self.jobs = pid, reader, jobs
        self.done = False

    @classmethod
    def start(cls, search: Callable[[], np.ndarray], *, jobs: int) -> Twin | None:
        """Fork a child that runs `search` and writes the plan it returns (one
        column per job); None where there is no second core or no fork."""
        if cores() < 2 or not hasattr(os, "fork"):
            return None
        reader, writer = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python 3.12 and later warn of fork in a process with threads
                # (`caspian watch` has some), and where warnings are errors the
                # parent would raise with the child already running. The child
                # takes no lock and calls nothing that may (module docstring).
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            # No memory or processes left for a copy of a large optimizer: the
            # search goes on, on one core.
            os.close(reader)
            os.close(writer)
            return None
        if pid == 0:  # the child
            code = 1
            try:
                os.close(reader)
                _first_to_go()
                data = np.ascontiguousarray(search(), dtype=np.int64).tobytes()
                view = memoryview(data)
                while view:
                    view = view[os.write(writer, view) :]
                code = 0
            finally:
                os._exit(code)
        os.close(writer)
        return cls(pid, reader, jobs=jobs)

    def result(self, *, wait_until: float) -> np.ndarray | None:
        """The child's plan, waited for until `wait_until` (time.monotonic());
        None where it sent no whole plan by then (it is ended then)."""
        size = self.jobs * 8
        data = bytearray()
        try:
            while len(data) < size and not self.done:
                # Past `wait_until`, what the pipe holds already is still read.
                left = max(0.0, wait_until - time.monotonic())
                if not select.select([self.reader], [], [], left)[0]:
                    break
                chunk = os.read(self.reader, size - len(data))
                if not chunk:  # it ended without a whole plan
                    break
                data += chunk
        finally:
            self.stop()
        if len(data) < size:
            return None
        return np.frombuffer(bytes(data), dtype=np.int64).copy()

    def stop(self) -> None:
        """End the child, if it has not ended, reap it and close the pipe;
        once only."""
        if self.done:
            return
        self.done = True
        os.close(self.reader)
        if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
