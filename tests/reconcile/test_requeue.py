"""A dispatched job whose pods find no node on its spoke, or are refused there:
after the policy's requeueUnscheduled (or its AppWrapper's grace period) it is
planned again on another spoke, as Kueue's waitForPodsReady requeues a
workload, and kept off that spoke until it is dispatched."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from reconciler import explaining, messages
from reconciler.appwrappers import DURATIONS, GRACE_PERIODS
from reconciler.decisions import SpokeState
from reconciler.quantities import format_time
from reconciler.rendering import render
from reconciler.requeues import REQUEUED
from reconciler.survey import _waiting_jobs
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step


def _first_dispatched(files):
    decision, files = step(files, now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    return decision, files, started


def _waiting_since(started, since):
    return {started.spoke: {"unscheduled": {started.job_key: since}}}


def _policy(files, **spec):
    policy = yaml.safe_load(files["caspian.yaml"])
    policy["spec"].update(spec)
    return {**files, "caspian.yaml": yaml.safe_dump(policy).encode()}


def test_a_job_whose_pods_find_no_node_is_requeued_elsewhere_after_the_timeout() -> None:
    decision, files, started = _first_dispatched(template_files())
    job_file = f"rendered/{started.spoke}/batch.{started.job_name}.yaml"
    since = NOW + timedelta(minutes=1)
    # Within the policy's 15 minutes it waits where it is: a node may come.
    early, _ = step(files, now=NOW + timedelta(minutes=10), states=_waiting_since(started, since))
    assert entries(early)[started.id] == started and not early.requeued

    later = NOW + timedelta(minutes=20)
    requeued, _ = step(files, now=later, states=_waiting_since(started, since))
    entry = entries(requeued)[started.id]
    assert entry.spoke != started.spoke and entry.phase in ("Planned", "Dispatched")
    assert entry.first_seen == started.first_seen and entry.deadline == started.deadline
    assert_valid_plan(requeued.instance, requeued.plan)
    # Its Job there never ran: it leaves, and Argo CD prunes its waiting pods.
    assert job_file not in render(requeued, previous=files)
    assert requeued.requeued[started.id].spoke == started.spoke
    why = requeued.requeued[started.id].reason
    assert why.startswith(f"its pods found no node on {started.spoke} from ")
    message = messages.commit_message(old=decision.ledger, decision=requeued, input_commit="0" * 40)
    assert message.startswith("requeue: 1 job")
    assert f"- requeued {started.id}: {why}; now {entry.spoke} " in message


def _backfill_dispatched_on_paris(files=None):
    """backfill-eu, which may run on paris and frankfurt only, dispatched on paris."""
    decision, files = step(files or template_files(), now=NOW)
    planned = entries(decision)["batch/backfill-eu"]
    at = planned.planned_start + timedelta(minutes=1)
    decision, files = step(files, now=at)
    started = entries(decision)["batch/backfill-eu"]
    assert (started.phase, started.spoke) == ("Dispatched", "paris")
    return files, started, at


def test_a_job_requeued_with_nowhere_to_go_now_reads_the_same_at_the_next_reconcile() -> None:
    # frankfurt, its only other spoke, has too little room left for it now:
    # it waits, pending, and the ledger's reason names paris as it will
    # at every reconcile after, which then has nothing to commit.
    files, started, at = _backfill_dispatched_on_paris()
    later = at + timedelta(minutes=20)
    states = {**_waiting_since(started, at), "frankfurt": {"cpu": 1.0}}
    requeued, files = step(files, now=later, states=states)
    entry = entries(requeued)[started.id]
    assert (entry.phase, entry.requeued_from) == ("Pending", ("paris",))
    assert f"paris ({REQUEUED})" in entry.reason, entry.reason
    again, _ = step(files, now=later, states=states)
    assert again.ledger == requeued.ledger
    assert render(again, previous=files) == render(requeued, previous=files)


class TestAJobWhoseJobFromBeforeRunsOnAnotherSpoke:
    """A Job of it left on a spoke by a requeue, and not pruned (Argo CD no
    longer syncs that spoke, say), may run there after all: the job runs
    there, and is held where it runs, in the decision that first sees it so,
    not the one after."""

    def test_a_dispatched_job_stuck_on_its_spoke_is_held_where_it_runs(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        assert (started.id, started.spoke) == ("batch/finetune-llm", "paris")
        since, later = NOW + timedelta(minutes=1), NOW + timedelta(minutes=20)
        began = NOW + timedelta(minutes=12)
        elsewhere = {"jobs": {started.job_key: "Running"}, "started": {started.job_key: began}}
        states = {**_waiting_since(started, since), "california": elsewhere}
        runs, after = step(files, now=later, states=states)
        entry = entries(runs)[started.id]
        assert (entry.phase, entry.spoke, entry.planned_start) == ("Running", "california", began)
        assert entry.pool is None and not runs.requeued
        assert_valid_plan(runs.instance, runs.plan)
        rendered = render(runs, previous=files)
        assert f"rendered/paris/batch.{started.job_name}.yaml" not in rendered
        job = yaml.safe_load(rendered[f"rendered/california/batch.{started.job_name}.yaml"])
        assert job["spec"]["suspend"] is False
        message = messages.commit_message(old=decision.ledger, decision=runs, input_commit="0")
        assert "started outside Caspian: 1 job" in message.splitlines()[0]
        assert (
            f"- {started.id} runs on california from {began:%Y-%m-%d %H:%M}: a Job of it from "
            "before runs there still (left by a requeue and not pruned), and the ledger had it "
            "Dispatched on paris; it is held where it runs"
        ) in message
        said = explaining.explain(runs, entry, committed=started, review=None).notes
        assert (
            "a Job of it from before runs on california still (left by a requeue and not "
            f"pruned): the ledger holds it Dispatched on paris from {format_time(NOW)}, and the "
            "next reconcile records it running there"
        ) in said
        again, same = step(after, now=later, states=states)
        assert again.ledger == runs.ledger and same == after

    def test_a_pending_job_is_held_where_it_runs_from_now_if_not_said(self) -> None:
        # backfill-eu, requeued off paris with frankfurt too small for it now:
        # pending. Its Job then runs on frankfurt, which has room for it again
        # (the plan would put it there later) or not.
        files, started, at = _backfill_dispatched_on_paris()
        later = at + timedelta(minutes=20)
        small = {**_waiting_since(started, at), "frankfurt": {"cpu": 1.0}}
        pending, files = step(files, now=later, states=small)
        assert entries(pending)[started.id].phase == "Pending"
        running = {"jobs": {started.job_key: "Running"}}
        at_last = later + timedelta(minutes=30)
        for states in ({"frankfurt": running}, {"frankfurt": {**running, "cpu": 1.0}}):
            runs, after = step(files, now=at_last, states=states)
            entry = entries(runs)[started.id]
            assert (entry.phase, entry.spoke, entry.planned_start) == (
                "Running",
                "frankfurt",
                at_last,
            )
            message = messages.commit_message(old=pending.ledger, decision=runs, input_commit="0")
            assert (
                f"- {started.id} runs on frankfurt from {at_last:%Y-%m-%d %H:%M}: a Job of it "
                "from before runs there still (left by a requeue and not pruned), and the ledger "
                "had it Pending; it is held where it runs"
            ) in message
            again, same = step(after, now=at_last, states=states)
            assert again.ledger == runs.ledger and same == after

    def test_a_spoke_it_may_not_use_or_that_is_down_tells_nothing(self) -> None:
        files, started, at = _backfill_dispatched_on_paris()
        later = at + timedelta(minutes=5)
        running = {"jobs": {started.job_key: "Running"}}
        # backfill-eu may use paris and frankfurt only.
        for states in ({"california": running}, {"frankfurt": {**running, "up": False}}):
            decision, _ = step(files, now=later, states=states)
            assert (entries(decision)[started.id].phase, entries(decision)[started.id].spoke) == (
                "Dispatched",
                "paris",
            )


def test_a_requeued_job_stays_off_that_spoke_until_it_runs() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    later = at + timedelta(minutes=20)
    requeued, files = step(files, now=later, states=_waiting_since(started, at))
    entry = entries(requeued)[started.id]
    # frankfurt is cleaner later in the day: it waits there, planned.
    assert (entry.phase, entry.spoke, entry.requeued_from) == ("Planned", "frankfurt", ("paris",))
    # Kept off it in the words of the reconciles after: the requeue's own
    # reason is the commit's.
    assert requeued.kept_off[started.id]["paris"] == REQUEUED
    # Next reconciles, with nothing more from paris: still kept off it, though
    # paris may be the cleaner place by then.
    for hours in (1, 4):
        again, files = step(files, now=later + timedelta(hours=hours))
        kept = entries(again)[started.id]
        assert (kept.spoke, kept.requeued_from) == ("frankfurt", ("paris",))
        assert not again.requeued
        job = next(j for j in again.instance.jobs if j.id == started.id)
        assert job.allowed_spokes == ("frankfurt",)
    # Dispatched, it remembers paris until frankfurt reports it running.
    start = kept.planned_start + timedelta(minutes=1)
    dispatched, files = step(files, now=start)
    done = entries(dispatched)[started.id]
    assert (done.phase, done.spoke, done.requeued_from) == ("Dispatched", "frankfurt", ("paris",))
    running = {"frankfurt": {"jobs": {done.job_key: "Running"}}}
    runs, _ = step(files, now=start + timedelta(minutes=15), states=running)
    assert (entries(runs)[started.id].phase, entries(runs)[started.id].requeued_from) == (
        "Running",
        (),
    )


def test_a_job_that_cannot_run_on_two_spokes_tries_the_third_before_going_back() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = entries(decision)["batch/etl-daily"]  # it may run anywhere
    at = planned.planned_start + timedelta(minutes=1)
    decision, files = step(files, now=at)
    first = entries(decision)["batch/etl-daily"]
    assert (first.phase, first.spoke) == ("Dispatched", "paris")
    moved, files = step(files, now=at + timedelta(minutes=20), states=_waiting_since(first, at))
    second = entries(moved)["batch/etl-daily"]
    assert (second.phase, second.spoke, second.requeued_from) == (
        "Dispatched",
        "california",
        ("paris",),
    )
    then = at + timedelta(minutes=45)
    stuck = _waiting_since(second, at + timedelta(minutes=21))
    third, _ = step(files, now=then, states=stuck)
    entry = entries(third)["batch/etl-daily"]
    assert entry.spoke == "frankfurt" and entry.requeued_from == ("paris", "california")
    assert set(third.kept_off["batch/etl-daily"]) == {"paris", "california"}
    # With frankfurt down, it has tried every spoke it may use: the first may
    # have room again, and only the last is kept off.
    down = {"frankfurt": {"up": False, "cpu": 0, "memory_bytes": 0, "gpu": 0}}
    back, _ = step(files, now=then, states={**stuck, **down})
    entry = entries(back)["batch/etl-daily"]
    assert entry.spoke == "paris" and set(back.kept_off["batch/etl-daily"]) == {"california"}


def test_a_job_no_other_spoke_may_take_waits_where_it_was_dispatched() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    down = {"frankfurt": {"up": False, "cpu": 0, "memory_bytes": 0, "gpu": 0}}
    states = {**_waiting_since(started, at), **down}
    stays, _ = step(files, now=at + timedelta(hours=1), states=states)
    entry = entries(stays)[started.id]
    assert (entry.phase, entry.spoke) == ("Dispatched", "paris")
    assert not stays.requeued


def test_requeue_unscheduled_null_leaves_the_job_waiting_there() -> None:
    _, files, started = _first_dispatched(_policy(template_files(), requeueUnscheduled=None))
    stays, _ = step(files, now=NOW + timedelta(hours=3), states=_waiting_since(started, NOW))
    assert entries(stays)[started.id].spoke == started.spoke and not stays.requeued


def test_a_job_whose_pods_the_spoke_refuses_is_requeued_too() -> None:
    # No pod at all: admission refuses them (Pod Security, a LimitRange), which
    # only the Job's events say.
    files, started, at = _backfill_dispatched_on_paris()
    refused = {"paris": {"podless": {started.job_key: at}}}
    early, _ = step(files, now=at + timedelta(minutes=10), states=refused)
    assert entries(early)[started.id] == started
    requeued, _ = step(files, now=at + timedelta(minutes=20), states=refused)
    entry = entries(requeued)[started.id]
    assert (entry.spoke, entry.requeued_from) == ("frankfurt", ("paris",))
    assert requeued.requeued[started.id].reason.startswith(
        "its Job created no pod (see its events) on paris from "
    )
    # What the spoke says of it (its last FailedCreate event) goes with it.
    word = 'pods "x" is forbidden: maximum cpu usage per Container is 2, but limit is 4'
    refused["paris"]["said"] = {started.job_key: word}
    told, _ = step(files, now=at + timedelta(minutes=20), states=refused)
    reason = told.requeued[started.id].reason
    assert reason.startswith("its Job created no pod on paris from ")
    assert reason.endswith(f'its Job there never ran, and goes (paris says: "{word}")')


def test_a_job_whose_pods_cannot_start_there_is_requeued_with_the_spokes_word() -> None:
    # Its pods have a node, and wait for an image or a Secret the spoke lacks.
    files, started, at = _backfill_dispatched_on_paris()
    word = 'ImagePullBackOff: Back-off pulling image "registry.example/backfill:v2"'
    stuck = {"paris": {"not_starting": {started.job_key: at}, "said": {started.job_key: word}}}
    early, _ = step(files, now=at + timedelta(minutes=14), states=stuck)
    assert entries(early)[started.id] == started and not early.requeued
    # What keeps it, and when it goes, for explain.
    assert early.stuck == {
        started.id: f"its pods could not start on paris since {format_time(at)} (paris says: "
        f'"{word}"): it is requeued at {format_time(at + timedelta(minutes=15))} unless it starts'
    }
    requeued, files = step(files, now=at + timedelta(minutes=16), states=stuck)
    entry = entries(requeued)[started.id]
    assert (entry.spoke, entry.requeued_from) == ("frankfurt", ("paris",))
    reason = requeued.requeued[started.id].reason
    assert reason.startswith("its pods could not start on paris from ")
    assert reason.endswith(f'its Job there never ran, and goes (paris says: "{word}")')
    # Where its pods could not start, it is not planned again until it runs.
    later, _ = step(files, now=at + timedelta(minutes=17))
    assert entries(later)[started.id].spoke == "frankfurt"
    assert "paris" in later.kept_off[started.id]


def test_a_job_argo_cd_cannot_apply_there_is_requeued_counting_from_its_dispatch() -> None:
    # The spoke's API refuses the Job itself (a policy engine's webhook checks a
    # Job's pod template as it would a pod's): it never reaches the spoke. The
    # refusal began while it was planned, when it had no need to be there yet.
    files, started, _ = _backfill_dispatched_on_paris()
    word = 'admission webhook "validate.kyverno.svc-fail" denied the request: require-limits'
    failed = started.planned_start - timedelta(hours=2)
    refused = {"paris": {"unapplied": {started.job_key: failed}, "said": {started.job_key: word}}}
    early, _ = step(files, now=started.planned_start + timedelta(minutes=14), states=refused)
    assert entries(early)[started.id] == started and not early.requeued
    assert early.stuck[started.id] == (
        f"Argo CD could not apply its Job on paris since {format_time(started.planned_start)} "
        f'(paris says: "{word}"): it is requeued at '
        f"{format_time(started.planned_start + timedelta(minutes=15))} unless it starts"
    )
    requeued, _ = step(files, now=started.planned_start + timedelta(minutes=16), states=refused)
    entry = entries(requeued)[started.id]
    assert (entry.spoke, entry.requeued_from) == ("frankfurt", ("paris",))
    reason = requeued.requeued[started.id].reason
    assert reason.startswith("Argo CD could not apply its Job on paris from ")
    assert reason.endswith(f'its Job there never ran, and goes (paris says: "{word}")')


def test_a_job_argo_cd_fails_to_apply_again_and_again_counts_from_when_it_went_missing() -> None:
    # Each commit brings Argo CD to sync again, and fail again: its
    # Application's last sync says only when that one failed. The branch has
    # held the Job, missing from paris, since before its dispatch.
    files, started, _ = _backfill_dispatched_on_paris()
    word = 'admission webhook "validate.kyverno.svc-fail" denied the request: require-limits'
    at = started.planned_start + timedelta(minutes=16)
    key = started.job_key
    refused = {
        "paris": {
            "unapplied": {key: at - timedelta(minutes=2)},
            "unarrived": {key: started.planned_start - timedelta(hours=1)},
            "said": {key: word},
        }
    }
    requeued, _ = step(files, now=at, states=refused)
    reason = requeued.requeued[started.id].reason
    assert reason.startswith(
        f"Argo CD could not apply its Job on paris from {format_time(started.planned_start)} "
    )
    assert reason.endswith(f'its Job there never ran, and goes (paris says: "{word}")')
    # `caspian spokes` says since when as well.
    state = SpokeState(name="paris", cpu=32, memory_bytes=2**37, gpu=2, **refused["paris"])
    missing = format_time(started.planned_start - timedelta(hours=1))
    assert f"Job {key} not applied by Argo CD since {missing}: {word}" in _waiting_jobs(state)


@pytest.mark.parametrize(
    ("field", "what"),
    [
        ("unscheduled", "its pods found no node on"),
        ("podless", "its Job created no pod (see its events) on"),
        ("not_starting", "its pods could not start on"),
    ],
)
def test_pods_from_before_a_dispatch_count_from_that_dispatch(field, what) -> None:
    # A job keeps its Job's name wherever it goes: sent back to paris after a
    # requeue off it, it finds the pods of its earlier Job there, waiting since
    # then, until Argo CD prunes them. They say nothing of this dispatch yet.
    files, started, _ = _backfill_dispatched_on_paris()
    earlier = started.planned_start - timedelta(hours=2)
    left = {"paris": {field: {started.job_key: earlier}}}
    early, _ = step(files, now=started.planned_start + timedelta(minutes=14), states=left)
    assert entries(early)[started.id] == started and not early.requeued
    assert early.stuck[started.id].startswith(
        f"{what} paris since {format_time(started.planned_start)}: it is requeued at "
        f"{format_time(started.planned_start + timedelta(minutes=15))}"
    )
    later = started.planned_start + timedelta(minutes=16)
    requeued, _ = step(files, now=later, states=left)
    assert entries(requeued)[started.id].requeued_from == ("paris",)
    assert requeued.requeued[started.id].reason.startswith(
        f"{what} paris from {format_time(started.planned_start)} to {format_time(later)}"
    )


def test_a_running_job_is_not_moved_for_a_later_sync_that_failed() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    running, files = step(
        files,
        now=at + timedelta(minutes=5),
        states={"paris": {"jobs": {started.job_key: "Running"}}},
    )
    assert entries(running)[started.id].phase == "Running"
    refused = {"paris": {"unapplied": {started.job_key: at + timedelta(minutes=6)}}}
    later, _ = step(files, now=at + timedelta(hours=2), states=refused)
    assert (entries(later)[started.id].phase, entries(later)[started.id].spoke) == (
        "Running",
        "paris",
    )
    assert not later.requeued and started.id not in later.stuck


def test_a_dispatched_job_its_spoke_reports_running_is_not_requeued_whatever_else_it_says() -> None:
    # A pod of it runs while another finds no node, say (a view that says
    # both): requeued, it would be found running there at the next decision.
    files, started, at = _backfill_dispatched_on_paris()
    later = at + timedelta(minutes=20)
    both = {"paris": {"jobs": {started.job_key: "Running"}, "unscheduled": {started.job_key: at}}}
    decision, after = step(files, now=later, states=both)
    entry = entries(decision)[started.id]
    assert (entry.phase, entry.spoke) == ("Running", "paris") and not decision.requeued
    assert started.id not in decision.stuck
    again, same = step(after, now=later, states=both)
    assert again.ledger == decision.ledger and same == after


def test_a_requeued_job_that_finishes_forgets_where_it_could_not_run() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    requeued, files = step(
        files, now=at + timedelta(minutes=20), states=_waiting_since(started, at)
    )
    entry = entries(requeued)[started.id]
    dispatched, files = step(files, now=entry.planned_start + timedelta(minutes=1))
    assert entries(dispatched)[started.id].requeued_from == ("paris",)
    done = {"frankfurt": {"jobs": {entry.job_key: "Succeeded"}}}
    finished, _ = step(files, now=entry.planned_start + timedelta(hours=1), states=done)
    assert (entries(finished)[started.id].phase, entries(finished)[started.id].requeued_from) == (
        "Succeeded",
        (),
    )


def _dispatched_again(files, job_id, *, spoke, at):
    """The reconcile at a requeued job's new start: dispatched on `spoke`."""
    entry = entries(step(files, now=at)[0])[job_id]
    start = max(at, entry.planned_start) + timedelta(minutes=1)
    decision, files = step(files, now=start)
    entry = entries(decision)[job_id]
    assert (entry.phase, entry.spoke) == ("Dispatched", spoke)
    return files, entry, start


