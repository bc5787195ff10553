"""`caspian history JOB`: the audit trail of one job, read back from the fleet
repo's git log: who changed its AppWrapper, and each placement Caspian
committed for it, with what that commit said of it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pygit2
import pytest
import yaml
from click.testing import CliRunner

from reconciler import reconciling
from reconciler.cli import main
from reconciler.gitrepo import FleetRepo, Identity
from reconciler.history import Revision, history
from reconciler.ledger import LEDGER_PATH
from tests import gitutil

JOB, FILE = "batch/etl-daily", "jobs/etl-daily.yaml"


def _run(remote, tmp_path, *args: str):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    return CliRunner().invoke(main, [*args, "--repo", str(remote)], env=env)


def _reconcile(remote, tmp_path, at: str) -> None:
    result = _run(remote, tmp_path, "reconcile", "--once", "--now", at)
    assert result.exit_code == 0, result.output


def _fleet(tmp_path):
    remote = tmp_path / "fleet.git"
    assert CliRunner().invoke(main, ["init", "--bare", str(remote)]).exit_code == 0
    return remote


def _rerun(remote) -> bytes:
    """Its AppWrapper with a label on its wrapped Job: a new Job to Caspian."""
    doc = yaml.safe_load(gitutil.read(remote, FILE))
    template = doc["spec"]["components"][0]["template"]
    template.setdefault("metadata", {}).setdefault("labels", {})["run"] = "2"
    return yaml.safe_dump(doc).encode()


def _events(remote, tmp_path, job: str = JOB) -> list[dict]:
    result = _run(remote, tmp_path, "history", job, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_history_tells_who_changed_a_job_and_where_caspian_put_it_oldest_first(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    edit = gitutil.user_commit(remote, {FILE: _rerun(remote)}, "Run the ETL again")
    _reconcile(remote, tmp_path, "2026-11-22T02:10:00Z")
    _reconcile(remote, tmp_path, "2026-11-22T04:05:00Z")  # its start: dispatched
    events = _events(remote, tmp_path)
    whats = [event["what"] for event in events]
    assert whats[0] == f"added {FILE}" and events[0]["author"] == "caspian-bot"
    assert whats[1].startswith("Planned on paris from 2026-11-22T03:45:00Z (Job etl-daily-")
    assert (events[2]["commit"], events[2]["author"], whats[2]) == (
        edit,
        "Fleet User",
        f"edited {FILE}",
    )
    assert events[2]["said"] == ["Run the ETL again"]
    # The edit is a new Job, placed anew in the next reconcile.
    assert whats[3].startswith("Planned on ") and "(Job etl-daily-" in whats[3]
    assert whats[3].split("(Job ")[1] != whats[1].split("(Job ")[1]
    assert whats[-1].startswith("Dispatched on ")
    assert any(line.startswith(f"- dispatched {JOB} on ") for line in events[-1]["said"])
    # Caspian's commits carry the time it decided at (the user's, their clock's).
    times = [event["time"] for event in events[1:] if event["author"] == "caspian-bot"]
    assert len(times) == 3 and times == sorted(times)
    # Commits that did not change it are not events: the history is the same
    # after a reconcile that touched other jobs only.
    text = _run(remote, tmp_path, "history", "etl-daily").output
    assert text.startswith(f"{JOB} ({FILE}): {len(events)} changes, oldest first\n")
    assert f"{edit[:10]}  Fleet User: edited {FILE}\n    Run the ETL again\n" in text


def test_a_jobs_file_moved_keeps_its_history_as_git_log_follow_does(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    edit = gitutil.user_commit(remote, {FILE: _rerun(remote)}, "Run the ETL again")
    _reconcile(remote, tmp_path, "2026-11-22T02:10:00Z")
    team, nightly = "jobs/team/etl-daily.yaml", "jobs/team/etl-nightly.yaml"
    text = gitutil.read(remote, FILE)
    move = gitutil.user_commit(remote, {FILE: None, team: text}, "Move it to the team's folder")
    # Moved again, and edited on the way (git finds it by its content).
    edited = text.replace(b"caspian.dev/duration: 1h", b"caspian.dev/duration: 2h")
    assert edited != text
    again = gitutil.user_commit(remote, {team: None, nightly: edited}, "Nightly, and longer")
    _reconcile(remote, tmp_path, "2026-11-22T02:20:00Z")
    events = _events(remote, tmp_path)
    files = [(e["commit"], e["what"]) for e in events if "jobs/" in e["what"]]
    assert [what for _, what in files] == [
        f"added {FILE}",
        f"edited {FILE}",
        f"moved {FILE} to {team}",
        f"moved {team} to {nightly} and edited it",
    ]
    assert [commit for commit, _ in files][1:] == [edit, move, again]
    # Removed in one commit and added in another, it is no move (as for git).
    gitutil.user_commit(remote, {nightly: None}, "Drop it")
    gitutil.user_commit(remote, {"jobs/etl.yaml": edited}, "Bring it back")
    _reconcile(remote, tmp_path, "2026-11-22T02:30:00Z")
    whats = [e["what"] for e in _events(remote, tmp_path)]
    assert "added jobs/etl.yaml" in whats and not any("moved" in what for what in whats)


def test_a_merged_pull_request_shows_as_the_commit_it_merged(tmp_path) -> None:
    remote = _fleet(tmp_path)
    proposer = FleetRepo(str(remote), cache_dir=tmp_path / "proposer")
    at = datetime(2026, 11, 22, 2, tzinfo=UTC)
    reconciling.propose_once(proposer, branch="caspian/placement", now=at, author=Identity())
    repo = pygit2.Repository(str(remote))
    proposal = repo.references["refs/heads/caspian/placement"].peel(pygit2.Commit)
    main_tip = repo.references["refs/heads/main"].peel(pygit2.Commit)
    # Someone pushed to main meanwhile, so the forge merges with a merge commit.
    other = gitutil.user_commit(remote, {"docs/notes.md": b"notes\n"}, "Notes")
    who = pygit2.Signature("Forge", "forge@example.invalid")
    merge = repo.create_commit(
        "refs/heads/main",
        who,
        who,
        "Merge pull request #1 from caspian/placement",
        proposal.tree.id,
        [repo[other].id, proposal.id],
    )
    assert main_tip.id in proposal.parent_ids
    events = _events(remote, tmp_path)
    placed = [e for e in events if e["what"].startswith("Planned")]
    assert [e["commit"] for e in placed] == [str(proposal.id)]
    assert str(merge) not in {e["commit"] for e in events}
    # As `git log -- status/placements.yaml` lists them: not the merge, which
    # changed nothing against the branch it merged.
    read = FleetRepo(str(remote), cache_dir=tmp_path / "reader")
    read.fetch_tip()
    assert [r.commit for r in read.revisions([LEDGER_PATH])] == [str(proposal.id)]


def test_history_names_the_job_as_explain_does_and_says_what_there_is(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    by_file = _events(remote, tmp_path, FILE)
    assert by_file == _events(remote, tmp_path, JOB) == _events(remote, tmp_path, "etl-daily")
    assert by_file == _events(remote, tmp_path, f"./{FILE}")
    missing = _run(remote, tmp_path, "history", "nope")
    assert missing.exit_code == 1
    assert "'nope' is no job in the ledger; jobs: " in missing.output and JOB in missing.output


def test_a_file_that_never_loaded_is_headed_by_its_name_alone(tmp_path) -> None:
    remote = _fleet(tmp_path)
    broken = yaml.safe_load(gitutil.read(remote, FILE))
    broken["metadata"]["name"] = "nightly"
    broken["metadata"]["annotations"]["caspian.dev/duration"] = "soon"
    gitutil.user_commit(remote, {"jobs/nightly.yaml": yaml.safe_dump(broken).encode()}, "Add")
    result = _run(remote, tmp_path, "reconcile", "--once", "--now", "2026-11-22T02:00:00Z")
    assert result.exit_code == 3, result.output
    lines = _run(remote, tmp_path, "history", "nightly").output.splitlines()
    assert lines[0] == "jobs/nightly.yaml: 2 changes, oldest first"
    # The problem once: the commit's line says it, the event line does not again.
    assert lines[-2].endswith("caspian-bot: Invalid")
    assert lines[-1].startswith(
        "    - jobs/nightly.yaml: metadata.annotations.caspian.dev/duration"
    )


def test_a_job_held_by_its_broken_file_shows_the_hold_and_its_end(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    good = gitutil.read(remote, FILE)
    broken = good.replace(b'caspian.dev/duration: "1h"', b'caspian.dev/duration: "soon"')
    assert broken != good
    gitutil.user_commit(remote, {FILE: broken}, "Break it")
    held = _run(remote, tmp_path, "reconcile", "--once", "--now", "2026-11-22T02:10:00Z")
    assert held.exit_code == 3, held.output
    gitutil.user_commit(remote, {FILE: good}, "Mend it")
    _reconcile(remote, tmp_path, "2026-11-22T02:20:00Z")

    events = _events(remote, tmp_path)
    assert [e["what"].split(" ")[0] for e in events] == [
        "added",
        "Planned",
        "edited",
        "Planned",
        "edited",
        "Planned",
    ]
    placed, hold, mended = events[1], events[3], events[5]
    assert hold["what"] == placed["what"] + f", held as it was: {FILE} does not load"
    assert hold["said"] == [
        f"- {FILE}: metadata.annotations.caspian.dev/duration: 'soon' is not a duration "
        "(e.g. 45m, 2h, 1h30m, 3d)"
    ]
    assert mended["what"] == placed["what"]


def test_a_job_of_a_file_of_several_appwrappers_shows_the_hold_of_its_own_document(
    tmp_path,
) -> None:
    remote = _fleet(tmp_path)
    good = gitutil.read(remote, FILE)
    other = good.replace(b"name: etl-daily", b"name: etl-weekly")
    gitutil.user_commit(remote, {FILE: good + b"---\n" + other}, "Two ETLs in one file")
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    broken = other.replace(b'caspian.dev/duration: "1h"', b'caspian.dev/duration: "soon"')
    gitutil.user_commit(remote, {FILE: good + b"---\n" + broken}, "Break the weekly one")
    held = _run(remote, tmp_path, "reconcile", "--once", "--now", "2026-11-22T02:10:00Z")
    assert held.exit_code == 3, held.output

    weekly = _events(remote, tmp_path, "batch/etl-weekly")
    assert weekly[-1]["what"].endswith(f", held as it was: {FILE}#1 does not load")
    assert weekly[-1]["said"][0].startswith(f"- {FILE}#1: metadata.annotations")
    # The other document's job is not held: its history has no such commit.
    assert not any("held" in e["what"] for e in _events(remote, tmp_path))


def test_history_stops_at_the_limit_and_says_older_commits_were_not_read(tmp_path) -> None:
    remote = _fleet(tmp_path)
    for at in ("02:00", "04:05", "05:10"):
        _reconcile(remote, tmp_path, f"2026-11-22T{at}:00Z")
    full = _events(remote, tmp_path)
    short = _run(remote, tmp_path, "history", JOB, "--limit", "2")
    assert short.exit_code == 0, short.output
    assert "(older commits not read: more than --limit 2)" in short.output
    assert short.output.count("caspian-bot: ") < len(full)
    # Where its file came from is not known: not said to be "added".
    assert "added" not in short.output and f"added {FILE}" in full[0]["what"]


def _revision(commit: str, hour: int, *, entry: dict | None, text: bytes | None, message: str):
    ledger = {"apiVersion": "caspian.dev/v1alpha1", "kind": "PlacementLedger"}
    ledger["entries"] = [entry] if entry else []
    return Revision(
        commit=commit,
        author="caspian-bot",
        time=datetime(2026, 11, 22, hour, tzinfo=UTC),
        message=message,
        files={LEDGER_PATH: yaml.safe_dump(ledger).encode(), FILE: text},
    )


def _entry(phase: str, **fields) -> dict:
    return {"id": JOB, "source": FILE, "phase": phase, **fields}


def test_a_history_begins_where_the_file_was_last_added_and_skips_estimate_only_changes() -> None:
    spec = b"kind: AppWrapper\n"
    planned = _entry("Planned", spoke="paris", plannedStart="2026-11-22T05:00:00Z")
    revisions = [  # newest first, as git log lists them
        _revision("e", 5, entry=_entry("Running", spoke="paris"), text=spec, message="x\n"),
        _revision("d", 4, entry=planned | {"estimatedGrams": 9.0}, text=spec, message="y\n"),
        _revision(
            "c",
            3,
            entry=planned,
            text=spec,
            message=f"place: 1 job\n\n| {JOB} | paris | Planned |\n\n- moved {JOB}: a\n"
            f"- moved {JOB}-2: b\n",
        ),
        _revision("b", 2, entry=None, text=spec, message="Add it\n"),
        _revision("a", 1, entry=None, text=None, message="Remove the old one\n"),
        _revision("0", 0, entry=None, text=spec, message="An older life\n"),
    ]
    found = history(JOB, FILE, revisions)
    assert [(e.commit, e.what.split(" ")[0]) for e in found.events] == [
        ("b", "added"),
        ("c", "Planned"),
        ("e", "Running"),
    ]
    assert found.events[1].said == (f"- moved {JOB}: a",)
    assert found.complete
    # A ledger edited by hand is skipped, and said to be.
    broken = _revision("d", 4, entry=planned, text=spec, message="y\n")
    broken = broken.model_copy(update={"files": {LEDGER_PATH: b"entries: [", FILE: spec}})
    found = history(JOB, FILE, [revisions[0], broken, *revisions[2:]])
    assert found.unreadable == ("d",) and [e.commit for e in found.events] == ["b", "c", "e"]


def test_one_record_read_alone_is_the_record_the_whole_ledger_holds() -> None:
    from reconciler import benchledger, ledger, owned
    from reconciler.rendering import render_ledger
    from reconciler.templates import template_files
    from tests.reconcile.test_lifecycle import step

    decision, _ = step(template_files(), now=datetime(2026, 11, 22, 2, tzinfo=UTC))
    records = list(benchledger.records(60).entries)
    # Reasons that a writer folds over lines, or that hold a list's dash.
    records[3] = records[3].model_copy(update={"reason": "x " * 80 + "\n- not an item\n" * 3})
    records[4] = records[4].model_copy(update={"reason": "- id: batch/job-000005\n"})
    for whole in (decision.ledger, ledger.Ledger(entries=tuple(records))):
        raw = render_ledger(whole)
        for entry in whole.entries:
            assert ledger.entry_of(raw, entry.id) == entry, entry.id
        assert ledger.entry_of(raw, "batch/none") is None
    assert ledger.entry_of(None, "batch/none") is None
    # A hand-edited ledger does not read, whichever way.
    edited = render_ledger(decision.ledger).replace(b"phase: Planned", b"phase: Running", 1)
    with pytest.raises(ledger.LedgerError):
        ledger.entry_of(edited, decision.ledger.entries[0].id)
    # Only its own record is read: one Caspian could not read elsewhere (here
    # in a ledger from before digests) does not keep it from being found.
    body = render_ledger(decision.ledger).split(b"\n", 2)[2]
    first, second = decision.ledger.entries[:2]
    bogus = body.replace(
        f"- id: {second.id}\n".encode(), f"- id: {second.id}\n  bogus: 1\n".encode()
    )
    assert ledger.entry_of(bogus, first.id) == first
    with pytest.raises(ledger.LedgerError):
        ledger.parse(bogus)
    # A job Caspian's own ledger has no line for is not there, without reading the rest.
    sealed = owned.seal(bogus)
    assert ledger.entry_of(sealed, "batch/none") is None
    assert ledger.entry_of(sealed, first.id) == first


def test_the_history_benchmark_reads_every_change_of_its_job() -> None:
    from reconciler import benchhistory, benchledger

    result = benchhistory.measure(records=20, commits=25, repeats=1)
    # Its file added with the ledger, then moved at commits 0, 10 and 20.
    assert (result["events"], result["complete"]) == (5, True)
    assert result["history_p50_s"] > 0 and result["per_commit_ms"] > 0
    # The report reads every commit's ledger, and counts each finished job once.
    finished = [e for e in benchledger.records(20).entries if e.phase in ("Succeeded", "Failed")]
    assert result["report_finished_jobs"] == len(finished) > 0
    assert result["report_p50_s"] > 0


def test_a_forgotten_job_is_found_by_its_namespace_and_name(tmp_path) -> None:
    remote = _fleet(tmp_path)
    policy = yaml.safe_load(gitutil.read(remote, "caspian.yaml"))
    policy["spec"]["ledgerRetention"] = "1h"
    gitutil.user_commit(remote, {"caspian.yaml": yaml.safe_dump(policy).encode()})
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    gitutil.user_commit(remote, {FILE: None}, "No more ETL")
    _reconcile(remote, tmp_path, "2026-11-22T02:10:00Z")  # cancelled
    _reconcile(remote, tmp_path, "2026-11-22T03:20:00Z")  # forgotten
    assert JOB not in gitutil.ledger(remote)
    whats = [event["what"] for event in _events(remote, tmp_path)]
    assert whats[0] == f"added {FILE}" and whats[1].startswith("Planned on paris")
    assert whats[2] == f"removed {FILE}" and whats[3].startswith("Cancelled")
    assert whats[4] == "its record left the ledger" and len(whats) == 5
    # Its short name is not enough once the ledger has forgotten it.
    short = _run(remote, tmp_path, "history", "etl-daily")
    assert short.exit_code == 1
    assert "a job forgotten since is found by its namespace/name" in short.output


def test_a_job_no_reconcile_has_placed_yet_shows_its_files_commits(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    new = "jobs/etl-hourly.yaml"
    text = gitutil.read(remote, FILE).replace(b"name: etl-daily", b"name: etl-hourly")
    gitutil.user_commit(remote, {new: text}, "An hourly ETL")
    gitutil.user_commit(remote, {new: text + b"# runs hourly\n"}, "A note")
    # Pushed, and not reconciled since: found by any of its names, as explain finds it.
    events = _events(remote, tmp_path, "batch/etl-hourly")
    assert [e["what"] for e in events] == [f"added {new}", f"edited {new}"]
    assert events == _events(remote, tmp_path, "etl-hourly") == _events(remote, tmp_path, new)
    other = text.replace(
        b"\n  name: etl-hourly\n", b"\n  name: etl-hourly\n  namespace: media\n", 1
    )
    gitutil.user_commit(remote, {"jobs/other/etl-hourly.yaml": other})
    assert len(_events(remote, tmp_path, "media/etl-hourly")) == 1
    several = _run(remote, tmp_path, "history", "etl-hourly")
    assert several.exit_code == 1 and "is no job in the ledger" in several.output


def test_a_declined_move_is_an_event_of_its_own() -> None:
    spec = b"kind: AppWrapper\n"
    planned = _entry("Planned", spoke="paris", plannedStart="2026-11-22T05:00:00Z")
    mark = {"pull": "pull request #7", "at": "2026-11-22T04:00:00Z", "ask": "0123456789abcdef"}
    revisions = [  # newest first
        _revision(
            "d",
            4,
            entry=planned | {"declined": mark},
            text=spec,
            message="decline: 1 job (pull request #7 closed unmerged)\n\n"
            f"- {JOB}: frankfurt from 2026-11-22T07:00:00Z declined; it stays Planned on paris\n",
        ),
        _revision("c", 3, entry=planned, text=spec, message="place: 1 job\n"),
        _revision("b", 2, entry=None, text=spec, message="Add it\n"),
    ]
    found = history(JOB, FILE, revisions)
    assert [e.commit for e in found.events] == ["b", "c", "d"]
    assert found.events[-1].what == (
        "Planned on paris from 2026-11-22T05:00:00Z (held: a move declined in pull request #7)"
    )
    assert found.events[-1].said[0].endswith("declined; it stays Planned on paris")


def test_history_and_report_name_a_ledger_edited_by_hand_and_read_the_others(tmp_path) -> None:
    remote = _fleet(tmp_path)
    _reconcile(remote, tmp_path, "2026-11-22T02:00:00Z")
    placed = gitutil.head(remote)
    ledger = gitutil.read(remote, LEDGER_PATH)
    edited = ledger.replace(b"phase: Planned", b"phase: Running", 1)
    assert edited != ledger
    hand = gitutil.user_commit(remote, {LEDGER_PATH: edited}, "A quick fix")
    gitutil.user_commit(remote, {LEDGER_PATH: ledger}, "Revert the quick fix")
    said = f"  skipped {hand[:10]}: its ledger was edited by hand and does not read"
    told = _run(remote, tmp_path, "history", JOB)
    assert told.exit_code == 0, told.output
    assert said in told.output.splitlines()
    assert placed[:10] in told.output  # the placement before it is read still
    period = ("--since", "2026-11-01", "--until", "2026-12-31")
    report = _run(remote, tmp_path, "report", *period)
    assert report.exit_code == 0, report.output
    assert said in report.output.splitlines()


def test_a_job_found_missing_from_its_spoke_and_back_are_events_of_their_own() -> None:
    spec = b"kind: AppWrapper\n"
    running = _entry("Running", spoke="paris", jobName="x-1", plannedStart="2026-11-22T02:00:00Z")
    gone = running | {"goneSince": "2026-11-22T03:00:00Z"}
    revisions = [  # newest first
        _revision("e", 5, entry=running, text=spec, message=f"back: 1 job\n\n- {JOB}: back\n"),
        _revision("d", 4, entry=gone, text=spec, message="place: 1 job\n"),
        _revision("c", 3, entry=gone, text=spec, message=f"missing: 1 job\n\n- {JOB}: gone\n"),
        _revision("b", 2, entry=running, text=spec, message="dispatch: 1 job\n"),
        _revision("a", 1, entry=None, text=spec, message="Add it\n"),
    ]
    found = history(JOB, FILE, revisions)
    assert [e.commit for e in found.events] == ["a", "b", "c", "e"]
    assert found.events[2].what == (
        "Running on paris from 2026-11-22T02:00:00Z (Job x-1, missing there since "
        "2026-11-22T03:00:00Z)"
    )
    assert found.events[2].said == (f"- {JOB}: gone",)
    assert found.events[3].said == (f"- {JOB}: back",)
