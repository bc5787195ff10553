"""A spoke file that does not load: that spoke takes no new work, what was placed
there stays as committed, and every other spoke goes on being planned."""

from __future__ import annotations

from datetime import timedelta

import yaml
from prometheus_client import REGISTRY

from reconciler import messages
from reconciler.quantities import timestamp
from reconciler.rendering import SPOKE_FILES, render
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import NOW
from tests.fleet.helpers import appwrapper
from tests.reconcile.test_lifecycle import entries, step
from tests.reconcile.test_reconcile import reconcile
from tests.reconcile.test_suspend import _suspend

# A typo a person makes: a label value with a space in it.
TYPO = (b"region: eu-west", b"region: eu west")


def _file_loads(spoke: str) -> float | None:
    return REGISTRY.get_sample_value("caspian_spoke_file_loads", {"spoke": spoke})


def _paris(remote) -> dict[str, bytes]:
    return {path: gitutil.read(remote, path) for path in gitutil.files(remote, "rendered/paris/")}


def test_a_broken_spoke_file_keeps_what_started_there_and_the_rest_goes_on(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    before = gitutil.ledger(remote)
    started = {
        k: e for k, e in before.items() if e["spoke"] == "paris" and e["phase"] == "Dispatched"
    }
    waiting = {k: e for k, e in before.items() if e["spoke"] == "paris" and e["phase"] == "Planned"}
    assert len(started) == 3 and len(waiting) == 5
    committed = _paris(remote)
    text = gitutil.read(remote, "spokes/paris.yaml")
    broken = {"spokes/paris.yaml": text.replace(*TYPO), "jobs/typo.yaml": b"kind: ["}
    gitutil.user_commit(remote, broken, "relabel paris, and a job file with a typo")

    later = NOW + timedelta(minutes=20)
    outcome = reconcile(fleet_repo, at=later)
    assert outcome.commit == gitutil.head(remote)
    assert outcome.partial  # the CLI exits 3: done, with a problem to fix
    after = gitutil.ledger(remote)
    problem = after["spokes/paris.yaml"]
    assert problem["phase"] == "Invalid"
    assert problem["reason"].startswith("metadata.labels: 'eu west' is not a label value")
    # What started there is held as committed: not cancelled, not run again elsewhere.
    for job_id, entry in started.items():
        assert after[job_id] == entry
        assert outcome.decision.plan.assignment(job_id) is None
    now_there = _paris(remote)
    held = {p: b for p, b in committed.items() if any(e["jobName"] in p for e in started.values())}
    assert len(held) == 3 and {p: now_there.get(p) for p in held} == held
    # Argo CD syncs the directory still: it lists those Jobs and their namespaces.
    listed = yaml.safe_load(now_there["rendered/paris/kustomization.yaml"])["resources"]
    assert sorted(listed) == sorted([*(p.rsplit("/", 1)[1] for p in held), "namespaces.yaml"])
    assert set(now_there) == {*held, *(f"rendered/paris/{name}" for name in SPOKE_FILES)}
    # What was only planned there, and never started, is planned again elsewhere.
    for job_id in waiting:
        assert after[job_id]["phase"] in ("Planned", "Dispatched"), after[job_id]
        assert after[job_id]["spoke"] in ("california", "frankfurt")
    message = gitutil.message(remote)
    assert "- spokes/paris.yaml: metadata.labels: 'eu west' is not a label value" in message
    assert "Spokes whose file does not load (no new work; fix the file):\n" in message
    assert "- paris: 3 jobs kept there as committed until its file loads" in message
    assert "Spokes removed from the fleet" not in message
    # The file is no job: counted as a spoke file, not among the jobs' phases.
    subject, _, body = message.partition("\n\n")
    assert "; invalid: 1 job, 1 spoke file" in subject, subject
    jobs_line = body.splitlines()[0]
    assert jobs_line.startswith("Jobs: ") and jobs_line.endswith(", 1 invalid."), jobs_line

    assert _file_loads("paris") == 0
    assert REGISTRY.get_sample_value("caspian_jobs", {"phase": "Invalid"}) == 1  # the job file
    head = gitutil.head(remote)
    assert reconcile(fleet_repo, at=later).commit is None  # idempotent
    assert gitutil.head(remote) == head

    # Mended, the spoke takes work again, and what ran there never moved.
    fixed = {"spokes/paris.yaml": text, "jobs/typo.yaml": appwrapper("typo").encode()}
    gitutil.user_commit(remote, fixed, "fix the label, and the typo")
    mended = reconcile(fleet_repo, at=later + timedelta(minutes=15))
    assert not mended.decision.broken_spokes and _file_loads("paris") == 1
    final = gitutil.ledger(remote)
    assert "spokes/paris.yaml" not in final and "jobs/typo.yaml" not in final
    # The commit says so, where the records of both files only went.
    message = gitutil.message(remote)
    assert "; fixed: 1 job, 1 spoke file" in message.partition("\n")[0]
    assert "\n- fixed jobs/typo.yaml: batch/typo loads again (skipped before: not valid YAML" in (
        message
    )
    assert (
        "\n- fixed spokes/paris.yaml: spoke paris loads again (skipped before: metadata.labels: "
        "'eu west' is not a label value"
    ) in message
    for job_id, entry in started.items():
        assert (final[job_id]["phase"], final[job_id]["plannedStart"]) == (
            "Dispatched",
            entry["plannedStart"],
        )
    assert {p: gitutil.read(remote, p) for p in held} == held


def test_work_on_the_other_spokes_is_dispatched_while_one_file_is_broken(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    text = gitutil.read(remote, "spokes/paris.yaml")
    gitutil.user_commit(remote, {"spokes/paris.yaml": text.replace(*TYPO)})
    reconcile(fleet_repo, at=NOW + timedelta(minutes=20))
    planned = [e for e in gitutil.ledger(remote).values() if e["phase"] == "Planned"]
    first = min(planned, key=lambda e: e["plannedStart"])
    start = timestamp(first["plannedStart"])
    reconcile(fleet_repo, at=start + timedelta(minutes=5))
    assert gitutil.ledger(remote)[first["id"]]["phase"] == "Dispatched"
    assert first["spoke"] != "paris"


def test_a_job_that_may_only_use_the_broken_spoke_waits_and_says_why(fleet_repo, remote) -> None:
    only = appwrapper("only-paris", annotations={"caspian.dev/spokes": "paris"})
    gitutil.user_commit(
        remote, {"jobs/only-paris.yaml": only.encode(), "spokes/paris.yaml": b"spec: [\n"}
    )
    outcome = reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/only-paris"]
    assert entry["phase"] == "Pending"
    assert entry["reason"] == (
        "no spoke it may use can take it: paris (spokes/paris.yaml does not load; fix it)"
    )
    assert outcome.decision.closed["paris"] == "spokes/paris.yaml does not load; fix it"


def test_a_new_spoke_whose_file_never_loaded_gets_no_directory(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    gitutil.user_commit(remote, {"spokes/tokyo.yaml": b"apiVersion: caspian.dev/v1alpha1\n"})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(minutes=20))
    assert outcome.commit is not None
    assert gitutil.files(remote, "rendered/tokyo/") == []
    assert "- tokyo: nothing of Caspian's there" in gitutil.message(remote)
    assert gitutil.ledger(remote)["spokes/tokyo.yaml"]["reason"].startswith("kind: ")


def test_an_unknown_carbon_zone_is_a_problem_of_that_spoke(fleet_repo, remote) -> None:
    text = gitutil.read(remote, "spokes/paris.yaml").replace(b"zone: FR", b"zone: MARS")
    gitutil.user_commit(remote, {"spokes/paris.yaml": text})
    outcome = reconcile(fleet_repo)
    assert outcome.decision.broken_spokes == {"paris": "spokes/paris.yaml"}
    reason = gitutil.ledger(remote)["spokes/paris.yaml"]["reason"]
    assert reason.startswith(
        "spec.carbon.zone: zone 'MARS' is not in the embedded dataset; use one of"
    )
    assert {e["spoke"] for e in gitutil.ledger(remote).values() if e.get("spoke")} == {
        "california",
        "frankfurt",
    }
    assert "Caspian-Carbon-Source: MARS" not in gitutil.message(remote)


def test_spokes_of_one_zone_share_one_carbon_source_or_the_later_is_a_problem(
    fleet_repo, remote
) -> None:
    """Intensity is kept by zone: a second spoke of frankfurt's zone that names
    another signal would silently read frankfurt's series."""
    text = gitutil.read(remote, "spokes/paris.yaml").replace(b"zone: FR", b"zone: DE")
    gitutil.user_commit(remote, {"spokes/paris.yaml": text.replace(b"lifecycle", b"direct")})
    reconcile(fleet_repo)
    reason = gitutil.ledger(remote)["spokes/paris.yaml"]["reason"]
    assert reason == (
        "spec.carbon: zone 'DE' is read as spokes/frankfurt.yaml gives it, and spokes of "
        "one zone share its series; here signal is 'direct', there 'lifecycle': give this "
        "spoke the same carbon block"
    )
    # The same block: both spokes read the one series.
    gitutil.user_commit(remote, {"spokes/paris.yaml": text})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(minutes=15))
    assert outcome.decision.broken_spokes == {}
    assert "spokes/paris.yaml" not in gitutil.ledger(remote)


def test_a_spoke_added_with_another_block_for_a_zone_does_not_take_out_the_one_working_there(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    assert "paris" in {e.get("spoke") for e in gitutil.ledger(remote).values()}
    # Brest comes before paris by name, which alone would make paris the problem.
    brest = gitutil.read(remote, "spokes/paris.yaml").replace(b"name: paris", b"name: brest")
    gitutil.user_commit(remote, {"spokes/brest.yaml": brest.replace(b"lifecycle", b"direct")})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(minutes=15))
    assert outcome.decision.broken_spokes == {"brest": "spokes/brest.yaml"}
    reason = gitutil.ledger(remote)["spokes/brest.yaml"]["reason"]
    assert reason.startswith("spec.carbon: zone 'FR' is read as spokes/paris.yaml gives it")


def test_a_live_source_of_a_zone_already_read_is_told_to_take_a_name_of_its_own(
    fleet_repo, remote
) -> None:
    text = gitutil.read(remote, "spokes/paris.yaml").replace(
        b"provider: embedded", b"provider: ukci"
    )
    text = text.replace(b"zone: FR", b'zone: DE\n    region: "13"')
    gitutil.user_commit(remote, {"spokes/paris.yaml": text})
    reconcile(fleet_repo)
    reason = gitutil.ledger(remote)["spokes/paris.yaml"]["reason"]
    assert reason.endswith(
        "here provider is 'ukci', there 'embedded'; here region is '13', there none: give "
        "this spoke the same carbon block, or a zone name of its own (zone: DE-paris, "
        "fallbackZone: DE)"
    )


def test_a_job_stopped_where_it_ran_keeps_its_job_while_the_file_is_broken() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    later = NOW + timedelta(minutes=20)
    report = {started.spoke: {"jobs": {started.job_key: "Running"}}}
    stopped, files = step(_suspend(files, started.source), now=later, states=report)
    job_file = f"rendered/{started.spoke}/batch.{started.job_name}.yaml"
    assert entries(stopped)[started.id].stopped and job_file in files
    spoke_file = f"spokes/{started.spoke}.yaml"
    resumed = _suspend(files, started.source, value=False)
    # Resumed while the file is broken, it would be planned elsewhere, and its
    # Job pruned: it waits, with its Job, instead.
    broken = {**resumed, spoke_file: b"spec: [\n"}
    held, _ = step(broken, now=later + timedelta(minutes=15))
    assert entries(held)[started.id] == entries(stopped)[started.id]
    assert render(held, previous=broken)[job_file] == files[job_file]
    message = messages.commit_message(old=stopped.ledger, decision=held, input_commit="0" * 40)
    assert f"- {started.spoke}: " in message and "kept there as committed" in message
    # Resumed first, and planned back where its Job waits: the same.
    back, files = step(resumed, now=later + timedelta(minutes=15))
    entry = entries(back)[started.id]
    assert (entry.phase, entry.resumes_on) == ("Planned", started.spoke)
    broken = {**files, spoke_file: b"spec: [\n"}
    waits, _ = step(broken, now=later + timedelta(minutes=30))
    assert entries(waits)[started.id] == entry
    assert render(waits, previous=broken)[job_file] == files[job_file]


def test_removing_the_appwrapper_of_a_job_held_there_cancels_it_once_the_file_loads() -> None:
    decision, files = step(template_files(), now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    job_file = f"rendered/{started.spoke}/batch.{started.job_name}.yaml"
    spoke_file = f"spokes/{started.spoke}.yaml"
    mended = files[spoke_file]
    removed = {p: b for p, b in files.items() if p != started.source}
    later = NOW + timedelta(minutes=20)
    broken = {**removed, spoke_file: b"spec: [\n"}
    held, after = step(broken, now=later)
    assert entries(held)[started.id] == started
    assert render(held, previous=broken)[job_file] == files[job_file]
    cancelled, after = step({**after, spoke_file: mended}, now=later + timedelta(minutes=15))
    assert entries(cancelled)[started.id].phase == "Cancelled"
    assert job_file not in render(cancelled, previous=after)
