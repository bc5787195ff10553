"""What a reviewer reads: the placement table and the commit message. Pure."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

from reconciler.decisions import Decision
from reconciler.fleet import SPOKES_DIR, split_suffix
from reconciler.ledger import ACTIVE, FINISHED, FIXED, UNFINISHED, Entry, Ledger, Phase
from reconciler.quantities import format_duration, format_time
from reconciler.rendering import job_path


def savings(ledger: Ledger) -> tuple[float, float, float | None]:
    """(estimated g, qos baseline g, fraction saved) over placed jobs with both figures."""
    pairs = [
        (e.estimated_grams, e.qos_grams)
        for e in ledger.entries
        if e.phase in ACTIVE and e.estimated_grams is not None and e.qos_grams is not None
    ]
    estimated = sum(p[0] for p in pairs)
    baseline = sum(p[1] for p in pairs)
    return estimated, baseline, (1 - estimated / baseline) if baseline > 0 else None


def named(job: str, *, source: str) -> str:
    """A job as `explain` and `history` head it: its id and its file, or the
    file alone for an AppWrapper that does not load, which has no id."""
    return job if job == source else f"{job} ({source})"


def against_qos(saved: float, *, digits: int = 0) -> str:
    """`saved` (a share of the qos baseline) in words: "71% less", and
    "16% more" for a plan that emits more (a late job placed where there is room)."""
    return f"{abs(saved):.{digits}%} " + ("less" if saved >= 0 else "more")


# Past this many jobs in flight, a commit's table holds only those it changes:
# a thousand rows in every commit buried the one that moved (status/placements.yaml
# still holds every job, at every commit).
MOST_TABLE_ROWS = 200


def commit_table(old: Ledger, decision: Decision) -> str:
    """The commit message's table: every job in flight, or past MOST_TABLE_ROWS
    of them, the jobs whose record this commit changes, and a count of the rest."""
    rows = _rows(decision)
    if len(rows) <= MOST_TABLE_ROWS:
        return placement_table(decision)
    before = old.by_id()
    changed = {e.id for e in decision.ledger.entries if before.get(e.id) != e}
    shown = sum(1 for row in rows if row[0] in changed)
    if shown == len(rows):
        return placement_table(decision)
    where = "status/placements.yaml lists every job"
    if not shown:
        return f"{len(rows):,} jobs in flight, none changed by this commit: {where}"
    return (
        f"{placement_table(decision, only=changed)}\n\n... and {len(rows) - shown:,} more "
        f"jobs in flight, unchanged by this commit: {where}"
    )


def placement_table(decision: Decision, *, only: Collection[str] | None = None) -> str:
    """Jobs waiting, placed, running, or finished and still in rendered/: a job
    finished long ago is history, and would lengthen every commit message.
    `only`: of these, the jobs with these ids."""
    header = ("job", "spoke", "phase", "planned start (UTC)", "est. gCO2", "qos gCO2", "note")
    rows = [row for row in _rows(decision) if only is None or row[0] in only]
    if not rows:  # a header over nothing reads as a table that failed to print
        return "No job is waiting, placed or running."
    return _markdown_table(header, rows)


def _rows(decision: Decision) -> list[tuple[str, ...]]:
    return [
        (
            e.id,
            e.pool or e.spoke or "",  # the pool, where the spoke has them
            e.phase.value,
            _time(e.planned_start) if e.planned_start else "",
            _grams(e.estimated_grams),
            _grams(e.qos_grams),
            _note(e, now=decision.now),
        )
        for e in decision.ledger.entries
        if e.phase in (*ACTIVE, Phase.PENDING, Phase.SUSPENDED) and not decision.retired(e)
    ]


def _note(entry: Entry, *, now: datetime) -> str:
    notes = ["LATE"] if entry.late else []
    if entry.spoke_down_since is not None:
        notes.append(f"waits for {entry.spoke}, down")
    if entry.phase == Phase.RUNNING and entry.planned_end is not None and entry.planned_end <= now:
        notes.append("running past its planned end")
    return "; ".join(notes)


def subject(
    old: Ledger, decision: Decision, *, pruned: Iterable[str] = (), rewritten: Iterable[str] = ()
) -> str:
    """One line for the commit. `pruned` holds the finished jobs whose Job
    leaves rendered/ in it, `rewritten` those whose file changes while their
    place does not: the ledger does not change for either."""
    changes = _changes(old, decision)
    parts = []
    placed = changes["placed"] + changes["moved"]
    if placed:
        per_spoke = Counter(e.spoke for e in placed)
        spread = ", ".join(f"{spoke} {n}" for spoke, n in sorted(per_spoke.items()))
        parts.append(f"place: {_jobs(len(placed))} ({spread})")
    for kind, verb in (
        ("finished", "finished"),
        ("requeued", "requeue"),
        ("retried", "retry"),
        ("dispatched", "dispatch"),
        ("running", "running"),
        ("started", "started outside Caspian"),
        ("cancelled", "cancel"),
        ("invalid", "invalid"),
        ("fixed", "fixed"),
        ("pending", "pending"),
        ("suspended", "suspend"),
        ("replaced", "replace"),
        ("forgotten", "forget"),
        ("missing", "missing"),
        ("back", "back"),
        ("began again", "began again"),
    ):
        jobs = sum(1 for e in changes[kind] if e.of_a_job)
        # A spoke file that does not load has a record too, but is no job.
        files = len(changes[kind]) - jobs
        counted = ([_jobs(jobs)] if jobs else []) + ([_spoke_files(files)] if files else [])
        if counted:
            parts.append(f"{verb}: {', '.join(counted)}")
    for kind, verb, spoke_is in (("waiting", "wait", "down"), ("waited", "keep", "back")):
        if changes[kind]:
            where = ", ".join(sorted({e.spoke or "" for e in changes[kind]}))
            parts.append(f"{verb}: {_jobs(len(changes[kind]))} ({where} {spoke_is})")
    cut, forgotten = _cuts(old, decision.ledger)
    if cut:
        parts.append(f"cut off: {', '.join(cut)} (nothing syncs it)")
    if forgotten:
        parts.append(f"forget cut: {', '.join(forgotten)}")
    if pruned := list(pruned):
        parts.append(f"prune: {_jobs(len(pruned))} (finished)")
    if rewritten := list(rewritten):
        parts.append(f"rewrite: {_jobs(len(rewritten))} (same place)")
    text = "; ".join(parts) or "update placement records"
    _, _, saved = savings(decision.ledger)
    if saved is not None:
        text += f", {-saved:+.0%} CO2 vs qos"
    return text


def commit_message(
    *,
    old: Ledger,
    decision: Decision,
    input_commit: str,
    reverted: Iterable[str] = (),
    pruned: Iterable[str] = (),
    rewritten: Iterable[str] = (),
) -> str:
    """The commit's message. `reverted` holds the hand-edited files put back,
    `pruned` the finished jobs whose Job leaves rendered/ in this commit, and
    `rewritten` the jobs whose file changes while their record does not."""
    ledger = decision.ledger
    counts = Counter(e.phase for e in ledger.entries if e.of_a_job)
    estimated, baseline, saved = savings(ledger)
    pruned, rewritten = sorted(pruned), sorted(rewritten)
    lines = [subject(old, decision, pruned=pruned, rewritten=rewritten), ""]
    summary = ", ".join(f"{counts[p]} {p.value.lower()}" for p in Phase if counts[p])
    lines.append(f"Jobs: {summary or 'none'}.")
    if saved is not None:
        lines.append(
            f"Estimated {estimated:,.0f} gCO2 against {baseline:,.0f} gCO2 for the carbon-blind "
            f"qos baseline ({against_qos(saved)})."
        )
    lines += ["", commit_table(old, decision)]
    moves = list(_describe_changes(old, decision))
    if moves:
        lines += ["", "Changes:", *moves]
    invalid = [e for e in ledger.entries if e.phase == Phase.INVALID]
    if invalid:
        lines += ["", "Problems (these files were skipped; every other job was planned):"]
        lines += [f"- {e.source}: {e.reason}" for e in invalid]
    pending = [e for e in ledger.entries if e.phase == Phase.PENDING]
    if pending:
        lines += ["", "Not placed:"] + [f"- {e.id}: {e.reason}" for e in pending]
    late = [e for e in ledger.entries if e.late and e.phase in UNFINISHED]
    if late:
        lines += ["", "Late:"] + [f"- {e.id}: {e.reason}" for e in late]
    if pruned:
        lines += ["", "Pruned (finished: Argo CD deletes their Job; the ledger keeps the record):"]
        lines += [f"- {line}" for line in prunings(decision, pruned)]
    if rewritten:
        lines += [
            "",
            "Rewritten in place (the same place; what its Job's file holds changed: a "
            "ConfigMap or Service its AppWrapper wraps, caspian.yaml's historyUrl, or how "
            "this Caspian writes it):",
        ]
        by_id = ledger.by_id()
        lines += [f"- {job_id}: {job_path(by_id[job_id])}" for job_id in rewritten]
    reverted = list(reverted)
    if reverted:
        lines += ["", "Hand edits reverted (Caspian owns rendered/; change jobs/ instead):"]
        lines += [f"- {path}" for path in reverted]
    removed = list(_removed_spokes(old, decision))
    if removed:
        lines += ["", "Spokes removed from the fleet:", *removed]
    if decision.broken_spokes:
        lines += ["", "Spokes whose file does not load (no new work; fix the file):"]
        lines += [f"- {line}" for line in held_on_broken_spokes(decision)]
    if decision.unschedulable:
        lines += ["", "Unschedulable (no new work):"]
        lines += [f"- {line}" for line in draining(decision)]
    upkeep = maintenance(decision)
    if upkeep:
        lines += ["", "Maintenance (nothing new is planned to run there then):"]
        lines += [f"- {line}" for line in upkeep]
    barred = sync_windows(decision)
    if barred:
        lines += ["", "Sync windows (Argo CD does not sync there; nothing starts there then):"]
        lines += [f"- {line}" for line in barred]
    down = down_spokes(decision)
    if down:
        lines += ["", "Down (no new work; what was dispatched there stays):"]
        lines += [f"- {line}" for line in down]
    _, forgotten = _cuts(old, ledger)
    if forgotten:
        lines += [
            "",
            "No longer cut off as spokes nothing syncs (a Job of Caspian's is there, or none "
            "went missing there for as long as the last hold):",
        ]
        lines += [
            f"- {name}: cut off from {_time(old.unsynced[name].since)} to "
            f"{_time(old.unsynced[name].until)}"
            for name in forgotten
        ]
    plan = decision.plan
    bound = f", bound {plan.bound:,.1f}" if plan.bound is not None else ""
    lines += [
        "",
        f"Solver: {plan.solver_status} via {plan.method}; objective {plan.objective:,.1f}{bound}.",
        "",
        f"Caspian-Input: {input_commit}",
    ]
    lines += [
        f"Caspian-Carbon-Source: {zone}={source}"
        for zone, source in decision.carbon_sources.items()
    ]
    lines.append(f"Caspian-Plan-Id: {plan_id(ledger)}")
    return "\n".join(lines) + "\n"


def prunings(decision: Decision, pruned: Iterable[str]) -> list[str]:
    """Each finished job whose Job leaves rendered/: how long it was kept, and
    whose word that was."""
    by_id = decision.ledger.by_id()
    return [
        f"{e.id}: Job {e.job_name} on {e.spoke}, {e.phase.value.lower()}; "
        f"kept {kept_for(decision, e)}"
        for e in (by_id[job_id] for job_id in pruned)
    ]


def kept_for(decision: Decision, entry: Entry) -> str:
    """How long a finished job's Job stays in rendered/, from when, and whose
    word that is."""
    kept, name = decision.kept_for(entry)
    whose = f"its AppWrapper's {name}" if name else "the policy's retention"
    # A record from before Caspian kept when a job finished counts from its
    # planned end.
    since = f"it {entry.phase.value.lower()}" if entry.finished_at else "its planned end"
    return f"{format_duration(kept)} after {since} ({whose})"


def draining(decision: Decision) -> list[str]:
    """Each unschedulable spoke and what still runs there: its file can go once
    nothing does, and Argo CD then prunes nothing that runs."""
    lines = []
    for spoke in decision.unschedulable:
        left = sum(1 for e in decision.ledger.entries if e.spoke == spoke and e.phase in FIXED)
        lines.append(
            f"{spoke}: {_jobs(left)} dispatched or running there; its file can go once they finish"
            if left
            else f"{spoke}: nothing dispatched or running there; spokes/{spoke}.yaml can go"
        )
    return lines


# A schedule such as "*/15 * * * *" opens thousands of windows in a horizon.
MOST_WINDOWS = 5


def maintenance(decision: Decision) -> list[str]:
    """Each maintenance window in the horizon, and the jobs dispatched or
    running on its spoke that are planned to run into it: the ones to drain
    or let finish before the work begins."""
    lines = []
    for spoke, windows in decision.maintenance.items():
        for window in windows[:MOST_WINDOWS]:
            why = f" ({window.reason})" if window.reason else ""
            into = [
                e.id
                for e in decision.ledger.entries
                if e.spoke == spoke
                and e.phase in FIXED
                and e.planned_start is not None
                and e.planned_end is not None
                and window.overlaps(e.planned_start, e.planned_end)
            ]
            runs = (
                f"; planned to run into it: {', '.join(into)} (already dispatched there: let "
                "it finish or stop it)"
                if into
                else ""
            )
            lines.append(f"{spoke}: {_time(window.start)} to {_time(window.end)}{why}{runs}")
        if len(windows) > MOST_WINDOWS:
            lines.append(f"{spoke}: and {len(windows) - MOST_WINDOWS} more in the horizon")
    return lines


def sync_windows(decision: Decision) -> list[str]:
    """Each time in the horizon that a spoke's AppProject's sync windows keep
    Argo CD from syncing it."""
    lines = []
    for spoke, windows in decision.sync_barred.items():
        lines += [
            f"{spoke}: {_time(window.start)} to {_time(window.end)} ({window.reason})"
            for window in windows[:MOST_WINDOWS]
        ]
        if len(windows) > MOST_WINDOWS:
            lines.append(f"{spoke}: and {len(windows) - MOST_WINDOWS} more in the horizon")
    return lines


def _cuts(old: Ledger, new: Ledger) -> tuple[list[str], list[str]]:
    """The spokes `new` cuts off as ones nothing syncs (or cuts off again),
    and those whose cut it forgets."""
    cut = sorted(name for name, held in new.unsynced.items() if old.unsynced.get(name) != held)
    return cut, sorted(old.unsynced.keys() - new.unsynced.keys())


def down_spokes(decision: Decision) -> list[str]:
    """Each spoke that is down, and why: its API does not answer, or Argo CD
    cannot sync its Application; and what becomes of the jobs planned there,
    which wait for it through the policy's spokeDownGrace."""
    lines = []
    for spoke, why in decision.closed.items():
        if why != "down" and not why.startswith("down: "):
            continue
        line = f"{spoke}: {why.removeprefix('down: ')}"
        waiting = [
            e for e in decision.ledger.entries if e.id in decision.waiting and e.spoke == spoke
        ]
        if waiting:
            since = min(e.spoke_down_since or decision.now for e in waiting)
            grace_from = min(decision.waiting[e.id] for e in waiting)
            after = ", when its maintenance ends" if grace_from > since else ""
            grace = decision.spoke_down_grace
            until = (
                f"until {_time(grace_from + grace)} (the policy's spokeDownGrace "
                f"{format_duration(grace)} from {_time(grace_from)}{after}), then elsewhere"
                if grace is not None
                else "until it answers (the policy's spokeDownGrace is null)"
            )
            wait = "waits" if len(waiting) == 1 else "wait"
            line += f"; {_jobs(len(waiting))} planned there {wait} for it, undispatched, {until}"
        lines.append(line)
    return lines


