"""A Job the branch holds for a spoke that the spoke's API does not list:
Argo CD has not applied it there (no Application syncs that directory, or it
cannot reach the repo). The kube observer lists every Job of Caspian's, and
the fleet repo's history says since when the branch has held the file; a
dispatched job so kept from its spoke is requeued after requeueUnscheduled,
as one whose pods find no node, and a spoke that lists none of its Jobs takes
no new work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pygit2
import pytest
import yaml

from reconciler import (
    arrivals,
    explaining,
    gitrepo,
    ledger,
    messages,
    owned,
    reconciling,
    rendering,
)
from reconciler.gitrepo import FleetRepo
from reconciler.observing import DeclaredCapacity
from reconciler.pools import spoke_of
from reconciler.rendering import job_path
from reconciler.syncwindows import SyncWindow
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step


def _first_dispatched(files):
    decision, files = step(files, now=NOW)
    started = next(e for e in entries(decision).values() if e.phase == "Dispatched")
    return decision, files, started


def _observed(files, **changes):
    """The spokes as declared, each with `changes` (by spoke) over it."""
    observed = DeclaredCapacity().observe(reconciling.fleet_in(files, links=()))
    for name, change in changes.items():
        observed[name] = observed[name].model_copy(update=change)
    return observed


class TestWhichJobsAreMissing:
    def test_only_a_spoke_that_lists_every_job_can_miss_one(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        there = [
            e
            for e in decision.ledger.entries
            if e.spoke == started.spoke and e.phase in ("Planned", "Dispatched")
        ]
        listed = frozenset(e.job_key for e in there if e.id != started.id)
        spokes = _observed(files, **{started.spoke: {"listed": listed}})
        missing = arrivals.unlisted(decision.ledger.entries, spokes)
        assert missing == {job_path(started): started}
        # Declared spokes list no Job: nothing is missing there.
        assert not arrivals.unlisted(decision.ledger.entries, _observed(files))
        down = {started.spoke: {"listed": listed, "up": False}}
        assert not arrivals.unlisted(decision.ledger.entries, _observed(files, **down))

    def test_jobs_that_ran_or_are_not_placed_are_not_looked_for(self) -> None:
        _, files, started = _first_dispatched(template_files())
        ran = started.model_copy(update={"phase": "Running"})
        spokes = _observed(files, **{started.spoke: {"listed": frozenset()}})
        assert not arrivals.unlisted([ran], spokes)
        pending = started.model_copy(update={"phase": "Pending", "spoke": None})
        assert not arrivals.unlisted([pending], spokes)

    def test_a_file_the_branch_does_not_hold_is_not_missing(self) -> None:
        # A place under review in a pull request: Argo CD has nothing to apply yet.
        _, files, started = _first_dispatched(template_files())
        spokes = _observed(files, **{started.spoke: {"listed": frozenset()}})
        missing = {job_path(started): started}
        assert arrivals.noted(spokes, missing, held_since={}, now=NOW) == spokes
        noted = arrivals.noted(spokes, missing, held_since={job_path(started): NOW}, now=NOW)
        assert noted[started.spoke].unarrived == {started.job_key: NOW}
        assert all(not s.unarrived for n, s in noted.items() if n != started.spoke)


class TestADispatchedJobThatNeverArrives:
    def test_it_is_requeued_after_the_policys_requeue_unscheduled(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        missing = {started.spoke: {"unarrived": {started.job_key: NOW}}}
        early, _ = step(files, now=NOW + timedelta(minutes=10), states=missing)
        assert entries(early)[started.id] == started and not early.requeued
        note = early.stuck[started.id]
        assert note.startswith(f"its Job has not appeared on {started.spoke} since ")
        assert f"({started.spoke} has no Job {started.job_key}: does an Argo CD " in note
        assert "it is requeued at " in note

        later, _ = step(files, now=NOW + timedelta(minutes=20), states=missing)
        entry = entries(later)[started.id]
        assert entry.spoke != started.spoke and entry.phase in ("Planned", "Dispatched")
        assert_valid_plan(later.instance, later.plan)
        why = later.requeued[started.id].reason
        assert why.startswith(f"its Job has not appeared on {started.spoke} from ")
        assert "more than the policy's requeueUnscheduled 15m" in why
        assert (
            f"Application sync rendered/{started.spoke}/ there, in an AppProject that admits "
            "namespace batch?)"
        ) in why
        message = messages.commit_message(
            old=decision.ledger, decision=later, input_commit="0" * 40
        )
        assert f"- requeued {started.id}: {why}; now {entry.spoke} " in message

    def test_it_counts_from_its_start_where_the_branch_held_it_before(self) -> None:
        # Planned (suspended) long before, it had no need to run until its start.
        _, files, started = _first_dispatched(template_files())
        missing = {started.spoke: {"unarrived": {started.job_key: NOW - timedelta(hours=5)}}}
        early, _ = step(files, now=NOW + timedelta(minutes=10), states=missing)
        assert not early.requeued


def test_a_planned_job_not_there_is_noted_not_requeued() -> None:
    decision, files = step(template_files(), now=NOW)
    planned = next(e for e in entries(decision).values() if e.phase == "Planned")
    missing = {planned.spoke: {"unarrived": {planned.job_key: NOW}}}
    later, _ = step(files, now=NOW + timedelta(minutes=30), states=missing)
    assert planned.id not in later.requeued
    assert entries(later)[planned.id].spoke == planned.spoke
    note = later.stuck[planned.id]
    assert note.startswith(
        f"its Job, suspended until its start, has not appeared on {planned.spoke} though the "
        "branch has held it since "
    )
    assert f"({planned.spoke} has no Job {planned.job_key}: does an Argo CD " in note


class TestSinceWhenTheBranchHoldsAFile:
    def _commit(self, repo, parents, files, *, at):
        index = pygit2.Index()
        for path, data in files.items():
            index.add(pygit2.IndexEntry(path, repo.create_blob(data), pygit2.enums.FileMode.BLOB))
        when = pygit2.Signature("someone", "someone@example.org", int(at.timestamp()), 0)
        tree = index.write_tree(repo)
        return repo.create_commit(None, when, when, "change", tree, parents)

    def test_the_oldest_commit_of_the_unbroken_run_on_first_parents(self, tmp_path) -> None:
        repo = pygit2.init_repository(str(tmp_path / "fleet.git"), bare=True, initial_head="main")
        t = [datetime(2026, 11, 23, h, tzinfo=UTC) for h in range(8)]
        policy = {"caspian.yaml": b"kind: Policy\n"}
        a, b, c = "rendered/paris/batch.a.yaml", "rendered/paris/batch.b.yaml", "rendered/x/c.yaml"
        first = self._commit(repo, [], {**policy, a: b"1"}, at=t[0])
        second = self._commit(repo, [first], {**policy, a: b"2", b: b"1"}, at=t[1])
        gone = self._commit(repo, [second], {**policy, a: b"2"}, at=t[2])
        back = self._commit(repo, [gone], {**policy, a: b"2", b: b"1"}, at=t[3])
        # A pull request's branch held c from t[4]; merged at t[6], the branch holds it since.
        side = self._commit(repo, [back], {**policy, a: b"2", b: b"1", c: b"1"}, at=t[4])
        # A commit that leaves rendered/paris/ as it was.
        quiet = self._commit(
            repo, [back], {"caspian.yaml": b"kind: Policy\n#\n", a: b"2", b: b"1"}, at=t[4]
        )
        main = self._commit(repo, [quiet], {**policy, a: b"3", b: b"1"}, at=t[5])
        merged = self._commit(repo, [main, side], {**policy, a: b"3", b: b"1", c: b"1"}, at=t[6])
        repo.references.create("refs/heads/main", merged)
        fleet = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "mirror")
        tip = fleet.fetch().commit
        asked = [a, b, c, "rendered/paris/batch.never.yaml"]
        # a changed, never left; b left and came back; c came with the merge.
        assert fleet.held_since(tip, asked) == {a: t[0], b: t[3], c: t[6]}
        # Past `most` first parents back, it counts from the one `most` back.
        assert fleet.held_since(tip, [a], most=2) == {a: t[4]}
        # As it is: a since its last change, on the first parents.
        assert fleet.held_since(tip, asked, as_is=True) == {a: t[5], b: t[3], c: t[6]}

    def test_as_it_is_counts_from_its_last_change_even_back_to_what_it_was(self, tmp_path) -> None:
        repo = pygit2.init_repository(str(tmp_path / "fleet.git"), bare=True, initial_head="main")
        t = [datetime(2026, 11, 23, h, tzinfo=UTC) for h in range(4)]
        job, other = "rendered/paris/batch.a.yaml", "rendered/paris/batch.b.yaml"
        commit = None
        for at, (mine, theirs) in enumerate(
            [(b"1", b"1"), (b"2", b"1"), (b"1", b"1"), (b"1", b"2")]
        ):
            commit = self._commit(
                repo, [commit] if commit else [], {job: mine, other: theirs}, at=t[at]
            )
        repo.references.create("refs/heads/main", commit)
        fleet = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "mirror")
        tip = fleet.fetch().commit
        assert fleet.held_since(tip, [job], as_is=True) == {job: t[2]}
        assert fleet.held_since(tip, [job, other], as_is=True) == {job: t[2], other: t[3]}
        assert fleet.held_since(tip, [job]) == {job: t[0]}

    def test_a_fast_forward_merge_counts_from_when_a_tip_holding_it_was_seen(
        self, tmp_path
    ) -> None:
        repo = pygit2.init_repository(str(tmp_path / "fleet.git"), bare=True, initial_head="main")
        t = [datetime(2026, 11, 23, h, tzinfo=UTC) for h in range(10)]
        job = "rendered/paris/batch.a.yaml"
        base = self._commit(repo, [], {"caspian.yaml": b"kind: Policy\n"}, at=t[0])
        # Proposed at t[1] on a branch; main fast-forwarded to it at t[4].
        proposed = self._commit(
            repo, [base], {"caspian.yaml": b"kind: Policy\n", job: b"1"}, at=t[1]
        )
        main = repo.references.create("refs/heads/main", base)
        fleet = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "mirror")
        assert fleet.saw(fleet.fetch().commit, at=t[2]) is None
        main.set_target(proposed)
        tip = fleet.fetch().commit
        # Not noted yet: from when it was made, as before.
        assert fleet.held_since(tip, [job], now=t[5]) == {job: t[1]}
        assert fleet.saw(tip, at=t[5]) is None
        assert fleet.saw(tip, at=t[6]) is None  # the same tip again: still seen from t[5]
        assert fleet.held_since(tip, [job], now=t[7]) == {job: t[5]}
        # Without `now`, or at a time before it was seen, the tips say nothing.
        assert fleet.held_since(tip, [job]) == {job: t[1]}
        assert fleet.held_since(tip, [job], now=t[3]) == {job: t[1]}
        # Later tips hold it too: still from the first seen that did.
        files = {"caspian.yaml": b"kind: Policy\n", job: b"1"}
        later = tip
        for h in (6, 7, 8):
            files["caspian.yaml"] += b"#\n"
            later = str(self._commit(repo, [pygit2.Oid(hex=later)], dict(files), at=t[h]))
            main.set_target(later)
            assert fleet.saw(fleet.fetch().commit, at=t[h]) is None
        assert fleet.held_since(later, [job], now=t[9]) == {job: t[5]}
        # A mirror that saw no tip without it cannot tell when it came.
        fresh = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "fresh")
        assert fresh.saw(tip, at=t[8]) is None
        assert fresh.saw(fresh.fetch().commit, at=t[8]) is None
        assert fresh.held_since(later, [job], now=t[9]) == {job: t[1]}
        # A tip the mirror no longer has (the branch was pushed over) held none of it.
        gone = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "gone")
        assert gone.saw("1" * 40, at=t[7]) is None
        assert gone.saw(gone.fetch().commit, at=t[8]) is None
        assert gone.held_since(later, [job], now=t[9]) == {job: t[8]}

    def test_the_tips_seen_are_kept_to_the_last_few_and_garbage_is_passed_over(
        self, tmp_path, monkeypatch
    ) -> None:
        repo = pygit2.init_repository(str(tmp_path / "fleet.git"), bare=True, initial_head="main")
        t = [datetime(2026, 11, 23, h, tzinfo=UTC) for h in range(6)]
        commits = [self._commit(repo, [], {"a": str(h).encode()}, at=t[h]) for h in range(5)]
        repo.references.create("refs/heads/main", commits[0])
        fleet = FleetRepo(str(tmp_path / "fleet.git"), cache_dir=tmp_path / "mirror")
        monkeypatch.setattr(gitrepo, "SEEN_TIPS", 3)
        for h, commit in enumerate(commits):
            assert fleet.saw(str(commit), at=t[h]) is None
        assert fleet._seen() == [(str(c), t[h]) for h, c in enumerate(commits)][-3:]
        # The same tip again is no new line: the file grows only as the branch moves.
        assert fleet.saw(str(commits[-1]), at=t[5]) is None
        assert fleet._seen()[-1] == (str(commits[-1]), t[4]) and len(fleet._seen()) == 3
        with fleet._tips.open("a") as log:
            log.write("not a tip\n" + "f" * 40 + " yesterday\n" + "0" * 40 + " 2026-11-23T05:00\n")
        assert len(fleet._seen()) == 3
        # A mirror it cannot write to says why, and the reconcile goes on.
        fleet._tips.unlink()
        fleet._tips.mkdir()
        why = fleet.saw(str(commits[0]), at=t[5])
        assert why is not None and why.startswith(f"cannot write {fleet._tips}")
        # What it began to write is gone, and nothing else was left beside.
        assert sorted(p.name for p in fleet._tips.parent.iterdir()) == [fleet._tips.name]

    def test_a_fleet_in_a_directory_of_its_repo(self, tmp_path) -> None:
        repo = pygit2.init_repository(str(tmp_path / "fleet.git"), bare=True, initial_head="main")
        t = [datetime(2026, 11, 23, h, tzinfo=UTC) for h in range(3)]
        policy = {"teams/batch/caspian.yaml": b"kind: Policy\n"}
        path = "rendered/paris/batch.a.yaml"
        first = self._commit(repo, [], policy, at=t[0])
        second = self._commit(repo, [first], {**policy, f"teams/batch/{path}": b"1"}, at=t[1])
        # The same path outside the fleet's directory is another file.
        third = self._commit(
            repo, [second], {**policy, f"teams/batch/{path}": b"1", path: b"1"}, at=t[2]
        )
        repo.references.create("refs/heads/main", third)
        fleet = FleetRepo(str(tmp_path / "fleet.git"), root="teams/batch", cache_dir=tmp_path / "m")
        assert fleet.held_since(fleet.fetch().commit, [path]) == {path: t[1]}


def test_the_metric_counts_what_argo_cd_had_time_to_sync() -> None:
    _, files, started = _first_dispatched(template_files())
    fresh, old = NOW - timedelta(minutes=3), NOW - timedelta(minutes=11)
    unarrived = {"batch/a-1": fresh, "batch/b-2": old, "batch/c-3": old}
    spokes = _observed(files, **{started.spoke: {"listed": frozenset(), "unarrived": unarrived}})
    overdue = arrivals.overdue(spokes, now=NOW, after=timedelta(minutes=10))
    # Only a spoke whose Jobs are listed whole has a figure, 0 included.
    assert overdue == {started.spoke: 2}
    listed = {name: {"listed": frozenset()} for name in spokes}
    assert set(arrivals.overdue(_observed(files, **listed), now=NOW, after=timedelta(0))) == set(
        spokes
    )


class TestASpokeThatHasNoneOfItsJobs:
    """Nothing syncs its directory there: it takes no new work, as a spoke the
    hub's Argo CD cannot sync, until one of its Jobs is there."""

    AFTER = timedelta(minutes=15)

    def _spokes(self, *, one_there: bool, since):
        """The first job dispatched, the records on its spoke, and the spokes
        as declared, its spoke listing none of those Jobs but, if
        `one_there`, that one."""
        decision, files, started = _first_dispatched(template_files())
        there = [
            e
            for e in decision.ledger.entries
            if e.spoke == started.spoke and e.phase in ("Planned", "Dispatched")
        ]
        listed = [started.job_key] if one_there else []
        unarrived = {e.job_key: since for e in there if e.job_key not in listed}
        change = {"listed": frozenset(listed), "unarrived": unarrived}
        return started, there, _observed(files, **{started.spoke: change})

    def test_it_is_down_once_the_first_has_waited_requeue_unscheduled(self) -> None:
        started, there, spokes = self._spokes(one_there=False, since=NOW)
        cut = arrivals.unsynced(spokes, now=NOW + timedelta(minutes=16), after=self.AFTER)
        state = cut[started.spoke]
        assert not state.up and state.down_since == NOW + self.AFTER
        assert state.reason == (
            f"Argo CD has not applied rendered/{started.spoke}/ there: none of the Jobs the "
            "branch held for it was there at 2026-11-22T02:16:00Z; does an Application sync "
            "that directory to it? It is tried again at 2026-11-22T03:16:00Z, or once one of "
            "them is there"
        )
        assert len(there) > 1
        # What it reported of its Jobs still holds: they are requeued as before.
        assert state.unarrived == spokes[started.spoke].unarrived
        assert all(cut[n] == s for n, s in spokes.items() if n != started.spoke)
        sooner = arrivals.unsynced(spokes, now=NOW + timedelta(minutes=14), after=self.AFTER)
        assert sooner == spokes
        assert arrivals.unsynced(spokes, now=NOW + timedelta(days=1), after=None) == spokes

    def test_a_job_argo_cd_tried_to_apply_there_is_that_jobs_trouble(self) -> None:
        # Its one Job refused by the spoke's API (a namespace the AppProject
        # does not admit, a webhook): Argo CD syncs the directory.
        started, _, spokes = self._spokes(one_there=False, since=NOW)
        refused = spokes[started.spoke].model_copy(update={"unapplied": {started.job_key: NOW}})
        spokes = {**spokes, started.spoke: refused}
        later = NOW + timedelta(hours=1)
        cut = arrivals.unsynced(spokes, now=later, after=self.AFTER)
        assert cut == spokes and cut[started.spoke].up

    def test_one_job_there_is_enough_to_stay_up(self) -> None:
        started, there, spokes = self._spokes(one_there=True, since=NOW)
        assert len(there) > 1
        later = NOW + timedelta(hours=1)
        cut = arrivals.unsynced(spokes, now=later, after=self.AFTER)
        assert cut == spokes and spokes[started.spoke].unarrived

    def test_jobs_there_show_nothing_where_the_hub_has_no_application_for_it(self) -> None:
        # Its Application deleted on the hub (or left out of the
        # ApplicationSet) after Argo CD had applied some of its Jobs: those
        # stay, and run on, and nothing new comes.
        started, _, spokes = self._spokes(one_there=True, since=NOW)
        spoke = started.spoke
        gone = {**spokes, spoke: spokes[spoke].model_copy(update={"no_application": True})}
        later = NOW + timedelta(minutes=16)
        state = arrivals.unsynced(gone, now=later, after=self.AFTER)[spoke]
        assert not state.up and state.unsynced == _cut(later, 1)
        assert state.reason == (
            f"no Argo CD Caspian reads holds an Application syncing rendered/{spoke}/ (Caspian's "
            "are labelled app.kubernetes.io/part-of=caspian and caspian.dev/spoke), so no Job "
            "the branch holds for it reaches it (found at 2026-11-22T02:16:00Z); add one, as "
            "argocd/applicationset.yaml does (argocd/spoke-application.template.yaml on a "
            "spoke's own Argo CD). It is tried again at 2026-11-22T03:16:00Z, or once an "
            "Application syncs it"
        )
        assert arrivals.unsynced(gone, now=NOW + timedelta(minutes=14), after=self.AFTER) == gone
        # Held, its Jobs there do not end the cut; an Application for it does.
        cut = {spoke: state.unsynced}
        held = arrivals.unsynced(gone, now=later + timedelta(minutes=30), after=self.AFTER, cut=cut)
        assert not held[spoke].up and held[spoke].unsynced == cut[spoke]
        back = arrivals.unsynced(
            spokes, now=later + timedelta(minutes=30), after=self.AFTER, cut=cut
        )
        assert back == spokes

    def test_any_job_of_caspians_there_is_enough_to_stay_up(self) -> None:
        # One the ledger no longer names (its AppWrapper edited since, a new
        # Job in its place) was put there by Argo CD all the same.
        started, _, spokes = self._spokes(one_there=False, since=NOW)
        older = spokes[started.spoke].model_copy(update={"listed": frozenset({"batch/x-0ld"})})
        spokes = {**spokes, started.spoke: older}
        cut = arrivals.unsynced(spokes, now=NOW + timedelta(hours=1), after=self.AFTER)
        assert cut == spokes and spokes[started.spoke].unarrived

    def test_planned_work_leaves_it_after_the_spoke_down_grace(self) -> None:
        decision, files = step(template_files(), now=NOW)
        planned = next(e for e in entries(decision).values() if e.phase == "Planned")
        mine = [e for e in decision.ledger.entries if e.spoke == planned.spoke and e.job_name]
        missing = {e.job_key: NOW for e in mine if e.phase in ("Planned", "Dispatched")}
        spokes = _observed(files, **{planned.spoke: {"listed": frozenset(), "unarrived": missing}})
        later = NOW + timedelta(hours=2)
        cut = arrivals.unsynced(spokes, now=later, after=self.AFTER)
        states = {planned.spoke: cut[planned.spoke].model_dump()}
        moved, _ = step(files, now=later, states=states)
        after = entries(moved)[planned.id]
        assert after.spoke != planned.spoke or after.phase == "Pending"
        assert planned.spoke not in {spoke_of(a.spoke) for a in moved.plan.assignments}


