"""The Redis connection the stores (``redisrecords``), the usage counts and the audit log use when
``STORE_URL=redis://…``."""

from __future__ import annotations

import redis

SOCKET_TIMEOUT = 1.0


def redis_client(url: str) -> redis.Redis:
    """A client with short timeouts: a dead Redis must fail a request quickly, not stall it."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )
