"""A job whose Job fails on its spoke runs again, as a new Job placed anew, as
many times as its AppWrapper's workload.codeflare.dev.appwrapper/retryLimit
(or the policy's retryLimit) lets it, as the AppWrapper controller resets a
failed workload; past that it is recorded Failed."""

from __future__ import annotations

import math
from datetime import timedelta

import yaml

from reconciler import ledger, messages
from reconciler.appwrappers import (
    RETRY_LIMIT,
    RETRY_PAUSE,
    RETRYABLE_EXIT_CODES,
    TERMINAL_EXIT_CODES,
)
from reconciler.pods import Node, Resources, Taint
from reconciler.quantities import format_time
from reconciler.rendering import render
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_requeue import _backfill_dispatched_on_paris, _policy

FAILED = "BackoffLimitExceeded: Job has reached the specified backoff limit"


def _with_retry_limit(files, limit, **annotations):
    """The template fleet, backfill-eu's AppWrapper annotated with `limit` (and
    `annotations`)."""
    doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
    doc["metadata"].setdefault("annotations", {}).update({RETRY_LIMIT: limit, **annotations})
    return {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}


def _failed(entry, *exit_codes):
    """Its spoke reports its Job failed, and why (its pods exited with `exit_codes`)."""
    report = {"jobs": {entry.job_key: "Failed"}, "said": {entry.job_key: FAILED}}
    if exit_codes:
        report["exit_codes"] = {entry.job_key: exit_codes}
    return {entry.spoke: report}


def test_a_failed_job_runs_again_as_a_new_job_up_to_its_appwrappers_retry_limit() -> None:
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "2"))
    later = at + timedelta(hours=1)
    decision, files_after = step(files, now=later, states=_failed(started))
    entry = entries(decision)[started.id]
    retry = decision.retried[started.id]
    assert (retry.spoke, retry.job_name, retry.run, retry.limit) == (
        "paris",
        started.job_name,
        1,
        2,
    )
    assert retry.said == FAILED
    # A new Job, placed anew, its deadline and first sighting as they were.
    assert entry.phase in ("Planned", "Dispatched") and entry.retries == 1
    assert entry.job_name == f"{started.job_name}-r1"
    assert (entry.deadline, entry.first_seen) == (started.deadline, started.first_seen)
    assert_valid_plan(decision.instance, decision.plan)
    # The failed Job leaves (Argo CD prunes it, as the AppWrapper controller
    # deletes it); the new one is rendered in its place.
    rendered = render(decision, previous=files)
    assert f"rendered/paris/batch.{started.job_name}.yaml" not in rendered
    new_file = f"rendered/{entry.spoke}/batch.{entry.job_name}.yaml"
    job = yaml.safe_load(rendered[new_file])
    assert job["metadata"]["name"] == entry.job_name
    before = ledger.parse(files[ledger.LEDGER_PATH])
    message = messages.commit_message(old=before, decision=decision, input_commit="0" * 40)
    assert "retry: 1 job" in message.splitlines()[0]
    assert (
        f"- retried {started.id} (1 of 2): its Job {started.job_name} failed on paris "
        f'(paris says: "{FAILED}"); now {entry.spoke} '
    ) in message
    assert message.count(f", as Job {entry.job_name}\n") == 1

    # The old Job, still reported failed until Argo CD prunes it, is not the
    # new one's: nothing more happens.
    again, _ = step(files_after, now=later, states=_failed(started))
    assert entries(again)[started.id] == entry and not again.retried

    # Its second Job fails too: the last run again.
    dispatched = _dispatched(files_after, started.id, at=later)
    second, files_after = step(dispatched[1], now=dispatched[2], states=_failed(dispatched[0]))
    assert second.retried[started.id].run == 2
    assert entries(second)[started.id].job_name == f"{started.job_name}-r2"

    # And its third: past the limit, it is recorded Failed.
    third = _dispatched(files_after, started.id, at=dispatched[2])
    last, _ = step(third[1], now=third[2], states=_failed(third[0]))
    final = entries(last)[started.id]
    assert not last.retried
    assert (final.phase, final.retries, final.job_name) == ("Failed", 2, f"{started.job_name}-r2")


def _dispatched(files, job_id, *, at):
    """Steps on until `job_id` is dispatched: its entry, the files, and when."""
    now = at
    for _ in range(200):
        now += timedelta(minutes=15)
        decision, files = step(files, now=now)
        entry = entries(decision)[job_id]
        if entry.phase == "Dispatched":
            return entry, files, now + timedelta(minutes=10)
    raise AssertionError(f"{job_id} was never dispatched")


