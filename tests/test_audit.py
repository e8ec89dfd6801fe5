"""The audit log (issue 13): one event per management action, never a secret, fails closed; reading and paging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import requests

from app import accounts, audit, firstrun
from app.config import ConfigError, load_config
from app.keys.format import digest
from app.ratelimits import LimitReached
from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD, ROOT, base_env, csrf_from

CLIENT_IP = "203.0.113.9"  # the address a trusted proxy (the test, on 127.0.0.1) forwards
PROXIED = {"X-Forwarded-For": CLIENT_IP}
ADMIN = {"x-api-key": ADMIN_KEY, **PROXIED}
EVENT_KEYS = {"id", "time", "action", "actor", "auth_method", "ip", "target", "detail"}


def http_get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, timeout=30, **kwargs)


def http_post(url: str, **kwargs) -> requests.Response:
    return requests.post(url, timeout=30, **kwargs)


def http_patch(url: str, **kwargs) -> requests.Response:
    return requests.patch(url, timeout=30, **kwargs)


def http_delete(url: str, **kwargs) -> requests.Response:
    return requests.delete(url, timeout=30, **kwargs)


def log_events(workspaces: Path) -> list[dict]:
    """Every event in audit.log and its rotated files, oldest first."""
    events: list[dict] = []
    for number in range(audit.KEEP_FILES, -1, -1):
        path = workspaces / (audit.FILE_NAME + (f".{number}" if number else ""))
        if path.exists():
            events += [json.loads(line) for line in path.read_text().splitlines()]
    return events


def log_text(workspaces: Path) -> str:
    return "".join(p.read_text() for p in workspaces.glob("audit.log*") if p.is_file() and p.suffix != ".lock")


def run_cli(workspaces: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **base_env(workspaces, **env)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Browser:
    """A dashboard session through a real server, every request forwarded for CLIENT_IP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers.update(PROXIED)

    def csrf(self, path: str = "/dashboard") -> str:
        return csrf_from(self.http.get(self.url + path).text)

    def post_form(self, path: str, data: dict, page: str = "/dashboard", **kwargs) -> requests.Response:
        return self.http.post(self.url + path, data={**data, "csrf_token": self.csrf(page)}, **kwargs)

    def login(self, name: str, password: str = PASSWORD) -> requests.Response:
        return self.post_form("/login", {"username": name, "password": password}, page="/login")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-CSRFToken": self.csrf()}
        return self.http.request(method, self.url + path, headers=headers, **kwargs)


class Recorder:
    """Runs one action and returns the one event it wrote (failing when it wrote none or several)."""

    def __init__(self, workspaces: Path) -> None:
        self.workspaces = workspaces

    def one(self, action) -> dict:
        before = len(log_events(self.workspaces))
        result = action()
        new = log_events(self.workspaces)[before:]
        assert len(new) == 1, new
        assert set(new[0]) == EVENT_KEYS
        self.result = result
        return new[0]


def _expect(event: dict, action: str, actor, method: str, ip, target: tuple) -> None:
    assert (event["action"], event["actor"], event["auth_method"], event["ip"]) == (action, actor, method, ip)
    assert (event["target"]["type"], event["target"]["id"], event["target"]["name"]) == target


