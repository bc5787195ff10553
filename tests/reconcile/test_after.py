"""Jobs that run after others (caspian.dev/after): planned once those have
started, from their end; dispatched once they have succeeded; held, with
why, where one failed or is not there."""

from __future__ import annotations

from datetime import timedelta

import yaml

from optimizer import keeping
from reconciler import chains, crd, explaining, messages
from reconciler.ledger import Entry, Phase
from reconciler.loading import load_fleet
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper, appwrapper_doc, fleet_with, problems_of
from tests.reconcile.test_lifecycle import entries, step

PREP = {"caspian.dev/duration": "1h", "caspian.dev/complete-within": "3h"}


def _pipeline(prep: dict[str, str] = PREP, **train: str) -> dict[str, bytes]:
    """The template fleet with prep, and train after it, with these hints."""
    files = template_files()
    files["jobs/prep.yaml"] = appwrapper("prep", annotations=prep).encode()
    hints = {"caspian.dev/duration": "2h", "caspian.dev/after": "prep", **train}
    files["jobs/train.yaml"] = appwrapper("train", annotations=hints).encode()
    return files


def _record(fleet, job_id: str, *, phase: str) -> Entry:
    """A ledger record of a job of `fleet` in `phase`."""
    source = next(j.source for j in fleet.jobs if j.id == job_id)
    return Entry(id=job_id, source=source, phase=phase, first_seen=NOW)


def test_a_job_is_planned_from_the_end_of_what_it_runs_after_once_that_started() -> None:
    files = _pipeline(prep={**PREP, "caspian.dev/not-before": "2026-11-22T05:00:00Z"})
    first, files = step(files, now=NOW)
    prep, train = entries(first)["batch/prep"], entries(first)["batch/train"]
    assert prep.phase == "Planned"
    assert (train.phase, train.reason) == (
        "Pending",
        "waits for batch/prep to start (its caspian.dev/after)",
    )
    started, files = step(files, now=prep.planned_start + timedelta(minutes=1))
    train = entries(started)["batch/train"]
    assert entries(started)["batch/prep"].phase == "Dispatched"
    assert train.phase == "Planned" and train.planned_start >= prep.planned_end
    assert_valid_plan(started.instance, started.plan)


def test_explain_says_why_what_it_runs_after_is_not_placed() -> None:
    huge = {"requests": {"cpu": "5000"}}  # no spoke is that large
    files = _pipeline()
    files["jobs/prep.yaml"] = appwrapper("prep", annotations=PREP, resources=huge).encode()
    decision, _ = step(files, now=NOW)
    prep, train = entries(decision)["batch/prep"], entries(decision)["batch/train"]
    assert prep.phase == train.phase == "Pending"
    notes = explaining.explain(decision, train).notes
    assert notes == (
        "waits for batch/prep to start (its caspian.dev/after)",
        f"batch/prep is not placed either: {prep.reason}",
    )
    assert prep.reason.startswith("no allowed spoke is large enough")
    # Placed, it is no reason: the note goes.
    placed, _ = step(
        _pipeline(prep={**PREP, "caspian.dev/not-before": "2026-11-22T05:00:00Z"}), now=NOW
    )
    assert not any(
        "not placed" in n for n in explaining.explain(placed, entries(placed)["batch/train"]).notes
    )


def test_what_is_dispatched_now_lets_what_runs_after_it_be_planned_at_once() -> None:
    first, files = step(_pipeline(), now=NOW)
    prep, train = entries(first)["batch/prep"], entries(first)["batch/train"]
    assert prep.phase == "Dispatched"
    assert train.phase == "Planned" and train.planned_start >= prep.planned_end
    # A reconcile right after has nothing more to commit.
    again, files_again = step(files, now=NOW)
    assert again.ledger == first.ledger
    assert files_again == files


