"""Argo CD's sync windows, read from an AppProject as the hub hands it back:
which apply to a spoke's Application, and when they keep Argo CD from
syncing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler import arrivals, messages
from reconciler.fleet import Span
from reconciler.pods import Node, Resources, Taint
from reconciler.rendering import job_path
from reconciler.syncwindows import SyncWindow, applying, barred, barred_until, open_since
from reconciler.templates import template_files
from tests.conftest import NOW, assert_valid_plan
from tests.reconcile.test_lifecycle import entries, step

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def at(hour: float, *, day: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour)


def project(*windows: dict) -> dict:
    return {"metadata": {"name": "caspian-jobs"}, "spec": {"syncWindows": list(windows)}}


def application(name="caspian-paris", *, namespace="batch", cluster="paris", server=None) -> dict:
    destination = {"namespace": namespace, "name": cluster}
    if server:
        destination = {"namespace": namespace, "server": server}
    return {
        "metadata": {"name": name},
        "spec": {"project": "caspian-jobs", "destination": destination},
    }


def window(kind="deny", schedule="0 9 * * *", duration="2h", **more) -> dict:
    return {"kind": kind, "schedule": schedule, "duration": duration, **more}


def spans(found: tuple[Span, ...]) -> list[tuple[datetime, datetime]]:
    return [(span.start, span.end) for span in found]


class TestWhichApply:
    @pytest.mark.parametrize(
        "selector",
        [
            {"applications": ["caspian-*"]},
            {"namespaces": ["batch"]},
            {"clusters": ["par*"]},
            {"applications": ["other"], "clusters": ["paris"]},
        ],
    )
    def test_a_window_applies_where_a_pattern_matches(self, selector) -> None:
        found, problems = applying(project(window(**selector)), application())
        assert [w.schedule for w in found] == ["0 9 * * *"] and problems == []

    @pytest.mark.parametrize(
        "pattern, matched",
        [
            ("{paris,frankfurt}", {"paris", "frankfurt"}),
            ("{par,fra}*", {"paris", "frankfurt"}),
            ("[!f]*", {"paris", "california"}),
            ("[a-f]*", {"california", "frankfurt"}),
            ("?aris", {"paris"}),
            ("pari\\s", {"paris"}),
            ("pari\\*", set()),  # a star escaped is a star
            ("[paris", set()),  # Argo CD's glob does not compile it: no match
            ("{paris,frankfurt", set()),
            ("*", {"paris", "frankfurt", "california"}),
        ],
    )
    def test_patterns_are_read_as_argo_cds_glob_reads_them(self, pattern, matched) -> None:
        found = {
            spoke
            for spoke in ("paris", "frankfurt", "california")
            if applying(project(window(clusters=[pattern])), application(cluster=spoke))[0]
        }
        assert found == matched

    def test_a_cluster_matches_by_its_server_too(self) -> None:
        app = application(server="https://paris.example:6443")
        found, _ = applying(project(window(clusters=["https://paris*"])), app)
        assert len(found) == 1
        # Not by the name it does not give, even to "*".
        app["spec"]["destination"]["name"] = ""
        assert applying(project(window(clusters=["*", "https://paris*"])), app)[0]
        app["spec"]["destination"]["server"] = ""
        assert applying(project(window(clusters=["*"])), app) == ((), [])

    @pytest.mark.parametrize(
        "selector",
        [
            {"applications": ["caspian-frankfurt"]},
            {"namespaces": ["media"], "clusters": ["frankfurt"]},
            {},  # a window that names nothing applies to nothing
            {"applications": ["caspian-*"], "namespaces": ["media"], "andOperator": True},
        ],
    )
    def test_a_window_that_matches_nothing_of_it_does_not_apply(self, selector) -> None:
        assert applying(project(window(**selector)), application()) == ((), [])

    def test_with_and_each_list_must_match(self) -> None:
        selector = {"applications": ["caspian-*"], "namespaces": ["batch"], "andOperator": True}
        found, _ = applying(project(window(**selector)), application())
        assert len(found) == 1

    def test_what_it_reads_of_a_window(self) -> None:
        found, _ = applying(
            project(
                window(
                    "allow",
                    "30 22 * * 1-5",
                    "1h30m",
                    timeZone="Europe/Paris",
                    description="nightly\nchanges",
                    namespaces=["*"],
                )
            ),
            application(),
        )
        assert found == (
            SyncWindow(
                project="caspian-jobs",
                kind="allow",
                schedule="30 22 * * 1-5",
                duration=timedelta(hours=1, minutes=30),
                time_zone="Europe/Paris",
                description="nightly changes",
            ),
        )
        assert found[0].describe() == (
            "AppProject caspian-jobs's allow window '30 22 * * 1-5' for 1h30m "
            "(Europe/Paris): nightly changes"
        )

    @pytest.mark.parametrize(
        "bad, why",
        [
            (window(kind="block"), "kind 'block' is neither allow nor deny"),
            (window(schedule="at nine"), "'at nine' is not a cron schedule"),
            (window(duration="2 hours"), "'2 hours' is not a duration as Go writes one"),
            (window(duration="0"), "duration '0' is not longer than zero"),
            (window(timeZone="Mars/Olympus"), "'Mars/Olympus' is no IANA time zone"),
            ({"kind": "deny"}, "it needs a schedule and a duration"),
        ],
    )
    def test_a_window_it_cannot_read_is_passed_over_and_named(self, bad, why) -> None:
        bad = {**bad, "applications": ["*"]}
        found, problems = applying(project(bad, window(applications=["*"])), application())
        assert len(found) == 1
        assert len(problems) == 1
        assert problems[0].startswith(
            "AppProject caspian-jobs: spec.syncWindows[0] is passed over: "
        )
        assert why in problems[0]

    @pytest.mark.parametrize(
        "garbled",
        [None, [], "text", {"spec": {"syncWindows": "all"}}, {"spec": {"syncWindows": [7]}}],
    )
    def test_a_garbled_project_has_no_windows(self, garbled) -> None:
        assert applying(garbled, application()) == ((), [])


def read(*windows: dict) -> tuple[SyncWindow, ...]:
    found, problems = applying(project(*windows), application())
    assert not problems
    return found


class TestWhenBarred:
    def test_a_deny_window_bars_while_it_is_on(self) -> None:
        found = barred(read(window(applications=["*"])), at(0), at(0, day=2))
        assert spans(found) == [(at(9), at(11)), (at(9, day=1), at(11, day=1))]
        assert found[0].reason == "AppProject caspian-jobs's deny window '0 9 * * *' for 2h (UTC)"

    def test_with_allow_windows_it_bars_all_but_them(self) -> None:
        found = barred(read(window("allow", "0 22 * * *", "4h", applications=["*"])), at(0), at(24))
        # The window that began at 22:00 the day before is on until 02:00.
        assert spans(found) == [(at(2), at(22))]
        assert found[0].reason.startswith("outside AppProject caspian-jobs's allow window")

    def test_a_deny_window_wins_over_an_allow_window(self) -> None:
        windows = read(
            window("allow", "0 0 * * *", "12h", applications=["*"]),
            window("deny", "0 10 * * *", "1h", applications=["*"]),
        )
        assert spans(barred(windows, at(0), at(24))) == [(at(10), at(11)), (at(12), at(24))]

    def test_windows_that_overlap_or_touch_are_one_and_name_each(self) -> None:
        windows = read(
            window(schedule="0 9 * * *", duration="2h", applications=["*"]),
            window(schedule="0 11 * * *", duration="1h", applications=["*"], description="b"),
        )
        found = barred(windows, at(0), at(24))
        assert spans(found) == [(at(9), at(12))]
        assert found[0].reason.endswith(
            "; AppProject caspian-jobs's deny window '0 11 * * *' for 1h (UTC): b"
        )

    def test_a_window_is_read_in_its_time_zone(self) -> None:
        # 09:00 in Paris is 08:00 UTC in November.
        windows = read(window(timeZone="Europe/Paris", applications=["*"]))
        assert spans(barred(windows, at(0), at(24))) == [(at(8), at(10))]

    def test_a_deny_window_is_given_whole_and_allow_gaps_within_the_times_asked(self) -> None:
        windows = read(window(applications=["*"]))
        assert spans(barred(windows, at(10), at(10.5))) == [(at(9), at(11))]
        allow = read(window("allow", "0 12 * * *", "1h", applications=["*"]))
        assert spans(barred(allow, at(10), at(14))) == [(at(10), at(12)), (at(13), at(14))]

    def test_no_window_bars_nothing(self) -> None:
        assert barred((), at(0), at(24)) == ()


def counted(windows: tuple[SyncWindow, ...], since: datetime, *, now: datetime):
    """From when a file held since `since` counts as Argo CD's to apply."""
    return open_since(barred_until(windows, since, now=now), since, now=now)


