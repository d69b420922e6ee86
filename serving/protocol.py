"""The HTTP/1.1 connection: uvicorn's h11 protocol, with the limits uvicorn does not have.

uvicorn (0.54) closes idle keep-alive connections (``timeout_keep_alive``), but nothing bounds a
request in progress: a client that sends half a head, or half a body, holds its connection for
ever, and h11 judges a request line only once the whole head (or 16 KiB) has arrived, so
garbage bytes get no answer. ``Protocol`` adds, per connection:

- a deadline for each request's head, ``read_timeout_s`` from the connection's start (or from
  the first byte of a later request on a kept-alive connection): then 408 and close, or a
  plain close if nothing came at all (a browser's unused preconnect);
- a deadline for the body, ``read_timeout_s`` from the end of its head: the protocol puts it
  in the request's scope (``extensions["modelpack.body_deadline"]``, None when the body came
  whole with the head, so that the common request arms no timer) and the app answers 408
  itself when it passes (``Server.body``: the route's error format and metrics apply); a body
  still arriving a second after that (on a route that never reads it, or after the answer) is
  cut off here;
- a request line checked as its bytes arrive: bytes that cannot begin one get 400 at once;
- a cap on open connections (``max_connections``): one more is answered 503 and closed.

Replies made here are JSON like the app's, say ``Connection: close``, and half-close the
connection, which closes when the client does or after ``LINGER_S`` (closing at once, with
request bytes unread, would reset it and could lose the reply).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from modelpack.serving.app import BODY_DEADLINE
from modelpack.serving.config import ServeOptions

LINGER_S = 1.0
BODY_GRACE_S = 1.0  # the app's own 408 for a slow body comes first
_LINE_CHECK = 1024  # request-line bytes checked as they come; h11 judges longer lines whole

# A request line, and any prefix of one. Methods are upper-case tokens (every registered method
# is), so text that starts like a sentence is refused at its first byte.
_METHOD = rb"[A-Z][A-Z0-9_-]{0,31}"
_TARGET = rb"[\x21-\x7e]"
_LINE = re.compile(_METHOD + rb" " + _TARGET + rb"+ HTTP/[0-9]\.[0-9]")
_PARTIAL = re.compile(
    _METHOD
    + rb"(?: "
    + _TARGET
    + rb"*(?: (?:H(?:T(?:T(?:P(?:/(?:[0-9](?:\.(?:[0-9]\r?)?)?)?)?)?)?)?)?)?)?"
)
_REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def _options(app: Any) -> ServeOptions:
    """The options of the modelpack app under uvicorn's wrappers (each keeps it as ``.app``)."""
    for _ in range(8):
        options = getattr(app, "serve_options", None)
        if isinstance(options, ServeOptions):
            return options
        app = getattr(app, "app", None)
        if app is None:
            break
    return ServeOptions()


class Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with read deadlines, an early request-line check and a cap on
    connections (see the module docstring). Pass it as ``uvicorn.run(http=...)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = _options(self.app)
        self._timeout = options.read_timeout_s
        self._max_connections = options.max_connections
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._in_head = False  # a request's head is due
        self._head_began = 0.0  # since this loop time
        self._head_bytes = False  # and some of it has come
        self._line = bytearray()  # its request line so far
        self._line_ok = False  # the request line is whole and well formed (or too long to check)
        self._replied = False  # this class answered; the connection is closing
        self._told: Any = None  # the request cycle last given its body deadline

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            self._reply(
                503,
                "SERVICE_UNAVAILABLE",
                f"The server has {self._max_connections} connections open, its limit "
                f"(--max-connections); retry shortly.",
            )
            return
        self._begin_head(arm=True)  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        if self._replied:
            return  # lingering: what the client still sends is dropped
        if self.conn.their_state is h11.IDLE:
            if not self._in_head:
                self._begin_head()
            self._head_bytes = True
            if not self._line_ok and not self._line_may_be_valid(data):
                self.logger.warning("Invalid HTTP request received.")
                self._reply(
                    400,
                    "BAD_REQUEST",
                    "Invalid HTTP request: the request line must be METHOD /path HTTP/1.1.",
                )
                return
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self._replied or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # A head still incomplete (its deadline armed only now: most heads come whole in
            # one read, and need no timer), or a kept-alive connection between requests.
            if self._in_head and self._head_timer is None and self._timeout:
                self._head_timer = self.loop.call_at(
                    self._head_began + self._timeout, self._head_expired
                )
            return
        if self._in_head:
            self._in_head = False
            self._cancel("_head_timer")
        cycle = self.cycle
        if cycle is not None and cycle is not self._told:
            # A new request, whose task has not started yet: tell the app when its body is
            # due (None: it came whole with the head, so the app arms no timer at all).
            self._told = cycle
            deadline = None
            if state is h11.SEND_BODY and self._timeout:
                deadline = self.loop.time() + self._timeout
                self._cancel("_body_timer")
                self._body_timer = self.loop.call_at(deadline + BODY_GRACE_S, self._body_expired)
            cycle.scope.setdefault("extensions", {})[BODY_DEADLINE] = deadline  # type: ignore[typeddict-item]
        if state is not h11.SEND_BODY:
            self._cancel("_body_timer")

    def connection_lost(self, exc: Exception | None) -> None:
        for name in ("_head_timer", "_body_timer", "_linger"):
            self._cancel(name)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # h11 refused the head (a malformed line or header, or a head over 16 KiB); uvicorn
        # would answer in plain text and close at once.
        self._reply(
            400,
            "BAD_REQUEST",
            "Invalid HTTP request: its head is malformed or longer than 16 KiB.",
        )

    def shutdown(self) -> None:
        if self._replied:
            self.transport.close()
            return
        super().shutdown()

    # ------------------------------------------------------------------ deadlines

    def _begin_head(self, arm: bool = False) -> None:
        self._in_head = True
        self._head_began = self.loop.time()
        self._head_bytes = False
        self._line_ok = False
        # Bytes h11 holds already (pipelined after the last request) begin this head.
        self._line = bytearray(self.conn.trailing_data[0][:_LINE_CHECK])
        if arm and self._timeout:
            self._head_timer = self.loop.call_later(self._timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._replied or self.transport.is_closing():
            return
        if not self._head_bytes:
            self.transport.close()
            return
        self._reply(
            408,
            "REQUEST_TIMEOUT",
            f"The request's head did not arrive within {self._timeout} s (--read-timeout-s).",
        )

    def _body_expired(self) -> None:
        self._body_timer = None
        if self._replied or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        cycle.disconnected = True  # what the app sends from now on is dropped
        cycle.message_event.set()
        self._reply(
            408,
            "REQUEST_TIMEOUT",
            f"The body did not arrive within {self._timeout} s (--read-timeout-s).",
            v2=cycle.scope["path"].startswith("/v2"),
        )

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    # ------------------------------------------------------------------ the request line

    def _line_may_be_valid(self, data: bytes) -> bool:
        """Whether the request line, with ``data`` added, is or may become a valid one."""
        end = data.find(b"\n")
        room = _LINE_CHECK - len(self._line)
        if end < 0:
            if room <= 0:
                self._line_ok = True  # long: h11 judges it once the head is whole
                return True
            self._line += data[:room]
            return _PARTIAL.fullmatch(self._line) is not None
        self._line_ok = True
        if end > room:
            return True
        self._line += data[:end]
        line = bytes(self._line[:-1] if self._line.endswith(b"\r") else self._line)
        return _LINE.fullmatch(line) is not None

    # ------------------------------------------------------------------ replies

    def _reply(self, status: int, code: str, message: str, v2: bool = False) -> None:
        """Answer and close (see the module docstring): the connection serves nothing more."""
        self._replied = True
        for name in ("_head_timer", "_body_timer"):
            self._cancel(name)
        transport = self.transport
        if transport.is_closing():
            return
        body = orjson.dumps({"error": message} if v2 else {"error_code": code, "message": message})
        transport.write(
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, transport.close)