def held_on_broken_spokes(decision: Decision) -> list[str]:
    """Each spoke whose file does not load and what Caspian keeps there: Argo CD
    goes on syncing its directory, so that nothing there is pruned."""
    lines = []
    for spoke in decision.broken_spokes:
        here = [e for e in decision.ledger.entries if e.spoke == spoke and e.id in decision.held]
        lines.append(
            f"{spoke}: {_jobs(len(here))} kept there as committed until its file loads"
            if here
            else f"{spoke}: nothing of Caspian's there"
        )
    return lines


def _removed_spokes(old: Ledger, decision: Decision) -> Iterable[str]:
    """Spokes whose file went while work had started there: Argo CD prunes those
    Jobs with the spoke's directory, which a reviewer should see said."""
    known = (*decision.spokes, *decision.broken_spokes)
    started = [e for e in old.entries if e.phase in FIXED and e.spoke not in known]
    for spoke in sorted({e.spoke for e in started if e.spoke}):
        here = [e for e in started if e.spoke == spoke]
        held = sum(1 for e in here if e.id in decision.held)
        fates = [f"{len(here) - held} placed again"] if len(here) > held else []
        files = "its broken file is" if held == 1 else "their broken files are"
        fates += [f"{held} held until {files} fixed"] if held else []
        yield (
            f"- {spoke}: {_jobs(len(here))} dispatched or running there stopped with it (Argo "
            f"CD prunes rendered/{spoke}/), {' and '.join(fates)}; to let work finish first, "
            "set spec.unschedulable: true and remove the file once it is empty"
        )


