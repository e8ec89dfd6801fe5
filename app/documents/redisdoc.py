"""A JSON document kept in Redis, with the same interface as ``SharedJSONFile``, for several hosts.

Chosen by ``STORE_URL=redis://…``. The document is one Redis string; a version counter beside it lets every
process check "has it changed?" with one GET per request and reload only when it has. Changes are
optimistic transactions (WATCH/MULTI), so concurrent writers on any host never lose each other's change.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from app.documents import StoreUnavailable, StoreWriteError, older_version, run_commit_hook, saving, saving_late

log = logging.getLogger("askgate.store")

SOCKET_TIMEOUT = 1.0
MAX_RETRIES = 50


def redis_client(url: str) -> redis.Redis:
    """A client with short timeouts: a dead Redis must fail a request quickly, not stall it."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )


class RedisDocument:
    """One JSON document in Redis under ``key``, cached per process and reloaded when its version moves."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        empty: Callable[[], dict],
        validate: Callable[[Any], dict],
        on_load: Callable[[dict], None] | None = None,
        version: int | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.version_key = key + ":version"
        self.backup_key = key + ":bak"
        self.path = f"redis key {key}"  # for messages, like SharedJSONFile.path
        self._empty = empty
        self._validate = validate
        self._on_load = on_load
        self._schema_version = version
        self._version: bytes | None = None
        self._data: dict | None = None
        self._mutex = threading.Lock()

    def _decode(self, raw: bytes | None) -> dict:
        if raw is None:
            return self._empty()
        try:
            return self._validate(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            raise StoreUnavailable(f"{self.path} is not a valid store document: {exc}") from None

    def change_check(self) -> None:
        """Files share one change check (``SharedJSONFile.change_check``); each Redis document checks itself."""
        return None

    def read(self, generation: None = None) -> dict:
        """The current document; costs one GET when nothing changed."""
        try:
            version = self.client.get(self.version_key)
            if version == self._version and self._data is not None:
                return self._data
            with self._mutex:
                raw, version = self.client.mget(self.key, self.version_key)
                data = self._decode(raw)
                self._version, self._data = version, data
                if self._on_load:
                    self._on_load(data)
                return data
        except redis.RedisError as exc:
            raise StoreUnavailable(f"{self.path} cannot be read: {exc}") from None

    def check(self) -> str | None:
        try:
            self._decode(self.client.get(self.key))
        except StoreUnavailable as exc:
            return str(exc)
        except redis.RedisError as exc:
            return f"{self.path} cannot be read: {exc}"
        return None

    def update(self, change: Callable[[dict], Any]) -> Any:
        """Read-modify-write as an optimistic transaction, retried when another writer got there first."""
        finish = None  # from the commit hook (the audit log), told at the end whether the change was saved

        def hooked(data: dict) -> Any:
            nonlocal finish
            result = change(data)
            finish = run_commit_hook(result, data) or finish
            return result

        with saving_late(lambda: finish):
            return self._update(hooked)

    def _update(self, change: Callable[[dict], Any]) -> Any:
        try:
            for _ in range(MAX_RETRIES):
                with self.client.pipeline() as pipe:
                    try:
                        pipe.watch(self.key)
                        original = pipe.get(self.key)
                        older = self._older(original)
                        data = self._decode(original)
                        result = change(data)
                        payload = json.dumps(data, sort_keys=True)
                        pipe.multi()
                        pipe.set(self.key, payload)
                        if older is None:
                            pipe.set(self.backup_key, payload)
                        else:  # upgraded from an older schema: keep the document as it was, as a file would
                            pipe.set(self.backup_key, original)
                            pipe.setnx(f"{self.key}.v{older}.bak", original)
                        pipe.incr(self.version_key)
                        pipe.execute()
                    except redis.WatchError:
                        continue
                return result
        except redis.RedisError as exc:
            raise StoreWriteError(f"Could not save to {self.path}: {exc}. Nothing was changed.") from None
        raise StoreWriteError(f"Could not save to {self.path}: too much contention. Nothing was changed.")

    def _older(self, raw: bytes | None) -> object:
        """The document's ``"version"`` when it is an older one than this code writes, else None."""
        if raw is None or self._schema_version is None:
            return None
        try:
            return older_version(json.loads(raw), self._schema_version)
        except (ValueError, UnicodeDecodeError):
            return None  # _decode says what is wrong with it

    def replace_all(self, data: dict) -> None:
        self._validate(json.loads(json.dumps(data)))
        payload = json.dumps(data, sort_keys=True)
        with saving(run_commit_hook(None, data)):
            try:
                with self.client.pipeline() as pipe:
                    pipe.multi()
                    pipe.set(self.key, payload)
                    pipe.set(self.backup_key, payload)
                    pipe.incr(self.version_key)
                    pipe.execute()
            except redis.RedisError as exc:
                raise StoreWriteError(f"Could not save to {self.path}: {exc}. Nothing was changed.") from None

    def read_backup(self) -> dict | None:
        try:
            raw = self.client.get(self.backup_key)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"{self.path} backup cannot be read: {exc}") from None
        return None if raw is None else self._decode(raw)