def _cut(start: datetime, hours: float) -> ledger.Cut:
    return ledger.Cut(since=start, until=start + timedelta(hours=hours))


class TestASpokeCutOffAsOneNothingSyncs:
    """Once its Jobs have gone elsewhere, none is there to show that nothing
    syncs it: the last ledger says it was cut off, and it stays so for an
    hour unless a Job of Caspian's is there; cut off again without one there
    between, it stays so twice as long."""

    AFTER = timedelta(minutes=15)

    def _moved_off(self, *, missing_since: datetime | None = None):
        """A spoke, and the template's spokes as declared, each listing
        every Job of Caspian's there: none. Nothing is missing anywhere, as
        where every job has gone elsewhere; or, `missing_since`, on that
        spoke one Job the branch has held for it since then."""
        _, files, started = _first_dispatched(template_files())
        listed = {name: {"listed": frozenset()} for name in ("paris", "frankfurt", "california")}
        if missing_since is not None:
            listed[started.spoke]["unarrived"] = {started.job_key: missing_since}
        return started.spoke, _observed(files, **listed)

    def test_it_stays_cut_off_for_the_hold(self) -> None:
        spoke, spokes = self._moved_off()
        cut = {spoke: _cut(NOW, 1)}
        held = arrivals.unsynced(spokes, now=NOW + timedelta(minutes=40), after=self.AFTER, cut=cut)
        state = held[spoke]
        assert not state.up and state.unsynced == cut[spoke] and state.down_since == NOW
        assert state.reason == (
            f"Argo CD has not applied rendered/{spoke}/ there: none of the Jobs the branch held "
            "for it was there at 2026-11-22T02:00:00Z; does an Application sync that directory "
            "to it? It is tried again at 2026-11-22T03:00:00Z, or once one of them is there"
        )
        assert all(held[n] == s for n, s in spokes.items() if n != spoke)
        # Then it takes work again, to see whether Argo CD syncs it now; the
        # ledger keeps the cut while it is on trial.
        later = arrivals.unsynced(spokes, now=NOW + timedelta(hours=1), after=self.AFTER, cut=cut)
        assert later[spoke] == spokes[spoke].model_copy(update={"unsynced": cut[spoke]})
        assert later[spoke].up and later[spoke].reason == ""
        # Nothing missing there as long again, it is forgotten.
        done = arrivals.unsynced(spokes, now=NOW + timedelta(hours=2), after=self.AFTER, cut=cut)
        assert done == spokes and done[spoke].unsynced is None
        # Never cut off, it is not held.
        assert arrivals.unsynced(spokes, now=NOW, after=self.AFTER) == spokes

    def test_cut_off_again_on_trial_it_waits_twice_as_long(self) -> None:
        # Taken back at 03:00, a Job planned there at 03:05 is missing still
        # a requeueUnscheduled later.
        trial = NOW + timedelta(hours=1, minutes=5)
        spoke, spokes = self._moved_off(missing_since=trial)
        cut = {spoke: _cut(NOW, 1)}
        waiting = arrivals.unsynced(
            spokes, now=trial + timedelta(minutes=14), after=self.AFTER, cut=cut
        )
        assert waiting[spoke].up and waiting[spoke].unsynced == cut[spoke]
        # One planned there late in the trial keeps it on trial past as
        # long as the hold, while its Job may yet come.
        _, lately = self._moved_off(missing_since=NOW + timedelta(hours=1, minutes=55))
        later = NOW + timedelta(hours=2, minutes=5)
        late = arrivals.unsynced(lately, now=later, after=self.AFTER, cut=cut)[spoke]
        assert late.up and late.unsynced == cut[spoke]
        again = trial + timedelta(minutes=16)
        state = arrivals.unsynced(spokes, now=again, after=self.AFTER, cut=cut)[spoke]
        assert not state.up and state.unsynced == _cut(again, 2)
        assert state.down_since == trial + self.AFTER
        assert state.reason.endswith(
            "It is tried again at 2026-11-22T05:21:00Z (2h on: cut off before), or once one "
            "of them is there"
        )
        # Each cut after doubles it, up to a day.
        for hours, then in ((2, 4), (8, 16), (16, 24), (24, 24)):
            last = {spoke: _cut(trial - timedelta(hours=hours), hours)}
            state = arrivals.unsynced(spokes, now=again, after=self.AFTER, cut=last)[spoke]
            assert state.unsynced == _cut(again, then)

    def test_a_job_missing_still_when_the_hold_is_over_renews_the_cut(self) -> None:
        # A job that can go nowhere else stays planned there, missing: the
        # hold over, the cut is made again, and says when it ends now.
        spoke, spokes = self._moved_off(missing_since=NOW - self.AFTER)
        cut = {spoke: _cut(NOW, 1)}
        over = NOW + timedelta(hours=1)
        state = arrivals.unsynced(spokes, now=over, after=self.AFTER, cut=cut)[spoke]
        assert not state.up and state.unsynced == _cut(over, 2)
        assert "It is tried again at 2026-11-22T05:00:00Z (2h on: cut off before)" in state.reason

    def test_a_job_of_it_there_ends_the_cut(self) -> None:
        spoke, spokes = self._moved_off()
        there = spokes[spoke].model_copy(update={"listed": frozenset({"batch/x-0ld"})})
        spokes = {**spokes, spoke: there}
        for cut in (_cut(NOW, 1), _cut(NOW - timedelta(hours=1), 1)):  # held, or on trial
            assert arrivals.unsynced(spokes, now=NOW, after=self.AFTER, cut={spoke: cut}) == spokes

    def test_down_for_another_reason_it_keeps_when_it_was_cut_off(self) -> None:
        spoke, spokes = self._moved_off()
        # Its API does not answer: it lists nothing, not even that it has none.
        gone = spokes[spoke].down("unreachable").model_copy(update={"listed": None})
        spokes = {**spokes, spoke: gone}
        later = NOW + timedelta(hours=3)
        held = arrivals.unsynced(spokes, now=later, after=self.AFTER, cut={spoke: _cut(NOW, 1)})
        assert held[spoke].unsynced == _cut(NOW, 1) and held[spoke].reason == "unreachable"

    def test_the_first_cut_counts_from_the_reconcile_that_made_it(self) -> None:
        # Found missing past requeueUnscheduled at a reconcile two hours on:
        # held an hour from then, not from when it could first have been.
        started, _, spokes = TestASpokeThatHasNoneOfItsJobs()._spokes(one_there=False, since=NOW)
        later = NOW + timedelta(hours=2)
        cut = arrivals.unsynced(spokes, now=later, after=self.AFTER)
        state = cut[started.spoke]
        assert state.unsynced == _cut(later, 1) and state.down_since == NOW + self.AFTER
        kept = {started.spoke: _cut(NOW + timedelta(hours=1, minutes=30), 1)}
        again = arrivals.unsynced(spokes, now=later, after=self.AFTER, cut=kept)
        assert again[started.spoke].unsynced == kept[started.spoke]

    def test_the_ledger_keeps_it_and_leaves_it_out_when_empty(self) -> None:
        decision, _ = step(template_files(), now=NOW)
        assert b"unsynced" not in rendering.render_ledger(decision.ledger)
        kept = decision.ledger.model_copy(update={"unsynced": {"paris": _cut(NOW, 2)}})
        raw = rendering.render_ledger(kept)
        assert (
            b"unsynced:\n  paris:\n    since: '2026-11-22T02:00:00Z'\n"
            b"    until: '2026-11-22T04:00:00Z'\n" in raw
        )
        assert ledger.parse(raw).unsynced == {"paris": _cut(NOW, 2)}
        # The next decision carries what the spokes said into its ledger.
        cut = {"paris": {"unsynced": _cut(NOW, 1), "up": False, "reason": "r"}}
        again, _ = step(template_files(), now=NOW, states=cut)
        assert again.ledger.unsynced == {"paris": _cut(NOW, 1)}

    def test_the_commit_says_when_a_cut_is_made_and_when_it_is_forgotten(self) -> None:
        first, files = step(template_files(), now=NOW)
        held = {"paris": {"unsynced": _cut(NOW, 1), "up": False, "reason": "r"}}
        cut, _ = step(files, now=NOW, states=held)
        assert "cut off: paris (nothing syncs it)" in messages.subject(first.ledger, cut)
        # Held on, or on trial: the same cut, nothing said of it.
        trial = {"paris": {"unsynced": _cut(NOW, 1)}}
        kept, _ = step(files, now=NOW + timedelta(hours=1), states=trial)
        assert "cut" not in messages.subject(cut.ledger, kept)
        later, _ = step(files, now=NOW + timedelta(hours=2))
        assert "forget cut: paris" in messages.subject(kept.ledger, later)
        message = messages.commit_message(old=kept.ledger, decision=later, input_commit="c0")
        assert (
            "\nNo longer cut off as spokes nothing syncs (a Job of Caspian's is there, or none "
            "went missing there for as long as the last hold):\n- paris: cut off from "
            "2026-11-22 02:00 to 2026-11-22 03:00\n"
        ) in message

    def test_a_ledger_that_gave_the_time_alone_held_it_an_hour(self) -> None:
        # As the version before the hold doubled wrote it.
        decision, _ = step(template_files(), now=NOW)
        raw = rendering.render_ledger(decision.ledger)
        body = raw[raw.index(b"\n", raw.index(owned.DIGEST.encode())) + 1 :]
        time_alone = b"unsynced:\n  paris: '2026-11-22T02:00:00Z'\nentries:"
        older = owned.seal(body.replace(b"entries:", time_alone, 1))
        for known in (None, ledger.Records()):  # read whole, or record by record
            assert ledger.parse(older, known=known).unsynced == {"paris": _cut(NOW, 1)}
        garbled = owned.seal(body.replace(b"entries:", time_alone.replace(b"'2026", b"'soon"), 1))
        with pytest.raises(ledger.LedgerError, match="does not parse"):
            ledger.parse(garbled)


