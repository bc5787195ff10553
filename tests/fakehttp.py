"""A real HTTP server on 127.0.0.1 that answers scripted responses per path, and
records what it was asked."""

from __future__ import annotations

import gc
import json
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's bytes, sent one at a time
    # Bytes sent as they are in place of an HTTP answer (dripped too, with
    # `drip`): another protocol's greeting, or headers a byte at a time.
    raw: bytes | None = None
    date: str | None = None  # the Date header, where the server's clock is another's


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply] | Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""

    def route(self, prefix: str, *replies: Reply) -> None:
        """Answer paths starting with `prefix` with these replies in turn (the last repeats)."""
        self.routes[prefix] = list(replies)

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]


@contextmanager
def serve(*, tls: tuple[str, str] | None = None) -> Iterator[Server]:
    """With `tls` (certificate file, key file), it answers HTTPS."""
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            seen = Seen(
                parsed.path,
                parse_qs(parsed.query),
                {k.lower(): v for k, v in self.headers.items()},
            )
            state.seen.append(seen)
            match = max(
                (p for p in state.routes if parsed.path.startswith(p)), key=len, default=None
            )
            if match is None:
                self.send_error(404)
                return
            replies = state.routes[match]
            reply = (
                replies(seen)
                if callable(replies)
                else (replies.pop(0) if len(replies) > 1 else replies[0])
            )
            time.sleep(reply.delay)
            if reply.raw is not None:
                self.close_connection = True
                try:
                    for part in [bytes([b]) for b in reply.raw] if reply.drip else [reply.raw]:
                        self.wfile.write(part)
                        self.wfile.flush()
                        time.sleep(reply.drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.date = reply.date
            try:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not reply.drip:
                    self.wfile.write(body)
                for byte in body if reply.drip else b"":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(reply.drip)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            return getattr(self, "date", None) or super().date_time_string(timestamp)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def left_open() -> Iterator[list[str]]:
    """The sockets and files the block leaves to the collector, as it ends:
    urllib's HTTP error holds its answer's connection until it is closed."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield found
        gc.collect()
    found.extend(str(w.message) for w in caught if w.category is ResourceWarning)
