"""The key store: ``WORKSPACES_DIR/api-keys.json``, holding SHA-256 digests of keys, never the keys."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.documents.sharedfile import open_document
from app.inputs import KEY_EXPIRY_CHOICES, KEY_EXPIRY_DAYS, KEY_NAME_MAX
from app.keys.errors import KeyRequestError
from app.keys.format import digest, display_prefix, generate_key, is_well_formed
from app.keys.limits import LIMIT_FIELDS, default_limits, parse_grace_seconds, parse_key_limits
from app.names import name_problem

FILE_NAME = "api-keys.json"
# Version 2 added each key's limits (scopes, workspaces, rate_limit, allowed_ips) and a rotation's previous secret;
# a version-1 file loads with the defaults and is written as version 2 on its first change (its .bak keeps it).
SCHEMA_VERSION = 2
OLDER_VERSIONS = (1,)
RECORD_FIELDS = (
    "id",
    "name",
    "owner",
    "prefix",
    "digest",
    "created_at",
    "expires_at",
    "revoked_at",
    # Kept so that existing files and `store check`/migrate read as before: new keys write null and nothing
    # updates it; a key's last use lives in the usage store (app/usage.py), and listings show it from there.
    "last_used_at",
    *LIMIT_FIELDS,
    "previous_digest",  # the SHA-256 of the secret a rotation replaced, accepted until previous_expires_at
    "previous_expires_at",
)
# The fields a name change or a change of limits may touch (PATCH /api/keys/<id>).
CHANGEABLE_FIELDS = ("name", *LIMIT_FIELDS)
_SECRET_FIELDS = ("digest", "previous_digest")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")


class KeyStateError(KeyRequestError):
    """The key exists but is not in a state that allows the change (rotating a revoked or expired key)."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole + timedelta(seconds=1) if whole < moment else whole


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


def grace_until(record: dict, now: datetime | None = None) -> str | None:
    """When the previous secret of a rotated key stops working, while it still works; else None."""
    until = record.get("previous_expires_at")
    if until and record.get("previous_digest") and parse_iso(until) > (now or utcnow()):
        return until
    return None


def public_view(record: dict) -> dict:
    """A record as listings show it: everything but the digests (current and previous)."""
    view = {name: record.get(name) for name in RECORD_FIELDS if name not in _SECRET_FIELDS}
    view["previous_expires_at"] = grace_until(record)
    view["status"] = key_status(record)
    view["is_active"] = view["status"] == "active"
    return view


def _upgrade(raw: dict) -> dict:
    """A version-1 document as version 2: every key gets the default limits and no previous secret."""
    for record in raw.get("keys") or ():
        if isinstance(record, dict):
            for name, value in default_limits().items():
                record.setdefault(name, value)
            record.setdefault("previous_digest", None)
            record.setdefault("previous_expires_at", None)
    raw["version"] = SCHEMA_VERSION
    return raw


