"""The second search on the second core: a forked child whose plan is read
back, checked, and kept only where it is cheaper; one that fails, hangs or
sends garbage costs the answer nothing."""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from optimizer import columns as cols
from optimizer import heuristics, lagrange, mip, repacking, solving, twins
from optimizer.generator import generate
from optimizer.highs import HighsBackend
from optimizer.model import SolverSettings
from tests.conftest import assert_valid_plan
from tests.optimizer.instances import generated


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_twin_sends_back_the_plan_its_search_returns(monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 2)
    plan = np.arange(1000, dtype=np.int64) * 3 - 1
    twin = twins.Twin.start(lambda: plan, jobs=1000)
    assert twin is not None
    assert np.array_equal(twin.result(wait_until=time.monotonic() + 10), plan)
    assert _gone(twin.pid)  # reaped
    # Asked a little late (this path overran its deadline by a step), what it
    # sent is read all the same.
    late = twins.Twin.start(lambda: plan, jobs=1000)
    assert late is not None
    time.sleep(0.5)
    assert np.array_equal(late.result(wait_until=time.monotonic() - 1), plan)


def test_a_twin_that_fails_or_hangs_gives_nothing_and_is_ended(monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 2)

    def fails() -> np.ndarray:
        raise RuntimeError("a bug in the second path")

    failing = twins.Twin.start(fails, jobs=10)
    assert failing is not None
    assert failing.result(wait_until=time.monotonic() + 10) is None
    hanging = twins.Twin.start(lambda: (time.sleep(60), np.zeros(10, dtype=np.int64))[1], jobs=10)
    assert hanging is not None
    began = time.monotonic()
    assert hanging.result(wait_until=began + 0.3) is None
    assert time.monotonic() - began < 5 and _gone(hanging.pid)


def _open_files() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def test_a_fork_that_fails_or_warns_costs_the_search_nothing(monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 2)
    plan = np.arange(50, dtype=np.int64)
    before, real_fork = _open_files(), os.fork

    def no_memory() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(twins.os, "fork", no_memory)
    assert twins.Twin.start(lambda: plan, jobs=50) is None
    assert _open_files() == before  # the pipe is closed again
    # As Python 3.12 and later warn of fork with threads running, where
    # warnings are errors: the twin runs all the same.

    def warning_fork() -> int:
        pid = real_fork()
        if pid:
            warnings.warn("use of fork() may lead to deadlocks", DeprecationWarning, stacklevel=2)
        return pid

    monkeypatch.setattr(twins.os, "fork", warning_fork)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twin = twins.Twin.start(lambda: plan, jobs=50)
    assert twin is not None
    assert np.array_equal(twin.result(wait_until=time.monotonic() + 10), plan)


def test_where_memory_runs_out_the_twin_goes_first(monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 2)
    adjusted = Path("/proc/self/oom_score_adj")
    ours = adjusted.read_text()

    def its_own_score() -> np.ndarray:
        return np.array([int(adjusted.read_text())], dtype=np.int64)

    twin = twins.Twin.start(its_own_score, jobs=1)
    assert twin is not None
    assert twin.result(wait_until=time.monotonic() + 10).tolist() == [1000]
    assert adjusted.read_text() == ours  # this process's score is left as it was


def test_no_twin_on_one_core(monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 1)
    assert twins.Twin.start(lambda: np.zeros(3, dtype=np.int64), jobs=3) is None


def test_a_plan_from_a_twin_is_checked_before_it_is_used() -> None:
    columns, free = generated(jobs=30, spokes=2, seed=3)
    plan = heuristics.greedy(columns, free)
    assert heuristics.fits(columns, free, plan)
    assert not heuristics.fits(columns, free, plan[:-1])  # a job short
    placed = np.flatnonzero(plan >= 0)
    foreign = plan.copy()
    foreign[placed[0]] = plan[placed[1]]  # another job's column
    assert not heuristics.fits(columns, free, foreign)
    assert not heuristics.fits(columns, free, np.full_like(plan, columns.size))  # no such column
    # More than the room holds.
    assert not heuristics.fits(columns, np.zeros_like(free), plan)


