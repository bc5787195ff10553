"""What `decide` does with what spokes report: jobs run, finish, and spokes go down."""

from __future__ import annotations

from datetime import timedelta

import yaml

from reconciler import deciding, explaining, gridcarbon, ledger, messages, reconciling
from reconciler.ledger import FIXED
from reconciler.observing import DeclaredCapacity
from reconciler.pods import Node, Resources, Taint
from reconciler.quantities import format_time
from reconciler.rendering import job_path, render
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper, appwrapper_doc


def step(files, *, now, states=None, planner=deciding.optimize_plan, measured=None):
    """One decision on `files` at `now`, as a reconcile makes it, the spokes
    reporting as declared with `states` over it; returns it and the files
    rendered. `measured`: the intensities read back, if not the fleet's own."""
    fleet = reconciling.fleet_in(files, links=())
    observed = DeclaredCapacity().observe(fleet)
    for name, change in (states or {}).items():
        observed[name] = observed[name].model_copy(update=change)
    decision = deciding.decide(
        fleet=fleet,
        ledger=ledger.parse(files.get(ledger.LEDGER_PATH)),
        spokes=observed,
        forecasts=gridcarbon.fetch_forecasts(fleet, now=now),
        now=now,
        planner=planner,
        measured=gridcarbon.fetch_measured(fleet, now=now) if measured is None else measured,
    )
    return decision, {**files, **render(decision, previous=files)}


def entries(decision):
    return decision.ledger.by_id()


def test_reported_job_status_moves_the_ledger_and_frees_capacity() -> None:
    decision, files = step(template_files(), now=NOW)
    dispatched = [e for e in entries(decision).values() if e.phase == "Dispatched"]
    running, done = dispatched[0], dispatched[1]
    reports = {running.job_key: "Running", done.job_key: "Succeeded"}
    later, _ = step(
        files, now=NOW + timedelta(minutes=20), states={running.spoke: {"jobs": reports}}
    )
    after = entries(later)
    assert after[running.id].phase == "Running"
    assert after[running.id].planned_start == running.planned_start
    assert after[done.id].phase == "Succeeded"
    assert done.id not in {a.id for a in later.plan.assignments}  # holds no capacity
    # The commit says so, rather than "update placement records".
    subject = messages.subject(decision.ledger, later)
    assert subject.startswith("finished: 1 job; running: 1 job"), subject
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0")
    assert f"\n- {running.id} runs on {running.spoke}\n" in message


def test_a_planned_job_its_spoke_reports_finished_is_finished_at_once() -> None:
    # Resumed by hand on its spoke and run before its slot came: the record
    # says what the spoke says, rather than dispatching a Job that will not
    # run again and finding it finished a reconcile later.
    decision, files = step(template_files(), now=NOW)
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    reports = {planned.spoke: {"jobs": {planned.job_key: "Succeeded"}}}
    at = NOW + timedelta(minutes=5)
    later, files = step(files, now=at, states=reports)
    assert entries(later)[planned.id].phase == "Succeeded"
    assert planned.id not in {a.id for a in later.plan.assignments}
    again, same = step(files, now=at, states=reports)
    assert again.ledger == later.ledger and same == files


def test_a_planned_job_its_spoke_reports_running_is_held_where_it_runs() -> None:
    # Resumed by hand on its spoke, where Argo CD does not heal it: left
    # Planned, it would stay suspended in git (Argo CD's next sync ends its
    # pods), and the room it takes would go to others.
    decision, files = step(template_files(), now=NOW)
    planned = max(
        (e for e in entries(decision).values() if e.phase == "Planned"),
        key=lambda e: e.planned_start,
    )
    assert planned.planned_start > NOW + timedelta(hours=12)
    began, at = NOW + timedelta(minutes=10), NOW + timedelta(minutes=20)
    key = planned.job_key
    reports = {planned.spoke: {"jobs": {key: "Running"}, "started": {key: began}}}
    later, files = step(files, now=at, states=reports)
    running = entries(later)[planned.id]
    assert (running.phase, running.spoke, running.planned_start) == (
        "Running",
        planned.spoke,
        began,
    )
    assert running.planned_end == began + (planned.planned_end - planned.planned_start)
    assert yaml.safe_load(files[job_path(running)])["spec"]["suspend"] is False
    # It holds its room from the slot it began in, as the plan checker counts it.
    assignment = later.plan.assignment(planned.id)
    assert (assignment.spoke, assignment.start_slot) == (planned.spoke, later.window.slot_of(began))
    assert_valid_plan(later.instance, later.plan)
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    assert "started outside Caspian: 1 job" in message.splitlines()[0]
    hhmm = "%Y-%m-%d %H:%M"
    assert (
        f"- {planned.id} started on {planned.spoke} {began:{hhmm}}, before Caspian dispatched "
        f"it (planned {planned.spoke} {planned.planned_start:{hhmm}}; resumed there outside "
        "Caspian)"
    ) in message
    said = explaining.explain(later, running, committed=planned, review=None).notes
    assert (
        f"its Job runs on {planned.spoke} already, started before Caspian dispatched it: the "
        f"ledger holds it Planned from {format_time(planned.planned_start)} (with suspend: "
        "true), and the next reconcile records it running there"
    ) in said
    # Estimated where and when it runs, not where it was planned.
    assert running.estimated_grams == round(assignment.carbon_g, 1) != planned.estimated_grams
    again, same = step(files, now=at + timedelta(minutes=5), states=reports)
    assert entries(again)[planned.id] == running and same == files


def test_a_planned_job_running_with_no_start_time_is_held_from_now() -> None:
    # Argo CD tells that a Job runs, not since when.
    decision, files = step(template_files(), now=NOW)
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    at = NOW + timedelta(minutes=20)
    later, _ = step(files, now=at, states={planned.spoke: {"jobs": {planned.job_key: "Running"}}})
    assert (entries(later)[planned.id].phase, entries(later)[planned.id].planned_start) == (
        "Running",
        at,
    )
    # Nor from a start its spoke's clock, running ahead, puts after now.
    ahead = {
        "jobs": {planned.job_key: "Running"},
        "started": {planned.job_key: at + timedelta(hours=1)},
    }
    later, _ = step(files, now=at, states={planned.spoke: ahead})
    assert entries(later)[planned.id].planned_start == at


def test_a_job_started_outside_caspian_past_its_deadline_says_so() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = entries(decision)["batch/etl-daily"]
    assert planned.phase == "Planned" and planned.planned_end <= planned.deadline
    # No reconcile in its slot (the remote was down); someone started it late.
    began = planned.deadline - timedelta(minutes=40)
    reports = {
        planned.spoke: {"jobs": {planned.job_key: "Running"}, "started": {planned.job_key: began}}
    }
    later, _ = step(files, now=began + timedelta(minutes=10), states=reports)
    running = entries(later)["batch/etl-daily"]
    assert (running.phase, running.late) == ("Running", True)
    assert running.reason == (
        f"will finish after its deadline: its Job started on {planned.spoke} "
        f"{format_time(began)}, before Caspian dispatched it, so it ends "
        f"{format_time(began + timedelta(hours=1))}, after its deadline "
        f"{format_time(planned.deadline)}"
    )


