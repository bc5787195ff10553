"""The MILP finds the true optimum: checked against brute force on tiny instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optimizer import baselines
from optimizer.candidates import candidates, defer_cost
from optimizer.model import Instance, SolverSettings
from optimizer.solving import optimize
from tests.conftest import assert_valid_plan
from tests.optimizer.instances import random_instance

EXACT = SolverSettings(name="highs", time_limit_s=30, gap_rel=0.0)


def brute_force(instance: Instance) -> float:
    """Minimum objective over every combination of (candidate or deferral) per job.
    Jobs with no candidate at all are outside the model and cost nothing."""
    placeable = [job for job in instance.jobs if candidates(instance, job)]
    options = [[*candidates(instance, job), None] for job in placeable]
    best = float("inf")
    for combo in itertools.product(*options):
        used = {s.name: np.zeros((3, instance.slots)) for s in instance.spokes}
        cost = 0.0
        for job, choice in zip(placeable, combo, strict=True):
            if choice is None:
                cost += defer_cost(instance, job)
                continue
            cost += choice.cost
            end = min(choice.start_slot + job.duration_slots, instance.slots)
            used[choice.spoke][:, choice.start_slot : end] += np.array(
                [[job.cpu], [job.memory_bytes], [job.gpu]]
            )
        if all(
            (used[s.name] <= np.array([s.cpu, s.memory_bytes, s.gpu]) + 1e-9).all()
            for s in instance.spokes
        ):
            best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(25))
def test_milp_matches_brute_force(seed: int) -> None:
    instance = random_instance(seed)
    plan = optimize(instance, settings=EXACT)
    assert_valid_plan(instance, plan)
    assert plan.objective == pytest.approx(brute_force(instance), rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("seed", range(25))
def test_baselines_are_valid_and_never_beat_the_optimum(seed: int) -> None:
    instance = random_instance(seed, jobs=4, slots=6)
    best = optimize(instance, settings=EXACT)
    for plan in (baselines.greedy(instance), baselines.qos(instance)):
        assert_valid_plan(instance, plan)
        assert plan.objective >= best.objective - 1e-6


def test_cbc_agrees_with_highs_on_small_instances() -> None:
    cbc = SolverSettings(name="cbc", time_limit_s=30, gap_rel=0.0)
    for seed in range(5):
        instance = random_instance(seed)
        assert optimize(instance, settings=cbc).objective == pytest.approx(
            optimize(instance, settings=EXACT).objective, rel=1e-7, abs=1e-6
        )
