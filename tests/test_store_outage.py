"""Store outages (issue 14, item 5) and 1,000 keys in use while revocations land, through real gunicorn and Redis.

With ``STORE_URL=redis://…`` and Redis gone, dashboard keys are answered from the last loaded copy for at most
``STORE_STALE_SECONDS``, then ``503 {"error": "Key store unavailable"}``; changes answer 503 and change nothing; the
first read once Redis is back loads the store afresh; env keys work throughout.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
import requests

from app.documents import StoreUnavailable, StoreUnreachable
from app.documents import stale as stale_module
from app.keys.store import iso, utcnow
from app.stores import Stores
from bench.keys_in_use import bulk_keys  # the same 1,000 keys the bench uses
from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD, RedisServer, live_servers
from tests.faultlib import generate_key_on_page, login
from tests.procnet import pin_by_worker

pytestmark = [pytest.mark.server, pytest.mark.redis]

UNAVAILABLE = {"error": "Key store unavailable"}
INVALID = {"error": "Invalid API key"}
PAGE_503 = "The data store is unavailable right now."
KEEP_ALIVE = ["--keep-alive", "120"]  # pinned connections wait idle while other steps run on a busy machine


@pytest.fixture
def persistent_redis(tmp_path: Path):
    """A private Redis that keeps its data across a stop and start, as a production store would."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir, persistent=True)
    server.start()
    yield server
    server.stop()