def test_a_job_run_again_holds_its_room_where_the_pods_of_its_new_job_run() -> None:
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "1"))
    _, files = step(files, now=at + timedelta(hours=1), states=_failed(started))
    again, files, now = _dispatched(files, started.id, at=at + timedelta(hours=1))
    room = Resources(cpu=64, memory_bytes=512 * 2**30, gpu=8)
    nodes = (
        Node(name="cpu-1", allocatable=room, free=room),
        Node(
            name="gpu-1",
            allocatable=room,
            free=room,
            taints=(Taint(key="gpu", effect="NoSchedule"),),
        ),
    )

    def pool_seeing(placed_on):
        """The pool of its new Job, its spoke in two pools and its pods on `placed_on`."""
        seen = {"nodes": nodes, "jobs": {again.job_key: "Running"}, "placed_on": placed_on}
        decision, _ = step(files, now=now, states={again.spoke: seen})
        return entries(decision)[started.id].pool

    assert pool_seeing({}) == f"{again.spoke}[untainted]"
    assert pool_seeing({again.job_key: ("gpu-1",)}) == f"{again.spoke}[gpu:NoSchedule]"
    # Where the pods of its failed first Job were says nothing of the new one's.
    assert pool_seeing({started.job_key: ("gpu-1",)}) == f"{again.spoke}[untainted]"


def test_without_the_annotation_the_policys_retry_limit_holds_0_unless_set() -> None:
    files, started, at = _backfill_dispatched_on_paris()
    failed, _ = step(files, now=at + timedelta(hours=1), states=_failed(started))
    assert entries(failed)[started.id].phase == "Failed" and not failed.retried
    once = _policy(template_files(), retryLimit=1)
    files, started, at = _backfill_dispatched_on_paris(once)
    retried, _ = step(files, now=at + timedelta(hours=1), states=_failed(started))
    assert retried.retried[started.id].limit == 1
    # The AppWrapper's own word wins over the policy's.
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(once, "0"))
    kept, _ = step(files, now=at + timedelta(hours=1), states=_failed(started))
    assert entries(kept)[started.id].phase == "Failed" and not kept.retried


def test_a_job_that_exits_as_its_appwrapper_says_ends_it_does_not_run_again() -> None:
    terminal = {TERMINAL_EXIT_CODES: "3,4"}
    retryable = {RETRYABLE_EXIT_CODES: "137"}

    def after(exit_codes, said):
        """The reconcile that sees its Job fail, its AppWrapper annotated as `said`."""
        files, started, at = _backfill_dispatched_on_paris(
            _with_retry_limit(template_files(), "2", **said)
        )
        later = at + timedelta(hours=1)
        decision, after = step(files, now=later, states=_failed(started, *exit_codes))
        # The next reconcile, its failed Job still reported, changes nothing of it.
        again, _ = step(after, now=later, states=_failed(started, *exit_codes))
        assert entries(again)[started.id] == entries(decision)[started.id]
        assert not again.retried and not again.not_retried
        return decision, started, files

    decision, started, files = after((1, 4), terminal)
    entry = entries(decision)[started.id]
    assert (entry.phase, entry.retries) == ("Failed", 0) and not decision.retried
    why = "exit code 4, one of its AppWrapper's terminalExitCodes (3,4), so it does not run again"
    assert decision.not_retried == {started.id: why}
    assert entry.reason == f"its Job {started.job_name} failed with {why}"
    before = ledger.parse(files[ledger.LEDGER_PATH])
    message = messages.commit_message(old=before, decision=decision, input_commit="0" * 40)
    assert f"- {started.id} failed on paris with {why}; ran " in message

    decision, started, _ = after((1,), retryable)
    assert entries(decision)[started.id].phase == "Failed" and not decision.retried
    assert decision.not_retried[started.id].startswith(
        "exit code 1, not one of its AppWrapper's retryableExitCodes (137)"
    )
    # Codes it may run again after; none known (the Argo CD observer sees no
    # pods): it runs again, as the policy and retryLimit say.
    for exit_codes, said in [((137,), retryable), ((1, 2), terminal), ((), terminal)]:
        decision, started, files = after(exit_codes, said)
        assert decision.retried[started.id].run == 1 and not decision.not_retried
        # The commit tells how its containers exited, where the spoke says.
        before = ledger.parse(files[ledger.LEDGER_PATH])
        message = messages.commit_message(old=before, decision=decision, input_commit="0" * 40)
        told = {(137,): "exit code 137; ", (1, 2): "exit codes 1, 2; ", (): ""}[exit_codes]
        assert f'failed on paris ({told}paris says: "{FAILED}"); now ' in message