def plan_id(ledger: Ledger) -> str:
    """A short name for a plan: the hash of where and when every job runs."""
    key = "\n".join(f"{e.id} {e.phase.value} {e.spoke} {e.planned_start}" for e in ledger.entries)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _changes(old: Ledger, decision: Decision) -> dict[str, list[Entry]]:
    """The entries of the decision's ledger by what changed since `old`: the
    decision says which jobs it took off a spoke where they could not run
    (`requeued`), whose Job failed and runs again (`retried`), and which
    spokes' files load."""
    new, requeued, retried = decision.ledger, decision.requeued, decision.retried
    before = old.by_id()
    changes: dict[str, list[Entry]] = {
        k: []
        for k in (
            "placed",
            "retried",
            "moved",
            "requeued",
            "dispatched",
            "started",
            "finished",
            "cancelled",
            "invalid",
            "pending",
            "suspended",
            "replaced",
            "forgotten",
            "waiting",
            "waited",
            "missing",
            "back",
            "began again",
            "running",
        )
    }
    for entry in new.entries:
        prev = before.get(entry.id)
        same = prev is not None and prev.phase == entry.phase
        if entry.id in (requeued):
            changes["requeued"].append(entry)
            continue
        if entry.id in (retried):
            changes["retried"].append(entry)
            continue
        if (
            prev is not None
            and (prev.phase in FIXED or prev.stopped)
            and prev.job_name is not None
            and prev.job_name != entry.job_name
            and entry.phase not in (Phase.CANCELLED, Phase.INVALID)
        ):
            # An edited template is a new Job: the one that had started is pruned.
            changes["replaced"].append(prev)
        if prev is not None and prev.job_name == entry.job_name:
            if _began_again(prev, entry):
                changes["began again"].append(entry)
            if entry.gone_since is not None and prev.gone_since is None:
                changes["missing"].append(entry)
            elif (
                prev.gone_since is not None
                and entry.gone_since is None
                and entry.phase == prev.phase
            ):
                changes["back"].append(entry)
        if entry.spoke_down_since is not None and (prev is None or prev.spoke_down_since is None):
            changes["waiting"].append(entry)  # for its spoke, down: the rest as it was
            continue
        if (
            prev is not None
            and prev.spoke_down_since is not None
            and entry.spoke_down_since is None
            and _same_place(prev, entry)
        ):
            changes["waited"].append(entry)
            continue
        if entry.phase == Phase.PLANNED:
            if prev is None or prev.phase != Phase.PLANNED or prev.job_name != entry.job_name:
                changes["placed"].append(entry)
            elif (prev.spoke, prev.planned_start) != (entry.spoke, entry.planned_start):
                changes["moved"].append(entry)
        elif entry.started_outside(prev):
            changes["started"].append(entry)
        elif (
            entry.phase == Phase.RUNNING
            and prev is not None
            and (prev.phase, prev.spoke, prev.job_name)
            == (Phase.DISPATCHED, entry.spoke, entry.job_name)
        ):
            changes["running"].append(entry)
        elif entry.phase == Phase.DISPATCHED and not (
            prev is not None
            and (prev.phase, prev.job_name, prev.spoke)
            == (entry.phase, entry.job_name, entry.spoke)
        ):
            changes["dispatched"].append(entry)
        elif entry.phase in FINISHED and not same:
            changes["finished"].append(entry)
        elif entry.phase == Phase.CANCELLED and not same:
            changes["cancelled"].append(entry)
        elif entry.phase == Phase.INVALID and not _same_reason(prev, entry):
            changes["invalid"].append(entry)
        elif entry.phase == Phase.PENDING and not _same_reason(prev, entry):
            changes["pending"].append(entry)
        elif entry.phase == Phase.SUSPENDED and not same:
            changes["suspended"].append(entry)
    # An invalid file's entry goes when the file is mended, and its job's own
    # record says the rest: only the records of removed jobs are forgotten.
    after = new.by_id()
    changes["forgotten"] = [
        e
        for e in old.entries
        if e.id not in after and (e.phase in FINISHED or e.phase == Phase.CANCELLED)
    ]
    loaded = {e.source for e in new.entries if e.phase != Phase.INVALID}
    changes["fixed"] = [
        e
        for e in old.entries
        if e.phase == Phase.INVALID
        and e.id not in after
        and (e.source in loaded or _spoke_named(e.source) in decision.spokes)
    ]
    return changes


