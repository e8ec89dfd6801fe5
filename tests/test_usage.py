"""Usage per key (app/usage.py): counts by outcome, the usage API, last use in listings without touching
api-keys.json, and the counts through real gunicorn — one worker on the files (SQLite), three on Redis, a kill -9
and a graceful stop."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests

from app import usage
from app.keys.store import parse_iso
from app.stores import Stores
from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD, AuthActions, LiveServer
from tests.procnet import pin_by_worker

ADMIN = {"x-api-key": ADMIN_KEY}
ZERO = {"ok": 0, "client_error": 0, "rate_limited": 0, "denied": 0}


def xkey(key: str) -> dict:
    return {"x-api-key": key}


def current(series: list[dict]) -> dict:
    last = dict(series[-1])
    last.pop("start")
    return last


# -- in process ---------------------------------------------------------------------------------------------------
def test_each_outcome_is_counted_in_its_column(make_app):
    app = make_app(USAGE_FLUSH_SECONDS="3600")
    client = app.test_client()
    svc = app.extensions["askgate"]
    svc.users.create("alice", PASSWORD, "member")
    raw = svc.keys.create("alice", "other").key
    new = svc.keys.create("alice", "limited", limits={"scopes": ["ask"], "rate_limit": 4})
    key = new.record
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 200  # ok
    assert client.post("/api/ask", headers=xkey(new.key), json={}).status_code == 400  # client_error
    assert client.get("/api/workspaces", headers=xkey(new.key)).status_code == 403  # denied: scope
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 200  # ok
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 200  # ok (4th of 4: a 403 spends none)
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 429  # rate_limited
    assert client.get("/api/whoami", headers=xkey(raw)).status_code == 200
    assert client.get("/api/whoami", headers=xkey(CLIENT_KEY)).status_code == 200

    answer = client.get(f"/api/keys/{key['id']}/usage", headers=ADMIN)
    assert answer.status_code == 200
    body = answer.get_json()
    assert set(body) == {"key_id", "granularity", "series"}
    assert (body["key_id"], body["granularity"]) == (key["id"], "hour")
    assert len(body["series"]) == 168
    assert current(body["series"]) == {"ok": 3, "client_error": 1, "rate_limited": 1, "denied": 1}
    assert all({k: v for k, v in row.items() if k != "start"} == ZERO for row in body["series"][:-1])
    hour = int(time.time()) // 3600 * 3600
    assert body["series"][-1]["start"] == usage.iso(hour)
    assert body["series"][0]["start"] == usage.iso(hour - 167 * 3600)

    svc.keys.revoke(key["id"])
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 401  # denied: revoked
    daily = client.get(f"/api/keys/{key['id']}/usage?granularity=day", headers=ADMIN).get_json()
    assert len(daily["series"]) == 90
    assert daily["series"][-1]["start"] == usage.iso(hour - hour % 86400)
    assert current(daily["series"]) == {"ok": 3, "client_error": 1, "rate_limited": 1, "denied": 2}

    # Each env key has its own bucket, as each dashboard key has.
    _, days = svc.usage.daily()
    buckets = days[hour - hour % 86400]
    assert buckets["env:admin"] == [2, 0, 0, 0]  # the two usage reads above
    assert [row for bucket, row in buckets.items() if bucket.startswith("env:") and bucket != "env:admin"] == [
        [1, 0, 0, 0]
    ]


def test_key_list_on_the_command_line_shows_the_last_use(app, client, auth):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "k")
    assert client.get("/api/whoami", headers=xkey(new.key)).status_code == 200
    app.extensions["askgate"].usage.flush()
    (line,) = app.test_cli_runner().invoke(args=["key", "list"]).output.splitlines()
    stamp = line.split("\t")[-1]
    assert abs(parse_iso(stamp).timestamp() - time.time()) < 5


def test_usage_api_permissions_and_bad_granularity(client, auth):
    auth.create_user("alice")
    auth.create_user("bob")
    mine = auth.services.keys.create("alice", "mine")
    theirs = auth.services.keys.create("bob", "theirs").record["id"]
    own = mine.record["id"]
    auth.login("alice")
    assert client.get(f"/api/keys/{own}/usage").status_code == 200
    assert client.get(f"/api/keys/{theirs}/usage").get_json() == {"error": "Key not found"}
    assert client.get(f"/api/keys/{theirs}/usage").status_code == 404
    assert client.get("/api/keys/key_nope/usage").status_code == 404
    bad = client.get(f"/api/keys/{own}/usage?granularity=minute")
    assert (bad.status_code, bad.get_json()) == (400, {"error": "granularity must be hour or day"})
    other = client.application.test_client()
    assert other.get(f"/api/keys/{theirs}/usage", headers=ADMIN).status_code == 200
    refused = other.get(f"/api/keys/{own}/usage", headers=xkey(mine.key))
    assert refused.status_code == 403
    assert other.get(f"/api/keys/{own}/usage", headers=xkey(CLIENT_KEY)).status_code == 403


def test_flushes_from_several_processes_add_up(tmp_path):
    """Additive upserts: two recorders (two processes) flushing the same hour add, never overwrite."""
    store = usage.SQLiteUsage(tmp_path / usage.FILE_NAME)
    first, second = usage.UsageRecorder(store, 3600), usage.UsageRecorder(store, 3600)
    for recorder, n in ((first, 3), (second, 4)):
        for _ in range(n):
            recorder.count("key:k", usage.OK, "10.0.0.1", True)
        recorder.count("key:k", usage.DENIED, None, False)
        recorder.flush()
    assert current(first.series("key:k", "hour")) == {"ok": 7, "client_error": 0, "rate_limited": 0, "denied": 2}
    assert current(first.series("key:k", "day"))["ok"] == 7
    assert first.last_used()["key:k"].ip == "10.0.0.1"


def test_a_store_that_fails_keeps_the_counts_for_the_next_flush(tmp_path):
    store = usage.SQLiteUsage(tmp_path / usage.FILE_NAME)
    recorder = usage.UsageRecorder(store, 3600)
    recorder.count("key:k", usage.OK, None, True)
    real_add = store.add
    store.add = lambda *args: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error"))
    recorder.flush()
    store.add = real_add
    recorder.count("key:k", usage.OK, None, True)
    assert current(recorder.series("key:k", "hour"))["ok"] == 2


def test_counts_from_many_threads_while_flushing_add_up_exactly(tmp_path):
    """The request path appends without a lock: none is lost to a flush or a summing running meanwhile."""
    recorder = usage.UsageRecorder(usage.SQLiteUsage(tmp_path / usage.FILE_NAME), 3600)
    done = threading.Event()

    def count(n: int) -> None:
        for i in range(2000):
            recorder.count(f"key:{n % 2}", usage.OK if i % 4 else usage.DENIED, f"10.0.0.{n}", i % 4 != 0)

    def flush_meanwhile() -> None:
        while not done.is_set():
            recorder.flush()
            recorder.sum_pending()

    flusher = threading.Thread(target=flush_meanwhile)
    flusher.start()
    workers = [threading.Thread(target=count, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    flusher.join()
    for bucket in ("key:0", "key:1"):
        assert current(recorder.series(bucket, "hour")) == {
            "ok": 6000,
            "client_error": 0,
            "rate_limited": 0,
            "denied": 2000,
        }


def test_last_use_shows_a_count_not_yet_summed_nor_flushed(tmp_path):
    recorder = usage.UsageRecorder(usage.SQLiteUsage(tmp_path / usage.FILE_NAME), 3600)
    recorder.count("key:k", usage.OK, "10.0.0.7", True)
    recorder.count("key:k", usage.DENIED, "10.0.0.8", False)  # refused: not a use
    assert recorder.last_used()["key:k"].ip == "10.0.0.7"
    assert not (tmp_path / usage.FILE_NAME).exists()  # reading wrote nothing


# -- through gunicorn -------------------------------------------------------------------------------------------------
def _server(tmp_path: Path, workspaces: Path, store: str, workers: int, **env: str) -> LiveServer:
    env = {"API_RATE_LIMIT": "100000", "USAGE_FLUSH_SECONDS": "2", **env}
    if store != "files":
        env |= {"STORE_URL": store, "RATELIMIT_STORAGE_URI": store, "WEB_CONCURRENCY": str(workers)}
    users = Stores.open(store, workspaces).users
    users.create("alice", PASSWORD, "member")
    live = LiveServer(workspaces, env, tmp_path / "gunicorn.log")
    live.wait_workers(workers)
    return live


def _new_key(server: LiveServer) -> tuple[str, str]:
    made = requests.post(server.url + "/api/keys", headers=ADMIN, json={"name": "ci", "user": "alice"}, timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


def _eventually(read, expected=57, timeout: float = 20):
    """``read()`` once it returns ``expected`` (a few flush windows at most), or its last value."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def _stored_ok(workspaces: Path, key_id: str) -> int:
    if not (workspaces / usage.FILE_NAME).exists():
        return 0  # nothing flushed yet
    with sqlite3.connect(workspaces / usage.FILE_NAME) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'counts'").fetchone():
            return 0  # the first flush has created the file, not its tables yet
        row = conn.execute(
            "SELECT COALESCE(SUM(ok), 0) FROM counts WHERE bucket = ? AND period = 'hour'", ("key:" + key_id,)
        ).fetchone()
    return row[0]


@pytest.mark.server
def test_one_worker_on_files_counts_exactly_and_kill_9_loses_at_most_one_window(tmp_path, workspaces):
    server = _server(tmp_path, workspaces, "files", 1)
    try:
        key_id, key = _new_key(server)
        keys_file = workspaces / "api-keys.json"
        before = (keys_file.read_bytes(), os.stat(keys_file).st_mtime_ns)
        http = requests.Session()
        for _ in range(57):
            assert http.get(server.url + "/api/whoami", headers=xkey(key), timeout=10).status_code == 200
        assert _eventually(lambda: _stored_ok(workspaces, key_id)) == 57  # the worker's thread flushed
        assert (keys_file.read_bytes(), os.stat(keys_file).st_mtime_ns) == before  # use never rewrites the keys
        listed = requests.get(server.url + "/api/keys", headers=ADMIN, timeout=10).json()["keys"]
        assert [(k["id"], k["last_used_ip"]) for k in listed] == [(key_id, "127.0.0.1")]
        assert listed[0]["last_used_at"] is not None
        series = requests.get(f"{server.url}/api/keys/{key_id}/usage", headers=ADMIN, timeout=10).json()["series"]
        assert current(series) == {"ok": 57, "client_error": 0, "rate_limited": 0, "denied": 0}

        for _ in range(9):
            assert http.get(server.url + "/api/whoami", headers=xkey(key), timeout=10).status_code == 200
        http.close()
        (worker,) = server.worker_pids()
        os.kill(worker, signal.SIGKILL)
        stored = _stored_ok(workspaces, key_id)
        assert 57 <= stored <= 57 + 9  # at most the last window is lost
        server.wait_workers(1)
    finally:
        server.stop()
    assert _stored_ok(workspaces, key_id) == stored  # nothing counted twice by the replacement worker


