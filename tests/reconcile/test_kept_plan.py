"""A reconcile that meets the problem the last plan answered keeps that plan.

A search cut off by its time limit may end at another plan each time it runs
(an overloaded spoke did, in the soaks). `Restless` stands for such a search:
it answers every call with another valid plan."""

from __future__ import annotations

import logging
from datetime import timedelta

import pygit2
import pytest
import yaml
from prometheus_client import REGISTRY

from optimizer import baselines, keeping
from optimizer.model import Instance, Plan, SolverSettings
from optimizer.solving import optimize
from reconciler import deciding, reconciling
from reconciler.gitrepo import FleetRepo, create_bare_repo
from reconciler.ledger import ACTIVE, LEDGER_PATH, Phase
from reconciler.observing import DeclaredCapacity
from reconciler.proposing import Proposing
from reconciler.templates import template_files
from reconciler.watching import Watcher, WatchSettings
from tests import gitutil
from tests.conftest import BOT, NOW, assert_valid_plan
from tests.fleet.helpers import appwrapper
from tests.reconcile.test_lifecycle import step
from tests.reconcile.test_proposals import BRANCH, merge


class Restless:
    """The optimizer's plan for the first `steady` calls, then the carbon-blind
    baseline's and the optimizer's by turns."""

    def __init__(self, *, steady: int = 1) -> None:
        self.steady = steady
        self.calls = 0

    def __call__(self, instance: Instance, settings: SolverSettings) -> Plan:
        self.calls += 1
        if self.calls <= self.steady or (self.calls - self.steady) % 2 == 0:
            return optimize(instance, settings=settings)
        return baselines.qos(instance)

    def instead_of_the_optimizer(self, monkeypatch) -> None:
        """Every decision, also those a reconcile makes, asks this one."""
        monkeypatch.setattr(
            deciding, "optimize", lambda instance, *, settings: self(instance, settings)
        )


def test_a_reconcile_right_after_the_last_keeps_its_plan_and_solves_nothing() -> None:
    restless = Restless()
    first, files = step(template_files(), now=NOW, planner=restless)
    # Some jobs were dispatched: the next problem has them fixed, and differs
    # from this one in that.
    assert any(e.phase == Phase.DISPATCHED for e in first.ledger.entries)
    assert first.ledger.problem is not None
    again, same = step(files, now=NOW + timedelta(minutes=5), planner=restless)
    assert restless.calls == 1
    assert again.plan.solver_status == keeping.KEPT
    assert same == files
    assert_valid_plan(again.instance, again.plan)
    # The baseline, had it been asked, would have moved jobs.
    moved = baselines.qos(again.instance)
    assert {(a.id, a.spoke, a.start_slot) for a in moved.assignments} != {
        (a.id, a.spoke, a.start_slot) for a in again.plan.assignments
    }


def test_a_job_first_planned_where_qos_had_no_place_keeps_that_baseline(monkeypatch) -> None:
    """The qos figure is frozen when a job is first planned, also where the
    carbon-blind baseline had no place for it then (a fleet with more work
    than room): filled in at the next reconcile, it would change records no
    plan changed, and that reconcile would commit them alone."""
    real = baselines.qos
    asked: list[Instance] = []

    def no_place_at_first(instance: Instance) -> Plan:
        asked.append(instance)
        plan = real(instance)
        return plan if len(asked) > 1 else plan.model_copy(update={"assignments": ()})

    monkeypatch.setattr(baselines, "qos", no_place_at_first)
    first, files = step(template_files(), now=NOW)
    planned = [e for e in first.ledger.entries if e.phase in ACTIVE]
    assert planned and all(e.qos_grams is None for e in planned)
    again, same = step(files, now=NOW + timedelta(minutes=5))
    assert again.plan.solver_status == keeping.KEPT
    assert same == files
    # The baseline has places for them now, and is not even asked: no job
    # is planned for the first time (at 5000 jobs it takes over a second).
    assert real(again.instance).assignments
    assert len(asked) == 1


def _new_job(files):
    files["jobs/extra.yaml"] = appwrapper("extra").encode()


def _cordon(files):
    doc = yaml.safe_load(files["spokes/frankfurt.yaml"])
    doc["spec"]["unschedulable"] = True
    files["spokes/frankfurt.yaml"] = yaml.safe_dump(doc).encode()


def _weights(files):
    doc = yaml.safe_load(files["caspian.yaml"])
    doc["spec"]["weights"]["moveGrams"] = 500
    files["caspian.yaml"] = yaml.safe_dump(doc).encode()


def _time_limit(files):
    doc = yaml.safe_load(files["caspian.yaml"])
    doc["spec"]["solver"]["timeLimit"] = "7s"
    files["caspian.yaml"] = yaml.safe_dump(doc).encode()


