"""Opening the placement pull request against a forge's API on 127.0.0.1: what
it does with good answers, errors, slowness and garbage."""

from __future__ import annotations

import re
import secrets
import time

import pytest

from reconciler.forge import Forge, ForgeError
from tests.carbon.test_providers import SLOW_HEADERS
from tests.fakeforge import serve_forge
from tests.fakehttp import Reply, left_open, serve

TOKEN = "forge-token"


def forge(url: str, **kwargs) -> Forge:
    return Forge(kind="github", url=url, repo="fleet/jobs", token=TOKEN, **kwargs)


def open_pr(url: str, **kwargs) -> tuple[str, int]:
    return forge(url, **kwargs).open_or_update(
        head="caspian/placement", base="main", title="place: 3 jobs", body="table"
    )


def test_it_opens_one_then_updates_it_then_leaves_it() -> None:
    pulls: list[dict] = []

    def handler(request, method, body):
        if method == "GET":
            assert "head=fleet%3Acaspian%2Fplacement" in request.path
            return 200, pulls
        if method == "POST":
            pulls.append({"number": 7, **body, "head": {"ref": body["head"]}})
            return 201, pulls[-1]
        pulls[0].update(body)
        return 200, pulls[0]

    with serve_forge(handler) as url:
        assert open_pr(url) == ("opened", 7)
        assert open_pr(url) == ("unchanged", 7)
        assert forge(url).open_or_update(
            head="caspian/placement", base="main", title="place: 4 jobs", body="table"
        ) == ("updated", 7)
    assert pulls[0]["title"] == "place: 4 jobs"


def test_on_gitlab_it_opens_one_merge_request_then_updates_it() -> None:
    requests: list[tuple[str, str]] = []
    merges: list[dict] = []

    def handler(request, method, body):
        requests.append((method, request.path))
        if method == "GET":
            return 200, [m for m in merges if m["source_branch"] == "caspian/placement"]
        if method == "POST":
            merges.append({"iid": 3, "id": 901, "state": "opened", **body})
            return 201, merges[-1]
        merges[0].update(body)
        return 200, merges[0]

    with serve_forge(handler) as url:
        on = Forge(kind="gitlab", url=f"{url}/api/v4", repo="infra/batch/fleet", token=TOKEN)
        place = {"head": "caspian/placement", "base": "main", "body": "table"}
        assert on.open_or_update(title="place: 3 jobs", **place) == ("opened", 3)
        assert on.open_or_update(title="place: 3 jobs", **place) == ("unchanged", 3)
        assert on.open_or_update(title="place: 4 jobs", **place) == ("updated", 3)
    project = "/api/v4/projects/infra%2Fbatch%2Ffleet/merge_requests"
    assert requests[:2] == [
        (
            "GET",
            f"{project}?state=opened&source_branch=caspian%2Fplacement&target_branch=main"
            "&per_page=50&page=1",
        ),
        ("POST", project),
    ]
    assert requests[-1] == ("PUT", f"{project}/3")  # by its iid, not its id
    assert merges[0]["description"] == "table" and merges[0]["target_branch"] == "main"
    assert merges[0]["title"] == "place: 4 jobs"


def test_gitlabs_list_of_messages_is_said_whole() -> None:
    def handler(request, method, body):
        if method == "GET":
            return 200, []
        return 409, {"message": ["Another open merge request already exists for this branch"]}

    with serve_forge(handler) as url, pytest.raises(ForgeError) as raised:
        Forge(kind="gitlab", url=url, repo="infra/fleet", token=TOKEN).open_or_update(
            head="caspian/placement", base="main", title="t", body="b"
        )
    assert str(raised.value).endswith(
        "HTTP 409 (Another open merge request already exists for this branch)"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((422, {"message": "Validation Failed: head does not exist"}), "HTTP 422 (Validation"),
        ((500, b"<html>oops</html>"), "HTTP 500"),
        ((200, b"\x80 not json"), "the answer is not JSON"),
        ((200, b"[" * 100_000 + b"]" * 100_000), "the answer is not JSON"),  # nested past reading
        ((200, {"message": "moved"}), "the forge answered an object, not a list of pull"),
        ((200, [1, 2]), "the forge's list holds a number, not a pull request"),
        ((200, [None, {"number": 1}]), "the forge's list holds null, not a pull request"),
    ],
)
def test_an_error_or_garbage_is_a_forge_error_that_names_the_call(reply, expected) -> None:
    with (
        serve_forge(lambda request, method, body: reply) as url,
        pytest.raises(ForgeError) as raised,
    ):
        open_pr(url)
    assert str(raised.value).startswith("GET http://127.0.0.1:")
    assert expected in str(raised.value)


