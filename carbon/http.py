"""HTTP for the carbon providers: the only module that talks to the network.

Every call has a timeout, a bounded number of attempts with exponential backoff,
honours 429 Retry-After (capped), and turns every failure into one
`ProviderError` whose message never carries a credential.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import math
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

MAX_RETRY_AFTER_S = 30.0
# A forecast answer is tens of kilobytes, a forge's list of pull requests a few
# hundred: past this, the URL points at something else.
MOST_ANSWER_BYTES = 16 * 2**20
# The timeout bounds each wait for a byte, not the answer: a server that sends
# one byte every few seconds held a request, and the reconcile, for as long as
# it went on. The whole answer gets this many timeouts.
ANSWER_TIMEOUTS = 3


class AnswerError(Exception):
    """An answer too large, or too slow to arrive whole; its words say which."""


def fetch(request: urllib.request.Request, *, timeout: float) -> bytes:
    """The body of the answer to `request`. The timeout bounds each wait for a
    byte; the whole answer, status line and headers too, must come within
    ANSWER_TIMEOUTS of them, past which its connection is shut: headers sent
    a byte at a time held a request for as long as they went on. An answer
    that is no HTTP (a port that speaks something else) is an AnswerError too;
    an HTTP error status raises urllib's HTTPError, as ever."""
    cut = _Cut(ANSWER_TIMEOUTS * timeout)
    try:
        with cut, cut.opener().open(request, timeout=timeout) as response:
            body = read_answer(response, timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except (OSError, http.client.HTTPException) as error:
        if cut.fired:
            raise AnswerError(_too_slow(ANSWER_TIMEOUTS * timeout)) from None
        if isinstance(error, http.client.HTTPException):
            raise AnswerError(f"the answer is no HTTP ({type(error).__name__})") from None
        raise
    if cut.fired:  # headers cut short read as ended, and what came after as all
        raise AnswerError(_too_slow(ANSWER_TIMEOUTS * timeout))
    return body


def _too_slow(seconds: float) -> str:
    return (
        f"the answer took longer than {seconds:g} s to come whole (a server sending it a "
        "little at a time)"
    )


class _Cut:
    """Shuts the connections of one request once its time is up, so that a
    read blocked on a server that sends a byte now and then ends. Each
    connection is held by a duplicate of its socket, taken before any TLS
    wraps it: shutting the duplicate down ends every read on the connection,
    TLS's too, and its descriptor, held open until the request ends, cannot
    be another connection's by then."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Cut:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            sock.close()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._held:
                with contextlib.suppress(OSError):  # the connection ended already
                    sock.shutdown(socket.SHUT_RDWR)

    def _opened(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if not self.fired:
                self._held.append(sock.dup())
                return sock
        sock.close()
        raise TimeoutError("the answer's time is up")

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener, its connections opened through this cut."""
        cut = self

        def opening(connection: http.client.HTTPConnection) -> None:
            create = connection._create_connection  # type: ignore[attr-defined]
            connection._create_connection = lambda *a, **k: cut._opened(create(*a, **k))  # type: ignore[attr-defined]

        class Plain(http.client.HTTPConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                opening(self)

        class Secure(http.client.HTTPSConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                opening(self)

        class PlainHandler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(Plain, req)

        class SecureHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(Secure, req)

        return urllib.request.build_opener(PlainHandler(), SecureHandler())


def read_answer(response: Any, *, timeout: float) -> bytes:
    """The body of `response` (an http.client response), read within
    ANSWER_TIMEOUTS timeouts in all and up to MOST_ANSWER_BYTES."""
    deadline = time.monotonic() + ANSWER_TIMEOUTS * timeout
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(65536):  # whatever has come, not a full buffer
        size += len(chunk)
        if size > MOST_ANSWER_BYTES:
            raise AnswerError(f"the answer is larger than {MOST_ANSWER_BYTES // 2**20} MiB")
        if time.monotonic() > deadline:
            raise AnswerError(_too_slow(ANSWER_TIMEOUTS * timeout))
        chunks.append(chunk)
    return b"".join(chunks)


class ProviderError(Exception):
    """A provider did not give usable data. `retry` says whether trying later may help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def get_json(
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    attempts: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    full = url + ("?" + urllib.parse.urlencode(params) if params else "")
    shown = shown_url(url)  # never the query (it may hold a token) nor the headers
    last: ProviderError | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(_delay(last, backoff * 2 ** (attempt - 1)))
        request = urllib.request.Request(full, headers=dict(headers or {}))
        try:
            body = fetch(request, timeout=timeout)
        except AnswerError as error:
            # Asking again would wait as long, or fetch as much, again.
            raise ProviderError(f"{shown}: {error}", retry=False) from None
        except urllib.error.HTTPError as error:
            # The error holds the answer, and with it the connection, until closed.
            with error:
                last = _http_error(shown, error)
            if not last.retry:
                raise last from None
            continue
        except (TimeoutError, urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            # A server that let a whole timeout pass is not asked again at once:
            # three attempts held a reconcile for half a minute per request, and
            # the cache and the dataset stand in anyway.
            timed_out = isinstance(reason, TimeoutError)
            last = ProviderError(f"{shown}: no answer ({reason})", retry=not timed_out)
            if timed_out:
                raise last from None
            continue
        except ValueError:
            # http.client's words quote the header (a token) or URL it refuses.
            raise ProviderError(
                f"{shown}: the request cannot be made: a header or the URL holds a character "
                "HTTP does not allow (a line break copied with a token?)",
                retry=False,
            ) from None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            last = ProviderError(f"{shown}: the answer is not JSON ({len(body)} bytes)", retry=True)
        except RecursionError:  # garbage, and Python's JSON reader stops short of the stack
            last = ProviderError(
                f"{shown}: the answer is nested too deeply to read ({len(body)} bytes)", retry=True
            )
    assert last is not None
    raise last


def shown_url(url: str) -> str:
    """A URL as errors say it: a user and password before its host (from a
    CASPIAN_<PROVIDER>_URL, say) would go into logs and commit trailers."""
    return re.sub(r"(?<=://)[^/@]+@", "", url)


class _RetryAfter(ProviderError):
    def __init__(self, message: str, *, after: float) -> None:
        super().__init__(message, retry=True)
        self.after = after


def _http_error(url: str, error: urllib.error.HTTPError) -> ProviderError:
    if error.code in (401, 403):
        return ProviderError(
            f"{url}: HTTP {error.code}: check the provider's credentials", retry=False
        )
    if error.code == 429:
        header = error.headers.get("Retry-After", "1") if error.headers else "1"
        said_at = error.headers.get("Date") if error.headers else None
        after = _retry_after(header, said_at=said_at)
        return _RetryAfter(f"{url}: HTTP 429: rate limited", after=after)
    if error.code >= 500:
        return ProviderError(f"{url}: HTTP {error.code}: the provider failed", retry=True)
    return ProviderError(f"{url}: HTTP {error.code}", retry=False)


def _retry_after(header: str, *, said_at: str | None) -> float:
    """The seconds a Retry-After asks for: a number of them, or an HTTP date,
    counted from the answer's own Date where it has one (the server's clock
    against its own), else from this host's clock. A second where it is
    neither, or not a finite number ("nan" reads as a float, and sleeping NaN
    raises)."""
    try:
        after = float(header)
    except ValueError:
        try:
            until = email.utils.parsedate_to_datetime(header)
            now = email.utils.parsedate_to_datetime(said_at) if said_at else None
        except (TypeError, ValueError):
            return 1.0
        if until.tzinfo is None:  # "-0000": a time in UTC, RFC 5322 says
            until = until.replace(tzinfo=UTC)
        if now is None or now.tzinfo is None:
            now = datetime.now(UTC)
        after = (until - now).total_seconds()
    return after if math.isfinite(after) else 1.0


def _delay(last: ProviderError | None, default: float) -> float:
    if isinstance(last, _RetryAfter):
        return min(max(last.after, 0.0), MAX_RETRY_AFTER_S)
    return default
