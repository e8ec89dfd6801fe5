"""Real gunicorn on a free port: workers share the key file and, on Redis, the limits; logs never hold a key.

To prove a behaviour holds *across* worker processes, requests go over kept-alive connections pinned to
a known worker: the worker holding a connection is read from /proc (Linux), not guessed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD, ROOT, base_env, free_port, gunicorn_command, server_env
from tests.procnet import PinnedConnection, pin_by_worker

pytestmark = pytest.mark.server

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
ADMIN = {"x-api-key": ADMIN_KEY}


@pytest.fixture
def pinned():
    """``pinned(server, per_worker, workers)`` -> {pid: [PinnedConnection, ...]}, closed after the test."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc to see which worker holds a connection")
    opened: list[PinnedConnection] = []

    def connect(server, per_worker: int, workers: int) -> dict[int, list[PinnedConnection]]:
        by_worker = pin_by_worker(server, workers, per_worker)
        opened.extend(conn for conns in by_worker.values() for conn in conns)
        return by_worker

    yield connect
    for conn in opened:  # idle keep-alive connections would hold up gunicorn's graceful stop
        conn.close()


def _api_log_lines(server) -> list[dict]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{") and '"api_auth"' in line:
            lines.append(json.loads(line))
    return lines


def _assert_no_secret_in(text: str, keys: list[str]) -> None:
    for key in keys:
        assert key not in text
        assert key[12:] not in text  # not even the part after the display prefix


def _create_user(workspaces: Path, name: str = "alice") -> None:
    from app.users.store import UserStore

    UserStore(workspaces).create(name, PASSWORD)


# -- one worker, memory storage (the default) -------------------------------------------------------------------
def test_default_server_runs_one_worker_and_logs_each_attempt_without_keys(live_server, workspaces):
    server = live_server()
    assert len(server.worker_pids()) == 1
    token = (workspaces / ".setup-token").read_text().strip()
    assert f"No users yet. Create the first admin at http://127.0.0.1:{server.port}/setup?token={token}" in server.log()

    _create_user(workspaces)
    created = requests.post(server.url + "/api/keys", json={"name": "ci", "user": "alice"}, headers=ADMIN, timeout=10)
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert KEY_RE.fullmatch(key)

    for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}, {"Authorization": key}):
        response = requests.get(server.url + "/api/whoami", headers=headers, timeout=10)
        assert response.status_code == 200
        assert response.json()["key"]["id"] == body["id"]
    wrong = KEY_RE.sub(lambda m: m.group(0)[:-1] + ("A" if m.group(0)[-1] != "A" else "B"), key)
    response = requests.get(server.url + "/api/whoami", headers={"x-api-key": wrong}, timeout=10)
    assert (response.status_code, response.json()) == (401, {"error": "Invalid API key"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    revoked = requests.patch(server.url + f"/api/keys/{body['id']}", json={"active": False}, headers=ADMIN, timeout=10)
    assert revoked.json()["status"] == "revoked"
    assert requests.get(server.url + "/api/whoami", headers={"x-api-key": key}, timeout=10).status_code == 401

    lines = _api_log_lines(server)
    outcomes = [(line["method"], line["path"], line["status"], line["outcome"]) for line in lines]
    assert outcomes == [
        ("POST", "/api/keys", 201, "ok"),
        ("GET", "/api/whoami", 200, "ok"),
        ("GET", "/api/whoami", 200, "ok"),
        ("GET", "/api/whoami", 200, "ok"),
        ("GET", "/api/whoami", 401, "invalid"),
        ("PATCH", f"/api/keys/{body['id']}", 200, "ok"),
        ("GET", "/api/whoami", 401, "revoked"),
    ]
    assert lines[1]["key_id"] == body["id"] and lines[1]["key_prefix"] == body["prefix"]
    assert all(line["ip"] == "127.0.0.1" for line in lines)
    _assert_no_secret_in(server.log(), [key, wrong])
    _assert_no_secret_in((workspaces / "api-keys.json").read_text(), [key])


def test_a_spoofed_forwarded_for_does_not_pass_the_allowlist(live_server):
    server = live_server(ALLOWED_IPS="10.0.0.0/8")
    response = requests.get(server.url + "/api/whoami", headers={**ADMIN, "X-Forwarded-For": "10.0.0.1"}, timeout=10)
    assert (response.status_code, response.json()) == (403, {"error": "Access denied from this IP address"})


# -- start-up refusals ---------------------------------------------------------------------------------------------
def _gunicorn(workspaces: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        gunicorn_command(*args),
        cwd=ROOT,
        env=server_env(workspaces, free_port(), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


MEMORY_REFUSAL = (
    "askgate: configuration error: 3 gunicorn workers need shared rate-limit storage: "
    "RATELIMIT_STORAGE_URI=memory:// counts per process, so every limit would be 3 times too high; "
    "set RATELIMIT_STORAGE_URI=redis://localhost:6379/0 or run one worker\n"
)


def _extending_config(directory: Path) -> str:
    """A config file of an operator's own that takes ours and asks for 3 workers."""
    path = directory / "wide.conf.py"
    path.write_text('from runpy import run_path\n\nglobals().update(run_path("gunicorn.conf.py"))\nworkers = 3\n')
    return str(path)


# Each way to ask gunicorn for 3 workers: (command-line arguments, environment). "CONFIG" is _extending_config's;
# a second -c wins over gunicorn_command's own.
WAYS_TO_ASK_FOR_THREE = {
    "-w 3": (["-w", "3"], {}),
    "--workers=3": (["--workers=3"], {}),
    "GUNICORN_CMD_ARGS=-w 3": ([], {"GUNICORN_CMD_ARGS": "-w 3"}),
    "GUNICORN_CMD_ARGS=--workers 3": ([], {"GUNICORN_CMD_ARGS": "--workers 3"}),
    "WEB_CONCURRENCY=3": ([], {"WEB_CONCURRENCY": "3"}),
    "config file": (["-c", "CONFIG"], {}),
}


def _way(name: str, directory: Path) -> tuple[list[str], dict]:
    args, env = WAYS_TO_ASK_FOR_THREE[name]
    return [_extending_config(directory) if arg == "CONFIG" else arg for arg in args], env


@pytest.mark.parametrize("way", list(WAYS_TO_ASK_FOR_THREE))
def test_several_workers_on_memory_storage_are_refused_however_asked_for(workspaces, tmp_path, way):
    args, env = _way(way, tmp_path)
    result = _gunicorn(workspaces, *args, **env, RATELIMIT_STORAGE_URI="memory://")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MEMORY_REFUSAL)


def test_gunicorn_env_setting_counts_as_the_workers_storage(workspaces, redis_url):
    # -e sets the workers' environment over the real one: memory:// there is refused even with Redis outside.
    result = _gunicorn(workspaces, "-w", "3", "-e", "RATELIMIT_STORAGE_URI=memory://", RATELIMIT_STORAGE_URI=redis_url)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", MEMORY_REFUSAL)


def test_the_final_count_decides_not_web_concurrency(start_server):
    server = start_server({"WEB_CONCURRENCY": "3", "RATELIMIT_STORAGE_URI": "memory://"}, args=["-w", "1"])
    assert len(server.wait_workers(1)) == 1
    assert "configuration error" not in server.log()


def test_a_running_server_on_memory_storage_keeps_one_worker_on_ttin(start_server):
    server = start_server({"RATELIMIT_STORAGE_URI": "memory://"})
    (worker,) = server.wait_workers(1)
    os.kill(server.proc.pid, signal.SIGTTIN)
    os.kill(server.proc.pid, signal.SIGUSR1)  # handled after TTIN: once it is logged, TTIN's work is done
    deadline = time.monotonic() + 20
    while "Handling signal: usr1" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert server.worker_pids() == [worker]
    assert (
        "askgate: 2 gunicorn workers need shared rate-limit storage: RATELIMIT_STORAGE_URI=memory:// counts per "
        "process, so every limit would be 2 times too high; set RATELIMIT_STORAGE_URI=redis://localhost:6379/0 or "
        "run one worker; keeping one worker"
    ) in server.log()
    assert requests.get(server.url + "/api/health", timeout=10).status_code == 200


@pytest.mark.redis
@pytest.mark.parametrize("way", list(WAYS_TO_ASK_FOR_THREE))
def test_several_workers_on_redis_storage_start_however_asked_for(start_server, redis_db, tmp_path, way):
    args, env = _way(way, tmp_path)
    server = start_server({**env, "RATELIMIT_STORAGE_URI": redis_db}, args=args)
    assert len(server.wait_workers(3)) == 3
    response = requests.get(server.url + "/api/whoami", headers=ADMIN, timeout=10)
    assert (response.status_code, response.json()["auth_method"]) == (200, "admin_key")
    assert "configuration error" not in server.log()


def test_bad_config_stops_gunicorn_with_one_line(workspaces):
    result = _gunicorn(workspaces, API_RATE_LIMIT="many")
    assert result.returncode == 1
    assert result.stderr == (
        "askgate: configuration error: API_RATE_LIMIT must be a whole number of requests per hour, got 'many'\n"
    )


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("GUNICORN_THREADS", "x", "GUNICORN_THREADS must be a whole number, got 'x'"),
        ("GUNICORN_TIMEOUT", "2m", "GUNICORN_TIMEOUT must be a whole number, got '2m'"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1, got 0"),
    ],
)
def test_bad_gunicorn_setting_stops_it_with_one_line_naming_it(workspaces, name, value, line):
    result = _gunicorn(workspaces, **{name: value})
    assert result.returncode == 1
    assert result.stderr == f"askgate: configuration error: {line}\n"


# -- several workers on Redis --------------------------------------------------------------------------------------
@pytest.mark.redis
def test_a_revocation_through_one_worker_is_refused_by_another_at_once(live_server, redis_db, workspaces, pinned):
    server = live_server(RATELIMIT_STORAGE_URI=redis_db, WEB_CONCURRENCY="2")
    _create_user(workspaces)
    (first, *_), (second, *_) = pinned(server, 1, 2).values()
    assert first.pid != second.pid

    status, _, body = first.call("POST", "/api/keys", ADMIN, {"name": "k", "user": "alice"})
    assert status == 201
    key = {"x-api-key": body["key"]}
    for conn in (first, second):  # both workers have the key in their in-memory index
        assert conn.call("GET", "/api/whoami", key)[0] == 200

    status, _, revoked = first.call("PATCH", f"/api/keys/{body['id']}", ADMIN, {"active": False})
    assert (status, revoked["status"]) == (200, "revoked")
    status, response, refused = second.call("GET", "/api/whoami", key)
    assert (status, refused) == (401, {"error": "Invalid API key"})
    assert response.getheader("WWW-Authenticate") == "Bearer"
    assert first.call("GET", "/api/whoami", key)[0] == 401


@pytest.mark.redis
def test_concurrent_creates_from_workers_and_the_cli_lose_no_key(live_server, redis_db, workspaces, pinned):
    server = live_server(RATELIMIT_STORAGE_URI=redis_db, WEB_CONCURRENCY="2")
    _create_user(workspaces)
    connections = [conn for conns in pinned(server, 2, 2).values() for conn in conns]
    per_connection = 6
    created: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(connections) + 1)

    def create_many(conn: PinnedConnection) -> None:
        try:
            start.wait()
            for i in range(per_connection):
                status, _, body = conn.call("POST", "/api/keys", ADMIN, {"name": f"{conn.pid}-{i}", "user": "alice"})
                assert status == 201, body
                created.append(body)
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=create_many, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "key", "create", "--user", "alice", "--name", "from-cli"],
        cwd=workspaces.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), **base_env(workspaces)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    start.wait()
    for thread in threads:
        thread.join(60)
    cli_out, cli_err = cli.communicate(timeout=60)
    assert errors == []
    assert cli.returncode == 0, cli_err

    keys = [body["key"] for body in created] + [cli_out.strip()]
    assert len(keys) == len(set(keys)) == len(connections) * per_connection + 1
    stored = json.loads((workspaces / "api-keys.json").read_text())
    assert len(stored["keys"]) == len(keys)
    assert {r["id"] for r in stored["keys"]} >= {body["id"] for body in created}
    for key in keys:
        status, _, _ = connections[0].call("GET", "/api/whoami", {"x-api-key": key})
        assert status == 200
    _assert_no_secret_in((workspaces / "api-keys.json").read_text(), keys)
    _assert_no_secret_in(server.log(), keys)