@pytest.mark.server
def test_a_graceful_stop_flushes(tmp_path, workspaces):
    server = _server(tmp_path, workspaces, "files", 1, USAGE_FLUSH_SECONDS="3600")
    try:
        key_id, key = _new_key(server)
        for _ in range(13):
            assert requests.get(server.url + "/api/whoami", headers=xkey(key), timeout=10).status_code == 200
        assert _stored_ok(workspaces, key_id) == 0  # the window is an hour: nothing flushed yet
    finally:
        server.stop()
    assert _stored_ok(workspaces, key_id) == 13


@pytest.mark.server
@pytest.mark.redis
def test_three_workers_on_redis_count_exactly_and_see_a_revocation_at_once(tmp_path, workspaces, redis_db):
    server = _server(tmp_path, workspaces, redis_db, 3)
    try:
        key_id, key = _new_key(server)
        by_worker = pin_by_worker(server, 3, 1)
        conns = [conn for conns in by_worker.values() for conn in conns]
        try:
            for round_ in range(20):
                for conn in conns:
                    status, _, _ = conn.get("/api/whoami", xkey(key))
                    assert status == 200, round_
            revoked = requests.patch(
                f"{server.url}/api/keys/{key_id}", headers=ADMIN, json={"active": False}, timeout=10
            )
            assert revoked.status_code == 200
            for conn in conns:  # every worker, on its very next request
                status, _, body = conn.get("/api/whoami", xkey(key))
                assert (status, body) == (401, {"error": "Invalid API key"})
        finally:
            for conn in conns:
                conn.close()

        def hour_now() -> dict:
            answer = requests.get(f"{server.url}/api/keys/{key_id}/usage", headers=ADMIN, timeout=10)
            return current(answer.json()["series"])

        expected = {"ok": 60, "client_error": 0, "rate_limited": 0, "denied": 3}
        assert _eventually(hour_now, expected) == expected  # every worker's thread flushed
        daily = requests.get(f"{server.url}/api/keys/{key_id}/usage?granularity=day", headers=ADMIN, timeout=10)
        assert current(daily.json()["series"]) == {"ok": 60, "client_error": 0, "rate_limited": 0, "denied": 3}
        listed = requests.get(server.url + "/api/keys", headers=ADMIN, timeout=10).json()["keys"]
        assert listed[0]["last_used_ip"] == "127.0.0.1"
        document = Stores.open(redis_db, workspaces).keys.file.read()
        assert document["keys"][0]["last_used_at"] is None  # the key records are never written by use
    finally:
        server.stop()


