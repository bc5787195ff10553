"""The replay: same arrivals for every policy, honest accounting, sane results."""

from __future__ import annotations

import json

from click.testing import CliRunner

from optimizer import simulation
from reconciler.cli import main

SCENARIO = simulation.SCENARIOS["caspian-4"]


def test_arrivals_are_seeded_and_sized_for_the_utilisation() -> None:
    jobs = simulation.arrivals(SCENARIO, slots=7 * 96, seed=3)
    assert jobs == simulation.arrivals(SCENARIO, slots=7 * 96, seed=3)
    per_hour = len(jobs) / (7 * 24)
    assert abs(per_hour - SCENARIO.arrivals_per_hour) < 1.0
    assert all(1 <= j.gpus <= 5 and 4 <= j.duration <= 16 for j in jobs)
    assert all(j.deadline - j.arrival == 3 * j.duration for j in jobs)


def test_policies_never_overbook_and_caspian_beats_qos() -> None:
    start = simulation.parse_start("2023-06-01")
    results = simulation.compare(
        [
            simulation.run(SCENARIO, policy=p, start=start, days=1, forecast="perfect", seed=2)
            for p in ("qos", "caspian")
        ]
    )
    qos, ours = results
    assert qos.jobs == ours.jobs and ours.finished == ours.jobs
    for result in results:
        used: dict[tuple[str, int], int] = {}
        jobs = {j.id: j for j in simulation.arrivals(SCENARIO, slots=96, seed=2)}
        for job_id, (spoke, begin) in result.starts.items():
            assert begin >= jobs[job_id].arrival
            for slot in range(begin, begin + jobs[job_id].duration):
                used[(spoke, slot)] = used.get((spoke, slot), 0) + jobs[job_id].gpus
        assert max(used.values()) <= 16
    assert ours.kg_co2 < qos.kg_co2
    assert ours.saved_vs_qos is not None and ours.saved_vs_qos > 0


def test_simulate_prints_every_figure_as_json() -> None:
    result = CliRunner().invoke(
        main, ["simulate", "--days", "1", "--policy", "qos", "--policy", "round-robin", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
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