def test_a_planned_start_that_went_by_undispatched_is_planned_again_from_now() -> None:
    decision, files = step(template_files(), now=NOW)
    outage = NOW + timedelta(hours=6)  # no reconcile in between: the remote was down
    missed = [
        e for e in entries(decision).values() if e.phase == "Planned" and e.planned_start < outage
    ]
    assert len(missed) >= 2
    later, _ = step(files, now=outage)
    for before in missed:
        after = entries(later)[before.id]
        # It starts now or later, and holds its room for the hours it runs.
        assert after.planned_start >= outage, before.id
        assignment = later.plan.assignment(before.id)
        assert later.window.time_of(assignment.start_slot) == after.planned_start
        assert after.phase == ("Dispatched" if after.planned_start <= outage else "Planned")
    assert_valid_plan(later.instance, later.plan)
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    went_by = [line for line in message.splitlines() if "went by with no reconcile" in line]
    assert len(went_by) == len(missed)
    # A reconcile within the slot of a planned start dispatches it there, as before.
    first = min(missed, key=lambda e: e.planned_start)
    on_time, _ = step(files, now=first.planned_start + timedelta(minutes=7))
    kept = entries(on_time)[first.id]
    assert (kept.phase, kept.planned_start) == ("Dispatched", first.planned_start)


def test_a_job_late_for_a_start_that_went_by_says_so_not_to_move_its_deadline() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = entries(decision)["batch/etl-daily"]
    assert planned.phase == "Planned" and planned.planned_end <= planned.deadline
    # No reconcile until the hour before its deadline: an hour's run no longer fits.
    outage = planned.deadline - timedelta(minutes=30)
    later, _ = step(files, now=outage)
    after = entries(later)["batch/etl-daily"]
    assert after.late
    assert after.reason == (
        f"will finish after its deadline: it was planned on {planned.spoke} from "
        f"{format_time(planned.planned_start)}, in time, and that start went by before a "
        f"reconcile dispatched it, so it ends {format_time(outage + timedelta(hours=1))} at "
        f"the earliest, after its deadline {format_time(planned.deadline)}"
    )
    # One that was late as planned is still told to change its file.
    rush = {
        "caspian.dev/duration": "2h",
        "caspian.dev/not-before": format_time(NOW + timedelta(hours=1)),
        "caspian.dev/deadline": format_time(NOW + timedelta(hours=2)),
    }
    files = {**template_files(), "jobs/rush.yaml": appwrapper("rush", annotations=rush).encode()}
    decision, files = step(files, now=NOW)
    assert (entries(decision)["batch/rush"].phase, entries(decision)["batch/rush"].late) == (
        "Planned",
        True,
    )
    later, _ = step(files, now=NOW + timedelta(hours=1, minutes=30))
    assert "give it a later caspian.dev/deadline" in entries(later)["batch/rush"].reason


def test_a_late_job_planned_where_it_was_keeps_its_reason_through_the_slot() -> None:
    # big cannot end by its deadline however early it starts, and waits for
    # small, which paris runs first: its reason counts from the reconcile
    # that placed it, not from each later one.
    paris_only = {"caspian.dev/spokes": "paris"}
    big = {**paris_only, "caspian.dev/duration": "2h", "caspian.dev/complete-within": "90m"}
    small = {**paris_only, "caspian.dev/duration": "1h", "caspian.dev/complete-within": "1h"}
    files = {
        **template_files(),
        "jobs/big.yaml": appwrapper("big", annotations=big, resources=_cpu(32)).encode(),
        "jobs/small.yaml": appwrapper("small", annotations=small, resources=_cpu(1)).encode(),
    }
    first, files = step(files, now=NOW)
    placed = entries(first)["batch/big"]
    assert (placed.phase, placed.late) == ("Planned", True)
    assert placed.reason.startswith("will finish after its deadline: it runs 2h, so it ends ")
    later, again = step(files, now=NOW + timedelta(minutes=10))
    assert entries(later)["batch/big"] == placed
    assert again == files
    # A new deadline is told, though the place stays.
    due = {**big, "caspian.dev/complete-within": "100m"}
    later_due = appwrapper("big", annotations=due, resources=_cpu(32))
    edited, _ = step(
        {**files, "jobs/big.yaml": later_due.encode()}, now=NOW + timedelta(minutes=10)
    )
    told = entries(edited)["batch/big"]
    assert (told.spoke, told.planned_start) == (placed.spoke, placed.planned_start)
    assert told.reason.endswith(
        f"after its deadline {format_time(told.deadline)}: give it a later "
        "caspian.dev/deadline (or complete-within) or a shorter "
        "caspian.dev/duration"
    )
    assert told.deadline > placed.deadline


def _cpu(cores: int) -> dict:
    return {"requests": {"cpu": str(cores), "memory": "1Gi"}}


def test_a_finished_job_stays_finished_and_is_rendered_unsuspended() -> None:
    decision, files = step(template_files(), now=NOW)
    first = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    _, files = step(
        files,
        now=NOW + timedelta(minutes=20),
        states={first.spoke: {"jobs": {first.job_key: "Failed"}}},
    )
    again, files = step(files, now=NOW + timedelta(hours=2))  # the spoke no longer reports it
    assert entries(again)[first.id].phase == "Failed"
    path = f"rendered/{first.spoke}/batch.{first.job_name}.yaml"
    assert yaml.safe_load(files[path])["spec"]["suspend"] is False


def test_a_job_longer_than_the_horizon_is_placed_and_its_deadline_blamed() -> None:
    files = template_files()
    # Three days against the policy's 24 h to complete: no start meets it.
    files["jobs/long.yaml"] = appwrapper(
        "long", annotations={"caspian.dev/duration": "3d"}
    ).encode()
    decision, placed = step(files, now=NOW)
    long = entries(decision)["batch/long"]
    assert long.phase == "Dispatched" and long.late
    assert long.planned_end - long.planned_start == timedelta(days=3)
    assert "it runs 3d, so it ends" in long.reason
    assert "give it a later caspian.dev/deadline" in long.reason
    message = messages.commit_message(old=ledger.Ledger(), decision=decision, input_commit="0")
    assert f"Late:\n- batch/long: {long.reason}\n" in message
    # Running, it keeps the reason it was placed with, not one from a later "now".
    later, _ = step(placed, now=NOW + timedelta(hours=1))
    assert entries(later)["batch/long"].reason == long.reason


