"""A finished job's Job stays in rendered/ (so its pods and logs stay on its
spoke) for the policy's retention after Caspian saw it finish, or for its
AppWrapper's successTTLDuration (succeeded) or
deletionOnFailureGracePeriodDuration (failed for good), as the AppWrapper
controller keeps a finished workload's resources; then Argo CD prunes it, and
the ledger keeps the record."""

from __future__ import annotations

from datetime import timedelta

import yaml

from reconciler import messages
from reconciler.appwrappers import FAILED_TTL, SUCCESS_TTL
from reconciler.rendering import job_path, render
from reconciler.templates import template_files
from tests.conftest import NOW
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_requeue import _backfill_dispatched_on_paris, _policy
from tests.reconcile.test_retry import _failed

SUCCEEDED = "Succeeded"


def _annotated(**annotations):
    """The template fleet, backfill-eu's AppWrapper annotated so."""
    files = template_files()
    doc = yaml.safe_load(files["jobs/backfill-eu.yaml"])
    doc["metadata"].setdefault("annotations", {}).update(annotations)
    return {**files, "jobs/backfill-eu.yaml": yaml.safe_dump(doc).encode()}


def _finished(files, *, at, how=SUCCEEDED):
    """backfill-eu dispatched on paris, then seen finished at `at`."""
    files, started, _ = _backfill_dispatched_on_paris(files)
    report = (
        {"paris": {"jobs": {started.job_key: SUCCEEDED}}} if how == SUCCEEDED else _failed(started)
    )
    decision, files = step(files, now=at, states=report)
    return decision, files, entries(decision)[started.id]


def _rendered(decision, files) -> dict[str, bytes]:
    """The files this decision renders (`step`'s files keep the ones it drops)."""
    return render(decision, previous=files)


def test_a_finished_job_is_kept_the_retention_after_it_was_seen_finished() -> None:
    files, started, _ = _backfill_dispatched_on_paris()
    # It ran two hours past its planned end: kept from when it was seen done.
    seen = started.planned_end + timedelta(hours=2)
    done, files = step(files, now=seen, states={"paris": {"jobs": {started.job_key: SUCCEEDED}}})
    entry = entries(done)[started.id]
    assert (entry.phase, entry.finished_at) == ("Succeeded", seen)
    path = job_path(entry)
    # Later reconciles keep when it was seen, so the ledger does not change.
    kept, files = step(files, now=started.planned_end + timedelta(hours=25))
    assert entries(kept)[started.id] == entry
    assert path in _rendered(kept, files)
    pruned, _ = step(files, now=seen + timedelta(hours=24))
    assert path not in _rendered(pruned, files)
    assert entries(pruned)[started.id] == entry  # the ledger keeps the record


def test_a_finished_job_is_kept_from_when_its_spoke_says_it_ended() -> None:
    # Caspian was away for an hour: the time counts from the Job's own end.
    files, started, _ = _backfill_dispatched_on_paris(_annotated(**{SUCCESS_TTL: "30m"}))
    ended, seen = started.planned_end, started.planned_end + timedelta(hours=1)
    report = {"paris": {"jobs": {started.job_key: SUCCEEDED}, "ended": {started.job_key: ended}}}
    done, _ = step(files, now=seen, states=report)
    entry = entries(done)[started.id]
    assert entry.finished_at == ended
    assert job_path(entry) not in _rendered(done, files)  # its 30 minutes went by
    # A spoke whose clock runs ahead says no later than now.
    report["paris"]["ended"] = {started.job_key: seen + timedelta(minutes=5)}
    done, _ = step(files, now=seen, states=report)
    assert entries(done)[started.id].finished_at == seen