def _spoke_named(path: str) -> str | None:
    """The spoke a file of spokes/ is for (spokes/paris.yml: paris); None for another file."""
    if not path.startswith(SPOKES_DIR):
        return None
    return split_suffix(path.removeprefix(SPOKES_DIR))[0]


def _describe_changes(old: Ledger, decision: Decision) -> Iterable[str]:
    before = old.by_id()
    requeued, retried = decision.requeued, decision.retried
    slot_start, closed = decision.window.start, decision.closed
    changes = _changes(old, decision)
    for entry in changes["requeued"]:
        now = f"{entry.spoke} {_hhmm(entry)}" if entry.spoke else f"pending: {entry.reason}"
        yield f"- requeued {entry.id}: {requeued[entry.id].reason}; now {now}"
    for entry in changes["retried"]:
        retry = retried[entry.id]
        codes = retry.exit_codes
        told = [f"exit code{'s' if len(codes) > 1 else ''} {_listed(codes)}"] if codes else []
        told += [f'{retry.spoke} says: "{retry.said}"'] if retry.said else []
        told += [decision.left[entry.id]] if entry.id in decision.left else []
        says = f" ({'; '.join(told)})" if told else ""
        now = f"{entry.spoke} {_hhmm(entry)}" if entry.spoke else f"pending: {entry.reason}"
        paused = (
            f", after its AppWrapper's retryPausePeriodDuration {format_duration(retry.pause)}"
            if retry.pause
            else ""
        )
        yield (
            f"- retried {entry.id} ({retry.run} of {retry.limit}): its Job {retry.job_name} "
            f"failed on {retry.spoke}{says}; now {now}{paused}, as Job {entry.job_name}"
        )
    for entry in changes["moved"]:
        prev = before[entry.id]
        yield (
            f"- moved {entry.id}: {prev.spoke} {_hhmm(prev)} -> {entry.spoke} {_hhmm(entry)} "
            f"(est. {_grams(prev.estimated_grams)} -> {_grams(entry.estimated_grams)} gCO2)"
            + _closed(prev, closed)
            + _missed(prev, slot_start=slot_start)
        )
    for entry in changes["placed"]:
        earlier = before.get(entry.id)
        # Its Job stopped where it had started (a spoke that left the fleet): a
        # reviewer should see that it runs again, and where, not only a new row.
        if earlier is not None and earlier.phase in FIXED and earlier.job_name == entry.job_name:
            yield (
                f"- placed {entry.id} again on {entry.spoke} {_hhmm(entry)}, "
                f"{earlier.phase.value.lower()} on {earlier.spoke} before"
                + _closed(earlier, closed)
            )
    for entry in changes["waited"]:
        since = before[entry.id].spoke_down_since
        assert since is not None  # it waited for its spoke
        yield (
            f"- kept {entry.id} on {entry.spoke} {_hhmm(entry)}: {entry.spoke} answers again, "
            f"down since {_time(since)}"
        )
    for entry in changes["missing"]:
        assert entry.gone_since is not None and entry.planned_end is not None  # running
        yield (
            f"- {entry.id}: its Job {entry.job_name} is missing from {entry.spoke}, which lists "
            "Caspian's Jobs (deleted there, with Argo CD's self-heal off?): it keeps its room "
            f"until its planned end {_time(entry.planned_end)}, then, unless it is back, it is "
            f"taken for failed from {_time(entry.gone_since)}"
        )
    for entry in changes["back"]:
        since = before[entry.id].gone_since
        assert since is not None  # it was missing
        yield (
            f"- {entry.id}: its Job {entry.job_name} is on {entry.spoke} again, missing there "
            f"since {_time(since)}"
        )
    for entry in changes["running"]:
        began = f" since {_time(entry.started_at)}" if entry.started_at else ""
        yield f"- {entry.id} runs on {entry.spoke}{began}"
    for entry in changes["began again"]:
        last = before[entry.id]
        assert entry.started_at is not None and last.started_at is not None  # _began_again
        counted = (
            f"{_grams((entry.emitted_grams or 0.0) - (last.emitted_grams or 0.0))} gCO2 counted"
            if entry.emitted_grams != last.emitted_grams
            else "not counted (its intensity not measured)"
        )
        yield (
            f"- {entry.id}: its Job {entry.job_name} began again on {entry.spoke} at "
            f"{_time(entry.started_at)} (made again there after it was deleted, or resumed "
            f"after a suspension there): the run from {_time(last.started_at)} ended by then, "
            f"{counted}"
        )
    for entry in changes["dispatched"]:
        earlier = before.get(entry.id)
        # Planned elsewhere, or started on a spoke that left the fleet: its Job there goes.
        was = ""
        if earlier is not None and earlier.spoke not in (None, entry.spoke):
            was = f", {earlier.phase.value.lower()} on {earlier.spoke} before"
            was += _closed(earlier, closed)
        yield (
            f"- dispatched {entry.id} on {entry.spoke} (suspend: false)"
            + was
            + _missed(earlier, slot_start=slot_start)
        )
    for entry in changes["started"]:
        planned = before[entry.id]
        if (planned.phase, planned.spoke) == (Phase.PLANNED, entry.spoke):
            yield (
                f"- {entry.id} started on {entry.spoke} {_hhmm(entry)}, before Caspian "
                f"dispatched it (planned {planned.spoke} {_hhmm(planned)}; resumed there outside "
                "Caspian): it is held where it runs, and rendered with suspend: false so that "
                "Argo CD does not suspend it again"
            )
            continue
        was = f"{planned.phase.value} on {planned.spoke}" if planned.spoke else planned.phase.value
        yield (
            f"- {entry.id} runs on {entry.spoke} from {_hhmm(entry)}: a Job of it from before "
            f"runs there still (left by a requeue and not pruned), and the ledger had it {was}; "
            "it is held where it runs, and rendered with suspend: false so that Argo CD does not "
            "suspend it again"
        )
    for entry in changes["finished"]:
        why = decision.not_retried.get(entry.id)
        yield (
            f"- {entry.id} {entry.phase.value.lower()} on {entry.spoke}"
            + (f" with {why}" if why else "")
            + (f": {decision.left[entry.id]}" if entry.id in decision.left else "")
            + _emitted(entry)
        )
    for entry in changes["cancelled"]:
        yield f"- cancelled {entry.id}: {entry.reason}"
    for entry in changes["replaced"]:
        yield (
            f"- replaced {entry.id}: its template changed after it started on {entry.spoke}; "
            f"Argo CD stops and prunes Job {entry.job_name}, and the new one is placed anew"
        )
    for entry in changes["suspended"]:
        prior = before.get(entry.id)
        # A stopped job stays on its spoke, as its reason says.
        left = prior.spoke if prior is not None and not entry.stopped else None
        unplanned = f", off {left}" if left else ""
        yield f"- suspended {entry.id}{unplanned}: {entry.reason}" + _stopped_run(prior, entry)
    for entry in changes["fixed"]:
        jobs = [e.id for e in decision.ledger.entries if e.source == entry.source]
        loads = ", ".join(jobs) if jobs else f"spoke {_spoke_named(entry.source)}"
        yield f"- fixed {entry.source}: {loads} loads again (skipped before: {entry.reason})"
    for entry in changes["forgotten"]:
        when = entry.removed_at
        removed = f"; AppWrapper removed {format_time(when)}" if when else ""
        yield f"- forgot {entry.id} ({entry.phase.value}{removed})"