def test_it_is_not_dispatched_while_what_it_runs_after_still_runs() -> None:
    # Due soon after prep: planned right at prep's end.
    files = _pipeline(**{"caspian.dev/complete-within": "4h"})
    first, files = step(files, now=NOW)
    prep, train = entries(first)["batch/prep"], entries(first)["batch/train"]
    assert train.planned_start == prep.planned_end
    # prep runs past its planned end: train's start comes, and it waits.
    running = {prep.spoke: {"jobs": {prep.job_key: "Running"}}}
    late, files = step(files, now=prep.planned_end + timedelta(minutes=1), states=running)
    held = entries(late)["batch/train"]
    assert held.phase == "Planned" and held.planned_start > prep.planned_end
    assert_valid_plan(late.instance, late.plan)
    # prep succeeds: train is dispatched when its start comes.
    done = {prep.spoke: {"jobs": {prep.job_key: "Succeeded"}}}
    at = held.planned_start + timedelta(minutes=1)
    going, _ = step(files, now=at, states=done)
    assert entries(going)["batch/prep"].phase == "Succeeded"
    assert entries(going)["batch/train"].phase == "Dispatched"


def test_a_failure_of_what_it_runs_after_holds_it_and_says_what_to_do() -> None:
    first, files = step(_pipeline(), now=NOW)
    prep = entries(first)["batch/prep"]
    _, files = step(files, now=NOW + timedelta(minutes=1))
    failed = {prep.spoke: {"jobs": {prep.job_key: "Failed"}}}
    decision, _ = step(files, now=NOW + timedelta(minutes=30), states=failed)
    train = entries(decision)["batch/train"]
    assert train.phase == "Pending"
    assert train.reason == (
        "waits for batch/prep, which failed: run it again (a change to its wrapped Job) or take "
        "it out of its caspian.dev/after (its caspian.dev/after)"
    )
    assert "batch/train" not in {a.id for a in decision.plan.assignments}


def test_a_run_again_of_what_it_runs_after_holds_it_until_that_starts() -> None:
    # Run again after a pause: it is planned, not dispatched, when it fails.
    retried = {
        **PREP,
        "workload.codeflare.dev.appwrapper/retryLimit": "1",
        "workload.codeflare.dev.appwrapper/retryPausePeriodDuration": "1h",
    }
    first, files = step(_pipeline(prep=retried), now=NOW)
    prep = entries(first)["batch/prep"]
    assert entries(first)["batch/train"].phase == "Planned"
    failed = {prep.spoke: {"jobs": {prep.job_key: "Failed"}}}
    decision, _ = step(files, now=NOW + timedelta(minutes=30), states=failed)
    again = entries(decision)["batch/prep"]
    assert (again.retries, again.phase) == (1, "Planned")
    train = entries(decision)["batch/train"]
    assert (train.phase, train.reason) == (
        "Pending",
        "waits for batch/prep to start (its caspian.dev/after)",
    )


def test_what_is_not_there_holds_it_and_other_namespaces_are_named_in_full() -> None:
    files = _pipeline(**{"caspian.dev/after": "media/video-transcode, nowhere"})
    decision, _ = step(files, now=NOW)
    train = entries(decision)["batch/train"]
    assert train.reason == (
        "waits for media/video-transcode to start; batch/nowhere, which is not in jobs/ (its "
        "caspian.dev/after)"
    )
    # A name one letter off is most likely a typo, which would hold it for good.
    files = _pipeline(**{"caspian.dev/after": "perp, media/prep, trains"})
    train = entries(step(files, now=NOW)[0])["batch/train"]
    assert train.reason == (
        "waits for batch/perp, which is not in jobs/ (did you mean batch/prep?); media/prep, "
        "which is not in jobs/ (did you mean batch/prep?); batch/trains, which is not in "
        "jobs/ (its caspian.dev/after)"
    )


def test_what_ends_past_the_horizon_defers_it_and_a_late_end_is_blamed() -> None:
    long_prep = {"caspian.dev/duration": "30h", "caspian.dev/complete-within": "30h"}
    files = _pipeline(prep=long_prep)
    _, files = step(files, now=NOW)
    decision, _ = step(files, now=NOW + timedelta(minutes=1))
    train = entries(decision)["batch/train"]
    assert train.phase == "Pending"
    assert train.reason.startswith("deferred: it runs after batch/prep, which ends ")
    assert train.reason.endswith("(its caspian.dev/after), beyond the planning horizon")

    files = _pipeline(**{"caspian.dev/complete-within": "2h"})
    _, files = step(files, now=NOW)
    decision, _ = step(files, now=NOW + timedelta(minutes=1))
    train = entries(decision)["batch/train"]
    assert train.late
    assert train.reason.startswith("will finish after its deadline: it runs after batch/prep, ")