class Clock:
    """Stands in for ``time`` in app.documents.stale: the stale window without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


# -- in process: the stale window, the refusal of changes, the reload -------------------------------------------
def test_reads_use_the_last_copy_for_the_window_changes_are_refused_and_all_resumes(
    persistent_redis, tmp_path, monkeypatch
):
    clock = Clock()
    monkeypatch.setattr(stale_module, "time", clock)
    stores = Stores.open(persistent_redis.url, tmp_path, stale_seconds=30)
    stores.users.create("alice", PASSWORD)
    key = stores.keys.create("alice", "ci")
    assert stores.keys.lookup(key.key)["id"] == key.record["id"]  # loaded, and confirmed at 1000.0
    assert stores.users.get("alice").disabled is False

    persistent_redis.stop()
    clock.now += 30  # the copy is exactly STORE_STALE_SECONDS old: still answered
    assert stores.keys.lookup(key.key)["id"] == key.record["id"]
    assert stores.users.get("alice").username == "alice"
    with pytest.raises(StoreUnreachable):
        stores.keys.create("alice", "during")
    with pytest.raises(StoreUnreachable):
        stores.keys.revoke(key.record["id"])
    with pytest.raises(StoreUnreachable):
        stores.users.set_disabled("alice", True)
    clock.now += 0.5  # older than the window: refused, as a corrupt store is
    with pytest.raises(StoreUnavailable):
        stores.keys.lookup(key.key)
    with pytest.raises(StoreUnavailable):
        stores.users.get("alice")

    persistent_redis.start()
    assert stores.keys.lookup(key.key)["revoked_at"] is None  # nothing the outage refused was half done
    assert [r["name"] for r in Stores.open(persistent_redis.url, tmp_path).keys.list()] == ["ci"]
    assert stores.users.get("alice").disabled is False
    assert stores.keys.create("alice", "after").record["name"] == "after"


def test_without_a_loaded_copy_an_outage_is_refused_at_once(persistent_redis, tmp_path, monkeypatch):
    monkeypatch.setattr(stale_module, "time", Clock())
    writer = Stores.open(persistent_redis.url, tmp_path)
    writer.users.create("alice", PASSWORD)
    key = writer.keys.create("alice", "ci")
    fresh = Stores.open(persistent_redis.url, tmp_path, stale_seconds=30)  # a worker that never read the store

    persistent_redis.stop()
    with pytest.raises(StoreUnreachable):
        fresh.keys.lookup(key.key)


def test_the_first_read_after_an_outage_reloads_even_if_the_change_counter_went_back(tmp_path, monkeypatch):
    """Redis came back without its data (no persistence) and the keys were restored with one of them revoked: the
    counter may then hold the very value this process last saw, so only a full reload sees the revocation.

    (A restore after the restart moves the counter past the log; putting it back where this process saw it stands
    for a Redis restarted from an older snapshot.)"""
    monkeypatch.setattr(stale_module, "time", Clock())
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)  # not persistent: a restart loses everything
    server.start()
    try:
        host = Stores.open(server.url, tmp_path, stale_seconds=30)
        host.users.create("alice", PASSWORD)
        key = host.keys.create("alice", "ci")
        assert host.keys.lookup(key.key)["revoked_at"] is None
        counter = server.client().get("askgate:api-keys:counter")
        saved = host.keys.file.read()

        server.stop()
        assert host.keys.lookup(key.key)["revoked_at"] is None  # the copy, during the outage
        server.start()
        restored = json.loads(json.dumps(saved))
        restored["keys"][0]["revoked_at"] = iso(utcnow())
        other = Stores.open(server.url, tmp_path)
        other.keys.file.replace_all(restored)
        server.client().set("askgate:api-keys:counter", counter)

        assert host.keys.lookup(key.key)["revoked_at"] is not None
    finally:
        server.stop()


# -- through gunicorn: several workers, two hosts ----------------------------------------------------------------
def _whoami(conn, key: str) -> tuple[int, dict]:
    status, _, body = conn.get("/api/whoami", {"x-api-key": key})
    return status, body


def _admin(conn, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    status, _, reply = conn.call(method, path, {"x-api-key": ADMIN_KEY}, body)
    return status, reply


def _no_server_errors(log: str) -> None:
    assert "Traceback" not in log
    statuses = [json.loads(line)["status"] for line in log.splitlines() if line.startswith('{"time"')]
    assert statuses and not [s for s in statuses if s >= 500 and s != 503], statuses


class Load:
    """Background whoami calls with a dashboard key and an env key during the whole outage, statuses counted."""

    def __init__(self, base_url: str, dashboard_key: str) -> None:
        self.base_url = base_url
        self.keys = {"dashboard": dashboard_key, "env": CLIENT_KEY}
        self.seen: dict[str, set[int]] = {"dashboard": set(), "env": set()}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(name,)) for name in self.keys]

    def _run(self, name: str) -> None:
        http = requests.Session()
        while not self.stop.is_set():
            try:
                reply = http.get(self.base_url + "/api/whoami", headers={"x-api-key": self.keys[name]}, timeout=10)
                self.seen[name].add(reply.status_code)
            except requests.RequestException as exc:
                self.seen[name].add(repr(exc))
            time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_redis_stopped_and_started_under_load_with_the_store_on_it(persistent_redis, tmp_path, start_server):
    stale_seconds = 5
    env = {
        "STORE_URL": persistent_redis.url,
        "RATELIMIT_STORAGE_URI": persistent_redis.url,
        "WEB_CONCURRENCY": "3",
        "STORE_STALE_SECONDS": str(stale_seconds),
        "API_RATE_LIMIT": "1000000",
        "AUTH_FAILURE_LIMIT": "1000/minute",
    }
    stores = Stores.open(persistent_redis.url, tmp_path)
    stores.users.create("alice", PASSWORD, "admin")
    used = stores.keys.create("alice", "used").key
    doomed = stores.keys.create("alice", "doomed")  # revoked through host B as soon as Redis is back

    host_a = start_server(env, args=KEEP_ALIVE)
    host_a.wait_workers(3)
    b_folder = tmp_path / "host-b"
    b_folder.mkdir()
    with live_servers(b_folder, b_folder) as start_b:
        host_b = start_b({**env, "WEB_CONCURRENCY": "1"})
        workers = pin_by_worker(host_a, 3, 1)
        conns = [conns[0] for conns in workers.values()]
        page = login(host_a.url, "alice")
        try:
            with Load(host_a.url, used) as load:
                # Every worker has loaded the store (and confirmed it current) just before Redis goes.
                for conn in conns:
                    assert _whoami(conn, used)[0] == 200
                    assert _whoami(conn, doomed.key)[0] == 200
                assert page.get(host_a.url + "/account/security", timeout=10).status_code == 200
                persistent_redis.stop()

                # Within STORE_STALE_SECONDS: the copy answers; every change is a 503 that changes nothing.
                for conn in conns:
                    status, body = _whoami(conn, used)
                    assert (status, body["auth_method"], body["user"]) == (200, "dashboard_key", "alice")
                    assert _whoami(conn, ADMIN_KEY)[1]["auth_method"] == "admin_key"
                    assert _admin(conn, "POST", "/api/keys", {"name": "during", "user": "alice"}) == (503, UNAVAILABLE)
                    assert _admin(conn, "PATCH", f"/api/keys/{doomed.record['id']}", {"active": False}) == (
                        503,
                        UNAVAILABLE,
                    )
                    assert _admin(conn, "POST", f"/api/keys/{doomed.record['id']}/rotate", {}) == (503, UNAVAILABLE)
                dashboard = page.get(host_a.url + "/account/security", timeout=10)
                assert dashboard.status_code == 200 and "doomed" in dashboard.text
                refused_page = generate_key_on_page(page, host_a.url, "from-the-page")
                assert refused_page.status_code == 503 and PAGE_503 in refused_page.text

                # Past the window, on every worker: 503 for the dashboard key, env keys still answered.
                deadline = time.monotonic() + 30
                for conn in conns:
                    while (status := _whoami(conn, used))[0] == 200:
                        assert time.monotonic() < deadline, "a worker kept answering from its copy"
                        time.sleep(0.2)
                    assert status == (503, UNAVAILABLE)
                    assert _whoami(conn, CLIENT_KEY)[0] == 200
                    assert _whoami(conn, ADMIN_KEY)[0] == 200
                # A signed-in page says the store is away (still signed in afterwards), the session's API a 503.
                gone = page.get(host_a.url + "/account/security", allow_redirects=False, timeout=10)
                assert gone.status_code == 503 and PAGE_503 in gone.text
                api = page.get(host_a.url + "/api/whoami", timeout=10)
                assert (api.status_code, api.json()) == (503, UNAVAILABLE)

                # Redis is back: host B revokes at once; host A refuses the key on its next request, every worker.
                persistent_redis.start()
                revoked = requests.patch(
                    host_b.url + f"/api/keys/{doomed.record['id']}",
                    json={"active": False},
                    headers={"x-api-key": ADMIN_KEY},
                    timeout=10,
                )
                assert revoked.json()["status"] == "revoked"
                for conn in conns:
                    assert _whoami(conn, doomed.key) == (401, INVALID)
                    assert _whoami(conn, used)[0] == 200

                # Everything resumes without a restart: changes, the new key on every worker, the same session.
                status, created = _admin(conns[0], "POST", "/api/keys", {"name": "after", "user": "alice"})
                assert status == 201
                for conn in conns:
                    assert _whoami(conn, created["key"])[0] == 200
                assert page.get(host_a.url + "/account/security", timeout=10).status_code == 200
        finally:
            for conn in conns:
                conn.close()

        # Nothing the outage refused was saved; the load saw only the documented answers.
        names = sorted(r["name"] for r in Stores.open(persistent_redis.url, tmp_path).keys.list())
        assert names == ["after", "doomed", "used"]
        assert load.seen["dashboard"] <= {200, 503} and 503 in load.seen["dashboard"], load.seen
        assert load.seen["env"] == {200}, load.seen
        _no_server_errors(host_a.log())
        _no_server_errors(host_b.log())


@pytest.mark.parametrize("store", ["files", "redis"])
def test_1000_keys_in_use_while_revocations_land_are_refused_on_their_next_request_in_every_worker(
    store, redis_db, workspaces, start_server
):
    workers, revocations = 3, 30
    env = {
        "RATELIMIT_STORAGE_URI": redis_db,
        "WEB_CONCURRENCY": str(workers),
        "AUTH_FAILURE_LIMIT": "100000/minute",  # the revoked keys' 401s all come from 127.0.0.1
        "USAGE_FLUSH_SECONDS": "1",  # last-use records written while the keys are used
    }
    if store == "redis":
        env["STORE_URL"] = redis_db
    stores = Stores.open(redis_db if store == "redis" else "files", workspaces)
    stores.users.create("alice", PASSWORD)
    keys = bulk_keys(stores, "alice", 1000)
    doomed = random.Random(14).sample(range(len(keys)), revocations)

    server = start_server(env, args=KEEP_ALIVE)
    server.wait_workers(workers)
    by_worker = pin_by_worker(server, workers, 2)  # per worker: one connection for the load, one for the checks
    revoked_at: dict[int, float] = {}  # key number -> monotonic time its revocation was answered
    uses: list[tuple[int, float, int]] = []  # (key number, monotonic start, status)
    checks: list[tuple[int, int, int, dict]] = []  # (key number, worker pid, status, body)
    lock = threading.Lock()

    revoking = threading.Event()

    def use_keys(conn, numbers: list[int]) -> None:
        """Each key of ``numbers`` in turn, round after round: at least twice, and until the revocations are done."""
        rounds = 0
        while rounds < 2 or revoking.is_set():
            rounds += 1
            for number in numbers:
                started = time.monotonic()
                status, _ = _whoami(conn, keys[number][1])
                with lock:
                    uses.append((number, started, status))

    def revoke() -> None:
        admin = requests.Session()
        try:
            for number in doomed:
                reply = admin.patch(
                    server.url + f"/api/keys/{keys[number][0]}",
                    json={"active": False},
                    headers={"x-api-key": ADMIN_KEY},
                    timeout=10,
                )
                assert reply.json()["status"] == "revoked"
                revoked_at[number] = time.monotonic()
                for pid, (_, check) in by_worker.items():
                    status, body = _whoami(check, keys[number][1])
                    checks.append((number, pid, status, body))
        finally:
            revoking.clear()

    errors: list[BaseException] = []

    def guarded(target, *args) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported by the assertion below, not lost in the thread
                errors.append(exc)
                revoking.clear()

        return threading.Thread(target=run)

    order = list(range(len(keys)))
    threads = [guarded(use_keys, conns[0], order[index::workers]) for index, conns in enumerate(by_worker.values())]
    threads.append(guarded(revoke))
    revoking.set()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for conns in by_worker.values():
            for conn in conns:
                conn.close()

    assert errors == []
    assert len(checks) == revocations * workers
    assert [(n, pid, status) for n, pid, status, body in checks if status != 401] == []
    assert {(status, json.dumps(body)) for _, _, status, body in checks} == {(401, json.dumps(INVALID))}
    assert len(uses) >= 2 * len(keys)

    def allowed(number: int, started: float) -> set[int]:
        if number not in revoked_at:
            return {200}
        return {401} if started > revoked_at[number] else {200, 401}  # a use racing its revocation: either

    assert [(n, status) for n, started, status in uses if status not in allowed(n, started)] == []
    assert [1 for n, started, _ in uses if n in revoked_at and started > revoked_at[n]]  # the load met revoked keys

    # Each key's last use is recorded apart from the keys (app.usage) and listed for every one of them.
    deadline = time.monotonic() + 20
    while True:
        listed = requests.get(server.url + "/api/keys", headers={"x-api-key": ADMIN_KEY}, timeout=30).json()["keys"]
        unused = [view["id"] for view in listed if view["status"] == "active" and not view["last_used_at"]]
        if not unused or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(listed) == len(keys) and unused == []  # (a key revoked before its first use has none)
    assert {view["id"] for view in listed if view["status"] == "revoked"} == {keys[n][0] for n in doomed}
    assert "Traceback" not in server.log()
