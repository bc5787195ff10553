"""What a job's runs emitted is counted when each ends: the energy of its
requests on its spoke for as long as its Job ran, times the intensity its
zone had then, as the carbon source reads it back. The ledger keeps it
beside the plan's estimate, and the commit says it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml

from carbon.series import IntensitySeries, Provenance
from reconciler import emissions, ledger, messages
from reconciler.rendering import job_path
from reconciler.templates import template_files
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_requeue import _backfill_dispatched_on_paris
from tests.reconcile.test_retry import _failed, _with_retry_limit
from tests.reconcile.test_suspend import _suspend

# backfill-eu asks 16 cores and 64 GiB; paris's power model gives 10 W a
# core and 0.4 W a GiB, with a PUE of 1.15.
BACKFILL_KW = (16 * 10 + 64 * 0.4) * 1.15 / 1000
PARIS_G_PER_KWH = 100.0


def _flat(files=None):
    """The template fleet with flat intensities, paris cleaner than frankfurt,
    so that what a run emitted is worked out by hand."""
    files = dict(files or template_files())
    for name, zone, value in (("paris", "FR", PARIS_G_PER_KWH), ("frankfurt", "DE", 400.0)):
        doc = yaml.safe_load(files[f"spokes/{name}.yaml"])
        doc["spec"]["carbon"] = {"provider": "constant", "zone": zone, "value": value}
        files[f"spokes/{name}.yaml"] = yaml.safe_dump(doc).encode()
    return files


def _ended(started, *, began, ended, how="Succeeded"):
    """paris reports backfill-eu's Job begun at `began` and ended at `ended`."""
    key = started.job_key
    return {"paris": {"jobs": {key: how}, "started": {key: began}, "ended": {key: ended}}}


def _message(files, decision) -> str:
    old = ledger.parse(files[ledger.LEDGER_PATH])
    return messages.commit_message(old=old, decision=decision, input_commit="0" * 40)


def test_a_run_is_counted_over_the_time_its_job_ran_not_the_time_planned() -> None:
    files, started, _ = _backfill_dispatched_on_paris(_flat())
    # It was planned for 6 hours; its Job began 10 minutes late and took 2h 30m.
    began = started.planned_start + timedelta(minutes=10)
    ended = began + timedelta(hours=2, minutes=30)
    done, after = step(
        files, now=ended + timedelta(minutes=3), states=_ended(started, began=began, ended=ended)
    )
    entry = entries(done)[started.id]
    assert (entry.phase, entry.started_at, entry.finished_at) == ("Succeeded", began, ended)
    assert entry.emitted_grams == pytest.approx(BACKFILL_KW * 2.5 * PARIS_G_PER_KWH, abs=0.05)
    assert entry.estimated_grams == pytest.approx(BACKFILL_KW * 6 * PARIS_G_PER_KWH, abs=0.05)
    line = next(x for x in _message(files, done).splitlines() if "succeeded on paris" in x)
    # The qos baseline would have started it at once on frankfurt, whose PUE
    # is 1.25: as long a run there, at 400 g/kWh, 232 g.
    qos_start = entry.qos_start
    assert (entry.qos_spoke, qos_start < started.planned_start) == ("frankfurt", True)
    assert entry.qos_emitted_grams == pytest.approx(BACKFILL_KW / 1.15 * 1.25 * 2.5 * 400, abs=0.05)
    assert line.endswith(
        f"; ran 2h30m from {began:%Y-%m-%d %H:%M}; emitted 53 gCO2 (est. 128 when planned), "
        f"77% less than the 232 gCO2 it would have as qos placed it "
        f"(frankfurt {qos_start:%Y-%m-%d %H:%M})"
    )
    # The ledger keeps it: the next reconcile counts nothing again.
    again, _ = step(
        after, now=ended + timedelta(hours=1), states=_ended(started, began=began, ended=ended)
    )
    assert entries(again)[started.id] == entry
    records = yaml.safe_load(after[ledger.LEDGER_PATH])["entries"]
    record = next(r for r in records if r["id"] == started.id)
    assert (record["emittedGrams"], record["startedAt"]) == (53.4, f"{began:%Y-%m-%dT%H:%M:%SZ}")
    assert (record["qosEmittedGrams"], record["qosSpoke"]) == (232, "frankfurt")
    # Its Job says it too, in Argo CD's UI, while it stays in rendered/.
    annotations = yaml.safe_load(after[job_path(entry)])["metadata"]["annotations"]
    assert annotations["caspian.dev/emitted-gco2"] == "53.4"
    assert (
        "caspian.dev/emitted-gco2"
        not in yaml.safe_load(files[job_path(started)])["metadata"]["annotations"]
    )