@pytest.mark.redis
def test_the_rate_limit_is_exact_across_workers(live_server, redis_db, workspaces, pinned):
    import redis

    limit, per_connection = 10, 3
    server = live_server(RATELIMIT_STORAGE_URI=redis_db, WEB_CONCURRENCY="2", API_RATE_LIMIT=str(limit))
    connections = [conn for conns in pinned(server, 4, 2).values() for conn in conns]
    results: list[tuple[int, int, dict]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(connections))

    def hammer(conn: PinnedConnection) -> None:
        start.wait()
        for _ in range(per_connection):
            status, response, body = conn.call("GET", "/api/whoami", {"x-api-key": CLIENT_KEY})
            assert response.getheader("X-RateLimit-Limit") == str(limit)
            if status == 429:
                assert body == {"error": "Rate limit exceeded"}
                assert 0 < int(response.getheader("Retry-After")) <= 3600
            with lock:
                results.append((conn.pid, status, body))

    threads = [threading.Thread(target=hammer, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    total = len(connections) * per_connection
    assert len(results) == total > limit
    statuses = Counter(status for _, status, _ in results)
    assert statuses == {200: limit, 429: total - limit}
    assert len({pid for pid, _, _ in results}) == 2  # both workers counted into the same bucket

    # The other buckets are untouched; the limiter's storage names buckets, never keys.
    assert connections[0].call("GET", "/api/whoami", ADMIN)[0] == 200
    stored = b" ".join(redis.Redis.from_url(redis_db).keys("*"))
    assert b"askgate" in stored
    assert CLIENT_KEY.encode() not in stored and ADMIN_KEY.encode() not in stored


@pytest.mark.redis
def test_failed_attempts_are_limited_across_workers(live_server, redis_db, pinned):
    server = live_server(RATELIMIT_STORAGE_URI=redis_db, WEB_CONCURRENCY="2", AUTH_FAILURE_LIMIT="4/minute")
    (a, b), (c, d) = pinned(server, 2, 2).values()
    statuses = [conn.call("GET", "/api/whoami", {"x-api-key": "guess"})[0] for conn in (a, c, b, d, a, c)]
    assert statuses == [401, 401, 401, 401, 429, 429]
    status, response, body = d.call("GET", "/api/whoami", ADMIN)
    assert (status, body) == (429, {"error": "Rate limit exceeded"})
    assert 0 < int(response.getheader("Retry-After")) <= 60
