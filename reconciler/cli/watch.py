"""`caspian watch`: reconcile continuously, and serve /metrics and the webhook."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import click

from reconciler.cli.common import Target, bot_author, proposal_options, target_options
from reconciler.gitrepo import GitError, redact
from reconciler.proposing import Proposing


@click.command()
@target_options
@click.option(
    "--interval",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds between fetches (also woken at slot boundaries and by pushes).",
)
@click.option(
    "--debounce",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Seconds to wait after a push for more pushes before reconciling.",
)
@click.option(
    "--stuck-after",
    type=click.FloatRange(1),
    default=3600.0,
    show_default=True,
    help="Seconds one reconcile may run before /livez fails, so that the kubelet restarts "
    "a loop held by what no timeout bounds: more than the policy's solver timeLimit.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    callback=lambda ctx, param, value: _listen_address(value),
    help="HOST:PORT of /metrics, /healthz, /readyz, /livez and POST /webhook ([::1]:PORT "
    "for IPv6).",
)
@proposal_options
def watch(
    target: Target,
    interval: float,
    debounce: float,
    stuck_after: float,
    listen: tuple[str, int],
    proposing: Proposing | None,
) -> None:
    """Reconcile continuously: on pushes (webhook, or a local repo's refs), on a
    timer, and at every slot boundary. SIGTERM finishes the current reconcile."""
    import signal
    import threading

    from reconciler import serving
    from reconciler.watching import Watcher, WatchSettings

    host, port = listen
    try:
        repo = target.repo()
    except GitError as error:
        raise click.ClickException(str(error)) from None
    watcher = Watcher(
        repo,
        author=bot_author(),
        observer=target.observer(),
        settings=WatchSettings(
            interval_s=interval,
            debounce_s=debounce,
            stuck_after_s=stuck_after,
            proposing=proposing,
        ),
    )
    try:
        server = serving.serve(
            watcher,
            host=host,
            port=port,
            secret=os.environ.get("CASPIAN_WEBHOOK_SECRET", "").strip() or None,
        )
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
    stop_refs = threading.Event()
    if Path(target.url).is_dir():
        from reconciler.localwatch import watch_refs

        watch_refs(Path(target.url), on_change=watcher.trigger, stop=stop_refs)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    # A service's log is all its operator reads: what each reconcile did (pushed,
    # no change, a pull request opened) is said without -v too, as JSON there.
    for name in _OUTCOME_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logging.getLogger("caspian.cli").info(
        "watching %s (%s); http://%s:%d/metrics",
        redact(target.url),
        target.branch,
        f"[{host}]" if ":" in host else host,
        server.server_port,
    )
    try:
        watcher.run()
    finally:
        stop_refs.set()
        serving.stop(server)


# The loggers of the loop and of what each reconcile did; others (the spokes'
# API clients) stay at the level -v sets.
_OUTCOME_LOGGERS = ("caspian.cli", "caspian.watch", "caspian.reconcile", "caspian.propose")


def _listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (loopback) as (host, port)."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    bare_ipv6 = ":" in host and not text.startswith("[")
    if not re.fullmatch(r"[0-9]+", port) or int(port) > 65535 or bare_ipv6:
        raise click.BadParameter(
            f"{text!r}: give HOST:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080",
            param_hint="'--listen'",
        )
    return host or "127.0.0.1", int(port)
