"""gunicorn's threaded worker, with a deadline for a request's headers that costs no thread while it runs.

gthread hands a connection to a pool thread as soon as the first bytes arrive, and the thread then blocks
until the headers are complete: nine clients trickling a header line every few seconds occupy all eight threads
and the server answers no one. Here the worker's event loop reads headers itself, without blocking, into a
per-connection buffer; a connection reaches the thread pool only with its whole header block, and one whose
headers are not complete within ``REQUEST_HEADER_TIMEOUT`` seconds is answered 408 and closed. Request *bodies*
are still read by the pool thread: slow uploads are for a buffering proxy in front (see README).
"""

from __future__ import annotations

import contextlib
import selectors
import time
from collections import deque
from functools import partial

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")
_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class HeaderDeadlineWorker(ThreadWorker):
    """A ThreadWorker whose event loop collects each request's headers before a thread is spent on it."""

    #: Seconds a connection has for its request line and headers; set by gunicorn.conf.py from the config.
    header_timeout: float = 10.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading_headers: deque = deque()  # connections whose headers are arriving, oldest deadline first
        # Beyond this much, the headers are over gunicorn's own limits: the parser refuses them at once.
        self.max_header_bytes = (
            self.cfg.limit_request_line + 4 + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2)
        )

    def _reads_headers_itself(self, conn) -> bool:
        # TLS and HTTP/2 prior knowledge read from the socket before the parser does; leave them to gthread.
        return not self.cfg.is_ssl and not negotiation.prior_knowledge_allowed(self.cfg, conn.client)

    def enqueue_req(self, conn) -> None:
        if not self._reads_headers_itself(conn):
            super().enqueue_req(conn)
            return
        # A kept-alive connection may hold the start of its next request already (read ahead by the parser).
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.header_bytes = bytearray(buffered)
        conn.sock.setblocking(False)
        # Usually the whole request is there already (keep-alive, or sent with the connect): no poller round trip.
        received = self._receive(conn)
        if self._headers_complete(conn):
            self._dispatch(conn)  # even if the client has half-closed since: its request is whole
            return
        if received is False:
            self.nr_conns -= 1
            conn.close()
            return
        conn.header_deadline = time.monotonic() + self.header_timeout
        self.reading_headers.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))

    def _receive(self, conn) -> bool | None:
        """Read what has arrived: True if something did, None if nothing yet, False if the client is gone."""
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            return False
        conn.header_bytes += data
        return True

    def _headers_complete(self, conn) -> bool:
        data = conn.header_bytes
        return len(data) > self.max_header_bytes or any(end in data for end in _END_OF_HEADERS)

    def _on_header_bytes(self, conn, _sock) -> None:
        received = self._receive(conn)
        if received and self._headers_complete(conn):
            self._stop_waiting(conn)
            self._dispatch(conn)
        elif received is False:
            self._drop(conn)

    def _dispatch(self, conn) -> None:
        """Hand the connection, its headers in the parser's buffer, to a pool thread."""
        conn.sock.setblocking(True)
        conn.init()  # plain HTTP/1: only creates the parser (nothing is read from the socket)
        conn.parser.unreader.unread(bytes(conn.header_bytes))
        conn.header_bytes = None
        conn.data_ready = True
        super().enqueue_req(conn)

    def _stop_waiting(self, conn) -> None:
        self.poller.unregister(conn.sock)
        self.reading_headers.remove(conn)

    def _drop(self, conn, answer: bytes = b"") -> None:
        self._stop_waiting(conn)
        if answer:
            with contextlib.suppress(OSError):  # non-blocking, best effort: a full buffer means no answer
                conn.sock.send(answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gthread's own housekeeping, then close connections whose headers missed the deadline."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading_headers and self.reading_headers[0].header_deadline <= now:
            conn = self.reading_headers[0]
            # A connection that sent part of a request hears why it is closed; an idle one is closed quietly.
            self._drop(conn, _TIMEOUT_RESPONSE if conn.header_bytes else b"")
