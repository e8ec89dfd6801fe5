"""Issue 12's key management through real gunicorn, on the file store and on Redis (STORE_URL, three workers):
limits set and read back through the API, who may give what, PATCH, rotation with a grace, and a version-1 key
file or document upgraded by the server on its first write.

Members manage their keys with a real signed-in session (cookie and CSRF token), admins with ADMIN_API_KEY.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import requests

from app.keys.format import digest, display_prefix, generate_key
from app.keys.store import parse_iso
from app.stores import Stores
from tests.conftest import ADMIN_KEY, CSRF_RE, PASSWORD
from tests.procnet import pin_by_worker
from tests.storeservers import answer, start

pytestmark = pytest.mark.server

ADMIN = {"x-api-key": ADMIN_KEY}
LIMITS = ("scopes", "workspaces", "rate_limit", "allowed_ips")
INVALID = {"error": "Invalid API key"}


@pytest.fixture(params=["files", pytest.param("redis", marks=pytest.mark.redis)])
def server(request, tmp_path, workspaces):
    live = start(request, tmp_path, workspaces, request.param, API_RATE_LIMIT="500")
    yield live
    live.stop()


def signed_in(server, username: str) -> requests.Session:
    """A browser-like session of ``username``: its cookie, and its CSRF token on every request."""
    http = requests.Session()
    token = CSRF_RE.search(http.get(server.url + "/login", timeout=10).text).group(1)
    done = http.post(
        server.url + "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 302, done.text
    http.headers["X-CSRFToken"] = CSRF_RE.search(http.get(server.url + "/dashboard", timeout=10).text).group(1)
    return http


def whoami(server, key: str) -> requests.Response:
    return requests.get(server.url + "/api/whoami", headers={"x-api-key": key}, timeout=10)


def limits_of(body: dict) -> dict:
    return {name: body[name] for name in LIMITS}


def test_limits_set_at_creation_read_back_everywhere(server):
    wanted = {"scopes": ["ask"], "workspaces": ["alpha"], "rate_limit": 40, "allowed_ips": ["127.0.0.1", "::1"]}
    shown = {**wanted, "allowed_ips": ["127.0.0.1/32", "::1/128"]}
    created = requests.post(
        server.url + "/api/keys", json={"name": "ci", "user": "alice", **wanted}, headers=ADMIN, timeout=10
    )
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    body = created.json()
    assert limits_of(body) == shown

    listed = requests.get(server.url + "/api/keys", headers=ADMIN, timeout=10).json()["keys"]
    assert [(k["id"], limits_of(k), k["is_active"]) for k in listed] == [(body["id"], shown, True)]
    assert body["key"] not in json.dumps(listed)
    assert limits_of(whoami(server, body["key"]).json()["key"]) == shown

    alice = signed_in(server, "alice")
    mine = alice.post(server.url + "/api/keys", json={"name": "plain"}, timeout=10).json()
    assert limits_of(mine) == {
        "scopes": ["ask", "workspaces:read"],
        "workspaces": None,
        "rate_limit": None,
        "allowed_ips": None,
    }
    assert limits_of(whoami(server, mine["key"]).json()["key"]) == limits_of(mine)
    # The key was stored as a digest with its limits, in the store the server was told to use.
    record = Stores.open(server.store, server.workspaces).keys.get(body["id"])
    assert record["digest"] == digest(body["key"]) and limits_of(record) == shown


def test_a_member_cannot_grant_workspaces_write_and_bad_values_name_their_field(server):
    alice = signed_in(server, "alice")
    refused = alice.post(server.url + "/api/keys", json={"name": "ci", "scopes": ["ask", "workspaces:write"]})
    assert answer(refused) == (403, {"error": "Only admins can give a key workspaces:write"})
    for body, error in (
        ({"scopes": ["ask", "admin"]}, "scopes: 'admin' is not a scope; choose from"),
        ({"workspaces": ["gamma"]}, "workspaces: there is no workspace 'gamma'"),
        ({"rate_limit": 501}, "rate_limit must be a whole number of requests per hour from 1 to 500,"),
        ({"rate_limit": "10"}, "rate_limit must be a whole number of requests per hour from 1 to 500,"),
        ({"allowed_ips": ["10.0.0.0/8", "999.1.1.1"]}, "allowed_ips: '999.1.1.1' is not an IP address"),
        ({"allowed_ip": ["10.0.0.0/8"]}, "Unknown field(s): allowed_ip;"),
    ):
        response = alice.post(server.url + "/api/keys", json={"name": "ci", **body}, timeout=10)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"].startswith(error)
    assert requests.get(server.url + "/api/keys", headers=ADMIN, timeout=10).json()["keys"] == []  # none minted

    granted = requests.post(
        server.url + "/api/keys",
        json={"name": "deploy", "user": "alice", "scopes": ["workspaces:write"], "rate_limit": 100_000},
        headers=ADMIN,
        timeout=10,
    )
    assert (granted.status_code, granted.json()["scopes"], granted.json()["rate_limit"]) == (
        201,
        ["workspaces:write"],
        100_000,
    )
    assert "Traceback" not in server.log()


def test_patch_changes_limits_for_every_worker_and_revokes(server):
    alice = signed_in(server, "alice")
    created = alice.post(server.url + "/api/keys", json={"name": "ci"}, timeout=10).json()
    key_id, key = created["id"], created["key"]
    pinned = pin_by_worker(server, server.workers, 1)
    conns = [conn for group in pinned.values() for conn in group]
    try:
        for conn in conns:  # every worker has the key's principal cached now
            assert conn.get("/api/whoami", {"x-api-key": key})[2]["key"]["rate_limit"] is None

        change = {"name": "narrow", "scopes": ["ask"], "workspaces": ["beta"], "rate_limit": 7}
        patched = alice.patch(server.url + f"/api/keys/{key_id}", json=change, timeout=10)
        assert patched.status_code == 200
        assert {name: patched.json()[name] for name in change} == change

        for conn in conns:
            status, _, body = conn.get("/api/whoami", {"x-api-key": key})
            assert (status, body["key"]["name"], limits_of(body["key"])) == (
                200,
                "narrow",
                {"scopes": ["ask"], "workspaces": ["beta"], "rate_limit": 7, "allowed_ips": None},
            )
        unknown = alice.patch(server.url + f"/api/keys/{key_id}", json={"rate_limit": 8, "owner": "root"})
        assert answer(unknown) == (
            400,
            {
                "error": "Unknown field(s): owner; send any of name, scopes, workspaces, rate_limit, allowed_ips, "
                "active, is_active"
            },
        )
        revoked = alice.patch(server.url + f"/api/keys/{key_id}", json={"is_active": False}, timeout=10)
        assert (revoked.status_code, revoked.json()["status"], revoked.json()["is_active"]) == (200, "revoked", False)
        for conn in conns:
            assert conn.get("/api/whoami", {"x-api-key": key})[::2] == (401, INVALID)
    finally:
        for conn in conns:
            conn.close()


def _wait_past(stamp: str) -> None:
    delay = (parse_iso(stamp) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, delay) + 0.3)


def test_rotation_with_a_grace_then_only_the_new_key(server):
    alice = signed_in(server, "alice")
    created = alice.post(server.url + "/api/keys", json={"name": "ci", "expires_in_days": 30, "rate_limit": 400})
    old = created.json()
    pinned = pin_by_worker(server, server.workers, 1)
    conns = [conn for group in pinned.values() for conn in group]
    try:
        for conn in conns:
            assert conn.get("/api/whoami", {"x-api-key": old["key"]})[0] == 200  # cached by every worker

        rotated = alice.post(server.url + f"/api/keys/{old['id']}/rotate", json={"grace_seconds": 2}, timeout=10)
        assert rotated.status_code == 201
        assert rotated.headers["Cache-Control"] == "no-store"
        new = rotated.json()
        assert new["key"] != old["key"] and new["prefix"] == new["key"][:12]
        assert (new["id"], new["name"], new["expires_at"], new["rate_limit"]) == (
            old["id"],
            "ci",
            old["expires_at"],
            400,
        )
        grace = (parse_iso(new["previous_expires_at"]) - datetime.now(UTC)).total_seconds()
        assert 0 < grace <= 3

        for conn in conns:  # both secrets work on every worker during the grace
            for key in (old["key"], new["key"]):
                status, _, body = conn.get("/api/whoami", {"x-api-key": key})
                assert (status, body["key"]["id"], body["key"]["expires_at"]) == (200, old["id"], old["expires_at"])
        listed = alice.get(server.url + "/api/keys", timeout=10).json()["keys"][0]
        assert listed["previous_expires_at"] == new["previous_expires_at"]
        assert new["key"] not in json.dumps(listed) and old["key"] not in json.dumps(listed)

        _wait_past(new["previous_expires_at"])

        for conn in conns:
            assert conn.get("/api/whoami", {"x-api-key": old["key"]})[::2] == (401, INVALID)
            assert conn.get("/api/whoami", {"x-api-key": new["key"]})[0] == 200
        listed = alice.get(server.url + "/api/keys", timeout=10).json()["keys"][0]
        assert (listed["previous_expires_at"], listed["expires_at"]) == (None, old["expires_at"])

        # Rotating during a grace ends the earlier grace at once: at most two secrets live.
        second = alice.post(server.url + f"/api/keys/{old['id']}/rotate", json={"grace_seconds": 3600}).json()
        third = alice.post(server.url + f"/api/keys/{old['id']}/rotate", json={"grace_seconds": 3600}).json()
        for conn in conns:
            assert conn.get("/api/whoami", {"x-api-key": new["key"]})[::2] == (401, INVALID)
            assert conn.get("/api/whoami", {"x-api-key": second["key"]})[0] == 200
            assert conn.get("/api/whoami", {"x-api-key": third["key"]})[0] == 200
    finally:
        for conn in conns:
            conn.close()

    stored = Stores.open(server.store, server.workspaces).keys.get(old["id"])
    assert (stored["digest"], stored["previous_digest"]) == (digest(third["key"]), digest(second["key"]))
    for key in (old["key"], new["key"], second["key"], third["key"]):
        assert key not in server.log() and key[12:] not in server.log()
    revoked = alice.patch(server.url + f"/api/keys/{old['id']}", json={"active": False}, timeout=10)
    assert revoked.status_code == 200
    again = alice.post(server.url + f"/api/keys/{old['id']}/rotate", json={}, timeout=10)
    assert answer(again) == (409, {"error": "Only an active key can be rotated"})
    assert whoami(server, second["key"]).status_code == 401


V1_RECORD = ("id", "name", "owner", "prefix", "digest", "created_at", "expires_at", "revoked_at", "last_used_at")


def test_a_version_1_store_is_upgraded_by_the_server_on_its_first_write(request, tmp_path, workspaces):
    """On files; Redis moves a one-document store of any version into one hash per record on first open
    (tests/test_redis_records.py)."""
    backend = "files"
    raw = generate_key()
    old = {
        "version": 1,
        "keys": [
            dict.fromkeys(V1_RECORD)
            | {
                "id": "key_00000000000000aa",
                "name": "from-v1",
                "owner": "alice",
                "prefix": display_prefix(raw),
                "digest": digest(raw),
                "created_at": "2025-01-01T00:00:00Z",
            }
        ],
    }
    text = json.dumps(old, indent=1, sort_keys=True) + "\n"
    (workspaces / "api-keys.json").write_text(text)

    def stored(name: str) -> bytes | None:
        path = workspaces / name.replace(":bak", ".bak")
        return path.read_bytes() if path.exists() else None

    server = start(request, tmp_path, workspaces, backend, API_RATE_LIMIT="500")
    try:
        check = Stores.open(server.store, workspaces).keys.file.check()
        assert check is None  # store check: a version-1 store is fine as it is
        assert stored("api-keys.json") == text.encode()  # starting and reading change nothing

        body = whoami(server, raw).json()
        assert limits_of(body["key"]) == {
            "scopes": ["ask", "workspaces:read"],
            "workspaces": None,
            "rate_limit": None,
            "allowed_ips": None,
        }
        assert stored("api-keys.json") == text.encode()  # a use writes nothing to the key store (app/usage.py)
        renamed = requests.patch(
            server.url + "/api/keys/key_00000000000000aa", json={"name": "from-v1"}, headers=ADMIN, timeout=10
        )
        assert renamed.status_code == 200  # the first write
        upgraded = json.loads(stored("api-keys.json"))
        assert upgraded["version"] == 2
        assert upgraded["keys"][0]["last_used_at"] is None  # kept in the schema, never written by a use
        assert upgraded["keys"][0]["scopes"] == ["ask", "workspaces:read"]
        assert upgraded["keys"][0]["previous_digest"] is None
        assert stored("api-keys.json:bak") == text.encode()  # the .bak keeps the old version...
        assert stored("api-keys.json.v1.bak") == text.encode()  # ...and this keeps it for good

        created = requests.post(
            server.url + "/api/keys", json={"name": "v2", "user": "alice"}, headers=ADMIN, timeout=10
        )
        assert created.status_code == 201
        assert json.loads(stored("api-keys.json:bak"))["version"] == 2
        assert stored("api-keys.json.v1.bak") == text.encode()
        assert whoami(server, raw).json()["key"]["id"] == "key_00000000000000aa"
        assert raw not in server.log()
    finally:
        server.stop()
