"""A forge API stand-in on 127.0.0.1 (GitHub's /repos/{owner}/{repo}/pulls,
GitLab's /projects/{path}/merge_requests). A
handler answers (status, JSON value), or (status, bytes) for a raw body."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def serve_forge(handler: Any, *, scheme: str = "Bearer") -> Iterator[str]:
    """`scheme`: of the Authorization header it takes (Gitea's is `token`)."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            drip: list[float] = []
            if self.headers.get("Authorization") != f"{scheme} forge-token":
                status, reply = 401, {"message": "Bad credentials"}
            else:
                status, reply, *drip = handler(self, method, body)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # A third value: seconds between the body's bytes, sent one at a time.
            for part in [data[i : i + 1] for i in range(len(data))] if drip else [data]:
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(drip[0] if drip else 0)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class PullRequests:
    """A forge stand-in for GitHub's pulls API, and its issue comments."""

    def __init__(self) -> None:
        self.pulls: list[dict] = []
        self.comments: dict[int, list[str]] = {}
        self.gets = self.posts = self.patches = 0
        self.down = False  # answers 502, as a proxy in front of a forge that is down

    def __call__(self, seen, method, body):
        if self.down:
            return 502, b"<html>Bad Gateway</html>"
        if method == "GET":
            self.gets += 1
            state = "closed" if "state=closed" in seen.path else "open"
            return 200, [p for p in self.pulls if p["state"] == state]
        if method == "POST" and seen.path.endswith("/comments"):
            number = int(seen.path.split("/")[-2])
            self.comments.setdefault(number, []).append(body["body"])
            return 201, {"id": 1, "body": body["body"]}
        if method == "POST":
            self.posts += 1
            pull = {
                "number": len(self.pulls) + 1,
                "state": "open",
                **body,
                "head": {"ref": body["head"]},
            }
            self.pulls.append(pull)
            return 201, pull
        self.patches += 1
        number = int(seen.path.rsplit("/", 1)[1])
        self.pulls[number - 1].update(body)
        return 200, self.pulls[number - 1]


class PullComments:
    """A forge stand-in for the comments on pull requests: GitHub's and
    Gitea's (an issue's comments, changed by PATCH), or GitLab's merge request
    notes (changed by PUT). Pull requests not in `pulls` are not found.
    Gitea's list (asked with `limit`) takes no page: it holds them all."""

    def __init__(self, *pulls: int) -> None:
        self.pulls = set(pulls)
        self.comments: list[dict] = []
        self.posts = self.updates = self.lists = 0

    def on(self, number: int) -> list[str]:
        return [c["body"] for c in self.comments if c["pull"] == number]

    def __call__(self, seen, method, body):
        path, _, query = seen.path.partition("?")
        parts = path.split("/")
        # GitHub and Gitea: PATCH .../issues/comments/{id}; GitLab: PUT
        # .../merge_requests/{number}/notes/{id}.
        if method in ("PATCH", "PUT"):
            if method == "PATCH":
                shape, known = (parts[-3], parts[-2]), ("issues", "comments")
            else:
                shape, known = (parts[-4], parts[-2]), ("merge_requests", "notes")
            if shape != known:
                return 404, {"message": "Not Found"}
            self.updates += 1
            comment = next(c for c in self.comments if c["id"] == int(parts[-1]))
            comment["body"] = body["body"]
            return 200, comment
        number = int(parts[-2])  # .../{number}/comments, or .../{number}/notes
        if number not in self.pulls:
            return 404, {"message": "Not Found"}
        if method == "POST":
            self.posts += 1
            comment = {"id": 1000 + len(self.comments), "pull": number, "body": body["body"]}
            self.comments.append(comment)
            return 201, comment
        self.lists += 1
        asked = dict(pair.split("=", 1) for pair in query.split("&"))
        mine = [c for c in self.comments if c["pull"] == number]
        if "limit" in asked:
            return 200, mine
        size, page = int(asked["per_page"]), int(asked["page"])
        return 200, mine[(page - 1) * size : page * size]
