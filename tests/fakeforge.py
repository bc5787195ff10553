"""A forge API stand-in on 127.0.0.1 (GitHub's /repos/{owner}/{repo}/pulls,
GitLab's /projects/{path}/merge_requests). A
handler answers (status, JSON value), or (status, bytes) for a raw body."""

from __future__ import annotations

import json
import threading
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
            if self.headers.get("Authorization") != f"{scheme} forge-token":
                status, reply = 401, {"message": "Bad credentials"}
            else:
                status, reply = handler(self, method, body)
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