@pytest.fixture
def ascending(monkeypatch):
    """A small instance on the path of 1000 jobs: column generation's rounds
    all count as too slow, so ascent gives the prices, and the twin runs."""
    monkeypatch.setattr(lagrange, "ROUNDS_NEEDED", 1e12)
    monkeypatch.setattr(twins, "cores", lambda: 2)
    monkeypatch.setattr(solving, "_second_core", twins.Twin.start)
    return generate(jobs=60, spokes=3, seed=5)


def test_after_ascent_the_answer_is_the_cheaper_of_the_two_paths(ascending, monkeypatch) -> None:
    settings = SolverSettings(time_limit_s=4)
    best_known = solving.solve(ascending, settings=SolverSettings(time_limit_s=8)).plan
    sent = best_known.objective
    # This path stops improving after the roundings; the twin sends the best known plan.
    monkeypatch.setattr(repacking, "repack", lambda c, f, choice, **_: (choice, 0))
    monkeypatch.setattr(solving, "_alternate", lambda c, f, choice, **_: choice)

    def second_path(columns, free, best, **_):
        slots = {a.id: a for a in best_known.assignments}
        keyed = {
            job.id: (slots[job.id].spoke, slots[job.id].start_slot)
            for job in columns.jobs
            if job.id in slots
        }
        return heuristics.from_slots(columns, free, keyed)

    monkeypatch.setattr(solving, "_second_path", second_path)
    outcome = solving.solve(ascending, settings=settings)
    assert_valid_plan(ascending, outcome.plan)
    assert outcome.stats.twin_won is not None
    assert outcome.plan.objective <= sent + 1e-6
    if outcome.stats.twin_won:
        assert outcome.plan.objective == pytest.approx(sent)
        assert outcome.plan.method.endswith(solving.TWIN_WON)  # the commit says so
    else:
        assert solving.TWIN_WON not in outcome.plan.method
    assert outcome.stats.build_s + outcome.stats.solve_s <= settings.time_limit_s


@pytest.mark.parametrize("sends", ["garbage", "nothing"])
def test_a_twin_that_sends_garbage_or_nothing_leaves_this_paths_plan(
    ascending, monkeypatch, sends
) -> None:
    def second_path(columns, free, best, **_):
        if sends == "nothing":
            os._exit(3)  # as a child killed by the kernel ends
        return np.zeros(len(columns.jobs), dtype=np.int64)  # every job at job 0's column

    monkeypatch.setattr(solving, "_second_path", second_path)
    outcome = solving.solve(ascending, settings=SolverSettings(time_limit_s=3))
    assert_valid_plan(ascending, outcome.plan)
    assert outcome.stats.twin_won is None
    assert solving.TWIN_WON not in outcome.plan.method


def test_an_error_on_this_path_ends_the_twin_too(ascending, monkeypatch) -> None:
    started: list[twins.Twin] = []
    real_start = twins.Twin.start

    def start(search, *, jobs):
        twin = real_start(lambda: (time.sleep(60), search())[1], jobs=jobs)
        started.append(twin)
        return twin

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug after ascent")

    monkeypatch.setattr(solving, "_second_core", start)
    monkeypatch.setattr(solving, "_alternate", broken)
    with pytest.raises(RuntimeError, match="a bug after ascent"):
        solving.solve(ascending, settings=SolverSettings(time_limit_s=3))
    assert len(started) == 1 and _gone(started[0].pid)


def test_on_one_core_or_unplugged_no_twin_runs(ascending, monkeypatch) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 1)
    outcome = solving.solve(ascending, settings=SolverSettings(time_limit_s=2))
    assert_valid_plan(ascending, outcome.plan)
    assert outcome.stats.twin_won is None
    monkeypatch.setattr(twins, "cores", lambda: 2)
    solving.use_second_core(None)  # as the pure core's own callers leave it
    assert solving.solve(ascending, settings=SolverSettings(time_limit_s=2)).stats.twin_won is None


