"""The comment `caspian plan --work-tree DIR --comment N` keeps on a pull
request: what Caspian would commit were the pull request merged now, so that
its reviewers see where its jobs would run, and what they would emit, beside
its diff. One comment per pull request, found again by its first line and
rewritten at each push. Pure."""

from __future__ import annotations

from datetime import datetime

from reconciler.overlay import Edits
from reconciler.quantities import format_time

# The first line of Caspian's comment: hidden where the forge renders
# Markdown, and how the next run finds the comment to rewrite.
MARKER = "<!-- caspian.dev/plan -->"
# GitHub refuses a comment longer than 65,536 characters: the message of a
# fleet of some hundreds of jobs is cut short of that, at a line's end.
MOST_CHARS = 60_000


def plan_comment(
    *, edits: Edits, message: str | None, branch: str, input_commit: str, now: datetime
) -> str:
    """The comment's text: the files the pull request changes as planned, then
    the subject of the commit a reconcile would make (`message`: None where
    it would make none) and, folded, the whole of its message."""
    changed = ", ".join(f"`{path}` {change}" for path, change in edits.edited.items())
    lines = [
        MARKER,
        f"**Caspian's plan with this pull request**, were it merged at {format_time(now)} "
        f"into {branch} at `{input_commit[:12]}`.",
        "",
        f"Planned with: {changed or 'no file Caspian reads'}.",
    ]
    if edits.base is None:
        lines += [
            "",
            "This checkout shares no commit with the remote: its `jobs/`, `spokes/` and "
            f"`caspian.yaml` were taken whole, so a job added on {branch} since reads as "
            "deleted. Check it out with its history to plan its own changes only.",
        ]
    if edits.crossed:
        crossed = ", ".join(f"`{path}`" for path in edits.crossed)
        lines += [
            "",
            f"Changed on {branch} as well, planned as this pull request has them: {crossed}.",
        ]
    if message is None:
        lines += ["", "A reconcile would commit nothing: no job would move, start or stop."]
        return "\n".join(lines) + "\n"
    subject, _, body = message.partition("\n")
    head = "\n".join([*lines, "", f"**{subject}**", ""])
    folded = _cut(body.strip("\n"), most=MOST_CHARS - len(head))
    summary = "<details><summary>The commit Caspian would make</summary>"
    return "\n".join([head, summary, "", folded, "", "</details>"]) + "\n"


def _cut(text: str, *, most: int) -> str:
    """`text`, or as many of its first lines as leave room within `most`
    characters for a last line that says how many were left out."""
    if len(text) <= most:
        return text
    kept: list[str] = []
    size = 0
    rest = text.split("\n")
    for line in rest:
        if size + len(line) + 1 > most - 200:  # room for the line saying so
            break
        kept.append(line)
        size += len(line) + 1
    left = len(rest) - len(kept)
    kept += ["", f"... {left} more lines: `caspian plan --work-tree .` prints them all"]
    return "\n".join(kept)