def test_a_spoke_that_does_not_say_when_its_job_began_counts_from_the_planned_start() -> None:
    # As through Argo CD, which reports no start: the Job was resumed in its slot.
    files, started, _ = _backfill_dispatched_on_paris(_flat())
    ended = started.planned_start + timedelta(hours=1)
    report = {"paris": {"jobs": {started.job_key: "Succeeded"}}}
    done, _ = step(files, now=ended, states=report)
    entry = entries(done)[started.id]
    assert (entry.started_at, entry.finished_at) == (started.planned_start, ended)
    assert entry.emitted_grams == pytest.approx(BACKFILL_KW * PARIS_G_PER_KWH, abs=0.05)


def test_a_failed_run_that_runs_again_counts_and_the_runs_add_up() -> None:
    files, started, _ = _backfill_dispatched_on_paris(_with_retry_limit(_flat(), "1"))
    failed_at = started.planned_start + timedelta(hours=1)
    report = _failed(started)
    report["paris"]["ended"] = {started.job_key: failed_at}
    retried, files = step(files, now=failed_at + timedelta(minutes=1), states=report)
    again = entries(retried)[started.id]
    assert again.retries == 1 and again.phase in ("Planned", "Dispatched")
    first = BACKFILL_KW * 1 * PARIS_G_PER_KWH
    assert again.emitted_grams == pytest.approx(first, abs=0.05)
    # Moved on, dispatched and run: each later record keeps the first run's
    # grams, and the second run's are added when it ends.
    now = failed_at + timedelta(minutes=1)
    for _ in range(10):  # a reconcile at each planned start, until it is dispatched
        if entries(retried)[started.id].phase == "Dispatched":
            break
        now = max(now + timedelta(minutes=15), entries(retried)[started.id].planned_start)
        retried, files = step(files, now=now)
        assert entries(retried)[started.id].emitted_grams == again.emitted_grams
    second = entries(retried)[started.id]
    assert second.phase == "Dispatched" and second.retries == 1
    ended = now + timedelta(minutes=30)
    done, _ = step(files, now=ended, states=_ended(second, began=now, ended=ended))
    entry = entries(done)[started.id]
    assert entry.emitted_grams == pytest.approx(
        first + BACKFILL_KW * 0.5 * PARIS_G_PER_KWH, abs=0.1
    )
    line = next(x for x in _message(files, done).splitlines() if "succeeded on paris" in x)
    assert line.endswith(f"; its 2 runs emitted {entry.emitted_grams:,.0f} gCO2")
    # The baseline is of one run: qos would not have run it twice.
    assert (entry.qos_spoke is not None, entry.qos_emitted_grams) == (True, None)


def _running(started, *, began):
    """paris reports backfill-eu's Job running since `began`."""
    key = started.job_key
    return {"paris": {"jobs": {key: "Running"}, "started": {key: began}, "listed": {key}}}