class TestOpenSince:
    def test_while_barred_a_file_has_waited_for_nothing(self) -> None:
        windows = read(window(applications=["*"]))
        assert counted(windows, at(8), now=at(10)) is None
        # Held from the very moment asked, in a window on then.
        assert counted(windows, at(10), now=at(10)) is None

    def test_after_a_window_it_counts_from_the_window_end(self) -> None:
        windows = read(window(applications=["*"]))
        assert counted(windows, at(8), now=at(12)) == at(11)
        assert counted(windows, at(8), now=at(12, day=1)) == at(11, day=1)

    def test_a_window_before_the_file_changes_nothing(self) -> None:
        windows = read(window(applications=["*"]))
        assert counted(windows, at(11.5), now=at(12)) == at(11.5)
        # Nor one the spoke's first file was held through, for a later file.
        spans = barred_until(windows, at(8), now=at(12))
        assert open_since(spans, at(11.5), now=at(12)) == at(11.5)

    def test_outside_its_allow_windows_it_waits(self) -> None:
        windows = read(window("allow", "0 22 * * *", "1h", applications=["*"]))
        assert counted(windows, at(8), now=at(12)) is None
        assert counted(windows, at(8), now=at(22.5)) == at(22)


class TestPlanning:
    """What `decide` makes of a spoke's windows, as the observer reports them."""

    def test_no_pool_of_the_spoke_takes_a_start_in_a_slot_a_window_overlaps(self) -> None:
        gpu_taint = Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")
        cpu_size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=0)
        gpu_size = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=4)
        nodes = (
            *(Node(allocatable=cpu_size, free=cpu_size),) * 2,
            *(Node(allocatable=gpu_size, taints=(gpu_taint,), free=gpu_size),) * 2,
        )
        # 04:10 to 04:40 on 2026-11-22 (NOW is 02:00): three slots of 15 minutes.
        deny = read(window(schedule="10 4 * * *", duration="30m", applications=["*"]))
        paris = {"cpu": 128, "gpu": 8, "nodes": nodes, "sync_windows": deny}
        decision, _ = step(template_files(), now=NOW, states={"paris": paris})
        pools = [s for s in decision.instance.spokes if s.name.startswith("paris")]
        first = decision.window.slot_of(NOW.replace(hour=4))
        assert len(pools) == 2
        assert all(pool.closed_starts == (first, first + 1, first + 2) for pool in pools)
        assert all(s.closed_starts == () for s in decision.instance.spokes if s not in pools)
        # Room is as it was: what runs there runs on through the window.
        assert all(pool.cpu[first] > 0 for pool in pools)
        assert_valid_plan(decision.instance, decision.plan)
        assert [(s.start, s.end) for s in decision.sync_barred["paris"]] == [
            (NOW.replace(hour=4, minute=10), NOW.replace(hour=4, minute=40))
        ]

    def test_planned_work_starts_outside_the_windows_and_may_run_across_them(self) -> None:
        _, files = step(template_files(), now=NOW)
        # Deny syncing paris from 02:30 on, every hour but the first half of each.
        deny = read(window(schedule="30 * * * *", duration="30m", applications=["*"]))
        later = NOW + timedelta(minutes=5)
        decision, _ = step(files, now=later, states={"paris": {"sync_windows": deny}})
        placed = [
            e
            for e in entries(decision).values()
            if e.spoke == "paris" and e.phase == "Planned" and e.planned_start is not None
        ]
        assert placed, "paris keeps planned work"
        assert all(e.planned_start.minute < 30 for e in placed)
        assert any(e.planned_end - e.planned_start > timedelta(minutes=30) for e in placed)
        # Without the windows, some start in a second half-hour.
        free, _ = step(files, now=later)
        assert any(
            e.planned_start.minute >= 30
            for e in entries(free).values()
            if e.spoke == "paris" and e.phase == "Planned" and e.planned_start is not None
        )

    def test_a_job_due_now_where_a_window_bars_syncing_now_is_planned_again(self) -> None:
        # A change freeze announced after it was planned: dispatched there
        # now, its Job would wait for the window, and the next reconcile
        # would requeue it for its deadline. It is planned again at once.
        first, files = step(template_files(), now=NOW)
        planned = next(
            e
            for e in entries(first).values()
            if e.spoke == "paris" and e.phase == "Planned" and e.planned_start > NOW
        )
        start = planned.planned_start
        at = start + timedelta(minutes=5)
        freeze = f"{start.minute} {start.hour} * * *"
        deny = read(window(schedule=freeze, duration="3h", applications=["*"]))
        decision, after = step(files, now=at, states={"paris": {"sync_windows": deny}})
        entry = entries(decision)[planned.id]
        assert (entry.spoke, entry.planned_start) != ("paris", start), entry
        assert entry.spoke != "paris" or entry.planned_start >= start + timedelta(hours=3)
        assert_valid_plan(decision.instance, decision.plan)
        again, same = step(after, now=at, states={"paris": {"sync_windows": deny}})
        assert again.ledger == decision.ledger and same == after
        # Without the window it is dispatched where it was planned.
        free, _ = step(files, now=at)
        dispatched = entries(free)[planned.id]
        assert (dispatched.phase, dispatched.spoke, dispatched.planned_start) == (
            "Dispatched",
            "paris",
            start,
        )

    def test_the_commit_names_the_windows_in_the_horizon_five_a_spoke_at_most(self) -> None:
        before, files = step(template_files(), now=NOW)
        often = read(window(schedule="0 */2 * * *", duration="10m", applications=["*"]))
        decision, _ = step(files, now=NOW, states={"frankfurt": {"sync_windows": often}})
        message = messages.commit_message(old=before.ledger, decision=decision, input_commit="0")
        said = "(AppProject caspian-jobs's deny window '0 */2 * * *' for 10m (UTC))"
        assert (
            "\nSync windows (Argo CD does not sync there; nothing starts there then):\n"
            f"- frankfurt: 2026-11-22 02:00 to 2026-11-22 02:10 {said}\n"
            f"- frankfurt: 2026-11-22 04:00 to 2026-11-22 04:10 {said}\n"
        ) in message
        assert "\n- frankfurt: and 7 more in the horizon\n" in message
        quiet, _ = step(files, now=NOW)
        assert "Sync windows" not in messages.commit_message(
            old=before.ledger, decision=quiet, input_commit="0"
        )


