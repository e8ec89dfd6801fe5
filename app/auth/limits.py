"""Per-client hourly limits and the failed-attempt throttle for ``/api``: one storage call per request.

flask-limiter owns the storage (``RATELIMIT_STORAGE_URI``, its options) and guards ``/login`` with its
decorators. On ``/api`` its generic path cost more than the rest of the request (it rebuilt and evaluated
the limits, then read the window back for the headers: four Redis round trips), so the API hook counts
through the same storage directly, in clock-aligned fixed windows whose reset time needs no lookup.

When the shared storage fails, counting moves to this process's memory (limits then hold per worker),
one line is logged, and the storage is tried again with a growing back-off until it answers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import parse as parse_limit
from limits.storage import MemoryStorage, Storage

log = logging.getLogger("askgate.limits")

API_WINDOW = 3600
RETRY_FIRST, RETRY_MAX = 1.0, 30.0


class LocalCounter:
    """Fixed-window counters in this process: for ``memory://`` and while the shared storage is down.

    limits' MemoryStorage would do, but it starts a timer thread for expiry that cost more than the count.
    """

    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def incr(self, key: str, expires_at: float, now: float) -> int:
        with self._lock:
            if now >= self._next_prune:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                self._next_prune = now + 60
            count, until = self._counts.get(key, (0, 0.0))
            if until <= now:
                count, until = 0, expires_at
            self._counts[key] = (count + 1, until)
            return count + 1

    def keys(self) -> list[str]:
        return list(self._counts)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]


class ClientLimits:
    """``API_RATE_LIMIT`` per client per hour and ``AUTH_FAILURE_LIMIT`` failed attempts per IP."""

    def __init__(self, api_per_hour: int, failure_limit: str, storage: Storage | None) -> None:
        self.api_amount = api_per_hour
        failure = parse_limit(failure_limit)
        self.failure_amount = failure.amount
        self.failure_window = failure.get_expiry()
        # memory:// counts in this process; anything else (Redis) is shared by every worker and host.
        self.shared = None if storage is None or isinstance(storage, MemoryStorage) else storage
        self.local = LocalCounter()
        self._retry_at = 0.0
        self._retry_after = RETRY_FIRST
        self._down = False
        self._state_lock = threading.Lock()
        self._throttled: dict[str, float] = {}  # ip -> until; this process's view of the shared counter

    def _incr(self, key: str, expires_at: float, now: float) -> int:
        if self.shared is not None and now >= self._retry_at:
            try:
                count = self.shared.incr(key, max(1, math.ceil(expires_at - now)))
            except Exception as exc:  # any storage error: serve under local limits rather than fail
                self._storage_failed(exc, now)
            else:
                if self._down:
                    self._storage_recovered()
                return count
        return self.local.incr(key, expires_at, now)

    def _storage_failed(self, exc: Exception, now: float) -> None:
        with self._state_lock:
            if not self._down:
                log.warning(
                    "Rate limit storage unreachable (%s) - falling back to in-memory limits in this worker",
                    type(exc).__name__,
                )
                self._down = True
            else:
                self._retry_after = min(self._retry_after * 2, RETRY_MAX)
            self._retry_at = now + self._retry_after

    def _storage_recovered(self) -> None:
        with self._state_lock:
            if self._down:
                log.warning("Rate limit storage recovered - limits are shared again")
                self._down, self._retry_at, self._retry_after = False, 0.0, RETRY_FIRST

    def hit(self, bucket: str) -> Verdict:
        """Count one request of ``bucket``; the verdict carries the X-RateLimit headers."""
        now = time.time()
        window = int(now // API_WINDOW)
        reset = (window + 1) * API_WINDOW
        count = self._incr(f"askgate/api/{bucket}/{window}", reset, now)
        headers = {
            "X-RateLimit-Limit": str(self.api_amount),
            "X-RateLimit-Remaining": str(max(0, self.api_amount - count)),
            "X-RateLimit-Reset": str(reset),
        }
        if count > self.api_amount:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
            return Verdict(False, headers)
        return Verdict(True, headers)

    def _throttle_headers(self, until: float, now: float) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, math.ceil(until - now))),
            "X-RateLimit-Limit": str(self.failure_amount),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(until)),
        }

    def throttled(self, ip: str) -> dict[str, str] | None:
        """The 429 headers if ``ip`` has used up its failed attempts, else None (no storage call)."""
        until = self._throttled.get(ip)
        if until is None:
            return None
        now = time.time()
        if until <= now:
            self._throttled.pop(ip, None)
            return None
        return self._throttle_headers(until, now)

    def record_failure(self, ip: str) -> dict[str, str] | None:
        """Count a failed attempt; the 429 headers if that one was over the limit."""
        now = time.time()
        window = int(now // self.failure_window)
        reset = (window + 1) * self.failure_window
        count = self._incr(f"askgate/authfail/{ip}/{window}", reset, now)
        if count <= self.failure_amount:
            return None
        self._throttled[ip] = reset
        if len(self._throttled) > 10_000:  # a flood of addresses must not grow this without bound
            self._throttled = {k: v for k, v in self._throttled.items() if v > now}
        return self._throttle_headers(reset, now)
