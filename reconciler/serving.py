"""The HTTP side of `caspian watch`: /metrics, /healthz, /readyz, /livez and a push
webhook (GitHub, Gitea and GitLab payloads, optionally with a shared secret)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler import metrics
from reconciler.watching import Watcher

MAX_BODY = 5 * 2**20
# A client that sends part of a request and then nothing would otherwise hold
# its thread for as long as it keeps the connection open; one that sends a byte
# now and then, each within the timeout, for as long as it goes on. So the
# timeout bounds each wait for a byte, and the whole of a connection too.
REQUEST_TIMEOUT_S = 30.0


def serve(
    watcher: Watcher,
    *,
    host: str,
    port: int,
    secret: str | None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; `stop` the result to stop."""

    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout_s

        def setup(self) -> None:
            super().setup()
            # One request a connection (HTTP/1.0, the handler's default).
            self._cut = threading.Timer(request_timeout_s, self._shut)
            self._cut.daemon = True
            self._cut.start()

        def _shut(self) -> None:
            with contextlib.suppress(OSError):  # closed already
                self.connection.shutdown(socket.SHUT_RDWR)

        def finish(self) -> None:
            self._cut.cancel()
            super().finish()

        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, content_type = metrics.exposition()
                self._reply(200, body, content_type)
            elif self.path == "/healthz":
                status = watcher.status.model_copy(
                    update={"reconciling_since": watcher.reconciling_since}
                )
                code = 503 if status.result in ("error", "invalid") else 200
                self._reply(code, status.model_dump_json().encode(), "application/json")
            elif self.path == "/readyz":
                # Serving is all readiness asks: a pod taken out of its Service
                # while reconciles fail would miss the push that mends them.
                self._reply(200, b"ok\n")
            elif self.path == "/livez":
                # Failing reconciles are no cause for a restart, which would
                # mend none of them; a loop held in one reconcile is.
                stuck = watcher.stuck()
                self._reply(503 if stuck else 200, f"{stuck or 'ok'}\n".encode())
            else:
                self._reply(404, b"not found\n")

        def do_POST(self) -> None:
            if self.path != "/webhook":
                self._reply(404, b"not found\n")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                # A negative length would read until the sender hangs up.
                self._reply(400, b"bad Content-Length\n")
                return
            if length > MAX_BODY:
                self._reply(413, b"too large\n")
                return
            body = self.rfile.read(length)
            if secret is not None and not _signed(body, self.headers, secret):
                self._reply(401, b"bad signature\n")
                return
            try:
                payload: Any = json.loads(body or b"{}")
            except (ValueError, RecursionError):  # not JSON, not even text, or nested past reading
                self._reply(400, b"not JSON\n")
                return
            proposing = watcher.settings.proposing
            if proposing is not None and _closes_pull_from(payload, proposing.branch):
                # Main has not moved, so its tip alone would read as nothing to do.
                watcher.trigger(f"webhook (pull request from {proposing.branch} closed)", anew=True)
                self._reply(202, b"queued\n")
                return
            ref = payload.get("ref") if isinstance(payload, dict) else None
            if ref is not None and ref != f"refs/heads/{watcher.repo.branch}":
                self._reply(202, b"ignored: another branch\n")
                return
            watcher.trigger(f"webhook ({ref or 'no ref'})")
            self._reply(202, b"queued\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = (_IPv6Server if ":" in host else ThreadingHTTPServer)((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    """Stop serving, and close the socket it listened on (shutdown alone
    leaves that open until the collector comes by)."""
    server.shutdown()
    server.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _closes_pull_from(payload: Any, branch: str) -> bool:
    """Whether a forge's pull request event says the one from `branch` was
    closed, merged or not: GitHub's and Gitea's `pull_request` event with
    action "closed", GitLab's merge request hook with action "close" or "merge"."""
    if not isinstance(payload, dict):
        return False
    pull, attributes = payload.get("pull_request"), payload.get("object_attributes")
    if isinstance(pull, dict) and payload.get("action") == "closed":
        head = pull.get("head")
        return isinstance(head, dict) and head.get("ref") == branch
    if payload.get("object_kind") == "merge_request" and isinstance(attributes, dict):
        return (
            attributes.get("action") in ("close", "merge")
            and attributes.get("source_branch") == branch
        )
    return False


def _signed(body: bytes, headers: Any, secret: str) -> bool:
    """Whether the forge that sent `body` knows the secret: GitHub and Gitea
    sign the body with it, GitLab sends it as it is."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # As bytes: compare_digest refuses strings that are not ASCII, and a
    # header may hold any byte (read as Latin-1).
    github = headers.get("X-Hub-Signature-256", "").encode()
    gitea = headers.get("X-Gitea-Signature", "").encode()
    gitlab = headers.get("X-Gitlab-Token", "").encode()
    return (
        hmac.compare_digest(github, b"sha256=" + expected)
        or hmac.compare_digest(gitea, expected)
        or (bool(gitlab) and hmac.compare_digest(gitlab, secret.encode()))
    )