def test_a_job_requeued_more_than_the_limit_is_given_up_on_until_its_job_changes() -> None:
    files, started, at = _backfill_dispatched_on_paris(_policy(template_files(), requeueLimit=1))
    moved, files = step(files, now=at + timedelta(minutes=20), states=_waiting_since(started, at))
    assert entries(moved)[started.id].requeued_from == ("paris",)
    files, second, at = _dispatched_again(files, started.id, spoke="frankfurt", at=moved.now)
    # It cannot start on frankfurt either: the second requeue is one too many.
    stuck = {"frankfurt": {"not_starting": {second.job_key: at}}}
    given, files = step(files, now=at + timedelta(minutes=20), states=stuck)
    entry = entries(given)[started.id]
    assert given.given_up == (started.id,)
    assert (entry.phase, entry.spoke, entry.requeued_from) == (
        "Pending",
        None,
        ("paris", "frankfurt"),
    )
    assert entry.reason.startswith(
        "it was requeued twice (paris, frankfurt) without running, more than the policy's "
        "requeueLimit 1: it is not planned again until its wrapped Job changes"
    )
    # Its Job leaves frankfurt, and is rendered nowhere.
    owned = render(given, previous=files)
    assert not [path for path in owned if second.job_name in path or started.job_name in path]
    message = messages.commit_message(old=moved.ledger, decision=given, input_commit="0" * 40)
    assert f"- requeued {started.id}: its pods could not start on frankfurt from " in message
    assert f"now pending: {entry.reason}" in message
    # However much room comes, it stays so, and the next reconcile commits nothing.
    later, _ = step(files, now=at + timedelta(hours=2))
    assert entries(later)[started.id] == entry and later.given_up == (started.id,)
    assert render(later, previous=files) == render(given, previous=files)
    # A change to its wrapped Job is a new Job, with its tries before it.
    doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
    doc["spec"]["components"][0]["template"]["metadata"]["labels"] = {"run": "2"}
    mended = {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}
    again, _ = step(mended, now=at + timedelta(hours=2))
    entry = entries(again)[started.id]
    assert entry.phase in ("Planned", "Dispatched") and entry.requeued_from == ()
    assert again.given_up == ()
    # So does suspending its AppWrapper and resuming it, once a spoke is mended.
    for suspend, hours in ((True, 2), (False, 3)):
        doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
        doc["spec"]["suspend"] = suspend
        files = {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}
        resumed, files = step(files, now=at + timedelta(hours=hours))
    entry = entries(resumed)[started.id]
    assert entry.phase in ("Planned", "Dispatched") and entry.requeued_from == ()
    assert resumed.given_up == ()


