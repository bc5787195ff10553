"""Where not every job can be on time, the policy's weights.priorityClasses say
whose lateness weighs more, by a job's priority class as Kueue names it (its
WorkloadPriorityClass label, else the PriorityClass its pods name): the heavier
job is the one on time."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.crd import check_appwrapper
from reconciler.fleet import MOST_PRIORITY, MOST_WEIGHT_GRAMS, FleetConfigError
from reconciler.loading import load_fleet
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper_doc
from tests.reconcile.test_lifecycle import _with_policy, entries, step

GPUS = {
    "requests": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"},
    "limits": {"nvidia.com/gpu": "2"},
}


def _two_for_one_place(**classes: str) -> dict[str, bytes]:
    """The template's spokes and policy, and two jobs that each take all of
    paris's GPUs for two hours and are due in three: one of them is late.
    `classes` gives a job its pods' priorityClassName."""
    files = {k: v for k, v in template_files().items() if not k.startswith("jobs/")}
    deadline = (NOW + timedelta(hours=3)).isoformat()
    for name in ("train", "tune"):
        doc = appwrapper_doc(
            name,
            annotations={
                "caspian.dev/spokes": "paris",
                "caspian.dev/duration": "2h",
                "caspian.dev/deadline": deadline,
            },
            resources=GPUS,
            pod_spec={"priorityClassName": classes[name]} if name in classes else None,
        )
        files[f"jobs/{name}.yaml"] = yaml.safe_dump(doc).encode()
    return files


def _late(decision) -> set[str]:
    return {job_id for job_id, e in entries(decision).items() if e.late}


def test_the_job_whose_priority_class_weighs_more_is_the_one_on_time() -> None:
    weighed = {"priorityClasses": {"urgent": 10, "scavenger": 0.1}}
    for classes, late in (
        ({"train": "urgent"}, {"batch/tune"}),
        ({"tune": "urgent"}, {"batch/train"}),
        ({"train": "scavenger"}, {"batch/train"}),
        ({"tune": "scavenger", "train": "not-weighed"}, {"batch/tune"}),
    ):
        files = _with_policy(_two_for_one_place(**classes), weights=weighed)
        decision, _ = step(files, now=NOW)
        assert _late(decision) == late, classes
        assert_valid_plan(decision.instance, decision.plan)


def test_a_kueue_workload_priority_class_label_names_the_priority_first() -> None:
    # As Kueue weighs a workload: its WorkloadPriorityClass, else its pods' class.
    files = _two_for_one_place(train="scavenger", tune="scavenger")
    doc = yaml.safe_load(files["jobs/train.yaml"])
    doc["metadata"]["labels"] = {"kueue.x-k8s.io/priority-class": "urgent"}
    files["jobs/train.yaml"] = yaml.safe_dump(doc).encode()
    weighed = {"priorityClasses": {"urgent": 10, "scavenger": 0.1}}
    decision, _ = step(_with_policy(files, weights=weighed), now=NOW)
    assert decision.jobs["batch/train"].priority_class == "urgent"
    assert _late(decision) == {"batch/tune"}


def test_explain_says_how_much_a_jobs_lateness_weighs(tmp_path) -> None:
    remote = tmp_path / "fleet.git"
    assert CliRunner().invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    files = _with_policy(
        _two_for_one_place(train="urgent"), weights={"priorityClasses": {"urgent": 10}}
    )
    gitutil.user_commit(remote, {**files, **dict.fromkeys(gitutil.files(remote, "jobs/"))})
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    told = CliRunner().invoke(
        main, ["explain", "train", "--repo", str(remote), "--now", NOW.isoformat()], env=env
    )
    assert told.exit_code == 0, told.output
    assert (
        "  its lateness weighs 10 times another job's: its priority class urgent "
        "(caspian.yaml spec.weights.priorityClasses)\n"
    ) in told.output
    other = CliRunner().invoke(
        main, ["explain", "tune", "--repo", str(remote), "--now", NOW.isoformat()], env=env
    )
    assert "its lateness weighs" not in other.output


def test_a_priority_weight_out_of_bounds_is_a_problem_naming_the_field() -> None:
    for wrong in (-1, 5000, "high"):
        files = _with_policy(_two_for_one_place(), weights={"priorityClasses": {"urgent": wrong}})
        with pytest.raises(FleetConfigError) as raised:
            load_fleet(files, appwrapper_schema=check_appwrapper)
        lines = [problem.line() for problem in raised.value.problems]
        assert any("spec.weights.priorityClasses.urgent" in line for line in lines), lines


def test_the_heaviest_weights_allowed_still_tell_grams_of_carbon_apart() -> None:
    # rush cannot be on time anywhere, and is as late on every spoke: the plan
    # puts it where it emits least. Past some weight, a gram of carbon is lost
    # in the lateness's digits (at 1e17 g a slot it went where it emitted six
    # times as much); the bound keeps the heaviest policy short of that.
    files = template_files()
    hints = {
        "caspian.dev/duration": "2h",
        "caspian.dev/not-before": (NOW + timedelta(hours=8)).isoformat(),
        "caspian.dev/deadline": (NOW + timedelta(hours=9)).isoformat(),
    }
    doc = appwrapper_doc("rush", annotations=hints, pod_spec={"priorityClassName": "urgent"})
    files["jobs/rush.yaml"] = yaml.safe_dump(doc).encode()
    heaviest = {
        "latenessGramsPerSlot": MOST_WEIGHT_GRAMS,
        "moveGrams": MOST_WEIGHT_GRAMS,
        "priorityClasses": {"urgent": MOST_PRIORITY},
    }
    plain = entries(step(files, now=NOW)[0])["batch/rush"]
    heavy = entries(step(_with_policy(files, weights=heaviest), now=NOW)[0])["batch/rush"]
    assert plain.late and heavy.late
    placed = ("spoke", "planned_start", "estimated_grams")
    assert [getattr(heavy, field) for field in placed] == [
        getattr(plain, field) for field in placed
    ]
    for weight in ("latenessGramsPerSlot", "moveGrams"):
        with pytest.raises(FleetConfigError) as raised:
            load_fleet(
                _with_policy(files, weights={weight: 10 * MOST_WEIGHT_GRAMS}),
                appwrapper_schema=check_appwrapper,
            )
        assert [p.line() for p in raised.value.problems] == [
            f"caspian.yaml: spec.weights.{weight}: Input should be less than or equal to "
            f"1000000000, found {10 * MOST_WEIGHT_GRAMS}"
        ]