# -- pages ------------------------------------------------------------------------------------------------------------
def _key_used(client, auth) -> tuple[str, str]:
    """alice's key made through the API (so the audit log has its creation), used 3 times OK and once denied."""
    auth.create_user("alice")
    made = client.post("/api/keys", headers=ADMIN, json={"name": "ci-bot", "user": "alice"}).get_json()
    key_id, raw = made["id"], made["key"]
    for _ in range(3):
        assert client.get("/api/whoami", headers=xkey(raw)).status_code == 200
    client.patch(f"/api/keys/{key_id}", headers=ADMIN, json={"scopes": ["ask"]})
    assert client.get("/api/workspaces", headers=xkey(raw)).status_code == 403
    return key_id, raw


def test_account_security_shows_a_sparkline_linking_to_the_key_page(client, auth):
    key_id, _ = _key_used(client, auth)
    auth.login("alice")
    page = client.get("/account/security").get_data(as_text=True)
    assert f'href="/account/keys/{key_id}"' in page
    assert '<svg class="spark"' in page
    text = "Key ci-bot: 4 requests in the last 7 days, at most 4 in an hour"
    assert f'role="img" aria-label="{text}"><title>{text}</title>' in page
    assert 'fill="currentColor"' in page


def test_the_key_page_charts_usage_with_totals_last_use_and_audit_events(client, auth):
    key_id, _ = _key_used(client, auth)
    auth.login("alice")
    response = client.get(f"/account/keys/{key_id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    text = (
        "Requests with key ci-bot in the last 7 days, by hour: 3 OK, 0 client errors, 0 rate limited, 1 denied; "
        "the busiest period had 4"
    )
    assert '<svg class="chart" viewBox="0 0 1680 160"' in page
    assert f'aria-label="{text}"><title>{text}</title>' in page
    assert page.count('class="chart-ok"') == 1 and page.count('class="chart-denied"') == 1
    assert '<dd data-total="ok">3</dd>' in page and '<dd data-total="denied">1</dd>' in page
    assert "from <code>127.0.0.1</code>" in page
    assert "<code>key.create</code>" in page and "<code>key.update</code>" in page

    daily = client.get(f"/account/keys/{key_id}?granularity=day").get_data(as_text=True)
    assert '<svg class="chart" viewBox="0 0 900 160"' in daily
    bad = client.get(f"/account/keys/{key_id}?granularity=week")
    assert bad.status_code == 400
    assert "Show usage by hour or by day: this page shows hours." in bad.get_data(as_text=True)


def test_the_key_page_is_its_owners_and_the_admins(client, auth):
    key_id, _ = _key_used(client, auth)
    auth.create_user("bob")
    auth.create_user("root", admin=True)
    auth.login("bob")
    assert client.get(f"/account/keys/{key_id}").status_code == 404
    assert client.get("/admin/usage").status_code == 403
    admin = client.application.test_client()
    AuthActions(client.application, admin).login("root")
    assert admin.get(f"/account/keys/{key_id}").status_code == 200
    assert admin.get("/account/keys/key_missing").status_code == 404


def test_admin_usage_shows_requests_per_day_and_the_busiest_keys(client, auth):
    key_id, _ = _key_used(client, auth)
    auth.create_user("root", admin=True)
    auth.login("root")
    page = client.get("/admin/usage").get_data(as_text=True)
    assert '<svg class="chart" viewBox="0 0 900 160"' in page
    assert "Requests with keys on this instance in the last 90 days, by day: " in page
    assert f'<a href="/account/keys/{key_id}">ci-bot</a>' in page
    assert "ADMIN_API_KEY" in page  # the admin key's own requests are a bucket of their own
    assert '<td data-label="Requests"><strong>4</strong></td>' in page  # ci-bot's 3 OK and 1 denied


def test_an_unreadable_usage_store_is_a_503_and_listings_still_work(client, auth, workspaces):
    auth.create_user("alice")
    key_id = auth.services.keys.create("alice", "k").record["id"]
    (workspaces / usage.FILE_NAME).write_bytes(b"this is not a database" * 100)
    auth.login("alice")
    broken = client.get(f"/api/keys/{key_id}/usage")
    assert (broken.status_code, broken.get_json()) == (503, {"error": "Usage store unavailable"})
    listed = client.get("/api/keys")
    assert listed.status_code == 200 and listed.get_json()["keys"][0]["last_used_at"] is None
    page = client.get("/account/security")
    assert page.status_code == 200 and f'href="/account/keys/{key_id}"' in page.get_data(as_text=True)
    assert client.get(f"/account/keys/{key_id}").status_code == 503
