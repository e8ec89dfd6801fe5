"""Store outages: while the store's server cannot be reached, reads are answered from the last loaded copy.

For at most ``STORE_STALE_SECONDS`` after a read last reached the server, so a key revoked before the outage is
never let in again by a copy older than that; then ``StoreUnreachable`` (503 ``Key store unavailable``). Changes are
never made to a copy: they reach the server or raise (503, nothing changed).

The first read that reaches the server again loads the whole document afresh rather than trusting a change counter
that a restarted Redis may have lost or rewound: a revocation made on another host while this one served its copy
counts from that read on. Any store document fits (``read``, ``update``, ``replace_all``, ``check``,
``read_backup``, ``forget``, ``path``), whatever its backend, as long as it raises ``StoreUnreachable`` when its
server is away.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.documents import StoreUnreachable

log = logging.getLogger("askgate.store")


class StaleReads:
    """``document`` as the stores use it, its reads answered from the last loaded copy during a short outage."""

    def __init__(self, document, stale_seconds: float) -> None:
        self.document = document
        self.stale_seconds = stale_seconds
        self.path = document.path  # for messages
        self._copy: dict | None = None
        self._confirmed = -math.inf  # time.monotonic() when the last read that reached the server began
        self._unreachable = False  # since a read or change failed to reach the server; the next good read reloads
        self._expired = False  # the copy's window has ended during this outage (logged once)
        self._lock = threading.Lock()

    def read(self, generation: None = None) -> dict:
        """The current document, or during an outage the last loaded copy while it is young enough (``generation``:
        the file stores' shared change check, which a Redis store does not use)."""
        started = time.monotonic()
        try:
            data = self.document.read()
            if self._unreachable:
                data = self._reload_after_outage()
        except StoreUnreachable as exc:
            return self._stale_copy(exc, started)
        self._copy, self._confirmed = data, started
        return data

    def _reload_after_outage(self) -> dict:
        with self._lock:
            if self._unreachable:
                self.document.forget()
                data = self.document.read()
                self._unreachable = self._expired = False
                log.warning("store reachable again: %s reloaded", self.path)
                return data
        return self.document.read()

    def _stale_copy(self, exc: StoreUnreachable, started: float) -> dict:
        age = started - self._confirmed
        copy = self._copy
        usable = copy is not None and age <= self.stale_seconds
        with self._lock:
            first = not self._unreachable
            self._unreachable = True
            expired_now = not usable and not self._expired
            self._expired = self._expired or not usable
        if first and usable:
            log.warning(
                "store unreachable (%s): answering from the copy loaded %.1f s ago for up to STORE_STALE_SECONDS=%g",
                exc,
                age,
                self.stale_seconds,
            )
        elif expired_now:
            log.error("store unreachable (%s): no copy younger than STORE_STALE_SECONDS, answering 503", exc)
        if usable:
            return copy
        raise exc

    def update(self, change: Callable[[dict], Any], records: Iterable[str] | None = None) -> Any:
        """Change the document on its server (``records``: see the backend's ``update``); during an outage
        StoreUnreachable, and nothing is changed."""
        try:
            return self.document.update(change, records)
        except StoreUnreachable:
            self._unreachable = True  # a change cut off mid-way may have landed: reload on the next good read
            raise

    def replace_all(self, data: dict) -> None:
        self.document.replace_all(data)

    def check(self) -> str | None:
        return self.document.check()

    def read_backup(self) -> dict | None:
        return self.document.read_backup()

    def forget(self) -> None:
        self.document.forget()

    def __getattr__(self, name: str) -> Any:
        # What else a backend offers (RedisRecords.full_loads, .client) reads through, for store admin and tests.
        return getattr(self.document, name)
