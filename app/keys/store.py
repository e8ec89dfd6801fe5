"""The key store: ``WORKSPACES_DIR/api-keys.json``, holding SHA-256 digests of keys, never the keys."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.documents.sharedfile import open_document
from app.inputs import KEY_EXPIRY_CHOICES, KEY_EXPIRY_DAYS, KEY_NAME_MAX
from app.keys.format import digest, display_prefix, generate_key, is_well_formed
from app.names import name_problem

FILE_NAME = "api-keys.json"
SCHEMA_VERSION = 1
# last_used_at is written at most this often per key: accurate to about a minute, not a write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)
RECORD_FIELDS = (
    "id",
    "name",
    "owner",
    "prefix",
    "digest",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


class KeyRequestError(ValueError):
    """A request to the store that cannot be honoured; the message is fit to show the user."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class NewKey:
    """What creating a key returns: the record and the raw key, which is never stored."""

    record: dict
    key: str


def key_status(record: dict, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if record.get("revoked_at"):
        return "revoked"
    expires = parse_iso(record.get("expires_at"))
    if expires and expires <= (now or utcnow()):
        return "expired"
    return "active"


def public_view(record: dict) -> dict:
    """A record as listings show it: everything but the digest."""
    view = {name: record.get(name) for name in RECORD_FIELDS if name != "digest"}
    view["status"] = key_status(record)
    return view


def _validate(raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ValueError("top level is not an object")
    if raw.get("version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported version {raw.get('version')!r} (expected {SCHEMA_VERSION})")
    keys = raw.get("keys")
    if not isinstance(keys, list):
        raise ValueError("'keys' is not a list")
    seen: set[str] = set()
    for index, record in enumerate(keys):
        if not isinstance(record, dict):
            raise ValueError(f"key #{index} is not an object")
        missing = [name for name in RECORD_FIELDS if name not in record]
        if missing:
            raise ValueError(f"key #{index} lacks {', '.join(missing)}")
        if not isinstance(record["digest"], str) or not _DIGEST_RE.match(record["digest"]):
            raise ValueError(f"key #{index} has a malformed digest")
        if record["id"] in seen:
            raise ValueError(f"key id {record['id']!r} appears twice")
        seen.add(record["id"])
        for name in ("created_at", "expires_at", "revoked_at", "last_used_at"):
            parse_iso(record[name])
    return raw


class KeyStore:
    """All dashboard-generated keys. Nothing else reads or writes ``api-keys.json``."""

    def __init__(self, workspaces_dir: Path | None = None, *, redis_client=None, redis_prefix: str = "askgate") -> None:
        """Keys in ``workspaces_dir/api-keys.json``, or in Redis when a client is given (several hosts)."""
        self._by_digest: dict[str, dict] = {}
        self._by_id: dict[str, dict] = {}
        self._next_touch: dict[str, float] = {}  # key id -> monotonic time its next write may happen
        self._touch_lock = threading.Lock()
        self.generation = 0  # moves on every reload: lets callers cache what they derive from records
        self.file = open_document(
            FILE_NAME,
            workspaces_dir=workspaces_dir,
            redis_client=redis_client,
            redis_prefix=redis_prefix,
            empty=lambda: {"version": SCHEMA_VERSION, "keys": []},
            validate=_validate,
            on_load=self._reindex,
        )

    def _reindex(self, data: dict) -> None:
        # Built once per change of the file, so a lookup is one dict access however many keys there are.
        self._by_digest = {record["digest"]: record for record in data["keys"]}
        self._by_id = {record["id"]: record for record in data["keys"]}
        self.generation += 1

    # -- lookups (hot path) ---------------------------------------------------------------------------
    def lookup(self, raw_key: str) -> dict | None:
        """The record for ``raw_key`` whatever its status, or None. Raises StoreUnavailable."""
        if not is_well_formed(raw_key):
            return None
        self.file.read()
        return self._by_digest.get(digest(raw_key))

    def get(self, key_id: str) -> dict | None:
        self.file.read()
        return self._by_id.get(key_id)

    def list(self, owner: str | None = None) -> list[dict]:
        """Records (with digests: callers show them through ``public_view``), newest first."""
        records = self.file.read()["keys"]
        if owner is not None:  # usernames are case-insensitive everywhere
            owner = owner.lower()
            records = [r for r in records if r["owner"].lower() == owner]
        return sorted(records, key=lambda r: r["created_at"], reverse=True)

    # -- changes -----------------------------------------------------------------------------------------
    def create(
        self, owner: str, name: str, expires_in_days: int | None = None, admit: Callable[[], None] | None = None
    ) -> NewKey:
        """Mint a key for ``owner``; the raw key is in the result and nowhere else.

        ``admit`` runs once the request is known to be valid, before anything is written: it counts the
        creation against ``KEY_CREATE_LIMIT`` and raises to refuse it, so a refused or invalid request mints nothing.
        """
        name = validate_key_name(name)
        if expires_in_days not in KEY_EXPIRY_DAYS:
            raise KeyRequestError(f"expires_in_days must be one of {KEY_EXPIRY_CHOICES}, or null for never")
        if admit is not None:
            admit()
        raw = generate_key()
        now = utcnow()
        record = {
            "id": "key_" + secrets.token_hex(8),
            "name": name,
            "owner": owner,
            "prefix": display_prefix(raw),
            "digest": digest(raw),
            "created_at": iso(now),
            "expires_at": iso(now + timedelta(days=expires_in_days)) if expires_in_days else None,
            "revoked_at": None,
            "last_used_at": None,
        }

        def add(data: dict) -> None:
            data["keys"].append(record)

        self.file.update(add)
        return NewKey(record=dict(record), key=raw)

    def revoke(self, key_id: str) -> dict | None:
        """Mark a key revoked (kept for the record); None if there is no such key."""

        def change(data: dict) -> dict | None:
            for record in data["keys"]:
                if record["id"] == key_id:
                    if not record["revoked_at"]:
                        record["revoked_at"] = iso(utcnow())
                    return dict(record)
            return None

        return self.file.update(change)

    def revoke_owner(self, owner: str) -> int:
        """Revoke every active key of ``owner`` (a disabled user); returns how many."""

        def change(data: dict) -> int:
            count = 0
            stamp = iso(utcnow())
            for record in data["keys"]:
                if record["owner"] == owner and not record["revoked_at"]:
                    record["revoked_at"] = stamp
                    count += 1
            return count

        return self.file.update(change)

    def delete(self, key_id: str) -> bool:
        def change(data: dict) -> bool:
            before = len(data["keys"])
            data["keys"] = [r for r in data["keys"] if r["id"] != key_id]
            return len(data["keys"]) != before

        return self.file.update(change)

    def mark_used(self, record: dict, now: datetime | None = None) -> None:
        """Record a use, writing the file at most about once a minute per key across all processes."""
        key_id = record["id"]
        mono = time.monotonic()
        if mono < self._next_touch.get(key_id, 0.0):
            return  # the hot path: one dict lookup
        with self._touch_lock:  # one thread of this process writes; the others see the gate closed
            if mono < self._next_touch.get(key_id, 0.0):
                return
            self._next_touch[key_id] = mono + LAST_USED_RESOLUTION.total_seconds()
        now = now or utcnow()
        last = parse_iso(record.get("last_used_at"))
        if last and now - last < LAST_USED_RESOLUTION:
            # Another process wrote it recently; look again when that minute is over.
            self._next_touch[key_id] = mono + (LAST_USED_RESOLUTION - (now - last)).total_seconds()
            return
        stamp = iso(now)

        def change(data: dict) -> None:
            for rec in data["keys"]:
                if rec["id"] == key_id:
                    rec["last_used_at"] = stamp

        self.file.update(change)


def validate_key_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise KeyRequestError("Give the key a name, for example 'ci-pipeline'")
    name = name.strip()
    if len(name) > KEY_NAME_MAX:
        raise KeyRequestError(f"A key name can be at most {KEY_NAME_MAX} characters")
    problem = name_problem(name, "name")
    if problem:
        raise KeyRequestError(problem)
    return name