@pytest.mark.parametrize("change", [_new_job, _cordon, _weights, _time_limit])
def test_a_changed_problem_is_solved_again(change) -> None:
    restless = Restless()
    _, files = step(template_files(), now=NOW, planner=restless)
    changed = dict(files)
    change(changed)
    again, _ = step(changed, now=NOW, planner=restless)
    assert restless.calls == 2
    assert again.plan.solver_status != keeping.KEPT


def test_the_next_slot_is_a_new_problem() -> None:
    restless = Restless()
    _, files = step(template_files(), now=NOW, planner=restless)
    step(files, now=NOW + timedelta(minutes=15), planner=restless)
    assert restless.calls == 2


def test_a_new_digest_alone_changes_no_ledger() -> None:
    """The next slot meets a new problem; where its plan moves no job, the
    ledger stays byte for byte as it was, so nothing is committed."""
    files = template_files()
    for path in [p for p in files if p.startswith("jobs/")]:
        del files[path]
    files["jobs/later.yaml"] = appwrapper(
        "later", annotations={"caspian.dev/not-before": "2026-12-20T00:00:00Z"}
    ).encode()
    first, files = step(files, now=NOW)
    (entry,) = first.ledger.entries
    assert entry.phase == Phase.PENDING  # it may not start inside the horizon
    later, after = step(files, now=NOW + timedelta(minutes=15))
    assert later.ledger.problem == first.ledger.problem
    assert after[LEDGER_PATH] == files[LEDGER_PATH]


def test_a_second_reconcile_pushes_nothing(remote, tmp_path, monkeypatch) -> None:
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    solved, kept = _plans("solved"), _plans("kept")
    assert reconciling.reconcile_once(repo, now=NOW, author=BOT).commit is not None
    head = gitutil.head(remote)
    again = reconciling.reconcile_once(repo, now=NOW + timedelta(minutes=1), author=BOT)
    assert again.commit is None and gitutil.head(remote) == head
    assert again.decision.plan.solver_status == keeping.KEPT and restless.calls == 1
    # As /metrics counts them.
    assert (_plans("solved") - solved, _plans("kept") - kept) == (1, 1)


@pytest.mark.parametrize("how", ["direct", "pull-request mode", "cron"])
def test_a_push_in_a_quiet_slot_keeps_the_plan(remote, tmp_path, monkeypatch, how) -> None:
    """A slot where no record changes commits nothing, so the ledger keeps the
    digest of an older problem; the mirror remembers the problem the last
    plan answered, and a push that changes nothing the plan depends on keeps
    it, whether the watcher meets it or `caspian reconcile --once` from cron
    (a new process each time, with nothing of the last but its mirror)."""
    restless = Restless(steady=2)
    restless.instead_of_the_optimizer(monkeypatch)
    clock = [NOW]
    mirror = tmp_path / "mirror.git"
    watcher = Watcher(
        FleetRepo(str(remote), cache_dir=mirror),
        author=BOT,
        observer=DeclaredCapacity(),
        settings=WatchSettings(
            proposing=Proposing(branch=BRANCH) if how == "pull-request mode" else None
        ),
        clock=lambda: clock[0],
    )

    def reconcile() -> str:
        if how != "cron":
            return watcher.reconcile().result
        repo = FleetRepo(str(remote), cache_dir=mirror)
        outcome = reconciling.reconcile_once(repo, now=clock[0], author=BOT)
        return "committed" if outcome.commit else "unchanged"

    assert reconcile() == "committed"
    if how == "pull-request mode":
        merge(remote)
        clock[0] = NOW + timedelta(minutes=1)
        assert reconcile() == "unchanged"  # the merged plan, kept
    clock[0] = NOW + timedelta(minutes=15)
    assert reconcile() == "unchanged"  # a quiet slot
    assert restless.calls == 2
    heads = _heads(remote)
    gitutil.user_commit(remote, {"docs/notes.md": b"nothing a plan reads\n"})
    clock[0] = NOW + timedelta(minutes=20)
    assert reconcile() == "unchanged"
    assert restless.calls == 2
    # `caspian plan` shows what that reconcile did.
    shown = reconciling.plan(FleetRepo(str(remote), cache_dir=mirror), now=clock[0], bot=BOT.email)
    assert shown.decision.plan.solver_status == keeping.KEPT and restless.calls == 2
    after = _heads(remote)
    del after["main"]
    assert gitutil.history(remote)[1] == heads.pop("main")  # only the user's commit since
    assert after == heads  # no proposal either


def _heads(remote) -> dict[str, str]:
    repo = pygit2.Repository(str(remote))
    return {
        name.removeprefix("refs/heads/"): str(repo.references[name].target)
        for name in repo.references
        if name.startswith("refs/heads/")
    }


