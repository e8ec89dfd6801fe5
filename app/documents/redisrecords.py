"""A store document kept in Redis as one hash per record, with the same interface as ``SharedJSONFile``.

Chosen by ``STORE_URL=redis://…``, for several hosts. With ``base`` = ``askgate:api-keys`` (or ``askgate:users``):

- ``<base>:rec:<id>``: one record, a hash of its fields, each value JSON (``"revoked_at"`` → ``"2026-…Z"`` or ``null``);
- ``<base>:ids``: the set of record ids; ``<base>:<index>``: lookups such as digest → id (a hash per index);
- ``<base>:counter``: INCR'd by every change, in the change's own MULTI;
- ``<base>:changes``: a sorted set of the ids changed, each scored by the counter of its last change, trimmed to the
  last ``log_keep`` changes, so a process catches up by fetching only the records that changed since the counter it
  last saw, in the same round trip that asks whether anything changed (``_SYNC``);
- ``<base>:bak``: each record as last written (id → JSON), what ``store restore`` puts back;
- ``<base>:meta``: the layout and schema version.

A change touches only its record (plus the index entries of values it changed, the counter, the log and the record's
backup), so it costs the same with 10 keys or 100,000. A change WATCHes the records it reads (or, for a change of
the whole document, the counter), so concurrent writers on any host never lose each other's change.

A store still in the layout before this one (the whole document as one JSON string, ``askgate:api-keys.json``) is
moved into this one on first open; see :meth:`RedisRecords._adopt_document`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import redis

from app.documents import (
    StoreUnavailable,
    StoreUnreachable,
    StoreWriteError,
    run_commit_hook,
    saving,
    saving_late,
)

log = logging.getLogger("askgate.store")

LAYOUT = "records-1"
MAX_RETRIES = 50
LOG_KEEP = 10_000  # changes the log remembers; a process further behind reloads everything
BATCH = 1_000  # records per script call or pipeline when loading or writing everything
BULK_TIMEOUT = 120.0  # seconds: writing every record (migrate, restore) is one MULTI, longer than a request's timeout
# The document that replaces the old one-string layout once its records moved: Askgate before this layout reads it
# as a store of an unknown version and fails closed (503) instead of serving a copy that no longer changes.
MOVED_VERSION = 0
# Redis is away (stopped, restarting, loading its data, not answering), not refusing what we asked: reads may then be
# answered from the last loaded copy for a while (app.documents.stale), changes are refused.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)

# One round trip per read: the counter, and when it moved, every record changed since ``seen``, or "full".
_SYNC = """
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
local seen = tonumber(ARGV[1])
if now == seen then return {now} end
if seen < 0 or seen > now or now - seen > tonumber(ARGV[3]) then return {now, 'full'} end
local out = {now}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[2] .. id)
end
return out
"""
# A batch of records as one JSON array (``null`` for a record that is gone): each field's value is JSON already, so
# one parse in Python replaces a RESP reply and a parse per field (100,000 keys load in seconds, not a minute).
_DUMP = """
local out = {}
for i, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    out[i] = 'null'
  else
    local parts = {}
    for j = 1, #flat, 2 do parts[#parts + 1] = cjson.encode(flat[j]) .. ':' .. flat[j + 1] end
    out[i] = '{' .. table.concat(parts, ',') .. '}'
  end