def test_a_job_that_began_again_there_counts_the_run_before_to_its_new_start() -> None:
    # Deleted there and made again by Argo CD's self-heal, or suspended there
    # and resumed: Kubernetes gives the Job a new start, and the run before
    # burnt its energy too.
    dispatched, started, _ = _backfill_dispatched_on_paris(_flat())
    began = started.planned_start + timedelta(minutes=5)
    running, files = step(
        dispatched, now=began + timedelta(minutes=10), states=_running(started, began=began)
    )
    record = entries(running)[started.id]
    assert (record.phase, record.started_at, record.emitted_grams) == ("Running", began, None)
    assert f"\n- {started.id} runs on paris since {began:%Y-%m-%d %H:%M}\n" in _message(
        dispatched, running
    )
    anew = began + timedelta(hours=1, minutes=30)
    restarted, after = step(
        files, now=anew + timedelta(minutes=10), states=_running(started, began=anew)
    )
    entry = entries(restarted)[started.id]
    first = BACKFILL_KW * 1.5 * PARIS_G_PER_KWH
    assert (entry.phase, entry.started_at) == ("Running", anew)
    assert entry.emitted_grams == pytest.approx(first, abs=0.05)
    assert "began again: 1 job" in messages.subject(running.ledger, restarted)
    assert (
        f"\n- {started.id}: its Job {started.job_name} began again on paris at "
        f"{anew:%Y-%m-%d %H:%M} (made again there after it was deleted, or resumed after a "
        f"suspension there): the run from {began:%Y-%m-%d %H:%M} ended by then, "
        f"{first:,.0f} gCO2 counted\n"
    ) in _message(files, restarted)
    # Seen so again: nothing more is counted.
    again, _ = step(after, now=anew + timedelta(minutes=40), states=_running(started, began=anew))
    assert entries(again)[started.id] == entry
    # When it ends, its last run is added: from its new start.
    ended = anew + timedelta(hours=2)
    done, _ = step(after, now=ended, states=_ended(started, began=anew, ended=ended))
    last = entries(done)[started.id]
    assert (last.phase, last.started_at) == ("Succeeded", anew)
    assert last.emitted_grams == pytest.approx(first + BACKFILL_KW * 2 * PARIS_G_PER_KWH, abs=0.1)
    assert last.qos_emitted_grams is None  # qos would not have run it twice
    # Through an observer that does not say when a Job began (Argo CD's older
    # check), the last run counts from the start the record kept, not from
    # its planned start, which would count the run before twice.
    unsaid, _ = step(after, now=ended, states={"paris": {"jobs": {started.job_key: "Succeeded"}}})
    assert entries(unsaid)[started.id].emitted_grams == pytest.approx(
        first + BACKFILL_KW * 2 * PARIS_G_PER_KWH, abs=0.1
    )


def test_a_job_found_gone_then_made_again_counts_the_run_before_to_when_it_was_found_gone() -> None:
    files, started, _ = _backfill_dispatched_on_paris(_flat())
    began = started.planned_start + timedelta(minutes=5)
    _, files = step(files, now=began + timedelta(minutes=10), states=_running(started, began=began))
    found = began + timedelta(hours=1)
    gone = {"paris": {"jobs": {}, "listed": frozenset()}}
    missing, files = step(files, now=found, states=gone)
    assert entries(missing)[started.id].gone_since == found
    anew = found + timedelta(hours=1)
    back, _ = step(files, now=anew + timedelta(minutes=5), states=_running(started, began=anew))
    entry = entries(back)[started.id]
    assert (entry.started_at, entry.gone_since) == (anew, None)
    assert entry.emitted_grams == pytest.approx(BACKFILL_KW * 1 * PARIS_G_PER_KWH, abs=0.05)


def test_a_run_whose_pods_lost_their_node_counts_to_when_they_did() -> None:
    # Failed requeueUnscheduled after, and run again: the run ended then.
    files, started, _ = _backfill_dispatched_on_paris(_with_retry_limit(_flat(), "1"))
    key, began = started.job_key, started.planned_start
    seen = {"paris": {"jobs": {key: "Running"}, "listed": {key}, "started": {key: began}}}
    running, files = step(files, now=began + timedelta(minutes=10), states=seen)
    assert entries(running)[started.id].phase == "Running"
    lost = began + timedelta(hours=1)
    seen["paris"]["nodeless"] = {key: lost}
    retried, _ = step(files, now=lost + timedelta(minutes=20), states=seen)
    again = entries(retried)[started.id]
    assert again.retries == 1 and retried.left
    assert again.emitted_grams == pytest.approx(BACKFILL_KW * 1 * PARIS_G_PER_KWH, abs=0.05)


