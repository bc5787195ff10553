"""A reconcile against a real bare repo: what it commits, and what it never does."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

from reconciler.decisions import SpokeState
from reconciler.fleet import FleetConfigError
from reconciler.gitrepo import FleetRepo
from reconciler.gridcarbon import fetch_forecasts
from reconciler.ledger import LedgerError
from reconciler.metrics import UNITS
from reconciler.pods import Node, Resources, Taint
from reconciler.reconciling import plan, reconcile_once
from reconciler.templates import template_files
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.fleet.helpers import appwrapper, fleet_with


def reconcile(repo: FleetRepo, *, at=NOW):
    return reconcile_once(repo, now=at, author=BOT, sleep=lambda _: None)


def test_first_reconcile_commits_one_placement_on_top_of_the_input(fleet_repo, remote) -> None:
    before = gitutil.head(remote)
    outcome = reconcile(fleet_repo)
    assert outcome.commit == gitutil.head(remote)
    assert gitutil.history(remote)[1] == before
    rendered = gitutil.files(remote, "rendered/")
    assert {p.split("/")[1] for p in rendered} == {"california", "frankfurt", "paris"}
    assert sum(p.endswith("kustomization.yaml") for p in rendered) == 3
    jobs = [p for p in rendered if p.split("/")[-1].startswith(("batch.", "media."))]
    assert len(jobs) == 10
    ledger = gitutil.ledger(remote)
    assert {e["phase"] for e in ledger.values()} <= {"Planned", "Dispatched"}
    assert len(ledger) == 10


def test_reconciling_again_commits_nothing(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    head = gitutil.head(remote)
    again = reconcile(fleet_repo)
    assert again.commit is None and again.changes == {}
    later_same_slot = reconcile(fleet_repo, at=NOW + timedelta(minutes=14))
    assert later_same_slot.commit is None
    assert gitutil.head(remote) == head


class PooledSpokes:
    """Each spoke as the kube observer reports one with untainted nodes and a GPU
    pool tainted nvidia.com/gpu, where the Job of the first dispatched job runs."""

    def __init__(self) -> None:
        self.placed_on: dict[str, tuple[str, ...]] = {}

    def observe(self, fleet):
        cpu = Resources(cpu=32, memory_bytes=128 * 2**30, gpu=0)
        gpu = Resources(cpu=64, memory_bytes=512 * 2**30, gpu=8)
        taint = Taint(key="nvidia.com/gpu", effect="NoSchedule")
        nodes = (
            Node(name="cpu-1", allocatable=cpu, free=cpu),
            Node(name="cpu-2", allocatable=cpu, free=cpu),
            Node(name="gpu-1", allocatable=gpu, free=gpu, taints=(taint,)),
        )
        return {
            spoke.name: SpokeState(
                name=spoke.name,
                cpu=128,
                memory_bytes=768 * 2**30,
                gpu=8,
                source="kube:test",
                nodes=nodes,
                placed_on=self.placed_on,
            )
            for spoke in fleet.spokes
        }


def test_reconciling_again_with_pooled_spokes_commits_nothing(fleet_repo, remote) -> None:
    spokes = PooledSpokes()
    first = reconcile_once(fleet_repo, now=NOW, author=BOT, sleep=lambda _: None, observer=spokes)
    assert first.commit is not None
    pools = {e["id"]: e.get("pool") for e in gitutil.ledger(remote).values()}
    assert pools["batch/train-resnet"].endswith("[nvidia.com/gpu:NoSchedule]")
    assert pools["batch/etl-daily"].endswith("[untainted]")
    # The Jobs that started run where they were planned: nothing moves.
    for entry in gitutil.ledger(remote).values():
        if entry["phase"] == "Dispatched":
            node = "gpu-1" if entry["pool"].endswith("NoSchedule]") else "cpu-1"
            namespace = entry["id"].split("/")[0]
            spokes.placed_on[f"{namespace}/{entry['jobName']}"] = (node,)
    later = NOW + timedelta(minutes=14)
    again = reconcile_once(fleet_repo, now=later, author=BOT, sleep=lambda _: None, observer=spokes)
    assert again.commit is None and again.changes == {}


def test_the_capacity_gauge_gives_each_pool_its_room(fleet_repo) -> None:
    def room(pool: str, resource: str) -> float | None:
        labels = {"spoke": "paris", "pool": pool, "resource": resource, "unit": UNITS[resource]}
        return REGISTRY.get_sample_value("caspian_spoke_capacity", labels)

    reconcile(fleet_repo)  # declared capacity: the spoke is its one pool
    assert room("paris", "cpu") == 32  # as spokes/paris.yaml declares
    reconcile_once(fleet_repo, now=NOW, author=BOT, sleep=lambda _: None, observer=PooledSpokes())
    assert room("paris[untainted]", "cpu") == 64
    assert room("paris[nvidia.com/gpu:NoSchedule]", "gpu") == 8
    assert room("paris", "cpu") is None  # gone with the one pool it was


def test_a_new_mirror_of_the_same_remote_also_commits_nothing(fleet_repo, remote, tmp_path) -> None:
    reconcile(fleet_repo)
    fresh = FleetRepo(str(remote), cache_dir=tmp_path / "other-mirror.git")
    assert reconcile(fresh).commit is None


def test_the_commit_message_carries_table_savings_and_trailers(fleet_repo, remote) -> None:
    outcome = reconcile(fleet_repo)
    text = gitutil.message(remote)
    subject = text.splitlines()[0]
    assert subject.startswith("place: ")
    assert "CO2 vs qos" in subject
    assert "| job " in text and "| est. gCO2 |" in text and "| qos gCO2 |" in text
    assert f"Caspian-Input: {outcome.input_commit}" in text
    assert "Caspian-Carbon-Source: FR=embedded:electricitymaps-2023" in text
    assert "Caspian-Plan-Id: " in text
    trailers = text.rstrip().split("\n\n")[-1].splitlines()
    assert all(line.startswith("Caspian-") for line in trailers)


def test_jobs_are_suspended_until_their_start_then_dispatched(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    ledger = gitutil.ledger(remote)
    waiting = sorted(
        (e for e in ledger.values() if e["phase"] == "Planned"), key=lambda e: e["plannedStart"]
    )[0]
    path = f"rendered/{waiting['spoke']}/{waiting['id'].split('/')[0]}.{waiting['jobName']}.yaml"
    assert yaml.safe_load(gitutil.read(remote, path))["spec"]["suspend"] is True

    start = yaml.safe_load(gitutil.read(remote, path))["metadata"]["annotations"][
        "caspian.dev/planned-start"
    ]
    from reconciler.quantities import timestamp

    outcome = reconcile(fleet_repo, at=timestamp(start) + timedelta(minutes=1))
    assert outcome.commit is not None
    assert yaml.safe_load(gitutil.read(remote, path))["spec"]["suspend"] is False
    assert gitutil.ledger(remote)[waiting["id"]]["phase"] == "Dispatched"
    assert "dispatch: " in gitutil.message(remote).splitlines()[0]


def test_dispatched_jobs_never_move(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    dispatched = {k: v for k, v in gitutil.ledger(remote).items() if v["phase"] == "Dispatched"}
    assert dispatched
    # Later reconciles see other forecasts and re-plan: dispatched jobs must not move.
    for hours in (1, 5, 13):
        reconcile(fleet_repo, at=NOW + timedelta(hours=hours))
        after = gitutil.ledger(remote)
        for job_id, entry in dispatched.items():
            assert (after[job_id]["spoke"], after[job_id]["plannedStart"]) == (
                entry["spoke"],
                entry["plannedStart"],
            )


def test_deleting_an_appwrapper_cancels_its_job(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/train-resnet"]
    gitutil.user_commit(remote, {"jobs/train-resnet.yaml": None}, "drop train-resnet")
    outcome = reconcile(fleet_repo)
    assert outcome.commit is not None
    assert not any(entry["jobName"] in p for p in gitutil.files(remote, "rendered/"))
    cancelled = gitutil.ledger(remote)["batch/train-resnet"]
    assert cancelled["phase"] == "Cancelled"
    assert cancelled["reason"].startswith("AppWrapper removed from jobs/")
    assert "cancel: 1 job" in gitutil.message(remote).splitlines()[0]
    assert reconcile(fleet_repo).commit is None


def test_renaming_an_appwrapper_cancels_the_old_job_and_says_it_was_renamed(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    before = gitutil.read(remote, "jobs/train-resnet.yaml").decode()
    renamed = before.replace("name: train-resnet\n", "name: train-resnet-v2\n", 1)
    assert renamed != before
    gitutil.user_commit(remote, {"jobs/train-resnet.yaml": renamed}, "rename train-resnet")
    reconcile(fleet_repo)
    records = gitutil.ledger(remote)
    assert records["batch/train-resnet-v2"]["phase"] in ("Planned", "Dispatched")
    cancelled = records["batch/train-resnet"]
    assert cancelled["phase"] == "Cancelled"
    assert cancelled["reason"].startswith(
        "AppWrapper renamed to batch/train-resnet-v2 in jobs/train-resnet.yaml, a new job, at "
    )


def test_a_cancelled_record_is_forgotten_after_ledger_retention_in_one_commit(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    gitutil.user_commit(remote, {"jobs/train-resnet.yaml": None}, "drop train-resnet")
    reconcile(fleet_repo, at=NOW + timedelta(minutes=15))
    assert gitutil.ledger(remote)["batch/train-resnet"]["phase"] == "Cancelled"
    later = NOW + timedelta(minutes=15) + timedelta(days=7)
    assert reconcile(fleet_repo, at=later).commit is not None
    assert "batch/train-resnet" not in gitutil.ledger(remote)
    assert "forget: 1 job" in gitutil.message(remote).splitlines()[0]
    assert reconcile(fleet_repo, at=later).commit is None


def test_an_edited_template_becomes_a_job_with_a_new_name(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    old = gitutil.ledger(remote)["batch/etl-daily"]["jobName"]
    text = gitutil.read(remote, "jobs/etl-daily.yaml").replace(
        b"python:3.12-slim", b"python:3.13-slim"
    )
    gitutil.user_commit(remote, {"jobs/etl-daily.yaml": text})
    reconcile(fleet_repo)
    new = gitutil.ledger(remote)["batch/etl-daily"]["jobName"]
    assert new != old and new.startswith("etl-daily-")
    rendered = gitutil.files(remote, "rendered/")
    assert not any(old in p for p in rendered) and any(new in p for p in rendered)


def test_a_bad_appwrapper_is_reported_and_every_other_job_placed(fleet_repo, remote) -> None:
    bad = appwrapper("broken", annotations={"caspian.dev/deadline": "next tuesday"})
    gitutil.user_commit(remote, {"jobs/broken.yaml": bad.encode(), "jobs/garbage.yaml": b"{{{"})
    outcome = reconcile(fleet_repo)
    assert outcome.partial
    ledger = gitutil.ledger(remote)
    assert ledger["jobs/broken.yaml"]["phase"] == "Invalid"
    assert "metadata.annotations.caspian.dev/deadline" in ledger["jobs/broken.yaml"]["reason"]
    assert ledger["jobs/garbage.yaml"]["phase"] == "Invalid"
    placed = [e for e in ledger.values() if e["phase"] in ("Planned", "Dispatched")]
    assert len(placed) == 10
    text = gitutil.message(remote)
    assert "- jobs/broken.yaml: metadata.annotations.caspian.dev/deadline: 'next tuesday'" in text
    assert "invalid: 2 jobs" in text.splitlines()[0]


def test_breaking_a_placed_jobs_file_keeps_its_committed_job(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/climate-sim"]
    path = f"rendered/{entry['spoke']}/batch.{entry['jobName']}.yaml"
    committed = gitutil.read(remote, path)
    gitutil.user_commit(remote, {"jobs/climate-sim.yaml": b"apiVersion: [oops\n"})
    reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert gitutil.read(remote, path) == committed
    ledger = gitutil.ledger(remote)
    assert ledger["batch/climate-sim"]["phase"] == entry["phase"]
    assert ledger["jobs/climate-sim.yaml"]["phase"] == "Invalid"


def test_suspending_an_appwrapper_takes_its_planned_job_off_the_spoke(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/climate-sim"]
    assert entry["phase"] == "Planned"
    path = f"rendered/{entry['spoke']}/batch.{entry['jobName']}.yaml"
    doc = yaml.safe_load(gitutil.read(remote, "jobs/climate-sim.yaml"))
    doc["spec"]["suspend"] = True
    gitutil.user_commit(remote, {"jobs/climate-sim.yaml": yaml.safe_dump(doc).encode()})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(minutes=20))
    assert not outcome.partial  # held on purpose: no failure
    assert gitutil.ledger(remote)["batch/climate-sim"]["phase"] == "Suspended"
    assert path not in gitutil.files(remote, "rendered/")
    assert gitutil.message(remote).startswith("suspend: 1 job")


def test_a_placed_jobs_file_turned_into_a_link_is_held(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/climate-sim"]
    path = f"rendered/{entry['spoke']}/batch.{entry['jobName']}.yaml"
    committed = gitutil.read(remote, path)
    link = {"jobs/climate-sim.yaml": "../shared/climate-sim.yaml"}
    gitutil.user_commit(remote, {}, "share the file", links=link)
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial
    assert gitutil.read(remote, path) == committed
    ledger = gitutil.ledger(remote)
    assert ledger["batch/climate-sim"]["phase"] == entry["phase"]
    reason = ledger["jobs/climate-sim.yaml"]["reason"]
    assert reason.startswith("a symbolic link (to '../shared/climate-sim.yaml')")
    assert "commit the file itself" in reason


def test_a_spoke_file_that_is_a_link_or_ends_in_yml_is_a_problem_of_its_own(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    paris = gitutil.read(remote, "spokes/paris.yaml")
    for change, links, expected in [
        ({}, {"spokes/lyon.yaml": "paris.yaml"}, "a symbolic link (to"),
        # Left out, as before, its spoke would silently take no work.
        ({"spokes/lyon.yml": paris.replace(b"name: paris", b"name: lyon")}, {}, "rename it"),
    ]:
        gitutil.user_commit(remote, change, links=links)
        outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=2))
        assert list(outcome.decision.broken_spokes) == ["lyon"]
        (problem,) = [e for e in gitutil.ledger(remote).values() if e["phase"] == "Invalid"]
        assert problem["id"] == next(iter([*change, *links]))
        assert expected in problem["reason"]
        assert gitutil.files(remote, "rendered/lyon/") == []
        gitutil.user_commit(remote, dict.fromkeys([*change, *links]))


def test_a_submodule_or_a_linked_directory_in_jobs_is_a_problem_not_left_out(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    other = "3f" * 20  # another repo's commit: this one never holds it
    gitutil.user_commit(
        remote,
        {},
        "add the team's jobs",
        submodules={"jobs/team-b": other, "spokes/eu": other},
        links={"jobs/shared": "../../shared-jobs"},
    )
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial
    assert not outcome.decision.broken_spokes  # no spoke is named team-b or eu
    ledger = gitutil.ledger(remote)
    for path in ("jobs/team-b", "spokes/eu"):
        assert ledger[path]["phase"] == "Invalid"
        assert ledger[path]["reason"].startswith("a git submodule: git holds a commit of")
    assert ledger["jobs/shared"]["reason"].endswith(
        "commit the files it points to below this path instead"
    )


def test_an_appwrapper_committed_outside_jobs_is_named_and_planned_once_moved(
    fleet_repo, remote
) -> None:
    # A reconcile reads the fleet's own directories alone: these are read too,
    # to say so, where a job committed to job/ was skipped without a word.
    reconcile(fleet_repo)
    gitutil.user_commit(
        remote, {"job/train.yaml": appwrapper("astray").encode(), "b.yaml": b"kind: List\n"}
    )
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial
    (problem,) = [e for e in gitutil.ledger(remote).values() if e["phase"] == "Invalid"]
    assert problem["id"] == "job/train.yaml"
    assert problem["reason"].endswith("(git mv job/train.yaml jobs/train.yaml)")
    assert not reconcile(fleet_repo, at=NOW + timedelta(hours=1)).changes
    gitutil.user_commit(
        remote, {"job/train.yaml": None, "jobs/train.yaml": appwrapper("astray").encode()}
    )
    reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    ledger = gitutil.ledger(remote)
    assert "job/train.yaml" not in ledger
    assert ledger["batch/astray"]["phase"] in ("Planned", "Dispatched")


def test_a_submodule_put_in_rendered_is_taken_out(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    gitutil.user_commit(remote, {}, submodules={"rendered/paris/extra": "3f" * 20})
    reconcile(fleet_repo, at=NOW + timedelta(minutes=5))
    assert "rendered/paris/extra" not in gitutil.files(remote)
    assert "- rendered/paris/extra" in gitutil.message(remote).split("Hand edits reverted")[1]
    assert not reconcile(fleet_repo, at=NOW + timedelta(minutes=5)).changes


def test_a_file_named_in_bytes_that_are_no_utf8_is_a_problem_not_a_stop(fleet_repo, remote) -> None:
    """A name saved in Latin-1 reached the ledger and the commit message, which
    are UTF-8, and every reconcile of the fleet stopped there."""
    reconcile(fleet_repo)
    latin, stray = "jobs/caf\udce9.yaml", "rendered/paris/x\udce9.yaml"  # as git holds b"\xe9"
    gitutil.user_commit(remote, {latin: appwrapper("cafe").encode(), stray: b"kind: Job\n"})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial
    reason = gitutil.ledger(remote)["jobs/caf\\xe9.yaml"]["reason"]
    assert reason.startswith("its name is not UTF-8, so it is not read: rename it in UTF-8")
    assert stray not in gitutil.files(remote)
    assert "- rendered/paris/x\\xe9.yaml" in gitutil.message(remote)
    assert not reconcile(fleet_repo, at=NOW + timedelta(hours=1)).changes


def test_a_file_name_cannot_add_lines_to_the_commit_message(fleet_repo, remote) -> None:
    """Git takes a newline in a file's name: printed as it is, a name could
    write lines of its own into the audit trail."""
    reconcile(fleet_repo)
    forged = "jobs/x\n- batch/train-resnet: cancelled by the admin.yaml"
    stray = "rendered/paris/\x1b[2Jx.yaml"  # a code that clears a terminal
    gitutil.user_commit(remote, {forged: appwrapper("forged").encode(), stray: b"kind: Job\n"})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial and "batch/forged" not in gitutil.ledger(remote)
    message = gitutil.message(remote)
    assert "\n- batch/train-resnet: cancelled" not in message and "\x1b" not in message
    assert "- jobs/x\\n- batch/train-resnet: cancelled by the admin.yaml: its name holds a " in (
        message
    )
    assert "- rendered/paris/\\x1b[2Jx.yaml" in message
    assert not reconcile(fleet_repo, at=NOW + timedelta(hours=1)).changes


def test_a_lone_surrogate_in_a_job_is_a_problem_and_the_rest_is_committed(
    fleet_repo, remote
) -> None:
    """An escape such as "\\udce9" in a Job's env reached the rendered YAML, which
    is UTF-8, and every reconcile of the fleet stopped there."""
    reconcile(fleet_repo)
    env = 'name: main\n              env: [{name: A, value: "\\udce9"}]'
    text = appwrapper("escaped").replace("name: main", env)
    assert "udce9" in text
    gitutil.user_commit(remote, {"jobs/escaped.yaml": text.encode()})
    outcome = reconcile(fleet_repo, at=NOW + timedelta(hours=1))
    assert outcome.partial and outcome.commit == gitutil.head(remote)
    assert "lone UTF-16 surrogate" in gitutil.ledger(remote)["jobs/escaped.yaml"]["reason"]
    assert not reconcile(fleet_repo, at=NOW + timedelta(hours=1)).changes


def test_a_broken_policy_commits_nothing(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    policy = b"apiVersion: caspian.dev/v1alpha1\nkind: Policy\nspec: {slot: 7m}\n"
    gitutil.user_commit(remote, {"caspian.yaml": policy})
    head = gitutil.head(remote)
    with pytest.raises(FleetConfigError):
        reconcile(fleet_repo, at=NOW + timedelta(hours=2))
    assert gitutil.head(remote) == head


@pytest.mark.parametrize(
    "edited",
    [
        b"entries: [{id: x, phase: Whatever}]",
        b"entries: " + b"[" * 30_000 + b"]" * 30_000,  # read, it killed the process
    ],
)
def test_a_hand_edited_ledger_stops_the_reconcile(fleet_repo, remote, edited) -> None:
    reconcile(fleet_repo)
    gitutil.user_commit(remote, {"status/placements.yaml": edited})
    head = gitutil.head(remote)
    with pytest.raises(LedgerError, match="revert the hand edit"):
        reconcile(fleet_repo)
    assert gitutil.head(remote) == head


def test_a_ledger_edited_by_hand_that_still_parses_stops_the_reconcile(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    text = gitutil.read(remote, "status/placements.yaml")
    # Marking a job done by hand would keep it from ever running.
    edited = text.replace(b"phase: Planned", b"phase: Succeeded", 1)
    assert edited != text
    gitutil.user_commit(remote, {"status/placements.yaml": edited})
    head = gitutil.head(remote)
    with pytest.raises(LedgerError, match=r"edited by hand .*revert the hand edit"):
        reconcile(fleet_repo)
    assert gitutil.head(remote) == head
    gitutil.user_commit(remote, {"status/placements.yaml": text})
    assert reconcile(fleet_repo).commit is None


def test_a_manifest_edited_by_hand_is_reverted_and_the_commit_says_so(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    path = next(p for p in gitutil.files(remote, "rendered/paris/") if "batch." in p)
    written = gitutil.read(remote, path)
    stray = "rendered/paris/batch.by-hand.yaml"
    edits = {path: written.replace(b"suspend: true", b"suspend: false"), stray: b"kind: Job\n"}
    gitutil.user_commit(remote, edits, "run it now")
    outcome = reconcile(fleet_repo)
    assert outcome.commit is not None
    assert gitutil.read(remote, path) == written
    assert stray not in gitutil.files(remote, "rendered/")
    message = gitutil.message(remote)
    assert (
        f"Hand edits reverted (Caspian owns rendered/; change jobs/ instead):\n- {path}" in message
    )
    assert f"- {stray}" in message


def test_a_held_jobs_manifest_is_kept_as_committed_and_not_called_reverted(
    fleet_repo, remote
) -> None:
    reconcile(fleet_repo)
    entry = gitutil.ledger(remote)["batch/train-resnet"]
    path = next(p for p in gitutil.files(remote, "rendered/") if entry["jobName"] in p)
    edited = gitutil.read(remote, path).replace(b"suspend: true", b"suspend: false")
    assert edited != gitutil.read(remote, path)
    broken = {"jobs/train-resnet.yaml": b"kind: AppWrapper\nspec: [\n", path: edited}
    gitutil.user_commit(remote, broken, "a typo, and a hand edit")
    assert reconcile(fleet_repo).commit is not None
    assert gitutil.read(remote, path) == edited  # held: its file is broken
    assert "Hand edits reverted" not in gitutil.message(remote)
    # Broken still, beside another change: not fixed, though its job's record stays.
    gitutil.user_commit(remote, {"jobs/other.yaml": appwrapper("other").encode()})
    assert reconcile(fleet_repo).commit is not None
    assert "fixed" not in gitutil.message(remote)
    mended = {"jobs/train-resnet.yaml": template_files()["jobs/train-resnet.yaml"]}
    gitutil.user_commit(remote, mended, "the typo fixed")
    assert reconcile(fleet_repo).commit is not None
    assert "\n- fixed jobs/train-resnet.yaml: batch/train-resnet loads again (skipped " in (
        gitutil.message(remote)
    )


def test_a_deleted_ledger_stops_the_reconcile_until_it_is_restored(fleet_repo, remote) -> None:
    reconcile(fleet_repo)
    kept = gitutil.read(remote, "status/placements.yaml")
    gitutil.user_commit(remote, {"status/placements.yaml": None})
    head = gitutil.head(remote)
    # Planned afresh, a running Job could be rendered suspended again.
    with pytest.raises(LedgerError, match="is missing while rendered/ holds 10 Jobs"):
        reconcile(fleet_repo)
    assert gitutil.head(remote) == head
    gitutil.user_commit(remote, {"status/placements.yaml": kept})
    assert reconcile(fleet_repo).commit is None  # restored: nothing to change


def test_plan_shows_the_change_and_commits_nothing(fleet_repo, remote) -> None:
    head = gitutil.head(remote)
    outcome = plan(fleet_repo, now=NOW, bot=BOT.email)
    assert "status/placements.yaml" in outcome.changes
    assert outcome.commit is None
    assert gitutil.head(remote) == head


class RacingRepo(FleetRepo):
    """Lets a user push between Caspian's fetch and its push, `races` times."""

    def __init__(self, *args, remote: Path, races: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.remote = remote
        self.races = races
        self.user_commits: list[str] = []

    def push(self, commit: str) -> None:
        if self.races:
            self.races -= 1
            n = len(self.user_commits)
            self.user_commits.append(
                gitutil.user_commit(remote=self.remote, changes={f"docs/note-{n}.md": b"hi\n"})
            )
        super().push(commit)


def test_a_push_race_is_won_by_deciding_again_on_the_new_tip(remote, tmp_path) -> None:
    repo = RacingRepo(str(remote), cache_dir=tmp_path / "m.git", remote=remote, races=2)
    outcome = reconcile(repo)
    assert outcome.push_attempts == 3
    history = gitutil.history(remote)
    assert history[0] == outcome.commit
    assert all(commit in history for commit in repo.user_commits)
    assert outcome.input_commit == repo.user_commits[-1]
    assert len(gitutil.ledger(remote)) == 10


def test_a_push_race_lost_too_often_gives_up_without_forcing(remote, tmp_path) -> None:
    from reconciler.gitrepo import RemoteMovedError

    repo = RacingRepo(str(remote), cache_dir=tmp_path / "m.git", remote=remote, races=10)
    with pytest.raises(RemoteMovedError):
        reconcile_once(repo, now=NOW, author=BOT, attempts=3, sleep=lambda _: None)
    assert gitutil.head(remote) == repo.user_commits[-1]


def test_a_failing_carbon_provider_never_stops_the_reconcile(fleet_repo, remote, monkeypatch):
    """A spoke on a live provider that is down: placed on the labelled fallback,
    and the commit's trailers say so."""
    monkeypatch.setenv("CASPIAN_ELECTRICITYMAPS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "secret-token-that-must-not-leak")
    text = gitutil.read(remote, "spokes/frankfurt.yaml").replace(
        b"provider: embedded", b"provider: electricitymaps"
    )
    gitutil.user_commit(remote, {"spokes/frankfurt.yaml": text})
    outcome = reconcile(fleet_repo)
    assert outcome.commit is not None
    message = gitutil.message(remote)
    assert "Caspian-Carbon-Source: DE=embedded:electricitymaps-2023" in message
    assert "STALE (fallback)" in message and "electricitymaps failed" in message
    assert "secret-token-that-must-not-leak" not in message


def test_job_gauges_fall_to_zero_when_a_phase_empties(fleet_repo, remote) -> None:
    gauge = lambda phase: REGISTRY.get_sample_value("caspian_jobs", {"phase": phase})  # noqa: E731
    huge = appwrapper("huge", resources={"requests": {"cpu": "5000"}})
    deadline = (NOW + timedelta(minutes=30)).isoformat()
    tardy = appwrapper("tardy", annotations={"caspian.dev/deadline": deadline})
    added = {"jobs/huge.yaml": huge.encode(), "jobs/tardy.yaml": tardy.encode()}
    gitutil.user_commit(remote, added, "add a job no spoke fits and one that cannot be on time")
    reconcile(fleet_repo)
    assert gauge("Pending") == 1 and gauge("Cancelled") == 0
    assert REGISTRY.get_sample_value("caspian_jobs_late") == 1
    gitutil.user_commit(remote, dict.fromkeys(added), "drop them")
    reconcile(fleet_repo)
    assert gauge("Pending") == 0 and gauge("Cancelled") == 2
    assert REGISTRY.get_sample_value("caspian_jobs_late") == 0


def test_a_zone_no_spoke_uses_any_more_leaves_the_carbon_gauges() -> None:
    fleet = fleet_with()
    zones = {s.spec.carbon.zone for s in fleet.spokes}
    fetch_forecasts(fleet, now=NOW)
    paris = next(s for s in fleet.spokes if s.name == "paris")
    gone = paris.spec.carbon.zone
    assert REGISTRY.get_sample_value("caspian_grid_carbon_intensity", {"zone": gone}) > 0
    rest = fleet.model_copy(update={"spokes": tuple(s for s in fleet.spokes if s is not paris)})
    assert gone not in {s.spec.carbon.zone for s in rest.spokes} and len(zones) > 1
    fetch_forecasts(rest, now=NOW)
    for gauge in ("caspian_grid_carbon_intensity", "caspian_carbon_data_stale"):
        assert REGISTRY.get_sample_value(gauge, {"zone": gone}) is None


def test_a_finished_job_adds_its_carbon_and_qos_carbon_to_counters_once(fleet_repo, remote) -> None:
    from tests.reconcile.test_proposals import Reporting

    def counted(name: str, spoke: str) -> float:
        labels = {"spoke": spoke, "phase": "Succeeded"}
        return REGISTRY.get_sample_value(f"caspian_finished_{name}_grams_total", labels) or 0.0

    reconcile(fleet_repo)
    started = next(e for e in gitutil.ledger(remote).values() if e["phase"] == "Dispatched")
    key = f"{started['id'].split('/')[0]}/{started['jobName']}"
    spoke = started["spoke"]
    before = counted("emissions", spoke), counted("baseline_emissions", spoke)
    done = Reporting({key: "Succeeded"})
    # A plan, which pushes nothing, counts nothing.
    plan(fleet_repo, now=NOW + timedelta(minutes=20), bot=BOT.email, observer=done)
    assert counted("emissions", spoke) == before[0]
    reconcile_once(fleet_repo, now=NOW + timedelta(minutes=20), author=BOT, observer=done)
    # A later commit, which holds it finished already, does not count it again.
    gitutil.user_commit(remote, {"jobs/late.yaml": appwrapper("late").encode()})
    later = reconcile_once(fleet_repo, now=NOW + timedelta(minutes=40), author=BOT, observer=done)
    assert later.commit is not None
    assert gitutil.ledger(remote)[started["id"]]["phase"] == "Succeeded"
    assert counted("emissions", spoke) - before[0] == pytest.approx(started["estimatedGrams"])
    assert counted("baseline_emissions", spoke) - before[1] == pytest.approx(started["qosGrams"])
