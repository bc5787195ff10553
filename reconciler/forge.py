"""Pull requests on a forge (GitHub or Gitea): the only module that calls a
forge's API. Opening is idempotent: an open PR from the proposal branch is
updated, never duplicated. The token comes from the environment and is sent
only in the Authorization header."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ForgeError(Exception):
    pass


class Forge(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["github", "gitea"]
    url: str  # API root: https://api.github.com, or https://gitea.example/api/v1
    repo: str  # owner/name
    token: str
    timeout_s: float = 15.0

    def open_or_update(self, *, head: str, base: str, title: str, body: str) -> tuple[str, int]:
        """("opened" | "updated" | "unchanged", PR number)."""
        existing = self._find(head=head, base=base)
        if existing is None:
            created = self._call(
                "POST", "/pulls", {"title": title, "head": head, "base": base, "body": body}
            )
            return "opened", _number(created, f"POST {self._endpoint('/pulls')}")
        number = _number(existing, f"GET {self._endpoint('/pulls')}")
        if existing.get("title") == title and (existing.get("body") or "") == body:
            return "unchanged", number
        self._call("PATCH", f"/pulls/{number}", {"title": title, "body": body})
        return "updated", number

    def _find(self, *, head: str, base: str) -> dict[str, Any] | None:
        owner = self.repo.split("/", 1)[0]
        query = {"state": "open", "base": base}
        if self.kind == "github":
            query["head"] = f"{owner}:{head}"
        pulls = self._call("GET", "/pulls?" + urllib.parse.urlencode(query), None)
        if not isinstance(pulls, list):
            raise ForgeError(
                f"GET {self._endpoint('/pulls')}: the forge answered {_shape(pulls)}, "
                "not a list of pull requests"
            )
        odd = next((p for p in pulls if not isinstance(p, dict)), None)
        if odd is not None:
            raise ForgeError(
                f"GET {self._endpoint('/pulls')}: the forge's list holds {_shape(odd)}, "
                "not a pull request"
            )
        for pull in pulls:
            if isinstance(pull.get("head"), dict) and pull["head"].get("ref") == head:
                return pull
        return None

    def _endpoint(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/repos/{self.repo}{path}"

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        url = self._endpoint(path)
        scheme = "Bearer" if self.kind == "github" else "token"
        request = urllib.request.Request(
            url,
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={
                "Authorization": f"{scheme} {self.token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        where = f"{method} {url.split('?')[0]}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            # The forge's own message says what to fix ("head" branch missing,
            # no permission...); its body never holds the token.
            raise ForgeError(f"{where}: HTTP {error.code}{_message(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ForgeError(f"{where}: {error}") from None
        except ValueError:  # not JSON, or not even text
            raise ForgeError(f"{where}: the answer is not JSON") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        text = json.loads(error.read() or b"null").get("message")
    except (ValueError, AttributeError, OSError):
        return ""
    return f" ({text[:200]})" if isinstance(text, str) and text else ""


def _number(pull: Any, where: str) -> int:
    number = pull.get("number") if isinstance(pull, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise ForgeError(f"{where}: the forge answered {_shape(pull)} without a PR number")
    return number


def _shape(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")