def test_a_job_late_for_want_of_room_says_so() -> None:
    files = template_files()
    # 60 CPUs for 2 h, due in 3 h: two spokes have room for one each in time,
    # the third (32 CPUs) for none. Room, not the deadline, is what they lack.
    for index in range(4):
        files[f"jobs/wide-{index}.yaml"] = appwrapper(
            f"wide-{index}",
            annotations={"caspian.dev/duration": "2h", "caspian.dev/complete-within": "3h"},
            resources={"requests": {"cpu": "60", "memory": "1Gi"}},
        ).encode()
    decision, _ = step(files, now=NOW)
    late = [e for e in entries(decision).values() if e.late]
    assert {e.id for e in late} <= {f"batch/wide-{i}" for i in range(4)} and len(late) >= 2
    assert all(e.reason == "will finish after its deadline: no earlier capacity" for e in late)


def test_a_not_before_past_the_deadline_is_a_problem_and_holds_what_was_placed() -> None:
    # Such a job could only ever be late, so its file is refused as contradicting
    # itself (a date mistyped), where it was once planned late.
    files = template_files()
    hints = {"caspian.dev/deadline": "2026-11-22T05:00:00Z"}
    files["jobs/waits.yaml"] = appwrapper("waits", annotations=hints).encode()
    decision, files = step(files, now=NOW)
    placed = entries(decision)["batch/waits"]
    assert placed.spoke and not placed.late
    hints["caspian.dev/not-before"] = "2026-11-22T10:00:00Z"
    files["jobs/waits.yaml"] = appwrapper("waits", annotations=hints).encode()
    later, _ = step(files, now=NOW)
    assert [p.line() for p in later.problems] == [
        "jobs/waits.yaml: metadata.annotations.caspian.dev/not-before: 2026-11-22T10:00:00Z "
        "is not before its caspian.dev/deadline 2026-11-22T05:00:00Z: no start meets it; "
        "move one of them"
    ]
    held = entries(later)["batch/waits"]
    assert (held.phase, held.spoke, held.job_name) == (placed.phase, placed.spoke, placed.job_name)
    # A window only shorter than the job's duration is planned, late: a duration
    # is an estimate. Its reason names the not-before.
    hints["caspian.dev/deadline"] = "2026-11-22T10:30:00Z"
    files = {**template_files(), "jobs/short.yaml": appwrapper("short", annotations=hints).encode()}
    late, _ = step(files, now=NOW)
    short = entries(late)["batch/short"]
    assert not late.problems and short.late
    assert short.planned_start.isoformat().startswith("2026-11-22T10:00")
    assert "from its caspian.dev/not-before 2026-11-22T10:00:00Z" in short.reason
    assert "an earlier not-before" in short.reason


def test_with_every_spoke_down_new_jobs_wait_and_say_which_spokes_are_down() -> None:
    down = {"up": False, "cpu": 0, "memory_bytes": 0, "gpu": 0, "reason": "HTTP 503 Unavailable"}
    decision, _ = step(
        template_files(), now=NOW, states=dict.fromkeys(("california", "frankfurt", "paris"), down)
    )
    pending = [e for e in entries(decision).values() if e.phase == "Pending"]
    assert len(pending) == 10
    for entry in pending:
        assert entry.reason.startswith("no spoke it may use can take it: "), entry.reason
        assert "paris (down: HTTP 503 Unavailable)" in entry.reason


def test_a_job_too_big_for_the_spokes_left_up_says_which_it_leaves_out() -> None:
    # 48 cpu: paris (32) is too small; california and frankfurt would do, but are down.
    down = {"up": False, "cpu": 0, "memory_bytes": 0, "gpu": 0, "reason": "HTTP 503 Unavailable"}
    big = appwrapper("big", resources={"requests": {"cpu": "48", "memory": "1Gi"}})
    decision, _ = step(
        {**template_files(), "jobs/big.yaml": big.encode()},
        now=NOW,
        states=dict.fromkeys(("california", "frankfurt"), down),
    )
    entry = entries(decision)["batch/big"]
    assert (entry.phase, entry.reason) == (
        "Pending",
        "no allowed spoke is large enough: cpu 48 > largest allowed spoke's 32, leaving out "
        "california (down: HTTP 503 Unavailable); frankfurt (down: HTTP 503 Unavailable)",
    )


def test_a_spoke_leaving_the_fleet_moves_its_jobs_and_holds_none() -> None:
    decision, files = step(template_files(), now=NOW)
    on_paris = [e.id for e in entries(decision).values() if e.spoke == "paris"]
    files = {k: v for k, v in files.items() if k != "spokes/paris.yaml"}
    # backfill-eu names paris among its spokes: its file is now broken, and the
    # job is held as committed, on a spoke that is no longer there (this crashed).
    later, _ = step(files, now=NOW + timedelta(minutes=30))
    after = entries(later)
    assert after["batch/backfill-eu"].spoke == "paris"
    assert [p.file for p in later.problems] == ["jobs/backfill-eu.yaml"]
    moved = [job_id for job_id in on_paris if job_id != "batch/backfill-eu"]
    assert moved and all(after[job_id].spoke in ("california", "frankfurt") for job_id in moved)
    started = sum(1 for e in entries(decision).values() if e.spoke == "paris" and e.phase in FIXED)
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    removed = f"Spokes removed from the fleet:\n- paris: {started} jobs dispatched or running"
    assert started and removed in message
    # Each started one placed again says where it ran, as its Job there goes.
    again = [j for j in moved if after[j].phase == "Dispatched" and j in later.jobs]
    for job_id in again:
        if entries(decision)[job_id].phase == "Dispatched":
            line = f"- dispatched {job_id} on {after[job_id].spoke} (suspend: false), "
            assert line + "dispatched on paris before" in message
    assert any(entries(decision)[j].phase == "Dispatched" for j in again)


def test_a_job_started_on_a_removed_spoke_and_planned_later_elsewhere_says_so() -> None:
    decision, files = step(template_files(), now=NOW)
    started = entries(decision)["batch/finetune-llm"]
    assert (started.phase, started.spoke) == ("Dispatched", "paris")
    # Its AppWrapper now holds it back five hours: placed again, it waits.
    doc = yaml.safe_load(files[started.source])
    doc["metadata"]["annotations"]["caspian.dev/not-before"] = format_time(NOW + timedelta(hours=5))
    files = {k: v for k, v in files.items() if k != "spokes/paris.yaml"}
    files[started.source] = yaml.safe_dump(doc).encode()
    later, _ = step(files, now=NOW + timedelta(minutes=30))
    after = entries(later)[started.id]
    assert after.phase == "Planned" and after.spoke != "paris"
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    when = format_time(after.planned_start).replace("T", " ")[:16]
    assert (
        f"- placed batch/finetune-llm again on {after.spoke} {when}, dispatched on paris before"
    ) in message


