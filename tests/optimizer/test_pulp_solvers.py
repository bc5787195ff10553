"""The solvers users can name through PuLP, run for real: CBC (bundled with
PuLP), HiGHS's command-line program (highsbox, a dev dependency) and PuLP's
own highspy interface. Each finds the optimum the highspy backend finds, each
that PuLP can hand a start to is given the plan to start from, and one that
crashes leaves the optimizer the plan it has."""

from __future__ import annotations

from pathlib import Path

import highsbox
import numpy as np
import pytest

from optimizer import columns as cols
from optimizer import heuristics, mip, pulp_backend
from optimizer.highs import HighsBackend
from optimizer.model import SolverSettings
from optimizer.pulp_backend import PulpBackend, SolverUnavailableError
from optimizer.solving import optimize
from tests.conftest import assert_valid_plan
from tests.optimizer.instances import random_instance
from tests.optimizer.test_behaviour import job, make


def _on_path(tmp_path: Path, monkeypatch, script: str) -> None:
    program = tmp_path / "bin" / "highs"
    program.parent.mkdir()
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{program.parent}:/usr/bin:/bin")


@pytest.fixture
def highs_cmd(tmp_path, monkeypatch) -> None:
    """`highs` on PATH. highsbox's looks for its library in ../lib64 of its
    own directory, where the wheel has ../lib, so the loader is told."""
    dist = Path(highsbox.highs_dist_dir())
    _on_path(
        tmp_path,
        monkeypatch,
        f'LD_LIBRARY_PATH="{dist / "lib"}" exec "{dist / "bin" / "highs"}" "$@"',
    )


def _model(seed: int, *, jobs: int, slots: int) -> tuple[cols.Columns, mip.Model, np.ndarray]:
    instance = random_instance(seed, jobs=jobs, slots=slots)
    columns, _ = cols.build(instance)
    free = cols.free_room(instance)
    start = heuristics.greedy(columns, free)
    return columns, mip.build(columns, free, np.arange(columns.size), start=start), start


@pytest.mark.usefixtures("highs_cmd")
@pytest.mark.parametrize("name", ["cbc", "highs_cmd", "highs_pulp"])
@pytest.mark.parametrize("seed", range(8))
def test_each_finds_the_optimum_the_highspy_backend_finds(name: str, seed: int) -> None:
    columns, model, _ = _model(seed, jobs=5, slots=8)
    highs = HighsBackend().solve(model, time_limit=30, gap_rel=0.0)
    other = PulpBackend(name).solve(model, time_limit=30, gap_rel=0.0)
    assert highs.optimal and other.optimal, other.status
    assert heuristics.objective(columns, other.choice) == pytest.approx(
        heuristics.objective(columns, highs.choice), rel=1e-9
    )


@pytest.mark.usefixtures("highs_cmd")
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("cbc", "MIPStart provided solution with cost {:.2f}"),
        ("highs_cmd", "MIP start solution is feasible, objective value is {:.4f}"),
    ],
)
def test_the_plan_to_start_from_reaches_the_solver(tmp_path, monkeypatch, name, says) -> None:
    # The solver's own log says what it was given.
    log = tmp_path / "solver.log"
    made = pulp_backend._solver

    def logged(*args, **kwargs):
        solver = made(*args, **kwargs)
        solver.optionsDict["logPath"] = str(log)
        return solver

    monkeypatch.setattr(pulp_backend, "_solver", logged)
    columns, model, start = _model(3, jobs=8, slots=12)
    PulpBackend(name).solve(model, time_limit=10, gap_rel=0.0)
    assert says.format(heuristics.objective(columns, start)) in log.read_text()


def test_a_solver_that_crashes_is_named_with_its_error(tmp_path, monkeypatch) -> None:
    # As highsbox's own program does without its library.
    _on_path(
        tmp_path,
        monkeypatch,
        'echo "highs: error while loading shared libraries: libhighs.so" >&2; exit 127',
    )
    _, model, _ = _model(0, jobs=5, slots=8)
    with pytest.raises(SolverUnavailableError, match=r"^solver 'highs_cmd' failed: \w+"):
        PulpBackend("highs_cmd").solve(model, time_limit=5, gap_rel=0.0)


def test_a_solver_that_crashes_leaves_the_heuristic_plan_and_says_so(tmp_path, monkeypatch) -> None:
    _on_path(tmp_path, monkeypatch, "exit 127")
    # As in test_behaviour's missing solver: the LP splits two GPU jobs, so
    # the MILP step has to run.
    jobs = [job(f"j{i}", spokes=("a",), gpu=2, duration=2, deadline=2) for i in range(2)]
    instance = make(jobs, slots=2, gpu=3)
    plan = optimize(instance, settings=SolverSettings(name="highs_cmd", gap_rel=0.0))
    assert plan.solver_status.startswith("heuristic (solver 'highs_cmd' failed")
    assert_valid_plan(instance, plan)
    assert len(plan.assignments) == 1


@pytest.mark.usefixtures("highs_cmd")
@pytest.mark.parametrize("name", ["cbc", "highs_cmd", "highs_pulp"])
def test_each_is_given_the_time_left_to_a_fraction_of_a_second(name: str) -> None:
    # Rounded up to a second, a 1 s plan's MILP ran to 1.5 s and more
    # (`caspian bench optimizer --jobs 50 --spokes 3 --time-limit 1 --solver cbc`).
    assert pulp_backend._solver(name, time_limit=0.3, gap_rel=0.0).timeLimit == 0.3
