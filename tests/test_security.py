"""The security suite: brute force, session fixation, cookie flags, escaping, where a raw key may never be,
and constant-time comparison of the environment's keys."""

from __future__ import annotations

import dataclasses
import hmac
import re
from pathlib import Path

import pytest
import requests
from flask.sessions import SecureCookieSessionInterface

from app.auth import principal
from app.keys.format import ALPHABET
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, CLIENT_KEY, CSRF_RE, PASSWORD, AuthActions, base_env

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{49}")
SCRIPT_NAME = '<script>alert("key")</script>'
ATTRIBUTE_NAME = '"><img src=x onerror=alert(1)>'
SECRET_KEY = base_env(Path("unused"))["SECRET_KEY"]  # what every test server signs its cookies with


def near_miss(key: str) -> str:
    """The key with its last character changed: a wrong key that is as close as it gets."""
    last = key[-1]
    return key[:-1] + ("b" if last == "a" else "a")


def secret_part(key: str) -> str:
    """What must never be shown again: everything after the display prefix."""
    return key[12:]


# -- login brute force, session fixation and cookie flags on a real server -----------------------------------
def _login_form(http: requests.Session, base: str) -> str:
    return CSRF_RE.search(http.get(base + "/login", timeout=10).text).group(1)


def _post_login(http: requests.Session, base: str, password: str, token: str, **kwargs) -> requests.Response:
    data = {"username": "alice", "password": password, "csrf_token": token}
    return http.post(base + "/login", data=data, allow_redirects=False, timeout=10, **kwargs)


@pytest.mark.server
def test_login_brute_force_is_throttled_even_for_the_right_password(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(LOGIN_RATE_LIMIT="5/minute")
    http = requests.Session()
    token = _login_form(http, server.url)

    guesses = [_post_login(http, server.url, f"guess number {n}", token) for n in range(12)]
    right = _post_login(http, server.url, PASSWORD, token)

    assert [r.status_code for r in guesses] == [200] * 5 + [429] * 7
    assert "Wrong username or password" in guesses[0].text
    assert "Too many attempts" in guesses[-1].text
    assert 1 <= int(guesses[-1].headers["Retry-After"]) <= 60
    assert right.status_code == 429
    assert http.get(server.url + "/api/whoami", timeout=10).status_code == 401


def _session_data(cookie: str) -> dict:
    """Decode a Flask session cookie the way the server does (the tests know the SECRET_KEY)."""
    from flask import Flask

    app = Flask("decoder")
    app.secret_key = SECRET_KEY
    return SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)


def _forge_session(data: dict) -> str:
    from flask import Flask

    app = Flask("forger")
    app.secret_key = SECRET_KEY
    return SecureCookieSessionInterface().get_signing_serializer(app).dumps(data)


def _set_cookie_of(response: requests.Response, name: str = "session") -> str:
    headers = response.raw.headers.getlist("Set-Cookie")
    found = [h for h in headers if h.startswith(name + "=")]
    assert len(found) == 1, headers
    return found[0]


