"""A job whose Job failed: whether it runs again, as the AppWrapper controller
resets a failed workload (its retryLimit, or the policy's), or ends for good for
the exit codes its AppWrapper names. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from reconciler.decisions import Retry, SpokeState
from reconciler.fleet import JobRequest
from reconciler.ledger import FINISHED, Entry, Phase


def retries(
    jobs: Iterable[JobRequest],
    prevs: Mapping[str, Entry | None],
    finished: Mapping[str, Phase],
    spokes: Mapping[str, SpokeState],
    *,
    default: int,
) -> tuple[dict[str, Retry], dict[str, str]]:
    """The jobs whose Job its spoke now reports failed, and that may run again:
    fewer runs again than their AppWrapper's retryLimit (or the policy's), as
    the AppWrapper controller resets a failed workload. The failed Job leaves
    (Argo CD prunes it, as that controller deletes it), and a new one, named
    for the run, is placed anew: elsewhere, or later, where that is cleaner.
    Second, those that had runs left but exited as their AppWrapper says ends
    them for good, each with why."""
    found, final = {}, {}
    for job in jobs:
        prev = prevs[job.id]
        if finished.get(job.id) != Phase.FAILED or prev is None or prev.phase in FINISHED:
            continue
        limit = job.retry_limit if job.retry_limit is not None else default
        if prev.retries >= limit or prev.spoke is None or prev.job_name is None:
            continue
        state = spokes[prev.spoke]
        exits = state.exit_codes.get(prev.job_key, ())
        if why := _ended_for_good(job, exits):
            final[job.id] = why
            continue
        found[job.id] = Retry(
            spoke=prev.spoke,
            job_name=prev.job_name,
            run=prev.retries + 1,
            limit=limit,
            said=state.said.get(prev.job_key),
            exit_codes=exits,
            pause=job.retry_pause or None,
        )
    return found, final


def _ended_for_good(job: JobRequest, exits: Iterable[int]) -> str | None:
    """Why a failed Job of `job` whose containers exited with `exits` (0 left
    out) is not run again, as the AppWrapper controller reads its annotations;
    None if it may be."""
    for code in sorted(exits):
        if code in job.terminal_exit_codes:
            return (
                f"exit code {code}, one of its AppWrapper's terminalExitCodes "
                f"({_codes(job.terminal_exit_codes)}), so it does not run again"
            )
        if job.retryable_exit_codes is not None and code not in job.retryable_exit_codes:
            return (
                f"exit code {code}, not one of its AppWrapper's retryableExitCodes "
                f"({_codes(job.retryable_exit_codes)}), so it does not run again"
            )
    return None


def _codes(codes: Iterable[int]) -> str:
    return ",".join(str(code) for code in sorted(codes))
