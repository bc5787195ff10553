"""What `caspian spokes` shows: each spoke of the fleet repo as Caspian sees it,
before it plans anything. Whether its file loads, whether its API answers, what
room it has, what Caspian has placed there and what its Jobs there are doing,
and what Caspian may not list there. For a first set-up (is every context, role
and zone right?) and for the question "why does nothing go to paris?"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from optimizer.model import RESOURCES
from reconciler import arrivals, cron, kubeversions, syncwindows
from reconciler.decisions import GRANTED_APART, SpokeState
from reconciler.fleet import Maintenance, Quota, Spoke
from reconciler.ledger import Cut, Entry, Phase
from reconciler.quantities import amount, format_duration, format_time
from reconciler.spokedown import grace_begins

# A spoke's state, as the table's column reads.
UP, DOWN, UNSCHEDULABLE, BROKEN = "up", "down", "unschedulable", "file does not load"


class SpokeReport(BaseModel):
    """One spoke: its file's word, and what was observed there."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: str
    zone: str | None = None  # None where the file does not load
    state: str  # UP, DOWN, UNSCHEDULABLE or BROKEN
    why: str = ""  # why it is not up: the API's failure, the file's problem
    observed: SpokeState | None = None
    placed: dict[str, int] = {}  # the ledger's entries on it, by phase
    # Down: what becomes of the jobs planned there (the policy's spokeDownGrace).
    waiting: str = ""
    # Its file's maintenance windows that have not ended.
    maintenance: tuple[Maintenance, ...] = ()
    quota: Quota | None = None  # its file's: the most Caspian's jobs may hold there
    # Running in the ledger, their Job missing there: since when (arrivals.gone_since).
    gone: dict[str, datetime] = {}

    @property
    def trouble(self) -> bool:
        """Whether it takes no new work for a reason someone must fix."""
        return self.state in (DOWN, BROKEN)