def test_a_spoke_leaving_the_fleet_runs_no_finished_job_again_nor_slides_a_deadline() -> None:
    decision, files = step(template_files(), now=NOW)
    on_paris = {e.id: e for e in entries(decision).values() if e.spoke == "paris"}
    done = next(e for e in on_paris.values() if e.phase == "Dispatched")
    reports = {"paris": {"jobs": {done.job_key: "Succeeded"}}}
    _, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    # Drained and removed two hours on, its finished job's AppWrapper still in jobs/.
    files = {k: v for k, v in files.items() if k != "spokes/paris.yaml"}
    later, _ = step(files, now=NOW + timedelta(hours=2))
    after = entries(later)
    assert (after[done.id].phase, after[done.id].spoke) == ("Succeeded", "paris")
    assert done.id not in {a.id for a in later.plan.assignments}
    again = [e for e in on_paris.values() if e.id != done.id and e.id in later.jobs]
    assert again
    for before in again:
        assert after[before.id].spoke != "paris"
        assert (after[before.id].first_seen, after[before.id].deadline) == (
            before.first_seen,
            before.deadline,
        )


def test_a_removed_spokes_line_tells_jobs_placed_again_from_held_ones() -> None:
    decision, files = step(template_files(), now=NOW)
    started = [e for e in entries(decision).values() if e.spoke == "paris" and e.phase in FIXED]
    broken = started[0]
    files = {k: v for k, v in files.items() if k != "spokes/paris.yaml"}
    files[broken.source] = b"kind: AppWrapper\nspec: [\n"
    later, _ = step(files, now=NOW + timedelta(minutes=30))
    assert broken.id in later.held
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    assert (
        f"- paris: {len(started)} jobs dispatched or running there stopped with it (Argo CD "
        f"prunes rendered/paris/), {len(started) - 1} placed again and 1 held until its broken "
        "file is fixed;"
    ) in message