# -- every action, through gunicorn, the pages, the API and the CLI ----------------------------------------------------
def test_each_action_writes_exactly_one_event_and_never_a_secret(live_server, workspaces, tmp_path):
    server = live_server(TRUSTED_PROXY_COUNT="1")
    rec = Recorder(workspaces)
    browser = Browser(server.url)
    token = firstrun.read_token(workspaces)

    def setup():
        page = f"/setup?token={token}"
        data = {"token": token, "username": "root", "password": PASSWORD, "confirm": PASSWORD}
        return browser.post_form(page, data, page=page)

    event = rec.one(setup)
    assert rec.result.status_code == 200
    users = json.loads((workspaces / "users.json").read_text())["users"]
    root_id = users[0]["id"]
    _expect(event, "setup.complete", "root", "session", CLIENT_IP, ("user", root_id, "root"))
    assert event["detail"] == {"role": "admin"}

    _expect(rec.one(lambda: browser.post_form("/logout", {})), "user.logout", "root", "session", CLIENT_IP,
            ("user", root_id, "root"))  # fmt: skip
    event = rec.one(lambda: browser.login("root", "wrong password!"))
    _expect(event, "user.login_failed", None, "session", CLIENT_IP, ("user", root_id, "root"))
    typed = "correct horse battery staple"  # a password typed into the name field stays out of the log
    event = rec.one(lambda: browser.login(typed, "x"))
    _expect(event, "user.login_failed", None, "session", CLIENT_IP, ("user", None, None))
    _expect(rec.one(lambda: browser.login("root")), "user.login", "root", "session", CLIENT_IP,
            ("user", root_id, "root"))  # fmt: skip

    # Users, from the admin pages.
    new_password = "bob's own long password"
    add = {"username": "bob", "password": PASSWORD}
    event = rec.one(lambda: browser.post_form("/admin/users", add, page="/admin/users"))
    bob_id = next(
        u["id"] for u in json.loads((workspaces / "users.json").read_text())["users"] if u["username"] == "bob"
    )
    _expect(event, "user.create", "root", "session", CLIENT_IP, ("user", bob_id, "bob"))
    assert event["detail"] == {"role": "member"}
    for path, action in (("/admin/users/disable", "user.disable"), ("/admin/users/enable", "user.enable")):
        event = rec.one(lambda path=path: browser.post_form(path, {"username": "bob"}, page="/admin/users"))
        _expect(event, action, "root", "session", CLIENT_IP, ("user", bob_id, "bob"))
    reset = {"username": "bob", "password": new_password}
    event = rec.one(lambda: browser.post_form("/admin/users/password", reset, page="/admin/users"))
    _expect(event, "user.password", "root", "session", CLIENT_IP, ("user", bob_id, "bob"))
    assert event["detail"] == {"own": False}

    # Keys, from the API: a session (with CSRF) and the admin key.
    event = rec.one(lambda: browser.api("POST", "/api/keys", json={"name": "ci", "user": "bob"}))
    assert rec.result.status_code == 201
    raw_key, key_id = rec.result.json()["key"], rec.result.json()["id"]
    _expect(event, "key.create", "root", "session", CLIENT_IP, ("key", key_id, "ci"))
    assert event["detail"]["owner"] == "bob" and event["detail"]["expires_at"] is None
    event = rec.one(lambda: http_patch(f"{server.url}/api/keys/{key_id}", json={"active": False}, headers=ADMIN))
    _expect(event, "key.revoke", None, "admin_key", CLIENT_IP, ("key", key_id, "ci"))
    event = rec.one(lambda: http_delete(f"{server.url}/api/keys/{key_id}", headers=ADMIN))
    assert rec.result.status_code == 204
    _expect(event, "key.delete", None, "admin_key", CLIENT_IP, ("key", key_id, "ci"))

    # The operator's commands: no address.
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text("def hello():\n    return 'hi'\n")
    event = rec.one(lambda: run_cli(workspaces, "workspace", "import", "demo", str(source)))
    assert rec.result.returncode == 0, rec.result.stderr
    _expect(event, "workspace.create", None, "cli", None, ("workspace", "demo", "demo"))
    event = rec.one(lambda: run_cli(workspaces, "workspace", "import", "demo", str(source), "--replace"))
    _expect(event, "workspace.replace", None, "cli", None, ("workspace", "demo", "demo"))
    event = rec.one(lambda: run_cli(workspaces, "user", "role", "bob", "admin"))
    assert rec.result.stdout == "bob is now admin.\n"
    _expect(event, "user.update", None, "cli", None, ("user", bob_id, "bob"))
    assert event["detail"] == {"role": "admin"}
    event = rec.one(lambda: run_cli(workspaces, "store", "restore", "--all"))
    _expect(event, "store.restore", None, "cli", None, ("store", "files", "files"))
    assert event["detail"] == {"stores": ["keys", "users"]}
    event = rec.one(lambda: http_delete(f"{server.url}/api/workspaces/demo", headers=ADMIN))
    assert rec.result.status_code == 204
    _expect(event, "workspace.delete", None, "admin_key", CLIENT_IP, ("workspace", "demo", "demo"))

    # Bob signs in with his new password: the session cookie must not reach the log either.
    bob = Browser(server.url)
    rec.one(lambda: bob.login("bob", new_password))
    cookie = bob.http.cookies.get("session")
    assert cookie

    # Reading is no management action: API asks, lists and the log itself write nothing.
    before = len(log_events(workspaces))
    assert http_get(f"{server.url}/api/keys", headers=ADMIN).status_code == 200
    assert http_get(f"{server.url}/api/audit", headers=ADMIN).status_code == 200
    assert http_get(f"{server.url}/api/whoami", headers={"x-api-key": CLIENT_KEY}).status_code == 200
    assert len(log_events(workspaces)) == before

    text = log_text(workspaces)
    for secret in (raw_key, digest(raw_key), PASSWORD, new_password, typed, token, cookie, ADMIN_KEY):
        assert secret not in text
    assert oct((workspaces / "audit.log").stat().st_mode & 0o777) == "0o600"
    assert all(set(e) == EVENT_KEYS for e in log_events(workspaces))