def test_a_bad_or_circular_after_is_a_problem_of_the_files() -> None:
    def problems(**after: str) -> list[str]:
        changes = {}
        for name, value in after.items():
            doc = appwrapper_doc(name, annotations={"caspian.dev/after": value})
            changes[f"jobs__{name}"] = yaml.safe_dump(doc)
        return problems_of(fleet_with(**changes))

    field = "metadata.annotations.caspian.dev/after"
    assert problems(a="Not A Name") == [
        f"jobs/a.yaml: {field}: 'Not A Name' is not an AppWrapper's name: write names (or "
        'namespace/name) apart by commas, e.g. "preprocess, batch/fetch-data"'
    ]
    assert problems(a="b, a") == [
        f"jobs/a.yaml: {field}: it names the job itself (batch/a): it cannot run after itself"
    ]
    circle = problems(a="b", b="c", c="a")
    assert len(circle) == 3 and all(field in line for line in circle)
    assert circle[0] == (
        f"jobs/a.yaml: {field}: the jobs wait for each other in a circle (batch/a after batch/b "
        "after batch/c after batch/a), so none could ever start: take one of them out of the "
        "next one's caspian.dev/after"
    )
    fleet = fleet_with(
        jobs__a=yaml.safe_dump(appwrapper_doc("a", annotations={"caspian.dev/after": "b"})),
        jobs__b=yaml.safe_dump(appwrapper_doc("b", annotations={"caspian.dev/after": "a"})),
        jobs__c=yaml.safe_dump(appwrapper_doc("c", annotations={"caspian.dev/after": "a"})),
    )
    # Waiting for one of a circle is no circle of its own: it waits.
    assert "batch/c" in {job.id for job in fleet.jobs}
    assert not {"batch/a", "batch/b"} & {job.id for job in fleet.jobs}