def _plans(how: str) -> float:
    return REGISTRY.get_sample_value("caspian_plans_total", {"how": how}) or 0.0


def test_a_merged_proposal_is_the_plan_the_next_reconcile_keeps(
    remote, tmp_path, monkeypatch
) -> None:
    """Pull-request mode: once merged, the proposal is main's plan, and no
    new one is proposed while the problem stays as it was."""
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    assert first.proposed is not None and first.proposed.commit is not None
    merge(remote)
    head = gitutil.head(remote)
    again = reconciling.propose_once(
        repo, branch=BRANCH, now=NOW + timedelta(minutes=1), author=BOT
    )
    assert again.carried.commit is None and again.proposed is None
    assert gitutil.head(remote) == head
    assert restless.calls == 1


def test_an_open_proposal_is_kept_while_the_problem_is_the_one_it_answered(
    remote, tmp_path, monkeypatch
) -> None:
    """Pull-request mode: until it is merged, a proposal is not on main, so
    main's ledger does not hold its plan; the proposal branch does. A
    reconcile that meets the problem it answered, even one that remembers
    nothing (`caspian reconcile` from cron, a watcher started again), keeps
    it, and pushes nothing over the review."""
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    first = reconciling.propose_once(
        FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git"),
        branch=BRANCH,
        now=NOW,
        author=BOT,
    )
    assert first.proposed is not None and first.proposed.commit is not None
    heads = _heads(remote)
    again = reconciling.propose_once(
        FleetRepo(str(remote), cache_dir=tmp_path / "another.git"),
        branch=BRANCH,
        now=NOW + timedelta(minutes=5),
        author=BOT,
    )
    assert restless.calls == 1
    assert again.proposed is not None and again.proposed.commit is None
    assert again.proposed.decision.plan.solver_status == keeping.KEPT
    assert again.anew == first.anew
    assert _heads(remote) == heads


def test_a_proposal_whose_ledger_was_edited_by_hand_is_left_out(
    remote, tmp_path, monkeypatch, caplog
) -> None:
    """Someone edited the ledger in the pull request: Caspian cannot trust it
    to say what was proposed, so it decides from main's alone, and says so."""
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    text = gitutil.read(remote, LEDGER_PATH, gitutil.head(remote, branch=BRANCH))
    gitutil.user_commit(remote, {LEDGER_PATH: text + b"# looks fine to me\n"}, branch=BRANCH)
    with caplog.at_level(logging.INFO, logger="caspian"):
        again = reconciling.propose_once(
            repo, branch=BRANCH, now=NOW + timedelta(minutes=5), author=BOT, keep_branch=True
        )
    assert restless.calls == 2 and again.kept
    assert f"{BRANCH}: its ledger cannot be read, so the plan starts from main's" in caplog.text


def _one_job_hours_ahead(tmp_path) -> FleetRepo:
    """A fleet repo of one job, which may not start for hours."""
    files = {p: b for p, b in template_files().items() if not p.startswith("jobs/")}
    files["jobs/later.yaml"] = appwrapper(
        "later", annotations={"caspian.dev/not-before": "2026-11-22T06:00:00Z"}
    ).encode()
    remote = tmp_path / "fleet.git"
    create_bare_repo(remote, files=files, message="Add fleet", author=BOT)
    return FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")


def test_a_new_digest_alone_pushes_no_proposal(tmp_path) -> None:
    """In the next slot the problem is a new one; where the proposal's records
    come out as they were (one job, to start in hours), its branch is not
    pushed again for the digest alone."""
    repo = _one_job_hours_ahead(tmp_path)
    remote = tmp_path / "fleet.git"
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    assert first.proposed is not None and first.proposed.commit is not None
    heads = _heads(remote)
    later = reconciling.propose_once(
        repo, branch=BRANCH, now=NOW + timedelta(minutes=15), author=BOT
    )
    assert later.proposed is not None and later.proposed.commit is None
    assert later.proposed.decision.answers != first.proposed.decision.answers
    assert _heads(remote) == heads