def test_key_update_and_rotate_are_recorded_with_what_changed(app, workspaces):
    operator = accounts.Actor.operator()
    admin = accounts.Actor("session", "root", True, ip="198.51.100.4")
    with app.app_context():
        accounts.create_user(operator, "root", PASSWORD, admin=True)
        new = accounts.create_key_for(admin, None, "ci", 30)
        key_id = new.record["id"]
        before = len(log_events(workspaces))
        accounts.update_key(admin, key_id, {"name": "deploy", "rate_limit": 50})
        rotated = accounts.rotate_key(admin, key_id, 0)
    update, rotate = log_events(workspaces)[before:]
    _expect(update, "key.update", "root", "session", "198.51.100.4", ("key", key_id, "ci"))
    assert update["detail"] == {"name": "deploy", "rate_limit": 50}
    _expect(rotate, "key.rotate", "root", "session", "198.51.100.4", ("key", key_id, "deploy"))
    assert rotate["detail"] == {"grace_seconds": 0}
    text = log_text(workspaces)
    for secret in (new.key, digest(new.key), rotated.key, digest(rotated.key), PASSWORD):
        assert secret not in text


def test_detail_keeps_only_allowed_fields_and_urls_lose_their_password():
    event = audit.build(
        "key.update",
        actor="root",
        auth_method="cli",
        ip="10.0.0.1",
        target_type="key",
        target_id="key_1",
        target_name="ci",
        detail={"name": "x", "key": "agk_secret", "digest": "ab" * 32, "password": "pw", "scopes": ["ask"]},
    )
    assert event["detail"] == {"name": "x", "scopes": ["ask"]}
    assert event["ip"] is None  # the console has no address
    assert audit.safe_location("redis://:hunter2@db.internal:6379/0") == "redis://db.internal:6379/0"


def test_refused_actions_write_nothing(app, workspaces):
    with app.app_context():
        accounts.create_user(accounts.Actor.operator(), "root", PASSWORD, admin=True)
        before = log_events(workspaces)
        member = accounts.Actor("session", "bob", False, ip="10.0.0.1")
        with pytest.raises(accounts.AccountRefused):
            accounts.create_user(member, "eve", PASSWORD)
        with pytest.raises(Exception, match="already exists"):
            accounts.create_user(accounts.Actor.operator(), "root", PASSWORD)
        with pytest.raises(Exception, match="Give the key a name"):
            accounts.create_key_for(accounts.Actor.operator(), "root", "", None)
    assert log_events(workspaces) == before


def test_a_throttled_key_creation_writes_nothing(make_app, workspaces):
    app = make_app(KEY_CREATE_LIMIT="1/hour")
    admin = accounts.Actor("admin_key", None, True, ip="10.0.0.9")
    with app.app_context():
        accounts.create_user(accounts.Actor.operator(), "root", PASSWORD, admin=True)
        accounts.create_key_for(admin, "root", "first", None)
        with pytest.raises(LimitReached):
            accounts.create_key_for(admin, "root", "second", None)
    assert [e["action"] for e in log_events(workspaces)] == ["user.create", "key.create"]


# -- many writers at once ----------------------------------------------------------------------------------------------
def _create_keys(url: str, client: int, count: int) -> list[int]:
    statuses = []
    with requests.Session() as http:
        for n in range(count):
            body = {"name": f"c{client}-{n}", "user": "root"}
            statuses.append(http.post(f"{url}/api/keys", json=body, headers={"x-api-key": ADMIN_KEY}).status_code)
    return statuses