def test_what_has_started_stays_whatever_becomes_of_what_it_ran_after() -> None:
    first, files = step(_pipeline(), now=NOW)
    prep = entries(first)["batch/prep"]
    done = {prep.spoke: {"jobs": {prep.job_key: "Succeeded"}}}
    planned, files = step(files, now=NOW + timedelta(minutes=20), states=done)
    train = entries(planned)["batch/train"]
    _, files = step(files, now=train.planned_start + timedelta(minutes=1))
    # prep is edited to run again: train, which has started, is not touched.
    doc = yaml.safe_load(files["jobs/prep.yaml"])
    template = doc["spec"]["components"][0]["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})["run"] = "2"
    files["jobs/prep.yaml"] = yaml.safe_dump(doc).encode()
    _, files = step(files, now=train.planned_start + timedelta(minutes=5))
    again, _ = step(files, now=train.planned_start + timedelta(minutes=6))
    kept = entries(again)["batch/train"]
    assert (kept.phase, kept.spoke, kept.planned_start) == (
        "Dispatched",
        train.spoke,
        train.planned_start,
    )
    assert entries(again)["batch/prep"].phase in ("Planned", "Dispatched")


def test_a_second_pass_keeps_what_the_first_one_did() -> None:
    files = _pipeline(prep={**PREP, "caspian.dev/not-before": "2026-11-22T03:00:00Z"})
    flaky = {"caspian.dev/duration": "30m", "workload.codeflare.dev.appwrapper/retryLimit": "1"}
    files["jobs/flaky.yaml"] = appwrapper("flaky", annotations=flaky).encode()
    first, files = step(files, now=NOW)
    prep, ran = entries(first)["batch/prep"], entries(first)["batch/flaky"]
    assert ran.phase == "Dispatched" and prep.phase == "Planned"
    # At prep's start flaky has failed: one reconcile runs flaky again, dispatches
    # prep and, in its second pass, plans train after it.
    failed = {ran.spoke: {"jobs": {ran.job_key: "Failed"}}}
    decision, _ = step(files, now=prep.planned_start + timedelta(minutes=1), states=failed)
    assert entries(decision)["batch/train"].phase == "Planned"
    assert set(decision.retried) == {"batch/flaky"}
    message = messages.commit_message(old=first.ledger, decision=decision, input_commit="0")
    assert "\n- retried batch/flaky (1 of 1): its Job " in message


def test_what_others_run_after_ends_in_time_for_their_deadlines() -> None:
    files = template_files()
    # On frankfurt, whose cleanest hours for prep alone come late in the day.
    relaxed = {
        "caspian.dev/duration": "1h",
        "caspian.dev/complete-within": "20h",
        "caspian.dev/spokes": "frankfurt",
    }
    files["jobs/prep.yaml"] = appwrapper("prep", annotations=relaxed).encode()
    tight = {
        "caspian.dev/duration": "2h",
        "caspian.dev/complete-within": "5h",
        "caspian.dev/after": "prep",
        "caspian.dev/spokes": "frankfurt",
    }
    files["jobs/train.yaml"] = appwrapper("train", annotations=tight).encode()
    decision, _ = step(files, now=NOW)
    prep, train = entries(decision)["batch/prep"], entries(decision)["batch/train"]
    assert prep.planned_end <= NOW + timedelta(hours=3) and not prep.late
    if prep.phase == "Dispatched":  # train is planned in the same decision
        assert train.phase == "Planned" and not train.late
        assert train.planned_start >= prep.planned_end
    else:
        assert train.phase == "Pending"
    # Alone, prep would go later, to cleaner hours.
    alone = template_files()
    alone["jobs/prep.yaml"] = files["jobs/prep.yaml"]
    free = entries(step(alone, now=NOW)[0])["batch/prep"]
    assert free.planned_end > NOW + timedelta(hours=3)


def test_a_deadline_after_it_cannot_meet_does_not_make_it_late() -> None:
    files = template_files()
    relaxed = {"caspian.dev/duration": "1h", "caspian.dev/complete-within": "20h"}
    files["jobs/prep.yaml"] = appwrapper("prep", annotations=relaxed).encode()
    # train is due in 90 minutes and runs 2h: no start of prep lets it make it.
    impossible = {
        "caspian.dev/duration": "2h",
        "caspian.dev/complete-within": "90m",
        "caspian.dev/after": "prep",
    }
    files["jobs/train.yaml"] = appwrapper("train", annotations=impossible).encode()
    decision, _ = step(files, now=NOW)
    prep = entries(decision)["batch/prep"]
    assert prep.planned_start == NOW and not prep.late and prep.reason == ""
    assert entries(decision)["batch/train"].late


def test_a_chain_carries_the_last_deadline_back_to_its_first_job() -> None:
    def job(name: str, **hints: str) -> str:
        return yaml.safe_dump(appwrapper_doc(name, annotations=hints))

    fleet = fleet_with(
        jobs__a=job("a", **{"caspian.dev/duration": "1h"}),
        jobs__b=job("b", **{"caspian.dev/duration": "2h", "caspian.dev/after": "a"}),
        jobs__c=job(
            "c",
            **{
                "caspian.dev/duration": "3h",
                "caspian.dev/complete-within": "8h",
                "caspian.dev/after": "b",
            },
        ),
    )
    due = chains.due_for_others(
        fleet.jobs, dict.fromkeys(j.id for j in fleet.jobs), finished={}, fleet=fleet, now=NOW
    )
    assert due == {"batch/b": NOW + timedelta(hours=5), "batch/a": NOW + timedelta(hours=3)}
    # Started, a job no longer needs its deadline carried back through it.
    started = {"batch/b": _record(fleet, "batch/b", phase="Running")}
    due = chains.due_for_others(fleet.jobs, started, finished={}, fleet=fleet, now=NOW)
    assert due == {}


def test_a_run_again_dispatched_at_once_lets_what_runs_after_it_be_planned_at_once() -> None:
    urgent = {**PREP, "workload.codeflare.dev.appwrapper/retryLimit": "1"}
    first, files = step(_pipeline(prep=urgent), now=NOW)
    prep = entries(first)["batch/prep"]
    failed = {prep.spoke: {"jobs": {prep.job_key: "Failed"}}}
    at = NOW + timedelta(minutes=10)
    decision, files = step(files, now=at, states=failed)
    again = entries(decision)["batch/prep"]
    # Due within 3h of when it was first seen, its run again starts at once.
    assert (again.retries, again.phase) == (1, "Dispatched")
    train = entries(decision)["batch/train"]
    assert train.phase == "Planned" and train.planned_start >= again.planned_end
    assert step(files, now=at, states=failed)[0].ledger == decision.ledger


def test_what_is_suspended_now_holds_what_runs_after_it_at_once() -> None:
    # prep starts, and train is planned from its end; then prep's AppWrapper
    # is suspended. train waits for prep to start again in the same decision,
    # not in the reconcile after it.
    first, files = step(_pipeline(), now=NOW)
    assert entries(first)["batch/train"].phase == "Planned"
    doc = yaml.safe_load(files["jobs/prep.yaml"])
    doc["spec"]["suspend"] = True
    files = {**files, "jobs/prep.yaml": yaml.safe_dump(doc).encode()}
    at = NOW + timedelta(minutes=5)
    held, files = step(files, now=at)
    assert entries(held)["batch/prep"].phase == "Suspended"
    assert (entries(held)["batch/train"].phase, entries(held)["batch/train"].reason) == (
        "Pending",
        "waits for batch/prep to start (its caspian.dev/after)",
    )
    again, files_again = step(files, now=at)
    assert again.ledger == held.ledger and files_again == files


def test_what_runs_after_a_job_suspended_now_dates_it_in_the_same_decision() -> None:
    # train is running when its AppWrapper is given caspian.dev/after: prep
    # and suspended at once. Stopped, it has not started as far as prep is
    # concerned: prep must end in time for it. The decision that suspends it
    # already plans prep so, and a reconcile right after keeps that plan.
    files = template_files()
    later = (NOW + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    prep = {"caspian.dev/duration": "1h", "caspian.dev/complete-within": "12h"}
    files["jobs/prep.yaml"] = appwrapper(
        "prep", annotations={**prep, "caspian.dev/not-before": later}
    ).encode()
    train = {"caspian.dev/duration": "2h", "caspian.dev/complete-within": "8h"}
    files["jobs/train.yaml"] = appwrapper("train", annotations=train).encode()
    first, files = step(files, now=NOW)
    assert entries(first)["batch/train"].phase == "Dispatched"
    doc = yaml.safe_load(files["jobs/train.yaml"])
    doc["metadata"]["annotations"]["caspian.dev/after"] = "prep"
    doc["spec"]["suspend"] = True
    files = {**files, "jobs/train.yaml": yaml.safe_dump(doc).encode()}
    at = NOW + timedelta(minutes=5)
    held, files = step(files, now=at)
    assert entries(held)["batch/train"].phase == "Suspended"
    prep_job = next(j for j in held.instance.jobs if j.id == "batch/prep")
    # train's deadline (8h from when it was first seen) less its 2h.
    assert held.window.time_of(prep_job.deadline_slot) <= NOW + timedelta(hours=6)
    again, files_again = step(files, now=at)
    assert again.plan.method == keeping.METHOD  # the problem the last plan answered
    assert again.ledger == held.ledger and files_again == files


def test_a_change_to_what_others_run_after_is_one_that_gates_read() -> None:
    fleet = fleet_with(
        jobs__prep=appwrapper("prep", annotations=PREP),
        jobs__train=appwrapper("train", annotations={"caspian.dev/after": "prep"}),
    )
    start = NOW + timedelta(hours=1)
    running = Entry(
        id="batch/prep",
        source="jobs/prep.yaml",
        phase="Running",
        first_seen=NOW,
        job_name="prep-1",
        planned_start=start,
        planned_end=start + timedelta(hours=1),
    )
    before = {"batch/prep": running}

    def moved(**change) -> bool:
        return chains.gates_moved(
            fleet.jobs, before, {"batch/prep": running.model_copy(update=change)}
        )

    assert not moved()
    assert not moved(estimated_grams=12.0, reason="anything")  # not what a gate reads
    assert not moved(phase=Phase.DISPATCHED)  # started either way
    assert moved(phase=Phase.SUSPENDED)
    assert moved(job_name="prep-2")  # run again: a new Job
    assert moved(planned_end=start + timedelta(hours=2))  # running past its end
    done = {"batch/prep": running.model_copy(update={"phase": Phase.SUCCEEDED})}
    failed = {"batch/prep": running.model_copy(update={"phase": Phase.FAILED})}
    assert chains.gates_moved(fleet.jobs, done, failed)
    planned = {"batch/prep": running.model_copy(update={"phase": Phase.PLANNED})}
    pending = {"batch/prep": running.model_copy(update={"phase": Phase.PENDING})}
    assert not chains.gates_moved(fleet.jobs, planned, pending)  # not started either way
    assert chains.gates_moved(fleet.jobs, planned, done)
    assert not chains.gates_moved(fleet.jobs, {}, {})
    assert chains.gates_moved(fleet.jobs, {}, before)
    # And what `due_for_others` reads of a job that runs after others.
    train = _record(fleet, "batch/train", phase="Running")

    def train_moved(**change) -> bool:
        after = {**before, "batch/train": train.model_copy(update=change)}
        return chains.gates_moved(fleet.jobs, {**before, "batch/train": train}, after)

    assert not train_moved(reason="anything", phase=Phase.DISPATCHED)
    assert train_moved(phase=Phase.SUSPENDED)  # stopped: not started any more
    assert not train_moved(phase=Phase.SUCCEEDED)  # under way either way
    pending = _record(fleet, "batch/train", phase="Pending")
    # A new job's first record: dated from now, as the pass that made it.
    assert not chains.gates_moved(fleet.jobs, before, {**before, "batch/train": pending})


def test_validate_warns_where_a_reconcile_would_hold_a_job_for_one_not_in_jobs() -> None:
    """`chains.not_in_jobs`, which `caspian validate` says as warnings, names
    what a reconcile holds the job for as "not in jobs/", and nothing else."""
    files = _pipeline(**{"caspian.dev/after": "prep, perp, media/prep, gone"})
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    said = [(p.file, p.reason) for p in chains.not_in_jobs(fleet.jobs, {}, broken=())]
    assert said == [
        ("jobs/train.yaml", f"{job} is not in jobs/{near}: batch/train is held until it is")
        for job, near in [
            ("batch/perp", " (did you mean batch/prep?)"),
            ("media/prep", " (did you mean batch/prep?)"),
            ("batch/gone", ""),
        ]
    ]
    # Taken out of jobs/ once it ran (its record Succeeded), or while it runs,
    # it holds nothing; once it failed, the reconcile says that holds it;
    # cancelled before it began, or never seen, it is not in jobs/.
    pipeline = load_fleet(_pipeline(), appwrapper_schema=crd.check_appwrapper)
    jobs = [job for job in pipeline.jobs if job.id != "batch/prep"]
    for phase, warned in [
        (Phase.SUCCEEDED, False),
        (Phase.FAILED, False),
        (Phase.RUNNING, False),
        (Phase.DISPATCHED, False),
        (Phase.CANCELLED, True),
        (Phase.PLANNED, True),
    ]:
        record = _record(pipeline, "batch/prep", phase=phase)
        found = chains.not_in_jobs(jobs, {"batch/prep": record}, broken=())
        assert bool(found) == warned, phase
        # Where its file is broken, the reconcile says so, not "not in jobs/".
        assert not chains.not_in_jobs(jobs, {"batch/prep": record}, broken={"jobs/prep.yaml"})


def test_what_ran_and_was_taken_out_of_jobs_holds_nothing() -> None:
    first, files = step(_pipeline(), now=NOW)
    prep = entries(first)["batch/prep"]
    _, files = step(files, now=prep.planned_start + timedelta(minutes=1))
    done = {prep.spoke: {"jobs": {prep.job_key: "Succeeded"}}}
    _, files = step(files, now=prep.planned_start + timedelta(hours=1), states=done)
    del files["jobs/prep.yaml"]
    decision, _ = step(files, now=prep.planned_start + timedelta(hours=2), states=done)
    assert entries(decision)["batch/train"].phase in ("Planned", "Dispatched")
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    assert not chains.not_in_jobs(fleet.jobs, decision.ledger.by_id(), broken=())
