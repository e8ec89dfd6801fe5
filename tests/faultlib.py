"""Helpers for the fault tests: a gunicorn we can signal and wrap, a redis-server we can stop, page logins."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, ROOT, base_env, free_port

CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')
NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')


def redis_server_binary() -> str:
    """The redis-server binary; skip without it, except in CI where a missing Redis is a failure."""
    binary = shutil.which("redis-server")
    if binary:
        return binary
    if os.environ.get("CI"):
        pytest.fail("CI is set but redis-server is not installed: the Redis fault tests must run in CI")
    pytest.skip("redis-server is not installed (apt-get install redis-server); set CI=true to make this a failure")


class RedisServer:
    """A private redis-server on a fixed loopback port that a test may stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.5).ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open but nothing answers, like a hung host."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)


class Gunicorn:
    """gunicorn with the project's gunicorn.conf.py on a free port, optionally started through ``wrapper``.

    ``wrapper`` is a command prefix that ends by exec'ing its arguments (so ``proc.pid`` stays the master),
    for example ``unshare -m`` with a shell that mounts a small tmpfs first. Files the server sees in its own
    mount namespace are reachable through ``/proc/<master>/root``: use :meth:`path`.
    """

    def __init__(
        self,
        workspaces: Path,
        env: dict,
        log_path: Path,
        wrapper: list[str] | None = None,
        args: list[str] | None = None,
        wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspaces = workspaces
        self.log_path = log_path
        self.namespaced = wrapper is not None
        full_env = {**os.environ, **base_env(workspaces, **env), "HOST": "127.0.0.1", "PORT": str(self.port)}
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *(args or []), "wsgi:app"]
        self.proc = subprocess.Popen(
            [*(wrapper or []), *command],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not come up:\n{self.log()}")

    def path(self, *parts: str) -> Path:
        """A path under WORKSPACES_DIR as the server sees it (through its mount namespace if it has one)."""
        base = Path(f"/proc/{self.proc.pid}/root{self.workspaces}") if self.namespaced else self.workspaces
        return base.joinpath(*parts)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def wait_workers(self, count: int, timeout: float = 30) -> list[int]:
        """Wait until ``count`` workers exist and answer; returns their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count:
                return pids
            time.sleep(0.1)
        raise AssertionError(f"expected {count} workers, have {self.worker_pids()}:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page carries no csrf-token meta tag"
    return match.group(1)


def login(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """A requests session signed in through the real login form."""
    session = requests.Session()
    token = csrf_from(session.get(base_url + "/login", timeout=10).text)
    response = session.post(
        base_url + "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (302, 303), response.text
    return session


def generate_key_on_page(session: requests.Session, base_url: str, name: str) -> requests.Response:
    """Submit the Account Security page's generate form, as a browser would."""
    page = session.get(base_url + "/account/security", timeout=10).text
    nonce = NONCE_RE.search(page)
    data = {"name": name, "expiry": "never", "csrf_token": csrf_from(page)}
    if nonce:
        data["nonce"] = nonce.group(1)
    return session.post(base_url + "/account/security", data=data, timeout=10)


def add_user_on_page(session: requests.Session, base_url: str, username: str) -> requests.Response:
    """Submit the admin page's add-user form."""
    page = session.get(base_url + "/admin/users", timeout=10).text
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page)}
    return session.post(base_url + "/admin/users", data=data, allow_redirects=False, timeout=10)


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file directly in ``folder`` with its bytes."""
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir()) if entry.is_file()}


@contextlib.contextmanager
def gunicorn_servers(workspaces: Path, log_dir: Path) -> Iterator[Callable[..., Gunicorn]]:
    """``start(env, wrapper=..., args=...)`` -> a ready Gunicorn; every one started is stopped on exit."""
    started: list[Gunicorn] = []

    def start(env: dict | None = None, **options) -> Gunicorn:
        server = Gunicorn(workspaces, env or {}, log_dir / f"gunicorn-{len(started)}.log", wait=False, **options)
        started.append(server)
        server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# -- keep-alive connections pinned to known workers --------------------------------------------------------------
def _server_side_inodes(server_port: int, client_port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inodes.add(fields[9])
    return inodes


def _pid_holding(inodes: set[str], pids: list[int]) -> int | None:
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd)[8:-1] in inodes:
                    return pid
    return None


class PinnedConnection:
    """One kept-alive HTTP connection and the pid of the worker that accepted it."""

    def __init__(self, server: Gunicorn) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        self.get("/api/health")
        client_port = self.conn.sock.getsockname()[1]
        self.pid = _pid_holding(_server_side_inodes(server.port, client_port), server.worker_pids())

    def get(self, path: str, headers: dict | None = None) -> tuple[int, http.client.HTTPResponse, dict]:
        self.conn.request("GET", path, headers=headers or {})
        response = self.conn.getresponse()
        body = json.loads(response.read() or b"null")
        assert response.getheader("Connection", "").lower() != "close", "the worker dropped the connection"
        return response.status, response, body

    def close(self) -> None:
        self.conn.close()


def pin_connections(server: Gunicorn, workers: int, per_worker: int, timeout: float = 30) -> list[PinnedConnection]:
    """``per_worker`` kept-alive connections on each of ``workers`` workers."""
    by_worker: dict[int, list[PinnedConnection]] = {}
    spare: list[PinnedConnection] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if len(by_worker) == workers and all(len(conns) == per_worker for conns in by_worker.values()):
                return [conn for conns in by_worker.values() for conn in conns]
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