def test_eight_processes_times_fifty_actions_make_four_hundred_whole_events(start_server, workspaces, redis_db):
    assert run_cli(workspaces, "user", "create", "root", "--admin", "--password-stdin", stdin=PASSWORD).returncode == 0
    env = {"WEB_CONCURRENCY": "4", "RATELIMIT_STORAGE_URI": redis_db, "AUDIT_MAX_BYTES": "50000"}
    server = start_server(env)
    server.wait_workers(4)
    with ProcessPoolExecutor(8) as pool:
        results = list(pool.map(_create_keys, [server.url] * 8, range(8), [50] * 8))
    assert [s for statuses in results for s in statuses] == [201] * 400
    events = [e for e in log_events(workspaces) if e["action"] == "key.create"]
    assert len(events) == 400
    assert len({e["id"] for e in events}) == 400
    assert sorted(e["target"]["name"] for e in events) == sorted(f"c{c}-{n}" for c in range(8) for n in range(50))
    assert all(set(e) == EVENT_KEYS and e["auth_method"] == "admin_key" for e in events)
    rotated = sorted(p.name for p in workspaces.glob("audit.log.*") if p.suffix != ".lock")
    assert rotated and all(p.stat().st_size <= 50000 for p in workspaces.glob("audit.log*"))
    # Newest first through the API, across the rotated files, without a gap.
    seen, cursor = [], None
    while True:
        params = {"action": "key.create", "limit": 500} | ({"cursor": cursor} if cursor else {})
        page = http_get(f"{server.url}/api/audit", params=params, headers={"x-api-key": ADMIN_KEY}).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in seen] == [e["id"] for e in reversed(events)]


# -- rotation ----------------------------------------------------------------------------------------------------------
def _event(n: int) -> dict:
    return audit.build(
        "user.login", actor=f"user{n}", auth_method="session", ip="10.0.0.1", target_type="user",
        target_id=f"usr_{n}", target_name=f"user{n}",
    )  # fmt: skip


def test_the_file_rotates_at_the_size_cap_and_keeps_five(tmp_path):
    log = audit.FileAuditLog(tmp_path, 4096)
    line = len(json.dumps({"id": "1796668285638-95bc9dc9", **_event(100)}, separators=(",", ":"))) + 1
    per_file = 4096 // line
    total = per_file * 8
    for n in range(total):
        log.record(_event(n))
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("audit.log") and p.suffix != ".lock")
    assert names == ["audit.log", *(f"audit.log.{n}" for n in range(1, 6))]
    assert all((tmp_path / name).stat().st_size <= 4096 for name in names)
    kept = [json.loads(x) for name in names for x in (tmp_path / name).read_text().splitlines()]
    assert len(kept) >= per_file * 5
    assert oct((tmp_path / "audit.log.3").stat().st_mode & 0o777) == "0o600"
    page = log.read(audit.make_query(limit=500))
    assert [e["actor"] for e in page.events] == [f"user{n}" for n in range(total - 1, total - 1 - len(kept), -1)]
    assert page.next_cursor is None


# -- Redis -------------------------------------------------------------------------------------------------------------
def test_redis_stream_through_gunicorn_and_its_cap(live_server, make_app, workspaces, redis_db):
    import redis

    server = live_server(STORE_URL=redis_db, TRUSTED_PROXY_COUNT="1")
    assert run_cli(workspaces, "user", "create", "root", "--admin", "--password-stdin", stdin=PASSWORD,
                   STORE_URL=redis_db).returncode == 0  # fmt: skip
    response = http_post(f"{server.url}/api/keys", json={"name": "ci", "user": "root"}, headers=ADMIN)
    assert response.status_code == 201
    raw_key = response.json()["key"]
    page = http_get(f"{server.url}/api/audit", headers=ADMIN).json()
    assert [e["action"] for e in page["events"]] == ["key.create", "user.create"]
    _expect(page["events"][0], "key.create", None, "admin_key", CLIENT_IP, ("key", response.json()["id"], "ci"))
    assert page["events"][1]["auth_method"] == "cli"
    client = redis.Redis.from_url(redis_db)
    assert client.xlen("askgate:audit") == 2
    assert not (workspaces / "audit.log").exists()
    stream = json.dumps([[i.decode(), {k.decode(): v.decode() for k, v in f.items()}]
                         for i, f in client.xrange("askgate:audit")])  # fmt: skip
    assert raw_key not in stream and digest(raw_key) not in stream and PASSWORD not in stream

    app = make_app(STORE_URL=redis_db, AUDIT_MAX_EVENTS="100")
    log = app.extensions["askgate"].audit
    for n in range(1000):
        log.record(_event(n))
    assert 100 <= client.xlen("askgate:audit") < 300  # approximate: trimmed by whole stream nodes
    assert len(log.read(audit.make_query(since="1900-01-01", limit=500)).events) == client.xlen("askgate:audit")
    first = log.read(audit.make_query(limit=50))
    second = log.read(audit.make_query(limit=50, cursor=first.next_cursor))
    assert [e["actor"] for e in first.events + second.events] == [f"user{n}" for n in range(999, 899, -1)]


