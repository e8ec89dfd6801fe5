"""One store suite, run against both backends: the JSON files and Redis (STORE_URL)."""

from __future__ import annotations

import threading

import pytest

from app.documents import storeadmin
from app.documents.sharedfile import StoreUnavailable
from app.keys.format import digest
from app.keys.store import KeyStore
from app.stores import Stores
from app.users.store import UserStore

PASSWORD = "correct horse battery"


@pytest.fixture(params=["files", "redis"])
def location(request, workspaces):
    """Where a store lives: ``files`` or a flushed Redis database."""
    if request.param == "files":
        return "files"
    return request.getfixturevalue("redis_db")


def open_stores(location: str, workspaces) -> Stores:
    """A fresh pair of stores, as another process or host would open them."""
    return Stores.open(location, workspaces)


def corrupt(location: str, workspaces, name: str) -> None:
    """Break the store ``name``: its file, or in Redis a field of every record (one hash per record)."""
    if location == "files":
        (workspaces / name).write_text("{not json")
    else:
        import redis

        client = redis.Redis.from_url(location)
        base = "askgate:" + name.removesuffix(".json")
        for record_id in client.smembers(base + ":ids"):
            client.hset(f"{base}:rec:{record_id.decode()}", "digest", "{not json")


def test_keys_round_trip(location, workspaces):
    stores = open_stores(location, workspaces)
    stores.users.create("alice", PASSWORD)
    new = stores.keys.create("alice", "ci", 30)

    other = open_stores(location, workspaces)
    found = other.keys.lookup(new.key)
    assert found["id"] == new.record["id"]
    assert found["digest"] == digest(new.key)
    assert found["owner"] == "alice"
    assert found["expires_at"] is not None
    assert [r["id"] for r in other.keys.list("alice")] == [new.record["id"]]
    assert other.keys.list("bob") == []


def test_revocation_through_one_instance_is_seen_by_another_on_its_next_lookup(location, workspaces):
    first, second = open_stores(location, workspaces), open_stores(location, workspaces)
    first.users.create("alice", PASSWORD)
    new = first.keys.create("alice", "ci")
    assert second.keys.lookup(new.key)["revoked_at"] is None  # second has it cached now

    first.keys.revoke(new.record["id"])

    assert second.keys.lookup(new.key)["revoked_at"] is not None


def test_delete_and_unknown_ids(location, workspaces):
    stores = open_stores(location, workspaces)
    new = stores.keys.create("alice", "ci")
    assert stores.keys.revoke("key_missing") is None
    assert stores.keys.delete("key_missing") is False
    assert stores.keys.delete(new.record["id"]) is True
    assert open_stores(location, workspaces).keys.lookup(new.key) is None


def test_concurrent_creates_lose_no_key(location, workspaces):
    created: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        store = open_stores(location, workspaces).keys  # each thread its own instance, like a worker
        for i in range(10):
            key = store.create("alice", f"k{n}-{i}").key
            with lock:
                created.append(key)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stored = {r["digest"] for r in open_stores(location, workspaces).keys.list()}
    assert len(created) == 40
    assert stored == {digest(k) for k in created}


def test_users_round_trip_and_session_versions(location, workspaces):
    stores = open_stores(location, workspaces)
    user = stores.users.create("alice", PASSWORD, "admin")
    assert user.session_version == 1

    other = open_stores(location, workspaces).users
    assert other.authenticate("ALICE", PASSWORD).username == "alice"
    assert other.authenticate("alice", "wrong password!") is None
    assert stores.users.set_password("alice", "another password").session_version == 2
    assert other.authenticate("alice", "another password") is not None
    assert stores.users.set_disabled("alice", True).disabled is True
    assert other.authenticate("alice", "another password") is None
    assert other.get("alice").session_version == 3


def test_a_corrupt_document_fails_closed_and_is_never_overwritten(location, workspaces):
    stores = open_stores(location, workspaces)
    new = stores.keys.create("alice", "ci")
    corrupt(location, workspaces, "api-keys.json")

    fresh = open_stores(location, workspaces)
    with pytest.raises(StoreUnavailable):
        fresh.keys.lookup(new.key)
    with pytest.raises(StoreUnavailable):
        fresh.keys.create("alice", "another")
    assert storeadmin.check(fresh)["keys"] is not None
    assert storeadmin.check(fresh)["users"] is None

    assert storeadmin.restore(fresh) == ["keys"]
    assert storeadmin.check(fresh) == {"keys": None, "users": None}
    assert open_stores(location, workspaces).keys.lookup(new.key)["id"] == new.record["id"]


@pytest.mark.parametrize("direction", ["files->redis", "redis->files"])
def test_migrate_copies_everything_and_verifies(direction, workspaces, redis_db, tmp_path):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    if direction == "files->redis":
        source, target = Stores.open("files", workspaces), Stores.open(redis_db, other_dir)
    else:
        source, target = Stores.open(redis_db, workspaces), Stores.open("files", other_dir)
    source.users.create("alice", PASSWORD, "admin")
    source.users.create("bob", PASSWORD)
    keys = [source.keys.create("alice", f"k{i}").key for i in range(5)]
    source.keys.revoke(source.keys.lookup(keys[0])["id"])

    assert storeadmin.migrate(source, target) == {"keys": 5, "users": 2}

    assert target.keys.lookup(keys[0])["revoked_at"] is not None
    assert all(target.keys.lookup(k)["digest"] == digest(k) for k in keys)
    assert target.users.authenticate("bob", PASSWORD).username == "bob"
    with pytest.raises(storeadmin.StoreAdminError, match="refusing to overwrite"):
        storeadmin.migrate(source, target)


