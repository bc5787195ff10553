"""Pull requests on a forge (GitHub, Gitea, or GitLab's merge requests): the
only module that calls a forge's API. Opening is idempotent: an open PR from
the proposal branch is updated, never duplicated; one that nothing is left to
propose for is closed with a comment saying why. So is commenting a plan on
a pull request (`plan --comment`): Caspian's one comment there is rewritten,
never added to. The token comes from the environment and is sent only in the
Authorization header."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from carbon.http import AnswerError, fetch, read_answer, shown_url


class ForgeError(Exception):
    pass


class _Dialect(NamedTuple):
    """How one forge's API names what Caspian does with a pull request."""

    pulls: str  # the collection, after the repo's endpoint
    number: str  # the field of a pull request that its URL takes
    body: str  # the field of its text
    update: str  # the method that changes its title and text
    scheme: str  # of the Authorization header
    comments: str  # where a comment on pull request {number} goes
    comment: str  # one comment, {1} by its id, on pull request {0}
    close: dict[str, str]  # the update that closes it unmerged
    per_page: str  # the query parameter of a list's page size


# GitHub and Gitea keep a pull request's comments with its issue's.
_CLOSED = {"state": "closed"}
_DIALECTS = {
    "github": _Dialect(
        "/pulls",
        "number",
        "body",
        "PATCH",
        "Bearer",
        "/issues/{}/comments",
        "/issues/comments/{1}",
        _CLOSED,
        "per_page",
    ),
    "gitea": _Dialect(
        "/pulls",
        "number",
        "body",
        "PATCH",
        "token",
        "/issues/{}/comments",
        "/issues/comments/{1}",
        _CLOSED,
        "limit",
    ),
    # GitLab calls them merge requests, numbered per project by `iid`; it takes
    # a personal, project or OAuth token as Bearer.
    "gitlab": _Dialect(
        "/merge_requests",
        "iid",
        "description",
        "PUT",
        "Bearer",
        "/merge_requests/{}/notes",
        "/merge_requests/{0}/notes/{1}",
        {"state_event": "close"},
        "per_page",
    ),
}
# Open pull requests read, a page at a time, to find Caspian's: Gitea's list
# cannot be asked for one branch's, and a busy repo's run past a first page.
PAGE = 50
MOST_PAGES = 20


ForgeKind = Literal["github", "gitea", "gitlab"]