def test_a_run_again_waits_its_appwrappers_retry_pause_after_the_failure() -> None:
    # Without a pause, the run again goes to the cleanest time, and the ledger
    # says nothing of a pause.
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "1"))
    seen = at + timedelta(hours=1)
    unpaused, after = step(files, now=seen, states=_failed(started))
    at_once = entries(unpaused)[started.id]
    assert at_once.rerun_after is None and b"rerunAfter:" not in after[ledger.LEDGER_PATH]
    # A pause that ends after that time holds it back until the pause is over.
    hours = math.ceil((at_once.planned_start - seen) / timedelta(hours=1)) + 1
    paused = _with_retry_limit(template_files(), "1", **{RETRY_PAUSE: f"{hours}h"})
    files, started, at = _backfill_dispatched_on_paris(paused)
    decision, after = step(files, now=seen, states=_failed(started))
    entry = entries(decision)[started.id]
    assert entry.retries == 1 and entry.rerun_after == seen + timedelta(hours=hours)
    assert entry.planned_start >= seen + timedelta(hours=hours) > at_once.planned_start
    assert_valid_plan(decision.instance, decision.plan)
    before = ledger.parse(files[ledger.LEDGER_PATH])
    message = messages.commit_message(old=before, decision=decision, input_commit="0" * 40)
    assert f", after its AppWrapper's retryPausePeriodDuration {hours}h, as Job " in message
    # The pause holds at the next reconciles too: the ledger keeps it.
    assert b"rerunAfter:" in after[ledger.LEDGER_PATH]
    again, _ = step(after, now=seen + timedelta(minutes=15))
    assert entries(again)[started.id].planned_start >= seen + timedelta(hours=hours)
    # A pause past its deadline makes it late, and one past the horizon defers
    # it: each says so.
    for pause, told in (
        (20, "will finish after its deadline: its run again waits until "),
        (100, "deferred: its run again waits until "),
    ):
        long = _with_retry_limit(template_files(), "1", **{RETRY_PAUSE: f"{pause}h"})
        files, started, at = _backfill_dispatched_on_paris(long)
        decision, _ = step(files, now=seen, states=_failed(started))
        held = entries(decision)[started.id]
        assert held.reason.startswith(
            f"{told}{format_time(seen + timedelta(hours=pause))} (its AppWrapper's "
            "retryPausePeriodDuration after the failure)"
        ), held.reason
        assert held.late == (pause == 20) and (held.phase == "Pending") == (pause == 100)
    # One Go would not read is a problem line naming it.
    wrong, _ = step(_with_retry_limit(template_files(), "1", **{RETRY_PAUSE: "2 h"}), now=NOW)
    assert f"metadata.annotations.{RETRY_PAUSE}: '2 h' is not a duration as Go" in (
        entries(wrong)["jobs/backfill-eu.yaml"].reason
    )


def test_exit_codes_that_are_no_list_of_numbers_are_a_problem_naming_the_annotation() -> None:
    for key in (TERMINAL_EXIT_CODES, RETRYABLE_EXIT_CODES):
        for wrong in ("3, 4", " 3", "", "3,,4", "one", "-1", "²"):
            files = _with_retry_limit(template_files(), "1", **{key: wrong})
            decision, _ = step(files, now=NOW)
            entry = entries(decision)["jobs/backfill-eu.yaml"]
            assert entry.phase == "Invalid", (key, wrong)
            assert f"metadata.annotations.{key}" in entry.reason
            assert "without spaces" in entry.reason
            assert entries(decision)["batch/etl-daily"].phase in ("Planned", "Dispatched")


def test_a_retry_limit_that_is_no_whole_number_is_a_problem_naming_the_annotation() -> None:
    # "²" is a digit to str.isdigit(), and no number to int().
    for wrong in ("three", "-1", "1.5", "²", " 2", "2 "):
        decision, _ = step(_with_retry_limit(template_files(), wrong), now=NOW)
        entry = entries(decision)["jobs/backfill-eu.yaml"]
        assert entry.phase == "Invalid"
        assert f"metadata.annotations.{RETRY_LIMIT}" in entry.reason
        assert "whole number" in entry.reason
        # The rest of the fleet is planned.
        assert entries(decision)["batch/etl-daily"].phase in ("Planned", "Dispatched")


def test_an_edited_job_gets_its_runs_again_afresh() -> None:
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "1"))
    retried, files = step(files, now=at + timedelta(hours=1), states=_failed(started))
    assert entries(retried)[started.id].retries == 1
    doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
    job = doc["spec"]["components"][0]["template"]
    job["metadata"] = {**(job.get("metadata") or {}), "labels": {"run": "2"}}
    files = {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}
    edited, _ = step(files, now=at + timedelta(hours=1, minutes=5))
    entry = entries(edited)[started.id]
    assert entry.retries == 0 and not entry.job_name.endswith("-r1")


def test_each_run_again_is_a_job_name_the_api_takes() -> None:
    from tests.fleet.helpers import fleet_with

    job = fleet_with().jobs[0]
    long = job.model_copy(update={"name": "x" * 60 + "-trailing"})
    for retry in (0, 1, 12):
        name = long.job_name_for(retry=retry)
        assert len(name) <= 63 and name[0].isalnum()
        assert name.endswith(f"-{job.template_hash}" + (f"-r{retry}" if retry else ""))
    assert long.job_name_for(retry=0) == long.job_name


def test_a_run_again_requeued_elsewhere_is_the_same_run() -> None:
    files, started, at = _backfill_dispatched_on_paris(_with_retry_limit(template_files(), "3"))
    _, files = step(files, now=at + timedelta(hours=1), states=_failed(started))
    again, files, when = _dispatched(files, started.id, at=at + timedelta(hours=1))
    assert again.retries == 1
    # Its pods find no node where it went: requeued, it keeps its Job and count.
    stuck = {again.spoke: {"unscheduled": {again.job_key: when - timedelta(minutes=5)}}}
    requeued, _ = step(files, now=when + timedelta(minutes=15), states=stuck)
    entry = entries(requeued)[started.id]
    assert started.id in requeued.requeued
    assert (entry.retries, entry.job_name) == (1, again.job_name)
