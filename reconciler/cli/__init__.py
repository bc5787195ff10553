"""The `caspian` command. Thin: parse options, call the shell, print, set the exit code.

Exit codes: 0 done; 1 nothing done (bad configuration, git failure); 3 done, but
some job could not be planned (an invalid AppWrapper, or no place for it).
"""

from __future__ import annotations

import logging
import sys

import click

from optimizer import solving, twins
from reconciler.cli import benches, fleetrepo, intensity, simulation, watch
from reconciler.cli.common import EXIT_ERROR, EXIT_PARTIAL, TEXT_LOG_FORMAT, JsonLines, Target

__all__ = ["EXIT_ERROR", "EXIT_PARTIAL", "Target", "main"]


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what each step does.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="CASPIAN_LOG_FORMAT",
    help="json: one object per line (time, level, logger, message), for a log collector to read.",
)
def main(verbose: bool, log_format: str) -> None:
    """Caspian: carbon-aware placement of batch Jobs across Kubernetes clusters, through git."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLines() if log_format == "json" else logging.Formatter(TEXT_LOG_FORMAT)
    )
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    # Where there is a second core, a thread of it shares ascent's steps, and
    # wherever ascent ran (1000 jobs and up) a second search runs on it after.
    solving.use_second_core(twins.Twin.start, threads=twins.threads)


for command in (
    fleetrepo.init,
    fleetrepo.validate,
    fleetrepo.plan,
    fleetrepo.reconcile,
    fleetrepo.explain,
    fleetrepo.history,
    fleetrepo.report,
    fleetrepo.spokes,
    fleetrepo.demo,
    watch.watch,
    intensity.carbon,
    simulation.simulate,
    benches.bench,
):
    main.add_command(command)