def _bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


# -- fails closed ------------------------------------------------------------------------------------------------------
def test_an_unwritable_log_refuses_every_action_and_changes_nothing(live_server, workspaces):
    assert run_cli(workspaces, "user", "create", "root", "--admin", "--password-stdin", stdin=PASSWORD).returncode == 0
    server = live_server()
    browser = Browser(server.url)
    assert browser.login("root").status_code == 200
    (workspaces / "audit.log").rename(workspaces / "audit.old")
    (workspaces / "audit.log").mkdir()  # root ignores file modes; nobody can append to a folder
    stores = {name: _bytes(workspaces / name) for name in ("api-keys.json", "users.json")}

    response = http_post(f"{server.url}/api/keys", json={"name": "ci", "user": "root"}, headers=ADMIN)
    assert (response.status_code, response.json()) == (503, {"error": "Audit log unavailable"})
    response = browser.api("POST", "/api/keys", json={"name": "ci"})
    assert (response.status_code, response.json()) == (503, {"error": "Audit log unavailable"})
    page = browser.post_form("/admin/users", {"username": "bob", "password": PASSWORD}, page="/admin/users")
    assert page.status_code == 503
    assert "Audit log unavailable" in page.text and "Nothing was changed" in page.text
    result = run_cli(workspaces, "user", "create", "carol", "--password-stdin", stdin=PASSWORD)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: Audit log unavailable: nothing was changed (")
    assert len(result.stderr.splitlines()) == 1
    response = http_get(f"{server.url}/api/audit", headers=ADMIN)
    assert (response.status_code, response.json()) == (503, {"error": "Audit log unavailable"})
    assert {name: _bytes(workspaces / name) for name in stores} == stores

    (workspaces / "audit.log").rmdir()  # writable again: the same request goes through
    response = http_post(f"{server.url}/api/keys", json={"name": "ci", "user": "root"}, headers=ADMIN)
    assert response.status_code == 201
    assert [e["action"] for e in log_events(workspaces)] == ["key.create"]


# -- reading -----------------------------------------------------------------------------------------------------------
def test_api_audit_pages_filters_and_permissions(live_server, workspaces):
    assert run_cli(workspaces, "user", "create", "root", "--admin", "--password-stdin", stdin=PASSWORD).returncode == 0
    assert run_cli(workspaces, "user", "create", "bob", "--password-stdin", stdin=PASSWORD).returncode == 0
    server = live_server(TRUSTED_PROXY_COUNT="1")
    url = server.url + "/api/audit"
    start = audit.now_iso()  # after the CLI's users, before the keys
    ids = []
    for n in range(23):
        owner = "root" if n % 2 else "bob"
        body = {"name": f"k{n}", "user": owner}
        ids.append(http_post(f"{server.url}/api/keys", json=body, headers=ADMIN).json()["id"])
    http_patch(f"{server.url}/api/keys/{ids[3]}", json={"active": False}, headers=ADMIN)

    def get(**params):
        response = http_get(url, params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        return response.json()

    pages, cursor = [], None
    while True:
        page = get(limit=10, **({"cursor": cursor} if cursor else {}))
        pages.append(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 6]  # 23 creates, 1 revoke, 2 users
    everything = [e for p in pages for e in p]
    assert [e["action"] for e in everything] == ["key.revoke", *["key.create"] * 23, "user.create", "user.create"]
    assert [e["target"]["id"] for e in everything[1:24]] == ids[::-1]
    assert [e["time"] for e in everything] == sorted((e["time"] for e in everything), reverse=True)
    assert get(limit=24)["next_cursor"] is not None and get(limit=26)["next_cursor"] is None

    assert [e["target"]["id"] for e in get(action="key.revoke")["events"]] == [ids[3]]
    assert len(get(action="key.*")["events"]) == 24
    assert [e["target"]["name"] for e in get(action="user.create")["events"]] == ["bob", "root"]
    assert [e["action"] for e in get(target=ids[3])["events"]] == ["key.revoke", "key.create"]
    assert get(target="bob", action="user.create")["events"][0]["target"]["name"] == "bob"
    assert len(get(since=start)["events"]) == 24  # the CLI's two users came before
    assert get(until="2000-01-01")["events"] == []
    assert len(get(until="2999-12-31", since="2000-01-01")["events"]) == 26

    root = Browser(server.url)
    root.login("root")
    login = root.http.get(url, params={"actor": "ROOT"}).json()["events"]  # an admin session reads it too
    assert [(e["action"], e["actor"], e["ip"]) for e in login] == [("user.login", "root", CLIENT_IP)]

    for params, message in (
        ({"limit": "501"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "ten"}, "limit must be a whole number from 1 to 500"),
        ({"cursor": "!!"}, "cursor is not one this server gave: use next_cursor from the previous page"),
        ({"since": "yesterday"}, "since must be a date such as 2026-12-01 or a time such as 2026-12-01T10:00:00Z"),
    ):
        response = http_get(url, params=params, headers=ADMIN)
        assert (response.status_code, response.json()) == (400, {"error": message})
    response = http_get(url, params={"action": "key.nope"}, headers=ADMIN)
    assert response.status_code == 400 and response.json()["error"].startswith("action must be one of key.create")

    bob = Browser(server.url)
    bob.login("bob")
    dashboard_key = http_post(f"{server.url}/api/keys", json={"name": "mine", "user": "root"}, headers=ADMIN)
    refused = "The audit log needs an admin session or the admin key"
    for response in (
        bob.http.get(url),
        http_get(url, headers={"x-api-key": CLIENT_KEY}),
        http_get(url, headers={"x-api-key": dashboard_key.json()["key"]}),  # even an admin's key
    ):
        assert (response.status_code, response.json()) == (403, {"error": refused})
    assert http_get(url).status_code == 401


def test_cli_audit_list(app, workspaces):
    with app.app_context():
        accounts.create_user(accounts.Actor.operator(), "root", PASSWORD, admin=True)
        accounts.sign_in("root", PASSWORD, "10.1.2.3")
    result = run_cli(workspaces, "audit", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[1:5] for line in lines] == [
        ["user.login", "root", "10.1.2.3", "user:root"],
        ["user.create", "(cli)", "-", "user:root"],
    ]
    result = run_cli(workspaces, "audit", "list", "--action", "user.create", "--json")
    assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == ["user.create"]
    result = run_cli(workspaces, "audit", "list", "--since", "2000-01-01", "--limit", "1")
    assert len(result.stdout.splitlines()) == 1 and result.stderr.startswith("More: --cursor ")
    result = run_cli(workspaces, "audit", "list", "--since", "soon")
    assert (result.returncode, result.stderr) == (
        1,
        "Error: since must be a date such as 2026-12-01 or a time such as 2026-12-01T10:00:00Z\n",
    )


# -- the admin page -------------------------------------------------------------------------------------------------
def test_admin_audit_page_filters_pages_and_is_for_admins_only(app, client, auth, workspaces):
    with app.app_context():
        operator = accounts.Actor.operator()
        accounts.create_user(operator, "root", PASSWORD, admin=True)
        accounts.create_user(operator, "bob", PASSWORD)
        for n in range(3):
            accounts.create_key_for(operator, "bob", f"k{n}<b>", None)
    auth.login("bob")
    assert client.get("/admin/audit").status_code == 403
    client.post("/logout", data={"csrf_token": auth.csrf()})
    auth.login("root")
    page = client.get("/admin/audit")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'aria-current="page">Audit log</a>' in html
    assert html.count('<td data-label="Action"><code>') == 8  # 2 users, 3 keys, bob in and out, root in
    assert "k2&lt;b&gt;" in html and "k2<b>" not in html  # names are escaped
    assert '<td data-label="Address"><code>127.0.0.1</code></td>' in html  # root's sign-in, from the test client
    html = client.get("/admin/audit", query_string={"action": "key.create", "limit": "2"}).get_data(as_text=True)
    assert html.count("<code>key.create</code>") == 2 and 'rel="next"' in html
    older = html.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    assert "action=key.create" in older and "limit=2" in older
    html = client.get(older).get_data(as_text=True)
    assert html.count("<code>key.create</code>") == 1 and 'rel="next"' not in html and ">Newest</a>" in html
    assert "k0&lt;b&gt;" in html
    bad = client.get("/admin/audit", query_string={"since": "last week"})
    assert bad.status_code == 400
    assert "since must be a date such as 2026-12-01" in bad.get_data(as_text=True)
    empty = client.get("/admin/audit", query_string={"actor": "nobody"}).get_data(as_text=True)
    assert "No events match these filters." in empty


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUDIT_MAX_BYTES": "10"}, "AUDIT_MAX_BYTES must be at least 4096, got 10"),
        ({"AUDIT_MAX_BYTES": "10MB"}, "AUDIT_MAX_BYTES must be a whole number, got '10MB'"),
        ({"AUDIT_MAX_EVENTS": "5"}, "AUDIT_MAX_EVENTS must be at least 100, got 5"),
    ],
)
def test_audit_settings_are_checked_at_start(workspaces, env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(base_env(workspaces, **env))
    assert str(caught.value) == message


def test_audit_settings_defaults(workspaces):
    config = load_config(base_env(workspaces))
    assert (config.audit_max_bytes, config.audit_max_events) == (10 * 1024 * 1024, 100_000)


def test_an_event_is_taken_out_again_when_the_change_cannot_be_saved(app, workspaces, monkeypatch, redis_db):
    from app.documents import StoreWriteError, sharedfile

    with app.app_context():
        accounts.create_user(accounts.Actor.operator(), "root", PASSWORD, admin=True)
        before = (workspaces / "audit.log").read_bytes()

        def refuse(path, payload):
            raise StoreWriteError("Could not save api-keys.json: the disk is full. Nothing was changed.")

        monkeypatch.setattr(sharedfile, "atomic_write", refuse)
        with pytest.raises(StoreWriteError):
            accounts.create_key_for(accounts.Actor.operator(), "root", "ci", None)
    assert (workspaces / "audit.log").read_bytes() == before
    monkeypatch.undo()
    with app.app_context():  # and the log takes the next event as usual
        accounts.create_key_for(accounts.Actor.operator(), "root", "ci", None)
    assert [e["action"] for e in log_events(workspaces)] == ["user.create", "key.create"]

    import redis

    stream = audit.RedisAuditLog(redis.Redis.from_url(redis_db), 1000)
    kept, finish = stream.begin(_event(1))
    finish(True)
    _, finish = stream.begin(_event(2))
    finish(False)
    assert [e["id"] for e in stream.read(audit.make_query()).events] == [kept["id"]]


def test_a_full_disk_refuses_with_507_as_the_stores_do(client, auth, monkeypatch, workspaces):
    import errno

    auth.create_user("root", admin=True)
    stores = _bytes(workspaces / "api-keys.json")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "fsync", disk_full)
    response = client.post("/api/keys", json={"user": "root", "name": "ci"}, headers={"x-api-key": ADMIN_KEY})
    assert (response.status_code, response.get_json()) == (
        507,
        {"error": "Audit log unavailable: the disk is full. Nothing was changed."},
    )
    assert _bytes(workspaces / "api-keys.json") == stores


def test_names_no_encoding_can_hold_are_logged_escaped_and_found(app, workspaces):
    """A name from an old store may hold a lone surrogate: the event still is one ASCII line, and a filter finds it."""
    operator = accounts.Actor.operator()
    with app.app_context():
        log = app.extensions["askgate"].audit
        event = _event(1)
        event["target"]["name"] = "evil\ud800na\u202eme"
        log.record(event)
        found = accounts.audit_page(operator, audit.make_query(target="evil\ud800na\u202eme")).events
    assert [e["target"]["name"] for e in found] == ["evil\ud800na\u202eme"]
    assert "\\ud800" in (workspaces / "audit.log").read_text(encoding="ascii")
