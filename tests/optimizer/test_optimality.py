"""The optimizer finds the true optimum: checked against a brute force written
from the instance alone, on tiny instances; and every path agrees."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from optimizer import baselines, heuristics, lagrange, mip, relaxation
from optimizer import columns as cols
from optimizer.generator import generate
from optimizer.highs import HighsBackend, LpSolution, lp_bound
from optimizer.highs import relaxation as solve_lp
from optimizer.model import Instance, SolverSettings
from optimizer.solving import optimize
from tests.conftest import assert_valid_plan
from tests.optimizer.instances import generated, random_instance

EXACT = SolverSettings(name="highs", time_limit_s=30, gap_rel=0.0)
TIE = 1e-3


def options_of(instance: Instance, job) -> list[tuple[str, int, float, np.ndarray]]:
    """(spoke, start, cost, usage) for every placement that fits on its own."""
    result = []
    for spoke in instance.spokes:
        if spoke.name not in job.allowed_spokes:
            continue
        series = instance.intensity_g_per_kwh[spoke.zone]
        for start in range(max(job.release_slot, 0), instance.slots):
            use = np.zeros((3, instance.slots))
            use[:, start : min(start + job.duration_slots, instance.slots)] = [
                [job.cpu],
                [job.memory_bytes],
                [job.gpu],
            ]
            cap = np.array([spoke.cpu, spoke.memory_bytes, spoke.gpu])
            if (use > cap + 1e-9).any():
                continue
            carbon = (
                sum(series[start : start + job.duration_slots])
                * job.energy_kwh_per_slot[spoke.name]
            )
            late = max(0, start + job.duration_slots - job.deadline_slot)
            moved = job.previous is not None and (spoke.name, start) != (
                job.previous.spoke,
                job.previous.start_slot,
            )
            cost = (
                carbon
                + late * instance.weights.lateness_g_per_slot * job.lateness_weight
                + moved * instance.weights.move_g
                + start * TIE
            )
            result.append((spoke.name, start, cost, use))
    return result


def brute_force(instance: Instance) -> float:
    """Minimum over every combination of (placement or deferral) per job; jobs
    with no placement at all are outside the model."""
    from optimizer.costs import defer_cost

    per_job = [(job, options_of(instance, job)) for job in instance.jobs]
    per_job = [(job, opts) for job, opts in per_job if opts]
    best = float("inf")
    for combo in itertools.product(*[[*opts, None] for _, opts in per_job]):
        used = {s.name: np.zeros((3, instance.slots)) for s in instance.spokes}
        cost = 0.0
        for (job, _), choice in zip(per_job, combo, strict=True):
            if choice is None:
                cost += defer_cost(instance, job)
            else:
                cost += choice[2]
                used[choice[0]] += choice[3]
        if all(
            (used[s.name] <= np.array([s.cpu, s.memory_bytes, s.gpu]) + 1e-9).all()
            for s in instance.spokes
        ):
            best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(25))
def test_the_optimizer_matches_brute_force(seed: int) -> None:
    instance = random_instance(seed)
    plan = optimize(instance, settings=EXACT)
    assert_valid_plan(instance, plan)
    assert plan.objective == pytest.approx(brute_force(instance), rel=1e-9, abs=1e-6)
    assert plan.solver_status == "optimal"


@pytest.mark.parametrize("seed", range(25))
def test_the_optimizer_matches_brute_force_with_priorities(seed: int) -> None:
    # Jobs whose lateness counts a tenth, as much, or ten times another's.
    instance = random_instance(seed, jobs=4, weighted=True)
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


@pytest.mark.parametrize("seed", range(10))
def test_reduced_cost_fixing_never_cuts_off_the_optimum(seed: int) -> None:
    instance = random_instance(seed, jobs=6, slots=8)
    columns, _ = cols.build(instance)
    free = cols.free_room(instance)
    incumbent = heuristics.greedy(columns, free)
    upper = heuristics.objective(columns, incumbent)
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: upper,
        deadline=float("inf"),
        seed_columns=incumbent[incumbent >= 0],
        initial_per_job=2,
    )
    full = HighsBackend().solve(
        mip.build(columns, free, np.arange(columns.size)), time_limit=30, gap_rel=0.0
    )
    optimum = heuristics.objective(columns, full.choice)
    assert dual.bound <= optimum + 1e-6
    keep = np.union1d(
        np.flatnonzero(dual.reduced <= upper - dual.bound + 1e-9), incumbent[incumbent >= 0]
    )
    pruned = HighsBackend().solve(
        mip.build(columns, free, keep, start=incumbent), time_limit=30, gap_rel=0.0
    )
    assert heuristics.objective(columns, pruned.choice) == pytest.approx(optimum, rel=1e-9)


def test_column_generation_reaches_the_lp_bound_of_the_whole_model() -> None:
    instance = random_instance(3, jobs=6, slots=8)
    columns, _ = cols.build(instance)
    free = cols.free_room(instance)
    lp, status = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=30)
    upper = heuristics.objective(columns, heuristics.greedy(columns, free))
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: upper,
        deadline=float("inf"),
        seed_columns=np.zeros(0, dtype=np.int64),
        initial_per_job=1,
        target_gap=0.0,
    )
    assert status == "optimal"
    # It stops when no column is left to add, or early when the bound meets the
    # greedy plan (which is then optimal): both mean the LP bound was reached.
    assert dual.lp_optimal or dual.bound >= upper - 1e-6
    assert dual.bound <= lp + 1e-5 * abs(lp)
    assert dual.bound >= lp - 1e-3 * abs(lp)


@pytest.mark.parametrize("seed", range(6))
def test_the_flow_form_lp_has_the_optimum_and_prices_of_the_usual_one(seed: int) -> None:
    instance = generate(jobs=40, spokes=3, seed=seed)
    columns, _ = cols.build(instance)
    free = cols.free_room(instance)
    everything = np.arange(columns.size)
    model = mip.build(columns, free, everything)
    usual, status = lp_bound(model, time_limit=60)
    flow = relaxation.build(columns, free, everything)
    assert flow.value.size < model.value.size
    lp = solve_lp(flow, time_limit=60, crossover=True)
    assert status == "optimal" and lp.status == "optimal"
    assert lp.objective == pytest.approx(usual, rel=1e-6)
    # With every column in the LP, its prices make the Lagrangian bound the LP bound.
    bound, _, _ = lagrange.Pricing(columns, free).evaluate(flow.prices(lp.col_dual, free.shape))
    assert bound == pytest.approx(usual, rel=1e-6)


def test_capped_prices_from_a_poor_master_bound_better_and_stay_valid() -> None:
    instance = generate(jobs=40, spokes=3, seed=0)
    columns, _ = cols.build(instance)
    free = cols.free_room(instance)
    start = heuristics.greedy(columns, free)
    # Two columns a job: the master's duals price slots near the cost of deferring.
    keep = np.union1d(columns.cheapest(columns.cost, per_job=2), start[start >= 0])
    master = relaxation.build(columns, free, keep)
    raw = master.prices(solve_lp(master, time_limit=60).col_dual, free.shape)
    pricing = lagrange.Pricing(columns, free)
    raw_bound = pricing.evaluate(raw)[0]
    unpriced = pricing.evaluate(np.zeros(free.shape))[0]

    bound, prices = lagrange.capped(pricing, raw, best_bound=raw_bound, best_prices=raw)

    lp, _ = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=60)
    assert raw_bound < 0 < unpriced < bound <= lp + 1e-6 * abs(lp)
    assert (prices >= 0).all() and (prices <= raw).all()
    assert pricing.evaluate(prices)[0] == pytest.approx(bound)


def test_overrun_is_a_supergradient_of_the_lagrangian_bound() -> None:
    # The bound is concave in the prices; ascent moves along `overrun`, which is
    # only right if no other prices lie above the plane it spans.
    columns, free = generated(jobs=40, spokes=3, seed=1)
    pricing = lagrange.Pricing(columns, free)
    rng = np.random.default_rng(0)
    for _ in range(20):
        here = rng.exponential(50.0, size=free.shape) * (rng.random(free.shape) < 0.3)
        there = rng.exponential(50.0, size=free.shape) * (rng.random(free.shape) < 0.3)
        bound, priced, job_min = pricing.evaluate(here)
        slope = pricing.overrun(pricing.picks(priced, job_min))
        assert pricing.evaluate(there)[0] <= bound + (slope * (there - here)).sum() + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_subgradient_ascent_from_no_prices_reaches_the_lp_bound(seed: int) -> None:
    columns, free = generated(jobs=40, spokes=3, seed=seed)
    pricing = lagrange.Pricing(columns, free)
    unpriced = pricing.evaluate(np.zeros(free.shape))[0]
    upper = heuristics.objective(columns, heuristics.greedy(columns, free))
    lp, _ = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=60)

    bound, prices, _ = lagrange.ascend(
        pricing, np.zeros(free.shape), bound=unpriced, upper=upper, deadline=_in(1.0)
    )

    assert unpriced < lp - 1e-3 * abs(lp)  # there is a way to climb
    assert lp - 1e-3 * abs(lp) <= bound <= lp + 1e-6 * abs(lp)
    assert (prices >= 0).all() and pricing.evaluate(prices)[0] == pytest.approx(bound)


@pytest.mark.parametrize("seed", [0, 1])
def test_ascent_settles_the_picks_it_keeps_then_climbs_to_the_lp_bound(
    seed: int, monkeypatch
) -> None:
    columns, free = generated(jobs=40, spokes=3, seed=seed)
    pricing = lagrange.Pricing(columns, free)
    unpriced = pricing.evaluate(np.zeros(free.shape))[0]
    upper = heuristics.objective(columns, heuristics.greedy(columns, free))
    lp, _ = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=60)
    steps = 0
    real_evaluate = pricing.evaluate

    def evaluate(prices: np.ndarray, **spread):
        nonlocal steps
        steps += 1
        return real_evaluate(prices, **spread)

    def ascend() -> tuple[float, list[np.ndarray]]:
        bound, _, history = lagrange.ascend(
            pricing, np.zeros(free.shape), bound=unpriced, upper=upper, deadline=_in(1.0)
        )
        return bound, history

    monkeypatch.setattr(pricing, "evaluate", evaluate)
    bound, history = ascend()
    climbed = steps - len(history)
    monkeypatch.setattr(lagrange, "SETTLE_SHARE", 1.0)
    settled_only, _ = ascend()

    # Halving its step fast, ascent stalls short of the bound; the picks it
    # made by then are the ones kept, and their step has shrunk to nothing.
    assert settled_only < lp - 5e-4 * abs(lp)
    assert all(np.array_equal(picked, history[-1]) for picked in history[-20:])
    # The climb after it is not kept in the history, and reaches the bound.
    assert climbed > 100
    assert lp - 2e-4 * abs(lp) <= bound <= lp + 1e-6 * abs(lp)


def test_column_generation_hands_slow_rounds_over_to_ascent(monkeypatch) -> None:
    columns, free = generated(jobs=40, spokes=3, seed=0)
    upper = heuristics.objective(columns, heuristics.greedy(columns, free))
    lp, _ = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=60)

    def dual(deadline: float) -> lagrange.Dual:
        return lagrange.solve(
            columns,
            free,
            upper=lambda: upper,
            deadline=deadline,
            seed_columns=np.zeros(0, dtype=np.int64),
            initial_per_job=1,
            target_gap=0.0,
        )

    # Every round counts as too slow (its time limit is all but nil): one round
    # of column generation, then ascent.
    monkeypatch.setattr(lagrange, "ROUNDS_NEEDED", 1e12)
    handed_over = dual(_in(1.0))
    monkeypatch.setattr(
        lagrange, "ascend", lambda pricing, prices, *, bound, **_: (bound, prices, [])
    )
    one_round = dual(_in(1.0))

    assert handed_over.rounds == one_round.rounds == 1
    assert handed_over.ascended and not handed_over.lp_optimal
    assert one_round.bound < lp - 1e-2 * abs(lp)
    assert lp - 1e-3 * abs(lp) <= handed_over.bound <= lp + 1e-6 * abs(lp)
    # The columns the jobs picked over the ascent's second half, as shares of
    # each job: an estimate of the LP's solution that rounding can start from.
    # The others (all steps, then each part of them) are estimates of the same kind.
    assert len(handed_over.others) == 1 + lagrange.PARTS
    for support, shares in ((handed_over.support, handed_over.shares), *handed_over.others):
        per_job = np.bincount(columns.cj[support], shares, minlength=len(columns.jobs))
        assert (per_job <= 1 + 1e-9).all() and per_job.sum() > 0.9 * len(columns.jobs)


def test_rounds_get_a_share_of_the_time_and_ascent_starts_from_no_prices(monkeypatch) -> None:
    columns, free = generated(jobs=40, spokes=3, seed=0)
    upper = heuristics.objective(columns, heuristics.greedy(columns, free))
    lp, _ = lp_bound(mip.build(columns, free, np.arange(columns.size)), time_limit=60)
    unpriced = lagrange.Pricing(columns, free).evaluate(np.zeros(free.shape))[0]
    limits: list[float] = []
    starts: list[np.ndarray] = []

    def two_rounds_then_cut(master, *, time_limit: float, crossover: bool) -> LpSolution:
        # Two real rounds; the third answers as HiGHS does when its limit cuts it.
        limits.append(time_limit)
        if len(limits) <= 2:
            return solve_lp(master, time_limit=time_limit, crossover=crossover)
        nothing = np.zeros(0)
        return LpSolution("time_limit", float("nan"), nothing, nothing, nothing)

    def ascend(pricing, prices, **kwargs):
        starts.append(prices.copy())
        return real_ascend(pricing, prices, **kwargs)

    real_ascend = lagrange.ascend
    monkeypatch.setattr(lagrange, "solve_lp", two_rounds_then_cut)
    monkeypatch.setattr(lagrange, "ascend", ascend)
    began = time.monotonic()
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: upper,
        deadline=began + 2.0,
        ascend_until=began + 3.0,
        seed_columns=np.zeros(0, dtype=np.int64),
        initial_per_job=1,
        target_gap=0.0,
    )

    assert len(limits) == 3 and max(limits) <= 2.0 / lagrange.ROUNDS_NEEDED
    assert dual.ascended and not dual.lp_optimal
    # Two real rounds priced capacity, yet ascent started from no prices: a
    # master far from converged steers it wrong.
    assert len(starts) == 1 and not starts[0].any()
    assert lp - 1e-3 * abs(lp) <= dual.bound <= lp + 1e-6 * abs(lp)
    assert unpriced < lp - 1e-3 * abs(lp)


def test_ascents_estimates_are_the_shares_of_the_steps_each_column_was_picked() -> None:
    # Twelve steps over four columns: the first six pick columns 0 and 2, the
    # last six 1 and 3.
    history = [np.array([0, 2])] * 6 + [np.array([1, 3])] * 6

    found = lagrange.estimates(history, size=4)

    def as_dict(estimate: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
        support, shares = estimate
        return dict(zip(support.tolist(), shares.tolist(), strict=True))

    assert lagrange.PARTS == 6
    assert [as_dict(e) for e in found] == [
        {1: 1.0, 3: 1.0},  # the second half
        {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5},  # every step
        *[{0: 1.0, 2: 1.0}] * 3,  # the parts, first to last
        *[{1: 1.0, 3: 1.0}] * 3,
    ]


def test_a_plans_gap_to_the_bound_is_jobs_off_their_best_plus_priced_room_left_unused() -> None:
    columns, free = generated(jobs=40, spokes=3, seed=0)
    greedy = heuristics.greedy(columns, free)
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: heuristics.objective(columns, greedy),
        deadline=_in(30),
        seed_columns=greedy[greedy >= 0],
        target_gap=0.0,
    )
    assert dual.lp_optimal
    pricing = lagrange.Pricing(columns, free)
    _, priced, _ = pricing.evaluate(dual.prices)
    job = int(np.flatnonzero(greedy >= 0)[0])
    without = greedy.copy()
    without[job] = -1
    splits = {}
    for name, plan in [
        ("greedy", greedy),
        ("earliest", heuristics.earliest(columns, free)),
        ("without", without),
    ]:
        off_best, unused = splits[name] = lagrange.gap_split(pricing, dual.prices, plan)
        assert off_best >= -1e-6 and unused >= -1e-6, name
        gap = heuristics.objective(columns, plan) - dual.bound
        assert off_best + unused == pytest.approx(gap, rel=1e-9, abs=1e-6), name
    # Leaving a job out leaves its room unused, at the price of that room.
    k = int(greedy[job])
    room_price = priced[k] - columns.cost[k]
    assert room_price > 0
    assert splits["without"][1] - splits["greedy"][1] == pytest.approx(room_price, abs=1e-6)


def _in(seconds: float) -> float:
    return time.monotonic() + seconds
