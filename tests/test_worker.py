"""Real gunicorn with app/worker.py: slow headers cost no thread and meet a deadline; normal traffic is unchanged."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import requests

from app.config import ConfigError, load_config
from tests.conftest import ADMIN_KEY, base_env

pytestmark = pytest.mark.server

TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
HEALTH = b"GET /api/health HTTP/1.1\r\nHost: t\r\n\r\n"


_leftover: dict[int, bytes] = {}  # bytes of the next response already received, per socket


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line and headers, body) of one response with a Content-Length; pipelined ones come in order."""
    data = _leftover.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    if body[length:]:
        _leftover[sock.fileno()] = body[length:]
    return head, body[:length]


def _read_until_closed(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    data = _leftover.pop(sock.fileno(), b"")
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Tricklers:
    """Clients that send a request line, then one more header line every ``interval`` seconds, forever."""

    def __init__(self, port: int, count: int, interval: float = 1.0) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for sock in self.socks:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: t\r\n")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self.thread.start()

    def _run(self, interval: float) -> None:
        line = 0
        while not self.stop.wait(interval):
            line += 1
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow-%d: y\r\n" % line)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def test_twenty_trickling_clients_do_not_hold_up_a_normal_request(live_server):
    server = live_server(GUNICORN_THREADS="8")
    tricklers = Tricklers(server.port, 20)
    try:
        time.sleep(1.5)  # every trickler has started its headers and sent a line more
        for _ in range(4):
            started = time.monotonic()
            response = requests.get(server.url + "/api/whoami", headers={"x-api-key": ADMIN_KEY}, timeout=10)
            assert response.status_code == 200
            assert time.monotonic() - started < 2, "a normal request waited behind slow clients"
            time.sleep(0.5)
    finally:
        tricklers.close()


def test_headers_that_miss_the_deadline_get_408_and_the_connection_closes(live_server):
    server = live_server(REQUEST_HEADER_TIMEOUT="2")
    tricklers = Tricklers(server.port, 1, interval=0.5)  # busy the whole time, never finished
    idle = socket.create_connection(("127.0.0.1", server.port))  # connects and sends nothing at all
    started = time.monotonic()
    try:
        assert _read_until_closed(tricklers.socks[0], limit=10) == TIMEOUT_408
        elapsed = time.monotonic() - started
        assert 1.5 < elapsed < 6, elapsed
        assert _read_until_closed(idle, limit=10) == b""  # closed quietly: it never started a request
    finally:
        tricklers.close()
        idle.close()
    assert requests.get(server.url + "/api/health", timeout=5).json() == {"status": "ok"}


def test_headers_arriving_in_pieces_within_the_deadline_are_served(live_server):
    server = live_server(REQUEST_HEADER_TIMEOUT="5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        request = b"GET /api/whoami HTTP/1.1\r\nHost: t\r\nx-api-key: " + ADMIN_KEY.encode() + b"\r\n\r\n"
        for start in range(0, len(request), 7):
            sock.sendall(request[start : start + 7])
            time.sleep(0.02)
        head, body = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b'"auth_method":"admin_key"' in body


def test_keep_alive_and_pipelining_still_work(live_server):
    server = live_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(3):  # one connection, one request after another
            sock.sendall(HEALTH)
            head, body = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and body == b'{"status":"ok"}\n'
        sock.sendall(HEALTH * 3)  # three at once: the read-ahead holds the next requests
        for _ in range(3):
            head, body = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and body == b'{"status":"ok"}\n'
        # A kept-alive connection that starts a request and stalls is held to the deadline too.
        sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        assert _read_until_closed(sock, limit=20) == TIMEOUT_408


def test_a_post_body_sent_with_its_headers_reaches_the_app(live_server):
    server = live_server()
    body = b'{"workspaceId": "nothere", "question": "q"}'
    request = (
        b"POST /api/ask HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nx-api-key: "
        + ADMIN_KEY.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request + body[:10])
        time.sleep(0.3)  # the rest of the body comes later: read by the request's thread
        sock.sendall(body[10:])
        head, answer = _read_response(sock)
    assert head.startswith(b"HTTP/1.1 404 ") and answer == b'{"error":"Workspace not found"}\n'


def test_oversized_headers_are_still_refused_by_gunicorn(live_server):
    server = live_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        status = _read_until_closed(sock, limit=10).split(b"\r\n", 1)[0]
    assert status.split()[1] in (b"400", b"431")


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_header_timeout_stops_start_up(workspaces, value):
    with pytest.raises(ConfigError, match="REQUEST_HEADER_TIMEOUT"):
        load_config(base_env(workspaces, REQUEST_HEADER_TIMEOUT=value))
    assert load_config(base_env(workspaces)).request_header_timeout == 10