class Forge(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ForgeKind
    # API root: https://api.github.com, https://gitea.example/api/v1, or
    # https://gitlab.example/api/v4
    url: str
    repo: str  # owner/name (GitLab: the project's path, group/subgroup/name)
    token: str
    timeout_s: float = 15.0

    def open_or_update(self, *, head: str, base: str, title: str, body: str) -> tuple[str, int]:
        """("opened" | "updated" | "unchanged", PR number)."""
        api = self._dialect
        existing = self._find(head=head, base=base)
        if existing is None:
            branches = (
                {"source_branch": head, "target_branch": base}
                if self.kind == "gitlab"
                else {"head": head, "base": base}
            )
            created = self._call("POST", api.pulls, {"title": title, api.body: body, **branches})
            return "opened", self._number(created, f"POST {self._endpoint(api.pulls)}")
        number = self._number(existing, f"GET {self._endpoint(api.pulls)}")
        if existing.get("title") == title and (existing.get(api.body) or "") == body:
            return "unchanged", number
        self._call(api.update, f"{api.pulls}/{number}", {"title": title, api.body: body})
        return "updated", number

    def close(self, *, head: str, base: str, comment: str) -> int | None:
        """Close the open pull request from `head`, unmerged, with `comment`
        saying why: the number it had, or None where none was open."""
        api = self._dialect
        existing = self._find(head=head, base=base)
        if existing is None:
            return None
        number = self._number(existing, f"GET {self._endpoint(api.pulls)}")
        # The comment first: a reviewer who finds the pull request closed
        # finds the reason with it.
        self._call("POST", api.comments.format(number), {"body": comment})
        self._call(api.update, f"{api.pulls}/{number}", api.close)
        return number

    def comment_on(self, number: int, *, body: str, marker: str) -> str:
        """Post `body` on pull request `number`, or put it in place of the
        text of the comment there that begins with `marker`, so that a bot
        run at every push keeps one comment up to date rather than adding
        one each time: "posted", "updated" or "unchanged"."""
        api = self._dialect
        mine = self._comment_of(number, marker=marker)
        if mine is None:
            self._call("POST", api.comments.format(number), {"body": body}, pull=number)
            return "posted"
        if mine.get("body") == body:
            return "unchanged"
        where = api.comment.format(number, mine["id"])
        self._call(api.update, where, {"body": body}, pull=number)
        return "updated"

    def _comment_of(self, number: int, *, marker: str) -> dict[str, Any] | None:
        """The first comment on pull request `number` whose text begins with
        `marker`, read a page at a time; None where none does."""
        api = self._dialect
        # Gitea lists an issue's comments all at once: its API takes no page there.
        pages = 1 if self.kind == "gitea" else MOST_PAGES
        for page in range(1, pages + 1):
            asked = urllib.parse.urlencode({api.per_page: str(PAGE), "page": str(page)})
            found = self._call("GET", f"{api.comments.format(number)}?{asked}", None, pull=number)
            where = f"GET {self._endpoint(api.comments.format(number))}"
            if not isinstance(found, list) or not all(isinstance(c, dict) for c in found):
                raise ForgeError(
                    f"{where}: the forge answered {_shape(found)}, not a list of comments"
                )
            for comment in found:
                text, key = comment.get("body"), comment.get("id")
                if isinstance(text, str) and text.startswith(marker):
                    if not isinstance(key, int) or isinstance(key, bool):
                        raise ForgeError(f"{where}: a comment of Caspian's has no id")
                    return comment
            if len(found) < PAGE:
                return None
        return None

    def is_open(self, *, head: str, base: str) -> bool:
        """Whether a pull request from `head` into `base` is open."""
        return self._find(head=head, base=base) is not None

    def declined(self, *, head: str, base: str, sha: str) -> int | None:
        """The number of a pull request from `head` into `base` that was closed
        unmerged with `sha` its head, where none from `head` is open: a
        reviewer said no to that commit. None otherwise."""
        if self.is_open(head=head, base=base):
            return None
        closed = self._find(head=head, base=base, state="closed", sha=sha)
        if closed is None:
            return None
        return self._number(closed, f"GET {self._endpoint(self._dialect.pulls)}")

    @property
    def _dialect(self) -> _Dialect:
        return _DIALECTS[self.kind]

    def _find(
        self,
        *,
        head: str,
        base: str,
        state: Literal["open", "closed"] = "open",
        sha: str | None = None,
    ) -> dict[str, Any] | None:
        """The open pull request from `head` into `base`, if there is one; or
        the closed one, unmerged, whose head was commit `sha`."""
        api = self._dialect
        if self.kind == "gitlab":
            # GitLab's merged ones are "merged", not "closed".
            said = {"open": "opened", "closed": "closed"}[state]
            query = {"state": said, "source_branch": head, "target_branch": base}
        else:
            query = {"state": state, "base": base}
            if self.kind == "github":
                query["head"] = f"{self.repo.split('/', 1)[0]}:{head}"
            else:  # Gitea's, which no branch filters: the latest changed first
                query["sort"] = "recentupdate"
        for page in range(1, MOST_PAGES + 1):
            asked = {**query, api.per_page: str(PAGE), "page": str(page)}
            found = self._pulls(f"{api.pulls}?{urllib.parse.urlencode(asked)}")
            match = next(
                (
                    pull
                    for pull in found
                    if _from_branch(pull) == head and (sha is None or _declined_at(pull) == sha)
                ),
                None,
            )
            if match is not None or len(found) < PAGE:
                return match
        return None

    def _pulls(self, path: str) -> list[dict[str, Any]]:
        """A page of pull requests, or a ForgeError saying what came instead."""
        found = self._call("GET", path, None)
        where = f"GET {self._endpoint(self._dialect.pulls)}"
        if not isinstance(found, list):
            raise ForgeError(
                f"{where}: the forge answered {_shape(found)}, not a list of pull requests"
            )
        # A list, not next(): a null in the list is what is odd.
        odd = [p for p in found if not isinstance(p, dict)]
        if odd:
            raise ForgeError(
                f"{where}: the forge's list holds {_shape(odd[0])}, not a pull request"
            )
        return found

    def _endpoint(self, path: str) -> str:
        root = self.url.rstrip("/")
        if self.kind == "gitlab":  # a project by its path, slashes and all encoded
            return f"{root}/projects/{urllib.parse.quote(self.repo, safe='')}{path}"
        return f"{root}/repos/{self.repo}{path}"

    def _number(self, pull: Any, where: str) -> int:
        key = self._dialect.number
        number = pull.get(key) if isinstance(pull, dict) else None
        if not isinstance(number, int) or isinstance(number, bool):
            raise ForgeError(f"{where}: the forge answered {_shape(pull)} without a PR number")
        return number

    def _call(
        self, method: str, path: str, payload: dict[str, Any] | None, *, pull: int | None = None
    ) -> Any:
        """The forge's answer to one request, as JSON; `pull`, the pull request
        the request is about, names it where the forge does not find it."""
        url = self._endpoint(path)
        request = urllib.request.Request(
            url,
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={
                "Authorization": f"{self._dialect.scheme} {self.token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        where = f"{method} {shown_url(url.split('?')[0])}"
        try:
            raw = fetch(request, timeout=self.timeout_s)
        except AnswerError as error:
            raise ForgeError(f"{where}: {error}") from None
        except urllib.error.HTTPError as error:
            # The forge's own message says what to fix ("head" branch missing,
            # no permission...); its body never holds the token. The error holds
            # the answer, and with it the connection, until it is closed.
            with error:
                hint = self._hint(error.code, listing=method == "GET", pull=pull)
                said = _message(error, timeout=self.timeout_s)
            raise ForgeError(f"{where}: HTTP {error.code}{said}{hint}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ForgeError(f"{where}: {error}") from None
        except ValueError:  # http.client's words would quote the header: the token
            raise ForgeError(
                f"{where}: the request cannot be made: a header holds a character HTTP does "
                "not allow (a line break inside CASPIAN_FORGE_TOKEN?)"
            ) from None
        try:
            return json.loads(raw or b"null")
        except (ValueError, RecursionError):  # not JSON, not even text, or nested past reading
            raise ForgeError(f"{where}: the answer is not JSON") from None

    def _hint(self, code: int, *, listing: bool, pull: int | None = None) -> str:
        """What to check for the errors a setting of Caspian's causes. Every
        call starts by listing the open pull requests, or the comments of
        `pull`: a 404 there is the repo's, or that pull request's."""
        if code == 401:
            return ": check the token in CASPIAN_FORGE_TOKEN"
        if code == 403 and pull is not None:
            return (
                f": the token in CASPIAN_FORGE_TOKEN may not comment on pull request {pull} "
                f"of {self.repo}"
            )
        if code == 403:
            return f": the token in CASPIAN_FORGE_TOKEN may not write pull requests to {self.repo}"
        if code == 404 and listing and pull is not None:
            return (
                f": no pull request {pull} in {self.repo} at {shown_url(self.url)}, or the token "
                "may not see it (--comment, --forge-repo, --forge-url)"
            )
        if code == 404 and listing:
            # Forges answer 404, not 403, for a private repo the token may not see.
            return (
                f": no repo {self.repo} at {shown_url(self.url)}, or the token may not see it "
                "(--forge-repo, --forge-url)"
            )
        return ""


def _from_branch(pull: dict[str, Any]) -> Any:
    """The branch a pull request merges from: GitHub and Gitea nest it."""
    head = pull.get("head")
    return head.get("ref") if isinstance(head, dict) else pull.get("source_branch")


def _declined_at(pull: dict[str, Any]) -> Any:
    """The head commit of a pull request closed unmerged (None for a merged
    one): GitHub and Gitea nest it, GitLab names it `sha`. A merge reads as
    `merged_at` (GitHub, Gitea) or `merged` (Gitea)."""
    if pull.get("merged_at") or pull.get("merged") is True:
        return None
    head = pull.get("head")
    return head.get("sha") if isinstance(head, dict) else pull.get("sha")


def _message(error: urllib.error.HTTPError, *, timeout: float) -> str:
    """The forge's own word on an error: GitHub's and Gitea's `message`, or
    GitLab's, which may be a list of them, or `error`."""
    try:
        body = read_answer(error.fp, timeout=timeout) if error.fp is not None else b""
        answer = json.loads(body or b"null")
        text = answer.get("message") or answer.get("error")
    except (ValueError, AttributeError, OSError, AnswerError, RecursionError):
        return ""
    if isinstance(text, list) and all(isinstance(item, str) for item in text):
        text = "; ".join(text)
    return f" ({text[:200]})" if isinstance(text, str) and text else ""


def _shape(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")
