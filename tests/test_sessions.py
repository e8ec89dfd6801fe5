"""Issue 10 item 12, on real gunicorn: signing out ends the session on the server (a copied cookie opens nothing
afterwards, on every worker and with the Redis store too), and a session ends after SESSION_LIFETIME unused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from app.config import ConfigError, load_config
from app.users.store import MAX_SESSIONS, UserStore
from tests.conftest import CSRF_RE, PASSWORD, base_env

SECRET_KEY = base_env(Path("unused"))["SECRET_KEY"]


def _sign_in(base: str) -> requests.Session:
    http = requests.Session()
    token = CSRF_RE.search(http.get(base + "/login", timeout=10).text).group(1)
    data = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    assert http.post(base + "/login", data=data, allow_redirects=False, timeout=10).status_code == 302
    return http


def _sign_out(http: requests.Session, base: str) -> None:
    token = CSRF_RE.search(http.get(base + "/dashboard", timeout=10).text).group(1)
    assert http.post(base + "/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10).status_code == 302


def _with_cookie(cookie: str, base: str, path: str) -> requests.Response:
    return requests.get(base + path, headers={"Cookie": f"session={cookie}"}, allow_redirects=False, timeout=10)


def _assert_signed_out(cookie: str, base: str) -> None:
    api = _with_cookie(cookie, base, "/api/whoami")
    page = _with_cookie(cookie, base, "/dashboard")
    assert (api.status_code, api.json()) == (401, {"error": "API key required"})
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")


@pytest.mark.server
def test_a_cookie_kept_from_before_logout_opens_nothing(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server()
    http = _sign_in(server.url)
    copied = http.cookies["session"]  # what a thief, a shared machine or a proxy log kept
    assert _with_cookie(copied, server.url, "/api/whoami").json()["user"] == "alice"

    _sign_out(http, server.url)

    _assert_signed_out(copied, server.url)


@pytest.mark.server
def test_logout_ends_only_that_session(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server()
    laptop, phone = _sign_in(server.url), _sign_in(server.url)
    laptop_cookie = laptop.cookies["session"]
    _sign_out(laptop, server.url)
    _assert_signed_out(laptop_cookie, server.url)
    assert phone.get(server.url + "/api/whoami", timeout=10).json()["user"] == "alice"


@pytest.mark.server
def test_logout_through_one_worker_ends_the_session_on_all_with_the_redis_store(live_server, redis_db, workspaces):
    env = {"STORE_URL": redis_db, "RATELIMIT_STORAGE_URI": redis_db, "WEB_CONCURRENCY": "3"}
    UserStore(redis_client=redis.Redis.from_url(redis_db)).create("alice", PASSWORD, "member")
    server = live_server(**env)
    server.wait_workers(3)
    http = _sign_in(server.url)
    copied = http.cookies["session"]
    before = [_with_cookie(copied, server.url, "/api/whoami").status_code for _ in range(9)]  # new connection each
    _sign_out(http, server.url)
    after = [_with_cookie(copied, server.url, "/api/whoami").status_code for _ in range(9)]
    assert before == [200] * 9
    assert after == [401] * 9
    assert not (workspaces / "users.json").exists()  # the sessions live in Redis with the user


def _set_last_use(store: UserStore, username: str, seconds_ago: float) -> None:
    def change(data: dict) -> None:
        for record in data["users"]:
            if record["username"] == username:
                record["sessions"] = {d: int(time.time() - seconds_ago) for d in record["sessions"]}

    store.file.update(change)


@pytest.mark.server
def test_a_session_unused_for_session_lifetime_has_ended(live_server, workspaces):
    store = UserStore(workspaces)
    store.create("alice", PASSWORD, "member")
    server = live_server(SESSION_LIFETIME="10m")
    idle, busy = _sign_in(server.url), _sign_in(server.url)
    idle_cookie = idle.cookies["session"]

    _set_last_use(store, "alice", 9 * 60)  # both were last used nine minutes ago
    assert busy.get(server.url + "/api/whoami", timeout=10).status_code == 200  # still inside: and now used
    last_uses = sorted(store.file.read()["users"][0]["sessions"].values())
    assert time.time() - last_uses[-1] < 30 and time.time() - last_uses[0] >= 9 * 60

    def age_idle_only(data: dict) -> None:
        sessions = data["users"][0]["sessions"]
        oldest = min(sessions, key=sessions.get)
        sessions[oldest] = int(time.time() - 10 * 60 - 1)

    store.file.update(age_idle_only)
    _assert_signed_out(idle_cookie, server.url)
    assert busy.get(server.url + "/api/whoami", timeout=10).json()["user"] == "alice"


@pytest.mark.server
def test_a_cookie_from_before_session_ids_signs_in_again(live_server, workspaces):
    """After the upgrade, existing users sign in once: a cookie without a session id is not a session."""
    user = UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server()
    app = Flask("forger")
    app.secret_key = SECRET_KEY
    old_style = (
        SecureCookieSessionInterface().get_signing_serializer(app).dumps({"_user_id": user.get_id(), "_fresh": True})
    )
    _assert_signed_out(old_style, server.url)


def test_the_store_keeps_only_digests_and_caps_open_sessions(tmp_path):
    store = UserStore(tmp_path)
    user = store.create("alice", PASSWORD, "member")
    ids = [store.start_session(user.id, 3600, now=1_000_000 + n) for n in range(MAX_SESSIONS + 5)]
    sessions = store.file.read()["users"][0]["sessions"]
    text = (tmp_path / "users.json").read_text()

    assert len(sessions) == MAX_SESSIONS
    assert not any(sid in text for sid in ids)
    assert not store.session_alive(user.id, ids[0], 3600, now=1_000_100)  # the oldest made room
    assert store.session_alive(user.id, ids[-1], 3600, now=1_000_100)
    assert not store.session_alive(user.id, ids[-1], 3600, now=1_000_000 + MAX_SESSIONS + 4 + 3600)
    assert not store.session_alive(user.id, "made-up", 3600, now=1_000_100)
    store.end_session(user.id, ids[-1])
    assert not store.session_alive(user.id, ids[-1], 3600, now=1_000_100)


@pytest.mark.parametrize(("raw", "seconds"), [(None, 43200), ("30m", 1800), ("2d", 172800), ("900", 900)])
def test_session_lifetime_parses(tmp_path, raw, seconds):
    env = base_env(tmp_path) if raw is None else base_env(tmp_path, SESSION_LIFETIME=raw)
    assert load_config(env).session_lifetime == seconds


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("forever", "SESSION_LIFETIME must be a duration such as 12h, 30m or 3600 (seconds), got 'forever'"),
        ("30s", "SESSION_LIFETIME must be at least 1 minute, got '30s'"),
        ("nan", "SESSION_LIFETIME must be at least 1 minute, got 'nan'"),
    ],
)
def test_a_bad_session_lifetime_is_one_line(tmp_path, raw, message):
    with pytest.raises(ConfigError) as info:
        load_config(base_env(tmp_path, SESSION_LIFETIME=raw))
    assert str(info.value) == message