class Survey(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_commit: str
    now: datetime
    spokes: tuple[SpokeReport, ...]


def placed_by_spoke(entries: Iterable[Entry]) -> dict[str, dict[str, int]]:
    """How many of the ledger's entries are on each spoke, by phase."""
    counts: dict[str, Counter[str]] = {}
    for entry in entries:
        if entry.spoke:
            counts.setdefault(entry.spoke, Counter())[entry.phase.value] += 1
    return {spoke: dict(sorted(count.items())) for spoke, count in counts.items()}


def gone_from(entries: Iterable[Entry], *, state: SpokeState, now: datetime) -> dict[str, datetime]:
    """The Jobs of the ledger's running records on a spoke that lists every
    Job of Caspian's and not these, by key: since when, as the record marks
    it, else from now, as the next reconcile will mark it."""
    spokes = {state.name: state}
    gone = {}
    for entry in entries:
        if entry.phase == Phase.RUNNING and entry.spoke == state.name:
            since = arrivals.gone_since(entry, entry, spokes, now=now)
            if since is not None:
                gone[entry.job_key] = since
    return dict(sorted(gone.items()))


def waiting_for(
    entries: Iterable[Entry],
    *,
    spoke: Spoke,
    state: SpokeState,
    grace: timedelta | None,
    now: datetime,
) -> str:
    """What becomes of the jobs planned on a spoke that is down: they wait for
    it through the policy's spokeDownGrace, from when it was first seen down
    (where a reconcile or Argo CD has seen it) or its maintenance ends, then
    go elsewhere."""
    planned = [e for e in entries if e.spoke == spoke.name and e.phase == Phase.PLANNED]
    if not planned:
        return ""
    one = len(planned) == 1
    jobs = f"{len(planned)} job{'' if one else 's'} planned there"
    wait, go = ("waits", "goes") if one else ("wait", "go")
    if grace is not None and not grace:
        return f"{jobs} {go} elsewhere at the next reconcile (the policy's spokeDownGrace is 0)"
    if grace is None:
        return f"{jobs} {wait} for it until it answers (the policy's spokeDownGrace is null)"
    seen = [t for t in (state.down_since, *(e.spoke_down_since for e in planned)) if t]
    since = min(seen, default=None)
    until = (
        f"until {format_time(grace_begins(spoke, since=since, now=now) + grace)}"
        if since is not None
        else "from the next reconcile that sees it down"
    )
    return (
        f"{jobs} {wait} for it {until} (the policy's spokeDownGrace "
        f"{format_duration(grace)}), then {go} elsewhere"
    )


def table(survey: Survey) -> str:
    """The spokes as a markdown table, then lines for each: why it is not up,
    its Jobs that do not run yet, what its namespaces hold pods to, and what
    Caspian may not list there."""
    lines = [
        "| spoke | zone | observed | state | room cpu | room memory | room GPUs | nodes "
        "| kubernetes | in the ledger | seen there |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for report in survey.spokes:
        seen = report.observed
        room = ["", "", "", ""]
        if seen is not None and seen.up:
            room = [
                f"{seen.cpu:g}",
                f"{seen.memory_bytes / 2**30:.1f}Gi",
                f"{seen.gpu:g}",
                str(len(seen.nodes)) if seen.nodes else "-",
            ]
        source = seen.source if seen is not None else "-"
        version = seen.kubernetes_version if seen is not None else None
        cells = [report.name, report.zone or "-", source, report.state, *room]
        cells.append(kubeversions.show(version) if version else "-")
        cells += [_counts(report.placed), _seen(seen, gone=report.gone)]
        lines.append("| " + " | ".join(cells) + " |")
        if report.why:
            notes.append(f"{report.name}: {report.state}: {report.why}")
        if report.waiting:
            notes.append(f"{report.name}: {report.waiting}")
        if report.quota is not None:
            notes.append(f"{report.name}: {_quota(report.quota)}")
        notes.extend(
            f"{report.name}: {_maintenance(w, now=survey.now)}" for w in report.maintenance
        )
        if seen is None:
            continue
        if seen.sync_windows:
            notes.append(f"{report.name}: {_sync_windows(seen, now=survey.now)}")
        if seen.up and seen.unsynced is not None:
            notes.append(f"{report.name}: {_on_trial(seen.unsynced)}")
        notes.extend(f"{report.name}: {line}" for line in _waiting_jobs(seen))
        notes.extend(
            f"{report.name}: Job {key} missing since {format_time(since)}, Running in the "
            "ledger (deleted there, with Argo CD's self-heal off?): it keeps its room until "
            "its planned end, then, unless it is back, is taken for failed from then"
            for key, since in report.gone.items()
        )
        notes.extend(f"{report.name}: {line}" for line in _namespace_rules(seen))
        # Secrets are listed only where a spoke's admin chose to grant it.
        opt_in = [what for what in seen.unread if what.split(" ")[0] in GRANTED_APART]
        missing = [what for what in seen.unread if what not in opt_in]
        if missing:
            notes.append(
                f"{report.name}: may not list {', '.join(missing)}, so jobs are not checked "
                "against them there; apply deploy/spoke-rbac.yaml on it"
            )
        if opt_in:
            notes.append(
                f"{report.name}: may not list {', '.join(opt_in)}, so the Secrets jobs need are "
                f"not checked there ({GRANTED_APART['Secrets']} grants it, if you choose)"
            )
    return "\n".join(lines + (["", *notes] if notes else []))


def _maintenance(window: Maintenance, *, now: datetime) -> str:
    """A maintenance window of a spoke's file, and when it is next on."""
    why = f" ({window.reason})" if window.reason else ""
    once = window.once()
    if once is not None:
        when = f"from {format_time(once.start)} to {format_time(once.end)}{why}"
    else:
        assert window.schedule is not None and window.duration is not None  # as validated
        coming = window.within(now, now + cron.LOOK_AHEAD)
        next_on = (
            f", next from {format_time(coming[0].start)} to {format_time(coming[0].end)}"
            if coming
            else ", not in the next five weeks"
        )
        when = (
            f"every {window.schedule!r} ({window.time_zone}) for "
            f"{format_duration(window.duration)}{why}{next_on}"
        )
    return f"maintenance {when}: nothing new is planned to run there then"


def _sync_windows(state: SpokeState, *, now: datetime) -> str:
    """When its AppProject's sync windows next keep Argo CD from syncing it."""
    coming = syncwindows.barred(state.sync_windows, now, now + cron.LOOK_AHEAD)
    if not coming:
        return "its AppProject's sync windows do not bar syncing it in the next five weeks"
    first = coming[0]
    when = (
        f"now, until {format_time(first.end)}"
        if first.start <= now
        else f"from {format_time(first.start)} to {format_time(first.end)}"
    )
    return (
        f"Argo CD does not sync it {when} ({first.reason}): nothing is planned to start there then"
    )


def _on_trial(cut: Cut) -> str:
    """A spoke that takes work again after a cut as one nothing syncs, and
    what comes of a Job of Caspian's not showing there now."""
    return (
        f"on trial: cut off from {format_time(cut.since)} to {format_time(cut.until)}, as the "
        "Jobs the branch held for it did not appear there; it takes work again, and should "
        "the next Job planned there not appear within requeueUnscheduled, it is cut off for "
        f"{format_duration(arrivals.next_hold(cut))}"
    )


def _quota(quota: Quota) -> str:
    limits = [
        amount(resource, limit)
        for resource in RESOURCES
        if (limit := quota.of(resource)) is not None
    ]
    held = ", ".join(limits) or "no limit"
    return f"Caspian's jobs hold at most {held} there at once (its file's spec.quota)"


def _namespace_rules(state: SpokeState) -> list[str]:
    """What each namespace there holds a job's pods to, where Caspian read any:
    its Pod Security level, LimitRanges and ResourceQuotas."""
    lines = []
    names = sorted(
        {
            *state.pod_security,
            *state.limit_ranges,
            *state.quotas,
            *state.quota_pods,
            *state.scoped_quotas,
        }
    )
    for namespace in names:
        rules = []
        if level := state.pod_security.get(namespace):
            rules.append(f"enforces {level} Pod Security")
        if items := state.limit_ranges.get(namespace):
            ranges = sorted({item.limit_range for item in items})
            rules.append(f"LimitRange{'s' if len(ranges) > 1 else ''} {', '.join(ranges)}")
        quota = state.quotas.get(namespace)
        most = [
            amount(resource, limit)
            for resource in RESOURCES
            if quota and (limit := getattr(quota, resource)) != float("inf")
        ]
        if (pods := state.quota_pods.get(namespace)) is not None:
            most.append(f"{pods:g} pods")
        if most:
            rules.append(f"ResourceQuotas of {', '.join(most)} in all")
        if scoped := state.scoped_quotas.get(namespace):
            rules.append(f"ResourceQuotas with scopes {', '.join(q.name for q in scoped)}")
        lines.append(f"namespace {namespace}: {'; '.join(rules)}")
    return lines


def _counts(by_phase: dict[str, int]) -> str:
    return ", ".join(f"{count} {phase}" for phase, count in by_phase.items()) or "-"


def _seen(state: SpokeState | None, *, gone: dict[str, datetime]) -> str:
    """What Caspian's Jobs there are doing, as the spoke reports them, and
    how many the ledger has running that are `gone` from there."""
    if state is None or not state.up or state.source == "declared":
        return "-"
    phases = Counter(state.jobs.values())
    parts = [f"{count} {phase}" for phase, count in sorted(phases.items())]
    for waiting, what in _not_running(state):
        if waiting:
            parts.append(f"{len(waiting)} {what}")
    if gone:
        parts.append(f"{len(gone)} missing")
    return ", ".join(parts) or "none"


NOT_THERE = "not there"  # Argo CD has not applied them (reconciler/arrivals.py)


def _not_running(state: SpokeState) -> tuple[tuple[dict[str, datetime], str], ...]:
    """Caspian's Jobs there that do not run yet, or no longer, for a reason
    the spoke gives, since when, by what keeps them."""
    ran = {key: since for key, since in state.nodeless.items() if state.jobs.get(key) == "Running"}
    return (
        (state.unarrived, NOT_THERE),
        (
            {k: arrivals.unapplied_since(state, k) or t for k, t in state.unapplied.items()},
            "not applied by Argo CD",
        ),
        (state.unresumed, "not resumed by Argo CD"),
        (state.held_back, "held back by sync windows"),
        (state.unscheduled, "finding no node"),
        (state.podless, "making no pod"),
        (state.not_starting, "not starting"),
        (ran, "with its node gone"),
    )


MOST_UNARRIVED = 5  # the Jobs not there that a spoke's line names


def _unarrived(state: SpokeState) -> str:
    """One line for the Jobs the branch holds for a spoke that it does not
    list: one cause (no Application syncs its directory) misses them all."""
    keys = sorted(state.unarrived)
    named = ", ".join(keys[:MOST_UNARRIVED])
    if len(keys) > MOST_UNARRIVED:
        named += f" and {len(keys) - MOST_UNARRIVED} more"
    return (
        f"{'Job' if len(keys) == 1 else 'Jobs'} {named} not there, which the branch has held "
        f"since {format_time(min(state.unarrived.values()))}"
        f"{'' if len(keys) == 1 else ' (the first)'}: Argo CD has not applied "
        f"rendered/{state.name}/ here; does an Application sync it to this spoke?"
    )


def _waiting_jobs(state: SpokeState) -> list[str]:
    """A line for each of Caspian's Jobs there that does not run yet, or no
    longer: what keeps it, since when, and what the spoke says of it."""
    lines = []
    if state.unarrived:
        lines.append(_unarrived(state))
    for waiting, what in _not_running(state):
        if what == NOT_THERE:  # one line for them all, above
            continue
        for key, since in sorted(waiting.items()):
            said = state.said.get(key)
            lines.append(
                f"Job {key} {what} since {format_time(since)}" + (f": {said}" if said else "")
            )
    return lines