def test_an_appwrappers_success_ttl_is_how_long_its_succeeded_job_stays() -> None:
    seen = NOW + timedelta(hours=12)
    decision, files, entry = _finished(_annotated(**{SUCCESS_TTL: "10m"}), at=seen)
    path = job_path(entry)
    assert path in _rendered(decision, files)
    assert decision.leaves_rendered(entry) == seen + timedelta(minutes=10)
    kept, files = step(files, now=seen + timedelta(minutes=9))
    assert path in _rendered(kept, files)
    pruned, _ = step(files, now=seen + timedelta(minutes=10))
    rendered = _rendered(pruned, files)
    assert path not in rendered
    assert f"batch.{entry.job_name}.yaml" not in str(rendered["rendered/paris/kustomization.yaml"])
    assert entries(pruned)[entry.id].phase == "Succeeded"
    # "0" prunes it in the commit that records it succeeded.
    decision, files, entry = _finished(_annotated(**{SUCCESS_TTL: "0s"}), at=seen)
    assert job_path(entry) not in _rendered(decision, files)


def test_a_success_ttl_does_not_hold_for_a_job_that_failed_nor_the_reverse() -> None:
    seen = NOW + timedelta(hours=12)
    both = {SUCCESS_TTL: "0s", FAILED_TTL: "48h"}
    failed, files, entry = _finished(_annotated(**both), at=seen, how="Failed")
    assert entry.phase == "Failed" and job_path(entry) in _rendered(failed, files)
    # Kept past the policy's 24 hours, for someone to look at its pods.
    later, files = step(files, now=seen + timedelta(hours=47))
    assert job_path(entry) in _rendered(later, files)
    assert failed.kept_for(entry) == (timedelta(hours=48), "deletionOnFailureGracePeriodDuration")
    gone, _ = step(files, now=seen + timedelta(hours=48))
    assert job_path(entry) not in _rendered(gone, files)
    # Succeeded, the failure's annotation does not count: the policy's 24 hours do.
    succeeded, files, entry = _finished(_annotated(**{FAILED_TTL: "0s"}), at=seen)
    assert succeeded.kept_for(entry) == (timedelta(hours=24), None)
    assert job_path(entry) in _rendered(succeeded, files)


def test_the_policys_retention_holds_where_the_appwrapper_says_nothing() -> None:
    seen = NOW + timedelta(hours=12)
    short = _policy(_annotated(), retention="1h")
    decision, _, entry = _finished(short, at=seen)
    assert decision.kept_for(entry) == (timedelta(hours=1), None)
    assert decision.leaves_rendered(entry) == seen + timedelta(hours=1)
    # A record from before Caspian kept when it saw a job finish counts from
    # its planned end.
    old = entry.model_copy(update={"finished_at": None})
    assert decision.leaves_rendered(old) == entry.planned_end + timedelta(hours=1)


def test_the_commit_that_prunes_a_finished_job_says_so_and_whose_word_it_was() -> None:
    seen = NOW + timedelta(hours=12)
    decision, files, entry = _finished(_annotated(**{SUCCESS_TTL: "10m"}), at=seen)
    pruned, _ = step(files, now=seen + timedelta(minutes=10))
    message = messages.commit_message(
        old=decision.ledger, decision=pruned, input_commit="0" * 40, pruned=[entry.id]
    )
    assert messages.subject(decision.ledger, pruned, pruned=[entry.id]).startswith(
        "prune: 1 job (finished)"
    )
    assert message.startswith("prune: 1 job (finished)")
    assert (
        f"- {entry.id}: Job {entry.job_name} on paris, succeeded; kept 10m after it "
        "succeeded (its AppWrapper's successTTLDuration)\n" in message
    )


def test_a_ttl_go_cannot_read_is_a_problem_naming_the_annotation() -> None:
    for key in (SUCCESS_TTL, FAILED_TTL):
        decision, _ = step(_annotated(**{key: "2 days"}), now=NOW)
        entry = entries(decision)["jobs/backfill-eu.yaml"]
        assert entry.phase == "Invalid"
        assert f"metadata.annotations.{key}: '2 days' is not a duration as Go" in entry.reason
        assert "its Job stays in rendered/ (without it, the policy's retention holds)" in (
            entry.reason
        )
        assert entries(decision)["batch/etl-daily"].phase in ("Planned", "Dispatched")
