"""How much each key is used: counted in memory per process, flushed to ``WORKSPACES_DIR/usage.sqlite3`` or Redis.

Every API request made with a key (a dashboard key, ``ADMIN_API_KEY`` or one of ``VALID_API_KEYS``) adds one to its
bucket's current hour, split into ``ok`` (2xx), ``client_error`` (other 4xx), ``rate_limited`` (429) and ``denied``
(401/403 the key itself caused: revoked, expired, disabled owner, scope, workspace, address). The request path pays
one deque append (``UsageRecorder.count``); a background thread of each process sums those by hour and adds the sums
to the store every ``USAGE_FLUSH_SECONDS`` with additive upserts, so any number of processes and hosts add up exactly.
The last time and address a key was used are written with the same flush: never into ``api-keys.json``, so using a
key never invalidates any process's key cache. A kill -9 loses at most one window; a graceful stop flushes.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("askgate.usage")

FILE_NAME = "usage.sqlite3"
OUTCOMES = ("ok", "client_error", "rate_limited", "denied")
OK, CLIENT_ERROR, RATE_LIMITED, DENIED = range(4)
HOUR = 3600
DAY = 86400
HOURS_SHOWN = 7 * 24  # hourly rows are kept (and shown) for 7 days
DAYS_SHOWN = 90  # daily rows for 90 days
GRANULARITIES = {"hour": (HOUR, HOURS_SHOWN), "day": (DAY, DAYS_SHOWN)}
KEY_BUCKET_PREFIX = "key:"


def key_bucket(key_id: str) -> str:
    """The bucket of a dashboard key: the same name its hourly rate limit uses."""
    return KEY_BUCKET_PREFIX + key_id


def outcome_of(status: int, refused_by_key: bool) -> int | None:
    """The column a response counts in; None for what none of them holds (1xx, 3xx, 5xx)."""
    if 200 <= status < 300:
        return OK
    if status == 429:
        return RATE_LIMITED
    if refused_by_key and status in (401, 403):
        return DENIED
    if 400 <= status < 500:
        return CLIENT_ERROR
    return None


def period_starts(granularity: str, now: float | None = None) -> list[int]:
    """The starts (epoch seconds, UTC) of every period a series shows, oldest first, the current one last."""
    size, count = GRANULARITIES[granularity]
    current = int(now if now is not None else time.time()) // size * size
    return [current - size * back for back in range(count - 1, -1, -1)]


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LastUse:
    at: float  # epoch seconds
    ip: str | None

    @property
    def at_iso(self) -> str:
        return iso(self.at)


Counts = dict[tuple[str, int], list[int]]  # (bucket, hour start) -> [ok, client_error, rate_limited, denied]


def _by_day(counts: Counts) -> Counts:
    days: Counts = {}
    for (bucket, hour), row in counts.items():
        total = days.setdefault((bucket, hour - hour % DAY), [0, 0, 0, 0])
        for i, n in enumerate(row):
            total[i] += n
    return days


# -- stores ---------------------------------------------------------------------------------------------------------
class SQLiteUsage:
    """``usage.sqlite3`` (WAL): hourly rows for 7 days, daily rows for 90, the last use of each bucket."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        # A connection per operation: flushes come every few seconds from one thread, reads from page views;
        # nothing is shared across threads or a fork.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        if not self._ready:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS counts (
                    bucket TEXT NOT NULL, period TEXT NOT NULL, start INTEGER NOT NULL,
                    ok INTEGER NOT NULL, client_error INTEGER NOT NULL,
                    rate_limited INTEGER NOT NULL, denied INTEGER NOT NULL,
                    PRIMARY KEY (bucket, period, start)) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS counts_by_period ON counts (period, start);
                CREATE TABLE IF NOT EXISTS last_used (bucket TEXT PRIMARY KEY, at REAL NOT NULL, ip TEXT);
                """
            )
            with contextlib.suppress(OSError):  # it holds addresses keys were used from
                os.chmod(self.path, 0o600)
            self._ready = True
        return conn

    def add(self, counts: Counts, last: dict[str, LastUse], now: float) -> None:
        rows = [(b, "hour", s, *r) for (b, s), r in counts.items()]
        rows += [(b, "day", s, *r) for (b, s), r in _by_day(counts).items()]
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO counts VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, period, start) DO UPDATE SET"
                " ok = ok + excluded.ok, client_error = client_error + excluded.client_error,"
                " rate_limited = rate_limited + excluded.rate_limited, denied = denied + excluded.denied",
                rows,
            )
            conn.executemany(
                "INSERT INTO last_used VALUES (?, ?, ?) ON CONFLICT (bucket) DO UPDATE SET"
                " at = excluded.at, ip = excluded.ip WHERE excluded.at >= last_used.at",
                [(b, use.at, use.ip) for b, use in last.items()],
            )
            conn.execute("DELETE FROM counts WHERE period = 'hour' AND start < ?", (now - HOURS_SHOWN * HOUR,))
            conn.execute("DELETE FROM counts WHERE period = 'day' AND start < ?", (now - DAYS_SHOWN * DAY,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def series(self, bucket: str, granularity: str, starts: list[int]) -> dict[int, list[int]]:
        if not self.path.exists():
            return {}  # nothing flushed yet: a read creates nothing
        conn = self._connect()
        try:
            found = conn.execute(
                "SELECT start, ok, client_error, rate_limited, denied FROM counts"
                " WHERE bucket = ? AND period = ? AND start >= ?",
                (bucket, granularity, starts[0]),
            ).fetchall()
        finally:
            conn.close()
        return {row[0]: list(row[1:]) for row in found}

    def last_used(self) -> dict[str, LastUse]:
        if not self.path.exists():
            return {}
        conn = self._connect()
        try:
            return {b: LastUse(at, ip) for b, at, ip in conn.execute("SELECT bucket, at, ip FROM last_used")}
        finally:
            conn.close()

    def days(self, starts: list[int]) -> dict[int, dict[str, list[int]]]:
        """Every bucket's daily counts from ``starts[0]``: day start -> bucket -> counts."""
        if not self.path.exists():
            return {}
        conn = self._connect()
        try:
            found = conn.execute(
                "SELECT start, bucket, ok, client_error, rate_limited, denied FROM counts"
                " WHERE period = 'day' AND start >= ?",
                (starts[0],),
            ).fetchall()
        finally:
            conn.close()
        result: dict[int, dict[str, list[int]]] = {}
        for start, bucket, *row in found:
            result.setdefault(start, {})[bucket] = row
        return result