def test_an_empty_store_is_a_store_with_nothing_in_it(location, workspaces):
    stores = open_stores(location, workspaces)
    assert stores.keys.list() == []
    assert stores.users.count() == 0
    assert isinstance(stores.keys, KeyStore) and isinstance(stores.users, UserStore)


def test_two_hosts_on_one_redis_store_see_each_others_revocations(tmp_path, redis_db):
    """Two gunicorn instances with their own folders but one STORE_URL behave as one service."""
    import requests

    from tests.conftest import ADMIN_KEY, LiveServer

    hosts = []
    try:
        for name in ("host-a", "host-b"):
            folder = tmp_path / name
            folder.mkdir()
            hosts.append(LiveServer(folder, {"STORE_URL": redis_db}, tmp_path / f"{name}.log"))
        a, b = hosts
        Stores.open(redis_db, tmp_path).users.create("alice", PASSWORD)

        created = requests.post(
            a.url + "/api/keys", json={"name": "ci", "user": "alice"}, headers={"x-api-key": ADMIN_KEY}, timeout=10
        )
        assert created.status_code == 201
        key = created.json()["key"]
        assert requests.get(b.url + "/api/whoami", headers={"x-api-key": key}, timeout=10).json()["user"] == "alice"

        revoked = requests.patch(
            a.url + f"/api/keys/{created.json()['id']}",
            json={"active": False},
            headers={"x-api-key": ADMIN_KEY},
            timeout=10,
        )
        assert revoked.json()["status"] == "revoked"

        refused = requests.get(b.url + "/api/whoami", headers={"x-api-key": key}, timeout=10)
        assert (refused.status_code, refused.json()) == (401, {"error": "Invalid API key"})
        assert not (tmp_path / "host-a" / "api-keys.json").exists()  # nothing went to the files
    finally:
        for host in hosts:
            host.stop()


def _write_raw(location: str, workspaces, name: str, text: str) -> None:
    if location == "files":
        (workspaces / name).write_text(text)
    else:
        import redis

        redis.Redis.from_url(location).set(f"askgate:{name}", text)


def _read_raw(location: str, workspaces, name: str) -> bytes | None:
    if location == "files":
        path = workspaces / name
        return path.read_bytes() if path.exists() else None
    import redis

    return redis.Redis.from_url(location).get(f"askgate:{name}")


def test_a_version_1_document_is_upgraded_on_its_first_write_keeping_the_old_one(location, workspaces):
    import json

    from app.keys.format import display_prefix, generate_key

    raw = generate_key()
    old = {
        "version": 1,
        "keys": [
            {
                "id": "key_00000000000000aa",
                "name": "old",
                "owner": "alice",
                "prefix": display_prefix(raw),
                "digest": digest(raw),
                "created_at": "2025-01-01T00:00:00Z",
                "expires_at": None,
                "revoked_at": None,
                "last_used_at": None,
            }
        ],
    }
    text = json.dumps(old)
    _write_raw(location, workspaces, "api-keys.json", text)
    stores = open_stores(location, workspaces)
    assert storeadmin.check(stores)["keys"] is None
    assert stores.keys.lookup(raw)["scopes"] == ["ask", "workspaces:read"]
    if location != "files":  # Redis moved the document into one hash per record on first open, keeping it
        assert _read_raw(location, workspaces, "api-keys.json.document.bak") == text.encode()
        assert _read_raw(location, workspaces, "api-keys.json.v1.bak") == text.encode()
        assert json.loads(_read_raw(location, workspaces, "api-keys.json"))["version"] == 0
        stores.keys.update("key_00000000000000aa", {"rate_limit": 9})
        assert open_stores(location, workspaces).keys.lookup(raw)["rate_limit"] == 9
        return
    assert _read_raw(location, workspaces, "api-keys.json") == text.encode()

    stores.keys.update("key_00000000000000aa", {"rate_limit": 9})

    upgraded = json.loads(_read_raw(location, workspaces, "api-keys.json"))
    assert upgraded["version"] == 2
    assert upgraded["keys"][0]["rate_limit"] == 9
    assert upgraded["keys"][0]["previous_digest"] is None
    assert _read_raw(location, workspaces, "api-keys.json.bak") == text.encode()
    assert _read_raw(location, workspaces, "api-keys.json.v1.bak") == text.encode()
    assert open_stores(location, workspaces).keys.lookup(raw)["rate_limit"] == 9


@pytest.mark.parametrize("direction", ["files->redis", "redis->files"])
def test_migrate_carries_limits_and_a_running_rotation(direction, workspaces, redis_db, tmp_path):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    if direction == "files->redis":
        source, target = Stores.open("files", workspaces), Stores.open(redis_db, other_dir)
    else:
        source, target = Stores.open(redis_db, workspaces), Stores.open("files", other_dir)
    limits = {"scopes": ["ask"], "workspaces": ["a", "b"], "rate_limit": 3, "allowed_ips": ["10.0.0.0/8", "::1/128"]}
    old = source.keys.create("alice", "ci", 30, limits=limits)
    new = source.keys.rotate(old.record["id"], 3600)

    assert storeadmin.migrate(source, target) == {"keys": 1, "users": 0}

    for secret in (old.key, new.key):
        record = target.keys.lookup(secret)
        assert {name: record[name] for name in limits} == limits
        assert record["previous_expires_at"] == new.record["previous_expires_at"]