def _emitted(entry: Entry) -> str:
    """How long a finished job's last run took, and what its runs emitted
    against what its plan estimated (reconciler/emissions.py)."""
    ran = ""
    if entry.started_at is not None and entry.finished_at is not None:
        took = format_duration(entry.finished_at - entry.started_at)
        ran = f"; ran {took} from {_time(entry.started_at)}"
    if entry.emitted_grams is None:
        return ran
    if entry.retries:
        return f"{ran}; its {entry.retries + 1} runs emitted {_grams(entry.emitted_grams)} gCO2"
    said = (
        f"{ran}; emitted {_grams(entry.emitted_grams)} gCO2 "
        f"(est. {_grams(entry.estimated_grams)} when planned)"
    )
    if entry.qos_emitted_grams and entry.qos_start is not None:
        saved = 1 - entry.emitted_grams / entry.qos_emitted_grams
        said += (
            f", {against_qos(saved)} than the {_grams(entry.qos_emitted_grams)} gCO2 it "
            f"would have as qos placed it ({entry.qos_spoke} {_time(entry.qos_start)})"
        )
    return said


def _stopped_run(prior: Entry | None, entry: Entry) -> str:
    """What the run a suspend stopped emitted, where it was counted."""
    before = prior.emitted_grams if prior is not None else None
    if entry.emitted_grams is None or entry.emitted_grams == before:
        return ""
    ran = entry.emitted_grams - (before or 0.0)
    return f"; its run up to now emitted {_grams(ran)} gCO2"