def test_requeue_limit_null_requeues_a_job_for_ever() -> None:
    files, started, at = _backfill_dispatched_on_paris(_policy(template_files(), requeueLimit=None))
    spoke, job_key = "paris", started.job_key
    for turn in range(5):
        stuck = {spoke: {"not_starting": {job_key: at}}}
        moved, files = step(files, now=at + timedelta(minutes=20), states=stuck)
        entry = entries(moved)[started.id]
        assert len(entry.requeued_from) == turn + 1 and entry.spoke != spoke
        spoke = entry.spoke
        files, entry, at = _dispatched_again(files, started.id, spoke=spoke, at=moved.now)
        job_key = entry.job_key


def test_a_job_that_tried_every_spoke_does_not_go_straight_back_to_the_last() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    moved, files = step(files, now=at + timedelta(minutes=20), states=_waiting_since(started, at))
    files, second, at = _dispatched_again(files, started.id, spoke="frankfurt", at=moved.now)
    # Its pods find no node on frankfurt either: back to paris, the first tried.
    back, files = step(files, now=at + timedelta(minutes=20), states=_waiting_since(second, at))
    entry = entries(back)[started.id]
    assert (entry.phase, entry.spoke) == ("Planned", "paris")
    assert entry.requeued_from == ("paris", "frankfurt")
    # Until it is dispatched there, frankfurt stays off: nothing changed, and
    # the next reconcile commits nothing.
    again, _ = step(files, now=back.now)
    assert entries(again)[started.id] == entry
    assert set(again.kept_off[started.id]) == {"frankfurt"}
    assert render(again, previous=files) == render(back, previous=files)