def test_the_caspian_command_plugs_the_second_core_in() -> None:
    from click.testing import CliRunner

    from reconciler.cli import main

    assert solving._second_core is None
    CliRunner().invoke(main, ["--help"])
    assert solving._second_core is None  # --help runs no command
    CliRunner().invoke(main, ["carbon", "--help"])
    assert solving._second_core == twins.Twin.start
    assert solving._threads == twins.threads


def test_with_a_twin_each_path_rounds_its_own_half_of_ascents_estimates(
    ascending, monkeypatch
) -> None:
    free = cols.free_room(ascending)
    columns, _ = cols.build(ascending, late_starts=True)
    first = heuristics.greedy(columns, free)
    dual = lagrange.solve(
        columns,
        free,
        upper=lambda: heuristics.objective(columns, first),
        deadline=time.monotonic() + 1.0,
        seed_columns=first[first >= 0],
    )
    assert dual.ascended and len(dual.others) >= 3
    estimates = [dual.support, *(support for support, _ in dual.others)]
    rounded: list[np.ndarray] = []
    real_rounding = heuristics.rounded

    def rounding(columns, free, *, support, **kwargs):
        rounded.append(support)
        return real_rounding(columns, free, support=support, **kwargs)

    monkeypatch.setattr(heuristics, "rounded", rounding)
    for half, expected in ((None, estimates), (0, estimates[0::2]), (1, estimates[1::2])):
        rounded.clear()
        solving._from_relaxation(
            columns,
            free,
            first,
            dual=dual,
            repair=False,
            choose_until=time.monotonic() + 60,
            deadline=time.monotonic(),
            half=half,
        )
        assert len(rounded) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(rounded, expected, strict=True))

    # Through the whole search: this path rounds the even half where a twin
    # started (the twin, forked, the odd), and all of them where none did.
    halves: list[int | None] = []
    real_path = solving._from_relaxation

    def spied(*args, half=None, **kwargs):
        halves.append(half)
        return real_path(*args, half=half, **kwargs)

    monkeypatch.setattr(solving, "_from_relaxation", spied)
    solving.solve(ascending, settings=SolverSettings(time_limit_s=2))
    monkeypatch.setattr(twins, "cores", lambda: 1)
    solving.solve(ascending, settings=SolverSettings(time_limit_s=2))
    assert halves == [0, None]


def test_after_settling_a_twin_runs_and_this_path_rounds_every_estimate_leaving_it_its_core(
    monkeypatch,
) -> None:
    # A small instance on the path of 200 jobs: column generation solves the
    # LP, and ascent settles after it for estimates to round.
    monkeypatch.setattr(solving, "EXACT_AFTER_FIXING", 0)
    monkeypatch.setattr(twins, "cores", lambda: 2)
    instance = generate(jobs=60, spokes=3, seed=5)
    duals: list[lagrange.Dual] = []
    halves: list[int | None] = []
    threads: list[int | None] = []  # of each MILP this path solves
    real_path, real_milp = solving._from_relaxation, HighsBackend.solve

    def spied(*args, dual, half=None, **kwargs):
        duals.append(dual)
        halves.append(half)
        return real_path(*args, dual=dual, half=half, **kwargs)

    def milp(self, *args, **kwargs):
        threads.append(self.threads)
        return real_milp(self, *args, **kwargs)

    monkeypatch.setattr(solving, "_second_core", twins.Twin.start)
    monkeypatch.setattr(solving, "_from_relaxation", spied)
    monkeypatch.setattr(HighsBackend, "solve", milp)
    settings = SolverSettings(time_limit_s=3)
    outcome = solving.solve(instance, settings=settings)
    assert_valid_plan(instance, outcome.plan)
    (dual,) = duals  # the twin's call, forked, is not seen here
    assert dual.lp_optimal and not dual.ascended and len(dual.others) >= 3
    assert halves == [None]
    assert outcome.stats.twin_won is not None  # its plan was read
    assert outcome.stats.build_s + outcome.stats.solve_s <= settings.time_limit_s
    # HiGHS on this path keeps to one thread: the other core is the twin's.
    assert threads and set(threads) == {1}
    threads.clear()
    monkeypatch.setattr(twins, "cores", lambda: 1)
    assert solving.solve(instance, settings=settings).stats.twin_won is None
    assert threads and set(threads) == {None}


