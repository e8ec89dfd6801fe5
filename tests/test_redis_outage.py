"""Rate limits on Redis: exact across workers, and a Redis outage survived (issue 4, "Redis down").

Each test runs its own redis-server on a free port, because the outage tests stop and freeze it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import ADMIN_KEY, CLIENT_KEY, RedisServer
from tests.procnet import pin_connections

pytestmark = [pytest.mark.server, pytest.mark.redis]

PROBE_KEY = "probe-key-" + "p" * 32
FAST = 1.0  # seconds: the config gives Redis 0.25 s socket timeouts, so no request may stall longer
FAILURE_LINE = re.compile(r"unreachable|falling back", re.IGNORECASE)


@pytest.fixture
def own_redis(tmp_path: Path):
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    yield server
    server.stop()


def bucket_counts(redis_server: RedisServer, env_key: str) -> list[int]:
    """The limiter counters Redis holds for ``env_key``'s bucket (named by a digest fragment, never the key)."""
    fragment = "env:" + hashlib.sha256(env_key.encode()).hexdigest()[:16]
    client = redis_server.client()
    return [int(client.get(name)) for name in client.keys("*") if fragment.encode() in name]


class Caller:
    """GET /api/whoami with a key on one kept-alive connection, timing each request."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url + "/api/whoami"
        self.session = requests.Session()

    def __call__(self, key: str) -> tuple[int, str | None, float, dict]:
        started = time.monotonic()
        response = self.session.get(self.url, headers={"x-api-key": key}, timeout=10)
        elapsed = time.monotonic() - started
        return response.status_code, response.headers.get("X-RateLimit-Remaining"), elapsed, response.json()


def failure_lines(server) -> list[str]:
    return [line for line in server.log().splitlines() if FAILURE_LINE.search(line)]


def test_requests_are_served_under_memory_limits_while_redis_is_down_and_shared_limits_resume(own_redis, start_server):
    limit = 5
    server = start_server(
        {
            "RATELIMIT_STORAGE_URI": own_redis.url,
            "WEB_CONCURRENCY": "1",
            "API_RATE_LIMIT": str(limit),
            "VALID_API_KEYS": f"{CLIENT_KEY},{PROBE_KEY}",
        }
    )
    call = Caller(server.url)

    # Healthy: the worker counts in Redis.
    assert [call(CLIENT_KEY)[:2] for _ in range(2)] == [(200, "4"), (200, "3")]
    assert bucket_counts(own_redis, CLIENT_KEY) == [2]

    # Redis stops: still served, fast, and limited in the worker's memory (a fresh window: exactly N pass).
    own_redis.stop()
    during = [call(CLIENT_KEY) for _ in range(limit + 3)]
    assert [(status, remaining) for status, remaining, _, _ in during] == [
        (200, "4"),
        (200, "3"),
        (200, "2"),
        (200, "1"),
        (200, "0"),
        (429, "0"),
        (429, "0"),
        (429, "0"),
    ]
    assert [body for status, _, _, body in during if status == 429] == [{"error": "Rate limit exceeded"}] * 3
    assert max(elapsed for _, _, elapsed, _ in during) < FAST
    admin = call(ADMIN_KEY)
    assert (admin[0], admin[3]["auth_method"]) == (200, "admin_key") and admin[2] < FAST
    assert requests.get(server.url + "/api/health", timeout=5).json() == {"status": "ok"}
    time.sleep(0.3)  # let the worker's log line reach the file
    lines_after_first_outage = len(failure_lines(server))

    # Redis is back on the same port: once flask-limiter's backoff check sees it, counting is shared again.
    own_redis.start()
    deadline = time.monotonic() + 20
    while not bucket_counts(own_redis, PROBE_KEY):
        assert time.monotonic() < deadline, "the limiter never went back to Redis"
        status, _, elapsed, _ = call(PROBE_KEY)
        assert status in (200, 429) and elapsed < FAST
        time.sleep(0.2)
    # Redis restarted empty (no persistence): the client's shared window starts again from N.
    assert [call(CLIENT_KEY)[:2] for _ in range(2)] == [(200, "4"), (200, "3")]
    assert bucket_counts(own_redis, CLIENT_KEY) == [2]

    # A second failure period: served again, and logged once more.
    own_redis.stop()
    second = [call(ADMIN_KEY) for _ in range(3)]
    assert [status for status, _, _, _ in second] == [200, 200, 200]
    assert max(elapsed for _, _, elapsed, _ in second) < FAST
    time.sleep(0.3)

    assert "Traceback" not in server.log()
    # One clear line per failure period from the single worker, not one per request and not none.
    server_lines = "\n".join(line for line in server.log().splitlines() if not line.startswith("{"))
    assert (lines_after_first_outage, len(failure_lines(server))) == (1, 2), server_lines


def test_a_hung_redis_costs_no_request_more_than_a_second(own_redis, start_server):
    limit = 5
    server = start_server(
        {"RATELIMIT_STORAGE_URI": own_redis.url, "WEB_CONCURRENCY": "1", "API_RATE_LIMIT": str(limit)}
    )
    call = Caller(server.url)
    assert call(CLIENT_KEY)[:2] == (200, "4")

    own_redis.pause()  # connections are accepted by the kernel but never answered: only timeouts help
    try:
        during = [call(CLIENT_KEY) for _ in range(limit + 3)]
    finally:
        own_redis.resume()
    assert [status for status, _, _, _ in during] == [200] * limit + [429] * 3
    assert [remaining for _, remaining, _, _ in during] == ["4", "3", "2", "1", "0", "0", "0", "0"]
    slowest = max(elapsed for _, _, elapsed, _ in during)
    assert slowest < FAST, f"a request took {slowest:.2f} s while Redis hung"


def test_the_limit_is_exact_across_four_workers_on_many_connections(own_redis, start_server):
    workers, per_worker, per_connection = 4, 2, 4
    total = workers * per_worker * per_connection  # 32 requests
    limit = total - 20  # N + 20 requests with the same key
    server = start_server(
        {"RATELIMIT_STORAGE_URI": own_redis.url, "WEB_CONCURRENCY": str(workers), "API_RATE_LIMIT": str(limit)},
        args=["--keep-alive", "60"],  # pinned connections may wait while slower workers boot
    )
    server.wait_workers(workers)
    connections = pin_connections(server, workers, per_worker)  # two kept-alive connections on every worker
    go = threading.Barrier(len(connections))

    def client(conn) -> list[tuple[int, int, str | None, str | None, dict]]:
        go.wait(10)  # all connections at once, so every worker counts at the same time
        seen = []
        for _ in range(per_connection):
            status, response, body = conn.get("/api/whoami", {"x-api-key": CLIENT_KEY})
            limit_header = response.getheader("X-RateLimit-Limit")
            seen.append((conn.pid, status, limit_header, response.getheader("X-RateLimit-Remaining"), body))
        return seen

    try:
        with ThreadPoolExecutor(max_workers=len(connections)) as pool:
            per_client = list(pool.map(client, connections))
    finally:
        for conn in connections:
            conn.close()
    results = [result for seen in per_client for result in seen]

    assert len(results) == total
    assert Counter(status for _, status, _, _, _ in results) == {200: limit, 429: total - limit}
    assert len({pid for pid, status, _, _, _ in results if status == 200}) >= 2  # the allowed ones, on several
    assert {header for _, _, header, _, _ in results} == {str(limit)}
    assert all(body == {"error": "Rate limit exceeded"} for _, status, _, _, body in results if status == 429)
    assert all(remaining == "0" for _, status, _, remaining, _ in results if status == 429)
    assert bucket_counts(own_redis, CLIENT_KEY) == [total]  # every worker counted into the one Redis key

    # X-RateLimit-Remaining is read from Redis after the request's own increment, so concurrent requests may
    # repeat a value but never report more than is left: the k-th largest value is at most N - k ...
    allowed = sorted((int(remaining) for _, status, _, remaining, _ in results if status == 200), reverse=True)
    assert all(value <= limit - rank for rank, value in enumerate(allowed, start=1)), allowed
    # ... and each client, asking one request after another, sees it strictly count down to 0.
    for seen in per_client:
        values = [int(remaining) for _, _, _, remaining, _ in seen]
        assert all(later < earlier or later == 0 for earlier, later in zip(values, values[1:], strict=False)), values