def test_a_finished_job_runs_again_only_once_its_job_template_changes() -> None:
    decision, files = step(template_files(), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    _, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    # Removed and committed again, as `kubectl delete` and `apply` would rerun it.
    original = files.pop(done.source)
    _, files = step(files, now=NOW + timedelta(minutes=40))
    back, files = step({**files, done.source: original}, now=NOW + timedelta(days=1))
    assert entries(back)[done.id].phase == "Succeeded"
    doc = yaml.safe_load(original)
    doc["spec"]["components"][0]["template"]["metadata"].setdefault("labels", {})["run"] = "2"
    rerun = {**files, done.source: yaml.safe_dump(doc, sort_keys=False).encode()}
    again, _ = step(rerun, now=NOW + timedelta(days=1))
    entry = entries(again)[done.id]
    assert entry.phase in ("Planned", "Dispatched") and entry.job_name != done.job_name


def test_a_copy_of_a_started_jobs_file_does_not_take_it_over() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    name = started.id.split("/")[1]
    # Sorts before the original, and runs another image: were it read first,
    # the started Job would be replaced by the copy's.
    copy = _edited(files, started.source, "busybox:copy")[started.source]
    files = {**files, f"jobs/0-{name}.yaml": copy}
    again, after = step(files, now=NOW + timedelta(minutes=5))
    entry = entries(again)[started.id]
    assert (entry.source, entry.job_name, entry.phase) == (
        started.source,
        started.job_name,
        "Dispatched",
    )
    assert [p.line() for p in again.problems if "already defined" in p.line()] == [
        f"jobs/0-{name}.yaml: metadata.name: {started.id} is already defined in "
        f"{started.source} (where Caspian placed it from); give one of them another name"
    ]
    assert after[job_path(entry)] == files[job_path(started)]


def test_a_started_jobs_file_moved_keeps_its_place_and_its_job() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    moved = f"jobs/team/{started.source.removeprefix('jobs/')}"
    files = {**files, moved: files[started.source]}
    del files[started.source]
    again, after = step(files, now=NOW + timedelta(minutes=5))
    entry = entries(again)[started.id]
    assert (entry.source, entry.phase, entry.spoke) == (moved, "Dispatched", started.spoke)
    assert entry.job_name == started.job_name and not again.problems
    assert f"caspian.dev/source: {moved}" in after[job_path(entry)].decode()


def _edited(files, path, image):
    doc = yaml.safe_load(files[path])
    job = doc["spec"]["components"][0]["template"]
    job["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return {**files, path: yaml.safe_dump(doc, sort_keys=False).encode()}


def test_a_relative_deadline_stays_when_the_job_is_edited_and_starts_over_when_new() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    later = NOW + timedelta(hours=2)
    _, files = step(files, now=later, states=reports)
    # Its image fixed two hours on: the same AppWrapper, the same deadline.
    edited, _ = step(_edited(files, planned.source, "python:3.13-slim"), now=later)
    entry = entries(edited)[planned.id]
    assert entry.job_name != planned.job_name
    assert (entry.first_seen, entry.deadline) == (planned.first_seen, planned.deadline)
    # Edited after it finished, to run again: a new run, with a deadline of its own.
    rerun, _ = step(_edited(files, done.source, "python:3.13-slim"), now=later)
    assert entries(rerun)[done.id].first_seen == later
    # Removed, then added again: a new AppWrapper, as Kubernetes would have it.
    source = files[planned.source]
    _, files = step({k: v for k, v in files.items() if k != planned.source}, now=later)
    again, _ = step({**files, planned.source: source}, now=later + timedelta(minutes=15))
    assert entries(again)[planned.id].first_seen == later + timedelta(minutes=15)


def test_removing_a_finished_jobs_file_keeps_how_it_ended() -> None:
    decision, files = step(template_files(), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    _, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    files.pop(done.source)  # tidying jobs/ after the run
    later, rendered = step(files, now=NOW + timedelta(minutes=40))
    after = entries(later)[done.id]
    assert after.phase == "Succeeded" and after.reason == ""  # not "Cancelled"
    kustomization = yaml.safe_load(rendered[f"rendered/{done.spoke}/kustomization.yaml"])
    assert not any(done.job_name in name for name in kustomization["resources"])


def _with_policy(files, **spec):
    policy = yaml.safe_load(files["caspian.yaml"])
    policy["spec"].update(spec)
    return {**files, "caspian.yaml": yaml.safe_dump(policy).encode()}


def test_a_removed_jobs_record_is_forgotten_once_ledger_retention_is_over() -> None:
    first, files = step(_with_policy(template_files(), ledgerRetention="2d"), now=NOW)
    gone = next(e for e in entries(first).values() if e.phase == "Planned")
    files.pop(gone.source)
    removed_at = NOW + timedelta(hours=1)
    cancelled, files = step(files, now=removed_at)
    assert entries(cancelled)[gone.id].phase == "Cancelled"
    assert entries(cancelled)[gone.id].removed_at == removed_at
    before_end, files = step(files, now=removed_at + timedelta(days=2, minutes=-15))
    assert entries(before_end)[gone.id].removed_at == removed_at  # kept, not re-stamped
    old = ledger.parse(files[ledger.LEDGER_PATH])
    after, files = step(files, now=removed_at + timedelta(days=2))
    assert gone.id not in entries(after)
    assert "forget: 1 job" in messages.subject(old, after)
    body = messages.commit_message(old=old, decision=after, input_commit="0" * 40)
    assert f"- forgot {gone.id} (Cancelled; AppWrapper removed" in body
    again, _ = step(files, now=removed_at + timedelta(days=3))
    assert gone.id not in entries(again)  # forgotten for good, not cancelled anew


def test_a_finished_job_whose_appwrapper_stays_is_never_forgotten() -> None:
    # Forgetting its record would plan and run it again.
    decision, files = step(_with_policy(template_files(), ledgerRetention="1h"), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    _, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    later, _ = step(files, now=NOW + timedelta(days=30))
    assert entries(later)[done.id].phase == "Succeeded"


def test_a_record_from_before_removals_were_dated_is_dated_then_kept() -> None:
    first, files = step(_with_policy(template_files(), ledgerRetention="1h"), now=NOW)
    gone = next(e for e in entries(first).values() if e.phase == "Planned")
    files.pop(gone.source)
    _, files = step(files, now=NOW + timedelta(minutes=15))
    undated = yaml.safe_load(files[ledger.LEDGER_PATH])
    for entry in undated["entries"]:
        entry.pop("removedAt", None)
    files[ledger.LEDGER_PATH] = yaml.safe_dump(undated).encode()
    later = NOW + timedelta(days=5)
    dated, files = step(files, now=later)
    assert entries(dated)[gone.id].removed_at == later
    forgotten, _ = step(files, now=later + timedelta(hours=1))
    assert gone.id not in entries(forgotten)


def test_a_finished_jobs_file_put_back_makes_its_record_live_again() -> None:
    decision, files = step(_with_policy(template_files(), ledgerRetention="1h"), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    _, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    source = files.pop(done.source)
    tidied, files = step(files, now=NOW + timedelta(minutes=40))
    assert entries(tidied)[done.id].removed_at is not None
    back, files = step({**files, done.source: source}, now=NOW + timedelta(minutes=55))
    assert entries(back)[done.id].removed_at is None
    files.pop(done.source)
    removed_again = NOW + timedelta(hours=3)
    again, _ = step(files, now=removed_again)
    # Counted from this removal, not the first: still there.
    assert entries(again)[done.id].phase == "Succeeded"
    assert entries(again)[done.id].removed_at == removed_again


def test_the_placement_table_leaves_out_jobs_finished_past_retention() -> None:
    decision, files = step(template_files(), now=NOW)
    done = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    reports = {done.spoke: {"jobs": {done.job_key: "Succeeded"}}}
    just_done, files = step(files, now=NOW + timedelta(minutes=20), states=reports)
    assert f"| {done.id} " in messages.placement_table(just_done)
    long_done, _ = step(files, now=done.planned_end + timedelta(hours=24))
    assert entries(long_done)[done.id].phase == "Succeeded"  # the ledger keeps it
    assert f"| {done.id} " not in messages.placement_table(long_done)


def test_past_so_many_jobs_in_flight_a_commit_tabulates_those_it_changes(monkeypatch) -> None:
    monkeypatch.setattr(messages, "MOST_TABLE_ROWS", 5)  # the template has 10 jobs
    first, files = step(template_files(), now=NOW)
    empty = ledger.parse(None)
    message = messages.commit_message(old=empty, decision=first, input_commit="0" * 40)
    assert all(f"| {job_id} " in message for job_id in entries(first))  # all new
    started = next(e for e in entries(first).values() if e.phase == "Dispatched")
    reports = {started.spoke: {"jobs": {started.job_key: "Running"}}}
    later, _ = step(files, now=NOW + timedelta(minutes=5), states=reports)
    message = messages.commit_message(old=first.ledger, decision=later, input_commit="0" * 40)
    changed = [i for i, e in entries(later).items() if entries(first).get(i) != e]
    assert started.id in changed and len(changed) < 10
    tabulated = [i for i in entries(later) if f"| {i} " in message]
    assert sorted(tabulated) == sorted(changed)
    assert (
        f"... and {10 - len(changed)} more jobs in flight, unchanged by this commit: "
        "status/placements.yaml lists every job"
    ) in message
    # Nothing of the ledger changed (a finished Job leaving rendered/, say): no table.
    same = messages.commit_message(old=later.ledger, decision=later, input_commit="0" * 40)
    assert "10 jobs in flight, none changed by this commit" in same and "| job " not in same


def _unschedulable(files, spoke):
    doc = yaml.safe_load(files[f"spokes/{spoke}.yaml"])
    doc["spec"]["unschedulable"] = True
    return {**files, f"spokes/{spoke}.yaml": yaml.safe_dump(doc).encode()}


def test_an_unschedulable_spoke_keeps_what_was_dispatched_and_gets_no_new_work() -> None:
    decision, files = step(template_files(), now=NOW)
    on_paris = {e.id: e for e in entries(decision).values() if e.spoke == "paris"}
    dispatched = {i for i, e in on_paris.items() if e.phase == "Dispatched"}
    planned = {i for i, e in on_paris.items() if e.phase == "Planned"}
    assert dispatched and planned  # the template puts both there
    cordoned, files = step(_unschedulable(files, "paris"), now=NOW + timedelta(minutes=5))
    after = entries(cordoned)
    for job_id in dispatched:  # runs on to its end: nothing for Argo CD to prune
        assert (after[job_id].spoke, after[job_id].phase) == ("paris", "Dispatched")
        assert after[job_id].job_name in str(files["rendered/paris/kustomization.yaml"])
    # The planned ones moved, and nothing new went there.
    assert {e.id for e in after.values() if e.spoke == "paris"} == dispatched
    message = messages.commit_message(old=decision.ledger, decision=cordoned, input_commit="0" * 40)
    assert f"- paris: {len(dispatched)} job" in message
    assert "its file can go once they finish" in message


def test_a_drained_spoke_says_its_file_can_go() -> None:
    decision, _ = step(_unschedulable(template_files(), "paris"), now=NOW)
    assert not any(e.spoke == "paris" for e in entries(decision).values())
    assert messages.draining(decision) == [
        "paris: nothing dispatched or running there; spokes/paris.yaml can go"
    ]


def test_a_job_only_unschedulable_spokes_may_take_waits_and_says_why() -> None:
    files = _unschedulable(_unschedulable(template_files(), "paris"), "frankfurt")
    decision, _ = step(files, now=NOW)
    backfill = entries(decision)["batch/backfill-eu"]  # caspian.dev/spokes: paris,frankfurt
    assert backfill.phase == "Pending"
    assert backfill.reason == (
        "no spoke it may use can take it: paris (unschedulable in spokes/paris.yaml); "
        "frankfurt (unschedulable in spokes/frankfurt.yaml)"
    )
    assert {e.spoke for e in entries(decision).values() if e.spoke} == {"california"}


def two_jobs_on_paris(*, second_not_before: str) -> dict[str, bytes]:
    """A job of all paris's cpu for 1 h, and another that must start right after."""
    files = {k: v for k, v in template_files().items() if not k.startswith("jobs/")}
    hints = {"caspian.dev/duration": "1h", "caspian.dev/spokes": "paris"}
    whole = {"requests": {"cpu": "32", "memory": "1Gi"}}
    files["jobs/first.yaml"] = appwrapper(
        "first", annotations={**hints, "caspian.dev/complete-within": "1h"}, resources=whole
    ).encode()
    files["jobs/second.yaml"] = appwrapper(
        "second",
        annotations={
            **hints,
            "caspian.dev/complete-within": "2h15m",
            "caspian.dev/not-before": second_not_before,
        },
        resources=whole,
    ).encode()
    return files


def test_a_job_running_past_its_planned_end_keeps_its_room() -> None:
    files = two_jobs_on_paris(second_not_before=format_time(NOW + timedelta(minutes=75)))
    decision, files = step(files, now=NOW)
    first, second = entries(decision)["batch/first"], entries(decision)["batch/second"]
    assert first.phase == "Dispatched" and first.planned_end == NOW + timedelta(hours=1)
    assert second.planned_start == NOW + timedelta(minutes=75)

    # At its planned end the spoke still reports it running: the second job
    # would start on top of it, so it goes to after the slot the first holds.
    at_end = first.planned_end
    still, _ = step(files, now=at_end, states={"paris": {"jobs": {first.job_key: "Running"}}})
    assert entries(still)["batch/second"].planned_start == at_end + timedelta(minutes=30)
    assert entries(still)["batch/second"].late
    assert "running past its planned end" in messages.placement_table(still)

    # Finished on time, it holds nothing: the second job keeps its start.
    done, _ = step(files, now=at_end, states={"paris": {"jobs": {first.job_key: "Succeeded"}}})
    assert entries(done)["batch/second"].planned_start == NOW + timedelta(minutes=75)
    # Running before its end is no overrun: nothing moves either.
    early, _ = step(
        files,
        now=at_end - timedelta(minutes=15),
        states={"paris": {"jobs": {first.job_key: "Running"}}},
    )
    assert entries(early)["batch/second"].planned_start == NOW + timedelta(minutes=75)
    assert "running past" not in messages.placement_table(early)


def wide_job(*, spokes: str) -> bytes:
    """One pod of 24 cpu, 2 pods at once: 48 cpu in all."""
    return appwrapper(
        "wide",
        annotations={"caspian.dev/spokes": spokes},
        job_spec={"parallelism": 2},
        resources={"requests": {"cpu": "24", "memory": "8Gi"}},
    ).encode()


def nodes(cpu: float, *, count: int = 2, labels: dict[str, str] | None = None) -> tuple:
    size = Resources(cpu=cpu, memory_bytes=4 * cpu * 2**30, gpu=0)
    return (Node(allocatable=size, labels=labels or {}),) * count


SMALL_NODES = {"nodes": nodes(16)}


def test_jobs_that_ask_for_nothing_take_room_and_carbon_at_the_default_request() -> None:
    def bare(name: str) -> bytes:
        doc = appwrapper_doc(name, annotations={"caspian.dev/spokes": "paris"})
        pod = doc["spec"]["components"][0]["template"]["spec"]["template"]["spec"]
        pod["containers"][0].pop("resources")
        return yaml.safe_dump(doc).encode()

    files = {**template_files(), **{f"jobs/bare-{i}.yaml": bare(f"bare-{i}") for i in range(12)}}
    policy = yaml.safe_load(files["caspian.yaml"])
    policy["spec"]["defaults"]["requests"] = {"cpu": "8", "memory": "1Gi"}
    decision, _ = step({**files, "caspian.yaml": yaml.safe_dump(policy).encode()}, now=NOW)
    assert_valid_plan(decision.instance, decision.plan)
    bare_jobs = [e for e in entries(decision).values() if e.id.startswith("batch/bare-")]
    # Paris has 32 cpu: at most four of them run at once, and each is priced.
    starts = [e.planned_start for e in bare_jobs if e.phase != "Pending"]
    assert max(starts.count(start) for start in starts) <= 4
    assert all(e.estimated_grams > 0 for e in bare_jobs if e.phase != "Pending")
    # Counted as nothing, all twelve would start in one slot, at no carbon.
    policy["spec"]["defaults"]["requests"] = {"cpu": "0", "memory": "0"}
    free, _ = step({**files, "caspian.yaml": yaml.safe_dump(policy).encode()}, now=NOW)
    free_jobs = [e for e in entries(free).values() if e.id.startswith("batch/bare-")]
    assert len({e.planned_start for e in free_jobs}) == 1
    assert {e.estimated_grams for e in free_jobs} == {0.0}


def test_a_spoke_whose_nodes_are_all_smaller_than_the_pod_is_not_used() -> None:
    files = {**template_files(), "jobs/wide.yaml": wide_job(spokes="paris,frankfurt")}
    # Both have room for 48 cpu in all, on nodes of 16 cpu where no pod of 24
    # runs: the job waits and says why for each spoke.
    paris = {**SMALL_NODES, "cpu": 96}
    decision, _ = step(files, now=NOW, states={"paris": paris, "frankfurt": SMALL_NODES})
    wide = entries(decision)["batch/wide"]
    assert wide.phase == "Pending"
    assert wide.reason == (
        "no spoke it may use can take it: paris (its pod needs 24 cpu, 8Gi memory, 0 GPUs; "
        "no node there has that much (the largest: 16 cpu, 64Gi memory, 0 GPUs)); frankfurt "
        "(its pod needs 24 cpu, 8Gi memory, 0 GPUs; no node there has that much (the "
        "largest: 16 cpu, 64Gi memory, 0 GPUs))"
    )
    # Nodes of 32 cpu on frankfurt are enough.
    decision, _ = step(files, now=NOW, states={"paris": paris, "frankfurt": {"nodes": nodes(32)}})
    wide = entries(decision)["batch/wide"]
    assert wide.spoke == "frankfurt" and wide.phase in ("Planned", "Dispatched")
    assert set(decision.no_node_fits["batch/wide"]) == {"paris"}


def test_without_node_sizes_only_the_summed_capacity_counts() -> None:
    files = {**template_files(), "jobs/wide.yaml": wide_job(spokes="frankfurt")}
    decision, _ = step(files, now=NOW)  # declared capacity: 64 cpu, no nodes known
    assert entries(decision)["batch/wide"].spoke == "frankfurt"
    assert decision.no_node_fits == {}


def test_a_node_selector_only_counts_the_nodes_with_its_labels() -> None:
    a100 = {"gpu.product": "A100"}
    text = appwrapper(
        "picky",
        annotations={"caspian.dev/spokes": "paris,frankfurt"},
        pod_spec={"nodeSelector": a100},
        resources={"requests": {"cpu": "8", "memory": "8Gi"}},
    ).encode()
    files = {**template_files(), "jobs/picky.yaml": text}
    big_unlabelled = {"nodes": nodes(32)}
    small_a100 = {"nodes": nodes(32) + nodes(4, count=1, labels=a100)}
    decision, _ = step(files, now=NOW, states={"paris": big_unlabelled, "frankfurt": small_a100})
    picky = entries(decision)["batch/picky"]
    assert picky.phase == "Pending"
    assert "paris (no node there matches its node selection (gpu.product=A100))" in picky.reason
    assert "frankfurt (its pod needs 8 cpu, 8Gi memory, 0 GPUs; no node it may use " in (
        picky.reason
    )
    assert "(the largest: 4 cpu, 16Gi memory, 0 GPUs))" in picky.reason

    large_a100 = {"nodes": nodes(4) + nodes(16, count=1, labels={**a100, "zone": "b"})}
    decision, _ = step(files, now=NOW, states={"paris": big_unlabelled, "frankfurt": large_a100})
    assert entries(decision)["batch/picky"].spoke == "frankfurt"


def test_a_deadline_long_past_runs_the_job_at_once_and_says_it_is_late() -> None:
    # A year's lateness once outweighed leaving the job unplaced: it waited as
    # "deferred: no capacity left", with the whole fleet free.
    a_year_ago = format_time(NOW - timedelta(days=366))
    text = appwrapper("stale", annotations={"caspian.dev/deadline": a_year_ago}).encode()
    decision, _ = step({**template_files(), "jobs/stale.yaml": text}, now=NOW)
    stale = entries(decision)["batch/stale"]
    assert (stale.phase, stale.planned_start, stale.late) == ("Dispatched", NOW, True)
    assert stale.reason.startswith("will finish after its deadline: it runs 1h")


def test_a_required_node_affinity_only_counts_the_nodes_it_allows() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "gpu.product", "operator": "NotIn", "values": ["T4"]}
                        ]
                    }
                ]
            }
        }
    }
    text = appwrapper(
        "newer",
        annotations={"caspian.dev/spokes": "paris,frankfurt"},
        pod_spec={"affinity": affinity},
        resources={"requests": {"cpu": "8", "memory": "8Gi"}},
    ).encode()
    files = {**template_files(), "jobs/newer.yaml": text}
    t4_only = {"nodes": nodes(32, labels={"gpu.product": "T4"})}
    unlabelled = {"nodes": nodes(32)}  # no gpu.product label: NotIn holds
    decision, _ = step(files, now=NOW, states={"paris": t4_only, "frankfurt": unlabelled})
    assert entries(decision)["batch/newer"].spoke == "frankfurt"
    assert decision.no_node_fits["batch/newer"] == {
        "paris": "no node there matches its node selection (gpu.product NotIn (T4))"
    }