def _ascent_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("caspian-ascent")]


def test_the_thread_of_the_second_core_takes_part_of_the_work_and_ends_with_it(
    monkeypatch,
) -> None:
    monkeypatch.setattr(twins, "cores", lambda: 2)
    ran = []
    with twins.threads() as spread:
        assert spread is not None
        spread(lambda item: ran.append((item, threading.get_ident())), ["a", "b"])
        assert len(_ascent_threads()) == 1
    assert sorted(item for item, _ in ran) == ["a", "b"]
    assert len({thread for _, thread in ran}) == 2  # side by side, not both here
    assert _ascent_threads() == []  # a twin forked after this has none to miss
    with twins.threads() as spread:
        assert spread is not None
        spread(lambda item: ran.append(item), [])  # nothing to do is done
    assert len(ran) == 2
    # Either part's error reaches the caller, after both parts have ended.
    for items in ([1, 0], [0, 1]):
        with twins.threads() as spread, pytest.raises(ZeroDivisionError):
            assert spread is not None
            spread(lambda item: 1 / item, items)
    monkeypatch.setattr(twins, "cores", lambda: 1)
    with twins.threads() as spread:
        assert spread is None


def test_pricing_the_halves_side_by_side_prices_every_column_as_one_by_one() -> None:
    columns, free = generated(jobs=60, spokes=3, seed=2)
    pricing = lagrange.Pricing(columns, free)
    # Two halves of whole jobs, together every job and column once, in order.
    assert len(pricing.parts) == 2
    assert [part.jobs.start for part in pricing.parts] == [0, pricing.parts[0].jobs.stop]
    assert pricing.parts[-1].jobs.stop == len(columns.jobs)
    for part in pricing.parts:
        assert part.columns.start == columns.first[part.jobs.start]
        assert part.columns.stop == columns.first[part.jobs.stop]
    demand, _ = mip.scaled(columns, free)
    rng = np.random.default_rng(3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(twins, "cores", lambda: 2)
        for _ in range(3):
            prices = rng.exponential(0.5, size=free.shape) * (rng.random(free.shape) < 0.4)
            alone = pricing.evaluate(prices)
            with twins.threads() as spread:
                shared = pricing.evaluate(prices, spread=spread)
            assert alone[0] == shared[0]
            assert np.array_equal(alone[1], shared[1]) and np.array_equal(alone[2], shared[2])
            # Against each column priced on its own, slot by slot.
            for k in rng.choice(columns.size, size=200, replace=False):
                s, j, t, end = columns.cs[k], columns.cj[k], columns.ct[k], columns.end[k]
                own = columns.cost[k] + (demand[j] * prices[s, :, t:end].sum(axis=1)).sum()
                assert shared[1][k] == pytest.approx(own, rel=1e-9, abs=1e-9)
            per_job = [
                min(shared[1][columns.first[j] : columns.first[j + 1]].min(), columns.defer[j])
                for j in range(len(columns.jobs))
            ]
            assert np.array_equal(shared[2], per_job)


def test_ascent_shares_its_steps_with_the_thread_which_is_gone_when_the_twin_forks(
    ascending, monkeypatch
) -> None:
    monkeypatch.setattr(solving, "_threads", twins.threads)
    shared = []
    evaluate = lagrange.Pricing.evaluate

    def counted(self, prices, *, spread=None):
        shared.append(spread is not None)
        return evaluate(self, prices, spread=spread)

    monkeypatch.setattr(lagrange.Pricing, "evaluate", counted)
    at_fork = []

    def start(search, *, jobs):
        at_fork.append(_ascent_threads())
        return twins.Twin.start(search, jobs=jobs)

    monkeypatch.setattr(solving, "_second_core", start)
    outcome = solving.solve(ascending, settings=SolverSettings(time_limit_s=2))
    assert_valid_plan(ascending, outcome.plan)
    assert sum(shared) > 10  # ascent's steps
    assert at_fork == [[]]
    assert _ascent_threads() == []
