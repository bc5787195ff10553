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

    def open_or_update(self, *, head: str, base: str, title: str, body: str) -> tuple[str, int]:
        """("opened" | "updated" | "unchanged", PR number)."""
        existing = self._find(head=head, base=base)
        if existing is None:
            created = self._call(
                "POST", "/pulls", {"title": title, "head": head, "base": base, "body": body}
            )
            return "opened", int(created["number"])
        number = int(existing["number"])
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
        for pull in pulls:
            if (pull.get("head") or {}).get("ref") == head:
                return pull
        return None

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        url = f"{self.url.rstrip('/')}/repos/{self.repo}{path}"
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
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise ForgeError(f"{method} {url.split('?')[0]}: HTTP {error.code}") from None
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as error:
            raise ForgeError(f"{method} {url.split('?')[0]}: {error}") from None