def _same_place(prev: Entry, entry: Entry) -> bool:
    """Planned where and when it was, as the same Job."""
    same = (prev.phase, prev.spoke, prev.planned_start, prev.job_name)
    return same == (entry.phase, entry.spoke, entry.planned_start, entry.job_name)


def _closed(prev: Entry, closed: Mapping[str, str]) -> str:
    """Why a planned job left its spoke, where that takes no new work; and for
    one that waited for it while it was down, how long it waited."""
    if prev.spoke not in closed:
        return ""
    waited = prev.spoke_down_since
    return f"; {prev.spoke} takes no new work" + (
        f" (down since {_time(waited)}, longer than the policy's spokeDownGrace)"
        if waited is not None
        else ""
    )


def _missed(prev: Entry | None, *, slot_start: datetime) -> str:
    """Why a planned job starts later than planned, where no reconcile came in its slot."""
    if prev is None or not prev.start_went_by(slot_start):
        return ""
    return f"; its start {_hhmm(prev)} went by with no reconcile to dispatch it"


def _listed(codes: tuple[int, ...]) -> str:
    return ", ".join(str(code) for code in codes)


def _hhmm(entry: Entry) -> str:
    return _time(entry.planned_start) if entry.planned_start else "?"


def _same_reason(prev: Entry | None, entry: Entry) -> bool:
    return prev is not None and (prev.phase, prev.reason) == (entry.phase, entry.reason)


def _began_again(prev: Entry, entry: Entry) -> bool:
    """Whether a running job's Job began anew on its spoke since `prev`."""
    return (
        prev.phase == entry.phase == Phase.RUNNING
        and prev.started_at is not None
        and entry.started_at is not None
        and entry.started_at > prev.started_at
    )


def _time(moment: datetime) -> str:
    return format_time(moment)[:16].replace("T", " ")


def _grams(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _jobs(count: int) -> str:
    return f"{count} job" + ("" if count == 1 else "s")


def _spoke_files(count: int) -> str:
    return f"{count} spoke file" + ("" if count == 1 else "s")


def _markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])
