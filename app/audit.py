"""The audit log: one event per management action, in ``WORKSPACES_DIR/audit.log`` or a Redis stream.

An event is ``{"id", "time", "action", "actor", "auth_method", "ip", "target": {"type", "id", "name"},
"detail": {...}}``. ``detail`` is built from ``DETAIL_FIELDS`` only, each value a short string, number, boolean,
null or a short list of those: nothing else can reach the log, so a key, digest, password, session or setup token
has no field to travel in.

Recording fails closed: :func:`record` raises ``AuditUnavailable`` when the event cannot be written. The accounts
layer records inside :func:`on_commit`, which runs the record inside the store's own write (after the change is
checked, before it is saved: see ``app.documents.run_commit_hook``), so an action is saved only once its event is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app import documents

log = logging.getLogger("askgate.audit")

ACTIONS = (
    "key.create",
    "key.update",
    "key.rotate",
    "key.revoke",
    "key.delete",
    "user.create",
    "user.update",
    "user.disable",
    "user.enable",
    "user.password",
    "user.login",
    "user.login_failed",
    "user.logout",
    "workspace.create",
    "workspace.replace",
    "workspace.delete",
    "setup.complete",
    "store.restore",
    "store.migrate",
)
# What ``detail`` may hold: what changed, never a secret. Anything else given is dropped.
DETAIL_FIELDS = frozenset(
    {
        "name",
        "owner",
        "role",
        "expires_at",
        "scopes",
        "workspaces",
        "rate_limit",
        "allowed_ips",
        "grace_seconds",
        "previous_expires_at",
        "revoked_keys",
        "files",
        "stores",
        "to",
        "overwrite",
        "keys",
        "users",
        "own",
    }
)
TARGET_TYPES = ("key", "user", "workspace", "store")
QUERY_FIELDS = ("action", "actor", "target", "since", "until", "limit", "cursor")
LIMIT_MAX = 500
LIMIT_DEFAULT = 100
FILE_NAME = "audit.log"
FILE_MODE = 0o600
KEEP_FILES = 5  # audit.log.1 … audit.log.5 besides audit.log
_TEXT_MAX = 200
_LIST_MAX = 64
_REDIS_SCAN = 1000


class AuditUnavailable(Exception):
    """The event could not be written: the action must not happen. ``disk_full`` when that is why."""

    def __init__(self, reason: str = "", *, disk_full: bool = False) -> None:
        super().__init__("Audit log unavailable")
        self.reason = reason
        self.disk_full = disk_full


def _unavailable(path: Path, exc: OSError) -> AuditUnavailable:
    return AuditUnavailable(f"{path}: {exc.strerror or exc}", disk_full=exc.errno in (errno.ENOSPC, errno.EDQUOT))


class AuditQueryError(ValueError):
    """A bad filter, limit or cursor; the message names it."""


# -- the event ----------------------------------------------------------------------------------------------------
def _text(value: object) -> str | None:
    return None if value is None else str(value)[:_TEXT_MAX]


def _value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:_TEXT_MAX]
    if isinstance(value, list | tuple):
        return [_value(item) for item in value[:_LIST_MAX] if item is None or isinstance(item, str | int | float)]
    if isinstance(value, dict):  # counts by store name and the like: names and numbers only
        return {str(k)[:_TEXT_MAX]: v for k, v in value.items() if isinstance(v, int | bool)}
    return None


def safe_location(location: str) -> str:
    """A store location as the log may show it: a URL without its user name and password."""
    parts = urlsplit(location)
    if not parts.scheme or "@" not in parts.netloc:
        return location
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build(
    action: str,
    *,
    actor: str | None,
    auth_method: str,
    ip: str | None,
    target_type: str,
    target_id: str | None,
    target_name: str | None,
    detail: dict | None = None,
) -> dict:
    """One event without its id (the store gives it). ``detail`` keeps only ``DETAIL_FIELDS``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if target_type not in TARGET_TYPES:
        raise ValueError(f"unknown audit target type {target_type!r}")
    return {
        "time": now_iso(),
        "action": action,
        "actor": _text(actor),
        "auth_method": str(auth_method),
        "ip": None if auth_method == "cli" else _text(ip),
        "target": {"type": target_type, "id": _text(target_id), "name": _text(target_name)},
        "detail": {k: _value(v) for k, v in (detail or {}).items() if k in DETAIL_FIELDS},
    }