def test_a_new_estimate_alone_pushes_no_proposal(tmp_path, monkeypatch) -> None:
    """The forecast moved, and the job under review stays where it was: its
    record keeps the estimate of when it was placed there, as one on main
    does, and the proposal is not pushed again for a number."""
    repo = _one_job_hours_ahead(tmp_path)
    remote = tmp_path / "fleet.git"
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    heads = _heads(remote)

    def forecast_moved(instance: Instance, *, settings: SolverSettings) -> Plan:
        plan = optimize(instance, settings=settings)
        moved = tuple(a.model_copy(update={"carbon_g": a.carbon_g * 1.5}) for a in plan.assignments)
        return plan.model_copy(update={"assignments": moved})

    monkeypatch.setattr(deciding, "optimize", forecast_moved)
    later = reconciling.propose_once(
        repo, branch=BRANCH, now=NOW + timedelta(minutes=15), author=BOT
    )
    assert later.proposed is not None and later.proposed.commit is None
    assert later.proposed.decision.plan.method != keeping.METHOD  # solved again
    ((was,), (now,)) = (p.decision.ledger.entries for p in (first.proposed, later.proposed))
    assert (now.spoke, now.planned_start) == (was.spoke, was.planned_start)
    assert now.estimated_grams == was.estimated_grams
    assert _heads(remote) == heads


def test_the_next_slot_starts_from_the_open_proposal(remote, tmp_path, monkeypatch) -> None:
    """In the next slot the problem is a new one, solved again; the places
    under review are where it starts from, and moving a job from one costs,
    as from a place main holds."""
    asked: list[Instance] = []

    def recording(instance: Instance, *, settings: SolverSettings) -> Plan:
        asked.append(instance)
        return optimize(instance, settings=settings)

    monkeypatch.setattr(deciding, "optimize", recording)
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    assert first.proposed is not None
    later = NOW + timedelta(minutes=15)
    reconciling.propose_once(repo, branch=BRANCH, now=later, author=BOT)
    assert len(asked) == 2
    offered = {
        e.id: e
        for e in first.proposed.decision.ledger.entries
        if e.phase == Phase.PLANNED and e.planned_start >= later
    }
    assert offered  # the template's jobs are not all due in the first slot
    slot = asked[1].slot_seconds
    assert {
        job.id: (job.previous.spoke, job.previous.start_slot)
        for job in asked[1].jobs
        if job.previous is not None
    } == {
        e.id: (e.pool or e.spoke, int((e.planned_start - later).total_seconds()) // slot)
        for e in offered.values()
    }


def test_a_job_under_review_keeps_its_deadline_and_first_estimate(remote, tmp_path) -> None:
    """A job's deadline may count from when Caspian first saw it (its
    completeWithin). Until its proposal is merged main has no record of the
    job, and the proposal's says when that was: a reconcile hours later does
    not push the deadline back, nor change the carbon-blind estimate its
    record compares with."""
    repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
    first = reconciling.propose_once(repo, branch=BRANCH, now=NOW, author=BOT)
    later = reconciling.propose_once(repo, branch=BRANCH, now=NOW + timedelta(hours=3), author=BOT)
    assert first.proposed is not None and later.proposed is not None
    before, after = (
        {e.id: (e.first_seen, e.deadline, e.qos_grams) for e in proposal.decision.ledger.entries}
        for proposal in (first.proposed, later.proposed)
    )
    assert after == before
    assert {seen for seen, _, _ in after.values()} == {NOW}
    # The policy's default completeWithin, 24 h, for those that give none.
    assert any(deadline == NOW + timedelta(hours=24) for _, deadline, _ in after.values())


def test_the_mirror_remembers_for_its_branch_and_fleet_directory(remote, tmp_path) -> None:
    mirror = tmp_path / "mirror.git"
    digest = "sha256:" + "ab" * 32
    assert FleetRepo(str(remote), cache_dir=mirror).remembered() is None
    assert FleetRepo(str(remote), cache_dir=mirror).remember(digest) is None
    assert FleetRepo(str(remote), cache_dir=mirror).remembered() == digest
    assert FleetRepo(str(remote), cache_dir=mirror, branch="staging").remembered() is None
    assert FleetRepo(str(remote), cache_dir=mirror, root="teams/batch").remembered() is None
    (memo,) = (mirror / "caspian").iterdir()
    memo.write_text("half a dig")
    assert FleetRepo(str(remote), cache_dir=mirror).remembered() is None


def test_a_memory_that_cannot_be_kept_costs_a_solve_and_nothing_else(
    remote, tmp_path, monkeypatch, caplog
) -> None:
    restless = Restless()
    restless.instead_of_the_optimizer(monkeypatch)
    mirror = tmp_path / "mirror.git"
    repo = FleetRepo(str(remote), cache_dir=mirror)
    (mirror / "caspian").write_text("a file where the directory would go\n")
    first = reconciling.reconcile_once(repo, now=NOW, author=BOT)
    assert first.commit is not None and gitutil.head(remote) == first.commit
    assert "the next reconcile solves again" in caplog.text
    assert str(mirror / "caspian") in caplog.text
    # Nor can it note the tips it sees: it says so, and goes on.
    assert "a commit merged by fast-forward counts from when it was made" in caplog.text