def _graced(files=None, **graces):
    """The template fleet, backfill-eu's AppWrapper annotated with these grace
    periods (admission=..., warmup=..., failure=...)."""
    files = files or template_files()
    doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
    doc["metadata"].setdefault("annotations", {}).update(
        {DURATIONS[f"{kind}_grace"]: value for kind, value in graces.items()}
    )
    return {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}


def test_an_appwrappers_warmup_grace_period_is_how_long_its_unready_pods_may_wait() -> None:
    # Say a GPU node the autoscaler adds takes half an hour: its pods wait that long.
    files, started, at = _backfill_dispatched_on_paris(_graced(warmup="1h", admission="1m"))
    waiting = _waiting_since(started, at)
    kept, _ = step(files, now=at + timedelta(minutes=30), states=waiting)
    assert entries(kept)[started.id] == started and not kept.requeued
    assert kept.stuck[started.id].endswith(
        f"it is requeued at {format_time(at + timedelta(hours=1))} unless it starts "
        "(its AppWrapper's warmupGracePeriodDuration 1h)"
    )
    requeued, _ = step(files, now=at + timedelta(minutes=61), states=waiting)
    reason = requeued.requeued[started.id].reason
    assert "more than its AppWrapper's warmupGracePeriodDuration 1h: its Job there" in reason
    assert entries(requeued)[started.id].requeued_from == ("paris",)