# Sets a bucket's last use only if it is newer than the one stored: processes flush in any order.
_SET_LAST_USE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and tonumber(string.match(current, '^[^|]*')) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return 1
"""


class RedisUsage:
    """One hash per period (``<prefix>:usage:hour:<start>``, fields ``<bucket>|<outcome>``) expiring with it,
    and one hash of last uses. A flush is one MULTI/EXEC pipeline of HINCRBYs."""

    def __init__(self, client, prefix: str = "askgate") -> None:
        self.client = client
        self.prefix = f"{prefix}:usage"

    def _period_key(self, granularity: str, start: int) -> str:
        return f"{self.prefix}:{granularity}:{start}"

    def add(self, counts: Counts, last: dict[str, LastUse], now: float) -> None:
        pipe = self.client.pipeline(transaction=True)
        for granularity, rows in (("hour", counts), ("day", _by_day(counts))):
            size, kept = GRANULARITIES[granularity]
            touched = set()
            for (bucket, start), row in rows.items():
                key = self._period_key(granularity, start)
                touched.add((key, start))
                for name, n in zip(OUTCOMES, row, strict=True):
                    if n:
                        pipe.hincrby(key, f"{bucket}|{name}", n)
            for key, start in touched:
                pipe.expireat(key, start + size * (kept + 1))
        for bucket, use in last.items():
            pipe.eval(_SET_LAST_USE, 1, f"{self.prefix}:last", bucket, repr(use.at), use.ip or "")
        pipe.execute()

    def _read(self, granularity: str, starts: list[int]) -> list[dict[bytes, bytes]]:
        pipe = self.client.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self._period_key(granularity, start))
        return pipe.execute()

    def series(self, bucket: str, granularity: str, starts: list[int]) -> dict[int, list[int]]:
        pipe = self.client.pipeline(transaction=False)
        fields = [f"{bucket}|{name}" for name in OUTCOMES]
        for start in starts:
            pipe.hmget(self._period_key(granularity, start), fields)
        found = {}
        for start, values in zip(starts, pipe.execute(), strict=True):
            if any(values):
                found[start] = [int(v or 0) for v in values]
        return found

    def last_used(self) -> dict[str, LastUse]:
        result = {}
        for bucket, value in self.client.hgetall(f"{self.prefix}:last").items():
            at, _, ip = value.decode().partition("|")
            result[bucket.decode()] = LastUse(float(at), ip or None)
        return result

    def days(self, starts: list[int]) -> dict[int, dict[str, list[int]]]:
        result: dict[int, dict[str, list[int]]] = {}
        for start, fields in zip(starts, self._read("day", starts), strict=True):
            for field, value in fields.items():
                bucket, _, name = field.decode().rpartition("|")
                if name in OUTCOMES:
                    result.setdefault(start, {}).setdefault(bucket, [0, 0, 0, 0])[OUTCOMES.index(name)] = int(value)
        return result


def open_store(store_url: str | None, workspaces_dir: Path):
    if store_url and store_url.startswith(("redis://", "rediss://", "unix://")):
        from app.documents.redisdoc import redis_client

        return RedisUsage(redis_client(store_url))
    return SQLiteUsage(Path(workspaces_dir) / FILE_NAME)


class UsageUnavailable(Exception):
    """The usage store cannot be read (a Redis that is away, a damaged or unreadable usage.sqlite3)."""


# -- the per-process counters ---------------------------------------------------------------------------------------
_recorders: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()
_NOT_USED = object()  # a pending request's address slot when the key was refused: no last use
DRAIN_SECONDS = 1.0  # the flushing thread sums pending requests this often, so they hold about a second's memory


def flush_all() -> None:
    """Flush every recorder of this process (gunicorn's worker_exit, and atexit)."""
    for recorder in list(_recorders):
        recorder.flush()


def _after_fork_in_child() -> None:
    for recorder in list(_recorders):
        # Locks a parent's thread held at the fork would stay held in the child: fresh ones.
        recorder._lock, recorder._flush_lock = threading.Lock(), threading.Lock()
        recorder._running = False  # the child's first count starts its own thread (the parent's is not copied)


atexit.register(flush_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


class UsageRecorder:
    """This process's counts since the last flush, and the thread that sums and flushes them.

    The request path (``count``) appends one tuple to a deque: one atomic call, no lock, no arithmetic. The
    flushing thread sums what is pending by bucket and hour every ``DRAIN_SECONDS`` and writes the sums every
    ``flush_seconds``; ``bench/instructions.py`` measures what a request pays."""

    def __init__(self, store, flush_seconds: float) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self._pending: deque[tuple] = deque()  # (bucket, column, epoch seconds, address or _NOT_USED)
        self._counts: Counts = {}  # pending requests summed, not flushed yet
        self._last: dict[str, tuple[float, str | None]] = {}  # bucket -> (epoch seconds, address)
        self._lock = threading.Lock()  # guards _counts and _last (summing, flushing, reading)
        self._flush_lock = threading.Lock()
        self._pid: int | None = None
        self._running = False  # this process's flushing thread is started (reset in a forked child)
        self._wake = threading.Event()
        _recorders.add(self)

    def count(self, bucket: str, column: int, ip: str | None, used: bool) -> None:
        """One request of ``bucket`` in ``column`` (OK, CLIENT_ERROR, ...): the hot path.

        ``used``: the key was accepted, so this is its last use (from ``ip``)."""
        if not self._running:
            self._start()
        self._pending.append((bucket, column, time.time(), ip if used else _NOT_USED))

    def _sum_pending(self) -> None:
        """Move pending requests into the per-hour sums (the caller holds ``_lock``).

        ``popleft`` is atomic: a request appended meanwhile is either taken now or left for the next call."""
        take = self._pending.popleft
        counts, last = self._counts, self._last
        while True:
            try:
                bucket, column, at, ip = take()
            except IndexError:
                return
            slot = (bucket, int(at) // HOUR * HOUR)
            row = counts.get(slot)
            if row is None:
                row = counts[slot] = [0, 0, 0, 0]
            row[column] += 1
            if ip is not _NOT_USED:
                seen = last.get(bucket)
                if seen is None or seen[0] <= at:
                    last[bucket] = (at, ip)

    def sum_pending(self) -> None:
        with self._lock:
            self._sum_pending()

    def _start(self) -> None:
        """The first count in this process (a gunicorn worker is forked): start its own flushing thread.

        A thread rather than the request that finds the window passed: counts reach the store within a window
        even when traffic stops, and no request ever waits for a write."""
        with self._flush_lock:
            if self._pid == os.getpid() and self._running:
                return
            # Counts a parent process took before the fork are the parent's to flush.
            self._lock = threading.Lock()
            self._pending = deque()
            self._counts, self._last = {}, {}
            self._pid = os.getpid()
            self._running = True
            self._wake = threading.Event()
            threading.Thread(
                target=_flush_every,
                args=(weakref.ref(self), self._wake, self.flush_seconds, self._pid),
                name="askgate-usage-flush",
                daemon=True,
            ).start()

    def flush(self) -> None:
        """Add this process's counts to the store; on failure they are kept for the next flush."""
        if self._pid != os.getpid():
            return
        with self._flush_lock:
            with self._lock:
                self._sum_pending()
                counts, self._counts = self._counts, {}
                last, self._last = self._last, {}
            if not counts and not last:
                return
            try:
                self.store.add(counts, {b: LastUse(at, ip) for b, (at, ip) in last.items()}, time.time())
            except Exception as exc:  # a store that is away keeps nothing from being counted later
                log.warning("could not record key usage (kept for the next flush): %s", exc)
                self._put_back(counts, last)

    def _put_back(self, counts: Counts, last: dict[str, tuple[float, str | None]]) -> None:
        with self._lock:
            for slot, row in counts.items():
                mine = self._counts.setdefault(slot, [0, 0, 0, 0])
                for i, n in enumerate(row):
                    mine[i] += n
            for bucket, use in last.items():
                if bucket not in self._last or self._last[bucket][0] < use[0]:
                    self._last[bucket] = use

    # -- reading ------------------------------------------------------------------------------------------------
    def series(self, bucket: str, granularity: str, now: float | None = None) -> list[dict]:
        """Every period of ``granularity`` (``hour``: 168, ``day``: 90), oldest first, zeros included."""
        self.flush()  # what this process counted shows at once
        starts = period_starts(granularity, now)
        try:
            found = self.store.series(bucket, granularity, starts)
        except Exception as exc:
            raise UsageUnavailable(str(exc)) from exc
        return [{"start": iso(s), **dict(zip(OUTCOMES, found.get(s, (0, 0, 0, 0)), strict=True))} for s in starts]

    def last_used(self) -> dict[str, LastUse]:
        """Each bucket's last use: the store's, or this process's if newer and not flushed yet.

        A store that cannot be read leaves listings with what this process knows (logged), not an error."""
        try:
            found = self.store.last_used()
        except Exception as exc:
            log.warning("could not read key usage: %s", exc)
            found = {}
        pending = {}
        if self._pid == os.getpid():
            with self._lock:
                self._sum_pending()
                pending = dict(self._last)
        for bucket, (at, ip) in pending.items():
            if bucket not in found or found[bucket].at < at:
                found[bucket] = LastUse(at, ip)
        return found

    def daily(self, now: float | None = None) -> tuple[list[int], dict[int, dict[str, list[int]]]]:
        """The 90 day starts and, for each, every bucket's counts (the admin's overview)."""
        self.flush()
        starts = period_starts("day", now)
        try:
            return starts, self.store.days(starts)
        except Exception as exc:
            raise UsageUnavailable(str(exc)) from exc


def _flush_every(ref: weakref.ref, wake: threading.Event, seconds: float, pid: int) -> None:
    """The flushing thread: sums pending requests every DRAIN_SECONDS, flushes every ``seconds``.

    It holds its recorder weakly, so an app that is gone (tests make many) takes it along."""
    next_flush = time.monotonic() + seconds
    while not wake.wait(min(DRAIN_SECONDS, max(0.0, next_flush - time.monotonic()))):
        recorder = ref()
        if recorder is None or os.getpid() != pid:
            return
        if time.monotonic() >= next_flush:
            recorder.flush()
            next_flush = time.monotonic() + seconds
        else:
            recorder.sum_pending()
        del recorder


def with_last_use(views: Iterable[dict], last: dict[str, LastUse]) -> list[dict]:
    """Listings' key views with ``last_used_at`` (and ``last_used_ip``) from the usage store.

    A key last used before usage moved out of ``api-keys.json`` keeps the stamp its record holds."""
    result = []
    for view in views:
        use = last.get(key_bucket(view["id"]))
        if use is not None:
            view["last_used_at"], view["last_used_ip"] = use.at_iso, use.ip
        else:
            view["last_used_ip"] = None
        result.append(view)
    return result


def key_views(recorder: UsageRecorder, records: Iterable[dict]) -> list[dict]:
    """``public_view`` of each record, with its last use from the usage store."""
    from app.keys.store import public_view

    return with_last_use([public_view(r) for r in records], recorder.last_used())