def _running(files=None, **policy):
    """A job dispatched at NOW and seen running at NOW+20m; the files then."""
    files = files or template_files()
    if policy:
        doc = yaml.safe_load(files["caspian.yaml"])
        doc["spec"] |= policy
        files = {**files, "caspian.yaml": yaml.safe_dump(doc).encode()}
    _, files, started = _first_dispatched(files)
    seen = {started.spoke: {"jobs": {started.job_key: "Running"}, "listed": {started.job_key}}}
    decision, files = step(files, now=NOW + timedelta(minutes=20), states=seen)
    running = entries(decision)[started.id]
    assert running.phase == "Running"
    return decision, files, running


def _gone(running, **more):
    """Its spoke, listing every Job of Caspian's, lists none: its Job was deleted."""
    return {running.spoke: {"jobs": {}, "listed": frozenset(), **more}}


def _held_then_failed(states, why) -> None:
    """A running job, its spoke reporting `states(running)`: Running until its
    planned end, then failed from it, for `why(running, end)`, as its record
    and the commit say."""
    before, files, running = _running()
    end = running.planned_end
    waiting, _ = step(files, now=end - timedelta(minutes=1), states=states(running))
    assert entries(waiting)[running.id].phase == "Running" and not waiting.left
    decision, _ = step(files, now=end + timedelta(minutes=30), states=states(running))
    failed = entries(decision)[running.id]
    assert failed.phase == "Failed" and failed.finished_at == end
    said = why(running, end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert failed.reason == said and decision.left == {running.id: said}
    message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
    assert f"\n- {running.id} failed on {running.spoke}: {said}; ran " in message


def _run_again(states, when):
    """A running job with one more run allowed, its spoke reporting
    `states(running)` at `when(running)`: run again as a new Job. Its record
    before, and the commit's message."""
    before, files, running = _running(retryLimit=1)
    decision, _ = step(files, now=when(running), states=states(running))
    again = entries(decision)[running.id]
    assert again.retries == 1 and again.job_name == f"{running.job_name}-r1"
    assert again.phase in ("Planned", "Dispatched")
    message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
    return running, message


def _past_its_end(running):
    return running.planned_end + timedelta(minutes=30)


class TestARunningJobThatLeavesItsSpoke:
    def test_it_holds_its_room_until_its_planned_end_then_is_taken_for_failed(self) -> None:
        _held_then_failed(
            _gone,
            lambda running, end: (
                f"its Job {running.job_name} left {running.spoke} before it was seen to finish "
                "(deleted there, with Argo CD's self-heal off?), so it is taken for failed from "
                f"its planned end {end}"
            ),
        )

    def test_one_argo_cd_made_again_runs_on(self) -> None:
        # Self-heal made it again: listed, running past its planned end.
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        back = {running.spoke: {"jobs": {running.job_key: "Running"}, "listed": {running.job_key}}}
        decision, _ = step(files, now=later, states=back)
        assert entries(decision)[running.id].phase == "Running" and not decision.left

    def test_a_spoke_that_does_not_list_every_job_or_is_down_tells_nothing(self) -> None:
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        for states in ({}, {running.spoke: {"jobs": {}}}, _gone(running, up=False)):
            decision, _ = step(files, now=later, states=states)
            assert entries(decision)[running.id].phase == "Running", states

    def test_a_spoke_down_for_want_of_a_sync_tells_where_its_own_api_lists_its_jobs(
        self,
    ) -> None:
        # Cut off as one nothing syncs, or one Argo CD cannot sync: it takes no
        # new work, and what its own API lists holds still. What an
        # Application lists of a spoke it cannot sync may not.
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        down = {"up": False, "reason": "Argo CD cannot sync its Application"}
        for source, phase in (("kube:kind-paris", "Failed"), ("declared+argocd", "Running")):
            for states in (_gone(running, source=source, **down), _suspended_there(running)):
                states[running.spoke] |= {"source": source, **down}
                decision, _ = step(files, now=later, states=states)
                assert entries(decision)[running.id].phase == phase, (source, states)

    def test_its_run_counts_to_the_first_reconcile_that_found_it_gone(self) -> None:
        before, files, running = _running()
        found = running.planned_start + timedelta(hours=1)
        missing, files = step(files, now=found, states=_gone(running))
        marked = entries(missing)[running.id]
        assert marked.phase == "Running" and marked.gone_since == found and not missing.left
        assert "missing: 1 job" in messages.subject(before.ledger, missing)
        message = messages.commit_message(old=before.ledger, decision=missing, input_commit="0")
        assert (
            f"\n- {running.id}: its Job {running.job_name} is missing from {running.spoke}, which "
            "lists Caspian's Jobs (deleted there, with Argo CD's self-heal off?): it keeps its "
            f"room until its planned end {running.planned_end:%Y-%m-%d %H:%M}, then, unless it "
            f"is back, it is taken for failed from {found:%Y-%m-%d %H:%M}\n"
        ) in message
        explained = explaining.explain(missing, marked).notes
        assert f"has been missing from {running.spoke} since {found:%Y-%m-%dT%H:%M:%SZ}" in (
            "\n".join(explained)
        )
        # Found so again: the mark stands, and nothing of it changes.
        again, files = step(files, now=found + timedelta(minutes=30), states=_gone(running))
        assert entries(again)[running.id] == marked
        end = running.planned_end
        failed_then, _ = step(files, now=end + timedelta(minutes=30), states=_gone(running))
        failed = entries(failed_then)[running.id]
        assert failed.phase == "Failed" and failed.finished_at == found
        assert failed.gone_since is None
        assert failed.reason == (
            f"its Job {running.job_name} left {running.spoke} before it was seen to finish "
            "(deleted there, with Argo CD's self-heal off?), so at its planned end "
            f"{end:%Y-%m-%dT%H:%M:%SZ} it is taken for failed from when a reconcile first found "
            f"it missing, {found:%Y-%m-%dT%H:%M:%SZ}"
        )
        # Unmarked (a ledger from before the mark), its run counts to its planned end.
        unmarked, _ = step(_running()[1], now=end + timedelta(minutes=30), states=_gone(running))
        to_the_end = entries(unmarked)[running.id]
        assert to_the_end.finished_at == end
        assert 0 < failed.emitted_grams < to_the_end.emitted_grams / 2

    def test_one_back_before_its_end_is_no_longer_missing(self) -> None:
        _, files, running = _running()
        found = running.planned_start + timedelta(hours=1)
        missing, files = step(files, now=found, states=_gone(running))
        back = {running.spoke: {"jobs": {running.job_key: "Running"}, "listed": {running.job_key}}}
        there, _ = step(files, now=found + timedelta(minutes=30), states=back)
        assert entries(there)[running.id].gone_since is None
        assert "back: 1 job" in messages.subject(missing.ledger, there)
        message = messages.commit_message(old=missing.ledger, decision=there, input_commit="0")
        assert (
            f"\n- {running.id}: its Job {running.job_name} is on {running.spoke} again, missing "
            f"there since {found:%Y-%m-%d %H:%M}\n"
        ) in message

    def test_a_spoke_that_does_not_list_every_job_or_is_down_neither_marks_nor_clears(
        self,
    ) -> None:
        _, unmarked, running = _running()
        found = running.planned_start + timedelta(hours=1)
        _, marked = step(unmarked, now=found, states=_gone(running))
        later = found + timedelta(minutes=30)
        for states in ({}, {running.spoke: {"jobs": {}}}, _gone(running, up=False)):
            for files, mark in ((unmarked, None), (marked, found)):
                decision, _ = step(files, now=later, states=states)
                assert entries(decision)[running.id].gone_since == mark, states

    def test_with_runs_left_it_runs_again_and_the_commit_says_why(self) -> None:
        running, message = _run_again(_gone, _past_its_end)
        assert (
            f"- retried {running.id} (1 of 1): its Job {running.job_name} failed on "
            f"{running.spoke} (its Job {running.job_name} left {running.spoke} before it was "
            "seen to finish (deleted there"
        ) in message


def _suspended_there(running, **more):
    """Its spoke lists its Job suspended and running no pod: suspended there
    after it began (by hand, or by Kueue preempting it)."""
    there = frozenset({running.job_key})
    return {running.spoke: {"jobs": {}, "listed": there, "suspended": there, **more}}


class TestARunningJobSuspendedOnItsSpoke:
    """Its pods are gone and none come until someone resumes it: with Argo
    CD's self-heal off nothing does, and its record would stay Running for
    good, its room held."""

    def test_it_holds_its_room_until_its_planned_end_then_is_taken_for_failed(self) -> None:
        _held_then_failed(
            _suspended_there,
            lambda running, end: (
                f"its Job {running.job_name} was suspended on {running.spoke} after it began "
                "and has run no pod since (suspended there by hand, or preempted by Kueue, with "
                f"Argo CD's self-heal off?), so it is taken for failed from its planned end {end}"
            ),
        )

    def test_where_its_spoke_says_when_it_was_suspended_its_run_counts_to_then(self) -> None:
        # The kube observer reads its Suspended condition.
        _, files, running = _running()
        start, end = running.planned_start, running.planned_end
        at = start + timedelta(hours=1)
        stamp = f"{at:%Y-%m-%dT%H:%M:%SZ}"
        for when, counted in ((at, at), (end + timedelta(minutes=5), end)):
            states = _suspended_there(running, suspended_at={running.job_key: when})
            decision, _ = step(files, now=end + timedelta(minutes=30), states=states)
            failed = entries(decision)[running.id]
            assert (failed.phase, failed.finished_at) == ("Failed", counted), when
        # Only from its planned end: it may be resumed until then.
        states = _suspended_there(running, suspended_at={running.job_key: at})
        waiting, _ = step(files, now=end - timedelta(minutes=1), states=states)
        assert entries(waiting)[running.id].phase == "Running"
        decision, _ = step(files, now=end, states=states)
        assert decision.left[running.id] == (
            f"its Job {running.job_name} was suspended on {running.spoke} at {stamp} after it "
            "began and has run no pod since (suspended there by hand, or preempted by Kueue, "
            f"with Argo CD's self-heal off?), so at its planned end {end:%Y-%m-%dT%H:%M:%SZ} it "
            f"is taken for failed from {stamp}"
        )

    def test_one_that_ran_a_pod_before_is_too(self) -> None:
        # The kube observer calls it Running: it has run a pod (or its pods
        # are ending still).
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        states = _suspended_there(running, jobs={running.job_key: "Running"})
        decision, _ = step(files, now=later, states=states)
        assert entries(decision)[running.id].phase == "Failed" and running.id in decision.left

    def test_one_resumed_again_or_ended_there_is_not(self) -> None:
        # Resumed (by self-heal, or Kueue admitting it again) it runs on past
        # its planned end; one that ended is read as it ended.
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        resumed = {"jobs": {running.job_key: "Running"}, "suspended": frozenset()}
        ended = {"jobs": {running.job_key: "Succeeded"}}
        for phase, states in (("Running", resumed), ("Succeeded", ended)):
            decision, _ = step(files, now=later, states=_suspended_there(running, **states))
            assert entries(decision)[running.id].phase == phase and not decision.left

    def test_a_spoke_that_is_down_tells_nothing(self) -> None:
        _, files, running = _running()
        later = running.planned_end + timedelta(minutes=30)
        decision, _ = step(files, now=later, states=_suspended_there(running, up=False))
        assert entries(decision)[running.id].phase == "Running"

    def test_one_its_appwrapper_holds_now_is_recorded_as_held(self) -> None:
        # Suspended by hand there and in git at once: the AppWrapper's word goes.
        _, files, running = _running()
        doc = yaml.safe_load(files[running.source])
        doc["spec"]["suspend"] = True
        files = {**files, running.source: yaml.safe_dump(doc).encode()}
        later = running.planned_end + timedelta(minutes=30)
        for states in (_suspended_there(running), _gone(running)):
            decision, _ = step(files, now=later, states=states)
            assert entries(decision)[running.id].phase == "Suspended" and not decision.left

    def test_with_runs_left_it_runs_again(self) -> None:
        running, message = _run_again(_suspended_there, _past_its_end)
        assert f"its Job {running.job_name} was suspended on {running.spoke} after it" in message


def _stranded(running, since, **more):
    """Its spoke lists its Job, called Running still, with no pod on a node
    since `since`, the scheduler finding none: its node went."""
    there = {running.job_key}
    return {
        running.spoke: {
            "jobs": {running.job_key: "Running"},
            "listed": there,
            "nodeless": {running.job_key: since},
            "said": {running.job_key: "0/3 nodes are available: 3 Insufficient cpu."},
            **more,
        }
    }


class TestARunningJobWhosePodsLoseTheirNode:
    """Its node is drained or fails, or a spot instance is taken back, and no
    room is left for its pods there: nothing moves a Job that has run, so it
    would wait there for good, its room held, making no headway."""

    def test_after_requeue_unscheduled_it_is_taken_for_failed_from_when_it_lost_them(
        self,
    ) -> None:
        before, files, running = _running()
        lost = running.planned_start + timedelta(hours=1)
        assert lost + timedelta(minutes=15) < running.planned_end
        states = _stranded(running, lost)
        waiting, _ = step(files, now=lost + timedelta(minutes=14), states=states)
        assert entries(waiting)[running.id].phase == "Running" and not waiting.left
        decision, _ = step(files, now=lost + timedelta(minutes=15), states=states)
        failed = entries(decision)[running.id]
        assert failed.phase == "Failed" and failed.finished_at == lost
        said = (
            f"its Job {running.job_name} has had no pod on a node on {running.spoke} since "
            f"{lost:%Y-%m-%dT%H:%M:%SZ}, the scheduler finding none (its nodes gone: drained, "
            "failed, or a spot instance taken back?), for longer than the policy's "
            f"requeueUnscheduled 15m, so it is taken for failed from {lost:%Y-%m-%dT%H:%M:%SZ}"
        )
        assert failed.reason == said and decision.left == {running.id: said}
        message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
        assert f"\n- {running.id} failed on {running.spoke}: {said}; ran 1h" in message

    def test_its_run_counts_from_its_start_to_its_planned_end_at_most(self) -> None:
        # Its pods lost their node past its planned end, or waited for one
        # since before it began (one of two, the other ran and ended).
        _, files, running = _running()
        start, end = running.planned_start, running.planned_end
        for lost, ended in ((end + timedelta(hours=1), end), (start - timedelta(hours=1), start)):
            now = max(lost, start) + timedelta(hours=2)
            decision, _ = step(files, now=now, states=_stranded(running, lost))
            failed = entries(decision)[running.id]
            assert (failed.phase, failed.finished_at) == ("Failed", ended), lost

    def test_one_dispatched_is_too_where_its_spoke_says_it_began_there(self) -> None:
        # No reconcile saw it run before its node went.
        _, files, started = _first_dispatched(template_files())
        lost = started.planned_start + timedelta(minutes=30)
        later = lost + timedelta(minutes=20)
        for said, phase in (({started.job_key: "Running"}, "Failed"), ({}, "Dispatched")):
            states = _stranded(started, lost, jobs=said)
            decision, _ = step(files, now=later, states=states)
            assert entries(decision)[started.id].phase == phase, said

    def test_pods_that_find_a_node_again_or_a_policy_that_leaves_them_run_on(self) -> None:
        later = timedelta(hours=1)
        _, files, running = _running()
        lost = running.planned_start + timedelta(minutes=30)
        found = _stranded(running, lost, nodeless={})
        decision, _ = step(files, now=lost + later, states=found)
        assert entries(decision)[running.id].phase == "Running" and not decision.left
        _, files, running = _running(requeueUnscheduled=None)
        past_end = running.planned_end + later
        decision, _ = step(files, now=past_end, states=_stranded(running, lost))
        assert entries(decision)[running.id].phase == "Running" and not decision.left
        # As `explain` says.
        assert decision.stuck[running.id].endswith(
            "(its nodes gone?): the policy's requeueUnscheduled is null, so it waits there"
        )

    def test_a_spoke_that_is_down_tells_nothing_but_one_listing_its_own_jobs(self) -> None:
        _, files, running = _running()
        lost = running.planned_start + timedelta(minutes=30)
        down = {"up": False, "reason": "Argo CD cannot sync its Application"}
        for source, phase in (("kube:kind-paris", "Failed"), ("declared+argocd", "Running")):
            states = _stranded(running, lost, source=source, **down)
            decision, _ = step(files, now=lost + timedelta(hours=1), states=states)
            assert entries(decision)[running.id].phase == phase, source

    def test_with_runs_left_it_runs_again_and_the_commit_quotes_the_scheduler(self) -> None:
        def lost(running):
            return running.planned_start + timedelta(minutes=30)

        running, message = _run_again(
            lambda running: _stranded(running, lost(running)),
            lambda running: lost(running) + timedelta(hours=1),
        )
        assert (
            f"- retried {running.id} (1 of 1): its Job {running.job_name} failed on "
            f'{running.spoke} ({running.spoke} says: "0/3 nodes are available: 3 Insufficient '
            f'cpu."; its Job {running.job_name} has had no pod on a node on {running.spoke}'
        ) in message


def _held_suspended(decision, files, started):
    """The spokes as declared, that of `started` holding every Job the branch
    holds for it suspended, as before their start: Argo CD applied them then,
    and none of the resumes since."""
    there = [
        e.job_key
        for e in decision.ledger.entries
        if e.spoke == started.spoke and e.phase in ("Planned", "Dispatched")
    ]
    change = {"listed": frozenset(there), "suspended": frozenset(there)}
    return _observed(files, **{started.spoke: change})


class TestADispatchedJobItsSpokeHoldsSuspended:
    """Argo CD applied the Job suspended, as planned, and not its resume (its
    Application does not sync on its own, or someone suspended it there by
    hand): it waits as one never applied, then goes elsewhere."""

    def test_only_a_dispatched_job_whose_file_is_resumed_is_waiting(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        spokes = _held_suspended(decision, files, started)
        path = job_path(started)
        assert b"suspend: false" in files[path]
        found = arrivals.unresumed(decision.ledger.entries, spokes, files=files)
        there = [e for e in decision.ledger.entries if e.spoke == started.spoke]
        # The planned ones there are suspended as they should be.
        assert {e.phase for e in there} == {"Planned", "Dispatched"}
        assert found == {job_path(e): e for e in there if e.phase == "Dispatched"}
        assert found[path] == started
        # A file the branch keeps suspended (its AppWrapper broken, say) is not resumed.
        kept = {**files, path: files[path].replace(b"suspend: false", b"suspend: true")}
        assert path not in arrivals.unresumed(decision.ledger.entries, spokes, files=kept)
        # Nor is a planned one's, whatever its file holds: it need not run yet.
        planned = next(e for e in there if e.phase == "Planned")
        resumed = {
            **files,
            job_path(planned): files[job_path(planned)].replace(
                b"suspend: true", b"suspend: false"
            ),
        }
        assert job_path(planned) not in arrivals.unresumed(
            decision.ledger.entries, spokes, files=resumed
        )
        assert not arrivals.unresumed(decision.ledger.entries, spokes, files={})
        # A spoke that is down, or does not hold it suspended, tells nothing.
        down = {n: s.model_copy(update={"up": False}) for n, s in spokes.items()}
        assert not arrivals.unresumed(decision.ledger.entries, down, files=files)
        resumed = _observed(files, **{started.spoke: {"listed": frozenset([started.job_key])}})
        assert not arrivals.unresumed(decision.ledger.entries, resumed, files=files)

    def test_it_is_requeued_after_the_policys_requeue_unscheduled(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        held = _held_suspended(decision, files, started)[started.spoke]
        waiting = {
            started.spoke: {
                "listed": held.listed,
                "suspended": held.suspended,
                "unresumed": {started.job_key: NOW},
            }
        }
        early, _ = step(files, now=NOW + timedelta(minutes=10), states=waiting)
        assert entries(early)[started.id] == started and not early.requeued
        hint = (
            f"({started.spoke} holds Job {started.job_key} suspended, as the branch held it "
            f"before its start: does the Argo CD Application of rendered/{started.spoke}/ "
            "sync it on its own (syncPolicy.automated), or was it suspended there by hand, or "
            "by Kueue (which holds a Job it manages until it admits it: "
            "manageJobsWithoutQueueName)?)"
        )
        assert early.stuck[started.id] == (
            f"its Job has not been resumed on {started.spoke} since 2026-11-22T02:00:00Z "
            f"{hint}: it is requeued at 2026-11-22T02:15:00Z unless it starts"
        )
        later, _ = step(files, now=NOW + timedelta(minutes=20), states=waiting)
        entry = entries(later)[started.id]
        assert entry.spoke != started.spoke and entry.phase in ("Planned", "Dispatched")
        assert_valid_plan(later.instance, later.plan)
        assert later.requeued[started.id].reason == (
            f"its Job has not been resumed on {started.spoke} from 2026-11-22T02:00:00Z to "
            "2026-11-22T02:20:00Z, more than the policy's requeueUnscheduled 15m: its Job "
            f"there never ran, and goes {hint}"
        )
        # Suspended and listed, without the branch's word on its resume, it waits.
        quiet = {
            started.spoke: {k: v for k, v in waiting[started.spoke].items() if k != "unresumed"}
        }
        unsaid, _ = step(files, now=NOW + timedelta(hours=3), states=quiet)
        assert entries(unsaid)[started.id] == started and not unsaid.requeued

    def test_it_counts_from_the_end_of_a_sync_window_and_the_metric_counts_it(self) -> None:
        decision, files, started = _first_dispatched(template_files())
        spokes = _held_suspended(decision, files, started)
        path = job_path(started)
        window = SyncWindow(
            project="jobs", kind="deny", schedule="0 2 * * *", duration=timedelta(hours=1)
        )
        barred = {
            n: s.model_copy(update={"sync_windows": (window,)} if n == started.spoke else {})
            for n, s in spokes.items()
        }
        now = NOW + timedelta(minutes=80)
        noted = arrivals.noted(
            barred, {path: started}, held_since={path: NOW}, now=now, field="unresumed"
        )
        assert noted[started.spoke].unresumed == {started.job_key: NOW + timedelta(hours=1)}
        assert not noted[started.spoke].unarrived
        assert arrivals.overdue(noted, now=now, after=timedelta(minutes=10), field="unresumed") == {
            started.spoke: 1
        }
        assert arrivals.overdue(noted, now=now, after=timedelta(minutes=30), field="unresumed") == {
            started.spoke: 0
        }


@pytest.mark.parametrize(
    ("waiting", "not_said"), [("unarrived", "has not appeared"), ("unresumed", "not been resumed")]
)
def test_argo_cds_own_word_on_a_job_it_could_not_apply_goes_first(waiting, not_said) -> None:
    _, files, started = _first_dispatched(template_files())
    said = "admission webhook denied the request"
    both = {
        started.spoke: {
            waiting: {started.job_key: NOW},
            "unapplied": {started.job_key: NOW},
            "said": {started.job_key: said},
        }
    }
    later, _ = step(files, now=NOW + timedelta(minutes=20), states=both)
    why = later.requeued[started.id].reason
    assert why.startswith(f"Argo CD could not apply its Job on {started.spoke} from ")
    assert said in why and not_said not in why