def test_a_pod_goes_only_to_nodes_whose_taints_it_tolerates() -> None:
    gpu_pool = Node(
        allocatable=Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4),
        taints=(Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule"),),
    )
    paris = {"gpu": 8, "nodes": (gpu_pool, gpu_pool, *nodes(16))}

    def trainer(tolerations: list[dict]) -> dict[str, bytes]:
        text = appwrapper(
            "trainer",
            annotations={"caspian.dev/spokes": "paris"},
            pod_spec={"tolerations": tolerations},
            resources={
                "requests": {"cpu": "8", "memory": "8Gi"},
                "limits": {"nvidia.com/gpu": "1"},
            },
        )
        return {**template_files(), "jobs/trainer.yaml": text.encode()}

    # The untainted nodes have no GPU, and the GPU pool's taint is not tolerated.
    decision, _ = step(
        trainer([{"key": "dedicated", "operator": "Exists"}]), now=NOW, states={"paris": paris}
    )
    assert entries(decision)["batch/trainer"].phase == "Pending"
    assert decision.no_node_fits["batch/trainer"] == {
        "paris": "the nodes there big enough for its pod have taints it does not tolerate "
        "(nvidia.com/gpu=present:NoSchedule): it runs there only if its pod template tolerates them"
    }
    # A toleration for another value of the key does not do either.
    wrong = [{"key": "nvidia.com/gpu", "value": "absent", "effect": "NoSchedule"}]
    decision, _ = step(trainer(wrong), now=NOW, states={"paris": paris})
    assert "batch/trainer" in decision.no_node_fits

    tolerated = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    decision, _ = step(trainer(tolerated), now=NOW, states={"paris": paris})
    assert entries(decision)["batch/trainer"].spoke == "paris"
    assert "batch/trainer" not in decision.no_node_fits
    # A CPU job too big for the untainted nodes does not go to the GPU pool either.
    assert set(decision.no_node_fits["batch/climate-sim"]) == {"paris"}

    # Where every node is tainted, the taints are the reason even for a pod too
    # big for any of them: tolerating them comes first.
    small_pool = gpu_pool.model_copy(update={"allocatable": nodes(4)[0].allocatable})
    decision, _ = step(trainer([]), now=NOW, states={"paris": {"gpu": 8, "nodes": (small_pool,)}})
    assert decision.no_node_fits["batch/trainer"]["paris"].startswith(
        "the nodes there it may use have taints it does not tolerate"
    )