# -- filters and paging -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    action: str | None = None  # exact, or a family such as "key.*"
    actor: str | None = None  # a username, case-insensitive
    target: str | None = None  # a target's id or name
    since: datetime | None = None
    until: datetime | None = None
    limit: int = LIMIT_DEFAULT
    cursor: str | None = None  # the id to continue after (decoded)

    def matches(self, event: dict) -> bool:
        if self.action:
            if self.action.endswith(".*"):
                if not event["action"].startswith(self.action[:-1]):
                    return False
            elif event["action"] != self.action:
                return False
        if self.actor and (event.get("actor") or "").lower() != self.actor.lower():
            return False
        if self.target:
            target = event.get("target") or {}
            if self.target not in (target.get("id"), target.get("name")):
                return False
        if self.since or self.until:
            moment = _parse_time(event.get("time"))
            if moment is None:
                return False
            if self.since and moment < self.since:
                return False
            if self.until and moment >= self.until:
                return False
        return True


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_moment(name: str, raw: str | None, *, end_of_day: bool = False) -> datetime | None:
    """``2026-12-01`` or ``2026-12-01T10:00:00Z`` (UTC when no zone); a bare date as ``until`` takes in that day."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    moment = _parse_time(text)
    if moment is None:
        raise AuditQueryError(f"{name} must be a date such as 2026-12-01 or a time such as 2026-12-01T10:00:00Z")
    if end_of_day and len(text) == 10:
        moment += timedelta(days=1)
    return moment


def encode_cursor(event_id: str) -> str:
    return base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    if not text or len(text) > 64 or not all(c.isalnum() or c in "-_" for c in text):
        raise AuditQueryError("cursor is not one this server gave: use next_cursor from the previous page")
    return text


def make_query(
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: object = None,
    cursor: str | None = None,
) -> Query:
    """A :class:`Query` from request-style strings; AuditQueryError names a bad one."""
    if action:
        family = action.endswith(".*") and any(a.startswith(action[:-1]) for a in ACTIONS)
        if action not in ACTIONS and not family:
            raise AuditQueryError(f"action must be one of {', '.join(ACTIONS)} (or a family such as key.*)")
    if limit is None or limit == "":
        count = LIMIT_DEFAULT
    else:
        try:
            count = int(limit)
        except (TypeError, ValueError):
            count = 0
        if not 1 <= count <= LIMIT_MAX:
            raise AuditQueryError(f"limit must be a whole number from 1 to {LIMIT_MAX}")
    for name, value in (("actor", actor), ("target", target)):
        if value is not None and len(value) > _TEXT_MAX:
            raise AuditQueryError(f"{name} is too long")
    return Query(
        action=action or None,
        actor=actor or None,
        target=target or None,
        since=parse_moment("since", since),
        until=parse_moment("until", until, end_of_day=True),
        limit=count,
        cursor=decode_cursor(cursor),
    )


@dataclass(frozen=True)
class Page:
    events: list[dict]
    next_cursor: str | None


def _page(found: Iterator[dict], query: Query) -> Page:
    events: list[dict] = []
    for event in found:
        if query.matches(event):
            if len(events) == query.limit:
                return Page(events, encode_cursor(events[-1]["id"]))
            events.append(event)
    return Page(events, None)


# -- the file store ---------------------------------------------------------------------------------------------
class FileAuditLog:
    """JSON lines in ``audit.log``: each event one ``O_APPEND`` write, fsync'd, under an flock on ``audit.log.lock``
    (so rotation at ``max_bytes`` is safe with several processes); ``audit.log.1`` … ``.5`` keep the older ones."""

    def __init__(self, workspaces_dir: Path, max_bytes: int) -> None:
        self.path = Path(workspaces_dir) / FILE_NAME
        self.lock_path = self.path.with_name(FILE_NAME + ".lock")
        self.max_bytes = max_bytes

    def _rotated(self, number: int) -> Path:
        return self.path.with_name(f"{FILE_NAME}.{number}")

    def record(self, event: dict) -> dict:
        event, finish = self.begin(event)
        finish(True)
        return event

    def begin(self, event: dict) -> tuple[dict, Callable[[bool], None]]:
        """Write ``event`` (fsync'd) and keep the lock until ``finish(saved)``: with False, the file is cut back to
        where it was, so an action whose change could not be saved leaves no event behind."""
        lock = None
        try:
            lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            fcntl.flock(lock, fcntl.LOCK_EX)
            event = {"id": f"{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}", **event}
            line = (json.dumps(event, separators=(",", ":")) + "\n").encode("ascii")  # JSON escapes: any name fits
            self._rotate_if_full(len(line))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            if lock is not None:
                os.close(lock)
            raise _unavailable(self.path, exc) from None
        try:
            start = os.fstat(fd).st_size
            written = os.write(fd, line)
            if written != len(line):
                os.ftruncate(fd, start)
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            os.close(lock)
            raise _unavailable(self.path, exc) from None

        def finish(saved: bool) -> None:
            try:
                if not saved:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                        os.fsync(fd)
            finally:
                os.close(fd)
                os.close(lock)  # closing releases the lock

        return event, finish

    def _rotate_if_full(self, adding: int) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size == 0 or size + adding <= self.max_bytes:
            return
        for number in range(KEEP_FILES - 1, 0, -1):
            older = self._rotated(number)
            if older.exists():
                os.replace(older, self._rotated(number + 1))
        os.replace(self.path, self._rotated(1))
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _lines(self) -> Iterator[bytes]:
        """Every line, newest first, across ``audit.log`` and its rotated files."""
        for path in (self.path, *(self._rotated(n) for n in range(1, KEEP_FILES + 1))):
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise AuditUnavailable(f"{path}: {exc.strerror or exc}") from None
            yield from reversed(lines)

    def read(self, query: Query) -> Page:
        lines = self._lines()
        if query.cursor:  # lines are written with the id first: find the cursor's without parsing any
            marker = b'{"id":"' + query.cursor.encode() + b'"'
            if not any(line.startswith(marker) for line in lines):
                return Page([], None)
        return _page(_parsed(lines, query), query)


def _needles(query: Query) -> tuple[tuple[bytes, ...], bytes | None]:
    """Bytes every matching line contains (cheap to test before parsing), and the actor's, to find in lower case."""
    needles = []
    if query.action:
        exact = not query.action.endswith(".*")
        needles.append(
            b'"action":"' + (query.action if exact else query.action[:-1]).encode() + (b'"' if exact else b"")
        )
    if query.target:
        needles.append(json.dumps(query.target).encode())
    actor = None
    if query.actor and query.actor.isascii():
        actor = b'"actor":' + json.dumps(query.actor.lower()).encode()
    return tuple(needles), actor


_TIME_RE = re.compile(rb'"time":"([^"]+)"')


def _parsed(lines: Iterator[bytes], query: Query) -> Iterator[dict]:
    """The events of ``lines`` that may match ``query``; stops a minute (for clocks that differ) past ``since``."""
    needles, actor = _needles(query)
    stop = query.since - timedelta(minutes=1) if query.since else None
    for line in lines:
        if stop is not None:
            found = _TIME_RE.search(line)
            moment = _parse_time(found.group(1).decode("ascii", "replace")) if found else None
            if moment is not None and moment < stop:
                return
        if not all(needle in line for needle in needles) or (actor is not None and actor not in line.lower()):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("skipping a malformed line in the audit log")
            continue
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            yield event


# -- the Redis stream ---------------------------------------------------------------------------------------------
class RedisAuditLog:
    """A Redis stream capped near ``max_events`` (``XADD MAXLEN ~``); the stream entry id is the event id."""

    def __init__(self, client, max_events: int, key: str = "askgate:audit") -> None:
        self.client = client
        self.max_events = max_events
        self.key = key

    def record(self, event: dict) -> dict:
        return self.begin(event)[0]

    def begin(self, event: dict) -> tuple[dict, Callable[[bool], None]]:
        """Add ``event``; ``finish(False)`` takes it out again (the action's change could not be saved)."""
        import redis

        payload = json.dumps(event, separators=(",", ":"))
        try:
            entry_id = self.client.xadd(self.key, {"e": payload}, maxlen=self.max_events, approximate=True)
        except redis.RedisError as exc:
            raise AuditUnavailable(f"redis stream {self.key}: {exc}") from None
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id

        def finish(saved: bool) -> None:
            if not saved:
                with contextlib.suppress(redis.RedisError):
                    self.client.xdel(self.key, entry_id)

        return {"id": entry_id, **event}, finish

    def _newest_first(self, before: str | None, since: datetime | None) -> Iterator[dict]:
        import redis

        upper = _previous_id(before) if before else "+"
        # Entry ids are the server's clock: a minute of slack for hosts whose clocks differ.
        lower = f"{max(0, int(since.timestamp() * 1000) - 60_000)}-0" if since else "-"
        while upper is not None:
            try:
                batch = self.client.xrevrange(self.key, max=upper, min=lower, count=_REDIS_SCAN)
            except redis.RedisError as exc:
                raise AuditUnavailable(f"redis stream {self.key}: {exc}") from None
            for entry_id, fields in batch:
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                try:
                    event = json.loads(fields.get(b"e") or fields.get("e"))
                except (TypeError, ValueError):
                    continue
                yield {"id": entry_id, **event}
            if len(batch) < _REDIS_SCAN:
                return
            last = batch[-1][0]
            upper = _previous_id(last.decode() if isinstance(last, bytes) else last)

    def read(self, query: Query) -> Page:
        if query.cursor and _stream_id(query.cursor) is None:
            return Page([], None)
        return _page(self._newest_first(query.cursor, query.since), query)


def _stream_id(text: str) -> tuple[int, int] | None:
    ms, _, seq = text.partition("-")
    if not (ms.isdigit() and seq.isdigit()):
        return None
    return int(ms), int(seq)


def _previous_id(text: str) -> str | None:
    """The stream id just before ``text`` (inclusive bounds work on every Redis version); None before the first."""
    parsed = _stream_id(text)
    if parsed is None:
        return None
    ms, seq = parsed
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return f"{ms - 1}-18446744073709551615"
    return None


def open_log(store_url: str | None, workspaces_dir: Path, max_bytes: int, max_events: int):
    """The audit log beside the key and user stores: the Redis stream with a redis:// ``store_url``, else the file."""
    if store_url:
        from app.documents.redisdoc import redis_client

        return RedisAuditLog(redis_client(store_url), max_events)
    return FileAuditLog(workspaces_dir, max_bytes)


# -- recording inside a store's write -----------------------------------------------------------------------------
@contextlib.contextmanager
def on_commit(sink, make: Callable[[object, dict], dict | None]) -> Iterator[None]:
    """Record ``make(result, document)`` (an event from :func:`build`, or None for nothing) in ``sink`` when the
    first store change inside the block is checked and about to be saved; if it cannot be, that change raises
    ``AuditUnavailable`` and is not saved. If the change is then not saved, the event is taken out again."""

    def hook(result: object, data: dict) -> Callable[[bool], None] | None:
        event = make(result, data)
        return None if event is None else sink.begin(event)[1]

    with documents.commit_hook(hook):
        yield
