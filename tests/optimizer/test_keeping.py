"""The last plan, kept where the problem is the one it answered: what the
digest of a problem holds, and the plan its places spell."""

from __future__ import annotations

import pytest

from optimizer import keeping
from optimizer.generator import generate
from optimizer.model import Instance, Job, Plan, Slot, SolverSettings, Weights
from optimizer.plans import NO_CAPACITY
from optimizer.solving import optimize
from tests.conftest import assert_valid_plan
from tests.optimizer.instances import crowded, job, random_instance

SETTINGS = SolverSettings(time_limit_s=2)


def _places(plan: Plan) -> set[tuple[str, str, int]]:
    return {(a.id, a.spoke, a.start_slot) for a in plan.assignments}


def _job(instance: Instance, job_id: str, **change) -> Instance:
    jobs = tuple(j.model_copy(update=change) if j.id == job_id else j for j in instance.jobs)
    return instance.model_copy(update={"jobs": jobs})


def _answered(instance: Instance) -> tuple[Instance, Plan]:
    """`instance` solved, and as the next reconcile meets it: the jobs the
    plan starts in the first slot started."""
    plan = optimize(instance, settings=SETTINGS)
    movable = {j.id for j in instance.jobs if j.fixed is None}
    started = {a.id for a in plan.assignments if a.start_slot == 0 and a.id in movable}
    return keeping.as_answered(instance, plan, started=started), plan


@pytest.mark.parametrize(
    "instance",
    [
        generate(jobs=50, spokes=3, seed=1),  # with work already running
        crowded(3, calm=4),  # jobs late and deferred
    ],
    ids=["generated", "crowded"],
)
def test_the_plan_a_problem_was_answered_with_is_kept_as_it_was(instance) -> None:
    answered, plan = _answered(instance)
    assert any(j.fixed for j in answered.jobs) and any(j.previous for j in answered.jobs)
    kept = keeping.kept_plan(answered, settings=SETTINGS)
    assert kept is not None and kept.solver_status == keeping.KEPT
    assert _places(kept) == _places(plan)
    assert kept.not_placed == plan.not_placed
    assert kept.carbon_g == pytest.approx(plan.carbon_g)
    # A job started since is fixed, and its lateness no plan's to choose; the
    # others' is as the plan had it.
    movable = {j.id for j in answered.jobs if j.fixed is None}
    assert {(a.id, a.late_slots) for a in kept.assignments if a.id in movable} == {
        (a.id, a.late_slots) for a in plan.assignments if a.id in movable
    }
    assert_valid_plan(answered, kept)


def test_a_job_with_no_place_at_all_keeps_the_solvers_reason() -> None:
    reasons = set()
    for seed in range(40):
        answered, plan = _answered(random_instance(seed, jobs=5))
        kept = keeping.kept_plan(answered, settings=SETTINGS)
        assert kept is not None
        assert kept.not_placed == plan.not_placed
        reasons |= {p.reason for p in plan.not_placed}
    # Both kinds were met: no room inside the horizon, and no spoke at all.
    assert NO_CAPACITY in reasons and len(reasons) > 1


def test_places_that_overfill_a_spoke_are_no_plan_to_keep() -> None:
    here = Slot(spoke="a", start_slot=0)
    instance = crowded(1, jobs=2).model_copy(
        update={
            "jobs": (
                job("big", spokes=("a",), cpu=6, previous=here),
                job("also", spokes=("a",), cpu=6, previous=here),
            )
        }
    )
    assert keeping.kept_plan(instance, settings=SETTINGS) is None
    apart = _job(instance, "also", previous=Slot(spoke="a", start_slot=2))
    assert keeping.kept_plan(apart, settings=SETTINGS) is not None


def test_a_late_place_is_no_plan_to_keep_where_late_starts_are_not_allowed() -> None:
    instance = crowded(1, jobs=0).model_copy(
        update={
            "jobs": (job("j", spokes=("a",), deadline=4, previous=Slot(spoke="a", start_slot=6)),)
        }
    )
    assert keeping.kept_plan(instance, settings=SETTINGS) is not None
    on_time_only = SETTINGS.model_copy(update={"late_starts": False})
    assert keeping.kept_plan(instance, settings=on_time_only) is None


def _started(instance: Instance) -> Instance:
    """`random_instance` with its first job started on spoke a."""
    return _job(instance, "j0", fixed=Slot(spoke="a", start_slot=-1), previous=None)