def test_room_on_tainted_nodes_counts_only_for_jobs_that_tolerate_the_taint() -> None:
    gpu_taint = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
    gpu_size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)
    cpu_size = nodes(16)[0].allocatable
    paris = {
        "cpu": 96,
        "gpu": 8,
        "nodes": (
            *(Node(allocatable=cpu_size, free=cpu_size),) * 2,
            *(Node(allocatable=gpu_size, taints=(gpu_taint,), free=gpu_size),) * 2,
        ),
    }
    # The template's spokes and policy, and only these jobs.
    files = {path: text for path, text in template_files().items() if not path.startswith("jobs/")}
    for name in ("etl-a", "etl-b", "etl-c"):
        text = appwrapper(
            name,
            annotations={"caspian.dev/spokes": "paris", "caspian.dev/duration": "1h"},
            resources={"requests": {"cpu": "12", "memory": "8Gi"}},
        )
        files[f"jobs/{name}.yaml"] = text.encode()
    decision, placed = step(files, now=NOW, states={"paris": paris})
    etl = [e for e in entries(decision).values() if e.id.startswith("batch/etl-")]
    # 96 cpu in all, but 32 on the nodes these jobs may use: two at a time.
    assert_valid_plan(decision.instance, decision.plan)  # the checker sees the pools
    assert {e.spoke for e in etl} == {"paris"}
    starts = sorted(e.planned_start for e in etl)
    assert starts[1] < starts[2] and starts[2] >= starts[0] + timedelta(hours=1)
    # Once the first two have started, their room is held in the pool they can
    # run in: the third still waits for them.
    _, placed = step(placed, now=starts[1], states={"paris": paris})
    later, _ = step(placed, now=starts[1] + timedelta(minutes=15), states={"paris": paris})
    etl = [e for e in entries(later).values() if e.id.startswith("batch/etl-")]
    assert sorted(e.phase for e in etl) == ["Dispatched", "Dispatched", "Planned"]
    waiting = next(e for e in etl if e.phase == "Planned")
    assert waiting.planned_start >= starts[0] + timedelta(hours=1)
    # The optimizer saw the pools; the ledger names the spoke.
    assert [s.name for s in decision.instance.spokes if s.name.startswith("paris")] == [
        "paris[untainted]",
        "paris[nvidia.com/gpu=present:NoSchedule]",
    ]
    # Each job may use the pools where its pod fits a node whose taints it
    # tolerates: the GPU job (4 GPUs, tolerating the taint) only the GPU pool.
    files["jobs/train-resnet.yaml"] = template_files()["jobs/train-resnet.yaml"]
    decision, _ = step(files, now=NOW, states={"paris": paris})
    allowed = {job.id: job.allowed_spokes for job in decision.instance.jobs}
    assert [s for s in allowed["batch/etl-a"] if s.startswith("paris")] == ["paris[untainted]"]
    assert [s for s in allowed["batch/train-resnet"] if s.startswith("paris")] == [
        "paris[nvidia.com/gpu=present:NoSchedule]"
    ]