class TestADispatchedJobHeldByAWindow:
    """Its Job not on its spoke yet, while a window bars Argo CD from syncing
    it: it waits for the window's end, unless it would then miss its
    deadline and another spoke may take it now."""

    def held(self, hours: float, *, at_minutes: int = 20, others: dict | None = None, **more):
        """The first job dispatched at NOW on its spoke, which a deny window
        from 02:00 for `hours` bars while its Job is not there, reconciled
        `at_minutes` after NOW, the other spokes reporting `others`."""
        from tests.reconcile.test_unarrived import _first_dispatched

        _, files, started = _first_dispatched(template_files())
        minutes = round(hours * 60)
        deny = read(window(schedule="0 2 * * *", duration=f"{minutes}m", applications=["*"]))
        state = {
            "sync_windows": deny,
            "listed": frozenset(),
            "held_back": {started.job_key: NOW},
            **more,
        }
        now = NOW + timedelta(minutes=at_minutes)
        rest = {name: others for name in ("paris", "frankfurt", "california") if others}
        decision, _ = step(files, now=now, states={**rest, started.spoke: state})
        return started, decision

    def test_it_goes_where_it_can_start_now_when_the_wait_would_make_it_late(self) -> None:
        started, decision = self.held(12)
        # finetune-llm: four hours, due at 14:00; paris barred until 14:00.
        assert (started.planned_end - started.planned_start, started.deadline) == (
            timedelta(hours=4),
            NOW.replace(hour=14),
        )
        entry = entries(decision)[started.id]
        assert entry.spoke != started.spoke and entry.phase == "Dispatched"
        # No try there: it may go back once the windows end.
        assert entry.requeued_from == () and started.id not in decision.kept_off
        assert decision.requeued[started.id].reason == (
            f"Argo CD may not sync {started.spoke} until 2026-11-22T14:00:00Z (AppProject "
            "caspian-jobs's deny window '0 2 * * *' for 12h (UTC)), and its Job, not there yet, "
            "would then end after its deadline 2026-11-22T14:00:00Z: it is planned where it "
            "can start sooner"
        )
        assert_valid_plan(decision.instance, decision.plan)

    def test_windows_that_run_on_past_five_weeks_are_said_to(self) -> None:
        # A window a day, every day: one barred time as far as Caspian looks.
        started, decision = self.held(24)
        why = decision.requeued[started.id].reason
        assert why.startswith(f"Argo CD may not sync {started.spoke} for five weeks or more (")

    def test_it_waits_where_it_would_still_end_in_time(self) -> None:
        # Barred until 10:00: ending at 14:00, it meets its deadline.
        started, decision = self.held(8)
        assert entries(decision)[started.id] == started and not decision.requeued

    def test_it_waits_where_the_window_ends_too_soon_to_be_sure_argo_cd_reads_it_went(
        self,
    ) -> None:
        # Barred until 14:00, reconciled at 13:55: Argo CD may sync before it reads it went.
        started, decision = self.held(12, at_minutes=60 * 12 - 5)
        assert entries(decision)[started.id].spoke == started.spoke and not decision.requeued

    def test_it_waits_where_its_job_is_there_or_no_other_spoke_may_take_it(self) -> None:
        started, decision = self.held(12, held_back={})
        assert entries(decision)[started.id] == started and not decision.requeued
        started, decision = self.held(12, others={"up": False, "reason": "no answer"})
        assert entries(decision)[started.id] == started and not decision.requeued

    def test_the_spokes_report_holds_it_back_while_the_window_is_on(self) -> None:
        from tests.reconcile.test_unarrived import _first_dispatched, _observed

        _, files, started = _first_dispatched(template_files())
        deny = read(window(schedule="0 2 * * *", duration="3h", applications=["*"]))
        spokes = _observed(files, **{started.spoke: {"sync_windows": deny}})
        path = job_path(started)
        since = NOW - timedelta(minutes=5)
        for now, counted, held in (
            (NOW + timedelta(hours=1), {}, {started.job_key: since}),
            (NOW + timedelta(hours=4), {started.job_key: NOW + timedelta(hours=3)}, {}),
        ):
            noted = arrivals.noted(spokes, {path: started}, held_since={path: since}, now=now)
            assert (noted[started.spoke].unarrived, noted[started.spoke].held_back) == (
                counted,
                held,
            )


