"""The replay: the loop's own decide on the same arrivals for every policy, honest
accounting, the clairvoyant as a limit, and a user's own fleet."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import scenarios, simulating
from reconciler.cli import main
from reconciler.templates import TEMPLATE_DIR
from tests.fleet.helpers import appwrapper

SCENARIO = scenarios.SCENARIOS["caspian-4"]
START = datetime(2023, 6, 1, tzinfo=UTC)


def setup_of(days: int, seed: int) -> scenarios.Setup:
    return scenarios.scenario_setup(SCENARIO, start=START, days=days, seed=seed, time_limit=0.3)


def test_arrivals_are_seeded_and_sized_for_the_utilisation() -> None:
    week = setup_of(7, 3)
    assert week == setup_of(7, 3)
    assert week.arrivals != setup_of(7, 4).arrivals
    per_hour = len(week.arrivals) / (7 * 24)
    assert abs(per_hour - SCENARIO.arrivals_per_hour) < 1.0
    for arrival in week.arrivals:
        job = arrival.job
        assert 1 <= job.gpu <= 5
        assert timedelta(hours=1) <= job.duration <= timedelta(hours=4)
        assert job.deadline == arrival.at + 3 * job.duration


Day = tuple[scenarios.Setup, dict[str, simulating.PolicyResult]]


@pytest.fixture(scope="module")
def day() -> Day:
    setup = setup_of(1, 2)
    results = simulating.compare(
        [
            simulating.run(
                setup,
                policy=policy,
                start=START,
                days=1,
                forecast="seasonal-naive",
                seed=2,
                clairvoyant_limit=10,
            )
            for policy in simulating.POLICIES
        ]
    )
    return setup, {r.policy: r for r in results}


def test_no_policy_overbooks_a_spoke_or_starts_a_job_before_it_arrives(day: Day) -> None:
    setup, results = day
    arrivals = {a.job.id: a for a in setup.arrivals}
    gpus = {spoke.name: spoke.spec.capacity.gpu for spoke in setup.spokes}
    for result in results.values():
        assert result.finished == result.jobs == len(arrivals)
        used: dict[tuple[str, datetime], float] = defaultdict(float)
        for job_id, placement in result.placements.items():
            arrival = arrivals[job_id]
            assert placement.start >= arrival.at, (result.policy, job_id)
            moment = placement.start
            while moment < placement.start + arrival.job.duration:
                used[(placement.spoke, moment)] += arrival.job.gpu
                moment += timedelta(minutes=15)
        assert max(used[key] - gpus[key[0]] for key in used) <= 1e-9, result.policy


def test_the_loop_dispatches_between_replans(day: Day) -> None:
    """Re-plans are hourly; the standing plan starts jobs at quarter hours in between."""
    _setup, results = day
    minutes = {p.start.minute for p in results["caspian"].placements.values()}
    assert minutes - {0}


def test_caspian_saves_against_qos_and_the_clairvoyant_bounds_everyone(day: Day) -> None:
    _setup, results = day
    ours, qos, limit = results["caspian"], results["qos"], results["clairvoyant"]
    assert ours.deadlines_met == 1.0 and qos.deadlines_met == 1.0
    assert ours.saved_vs_qos is not None and ours.saved_vs_qos > 0.2
    assert limit.lp_bound_kg is not None
    for result in results.values():
        if result.deadlines_met == 1.0:
            assert result.kg_co2 >= limit.lp_bound_kg - 1e-6, result.policy
    assert limit.kg_co2 <= min(r.kg_co2 for r in results.values()) * 1.02
    assert ours.share_of_clairvoyant_savings is not None
    assert 0.5 < ours.share_of_clairvoyant_savings <= 1.05


def test_carbon_is_recomputed_from_the_actual_intensities(day: Day) -> None:
    setup, results = day
    grid = simulating.Intensities(
        set(setup.zones.values()), start=START, slot_seconds=900, slots=4 * 96
    )
    arrivals = {a.job.id: a.job for a in setup.arrivals}
    grams = 0.0
    for job_id, placement in results["qos"].placements.items():
        job = arrivals[job_id]
        slots = int(job.duration / timedelta(minutes=15))
        values = grid.actual(setup.zones[placement.spoke], at=placement.start, slots=slots)
        grams += values.sum() * job.power_watts * 1.2 * 0.25 / 1000
    assert results["qos"].kg_co2 == pytest.approx(grams / 1000)


def test_the_ledger_counts_what_the_replay_counts_for_the_jobs_that_ran(day: Day) -> None:
    # Two counts apart: the ledger's emittedGrams (the reconciler's own, from
    # the Jobs' start and end as the spokes report them and the intensities
    # read back), summed as the jobs finish; and the replay's, from its
    # placements. They differ by the ledger's rounding to a tenth of a gram.
    _setup, results = day
    for policy in ("qos", "greedy", "round-robin", "caspian"):
        result = results[policy]
        assert result.counted_kg_co2 is not None, policy
        assert result.counted_kg_co2 == pytest.approx(result.kg_co2, abs=result.jobs * 0.05e-3)
    assert results["clairvoyant"].counted_kg_co2 is None  # one plan, no loop and no ledger


@pytest.mark.parametrize(("minute", "measured"), [(0, 4), (15, 3), (45, 1)])
def test_seasonal_naive_sees_the_hour_now_running_and_yesterday_after_it(
    minute: int, measured: int
) -> None:
    grid = simulating.Intensities({"DE"}, start=START, slot_seconds=900, slots=200)
    rng = simulating.np.random.default_rng(0)
    at = START + timedelta(hours=5, minutes=minute)
    seen = list(grid.forecast("DE", at=at, slots=96, kind="seasonal-naive", rng=rng).values)
    today = list(grid.actual("DE", at=at, slots=96))
    yesterday = list(grid.actual("DE", at=at - timedelta(days=1), slots=96))
    assert seen[:measured] == pytest.approx(today[:measured])
    assert seen[measured:] == pytest.approx(yesterday[measured:])
    assert seen[measured:] != pytest.approx(today[measured:])


def test_simulate_prints_every_figure_as_json_and_averages_runs() -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--days",
            "1",
            "--policy",
            "qos",
            "--policy",
            "round-robin",
            "--seed",
            "1",
            "--seed",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [run["seed"] for run in report["runs"]] == [1, 2]
    for policy in report["policies"]:
        for key in (
            "kg_co2",
            "saved_vs_qos",
            "deadlines_met",
            "mean_completion_over_deadline",
            "p95_wait_hours",
            "mean_decide_s",
            "max_decide_s",
        ):
            assert key in policy
    rr = next(p for p in report["policies"] if p["policy"] == "round-robin")
    runs = [
        next(p for p in run["policies"] if p["policy"] == "round-robin") for run in report["runs"]
    ]
    assert rr["kg_co2"] == pytest.approx((runs[0]["kg_co2"] + runs[1]["kg_co2"]) / 2)


def test_plot_draws_the_curves_and_every_placed_job(tmp_path: Path) -> None:
    svg = tmp_path / "week.svg"
    result = CliRunner().invoke(
        main, ["simulate", "--days", "1", "--policy", "qos", "--plot", str(svg), "--json"]
    )
    assert result.exit_code == 0, result.output
    root = ET.parse(svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 4  # one curve per zone
    bars = [r for r in root.findall(f"{ns}rect") if r.get("height") == "6"]
    start = datetime(2023, 3, 1, tzinfo=UTC)  # the default --start
    setup = scenarios.scenario_setup(SCENARIO, start=start, days=1, seed=1, time_limit=0.5)
    qos = simulating.run(setup, policy="qos", start=start, days=1, forecast="perfect", seed=1)
    in_span = [p for p in qos.placements.values() if p.start < start + timedelta(days=1)]
    assert len(bars) == len(in_span) > 100
    assert max(float(r.get("x")) + float(r.get("width")) for r in bars) <= 1180.01


def fleet_copy(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(TEMPLATE_DIR, root)
    return root


def test_a_fleet_repo_replays_its_own_appwrappers_from_a_trace(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    (root / "trace.csv").write_text(
        "arrival_hours,job\n0,batch/etl-daily\n2.5,batch/etl-daily\n30,batch/etl-daily\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--fleet",
            str(root),
            "--days",
            "1",
            "--policy",
            "qos",
            "--policy",
            "caspian",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["runs"][0]
    assert run["jobs"] == 2  # the third arrives after the replay's day
    assert all(p["finished"] == 2 for p in run["policies"])
    assert (
        f"skipped: {root / 'trace.csv'}: 1 submission at arrival_hours 24 or later, after the "
        "1 day replayed: lengthen --days to replay them"
    ) in result.stderr


def test_what_a_replay_skips_is_said_once_however_many_runs(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    (root / "jobs" / "broken.yaml").write_text("kind: AppWrapper\nspec: [\n")
    (root / "trace.csv").write_text("arrival_hours,job\n0,batch/etl-daily\n25,etl-daily\n")
    days = ["--days", "1", "--policy", "qos", "--seed", "1", "--seed", "2"]
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), *days])
    assert result.exit_code == 0, result.output
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert [line.split(": ")[1] for line in skipped] == [
        "jobs/broken.yaml",
        str(root / "trace.csv"),
    ]


def test_the_table_says_how_many_jobs_finished(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    huge = appwrapper("huge", resources={"requests": {"cpu": "400"}})  # no spoke has room
    (root / "jobs" / "huge.yaml").write_text(huge)
    (root / "trace.csv").write_text("arrival_hours,job\n0,batch/etl-daily\n1,batch/huge\n")
    result = CliRunner().invoke(
        main, ["simulate", "--fleet", str(root), "--days", "1", "--policy", "qos"]
    )
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("qos ")]
    assert "  of-limit       -  finished 1/2  met  50.0%" in row  # no clairvoyant run to compare


def test_without_a_trace_every_appwrapper_arrives_once(tmp_path: Path, monkeypatch) -> None:
    root = fleet_copy(tmp_path)
    monkeypatch.chdir(root)
    result = CliRunner().invoke(
        main, ["simulate", "--fleet", ".", "--days", "1", "--policy", "qos", "--json"]
    )
    assert result.exit_code == 0, result.output
    replay = json.loads(result.stdout)
    assert replay["runs"][0]["jobs"] == len(list((root / "jobs").rglob("*.yaml")))
    assert replay["scenario"] == str(root.resolve())  # named by its directory, not "."


def test_a_bad_trace_names_the_file_line_field_and_fix(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    (root / "trace.csv").write_text("arrival_hours,job\nsoon,batch/etl-daily\n1,default/nope\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "trace.csv:2: arrival_hours: 'soon' is not a number" in result.output
    assert "trace.csv:3: job: 'default/nope' is no valid AppWrapper in jobs/" in result.output


def test_a_trace_may_name_a_job_as_explain_takes_it(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    (root / "trace.csv").write_text("arrival_hours,job\n0,etl-daily\n1,batch/etl-daily\n")
    result = CliRunner().invoke(
        main, ["simulate", "--fleet", str(root), "--days", "1", "--policy", "qos", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["jobs"] == 2
    (root / "trace.csv").write_text("arrival_hours,job\n0,etl-dayly\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "trace.csv:2: job: 'etl-dayly' is no valid AppWrapper in jobs/ (did you mean " in (
        result.output
    )
    # A name two namespaces hold is no longer enough.
    other = appwrapper("etl-daily").replace(
        "name: etl-daily", "name: etl-daily\n  namespace: media", 1
    )
    (root / "jobs" / "etl-media.yaml").write_text(other)
    (root / "trace.csv").write_text("arrival_hours,job\n0,etl-daily\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert (
        "trace.csv:2: job: 'etl-daily' is the name of batch/etl-daily, media/etl-daily: give "
        "namespace/name"
    ) in result.output


def test_a_trace_outside_the_replay_is_refused_not_replayed_empty(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    (root / "trace.csv").write_text("arrival_hours,job\n-2,batch/etl-daily\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "trace.csv:2: arrival_hours: -2 is before the replay starts" in result.output
    (root / "trace.csv").write_text("arrival_hours,job\n30,batch/etl-daily\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "no submission falls in the 1 day replayed" in result.output


def test_a_spoke_file_that_does_not_load_is_named_not_replayed_around(tmp_path: Path) -> None:
    """A reconcile goes on without such a spoke; a replay, which plans every
    spoke from the first hour, is refused with the line to fix."""
    root = fleet_copy(tmp_path)
    (root / "spokes" / "paris.yaml").write_text("not: [valid\n")
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "fix the spoke files first: spokes/paris.yaml: not valid YAML" in result.output


def test_a_zone_outside_the_dataset_asks_for_a_fallback_zone(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    spoke = root / "spokes" / "paris.yaml"
    spoke.write_text(spoke.read_text().replace("zone: FR", "zone: XX-NOWHERE"))
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "spokes/paris.yaml: spec.carbon.zone: 'XX-NOWHERE'" in result.output
    assert "fallbackZone" in result.output


def test_an_unknown_forecast_is_refused_before_anything_runs() -> None:
    result = CliRunner().invoke(main, ["simulate", "--days", "1", "--forecast", "tomorrow"])
    assert result.exit_code == 2
    assert "unknown forecast 'tomorrow'" in result.output


def test_noisy_forecasts_are_seeded() -> None:
    grid = simulating.Intensities({"FR"}, start=START, slot_seconds=900, slots=200)

    def seen(seed: int) -> tuple[float, ...]:
        rng = simulating.np.random.default_rng(seed)
        return grid.forecast("FR", at=START, slots=96, kind="noisy:20%", rng=rng).values

    actual = grid.actual("FR", at=START, slots=96)
    assert seen(1) == seen(1) != seen(2)
    assert seen(1) != pytest.approx(tuple(actual))
    assert sum(seen(1)) == pytest.approx(float(actual.sum()), rel=0.1)


def test_a_broken_policy_stops_the_replay_and_names_the_field(tmp_path: Path) -> None:
    root = fleet_copy(tmp_path)
    policy = root / "caspian.yaml"
    policy.write_text(policy.read_text().replace("slot: 15m", "slot: soon"))
    result = CliRunner().invoke(main, ["simulate", "--fleet", str(root), "--days", "1"])
    assert result.exit_code == 1
    assert "caspian.yaml: spec.slot:" in result.output