def test_a_node_selector_counts_only_the_room_of_the_nodes_it_allows() -> None:
    gpu_taint = Taint(key="nvidia.com/gpu", effect="NoSchedule")
    size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)

    def gpu_node(product: str) -> Node:
        return Node(
            allocatable=size, labels={"gpu.product": product}, taints=(gpu_taint,), free=size
        )

    paris = {"gpu": 12, "nodes": (gpu_node("A100"), gpu_node("A100"), gpu_node("H100"))}
    files = {path: text for path, text in template_files().items() if not path.startswith("jobs/")}
    for name in ("tune-a", "tune-b"):
        text = appwrapper(
            name,
            annotations={"caspian.dev/spokes": "paris", "caspian.dev/duration": "1h"},
            pod_spec={
                "nodeSelector": {"gpu.product": "H100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            resources={
                "requests": {"cpu": "8", "memory": "8Gi"},
                "limits": {"nvidia.com/gpu": "4"},
            },
        )
        files[f"jobs/{name}.yaml"] = text.encode()
    decision, _ = step(files, now=NOW, states={"paris": paris})
    assert_valid_plan(decision.instance, decision.plan)
    # 12 GPUs free on paris, 4 of them H100: one job at a time.
    a, b = sorted(
        (e for e in entries(decision).values() if e.id.startswith("batch/tune-")),
        key=lambda e: e.planned_start,
    )
    assert a.spoke == b.spoke == "paris"
    assert b.planned_start >= a.planned_start + timedelta(hours=1)
    assert a.pool == "paris[nvidia.com/gpu:NoSchedule; gpu.product=H100]"
    # The commit message's table shows the pool, for a reviewer to see which GPUs.
    assert "| batch/tune-a | paris[nvidia.com/gpu:NoSchedule; gpu.product=H100] |" in (
        messages.placement_table(decision)
    )


def test_a_job_pinned_to_a_node_by_name_goes_where_that_node_is() -> None:
    size = nodes(16)[0].allocatable

    def pinned(node_name: str) -> dict[str, bytes]:
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node_name]}
                            ]
                        }
                    ]
                }
            }
        }
        text = appwrapper(
            "pinned",
            annotations={"caspian.dev/spokes": "paris,frankfurt"},
            pod_spec={"affinity": affinity},
            resources={"requests": {"cpu": "8", "memory": "8Gi"}},
        )
        return {**template_files(), "jobs/pinned.yaml": text.encode()}

    states = {
        "paris": {"nodes": (Node(name="paris-1", allocatable=size, free=size),)},
        "frankfurt": {"nodes": (Node(name="frankfurt-1", allocatable=size, free=size),)},
    }
    decision, _ = step(pinned("frankfurt-1"), now=NOW, states=states)
    assert entries(decision)["batch/pinned"].spoke == "frankfurt"
    assert decision.no_node_fits["batch/pinned"] == {
        "paris": "no node there matches its node selection (metadata.name In (frankfurt-1))"
    }


def test_pods_that_need_a_node_each_go_only_where_there_are_enough_nodes() -> None:
    def trainer(parallelism: int) -> dict[str, bytes]:
        doc = appwrapper_doc(
            "trainer",
            annotations={"caspian.dev/spokes": "paris,frankfurt"},
            job_spec={"parallelism": parallelism},
            resources={"requests": {"cpu": "8", "memory": "8Gi"}},
        )
        template = doc["spec"]["components"][0]["template"]["spec"]["template"]
        template["metadata"] = {"labels": {"app": "trainer"}}
        template["spec"]["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "trainer"}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        text = yaml.safe_dump(doc, sort_keys=False)
        return {**template_files(), "jobs/trainer.yaml": text.encode()}

    # Room for all four pods in all on either spoke; nodes for them only on frankfurt.
    states = {"paris": {"nodes": nodes(64, count=2)}, "frankfurt": {"nodes": nodes(16, count=4)}}
    decision, _ = step(trainer(4), now=NOW, states=states)
    assert entries(decision)["batch/trainer"].spoke == "frankfurt"
    assert decision.no_node_fits["batch/trainer"] == {
        "paris": "its 4 pods must each have a node of their own (a required podAntiAffinity "
        "on kubernetes.io/hostname), and 2 nodes there can take one"
    }
    assert_valid_plan(decision.instance, decision.plan)
    two, _ = step(trainer(2), now=NOW, states=states)
    assert "batch/trainer" not in two.no_node_fits


def test_editing_a_started_jobs_template_replaces_it_and_the_commit_says_so() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    doc = yaml.safe_load(files[started.source])
    job = doc["spec"]["components"][0]["template"]
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "python:3.13-slim"
    edited = {**files, started.source: yaml.safe_dump(doc, sort_keys=False).encode()}
    later, _ = step(edited, now=NOW + timedelta(minutes=20))
    entry = entries(later)[started.id]
    assert entry.job_name != started.job_name
    old_file = f"rendered/{started.spoke}/batch.{started.job_name}.yaml"
    assert old_file not in render(later, previous=edited)
    message = messages.commit_message(old=decision.ledger, decision=later, input_commit="0" * 40)
    assert "replace: 1 job" in message.splitlines()[0]
    assert (
        f"- replaced {started.id}: its template changed after it started on {started.spoke}; "
        f"Argo CD stops and prunes Job {started.job_name}, and the new one is placed anew"
    ) in message
    # Nothing is replaced where nothing changed.
    again = messages.commit_message(old=later.ledger, decision=later, input_commit="0" * 40)
    assert "replaced" not in again