def _validate(raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ValueError("top level is not an object")
    if raw.get("version") in OLDER_VERSIONS:
        raw = _upgrade(raw)
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
        for name in ("created_at", "expires_at", "revoked_at", "last_used_at", "previous_expires_at"):
            parse_iso(record[name])
        try:
            limits = parse_key_limits(record, partial=False)
        except KeyRequestError as exc:
            raise ValueError(f"key #{index}: {exc}") from None
        record.update(limits)  # a hand edit such as "10.0.0.1/8" reads as Askgate writes it: "10.0.0.0/8"
        previous = record["previous_digest"]
        if previous is not None and (not isinstance(previous, str) or not _DIGEST_RE.match(previous)):
            raise ValueError(f"key #{index} has a malformed previous_digest")
        if (previous is None) != (record["previous_expires_at"] is None):
            raise ValueError(f"key #{index} has only one of previous_digest and previous_expires_at")
    return raw


def key_record(
    key_id: str,
    name: str,
    owner: str,
    prefix: str,
    key_digest: str,
    created_at: str,
    *,
    expires_at: str | None = None,
    limits: dict | None = None,
) -> dict:
    """A new, active key's stored record: the one place its fields are listed (``KeyStore.create``, and the
    bulk set-ups of tests and benchmarks). ``limits`` are already checked; none given means no limits."""
    return {
        "id": key_id,
        "name": name,
        "owner": owner,
        "prefix": prefix,
        "digest": key_digest,
        "created_at": created_at,
        "expires_at": expires_at,
        "revoked_at": None,
        "last_used_at": None,
        **(default_limits() if limits is None else limits),
        "previous_digest": None,
        "previous_expires_at": None,
    }


class KeyStore:
    """All dashboard-generated keys. Nothing else reads or writes ``api-keys.json``."""

    def __init__(
        self,
        workspaces_dir: Path | None = None,
        *,
        redis_client=None,
        redis_prefix: str = "askgate",
        stale_seconds: float = 0.0,
    ) -> None:
        """Keys in ``workspaces_dir/api-keys.json``, or in Redis when a client is given (several hosts); while that
        Redis is away, reads come from the last loaded copy for up to ``stale_seconds`` (app.documents.stale)."""
        self._by_digest: dict[str, dict] = {}
        self._by_id: dict[str, dict] = {}
        self._by_previous: dict[str, tuple[float, dict]] = {}  # previous digest -> (grace end, epoch; record)
        self.generation = 0  # moves on every reload: lets callers cache what they derive from records
        self.file = open_document(
            FILE_NAME,
            workspaces_dir=workspaces_dir,
            redis_client=redis_client,
            redis_prefix=redis_prefix,
            stale_seconds=stale_seconds,
            field="keys",
            empty=lambda: {"version": SCHEMA_VERSION, "keys": []},
            validate=_validate,
            on_load=self._reindex,
            on_change=self._reindex_records,
            indexes={"by-digest": lambda record: (record["digest"], record["previous_digest"])},
            version=SCHEMA_VERSION,
        )

    def _reindex(self, data: dict) -> None:
        # Built once per change of the file, so a lookup is one dict access however many keys there are.
        self._by_digest = {record["digest"]: record for record in data["keys"]}
        self._by_id = {record["id"]: record for record in data["keys"]}
        self._by_previous = {
            record["previous_digest"]: (parse_iso(record["previous_expires_at"]).timestamp(), record)
            for record in data["keys"]
            if record["previous_digest"]
        }
        self.generation += 1

    def _reindex_records(self, changed: list[dict], removed: list[str]) -> None:
        """The indexes after some records changed (Redis tells which): the cost of the change, not of the store."""
        for record_id in [*removed, *(record["id"] for record in changed)]:
            old = self._by_id.pop(record_id, None)
            if old is not None:
                if self._by_digest.get(old["digest"]) is old:
                    del self._by_digest[old["digest"]]
                if old["previous_digest"] and self._by_previous.get(old["previous_digest"], (0, None))[1] is old:
                    del self._by_previous[old["previous_digest"]]
        for record in changed:
            self._by_id[record["id"]] = record
            self._by_digest[record["digest"]] = record
            if record["previous_digest"]:
                until = parse_iso(record["previous_expires_at"]).timestamp()
                self._by_previous[record["previous_digest"]] = (until, record)
        self.generation += 1

    # -- lookups (hot path) ---------------------------------------------------------------------------
    def lookup(self, raw_key: str, generation: int | None = None) -> dict | None:
        """The record for ``raw_key`` whatever its status, or None. Raises StoreUnavailable.

        The secret a rotation replaced finds its key until the grace ends, then nothing ("Invalid API key").
        ``generation``: this request's ``file.change_check()``, when it made one (the request hook).
        """
        if not is_well_formed(raw_key):
            return None
        self.file.read(generation)
        key_digest = digest(raw_key)
        record = self._by_digest.get(key_digest)
        if record is None and self._by_previous:
            grace = self._by_previous.get(key_digest)
            if grace is not None and time.time() < grace[0]:
                return grace[1]
        return record

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
        self,
        owner: str,
        name: str,
        expires_in_days: int | None = None,
        admit: Callable[[], None] | None = None,
        limits: dict | None = None,
    ) -> NewKey:
        """Mint a key for ``owner`` with ``limits`` (see ``parse_key_limits``; defaults for those not given);
        the raw key is in the result and nowhere else.

        ``admit`` runs once the request is known to be valid, before anything is written: it counts the
        creation against ``KEY_CREATE_LIMIT`` and raises to refuse it, so a refused or invalid request mints nothing.
        """
        name = validate_key_name(name)
        if expires_in_days not in KEY_EXPIRY_DAYS:
            raise KeyRequestError(f"expires_in_days must be one of {KEY_EXPIRY_CHOICES}, or null for never")
        checked = parse_key_limits(limits or {}, partial=False)
        if admit is not None:
            admit()
        raw = generate_key()
        now = utcnow()
        expires_at = iso(now + timedelta(days=expires_in_days)) if expires_in_days else None
        record = key_record(
            "key_" + secrets.token_hex(8),
            name,
            owner,
            display_prefix(raw),
            digest(raw),
            iso(now),
            expires_at=expires_at,
            limits=checked,
        )

        def add(data: dict) -> None:
            data["keys"].append(record)

        self.file.update(add, records=())
        return NewKey(record=dict(record), key=raw)

    def update(self, key_id: str, changes: dict) -> dict | None:
        """Change a key's name and limits (``CHANGEABLE_FIELDS``); returns the record, None if there is no such key."""
        check_changeable(changes)
        checked = parse_key_limits(changes, partial=True)
        if "name" in changes:
            checked["name"] = validate_key_name(changes["name"])

        def change(data: dict) -> dict | None:
            for record in data["keys"]:
                if record["id"] == key_id:
                    record.update(checked)
                    return dict(record)
            return None

        return self.file.update(change, records=(key_id,))

    def rotate(self, key_id: str, grace_seconds: int) -> NewKey | None:
        """A new secret for the key ``key_id`` (same id, name, limits and expiry); the one it replaces keeps
        working for ``grace_seconds`` (never past the key's own expiry), kept only as its digest. A grace still
        running from an earlier rotation ends now: at most two secrets are live. None if there is no such key;
        KeyStateError if the key is revoked or expired."""
        grace_seconds = parse_grace_seconds(grace_seconds)
        raw = generate_key()

        def change(data: dict) -> dict | None:
            now = utcnow()
            for record in data["keys"]:
                if record["id"] != key_id:
                    continue
                if key_status(record, now) != "active":
                    raise KeyStateError("Only an active key can be rotated")
                # Stamps have whole seconds: round the end up, so the old secret works at least grace_seconds.
                until = _ceil_second(datetime.now(UTC) + timedelta(seconds=grace_seconds))
                expires = parse_iso(record["expires_at"])
                if expires is not None:
                    until = min(until, expires)
                if grace_seconds and until > now:
                    record["previous_digest"], record["previous_expires_at"] = record["digest"], iso(until)
                else:
                    record["previous_digest"] = record["previous_expires_at"] = None
                record["digest"], record["prefix"] = digest(raw), display_prefix(raw)
                return dict(record)
            return None

        record = self.file.update(change, records=(key_id,))
        return None if record is None else NewKey(record=record, key=raw)

    def revoke(self, key_id: str) -> dict | None:
        """Mark a key revoked (kept for the record), ending any grace of its previous secret; None if there is
        no such key."""

        def change(data: dict) -> dict | None:
            for record in data["keys"]:
                if record["id"] == key_id:
                    if not record["revoked_at"]:
                        record["revoked_at"] = iso(utcnow())
                    record["previous_digest"] = record["previous_expires_at"] = None
                    return dict(record)
            return None

        return self.file.update(change, records=(key_id,))

    def revoke_owner(self, owner: str) -> int:
        """Revoke every active key of ``owner`` (a disabled user); returns how many."""

        def change(data: dict) -> int:
            count = 0
            stamp = iso(utcnow())
            for record in data["keys"]:
                if record["owner"] == owner and not record["revoked_at"]:
                    record["revoked_at"] = stamp
                    record["previous_digest"] = record["previous_expires_at"] = None
                    count += 1
            return count

        return self.file.update(change)

    def delete(self, key_id: str) -> bool:
        def change(data: dict) -> bool:
            before = len(data["keys"])
            data["keys"] = [r for r in data["keys"] if r["id"] != key_id]
            return len(data["keys"]) != before

        return self.file.update(change, records=(key_id,))


def check_changeable(changes: dict) -> None:
    """Refuse a change of a key that changes nothing or names a field that cannot be changed (naming them)."""
    unknown = sorted(set(changes) - set(CHANGEABLE_FIELDS))
    if unknown:
        raise KeyRequestError(
            f"Unknown field(s): {', '.join(map(str, unknown))}; a key's {', '.join(CHANGEABLE_FIELDS)} can be changed"
        )
    if not changes:
        raise KeyRequestError(f"Nothing to change: send any of {', '.join(CHANGEABLE_FIELDS)}")


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
