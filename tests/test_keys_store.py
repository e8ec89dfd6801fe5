"""The key store: api-keys.json holds digests only, is shared by processes, and fails closed."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.documents.sharedfile import StoreUnavailable
from app.keys.format import digest
from app.keys.store import RECORD_FIELDS, KeyRequestError, KeyStore, iso, key_status, parse_iso, public_view

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
FIELDS = set(RECORD_FIELDS)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path)


def _file(store: KeyStore) -> dict:
    return json.loads(store.file.path.read_text())


def _set_field(store: KeyStore, key_id: str, name: str, value) -> None:
    def change(data):
        for record in data["keys"]:
            if record["id"] == key_id:
                record[name] = value

    store.file.update(change)


def test_missing_file_is_an_empty_store(store):
    assert store.list() == []
    assert store.get("key_0000") is None
    assert not store.file.path.exists()


def test_create_stores_a_record_with_a_digest_and_never_the_key(store):
    new = store.create("alice", "  ci-pipeline  ")
    record = new.record
    assert set(record) == FIELDS
    assert re.fullmatch(r"key_[0-9a-f]{16}", record["id"])
    assert record["name"] == "ci-pipeline"
    assert record["owner"] == "alice"
    assert record["prefix"] == new.key[:12]
    assert record["digest"] == digest(new.key)
    assert ISO_RE.match(record["created_at"])
    assert abs(parse_iso(record["created_at"]) - datetime.now(UTC)) < timedelta(seconds=5)
    assert (record["expires_at"], record["revoked_at"], record["last_used_at"]) == (None, None, None)
    assert record["scopes"] == ["ask", "workspaces:read"]
    assert (record["workspaces"], record["rate_limit"], record["allowed_ips"]) == (None, None, None)
    assert (record["previous_digest"], record["previous_expires_at"]) == (None, None)

    on_disk = _file(store)
    assert on_disk == {"version": 2, "keys": [record]}
    raw = store.file.path.read_bytes()
    assert new.key.encode() not in raw
    assert new.key[12:].encode() not in raw  # not even the secret part after the display prefix
    assert stat.S_IMODE(os.stat(store.file.path).st_mode) == 0o600


@pytest.mark.parametrize("days", [30, 90, 365])
def test_expiry_choices(store, days):
    record = store.create("alice", "k", days).record
    assert parse_iso(record["expires_at"]) - parse_iso(record["created_at"]) == timedelta(days=days)
    assert ISO_RE.match(record["expires_at"])


@pytest.mark.parametrize("days", [0, 1, 7, 31, -30, "30", True])
def test_other_expiries_are_refused(store, days):
    with pytest.raises(KeyRequestError, match="expires_in_days must be one of 30, 90, 365, or null for never"):
        store.create("alice", "k", days)
    assert not store.file.path.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Give the key a name, for example 'ci-pipeline'"),
        ("   ", "Give the key a name, for example 'ci-pipeline'"),
        (None, "Give the key a name, for example 'ci-pipeline'"),
        ("x" * 101, "A key name can be at most 100 characters"),
        ("bad\nname", "name must be plain text: character 4 is U+000A, a control character"),
        ("bad\x7fname", "name must be plain text: character 4 is U+007F, a control character"),
    ],
)
def test_bad_names_are_refused(store, name, message):
    with pytest.raises(KeyRequestError) as info:
        store.create("alice", name)
    assert str(info.value) == message


def test_lookup_finds_the_record_by_the_raw_key(store):
    first = store.create("alice", "one")
    second = store.create("bob", "two")
    assert store.lookup(first.key)["id"] == first.record["id"]
    assert store.lookup(second.key)["owner"] == "bob"
    from app.keys.format import generate_key

    assert store.lookup(generate_key()) is None  # well formed but unknown
    assert store.get(first.record["id"])["name"] == "one"


def test_list_filters_by_owner_newest_first(store):
    a1 = store.create("alice", "a1").record["id"]
    b1 = store.create("bob", "b1").record["id"]
    a2 = store.create("alice", "a2").record["id"]
    _set_field(store, a1, "created_at", "2025-01-01T00:00:00Z")
    _set_field(store, b1, "created_at", "2025-02-01T00:00:00Z")
    _set_field(store, a2, "created_at", "2025-03-01T00:00:00Z")
    assert [r["id"] for r in store.list("alice")] == [a2, a1]
    assert [r["id"] for r in store.list()] == [a2, b1, a1]
    assert store.list("carol") == []


def test_public_view_never_carries_the_digest(store):
    record = store.create("alice", "k").record
    view = public_view(record)
    assert "digest" not in view and "key" not in view and "previous_digest" not in view
    public = {k: v for k, v in record.items() if k not in ("digest", "previous_digest")}
    assert view == {**public, "status": "active", "is_active": True}


def test_status_active_expired_revoked(store):
    now = datetime.now(UTC)
    record = store.create("alice", "k", 30).record
    assert key_status(record) == "active"
    assert key_status(record, now + timedelta(days=30, seconds=1)) == "expired"
    assert key_status({**record, "expires_at": iso(now - timedelta(seconds=1))}) == "expired"
    assert key_status({**record, "revoked_at": iso(now)}) == "revoked"
    expired_and_revoked = {**record, "expires_at": iso(now - timedelta(days=1)), "revoked_at": iso(now)}
    assert key_status(expired_and_revoked) == "revoked"


def test_revoke_marks_the_key_and_keeps_it(store):
    new = store.create("alice", "k")
    revoked = store.revoke(new.record["id"])
    assert ISO_RE.match(revoked["revoked_at"])
    assert key_status(store.lookup(new.key)) == "revoked"
    assert len(store.list()) == 1  # kept for the record
    _set_field(store, new.record["id"], "revoked_at", "2025-01-01T00:00:00Z")
    assert store.revoke(new.record["id"])["revoked_at"] == "2025-01-01T00:00:00Z"  # the first revocation stands
    assert store.revoke("key_doesnotexist") is None


def test_revoke_owner_revokes_only_that_owners_active_keys(store):
    a1 = store.create("alice", "a1")
    a2 = store.create("alice", "a2")
    b1 = store.create("bob", "b1")
    store.revoke(a2.record["id"])
    assert store.revoke_owner("alice") == 1
    assert key_status(store.lookup(a1.key)) == "revoked"
    assert key_status(store.lookup(b1.key)) == "active"
    assert store.revoke_owner("alice") == 0


def test_delete(store):
    new = store.create("alice", "k")
    assert store.delete(new.record["id"]) is True
    assert store.lookup(new.key) is None
    assert store.delete(new.record["id"]) is False
    assert _file(store) == {"version": 2, "keys": []}


def test_lookups_parse_the_file_only_when_it_changed(store, tmp_path, parse_count):
    new = store.create("alice", "k")
    reader = KeyStore(tmp_path)  # another process's view of the same file
    parse_count.clear()
    for _ in range(100):
        assert reader.lookup(new.key)["id"] == new.record["id"]
    assert parse_count == [str(store.file.path)]
    parse_count.clear()
    store.revoke(new.record["id"])
    parse_count.clear()
    assert key_status(reader.lookup(new.key)) == "revoked"  # the very next lookup sees it
    assert reader.lookup(new.key)["revoked_at"]
    assert parse_count == [str(store.file.path)]


def _revoke_in_child(workspaces: str, key_id: str) -> None:
    KeyStore(Path(workspaces)).revoke(key_id)


def test_a_revocation_by_another_process_is_seen_on_the_next_lookup(store, tmp_path):
    new = store.create("alice", "k")
    assert key_status(store.lookup(new.key)) == "active"
    proc = multiprocessing.get_context("fork").Process(target=_revoke_in_child, args=(str(tmp_path), new.record["id"]))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    assert key_status(store.lookup(new.key)) == "revoked"


def test_a_corrupt_file_fails_closed_and_key_creation_reports_it(store):
    store.file.path.write_text('{"version": 1, "keys": [{"id": "key_1"}]}')
    before = store.file.path.read_bytes()
    from app.keys.format import generate_key

    with pytest.raises(StoreUnavailable, match="api-keys.json"):
        store.lookup(generate_key())
    with pytest.raises(StoreUnavailable):
        store.list()
    with pytest.raises(StoreUnavailable):
        store.create("alice", "k")
    with pytest.raises(StoreUnavailable):
        store.revoke("key_1")
    assert store.file.path.read_bytes() == before


@pytest.mark.parametrize(
    "document",
    [
        {"keys": []},  # no version
        {"version": 1, "keys": [{"id": "a"}]},
        {
            "version": 1,
            "keys": [
                dict.fromkeys(FIELDS, None) | {"id": "a", "digest": "not-hex", "created_at": "2025-01-01T00:00:00Z"}
            ],
        },
    ],
)
def test_invalid_documents_are_unavailable(store, document):
    store.file.path.write_text(json.dumps(document))
    with pytest.raises(StoreUnavailable):
        store.list()


def _create_many(workspaces: str, owner: str, count: int, start, out) -> None:
    store = KeyStore(Path(workspaces))
    start.wait()
    out.put([store.create(owner, f"{owner}-{i}").key for i in range(count)])


def test_concurrent_creates_from_several_processes_lose_no_key(tmp_path):
    ctx = multiprocessing.get_context("fork")
    workers, per_worker = 4, 10
    start, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_create_many, args=(str(tmp_path), f"user{w}", per_worker, start, out))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    keys = [key for _ in procs for key in out.get(timeout=60)]
    for proc in procs:
        proc.join(30)
    assert [p.exitcode for p in procs] == [0] * workers
    store = KeyStore(tmp_path)
    assert len(store.list()) == workers * per_worker == len(keys) == len(set(keys))
    for key in keys:
        record = store.lookup(key)
        assert record is not None and key_status(record) == "active"
    assert len({r["id"] for r in store.list()}) == workers * per_worker


# -- schema version 2: limits, rotation, and the upgrade of a version-1 file -------------------------------------
V1_FIELDS = ("id", "name", "owner", "prefix", "digest", "created_at", "expires_at", "revoked_at", "last_used_at")


def _v1_file(store: KeyStore) -> tuple[str, bytes]:
    """A version-1 api-keys.json as an Askgate before limits wrote it, holding one key; returns (raw key, bytes)."""
    from app.keys.format import display_prefix, generate_key

    raw = generate_key()
    record = dict.fromkeys(V1_FIELDS) | {
        "id": "key_00000000000000aa",
        "name": "old",
        "owner": "alice",
        "prefix": display_prefix(raw),
        "digest": digest(raw),
        "created_at": "2025-01-01T00:00:00Z",
    }
    text = json.dumps({"version": 1, "keys": [record]}, indent=1, sort_keys=True) + "\n"
    store.file.path.write_text(text)
    return raw, text.encode()


def test_a_version_1_file_reads_with_the_defaults_and_is_upgraded_on_its_first_write(store, tmp_path):
    raw, original = _v1_file(store)
    record = store.lookup(raw)
    assert {name: record[name] for name in FIELDS - set(V1_FIELDS)} == {
        "scopes": ["ask", "workspaces:read"],
        "workspaces": None,
        "rate_limit": None,
        "allowed_ips": None,
        "previous_digest": None,
        "previous_expires_at": None,
    }
    assert store.file.path.read_bytes() == original  # reading changes nothing
    assert store.file.check() is None  # store check: fine as it is

    store.create("alice", "new")

    on_disk = _file(store)
    assert on_disk["version"] == 2
    assert all(set(r) == FIELDS for r in on_disk["keys"])
    assert (tmp_path / "api-keys.json.bak").read_bytes() == original  # the .bak keeps the old file...
    assert (tmp_path / "api-keys.json.v1.bak").read_bytes() == original  # ...and so does this, for good
    store.create("alice", "newer")
    assert json.loads((tmp_path / "api-keys.json.bak").read_text())["version"] == 2  # the last good version again
    assert (tmp_path / "api-keys.json.v1.bak").read_bytes() == original
    assert KeyStore(tmp_path).lookup(raw)["id"] == "key_00000000000000aa"


def test_limits_are_stored_and_checked_at_creation(store):
    limits = {"scopes": ["ask"], "workspaces": ["a"], "rate_limit": 3, "allowed_ips": ["10.0.0.1/8"]}
    record = store.create("alice", "ci", limits=limits).record
    assert {name: record[name] for name in limits} == {**limits, "allowed_ips": ["10.0.0.0/8"]}
    assert _file(store)["keys"][0]["allowed_ips"] == ["10.0.0.0/8"]
    with pytest.raises(KeyRequestError, match="^rate_limit must be"):
        store.create("alice", "ci", limits={"rate_limit": 0})
    assert len(store.list()) == 1


def test_update_changes_name_and_limits_only(store):
    key_id = store.create("alice", "ci").record["id"]
    updated = store.update(key_id, {"name": " renamed ", "rate_limit": 7, "allowed_ips": ["::1"]})
    assert (updated["name"], updated["rate_limit"], updated["allowed_ips"]) == ("renamed", 7, ["::1/128"])
    assert updated["scopes"] == ["ask", "workspaces:read"]
    assert store.get(key_id)["rate_limit"] == 7
    assert store.update("key_missing", {"name": "x"}) is None
    before = store.file.path.read_bytes()
    for changes, message in (
        ({"owner": "bob", "digest": "0" * 64}, "Unknown field(s): digest, owner; a key's name, scopes, workspaces, "),
        ({}, "Nothing to change: send any of name, scopes, workspaces, rate_limit, allowed_ips"),
        ({"scopes": []}, "scopes must be a non-empty list"),
        ({"name": ""}, "Give the key a name"),
    ):
        with pytest.raises(KeyRequestError) as info:
            store.update(key_id, changes)
        assert str(info.value).startswith(message)
    assert store.file.path.read_bytes() == before


def test_rotation_keeps_the_old_secret_as_a_digest_until_the_grace_ends(store, tmp_path, monkeypatch):
    import app.keys.store as keystore

    new = store.create("alice", "ci", 30, limits={"rate_limit": 3})
    before = new.record
    rotated = store.rotate(before["id"], 120)
    record = rotated.record
    assert rotated.key != new.key
    assert (record["id"], record["name"], record["rate_limit"]) == (before["id"], "ci", 3)
    assert (record["created_at"], record["expires_at"]) == (before["created_at"], before["expires_at"])
    assert record["digest"] == digest(rotated.key) and record["prefix"] == rotated.key[:12]
    assert record["previous_digest"] == digest(new.key)
    grace = parse_iso(record["previous_expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=115) < grace <= timedelta(seconds=121)  # at least 120 s, rounded up to a whole second
    on_disk = store.file.path.read_bytes()
    for secret in (new.key, rotated.key):
        assert secret.encode() not in on_disk and secret[12:].encode() not in on_disk

    reader = KeyStore(tmp_path)
    assert reader.lookup(new.key)["id"] == before["id"]
    assert reader.lookup(rotated.key)["id"] == before["id"]
    assert public_view(record)["previous_expires_at"] == record["previous_expires_at"]

    real_time = time.time
    monkeypatch.setattr(keystore.time, "time", lambda: real_time() + 121)
    assert reader.lookup(new.key) is None  # the grace is over: an unknown key
    assert reader.lookup(rotated.key)["id"] == before["id"]
    monkeypatch.setattr(keystore, "utcnow", lambda: datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=121))
    assert public_view(reader.get(before["id"]))["previous_expires_at"] is None


def test_rotating_during_a_grace_ends_the_earlier_one_and_zero_grace_keeps_nothing(store):
    first = store.create("alice", "ci")
    key_id = first.record["id"]
    second = store.rotate(key_id, 3600)
    third = store.rotate(key_id, 3600)
    assert store.lookup(first.key) is None  # at most two secrets: the first is gone at once
    assert store.lookup(second.key)["id"] == key_id
    assert store.lookup(third.key)["previous_digest"] == digest(second.key)

    fourth = store.rotate(key_id, 0)
    assert (fourth.record["previous_digest"], fourth.record["previous_expires_at"]) == (None, None)
    assert store.lookup(third.key) is None
    assert store.lookup(fourth.key)["id"] == key_id


def test_a_grace_never_outlives_the_key_and_revoking_ends_it(store):
    new = store.create("alice", "ci", 30)
    rotated = store.rotate(new.record["id"], 604_800)
    assert rotated.record["previous_expires_at"] < rotated.record["expires_at"]
    _set_field(store, new.record["id"], "expires_at", iso(datetime.now(UTC) + timedelta(seconds=60)))
    capped = store.rotate(new.record["id"], 604_800).record
    assert capped["previous_expires_at"] == capped["expires_at"]

    revoked = store.revoke(new.record["id"])
    assert (revoked["previous_digest"], revoked["previous_expires_at"]) == (None, None)
    assert store.lookup(rotated.key) is None


def test_only_an_active_key_is_rotated(store):
    from app.keys.store import KeyStateError

    revoked = store.create("alice", "r").record["id"]
    store.revoke(revoked)
    expired = store.create("alice", "e").record["id"]
    _set_field(store, expired, "expires_at", "2025-01-01T00:00:00Z")
    before = store.file.path.read_bytes()
    for key_id in (revoked, expired):
        with pytest.raises(KeyStateError, match="^Only an active key can be rotated$"):
            store.rotate(key_id, 60)
    with pytest.raises(KeyRequestError, match="^grace_seconds must be"):
        store.rotate(revoked, -1)
    assert store.rotate("key_missing", 60) is None
    assert store.file.path.read_bytes() == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scopes", []),
        ("scopes", ["root"]),
        ("workspaces", []),
        ("rate_limit", 0),
        ("allowed_ips", ["nowhere"]),
        ("previous_digest", "not-hex"),
        ("previous_expires_at", "2025-01-01T00:00:00Z"),  # without its digest
    ],
)
def test_a_version_2_file_with_bad_limits_fails_closed(store, field, value):
    new = store.create("alice", "k")
    data = _file(store)
    data["keys"][0][field] = value
    store.file.path.write_text(json.dumps(data))
    with pytest.raises(StoreUnavailable, match="api-keys.json"):
        KeyStore(store.file.path.parent).lookup(new.key)


def test_a_hand_edited_range_reads_as_askgate_writes_it(store):
    new = store.create("alice", "k")
    data = _file(store)
    data["keys"][0]["allowed_ips"] = ["10.9.8.7/8", "::ffff:10.0.0.0/104"]
    store.file.path.write_text(json.dumps(data))
    assert KeyStore(store.file.path.parent).lookup(new.key)["allowed_ips"] == ["10.0.0.0/8"]