end
return '[' .. table.concat(out, ',') .. ']'
"""
# Inside a change's MULTI: the counter moves and the changed ids enter the log with its new value.
_LOG = """
local n = redis.call('INCR', KEYS[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[2], n, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', n - tonumber(ARGV[1]))
return n
"""


def _encode(record: dict) -> dict[str, str]:
    return {name: json.dumps(value, sort_keys=True) for name, value in record.items()}


class RedisRecords:
    """The records of one store document (``{"version": V, field: [record, …]}``), cached per process and kept
    current by fetching only what changed."""

    def __init__(
        self,
        client: redis.Redis,
        base: str,
        *,
        field: str,
        empty: Callable[[], dict],
        validate: Callable[[Any], dict],
        on_load: Callable[[dict], None] | None = None,
        on_change: Callable[[list[dict], list[str]], None] | None = None,
        indexes: dict[str, Callable[[dict], Iterable[str | None]]] | None = None,
        version: int | None = None,
        legacy_key: str | None = None,
        log_keep: int = LOG_KEEP,
    ) -> None:
        self.client = client
        self.base = base
        self.path = f"redis keys {base}:*"  # for messages, like SharedJSONFile.path
        self.field = field
        self.counter_key, self.changes_key = f"{base}:counter", f"{base}:changes"
        self.ids_key, self.backup_key, self.meta_key = f"{base}:ids", f"{base}:bak", f"{base}:meta"
        self.record_prefix = f"{base}:rec:"
        self.legacy_key = legacy_key
        self._empty = empty
        self._validate = validate
        self._on_load = on_load
        self._on_change = on_change
        self._indexes = indexes or {}
        self._schema_version = version if version is not None else empty().get("version")
        self._log_keep = log_keep
        self._sync = client.register_script(_SYNC)
        self._dump = client.register_script(_DUMP)
        self._seen = -1  # the counter the cache reflects; -1: nothing loaded yet
        self._data: dict | None = None
        self._records: dict[str, dict] = {}
        self._position: dict[str, int] = {}
        self._mutex = threading.Lock()
        self.full_loads = 0  # how often this process read every record (tests and the bench look)

    # -- reading -------------------------------------------------------------------------------------
    def change_check(self) -> None:
        """The store files share one change check (``SharedJSONFile.change_check``); a Redis store checks itself."""
        return None

    def read(self, generation: None = None) -> dict:
        """The current document; one round trip (an EVALSHA) however many records there are."""
        seen = self._seen
        reply = self._call_sync(seen)
        if int(reply[0]) == seen and self._data is not None:
            return self._data
        with self._mutex:
            if self._seen != seen:  # another thread caught up meanwhile: ask again from where it got to
                reply = self._call_sync(self._seen)
            self._apply(reply)
            return self._data

    def _call_sync(self, seen: int) -> list:
        try:
            return self._sync(
                keys=[self.counter_key, self.changes_key], args=[seen, self.record_prefix, self._log_keep]
            )
        except UNREACHABLE as exc:
            raise StoreUnreachable(f"{self.path} cannot be reached: {exc}") from None
        except redis.RedisError as exc:
            raise StoreUnavailable(f"{self.path} cannot be read: {exc}") from None

    def forget(self) -> None:
        """Read every record afresh on the next read, whatever the counter says (after an outage: a restarted
        Redis may have lost changes, or been restored, and its counter gone back to a value this process saw)."""
        self._seen = -1

    def _apply(self, reply: list) -> None:
        now = int(reply[0])
        if now == self._seen and self._data is not None:
            return
        if len(reply) == 2 and reply[1] == b"full":
            self._load_all()
            return
        changed, removed = [], []
        for at in range(1, len(reply), 2):
            record_id, flat = reply[at].decode(), reply[at + 1]
            if flat:
                changed.append(self._decode(record_id, dict(zip(flat[::2], flat[1::2], strict=True))))
            elif record_id in self._records:
                removed.append(record_id)
        changed = self._checked(changed)
        records = self._data[self.field]
        for record in changed:
            at = self._position.get(record["id"])
            if at is None:
                self._position[record["id"]] = len(records)
                records.append(record)
            else:
                records[at] = record
            self._records[record["id"]] = record
        if removed:
            for record_id in removed:
                del self._records[record_id]
            records[:] = self._records.values()
            self._position = {record_id: at for at, record_id in enumerate(self._records)}
        if self._on_change is not None:
            self._on_change(changed, removed)
        elif self._on_load is not None:
            self._on_load(self._data)
        # Last: read() answers from the cache without the lock once it sees this counter, so the owner's indexes
        # (keys by digest) must already be current, or a revocation could miss a request.
        self._seen = now

    def _load_all(self) -> None:
        """Every record, afresh (first read, a process too far behind, after a restore or migrate)."""
        data, counter = self._fetch_all()
        self._data = data
        self._records = {record["id"]: record for record in data[self.field]}
        self._position = {record_id: at for at, record_id in enumerate(self._records)}
        self.full_loads += 1
        if self._on_load is not None:
            self._on_load(data)
        self._seen = counter  # last, as in _apply

    def _fetch_all(self) -> tuple[dict, int]:
        """The validated document and the counter it is at least as new as; moves a one-string store first."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(self.counter_key).smembers(self.ids_key).hget(self.meta_key, "layout")
                if self.legacy_key:
                    pipe.exists(self.legacy_key)
                counter, ids, layout, *legacy = pipe.execute()
            if layout is None and legacy and legacy[0]:
                self._adopt_document()
                return self._fetch_all()
            records = []
            ids = sorted(record_id.decode() for record_id in ids)
            for start in range(0, len(ids), BATCH):
                records += self._dump_batch(ids[start : start + BATCH])
        except UNREACHABLE as exc:
            raise StoreUnreachable(f"{self.path} cannot be reached: {exc}") from None
        except redis.RedisError as exc:
            raise StoreUnavailable(f"{self.path} cannot be read: {exc}") from None
        records.sort(key=lambda record: record.get("created_at") or "")
        return {"version": self._schema_version, self.field: self._checked(records)}, int(counter or 0)

    def _dump_batch(self, ids: list[str]) -> list[dict]:
        keys = [self.record_prefix + record_id for record_id in ids]
        try:
            found = json.loads(self._dump(keys=keys))
        except (ValueError, UnicodeDecodeError):  # a field that is not JSON: say which record, the slow way
            found = [
                self._decode(record_id, self.client.hgetall(key)) for record_id, key in zip(ids, keys, strict=True)
            ]
        records = []
        for record_id, record in zip(ids, found, strict=True):
            if record is None:
                continue  # removed since SMEMBERS: the log brings that news
            if not isinstance(record, dict) or record.get("id") != record_id:
                raise StoreUnavailable(f"{self.record_prefix}{record_id} does not hold the record {record_id}")
            records.append(record)
        return records

    def _decode(self, record_id: str, flat: dict) -> dict:
        try:
            record = {name.decode(): json.loads(value) for name, value in flat.items()}
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreUnavailable(f"{self.record_prefix}{record_id} is not a valid record: {exc}") from None
        if record.get("id") != record_id:
            raise StoreUnavailable(f"{self.record_prefix}{record_id} holds id {record.get('id')!r}")
        return record

    def _checked(self, records: list[dict]) -> list[dict]:
        try:
            return self._validate({"version": self._schema_version, self.field: records})[self.field]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreUnavailable(f"{self.path} holds an invalid record: {exc}") from None

    def check(self) -> str | None:
        """What is wrong with the records in Redis (or the one-string document still to be moved), else None."""
        try:
            if self.legacy_key and self.client.hget(self.meta_key, "layout") is None:
                raw = self.client.get(self.legacy_key)
                if raw is not None:
                    self._legacy_document(raw)
                    return None
            data, _ = self._fetch_all()
            return self._index_problem(data)
        except StoreUnavailable as exc:
            return str(exc)
        except redis.RedisError as exc:
            return f"{self.path} cannot be read: {exc}"

    def _index_problem(self, data: dict) -> str | None:
        for index, values_of in self._indexes.items():
            expected = {value: record["id"] for record in data[self.field] for value in values_of(record) if value}
            stored = {
                name.decode(): value.decode() for name, value in self.client.hgetall(self._index_key(index)).items()
            }
            if stored != expected:
                return f"{self._index_key(index)} does not match the records (store restore --all rebuilds it)"
        return None

    def read_backup(self) -> dict | None:
        """The records as last written (``<base>:bak``), validated, or None when there is no backup."""
        try:
            stored = self.client.hgetall(self.backup_key)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"{self.backup_key} cannot be read: {exc}") from None
        if not stored:
            return None
        try:
            records = [json.loads(value) for value in stored.values()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreUnavailable(f"{self.backup_key} is not valid: {exc}") from None
        records.sort(key=lambda record: record.get("created_at") or "")
        return {"version": self._schema_version, self.field: self._checked(records)}

    # -- writing -------------------------------------------------------------------------------------
    def update(self, change: Callable[[dict], Any], records: Iterable[str] | None = None) -> Any:
        """Read-modify-write as an optimistic transaction, retried when another writer got there first.

        ``records``: the ids of the only records ``change`` needs to see (others are absent from the document it
        gets; records it appends are new ones). None: the whole document, WATCHing the counter.
        """
        finish = None  # from the commit hook (the audit log), told at the end whether the change was saved

        def hooked(data: dict) -> Any:
            nonlocal finish
            result = change(data)
            finish = run_commit_hook(result, data) or finish
            return result

        scope = None if records is None else list(dict.fromkeys(records))
        with saving_late(lambda: finish):
            try:
                for _ in range(MAX_RETRIES):
                    try:
                        return self._transaction(hooked, scope)
                    except redis.WatchError:
                        continue
            except UNREACHABLE as exc:
                raise StoreUnreachable(f"Could not save to {self.path}: {exc}. Nothing was changed.") from None
            except redis.RedisError as exc:
                raise StoreWriteError(f"Could not save to {self.path}: {exc}. Nothing was changed.") from None
            raise StoreWriteError(f"Could not save to {self.path}: too much contention. Nothing was changed.")

    def _transaction(self, change: Callable[[dict], Any], scope: list[str] | None) -> Any:
        with self.client.pipeline() as pipe:
            if scope is None:
                pipe.watch(self.counter_key)
                self.read()  # the cache, current as of the counter just watched
                before = {record["id"]: record for record in self._data[self.field]}
            else:
                if scope:  # a new record needs no WATCH: its id is new
                    pipe.watch(*(self.record_prefix + record_id for record_id in scope))
                self.read()  # fails closed on a broken store, like the whole-document read a file does
                before = self._read_records(pipe, scope)
            data = {"version": self._schema_version, self.field: [json.loads(json.dumps(r)) for r in before.values()]}
            result = change(data)
            after = {record["id"]: record for record in data[self.field]}
            if len(after) != len(data[self.field]):
                raise ValueError("a change left two records with one id")
            pipe.multi()
            changed = self._queue_writes(pipe, before, after)
            if changed:
                pipe.hset(self.meta_key, mapping={"layout": LAYOUT, "version": self._schema_version})
                pipe.eval(_LOG, 2, self.counter_key, self.changes_key, self._log_keep, *changed)
            pipe.execute()
            return result

    def _read_records(self, pipe, scope: list[str]) -> dict[str, dict]:
        found = {}
        for record_id in scope:
            flat = pipe.hgetall(self.record_prefix + record_id)
            if flat:
                found[record_id] = self._decode(record_id, flat)
        self._checked(list(found.values()))
        return found

    def _queue_writes(self, pipe, before: dict[str, dict], after: dict[str, dict]) -> list[str]:
        """Queue the writes that turn ``before`` into ``after`` (only records that differ); their ids."""
        changed = []
        for record_id, old in before.items():
            if record_id not in after:
                pipe.delete(self.record_prefix + record_id)
                pipe.srem(self.ids_key, record_id)
                pipe.hdel(self.backup_key, record_id)
                self._queue_index(pipe, record_id, old, None)
                changed.append(record_id)
        for record_id, new in after.items():
            old = before.get(record_id)
            if old == new:
                continue
            encoded, previous = _encode(new), _encode(old or {})
            fields = {name: value for name, value in encoded.items() if previous.get(name) != value}
            if fields:
                pipe.hset(self.record_prefix + record_id, mapping=fields)
            gone = [name for name in previous if name not in encoded]
            if gone:
                pipe.hdel(self.record_prefix + record_id, *gone)
            if old is None:
                pipe.sadd(self.ids_key, record_id)
            pipe.hset(self.backup_key, record_id, json.dumps(new, sort_keys=True))
            self._queue_index(pipe, record_id, old, new)
            changed.append(record_id)
        return changed

    def _index_key(self, index: str) -> str:
        return f"{self.base}:{index}"

    def _queue_index(self, pipe, record_id: str, old: dict | None, new: dict | None) -> None:
        for index, values_of in self._indexes.items():
            was = {value for value in values_of(old) if value} if old else set()
            now = {value for value in values_of(new) if value} if new else set()
            if was - now:
                pipe.hdel(self._index_key(index), *(was - now))
            if now - was:
                pipe.hset(self._index_key(index), mapping=dict.fromkeys(now - was, record_id))

    def replace_all(self, data: dict) -> None:
        """Write ``data`` as every record (restore, migrate); every process reloads everything on its next read."""
        records = self._validate(json.loads(json.dumps(data)))[self.field]
        with saving(run_commit_hook(None, data)):
            try:
                for _ in range(MAX_RETRIES):
                    with self._patient_client().pipeline() as pipe:
                        try:
                            pipe.watch(self.ids_key)
                            self._write_all(pipe, records)
                            return
                        except redis.WatchError:
                            continue
            except redis.RedisError as exc:
                raise StoreWriteError(f"Could not save to {self.path}: {exc}. Nothing was changed.") from None
            raise StoreWriteError(f"Could not save to {self.path}: too much contention. Nothing was changed.")

    def _patient_client(self) -> redis.Redis:
        """A connection like the store's, with a timeout long enough for a MULTI that writes every record."""
        pool = self.client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": BULK_TIMEOUT}
        return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))

    def _write_all(self, pipe, records: list[dict], extra: Callable[[Any], None] | None = None) -> None:
        """In ``pipe`` (WATCHing the ids), replace every record by ``records`` in one MULTI."""
        old_ids = [record_id.decode() for record_id in pipe.smembers(self.ids_key)]
        pipe.multi()
        for start in range(0, len(old_ids), BATCH):
            pipe.delete(*(self.record_prefix + record_id for record_id in old_ids[start : start + BATCH]))
        pipe.delete(self.ids_key, self.backup_key, self.changes_key, *map(self._index_key, self._indexes))
        for start in range(0, len(records), BATCH):  # the set, backup and indexes a batch at a time
            batch = records[start : start + BATCH]
            for record in batch:
                pipe.hset(self.record_prefix + record["id"], mapping=_encode(record))
            pipe.sadd(self.ids_key, *(record["id"] for record in batch))
            pipe.hset(self.backup_key, mapping={record["id"]: json.dumps(record, sort_keys=True) for record in batch})
            for index, values_of in self._indexes.items():
                entries = {value: record["id"] for record in batch for value in values_of(record) if value}
                if entries:
                    pipe.hset(self._index_key(index), mapping=entries)
        pipe.hset(self.meta_key, mapping={"layout": LAYOUT, "version": self._schema_version})
        pipe.incrby(self.counter_key, self._log_keep + 1)  # beyond the log: every process reloads everything
        if extra is not None:
            extra(pipe)
        pipe.execute()

    # -- the layout before this one -------------------------------------------------------------------
    def _legacy_document(self, raw: bytes) -> dict:
        try:
            return self._validate(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            raise StoreUnavailable(f"redis key {self.legacy_key} is not a valid store document: {exc}") from None

    def _adopt_document(self) -> None:
        """Move a store kept as one JSON string (Askgate before this layout) into one hash per record.

        Under WATCH, so of several processes opening it at once one moves it and the others find it moved. The
        string is kept as it was in ``<legacy>.document.bak`` (and a version-1 one in ``<legacy>.v1.bak``), and
        replaced by a document no version reads, so an older Askgate still running against this Redis fails
        closed (503) instead of answering from a copy that no longer changes.
        """
        with self._patient_client().pipeline() as pipe:
            try:
                pipe.watch(self.legacy_key, self.meta_key, self.ids_key)
                if pipe.hget(self.meta_key, "layout") is not None:
                    return
                raw = pipe.get(self.legacy_key)
                if raw is None:
                    return
                records = self._legacy_document(raw)[self.field]
                older = json.loads(raw).get("version")
                moved = {"version": MOVED_VERSION, "moved_to": f"{self.base}:* (one hash per record)"}

                def keep_original(tx) -> None:
                    tx.set(f"{self.legacy_key}.document.bak", raw)
                    if older != self._schema_version:
                        tx.setnx(f"{self.legacy_key}.v{older}.bak", raw)
                    tx.set(self.legacy_key, json.dumps(moved))
                    tx.incr(f"{self.legacy_key}:version")

                self._write_all(pipe, records, extra=keep_original)
            except redis.WatchError:
                return  # another process moved it first
        log.warning(
            "moved %s (%d records) to one hash per record under %s:*; the old document is kept in %s.document.bak",
            self.legacy_key,
            len(records),
            self.base,
            self.legacy_key,
        )