@pytest.mark.server
def test_a_fixed_session_cookie_does_not_survive_login(live_server, workspaces):
    """An attacker plants a session cookie (carrying data and a CSRF token they know) in the victim's browser."""
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(SESSION_COOKIE_SECURE="true")
    fixed = _forge_session({"planted": "by the attacker", "csrf_token": "0" * 40, "_user_id": "usr_forged:1"})
    victim = {"Cookie": f"session={fixed}"}

    page = requests.get(server.url + "/login", headers=victim, timeout=10)
    token = CSRF_RE.search(page.text).group(1)
    login = requests.post(
        server.url + "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        headers=victim,
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302
    renewed = _set_cookie_of(login).split(";", 1)[0].split("=", 1)[1]
    data = _session_data(renewed)

    assert renewed != fixed
    assert "planted" not in data
    assert data.get("csrf_token") != "0" * 40
    assert data["_user_id"] == UserStore(workspaces).get("alice").get_id()
    attacker = requests.get(server.url + "/api/whoami", headers=victim, timeout=10)
    assert attacker.json() == {"error": "API key required"}
    me = requests.get(server.url + "/api/whoami", headers={"Cookie": f"session={renewed}"}, timeout=10)
    assert (me.json()["auth_method"], me.json()["user"]) == ("session", "alice")


@pytest.mark.server
@pytest.mark.parametrize(("setting", "secure"), [("true", True), ("false", False)])
def test_session_cookie_secure_is_honoured_from_the_environment(live_server, workspaces, setting, secure):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server(SESSION_COOKIE_SECURE=setting)
    page = requests.get(server.url + "/login", timeout=10)
    cookie = _set_cookie_of(page)
    token = CSRF_RE.search(page.text).group(1)
    login = requests.post(
        server.url + "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": cookie.split(";", 1)[0]},  # sent by hand: requests keeps Secure cookies off http
        allow_redirects=False,
        timeout=10,
    )

    assert login.status_code == 302
    for set_cookie in (cookie, _set_cookie_of(login)):
        attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
        assert ("secure" in attributes) is secure
        assert {"httponly", "samesite=lax"} <= attributes


# -- escaping ---------------------------------------------------------------------------------------------------
def _key_form(client, name: str) -> dict:
    """The Account Security form as a browser would submit it."""
    page = client.get("/account/security").get_data(as_text=True)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    return {"name": name, "expiry": "never", "csrf_token": CSRF_RE.search(page).group(1), "nonce": nonce}


def _create_key_through_the_page(client, auth, name: str):
    return client.post("/account/security", data=_key_form(client, name))


@pytest.mark.parametrize("name", [SCRIPT_NAME, ATTRIBUTE_NAME, "it's & <b>bold</b>"])
def test_key_names_render_escaped_on_account_security_and_the_dashboard(client, auth, name):
    auth.create_user("alice", admin=True)
    auth.create_user("bob")
    auth.new_key("bob", name)  # an admin also sees everyone else's keys
    auth.login()

    created = _create_key_through_the_page(client, auth, name)
    pages = {
        "created": created.get_data(as_text=True),
        "security": client.get("/account/security").get_data(as_text=True),
        "dashboard": client.get("/dashboard").get_data(as_text=True),
    }

    assert created.status_code == 200
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
    escaped = escaped.replace("'", "&#39;")
    for where, html in pages.items():
        assert name not in html, where
        assert escaped in html, where
    assert pages["security"].count(escaped) >= 2 * 2  # own and bob's row: the cell, the confirm text, the label


def _seed_hostile_workspace(root: Path) -> None:
    folder = root / "hostile"
    folder.mkdir()
    (folder / "steal.py").write_text(
        "def steal_cookies(document):\n"
        '    """<script>alert(\'doc\')</script> Steals cookies from the document."""\n'
        "    return \"<img src=x onerror=alert('code')>\" + document.cookie\n"
    )
    (folder / "<svg onload=alert(1)>.py").write_text(
        'def steal_cookies_too():\n    """Steals cookies as well."""\n    return "</code><script>alert(2)</script>"\n'
    )


