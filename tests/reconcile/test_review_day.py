"""Eight hours of pull-request mode, a reconcile a slot, against the GitHub
stand-in: users push jobs and edit declined ones, a reviewer merges some
proposals and closes others. What must hold throughout: a dispatched Job
never moves, a job held unplaced has no Job rendered, one pull request at
most is open, and a second reconcile later in the same slot changes nothing."""

from __future__ import annotations

import random
from datetime import timedelta

import pygit2
import yaml

from reconciler.forge import Forge
from reconciler.gitrepo import FleetRepo
from reconciler.proposing import Proposing, propose
from tests import gitutil
from tests.conftest import BOT, NOW
from tests.fakeforge import PullRequests, serve_forge
from tests.fleet.helpers import appwrapper

BRANCH = "caspian/placement"


def _ledger(remote) -> dict[str, dict]:
    try:
        return gitutil.ledger(remote)
    except KeyError:  # a fresh fleet's first plan waits for review
        return {}


def _tip(bare: pygit2.Repository) -> str | None:
    ref = bare.references.get(f"refs/heads/{BRANCH}")
    return None if ref is None else str(ref.target)


def _check(remote, dispatched: dict[tuple[str, str], str]) -> None:
    rendered = [f for f in gitutil.files(remote) if f.startswith("rendered/")]
    for job_id, record in _ledger(remote).items():
        if record["phase"] in ("Dispatched", "Running"):
            start = dispatched.setdefault((job_id, record["jobName"]), record["plannedStart"])
            assert record["plannedStart"] == start, f"{job_id} moved after its dispatch"
        if record.get("declined") and record["phase"] == "Pending":
            assert not any(record["jobName"] in path for path in rendered), job_id


def test_a_day_of_reviews_keeps_what_was_dispatched_and_what_was_declined(remote, tmp_path):
    rng = random.Random(7)
    api = PullRequests()
    bare = pygit2.Repository(str(remote))
    dispatched: dict[tuple[str, str], str] = {}
    merged = closed = pushed = edited = 0
    with serve_forge(api) as url:
        forge = Forge(kind="github", url=url, repo="fleet/jobs", token="forge-token")
        proposing = Proposing(branch=BRANCH, forge=forge)
        repo = FleetRepo(str(remote), cache_dir=tmp_path / "mirror.git")
        for slot in range(32):
            now = NOW + timedelta(minutes=15 * slot)
            propose(repo, proposing, now=now, author=BOT)
            _check(remote, dispatched)
            main, branch, opened = gitutil.head(remote), _tip(bare), len(api.pulls)
            # Later in the slot, as a watcher's next poll: the review is not
            # pushed over, nor its relative deadlines pushed back.
            again = propose(repo, proposing, now=now + timedelta(minutes=5), author=BOT)
            assert again.commit is None and gitutil.head(remote) == main
            assert len(api.pulls) == opened and _tip(bare) == branch
            assert sum(p["state"] == "open" for p in api.pulls) <= 1
            open_pull = next((p for p in api.pulls if p["state"] == "open"), None)
            if open_pull is not None and rng.random() < 0.5:
                tip = str(bare.references[f"refs/heads/{BRANCH}"].target)
                if rng.random() < 0.6:
                    bare.references["refs/heads/main"].set_target(tip)
                    open_pull.update(state="closed", merged_at=now.isoformat())
                    merged += 1
                else:
                    open_pull.update(state="closed", head={"ref": BRANCH, "sha": tip})
                    closed += 1
            if rng.random() < 0.3:
                pushed += 1
                job = appwrapper(f"pushed-{pushed}").encode()
                gitutil.user_commit(remote, {f"jobs/pushed-{pushed}.yaml": job})
            held = [r for r in _ledger(remote).values() if r.get("declined")]
            if held and rng.random() < 0.2:
                doc = yaml.safe_load(gitutil.read(remote, held[0]["source"]))
                annotations = doc["metadata"].setdefault("annotations", {})
                annotations["caspian.dev/complete-within"] = f"{30 + edited}h"
                gitutil.user_commit(remote, {held[0]["source"]: yaml.safe_dump(doc).encode()})
                edited += 1
    # The seed makes a day with each kind of event.
    assert merged and closed and pushed and edited
    messages = [c.message for c in bare.walk(bare.references["refs/heads/main"].target)]
    assert any(m.startswith("decline: ") for m in messages)