class TestWhatCaspianSpokesSays:
    """`caspian spokes`' line on when Argo CD next does not sync a spoke."""

    def line(self, *windows: dict, now: datetime) -> str:
        from reconciler.decisions import SpokeState
        from reconciler.survey import _sync_windows

        state = SpokeState(name="paris", cpu=1, memory_bytes=1, gpu=0, sync_windows=read(*windows))
        return _sync_windows(state, now=now)

    def test_the_next_barred_time_or_the_one_on_now(self) -> None:
        nine = window(schedule="0 9 * * *", duration="2h", applications=["*"])
        assert self.line(nine, now=at(8)) == (
            "Argo CD does not sync it from 2026-11-23T09:00:00Z to 2026-11-23T11:00:00Z "
            "(AppProject caspian-jobs's deny window '0 9 * * *' for 2h (UTC)): nothing is "
            "planned to start there then"
        )
        assert self.line(nine, now=at(10)).startswith(
            "Argo CD does not sync it now, until 2026-11-23T11:00:00Z ("
        )

    def test_a_window_past_the_next_five_weeks_bars_nothing_yet(self) -> None:
        # Each 1 June: from 23 November, 190 days off.
        yearly = window(schedule="0 0 1 6 *", duration="24h", applications=["*"])
        assert self.line(yearly, now=at(8)) == (
            "its AppProject's sync windows do not bar syncing it in the next five weeks"
        )
        assert self.line(yearly, now=datetime(2027, 5, 20, tzinfo=UTC)).startswith(
            "Argo CD does not sync it from 2027-06-01T00:00:00Z to 2027-06-02T00:00:00Z"
        )