def test_an_appwrappers_admission_grace_period_is_how_long_its_pods_may_go_unmade() -> None:
    files, started, at = _backfill_dispatched_on_paris(_graced(admission="5m", warmup="2h"))
    refused = {"paris": {"podless": {started.job_key: at}}}
    requeued, _ = step(files, now=at + timedelta(minutes=6), states=refused)
    reason = requeued.requeued[started.id].reason
    assert "more than its AppWrapper's admissionGracePeriodDuration 5m: " in reason
    # Argo CD could not apply its Job: no pod either.
    unapplied = {"paris": {"unapplied": {started.job_key: at}}}
    requeued, _ = step(files, now=at + timedelta(minutes=6), states=unapplied)
    assert "more than its AppWrapper's admissionGracePeriodDuration 5m: " in (
        requeued.requeued[started.id].reason
    )
    # Its pods wait on a node for their image: the warmup grace, 2h, holds.
    pulling = {"paris": {"not_starting": {started.job_key: at}}}
    kept, _ = step(files, now=at + timedelta(minutes=30), states=pulling)
    assert not kept.requeued


@pytest.mark.parametrize(
    ("graces", "report", "until", "whose"),
    [
        (
            {"warmup": "1h", "failure": "10m"},
            "unscheduled",
            70,
            "its AppWrapper's warmupGracePeriodDuration 1h and failureGracePeriodDuration 10m",
        ),
        # On top of the policy's requeueUnscheduled where it sets no other grace.
        (
            {"failure": "10m"},
            "podless",
            25,
            "the policy's requeueUnscheduled 15m and its AppWrapper's "
            "failureGracePeriodDuration 10m",
        ),
    ],
)
def test_an_appwrappers_failure_grace_period_is_waited_on_top_of_the_other_grace(
    graces, report, until, whose
) -> None:
    # The AppWrapper controller waits failureGracePeriodDuration past the
    # warmup or admission grace before it resets a workload; so does Caspian.
    files, started, at = _backfill_dispatched_on_paris(_graced(**graces))
    stuck = {"paris": {report: {started.job_key: at}}}
    kept, _ = step(files, now=at + timedelta(minutes=until - 1), states=stuck)
    assert not kept.requeued
    assert kept.stuck[started.id].endswith(
        f"it is requeued at {format_time(at + timedelta(minutes=until))} unless it starts ({whose})"
    )
    requeued, _ = step(files, now=at + timedelta(minutes=until + 1), states=stuck)
    assert f"more than {whose}: " in requeued.requeued[started.id].reason


