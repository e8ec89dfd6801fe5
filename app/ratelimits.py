"""Per-client hourly limits and the failed-attempt throttle for ``/api``: one storage call per request.

flask-limiter owns the storage (``RATELIMIT_STORAGE_URI``, its options) and guards ``/login`` with its
decorators. On ``/api`` its generic path cost more than the rest of the request (it rebuilt and evaluated
the limits, then read the window back for the headers: four Redis round trips), so the API hook counts
through the same storage directly, in clock-aligned fixed windows whose reset time needs no lookup.

When the shared storage fails, counting moves to this process's memory (limits then hold per worker),
one line is logged, and the storage is tried again with a growing back-off until it answers.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import parse_many
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


def address_bucket(addr: str | None) -> str:
    """The throttle's name for a client address: IPv4 as is, IPv6 per /64 (one host gets a whole /64)."""
    text = (addr or "").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def window_limits(spec: str) -> tuple[tuple[int, int], ...]:
    """``"20/minute;100/day"`` as ((amount, window seconds), ...): every one of them counts."""
    return tuple((item.amount, item.get_expiry()) for item in parse_many(spec))


class LimitReached(Exception):
    """A counted action (creating a key) over its limit; the message is fit to show, headers go on the 429."""

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]


class ClientLimits:
    """``API_RATE_LIMIT`` per client per hour, ``USER_RATE_LIMIT`` per user per hour (when set), and
    ``AUTH_FAILURE_LIMIT`` failed attempts per address (IPv6 per /64)."""

    def __init__(
        self,
        api_per_hour: int,
        failure_limit: str,
        storage: Storage | None,
        user_per_hour: int | None = None,
        key_create_limit: str = "20/hour",
    ) -> None:
        self.api_amount = api_per_hour
        self.user_amount = user_per_hour
        self.failure_limits = window_limits(failure_limit)
        self.key_create_limit = key_create_limit
        self.key_create_limits = window_limits(key_create_limit)
        # memory:// counts in this process; anything else (Redis) is shared by every worker and host.
        self.shared = None if storage is None or isinstance(storage, MemoryStorage) else storage
        self.local = LocalCounter()
        self._retry_at = 0.0
        self._retry_after = RETRY_FIRST
        self._down = False
        self._state_lock = threading.Lock()
        self._throttled: dict[str, tuple[int, float]] = {}  # address bucket -> (limit, until): this process's view

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

    def hit(self, bucket: str, user_bucket: str | None = None, limit: int | None = None) -> Verdict:
        """Count one request of ``bucket`` (and of its user's ``user_bucket`` under ``USER_RATE_LIMIT``).

        ``limit`` is the bucket's own hourly limit (a dashboard key's ``rate_limit``); None for API_RATE_LIMIT.
        The verdict carries the X-RateLimit headers of whichever limit has less room left.
        """
        now = time.time()
        window = int(now // API_WINDOW)
        reset = (window + 1) * API_WINDOW
        amount = self.api_amount if limit is None else limit
        remaining = amount - self._incr(f"askgate/api/{bucket}/{window}", reset, now)
        if self.user_amount is not None and user_bucket is not None:
            user_remaining = self.user_amount - self._incr(f"askgate/apiuser/{user_bucket}/{window}", reset, now)
            if user_remaining < remaining:
                amount, remaining = self.user_amount, user_remaining
        headers = {
            "X-RateLimit-Limit": str(amount),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(reset),
        }
        if remaining < 0:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
            return Verdict(False, headers)
        return Verdict(True, headers)

    def consume(self, name: str, limits: tuple[tuple[int, int], ...]) -> Verdict:
        """Count one use of ``name`` against every (amount, window) in ``limits`` (e.g. ``KEY_CREATE_LIMIT``)."""
        now = time.time()
        refused: tuple[int, float] | None = None
        for amount, seconds in limits:
            window = int(now // seconds)
            reset = (window + 1) * seconds
            count = self._incr(f"askgate/{name}/{seconds}/{window}", reset, now)
            if count > amount and (refused is None or reset > refused[1]):
                refused = (amount, reset)
        if refused is None:
            return Verdict(True, {})
        return Verdict(False, self._throttle_headers(refused[0], refused[1], now))

    def admit_key_creation(self, user_id: str) -> None:
        """Count one new key of ``user_id`` against ``KEY_CREATE_LIMIT``; raises LimitReached over it."""
        verdict = self.consume(f"keycreate/{user_id}", self.key_create_limits)
        if not verdict.allowed:
            wait = int(verdict.headers["Retry-After"])
            when = f"{math.ceil(wait / 60)} minutes" if wait > 90 else f"{wait} seconds"
            raise LimitReached(
                f"Key creation limit reached ({self.key_create_limit} per user); try again in {when}",
                verdict.headers,
            )

    @staticmethod
    def _throttle_headers(amount: int, until: float, now: float) -> dict[str, str]:
        return {
            "Retry-After": str(max(1, math.ceil(until - now))),
            "X-RateLimit-Limit": str(amount),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(until)),
        }

    def throttled(self, ip: str) -> dict[str, str] | None:
        """The 429 headers if ``ip`` has used up its failed attempts, else None (no storage call)."""
        if not self._throttled:
            return None  # nobody is throttled (the usual case): no address to parse
        bucket = address_bucket(ip)
        entry = self._throttled.get(bucket)
        if entry is None:
            return None
        amount, until = entry
        now = time.time()
        if until <= now:
            self._throttled.pop(bucket, None)
            return None
        return self._throttle_headers(amount, until, now)

    def record_failure(self, ip: str) -> dict[str, str] | None:
        """Count a failed attempt against every ``AUTH_FAILURE_LIMIT``; the 429 headers if one is now over."""
        bucket = address_bucket(ip)
        verdict = self.consume(f"authfail/{bucket}", self.failure_limits)
        if verdict.allowed:
            return None
        now = time.time()
        until = float(verdict.headers["X-RateLimit-Reset"])
        self._throttled[bucket] = (int(verdict.headers["X-RateLimit-Limit"]), until)
        if len(self._throttled) > 10_000:  # a flood of addresses must not grow this without bound
            self._throttled = {k: v for k, v in self._throttled.items() if v[1] > now}
        return verdict.headers
