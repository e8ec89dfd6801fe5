"""Shared fixtures: an app on a temp WORKSPACES_DIR, a client, an auth helper, and real servers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

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


class LiveServer:
    """A real gunicorn running the project's gunicorn.conf.py on a free port."""

    def __init__(self, workspaces: Path, env: dict, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspaces = workspaces
        self.log_path = log_path
        full_env = {**os.environ, **base_env(workspaces, **env), "HOST": "127.0.0.1", "PORT": str(self.port)}
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not come up:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@pytest.fixture
def live_server(tmp_path: Path, workspaces: Path):
    """Start gunicorn with extra environment: ``live_server(API_RATE_LIMIT="5")``."""
    servers: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        server = LiveServer(workspaces, env, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """``REDIS_URL`` if set, else a private redis-server on a free port; skip only when neither exists."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not _redis_ping(url):
            pytest.fail(f"REDIS_URL={url} is set but does not answer PING")
        yield url
        return
    binary = shutil.which("redis-server")
    if not binary:
        reason = "no REDIS_URL and no redis-server binary (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis tests (.ci/run installs redis-server)")
        pytest.skip(reason)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_ping(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_db(redis_url):
    """A flushed Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