def test_workspace_files_with_html_and_js_render_escaped_in_the_ask_fragment(app, client, auth, workspaces):
    _seed_hostile_workspace(workspaces)
    auth.create_user("alice")
    auth.login()
    question = "steal cookies <script>alert('question')</script>"

    response = client.post(
        "/api/ask",
        json={"workspaceId": "hostile", "question": question},
        headers={"X-CSRFToken": auth.csrf(), "Accept": "text/html"},
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert {"steal.py", "&lt;svg onload=alert(1)&gt;.py"} <= set(re.findall(r'class="source-path">([^<]*)<', html))
    for raw in ("<script>", "<img src=x", "<svg onload", "</code><script>", "alert('question')"):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(&#39;doc&#39;)&lt;/script&gt;" in html  # the answer text quotes the docstring
    assert "&lt;img src=x onerror=alert(" in html  # the highlighted source
    assert "\\u003cscript\\u003e" in html  # the question in the curl example, as JSON


# -- the raw key: shown once, then nowhere ----------------------------------------------------------------------
def _get_pages(app) -> list[str]:
    """Every page a signed-in user can GET: the rules without arguments, except static files and logout."""
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "static"
    )


def test_the_raw_key_is_shown_once_then_on_no_page(app, client, auth):
    auth.create_user("alice", admin=True)
    auth.login()

    form = _key_form(client, "shown once")
    created = client.post("/account/security", data=form)
    html = created.get_data(as_text=True)
    key = KEY_RE.search(html).group(0)
    assert html.count(key) == 1
    assert created.headers["Cache-Control"] == "no-store"

    pages = _get_pages(app)
    assert {"/dashboard", "/account/security", "/ask", "/admin/users", "/api/keys", "/api/whoami"} <= set(pages)
    for path in pages:
        body = client.get(path, follow_redirects=True).get_data(as_text=True)
        assert secret_part(key) not in body, path
    resubmitted = client.post("/account/security", data=form, follow_redirects=True)  # reload or back button
    assert "cannot be shown again" in resubmitted.get_data(as_text=True)
    assert secret_part(key) not in resubmitted.get_data(as_text=True)


@pytest.mark.server
def test_the_raw_key_is_absent_from_the_server_log_and_the_files(live_server, workspaces):
    UserStore(workspaces).create("alice", PASSWORD, "member")
    server = live_server()
    http = requests.Session()
    token = _login_form(http, server.url)
    assert _post_login(http, server.url, PASSWORD, token).status_code == 302
    page = http.get(server.url + "/account/security", timeout=10).text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)
    created = http.post(
        server.url + "/account/security",
        data={"name": "logged?", "expiry": "30", "csrf_token": CSRF_RE.search(page).group(1), "nonce": nonce},
        timeout=10,
    )
    page_key = KEY_RE.search(created.text).group(0)
    api_key = requests.post(
        server.url + "/api/keys",
        json={"name": "via api", "user": "alice"},
        headers={"x-api-key": ADMIN_KEY},
        timeout=10,
    ).json()

    calls = [
        {"x-api-key": page_key},
        {"Authorization": f"Bearer {api_key['key']}"},
        {"x-api-key": near_miss(page_key)},
        {"Authorization": f"Bearer {near_miss(api_key['key'])}"},
        {"x-api-key": page_key + "-and-more"},
        {"x-api-key": near_miss(ADMIN_KEY)},
        {"x-api-key": CLIENT_KEY},
    ]
    statuses = [requests.get(server.url + "/api/whoami", headers=h, timeout=10).status_code for h in calls]
    requests.patch(
        server.url + f"/api/keys/{api_key['id']}",
        json={"active": False},
        headers={"x-api-key": ADMIN_KEY},
        timeout=10,
    )
    revoked = requests.get(server.url + "/api/whoami", headers={"x-api-key": api_key["key"]}, timeout=10)

    assert statuses == [200, 200, 401, 401, 401, 401, 200]
    assert revoked.status_code == 401
    log = server.log()
    assert f'"key_prefix":"{page_key[:12]}"' in log  # the log is the access log we think it is
    assert '"outcome":"revoked"' in log
    secrets = [page_key, api_key["key"], ADMIN_KEY, CLIENT_KEY]
    for secret in [*secrets, near_miss(page_key), near_miss(api_key["key"]), near_miss(ADMIN_KEY)]:
        assert secret_part(secret) not in log
    for path in workspaces.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret_part(s).encode() in content for s in secrets), path


# -- the rate limiter's storage ----------------------------------------------------------------------------------
def _exercise_every_bucket(app) -> dict:
    """Requests that make the limiter count per dashboard key, per env key, per session, and per failing IP."""
    client = app.test_client()
    auth = AuthActions(app, client)
    auth.create_user("alice")
    key = auth.new_key("alice", "limited")
    for headers in (
        {"x-api-key": key},
        {"Authorization": f"Bearer {key}"},
        {"x-api-key": ADMIN_KEY},
        {"x-api-key": CLIENT_KEY},
        {"x-api-key": near_miss(key)},
        {"x-api-key": near_miss(ADMIN_KEY)},
    ):
        client.get("/api/whoami", headers=headers)
    auth.login(password="not the password")
    auth.login()
    client.get("/api/whoami")
    record = app.extensions["askgate"].keys.lookup(key)
    return {"key": key, "key_id": record["id"]}


