"""The Redis store as one hash per record (app/documents/redisrecords.py), through a real redis-server."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest
import redis
import requests

from app.documents import StoreUnavailable, storeadmin
from app.documents.redisdoc import redis_client
from app.keys import store as keystore
from app.keys.format import digest, display_prefix, generate_key
from app.keys.store import KeyStore
from app.stores import Stores
from app.users import store as userstore
from tests.conftest import ADMIN_KEY, PASSWORD, ROOT, base_env

pytestmark = pytest.mark.redis
ADMIN = {"x-api-key": ADMIN_KEY}
T = 10  # seconds, for every request


def snapshot(client: redis.Redis, match: str = "*") -> dict[bytes, object]:
    """Every key in the database (matching ``match``) with its value, to see exactly which keys a change touched."""
    values = {}
    for name in client.scan_iter(match=match, count=1000):
        kind = client.type(name)
        read = {b"hash": client.hgetall, b"set": client.smembers, b"string": client.get}.get(kind)
        values[name] = read(name) if read else client.zrange(name, 0, -1, withscores=True)
    return values


def changed_keys(before: dict, after: dict) -> set[str]:
    return {name.decode() for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def test_a_change_touches_only_its_record(redis_db):
    client = redis.Redis.from_url(redis_db)
    stores = Stores.open(redis_db, None)
    keys = [stores.keys.create("alice", f"k{n}") for n in range(50)]
    target = keys[17].record["id"]
    rec = f"askgate:api-keys:rec:{target}"
    log = {"askgate:api-keys:counter", "askgate:api-keys:changes", "askgate:api-keys:bak"}

    before = snapshot(client)
    assert stores.keys.revoke(target)["revoked_at"] is not None
    after = snapshot(client)
    assert changed_keys(before, after) == {rec, *log}
    assert set(after[rec.encode()]) == {name.encode() for name in keystore.RECORD_FIELDS}
    assert {k: v for k, v in after[rec.encode()].items() if before[rec.encode()][k] != v} == {
        b"revoked_at": json.dumps(stores.keys.get(target)["revoked_at"]).encode()
    }

    before = snapshot(client)
    rotated = stores.keys.rotate(keys[3].record["id"], 60)
    after = snapshot(client)
    assert changed_keys(before, after) == {
        f"askgate:api-keys:rec:{keys[3].record['id']}",
        "askgate:api-keys:by-digest",
        *log,
    }
    index = client.hgetall("askgate:api-keys:by-digest")
    assert len(index) == 51  # every current digest, and the one secret in its grace
    assert index[digest(rotated.key).encode()] == index[digest(keys[3].key).encode()] == keys[3].record["id"].encode()

    before = snapshot(client)
    new = stores.keys.create("alice", "one more")
    after = snapshot(client)
    assert changed_keys(before, after) == {
        f"askgate:api-keys:rec:{new.record['id']}",
        "askgate:api-keys:ids",
        "askgate:api-keys:by-digest",
        *log,
    }
    assert client.hget("askgate:api-keys:by-digest", digest(new.key)) == new.record["id"].encode()
    assert storeadmin.check(stores) == {"keys": None, "users": None}


def test_another_process_fetches_only_what_changed_and_reloads_all_only_when_far_behind(redis_db):
    writer, reader = Stores.open(redis_db, None).keys, Stores.open(redis_db, None).keys
    made = [writer.create("alice", f"k{n}") for n in range(20)]
    assert reader.lookup(made[0].key)["revoked_at"] is None
    assert reader.file.full_loads == 1

    writer.revoke(made[5].record["id"])
    writer.delete(made[6].record["id"])
    rotated = writer.rotate(made[7].record["id"], 0)
    assert reader.lookup(made[5].key)["revoked_at"] is not None
    assert reader.lookup(made[6].key) is None
    assert reader.lookup(made[7].key) is None and reader.lookup(rotated.key)["id"] == made[7].record["id"]
    assert len(reader.list()) == 19
    assert reader.file.full_loads == 1  # three records fetched, not twenty

    behind = KeyStore(redis_client=redis_client(redis_db))
    writer.file.document._log_keep = behind.file.document._log_keep = 3  # a log of the last three
    assert behind.lookup(made[0].key) is not None
    for new in made[8:13]:
        writer.revoke(new.record["id"])
    assert all(behind.lookup(record.key)["revoked_at"] for record in made[8:13])
    assert behind.file.full_loads == 2  # five changes since it last looked: more than its log, so everything


def test_a_lookup_is_one_round_trip_whether_or_not_something_changed(redis_db):
    """The per-request check and the fetch of what changed are one script call: no round trip is added."""
    writer, reader = Stores.open(redis_db, None).keys, Stores.open(redis_db, None).keys
    made = [writer.create("alice", f"k{n}") for n in range(5)]
    assert reader.lookup(made[0].key) is not None
    sent = []
    connection = reader.file.client.connection_pool.get_connection()
    reader.file.client.connection_pool.release(connection)
    original = connection.send_packed_command

    def counting(command, *args, **kwargs):  # one packed send is one round trip (a script call included)
        sent.append(command)
        return original(command, *args, **kwargs)

    connection.send_packed_command = counting
    for _ in range(10):
        assert reader.lookup(made[0].key)["revoked_at"] is None
    assert len(sent) == 10
    writer.revoke(made[0].record["id"])
    writer.rotate(made[1].record["id"], 0)
    assert reader.lookup(made[0].key)["revoked_at"] is not None
    assert reader.lookup(made[1].key) is None
    assert len(sent) == 12


def _create_many(url: str, worker: int, count: int) -> list[str]:
    store = Stores.open(url, None).keys
    return [store.create("alice", f"p{worker}-{n}").key for n in range(count)]


def test_concurrent_creates_from_several_processes_lose_nothing(redis_db):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        made = pool.starmap(_create_many, [(redis_db, worker, 25) for worker in range(4)])
    created = {digest(key) for keys in made for key in keys}
    store = Stores.open(redis_db, None)
    assert len(created) == 100
    assert {record["digest"] for record in store.keys.list()} == created
    index = redis.Redis.from_url(redis_db).hgetall("askgate:api-keys:by-digest")
    assert {name.decode() for name in index} == created
    assert storeadmin.check(store) == {"keys": None, "users": None}


def _legacy(client: redis.Redis, folder, keys: int = 3) -> tuple[list[str], bytes, bytes]:
    """A store as Askgate kept it before: each document one JSON string. Returns the raw keys and both texts."""
    raws = [generate_key() for _ in range(keys)]
    records = [
        dict.fromkeys(keystore.RECORD_FIELDS)
        | {
            "id": f"key_{n:016x}",
            "name": f"old-{n}",
            "owner": "alice",
            "prefix": display_prefix(raw),
            "digest": digest(raw),
            "created_at": f"2025-01-0{n + 1}T00:00:00Z",
            "revoked_at": "2025-02-01T00:00:00Z" if n == 1 else None,
            "scopes": ["ask"],
            "workspaces": None,
            "rate_limit": 70,
            "allowed_ips": None,
        }
        for n, raw in enumerate(raws)
    ]
    users = Stores.open("files", folder).users
    users.create("alice", PASSWORD)
    users.create("root", PASSWORD, "admin")
    key_text = json.dumps({"version": 2, "keys": records}, indent=1).encode()
    user_text = (folder / "users.json").read_bytes()
    client.set("askgate:api-keys.json", key_text)
    client.set("askgate:users.json", user_text)
    client.set("askgate:api-keys.json:version", 41)
    return raws, key_text, user_text


def test_a_one_document_store_is_moved_on_first_open_keeping_it(redis_db, tmp_path):
    client = redis.Redis.from_url(redis_db)
    raws, key_text, user_text = _legacy(client, tmp_path)

    assert storeadmin.check(Stores.open(redis_db, None)) == {"keys": None, "users": None}  # check moves nothing
    assert client.get("askgate:api-keys.json") == key_text and client.hgetall("askgate:api-keys:meta") == {}

    first, second = Stores.open(redis_db, None), Stores.open(redis_db, None)
    assert first.keys.lookup(raws[0])["rate_limit"] == 70
    assert second.keys.lookup(raws[1])["revoked_at"] == "2025-02-01T00:00:00Z"
    assert second.users.authenticate("alice", PASSWORD).username == "alice"
    assert client.scard("askgate:api-keys:ids") == 3 and client.scard("askgate:users:ids") == 2
    assert {name.decode() for name in client.hgetall("askgate:api-keys:by-digest")} == {digest(r) for r in raws}
    assert client.hgetall("askgate:users:by-name").keys() == {b"alice", b"root"}
    # The documents are kept as they were; what is left in their place, older Askgate refuses to read (503).
    assert client.get("askgate:api-keys.json.document.bak") == key_text
    assert client.get("askgate:users.json.document.bak") == user_text
    for name, validate in (("api-keys.json", keystore._validate), ("users.json", userstore._validate)):
        with pytest.raises(ValueError, match="unsupported version 0"):
            validate(json.loads(client.get(f"askgate:{name}")))
    assert client.get("askgate:api-keys.json:version") == b"42"  # so a running older host reads it at once

    source = Stores.open(redis_db, None)
    folder = tmp_path / "back"
    folder.mkdir()
    assert storeadmin.migrate(source, Stores.open("files", folder)) == {"keys": 3, "users": 2}
    assert json.loads((folder / "api-keys.json").read_text())["keys"] == json.loads(key_text)["keys"]


def flask_cli(workspaces, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **base_env(workspaces, **env)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_store_commands_move_a_one_document_store_to_files_and_back_to_redis(redis_db, tmp_path):
    client = redis.Redis.from_url(redis_db)
    raws, key_text, _ = _legacy(client, tmp_path / "made")
    files = tmp_path / "files"
    files.mkdir()

    checked = flask_cli(files, "store", "check", STORE_URL=redis_db)
    assert (checked.returncode, checked.stdout) == (0, "keys: ok\nusers: ok\n")
    moved = flask_cli(files, "store", "migrate", "--to", "files", STORE_URL=redis_db)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines()[0] == "Copied 3 key(s) and 2 user(s); counts and digests verified."
    assert json.loads((files / "api-keys.json").read_text())["keys"] == json.loads(key_text)["keys"]
    assert client.get("askgate:api-keys.json.document.bak") == key_text  # opening it moved it, keeping the old one

    other = redis_db.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(other).flushdb()
    back = flask_cli(files, "store", "migrate", "--to", other)
    assert back.returncode == 0, back.stderr
    assert back.stdout.splitlines()[0] == "Copied 3 key(s) and 2 user(s); counts and digests verified."
    again = Stores.open(other, None)
    assert [again.keys.lookup(raw)["id"] for raw in raws] == [f"key_{n:016x}" for n in range(3)]
    assert redis.Redis.from_url(other).scard("askgate:api-keys:ids") == 3
    refused = flask_cli(files, "store", "migrate", "--to", other)
    assert refused.returncode == 1
    assert "refusing to overwrite" in refused.stderr


def test_a_broken_one_document_store_is_not_moved_and_fails_closed(redis_db):
    client = redis.Redis.from_url(redis_db)
    client.set("askgate:api-keys.json", "{not json")
    stores = Stores.open(redis_db, None)
    with pytest.raises(StoreUnavailable, match="askgate:api-keys.json is not a valid store document"):
        stores.keys.lookup(generate_key())
    with pytest.raises(StoreUnavailable):
        stores.keys.create("alice", "ci")
    assert "askgate:api-keys.json" in storeadmin.check(stores)["keys"]
    assert client.get("askgate:api-keys.json") == b"{not json"
    assert client.keys("askgate:api-keys:*") == []


def test_a_broken_record_fails_closed_and_restore_puts_it_back(redis_db):
    client = redis.Redis.from_url(redis_db)
    stores = Stores.open(redis_db, None)
    made = [stores.keys.create("alice", f"k{n}") for n in range(3)]
    assert stores.keys.lookup(made[0].key) is not None
    broken = f"askgate:api-keys:rec:{made[1].record['id']}"
    client.hset(broken, "scopes", '["fly"]')
    client.incr("askgate:api-keys:counter")  # as a hand edit with the log would not; a restart reads it anyway

    fresh = Stores.open(redis_db, None)
    with pytest.raises(StoreUnavailable, match="invalid record"):
        fresh.keys.lookup(made[0].key)
    assert "scopes" in storeadmin.check(fresh)["keys"]
    assert storeadmin.restore(fresh) == ["keys"]
    assert storeadmin.check(fresh) == {"keys": None, "users": None}
    assert json.loads(client.hget(broken, "scopes")) == ["ask", "workspaces:read"]
    assert all(fresh.keys.lookup(new.key)["id"] == new.record["id"] for new in made)


# -- through gunicorn ------------------------------------------------------------------------------------------------
def test_gunicorn_on_a_moved_store_refuses_a_revoked_key_on_the_next_request(start_server, redis_db, tmp_path):
    """Two hosts of three workers each on one Redis that held the old layout: the first request moves it, a
    revocation through one host is refused by every worker of the other on the next request, and the audit log
    (a Redis stream) has one event per action, or refuses the action (503) and nothing changes."""
    client = redis.Redis.from_url(redis_db)
    raws, _, _ = _legacy(client, tmp_path)
    env = {"STORE_URL": redis_db, "RATELIMIT_STORAGE_URI": redis_db, "WEB_CONCURRENCY": "3"}
    hosts = [start_server(env), start_server(env)]
    for host in hosts:
        host.wait_workers(3)

    def whoami(host, raw: str) -> int:
        return requests.get(host.url + "/api/whoami", headers={"x-api-key": raw, "Connection": "close"}, timeout=10)

    for host in hosts:
        for _ in range(6):  # every worker, most likely, has the key cached now
            assert whoami(host, raws[0]).json()["key"]["id"] == "key_0000000000000000"
    revoked = requests.patch(
        hosts[0].url + "/api/keys/key_0000000000000000", json={"active": False}, headers=ADMIN, timeout=T
    )
    assert revoked.json()["status"] == "revoked"
    for _ in range(12):
        answer = whoami(hosts[1], raws[0])
        assert (answer.status_code, answer.json()) == (401, {"error": "Invalid API key"})

    created = requests.post(hosts[1].url + "/api/keys", json={"name": "new", "user": "alice"}, headers=ADMIN, timeout=T)
    assert created.status_code == 201
    assert whoami(hosts[0], created.json()["key"]).json()["key"]["id"] == created.json()["id"]
    events = [json.loads(fields[b"e"]) for _, fields in client.xrange("askgate:audit")]
    assert [(e["action"], e["target"]["id"]) for e in events] == [
        ("key.revoke", "key_0000000000000000"),
        ("key.create", created.json()["id"]),
    ]

    client.delete("askgate:audit")
    client.set("askgate:audit", "not a stream")  # XADD now fails: the log cannot take an event
    stores = {**snapshot(client, "askgate:api-keys*"), **snapshot(client, "askgate:users*")}
    refused = requests.post(
        hosts[0].url + "/api/keys", json={"name": "nope", "user": "alice"}, headers=ADMIN, timeout=T
    )
    assert (refused.status_code, refused.json()) == (503, {"error": "Audit log unavailable"})
    refused = requests.patch(
        hosts[1].url + f"/api/keys/{created.json()['id']}", json={"active": False}, headers=ADMIN, timeout=T
    )
    assert (refused.status_code, refused.json()) == (503, {"error": "Audit log unavailable"})
    assert {**snapshot(client, "askgate:api-keys*"), **snapshot(client, "askgate:users*")} == stores
    assert whoami(hosts[0], created.json()["key"]).status_code == 200