@pytest.mark.parametrize("body", [{"message": "no"}, b"<html>oops</html>"])
@pytest.mark.parametrize("status", [401, 404, 422, 500])
def test_an_error_answer_leaves_no_connection_open(status, body) -> None:
    with left_open() as left, serve_forge(lambda request, method, asked: (status, body)) as url:
        try:
            open_pr(url)
        except ForgeError:
            pass  # dropped here with all it holds, as a reconcile drops it
        else:
            pytest.fail("no ForgeError")
    assert left == []


def test_a_created_pull_without_a_number_is_a_forge_error() -> None:
    def handler(request, method, body):
        return (200, []) if method == "GET" else (201, {"title": body["title"]})

    with serve_forge(handler) as url, pytest.raises(ForgeError, match="without a PR number"):
        open_pr(url)


def _refused_with(token: str) -> str:
    """What opening a pull request with `token` on the fake forge raises."""
    with (
        serve_forge(lambda request, method, body: (200, [])) as url,
        pytest.raises(ForgeError) as raised,
    ):
        Forge(kind="github", url=url, repo="fleet/jobs", token=token).open_or_update(
            head="h", base="main", title="t", body="b"
        )
    return str(raised.value)


def test_bad_credentials_say_so_without_the_token() -> None:
    said = _refused_with("wrong-secret")
    assert said.endswith("HTTP 401 (Bad credentials): check the token in CASPIAN_FORGE_TOKEN")
    assert "wrong-secret" not in said


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (403, ": the token in CASPIAN_FORGE_TOKEN may not write pull requests to fleet/jobs"),
        (404, ": no repo fleet/jobs at http://127.0.0.1:"),
    ],
)
def test_a_repo_the_token_cannot_reach_names_the_settings_to_check(code, expected) -> None:
    with (
        serve_forge(lambda request, method, body: (code, {"message": "Not Found"})) as url,
        pytest.raises(ForgeError) as raised,
    ):
        open_pr(url)
    assert expected in str(raised.value)


def test_a_token_http_cannot_carry_is_said_so_without_it() -> None:
    said = _refused_with("forge-\nsecret")
    assert "secret" not in said and "a line break inside CASPIAN_FORGE_TOKEN?" in said


def test_a_password_in_the_forge_url_is_said_by_no_error() -> None:
    password = secrets.token_hex(8)  # drawn afresh: none is written in the repo
    with (
        serve_forge(lambda request, method, body: (200, [])) as url,
        pytest.raises(ForgeError) as raised,
    ):
        open_pr(url.replace("://", f"://someone:{password}@"))
    assert password not in str(raised.value)
    assert str(raised.value).startswith("GET http://127.0.0.1:")


def test_a_forge_that_never_answers_times_out() -> None:
    def handler(request, method, body):
        time.sleep(2)
        return 200, []

    with serve_forge(handler) as url:
        started = time.monotonic()
        with pytest.raises(ForgeError, match="timed out"):
            open_pr(url, timeout_s=0.3)
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "the answer took longer than 0.6 s to come whole"), (500, "HTTP 500")],
)
def test_a_forge_answering_a_byte_at_a_time_is_given_three_timeouts(status, expected) -> None:
    def handler(request, method, body):
        return status, b"[" + b" " * 100 + b"]", 0.02

    with serve_forge(handler) as url:
        started = time.monotonic()
        with pytest.raises(ForgeError, match=expected):
            open_pr(url, timeout_s=0.2)
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(raw=SLOW_HEADERS, drip=0.02), "the answer took longer than 0.6 s to come whole"),
        (Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n"), "the answer is no HTTP (BadStatusLine)"),
    ],
)
def test_a_forge_url_that_answers_no_http_in_time_is_a_forge_error(reply, expected) -> None:
    # An SSH port given for the forge's API crashed the reconcile with http.client's error.
    with serve() as api:
        api.route("/", reply)
        started = time.monotonic()
        with pytest.raises(ForgeError, match=re.escape(expected)):
            open_pr(api.url, timeout_s=0.2)
        assert time.monotonic() - started < 1.5


