"""Test clients at the socket level: connections pinned to a known gunicorn worker, or from a chosen address.

The worker holding a connection is read from /proc (Linux), not guessed: the server side of the connection is
found in /proc/net/tcp{,6} by its ports, and its socket inode among the workers' open file descriptors.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path

from requests.adapters import HTTPAdapter


def _server_side_inodes(server_port: int, client_port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inodes.add(inode)
    return inodes


def _pid_holding(inodes: set[str], pids: list[int]) -> int | None:
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


class PinnedConnection:
    """One kept-alive HTTP connection, and the pid of the worker process that accepted it."""

    def __init__(self, server) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.get("/api/health")  # accepted and served: some worker holds it now
        client_port = self.conn.sock.getsockname()[1]
        self.pid = _pid_holding(_server_side_inodes(server.port, client_port), server.worker_pids())

    def call(self, method: str, path: str, headers: dict | None = None, body: dict | None = None):
        """``(status, response, decoded JSON body or None)``; the worker must keep the connection open."""
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if payload else dict(headers or {})
        self.conn.request(method, path, body=payload, headers=all_headers)
        response = self.conn.getresponse()
        raw = response.read()
        assert response.getheader("Connection", "").lower() != "close", "the worker dropped the connection"
        return response.status, response, (json.loads(raw) if raw else None)

    def get(self, path: str, headers: dict | None = None):
        return self.call("GET", path, headers)

    def close(self) -> None:
        self.conn.close()


def pin_by_worker(server, workers: int, per_worker: int, timeout: float = 30) -> dict[int, list[PinnedConnection]]:
    """``per_worker`` kept-alive connections on each of ``workers`` workers, by worker pid."""
    by_worker: dict[int, list[PinnedConnection]] = {}
    spare: list[PinnedConnection] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if len(by_worker) == workers and all(len(conns) == per_worker for conns in by_worker.values()):
                return by_worker
            conn = PinnedConnection(server)
            if conn.pid is not None and len(by_worker.setdefault(conn.pid, [])) < per_worker:
                by_worker[conn.pid].append(conn)
            else:
                spare.append(conn)
        spare.extend(conn for conns in by_worker.values() for conn in conns)
        reached = {pid: len(conns) for pid, conns in by_worker.items()}
        raise AssertionError(f"could not reach {workers} workers with {per_worker} connections each: {reached}")
    finally:
        for conn in spare:  # idle keep-alive connections would hold up gunicorn's graceful stop
            conn.close()


def pin_connections(server, workers: int, per_worker: int, timeout: float = 30) -> list[PinnedConnection]:
    """:func:`pin_by_worker`, as one list."""
    return [conn for conns in pin_by_worker(server, workers, per_worker, timeout).values() for conn in conns]


class FromAddress(HTTPAdapter):
    """Connect from a chosen loopback address (127.0.0.2, ...): a different client to the server's eyes."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)