def test_a_grace_period_holds_where_the_policy_never_requeues() -> None:
    nulled = _policy(_graced(warmup="30m"), requeueUnscheduled=None)
    files, started, at = _backfill_dispatched_on_paris(nulled)
    waiting = _waiting_since(started, at)
    requeued, _ = step(files, now=at + timedelta(minutes=31), states=waiting)
    assert started.id in requeued.requeued
    # Without its own, a job whose pods were never made waits, as the policy says.
    refused = {"paris": {"podless": {started.job_key: at}}}
    kept, _ = step(files, now=at + timedelta(hours=3), states=refused)
    assert not kept.requeued
    assert kept.stuck[started.id].endswith(
        "the policy's requeueUnscheduled is null, so it waits there"
    )


def test_a_grace_period_go_cannot_read_is_a_problem_naming_the_annotation() -> None:
    for wrong in ("5 min", "1d", "-1m", "1h 30m", "", "²s"):
        decision, _ = step(_graced(warmup=wrong), now=NOW)
        entry = entries(decision)["jobs/backfill-eu.yaml"]
        assert entry.phase == "Invalid", wrong
        assert f"metadata.annotations.{GRACE_PERIODS['warmup_grace']}" in entry.reason
        assert "is not a duration as Go writes one (e.g. 90s, 5m, 1h30m), not negative: " in (
            entry.reason
        )
        assert entries(decision)["batch/etl-daily"].phase in ("Planned", "Dispatched")
    for right, seconds in (("90s", 90), ("1.5h", 5400), ("1h30m", 5400), ("0", 0)):
        decision, _ = step(_graced(admission=right), now=NOW)
        assert decision.jobs["batch/backfill-eu"].admission_grace == timedelta(seconds=seconds)


def test_a_warmup_grace_period_requeues_a_job_whose_pods_have_merely_not_begun() -> None:
    # Its pods have a node and pull their image, with nothing gone wrong: left
    # to them, unless its AppWrapper sets a warmup grace period.
    unready = {"paris": {"unready": {}}}
    for graced in (False, True):
        files = _graced(warmup="30m") if graced else template_files()
        files, started, at = _backfill_dispatched_on_paris(files)
        unready["paris"]["unready"] = {started.job_key: at}
        later, _ = step(files, now=at + timedelta(minutes=31), states=unready)
        if not graced:
            assert not later.requeued and started.id not in later.stuck
            continue
        reason = later.requeued[started.id].reason
        assert reason.startswith(f"its pods have not begun on paris from {format_time(at)} ")
        assert "more than its AppWrapper's warmupGracePeriodDuration 30m: " in reason