def test_closing_comments_then_closes_the_open_one_and_leaves_others_alone() -> None:
    calls: list[tuple[str, str, object]] = []
    pulls = [{"number": 4, "head": {"ref": "someone/else"}}]

    def handler(request, method, body):
        calls.append((method, request.path.split("?")[0], body))
        return (200, pulls) if method == "GET" else (200, {"number": 7})

    with serve_forge(handler) as url:
        assert forge(url).close(head="caspian/placement", base="main", comment="why") is None
        assert [method for method, _, _ in calls] == ["GET"]
        pulls.append({"number": 7, "head": {"ref": "caspian/placement"}})
        assert forge(url).close(head="caspian/placement", base="main", comment="why") == 7
    assert calls[2:] == [
        ("POST", "/repos/fleet/jobs/issues/7/comments", {"body": "why"}),
        ("PATCH", "/repos/fleet/jobs/pulls/7", {"state": "closed"}),
    ]


def test_on_gitlab_closing_a_merge_request_leaves_a_note_and_sets_its_state_event() -> None:
    calls: list[tuple[str, str, object]] = []

    def handler(request, method, body):
        calls.append((method, request.path.split("?")[0], body))
        if method == "GET":
            return 200, [{"iid": 3, "id": 901, "source_branch": "caspian/placement"}]
        return 200, {"iid": 3}

    with serve_forge(handler) as url:
        on = Forge(kind="gitlab", url=url, repo="infra/fleet", token=TOKEN)
        assert on.close(head="caspian/placement", base="main", comment="why") == 3
    project = "/projects/infra%2Ffleet/merge_requests"
    assert calls[1:] == [
        ("POST", f"{project}/3/notes", {"body": "why"}),
        ("PUT", f"{project}/3", {"state_event": "close"}),
    ]


def test_on_gitea_its_own_pull_request_is_found_past_the_first_page() -> None:
    """Gitea lists every open pull request into the base branch, a page at a time."""
    others = [{"number": n, "head": {"ref": f"team/{n}"}} for n in range(1, 121)]
    ours = {"number": 121, "title": "place: 3 jobs", "body": "table"}
    ours["head"] = {"ref": "caspian/placement"}
    pulls, asked = [*others, ours], []

    def handler(request, method, body):
        query = dict(q.split("=") for q in request.path.split("?")[1].split("&"))
        asked.append(query["page"])
        start = (int(query["page"]) - 1) * int(query["limit"])
        return 200, pulls[start : start + int(query["limit"])]

    with serve_forge(handler, scheme="token") as url:
        gitea = Forge(kind="gitea", url=url, repo="fleet/jobs", token=TOKEN)
        place = {"head": "caspian/placement", "base": "main", "body": "table"}
        assert gitea.open_or_update(title="place: 3 jobs", **place) == ("unchanged", 121)
        assert asked == ["1", "2", "3"]
        asked.clear()
        pulls.remove(ours)  # none of them ours: every page read, and no more
        assert gitea.close(head="caspian/placement", base="main", comment="why") is None
        assert asked == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("kind", "closed", "asked"),
    [
        (
            "github",
            {"number": 7, "head": {"ref": "caspian/placement", "sha": "abc"}, "merged_at": None},
            "state=closed&base=main&head=fleet%3Acaspian%2Fplacement",
        ),
        (
            "gitea",
            {"number": 7, "head": {"ref": "caspian/placement", "sha": "abc"}, "merged": False},
            "state=closed&base=main&sort=recentupdate",
        ),
        (
            "gitlab",
            {"iid": 7, "source_branch": "caspian/placement", "sha": "abc"},
            "state=closed&source_branch=caspian%2Fplacement&target_branch=main",
        ),
    ],
)
def test_a_pull_request_closed_unmerged_at_the_branchs_tip_is_a_decline(
    kind, closed, asked
) -> None:
    """Merged ones (GitHub's merged_at, Gitea's merged), ones closed at another
    commit, and any while one is open, are not."""
    state = {"open": [], "closed": [closed]}
    paths: list[str] = []

    def handler(request, method, body):
        paths.append(request.path)
        said = "closed" if "state=closed" in request.path else "open"
        return 200, state[said]

    with serve_forge(handler, scheme="token" if kind == "gitea" else "Bearer") as url:
        on = Forge(kind=kind, url=url, repo="fleet/jobs", token=TOKEN)
        ask = {"head": "caspian/placement", "base": "main"}
        assert on.declined(**ask, sha="abc") == 7
        assert asked in paths[-1]
        assert on.declined(**ask, sha="def") is None  # pushed since: not what was closed
        if kind != "gitlab":  # GitLab lists a merged one as "merged", not "closed"
            merged = {"merged_at": "2026-12-01T10:00:00Z"} if kind == "github" else {"merged": True}
            state["closed"] = [{**closed, **merged}]
            assert on.declined(**ask, sha="abc") is None
            state["closed"] = [closed]
        state["open"] = [{**closed, "number": 8, "iid": 8}]
        assert on.declined(**ask, sha="abc") is None