def _capacity(instance: Instance) -> Instance:
    first = instance.spokes[0]
    cpu = (first.cpu[0], first.cpu[1] - 1, *first.cpu[2:])
    return instance.model_copy(
        update={"spokes": (first.model_copy(update={"cpu": cpu}), *instance.spokes[1:])}
    )


def _closed(instance: Instance) -> Instance:
    first = instance.spokes[0].model_copy(update={"closed_starts": (2,)})
    return instance.model_copy(update={"spokes": (first, *instance.spokes[1:])})


def _intensity(instance: Instance) -> Instance:
    series = dict(instance.intensity_g_per_kwh)
    series["ZB"] = (series["ZB"][0] + 1, *series["ZB"][1:])
    return instance.model_copy(update={"intensity_g_per_kwh": series})


CHANGES = {
    "a job's deadline": lambda i: _job(i, "j1", deadline_slot=i.jobs[1].deadline_slot + 1),
    "a job's spokes": lambda i: _job(i, "j1", allowed_spokes=("a",)),
    "a job's place": lambda i: _job(i, "j1", previous=Slot(spoke="a", start_slot=1)),
    "a started job's place": lambda i: _job(i, "j0", fixed=Slot(spoke="b", start_slot=-1)),
    "a started job's size": lambda i: _job(i, "j0", cpu=i.jobs[0].cpu + 1),
    "a job gone": lambda i: i.model_copy(update={"jobs": i.jobs[1:]}),
    "room in one slot": _capacity,
    "a slot closed to starts": _closed,
    "intensity in one slot": _intensity,
    "the weights": lambda i: i.model_copy(update={"weights": Weights(move_g=6.0)}),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_digest_changes_with_what_a_plan_depends_on(change) -> None:
    instance = _started(random_instance(5, jobs=4))
    assert keeping.digest(change(instance), SETTINGS) != keeping.digest(instance, SETTINGS)


BEFORE_CLOSED_STARTS = "sha256:accf7ea7bc3dfdfe3588e25020bca181a17f9b0bf1c2af986481ed3006729079"


def test_a_problem_with_no_closed_starts_has_the_digest_it_had_before_there_were_any() -> None:
    # As the code before closed starts (9eb333f) worked it out for this
    # instance: a fleet's last plan still answers its problem.
    instance = random_instance(5, jobs=4)
    assert keeping.digest(instance, SETTINGS) == BEFORE_CLOSED_STARTS


def test_the_digest_changes_with_the_solvers_settings() -> None:
    instance = random_instance(5, jobs=4)
    longer = SETTINGS.model_copy(update={"time_limit_s": 3})
    assert keeping.digest(instance, longer) != keeping.digest(instance, SETTINGS)


UNREAD: dict[str, dict] = {
    "spokes": {"allowed_spokes": ("b",)},
    "window": {"release_slot": 3, "deadline_slot": 9},
    "weight": {"lateness_weight": 10.0},
}


@pytest.mark.parametrize("change", UNREAD.values(), ids=UNREAD.keys())
def test_the_digest_leaves_out_what_no_plan_reads_of_a_started_job(change: dict) -> None:
    """The reconciler works out a started job's window and spokes no more; it
    is fixed where it started whatever they are."""
    instance = _started(random_instance(5, jobs=4))
    assert keeping.digest(_job(instance, "j0", **change), SETTINGS) == keeping.digest(
        instance, SETTINGS
    )
    # Of a job not started, they are read.
    movable = random_instance(5, jobs=4)
    assert keeping.digest(_job(movable, "j0", **change), SETTINGS) != keeping.digest(
        movable, SETTINGS
    )


def test_as_answered_fixes_the_started_jobs_and_places_the_rest() -> None:
    instance = crowded(3, calm=4)
    plan = optimize(instance, settings=SETTINGS)
    first = plan.assignments[0]
    answered = keeping.as_answered(instance, plan, started={first.id})
    by_id: dict[str, Job] = {j.id: j for j in answered.jobs}
    assert by_id[first.id].fixed == Slot(spoke=first.spoke, start_slot=first.start_slot)
    assert by_id[first.id].previous is None
    for a in plan.assignments[1:]:
        assert by_id[a.id].previous == Slot(spoke=a.spoke, start_slot=a.start_slot)
        assert by_id[a.id].fixed is None
    for deferred in plan.not_placed:
        assert by_id[deferred.id].previous is None
