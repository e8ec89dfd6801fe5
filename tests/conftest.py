"""Shared fixtures: an app on a temp WORKSPACES_DIR, a client, an auth helper, and real servers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import app.documents.sharedfile as sharedfile
from app import create_app
from app.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
ADMIN_KEY = "admin-key-" + "a" * 32
CLIENT_KEY = "client-key-" + "c" * 32
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def base_env(workspaces: Path, **overrides: str) -> dict:
    env = {
        "WORKSPACES_DIR": str(workspaces),
        "SECRET_KEY": "test-secret-key",
        "ADMIN_API_KEY": ADMIN_KEY,
        "VALID_API_KEYS": CLIENT_KEY,
        "API_RATE_LIMIT": "1000",
        # Many tests mint dozens of keys; the key-creation limit has its own tests.
        "KEY_CREATE_LIMIT": "100000/hour",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    env.update(overrides)
    return env


@pytest.fixture
def workspaces(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces"
    path.mkdir()
    return path


@pytest.fixture
def make_app(workspaces: Path):
    """Build an app from an environment like the real one; keyword arguments override variables."""

    def factory(**env: str):
        return create_app(load_config(base_env(workspaces, **env)))

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page carries no csrf-token meta tag"
    return match.group(1)


class AuthActions:
    """Create users and sign in through the real form, CSRF token included."""

    def __init__(self, app, client) -> None:
        self.app = app
        self.client = client

    @property
    def services(self):
        return self.app.extensions["askgate"]

    def create_user(self, name: str = "alice", admin: bool = False, password: str = PASSWORD):
        return self.services.users.create(name, password, "admin" if admin else "member")

    def login(self, name: str = "alice", password: str = PASSWORD, follow: bool = False):
        page = self.client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        return self.client.post(
            "/login",
            data={"username": name, "password": password, "csrf_token": token},
            follow_redirects=follow,
        )

    def csrf(self, path: str = "/dashboard") -> str:
        return csrf_from(self.client.get(path).get_data(as_text=True))

    def new_key(self, owner: str = "alice", name: str = "script", days: int | None = None) -> str:
        return self.services.keys.create(owner, name, days).key


@pytest.fixture
def auth(app, client) -> AuthActions:
    return AuthActions(app, client)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(*args: str) -> list[str]:
    """The command line that runs the project's gunicorn.conf.py; ``args`` go to gunicorn before the app."""
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"]


def server_env(workspaces: Path, port: int, **env: str) -> dict:
    """This process's environment plus :func:`base_env` for a server on ``127.0.0.1:port``."""
    return {**os.environ, **base_env(workspaces, **env), "HOST": "127.0.0.1", "PORT": str(port)}


class LiveServer:
    """A real gunicorn running the project's gunicorn.conf.py on a free port.

    ``args`` go to gunicorn before the app. ``wrapper`` is a command prefix that ends by exec'ing its arguments
    (so ``proc.pid`` stays the master), for example ``unshare -m`` with a shell that mounts a small tmpfs first;
    files the server sees in its own mount namespace are reachable through ``/proc/<master>/root``: use
    :meth:`path`. With ``wait=False`` the constructor returns at once: call :meth:`wait_ready`.
    """

    def __init__(
        self,
        workspaces: Path,
        env: dict,
        log_path: Path,
        *,
        args: list[str] | None = None,
        wrapper: list[str] | None = None,
        wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspaces = workspaces
        self.log_path = log_path
        self.namespaced = wrapper is not None
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [*(wrapper or []), *gunicorn_command(*(args or []))],
            cwd=ROOT,
            env=server_env(workspaces, self.port, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # a server that never came up is not left running
                raise

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


@contextlib.contextmanager
def live_servers(workspaces: Path, log_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    """``start(env, args=..., wrapper=...)`` -> a ready LiveServer; every one started is stopped on exit."""
    started: list[LiveServer] = []

    def start(env: dict | None = None, **options) -> LiveServer:
        server = LiveServer(workspaces, env or {}, log_dir / f"gunicorn-{len(started)}.log", **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def live_server(tmp_path: Path, workspaces: Path):
    """Start gunicorn with extra environment: ``live_server(API_RATE_LIMIT="5")``."""
    with live_servers(workspaces, tmp_path) as start:
        yield lambda **env: start(env)


@pytest.fixture
def start_server(tmp_path: Path, workspaces: Path):
    """Start gunicorn with an environment dict and options: ``start_server({...}, args=[...], wrapper=[...])``."""
    with live_servers(workspaces, tmp_path) as start:
        yield start


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_server_binary(missing: str = "redis-server is not installed (apt-get install redis-server)") -> str:
    """The redis-server binary; without it a skip, except in CI (which must run the Redis tests) a failure."""
    binary = shutil.which("redis-server")
    if binary:
        return binary
    if os.environ.get("CI"):
        pytest.fail(f"{missing}; CI must run the Redis tests (.ci/run installs redis-server)")
    pytest.skip(f"{missing}; set CI=true to make this a failure")


class RedisServer:
    """A private redis-server on a fixed loopback port that a test may stop and start again.

    ``persistent``: an append-only file in ``workdir`` keeps the data across a stop and start (a store's outage),
    written on every command; otherwise each start is empty (rate limits)."""

    def __init__(
        self, workdir: Path, port: int | None = None, binary: str | None = None, *, persistent: bool = False
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> None:
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
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _redis_ping(self.url):
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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """``REDIS_URL`` if set, else a private redis-server on a free port; skip only when neither exists."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not _redis_ping(url):
            pytest.fail(f"REDIS_URL={url} is set but does not answer PING")
        yield url
        return
    binary = redis_server_binary("no REDIS_URL and no redis-server binary (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"), binary=binary)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture
def redis_db(redis_url):
    """A flushed Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()


@pytest.fixture
def parse_count(monkeypatch) -> list:
    """Counts real JSON parses of a store file in this process."""
    calls: list[str] = []
    real_load = json.load

    def counting_load(fh, *args, **kwargs):
        calls.append(fh.name)
        return real_load(fh, *args, **kwargs)

    monkeypatch.setattr(sharedfile.json, "load", counting_load)
    return calls
