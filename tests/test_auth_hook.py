"""The /api request hook: who a request is (first match wins), the allowlist, limits, CSRF and the log line."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from app.config import parse_allowed_ips
from app.ipallow import IPAllowlist
from app.keys.format import generate_key
from app.keys.store import KeyStore, iso, utcnow
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD

INVALID = {"error": "Invalid API key"}
REQUIRED = {"error": "API key required"}
IP_DENIED = {"error": "Access denied from this IP address"}
LIMITED = {"error": "Rate limit exceeded"}
STORE_DOWN = {"error": "Key store unavailable"}
CSRF_REFUSED = {"error": "CSRF token missing or invalid: send the page's csrf-token in the X-CSRFToken header"}


def xkey(key: str) -> dict:
    return {"x-api-key": key}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def typo(key: str) -> str:
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def whoami(client, headers: dict | None = None, ip: str = "127.0.0.1"):
    return client.get("/api/whoami", headers=headers or {}, environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def access_log(app) -> list[dict]:
    """Parsed JSON lines of the access log (after the app configured it)."""
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(record.getMessage()))

    handler = Collect()
    logger = logging.getLogger("askgate.access")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


# -- who the request is ------------------------------------------------------------------------------------
def test_whoami_for_each_kind_of_caller(app, client, auth):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "script", 30)
    record = new.record
    shown = ("id", "name", "prefix", "created_at", "expires_at", "scopes", "workspaces", "rate_limit", "allowed_ips")
    expected_key = {name: record[name] for name in shown}
    assert expected_key["scopes"] == ["ask", "workspaces:read"]
    dashboard = {"auth_method": "dashboard_key", "user": "alice", "role": "member", "key": expected_key}

    for headers in (xkey(new.key), bearer(new.key), {"Authorization": f"bearer   {new.key}  "}):
        response = whoami(client, headers)
        assert response.status_code == 200
        assert response.get_json() == dashboard
    assert whoami(client, xkey(ADMIN_KEY)).get_json() == {
        "auth_method": "admin_key",
        "user": None,
        "role": "admin",
        "key": None,
    }
    assert whoami(client, bearer(CLIENT_KEY)).get_json() == {
        "auth_method": "client_key",
        "user": None,
        "role": "client",
        "key": None,
    }
    auth.login()
    assert whoami(client).get_json() == {"auth_method": "session", "user": "alice", "role": "member", "key": None}


def test_a_dashboard_key_of_an_admin_has_the_admin_role(client, auth):
    auth.create_user("root", admin=True)
    key = auth.new_key("root")
    body = whoami(client, xkey(key)).get_json()
    assert (body["auth_method"], body["user"], body["role"]) == ("dashboard_key", "root", "admin")


def test_a_session_wins_over_any_key(client, auth):
    auth.create_user("alice")
    auth.create_user("bob")
    bobs_key = auth.new_key("bob")
    auth.login("alice")
    for headers in (xkey(bobs_key), xkey(ADMIN_KEY), xkey(CLIENT_KEY), xkey("wrong"), bearer(typo(bobs_key))):
        response = whoami(client, headers)
        assert response.status_code == 200
        assert response.get_json()["auth_method"] == "session"
        assert response.get_json()["user"] == "alice"


def test_a_dashboard_key_wins_over_env_keys_of_the_same_value(make_app, workspaces):
    UserStore(workspaces).create("alice", PASSWORD)
    key = KeyStore(workspaces).create("alice", "k").key
    client = make_app(ADMIN_API_KEY=key, VALID_API_KEYS=key).test_client()
    assert whoami(client, xkey(key)).get_json()["auth_method"] == "dashboard_key"


def test_the_admin_key_wins_over_a_client_key_of_the_same_value(make_app):
    shared = "shared-key-" + "s" * 32
    client = make_app(ADMIN_API_KEY=shared, VALID_API_KEYS=f"other-{'o' * 32},{shared}").test_client()
    assert whoami(client, xkey(shared)).get_json()["auth_method"] == "admin_key"
    assert whoami(client, xkey(f"other-{'o' * 32}")).get_json()["auth_method"] == "client_key"


def test_every_configured_client_key_works_and_near_misses_do_not(make_app):
    client = make_app(VALID_API_KEYS="first-" + "1" * 32 + ",second-" + "2" * 32).test_client()
    assert whoami(client, xkey("first-" + "1" * 32)).status_code == 200
    assert whoami(client, xkey("second-" + "2" * 32)).status_code == 200
    for near in ("first-" + "1" * 31, "first-" + "1" * 33, "FIRST-" + "1" * 32, ADMIN_KEY[:-1]):
        response = whoami(client, xkey(near))
        assert (response.status_code, response.get_json()) == (401, INVALID)


# -- refusals --------------------------------------------------------------------------------------------------
def test_no_credentials(client):
    for headers in ({}, {"x-api-key": "   "}):
        response = whoami(client, headers)
        assert response.status_code == 401
        assert response.get_json() == REQUIRED
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        xkey("not-a-key"),
        xkey(generate_key()),  # well formed, unknown
        bearer("x" * 2000),
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
        {"Authorization": ADMIN_KEY},  # no scheme
    ],
)
def test_wrong_credentials(client, headers):
    response = whoami(client, headers)
    assert response.status_code == 401
    assert response.get_json() == INVALID
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_bare_dashboard_key_in_authorization_is_accepted(client, auth):
    auth.create_user("alice")
    key = auth.new_key("alice")
    for value in (key, f" {key}\t"):
        response = whoami(client, {"Authorization": value})
        assert response.status_code == 200
        assert response.get_json()["auth_method"] == "dashboard_key"
    # Only a well-formed agk_ key goes without a scheme: a checksum typo, a key with more after it, an unknown
    # well-formed key and anything else stay "Invalid API key".
    for value in (typo(key), f"{key} x", f"{key}x", key[:-1], generate_key(), "agk_", ADMIN_KEY, CLIENT_KEY):
        response = whoami(client, {"Authorization": value})
        assert (response.status_code, response.get_json()) == (401, INVALID), value
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_mistyped_dashboard_key_is_refused(client, auth):
    auth.create_user("alice")
    key = auth.new_key("alice")
    response = whoami(client, xkey(typo(key)))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_revoked_and_expired_keys_are_refused(client, auth):
    auth.create_user("alice")
    keys = auth.services.keys
    revoked = keys.create("alice", "revoked")
    expired = keys.create("alice", "expired", 30)
    fine = keys.create("alice", "fine", 30)
    keys.revoke(revoked.record["id"])

    def expire(data):
        for record in data["keys"]:
            if record["id"] == expired.record["id"]:
                record["expires_at"] = iso(utcnow())

    keys.file.update(expire)
    for key in (revoked.key, expired.key):
        response = whoami(client, xkey(key))
        assert (response.status_code, response.get_json()) == (401, INVALID)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert whoami(client, xkey(fine.key)).status_code == 200


def test_keys_of_disabled_and_deleted_users_are_refused(client, auth):
    auth.create_user("alice")
    auth.create_user("bob")
    alices, bobs = auth.new_key("alice"), auth.new_key("bob")
    assert whoami(client, xkey(alices)).status_code == 200
    auth.services.users.set_disabled("alice", True)  # without revoking: the owner check alone refuses
    response = whoami(client, xkey(alices))
    assert (response.status_code, response.get_json()) == (401, INVALID)

    def delete_bob(data):
        data["users"] = [u for u in data["users"] if u["username"] != "bob"]

    auth.services.users.file.update(delete_bob)
    response = whoami(client, xkey(bobs))
    assert (response.status_code, response.get_json()) == (401, INVALID)


def test_a_revocation_is_refused_on_the_very_next_request(client, auth, workspaces):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "k")
    assert whoami(client, xkey(new.key)).status_code == 200
    KeyStore(workspaces).revoke(new.record["id"])  # as another process would
    assert whoami(client, xkey(new.key)).status_code == 401


def test_health_needs_no_key(client):
    response = client.get("/api/health")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


# -- the corrupt key store ------------------------------------------------------------------------------------
def test_a_corrupt_key_store_fails_closed_but_env_keys_still_work(client, auth, caplog):
    auth.create_user("alice")
    key = auth.new_key("alice")
    path = auth.services.keys.file.path
    path.write_text('{"version": 1, "keys": [')
    before = path.read_bytes()

    with caplog.at_level(logging.ERROR):
        response = whoami(client, xkey(key))
    assert (response.status_code, response.get_json()) == (503, STORE_DOWN)
    assert any(str(path) in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert whoami(client, xkey(generate_key())).status_code == 503
    # A typo is refused by its checksum, without a lookup: 401, not 503.
    assert (whoami(client, xkey(typo(key))).status_code, whoami(client, xkey(typo(key))).get_json()) == (401, INVALID)
    assert whoami(client, xkey(ADMIN_KEY)).status_code == 200
    assert whoami(client, xkey(CLIENT_KEY)).status_code == 200

    response = client.post("/api/keys", json={"name": "new", "user": "alice"}, headers=xkey(ADMIN_KEY))
    assert (response.status_code, response.get_json()) == (503, STORE_DOWN)
    assert path.read_bytes() == before
    assert not any(key in r.getMessage() for r in caplog.records)


def test_a_corrupt_users_file_refuses_dashboard_keys(client, auth):
    auth.create_user("alice")
    key = auth.new_key("alice")
    auth.services.users.file.path.write_text("{")
    response = whoami(client, xkey(key))
    assert (response.status_code, response.get_json()) == (503, STORE_DOWN)
    assert whoami(client, xkey(ADMIN_KEY)).status_code == 200


# -- the IP allowlist -------------------------------------------------------------------------------------------
ALLOWLIST = "10.0.0.0/8, 203.0.113.7, 2001:db8::/32"


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        ("10.0.0.1", True),
        ("10.255.255.255", True),
        ("11.0.0.1", False),
        ("203.0.113.7", True),
        ("203.0.113.8", False),
        ("2001:db8::1", True),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped IPv6 counts as the IPv4 address
        ("::1", False),
        ("127.0.0.1", False),
    ],
)
def test_allowlist_cidr_and_ipv6(make_app, ip, allowed):
    client = make_app(ALLOWED_IPS=ALLOWLIST).test_client()
    response = whoami(client, xkey(ADMIN_KEY), ip=ip)
    if allowed:
        assert response.status_code == 200
    else:
        assert (response.status_code, response.get_json()) == (403, IP_DENIED)


def test_the_allowlist_is_decided_before_the_key_is_looked_at(make_app, workspaces):
    client = make_app(ALLOWED_IPS="10.0.0.0/8").test_client()
    outside = "192.0.2.1"
    for headers in (xkey("wrong"), xkey(generate_key()), xkey(ADMIN_KEY)):
        response = whoami(client, headers, ip=outside)
        assert (response.status_code, response.get_json()) == (403, IP_DENIED)
    (workspaces / "api-keys.json").write_text("{corrupt")
    response = whoami(client, xkey(generate_key()), ip=outside)
    assert (response.status_code, response.get_json()) == (403, IP_DENIED)  # not 503: no lookup happened
    assert whoami(client, xkey(generate_key()), ip="10.0.0.1").status_code == 503


def test_sessions_are_not_ip_restricted(make_app):
    app = make_app(ALLOWED_IPS="10.0.0.0/8")
    client = app.test_client()
    app.extensions["askgate"].users.create("alice", PASSWORD)
    from tests.conftest import AuthActions

    AuthActions(app, client).login()
    response = whoami(client, ip="192.0.2.1")
    assert (response.status_code, response.get_json()["auth_method"]) == (200, "session")


def test_a_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy(make_app):
    client = make_app(ALLOWED_IPS="10.0.0.0/8").test_client()
    for forwarded in ("10.0.0.1", "10.0.0.1, 10.0.0.2"):
        response = client.get(
            "/api/whoami",
            headers={**xkey(ADMIN_KEY), "X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "192.0.2.1"},
        )
        assert (response.status_code, response.get_json()) == (403, IP_DENIED)


def test_with_one_trusted_proxy_only_the_hop_it_added_counts(make_app, access_log):
    client = make_app(ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXY_COUNT="1").test_client()

    def via_proxy(forwarded: str | None):
        headers = xkey(ADMIN_KEY)
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        return client.get("/api/whoami", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})

    assert via_proxy("10.1.2.3").status_code == 200
    assert access_log[-1]["ip"] == "10.1.2.3"
    # The client sent "10.0.0.1" itself; the proxy appended the address it really saw.
    response = via_proxy("10.0.0.1, 192.0.2.1")
    assert (response.status_code, response.get_json()) == (403, IP_DENIED)
    assert access_log[-1]["ip"] == "192.0.2.1"
    assert via_proxy(None).status_code == 403  # no header: the socket peer (the proxy) is not allowed


def test_allowlist_unit():
    allow = IPAllowlist(parse_allowed_ips("10.0.0.0/8,192.168.1.0/24,2001:db8::/48,fe80::1"))
    assert allow.allowed("10.1.1.1")
    assert allow.allowed("192.168.1.255")
    assert not allow.allowed("192.168.2.1")
    assert allow.allowed("2001:db8:0:ffff::1")
    assert not allow.allowed("2001:db8:1::1")
    assert allow.allowed("fe80::1%eth0")
    assert not allow.allowed("fe80::2")
    for junk in (None, "", "not-an-ip", "10.0.0.256"):
        assert not allow.allowed(junk)
    everyone = IPAllowlist(None)
    assert everyone.allowed("198.51.100.1") and everyone.allowed(None)
    assert IPAllowlist(parse_allowed_ips("0.0.0.0/0")).allowed("198.51.100.1")
    assert not IPAllowlist(parse_allowed_ips("0.0.0.0/0")).allowed("2001:db8::1")


# -- rate limits ------------------------------------------------------------------------------------------------
def _assert_limit_headers(response, limit: int, remaining: int) -> None:
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3600 + 1


def test_api_rate_limit_per_dashboard_key_with_headers(make_app):
    app = make_app(API_RATE_LIMIT="3")
    client = app.test_client()
    svc = app.extensions["askgate"]
    svc.users.create("alice", PASSWORD)
    first, second = svc.keys.create("alice", "one").key, svc.keys.create("alice", "two").key

    for remaining in (2, 1, 0):
        response = whoami(client, xkey(first))
        assert response.status_code == 200
        _assert_limit_headers(response, 3, remaining)
        assert "Retry-After" not in response.headers
    response = whoami(client, xkey(first))
    assert (response.status_code, response.get_json()) == (429, LIMITED)
    _assert_limit_headers(response, 3, 0)
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    response = client.post("/api/ask", json={"workspaceId": "x", "question": "q"}, headers=xkey(first))
    assert response.status_code == 429  # one bucket for the whole API

    # Other keys of the same user, env keys: their own buckets.
    response = whoami(client, bearer(second))
    assert response.status_code == 200
    _assert_limit_headers(response, 3, 2)
    assert whoami(client, xkey(ADMIN_KEY)).status_code == 200
    assert whoami(client, xkey(CLIENT_KEY)).status_code == 200
    assert client.get("/api/health").status_code == 200


def test_api_rate_limit_per_env_key(make_app):
    other = "other-client-" + "o" * 32
    client = make_app(API_RATE_LIMIT="2", VALID_API_KEYS=f"{CLIENT_KEY},{other}").test_client()
    for key in (ADMIN_KEY, CLIENT_KEY):
        assert [whoami(client, xkey(key)).status_code for _ in range(3)] == [200, 200, 429]
    assert whoami(client, xkey(other)).status_code == 200


def test_api_rate_limit_per_session_user(make_app):
    app = make_app(API_RATE_LIMIT="2")
    users = app.extensions["askgate"].users
    users.create("alice", PASSWORD)
    users.create("bob", PASSWORD)
    from tests.conftest import AuthActions

    alice1, alice2, bob = app.test_client(), app.test_client(), app.test_client()
    for c, name in ((alice1, "alice"), (alice2, "alice"), (bob, "bob")):
        AuthActions(app, c).login(name)
    assert [whoami(alice1).status_code for _ in range(2)] == [200, 200]
    response = whoami(alice2)  # the same user in another browser shares the bucket
    assert (response.status_code, response.get_json()) == (429, LIMITED)
    assert whoami(bob).status_code == 200


def test_failed_authentication_is_limited_per_ip(make_app):
    client = make_app(AUTH_FAILURE_LIMIT="3/minute").test_client()
    attacker, neighbour = "198.51.100.7", "198.51.100.8"
    for _ in range(5):  # missing credentials are not guesses
        assert whoami(client, ip=attacker).status_code == 401
    for _ in range(3):
        response = whoami(client, xkey(generate_key()), ip=attacker)
        assert (response.status_code, response.get_json()) == (401, INVALID)
    response = whoami(client, xkey(generate_key()), ip=attacker)
    assert (response.status_code, response.get_json()) == (429, LIMITED)
    assert 0 < int(response.headers["Retry-After"]) <= 60
    # Locked out: even the right key from that address waits.
    response = whoami(client, xkey(ADMIN_KEY), ip=attacker)
    assert (response.status_code, response.get_json()) == (429, LIMITED)
    assert whoami(client, xkey(ADMIN_KEY), ip=neighbour).status_code == 200
    assert whoami(client, xkey("wrong"), ip=neighbour).status_code == 401


def test_revoked_keys_count_as_failed_attempts(make_app):
    app = make_app(AUTH_FAILURE_LIMIT="2/minute")
    svc = app.extensions["askgate"]
    svc.users.create("alice", PASSWORD)
    new = svc.keys.create("alice", "k")
    svc.keys.revoke(new.record["id"])
    client = app.test_client()
    assert [whoami(client, xkey(new.key)).status_code for _ in range(3)] == [401, 401, 429]


# -- CSRF for session writes ---------------------------------------------------------------------------------
def test_session_writes_need_the_csrf_header(client, auth):
    auth.create_user("alice")
    auth.login()
    token = auth.csrf()
    for headers in ({}, {"X-CSRFToken": "forged"}, xkey(ADMIN_KEY)):  # a key header does not exempt a session
        response = client.post("/api/keys", json={"name": "k"}, headers=headers)
        assert (response.status_code, response.get_json()) == (400, CSRF_REFUSED)
    response = client.post("/api/ask", json={"workspaceId": "none", "question": "q"})
    assert (response.status_code, response.get_json()) == (400, CSRF_REFUSED)
    assert auth.services.keys.list() == []

    created = client.post("/api/keys", json={"name": "k"}, headers={"X-CSRFToken": token})
    assert created.status_code == 201
    key_id = created.get_json()["id"]
    for method in (client.patch, client.delete):
        response = method(f"/api/keys/{key_id}", json={"active": False})
        assert (response.status_code, response.get_json()) == (400, CSRF_REFUSED)
    assert client.get("/api/keys").status_code == 200  # reads need no token
    assert client.delete(f"/api/keys/{key_id}", headers={"X-CSRFToken": token}).status_code == 204


def test_key_requests_need_no_csrf_token(client, auth):
    auth.create_user("alice")
    response = client.post("/api/keys", json={"name": "k", "user": "alice"}, headers=xkey(ADMIN_KEY))
    assert response.status_code == 201
    key = response.get_json()["key"]
    response = client.post("/api/ask", json={"workspaceId": "nowhere", "question": "q"}, headers=xkey(key))
    assert (response.status_code, response.get_json()) == (404, {"error": "Workspace not found"})


# -- last use and the log -------------------------------------------------------------------------------------
def test_last_use_shows_in_listings_without_writing_the_key_store(client, auth):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "k")
    path = auth.services.keys.file.path
    before, stat = path.read_bytes(), os.stat(path)
    generation = auth.services.keys.generation
    for _ in range(20):
        assert whoami(client, xkey(new.key)).status_code == 200
    auth.login("alice")
    listed = client.get("/api/keys").get_json()["keys"][0]
    assert listed["last_used_ip"] == "127.0.0.1"
    assert listed["last_used_at"] is not None
    assert path.read_bytes() == before
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert auth.services.keys.generation == generation  # no process's key cache was invalidated by use


def test_requests_do_not_parse_unchanged_store_files(client, auth, monkeypatch):
    import app.documents.sharedfile as sharedfile

    auth.create_user("alice")
    key = auth.new_key("alice")
    assert whoami(client, xkey(key)).status_code == 200  # warm: indexes loaded, last use written
    parsed: list[str] = []
    real_load = json.load

    def counting_load(fh, *args, **kwargs):
        parsed.append(os.path.basename(fh.name))
        return real_load(fh, *args, **kwargs)

    monkeypatch.setattr(sharedfile.json, "load", counting_load)
    for _ in range(20):
        assert whoami(client, xkey(key)).status_code == 200
    assert parsed == []
    KeyStore(auth.services.config.workspaces_dir).create("alice", "another")  # as another process would
    parsed.clear()
    for _ in range(5):
        assert whoami(client, xkey(key)).status_code == 200
    assert parsed == ["api-keys.json"]  # one reload after the change, then none


def test_each_attempt_is_one_json_log_line_without_the_key(client, auth, access_log, caplog):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "k")
    wrong = generate_key()
    with caplog.at_level(logging.DEBUG):
        whoami(client, xkey(new.key), ip="10.0.0.9")
        whoami(client, bearer(wrong))
        whoami(client, bearer(typo(new.key)))
        whoami(client)
        client.get("/api/health")
        auth.services.keys.revoke(new.record["id"])
        whoami(client, xkey(new.key))

    fields = {
        "time",
        "event",
        "ip",
        "method",
        "path",
        "status",
        "outcome",
        "auth_method",
        "user",
        "key_id",
        "key_prefix",
    }
    assert [set(line) for line in access_log] == [fields] * 5  # health is not an authentication attempt
    ok, invalid, mistyped, missing, revoked = access_log
    assert {k: v for k, v in ok.items() if k != "time"} == {
        "event": "api_auth",
        "ip": "10.0.0.9",
        "method": "GET",
        "path": "/api/whoami",
        "status": 200,
        "outcome": "ok",
        "auth_method": "dashboard_key",
        "user": "alice",
        "key_id": new.record["id"],
        "key_prefix": new.record["prefix"],
    }
    assert (invalid["outcome"], invalid["status"], invalid["auth_method"], invalid["key_id"]) == (
        "invalid",
        401,
        None,
        None,
    )
    assert (mistyped["outcome"], missing["outcome"], revoked["outcome"]) == ("invalid", "missing", "revoked")
    everything = json.dumps(access_log) + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (new.key, wrong, typo(new.key), new.key[12:], wrong[12:]):
        assert secret not in everything