def _assert_no_secret(stored: list[str], created: dict) -> None:
    text = "\n".join(stored)
    assert f"key:{created['key_id']}" in text  # the dashboard key's bucket is named by its id
    for secret in (created["key"], ADMIN_KEY, CLIENT_KEY, near_miss(created["key"]), near_miss(ADMIN_KEY)):
        assert secret_part(secret) not in text


def test_the_in_memory_limiter_storage_never_holds_a_key(make_app):
    from app.extensions import limiter

    app = make_app()
    created = _exercise_every_bucket(app)

    storage = limiter.storage  # flask-limiter's (the sign-in limits)
    assert type(storage).__name__ == "MemoryStorage"
    stored = [str(name) for table in (storage.storage, storage.expirations, storage.events) for name in table]
    stored += [repr(value) for value in storage.storage.values()]
    stored += app.extensions["askgate"].limits.local.keys()  # the API's own counters on memory://
    _assert_no_secret(stored, created)


@pytest.mark.redis
def test_the_redis_limiter_storage_never_holds_a_key(make_app, redis_db):
    import redis

    app = make_app(RATELIMIT_STORAGE_URI=redis_db)
    created = _exercise_every_bucket(app)

    db = redis.Redis.from_url(redis_db, decode_responses=True)
    stored = []
    for name in db.scan_iter("*"):
        stored.append(name)
        kind = db.type(name)
        if kind == "string":
            stored.append(db.get(name))
        elif kind == "list":
            stored.extend(db.lrange(name, 0, -1))
        elif kind == "zset":
            stored.extend(db.zrange(name, 0, -1))
        elif kind == "hash":
            stored.extend(f"{k}={v}" for k, v in db.hgetall(name).items())
    assert any("askgate" in name for name in stored)
    _assert_no_secret(stored, created)


# -- constant-time comparison of the environment's keys ---------------------------------------------------------
class NoEquality(bytes):
    """An env key that refuses ``==``: only ``hmac.compare_digest`` (which reads the bytes) may compare it."""

    compared_with_eq: list = []

    def __eq__(self, other):
        NoEquality.compared_with_eq.append(other)
        return bytes.__eq__(self, other)

    def __ne__(self, other):
        NoEquality.compared_with_eq.append(other)
        return bytes.__ne__(self, other)

    __hash__ = bytes.__hash__


@pytest.fixture
def spied_env_keys(app, monkeypatch):
    """Swap the env keys for ``NoEquality`` ones and record every ``hmac.compare_digest`` call."""
    services = app.extensions["askgate"]
    guarded = tuple((NoEquality(secret), method, bucket) for secret, method, bucket in services.env_keys)
    app.extensions["askgate"] = dataclasses.replace(services, env_keys=guarded)
    NoEquality.compared_with_eq = []
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(principal.hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize(
    ("presented", "status"),
    [
        ("wrong", 401),
        (near_miss(ADMIN_KEY), 401),
        (near_miss(CLIENT_KEY), 401),
        (ADMIN_KEY[:-1], 401),
        (ADMIN_KEY, 200),  # a match still compares against every env key: no early exit to time
        (CLIENT_KEY, 200),
        ("agk_" + ALPHABET[:49], 401),  # key-shaped: fails the checksum, then the env keys are still compared
    ],
)
def test_every_env_key_is_compared_with_compare_digest_and_never_with_eq(client, spied_env_keys, presented, status):
    response = client.get("/api/whoami", headers={"x-api-key": presented})

    assert response.status_code == status
    assert spied_env_keys == [(presented.encode(), ADMIN_KEY.encode()), (presented.encode(), CLIENT_KEY.encode())]
    assert NoEquality.compared_with_eq == []