def test_a_run_stopped_by_its_appwrapper_counts_and_adds_to_the_run_after_it() -> None:
    files, started, _ = _backfill_dispatched_on_paris(_flat())
    began = started.planned_start + timedelta(minutes=5)
    key = started.job_key
    running = {"paris": {"jobs": {key: "Running"}, "started": {key: began}}}
    # Suspended in git after an hour's run: Kubernetes ends its pods.
    stop_at = began + timedelta(hours=1)
    stopped, stopped_files = step(_suspend(files, started.source), now=stop_at, states=running)
    entry = entries(stopped)[started.id]
    assert entry.phase == "Suspended"
    assert entry.emitted_grams == pytest.approx(BACKFILL_KW * 1 * PARIS_G_PER_KWH, abs=0.05)
    line = next(x for x in _message(files, stopped).splitlines() if "- suspended " in x)
    assert line.endswith("; its run up to now emitted 21 gCO2")
    files = stopped_files
    # Held so: counted once.
    again, files = step(files, now=stop_at + timedelta(minutes=30))
    assert entries(again)[started.id].emitted_grams == entry.emitted_grams
    # Resumed, it runs again on paris, as a Job begun anew, for 2 hours.
    resumed_at = stop_at + timedelta(hours=1)
    back, files = step(_suspend(files, started.source, value=False), now=resumed_at)
    for _ in range(10):
        planned = entries(back)[started.id]
        if planned.phase == "Dispatched":
            break
        assert planned.phase == "Planned" and planned.emitted_grams == entry.emitted_grams
        back, files = step(files, now=planned.planned_start + timedelta(minutes=1))
    assert entries(back)[started.id].phase == "Dispatched"
    second = entries(back)[started.id].planned_start + timedelta(minutes=2)
    ended = second + timedelta(hours=2)
    done, _ = step(
        files, now=ended + timedelta(minutes=5), states=_ended(started, began=second, ended=ended)
    )
    finished = entries(done)[started.id]
    assert finished.phase == "Succeeded"
    assert finished.emitted_grams == pytest.approx(BACKFILL_KW * 3 * PARIS_G_PER_KWH, abs=0.1)
    # qos would have run it once, through: no baseline for the last part alone.
    assert finished.qos_emitted_grams is None


def test_a_run_is_not_counted_beyond_the_intensities_its_source_measured() -> None:
    files, started, _ = _backfill_dispatched_on_paris(_flat())
    ended = started.planned_start + timedelta(hours=1)
    report = {"paris": {"jobs": {started.job_key: "Succeeded"}}}

    def measured(start: datetime) -> dict[str, IntensitySeries]:
        said = Provenance(
            provider="electricitymaps", kind="actual", signal="lifecycle", fetched_at=ended
        )
        values = (PARIS_G_PER_KWH,) * 12
        return {
            "FR": IntensitySeries(
                zone="FR", start=start, slot_seconds=900, values=values, provenance=said
            )
        }

    covering = measured(started.planned_start - timedelta(minutes=30))
    counted, _ = step(files, now=ended, states=report, measured=covering)
    entry = entries(counted)[started.id]
    assert entry.emitted_grams == pytest.approx(BACKFILL_KW * PARIS_G_PER_KWH, abs=0.05)
    # Where qos would have run it (at once, on another zone) was not measured.
    assert entry.qos_start < started.planned_start and entry.qos_emitted_grams is None
    # Measured from a quarter past its start only, or not at all in its zone.
    for partly in (measured(started.planned_start + timedelta(minutes=15)), {"DE": covering["FR"]}):
        done, _ = step(files, now=ended, states=report, measured=partly)
        entry = entries(done)[started.id]
        assert (entry.phase, entry.started_at, entry.emitted_grams) == (
            "Succeeded",
            started.planned_start,
            None,
        )


def test_the_intensity_is_summed_over_parts_of_slots() -> None:
    start = datetime.fromisoformat("2026-12-05T10:00:00+00:00")
    said = Provenance(provider="constant", kind="constant", signal="configured", fetched_at=start)
    series = IntensitySeries(
        zone="FR", start=start, slot_seconds=900, values=(100.0, 200.0, 400.0), provenance=said
    )
    at = lambda minutes: start + timedelta(minutes=minutes)  # noqa: E731
    # 5 minutes of the first slot, all of the second, 10 of the third.
    assert (
        emissions.integral(series, start=at(10), end=at(40)) == (5 * 100 + 15 * 200 + 10 * 400) * 60
    )
    assert emissions.integral(series, start=at(0), end=at(45)) == (100 + 200 + 400) * 900
    assert emissions.integral(series, start=at(20), end=at(20)) == 0
    assert emissions.integral(series, start=at(-1), end=at(20)) is None
    assert emissions.integral(series, start=at(30), end=at(46)) is None
