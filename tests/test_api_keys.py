"""Key management over the API: for a session (with CSRF) or the admin key, never for a key that could mint keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.keys.format import digest
from app.keys.store import parse_iso
from tests.conftest import ADMIN_KEY, CLIENT_KEY

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
LISTED_FIELDS = {
    "id",
    "name",
    "owner",
    "prefix",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
    "last_used_ip",
    "status",
    "is_active",
    "scopes",
    "workspaces",
    "rate_limit",
    "allowed_ips",
    "previous_expires_at",
}
MANAGER_ONLY = {"error": "Key management needs a dashboard session or the admin key"}
NOT_FOUND = {"error": "Key not found"}
ADMIN = {"x-api-key": ADMIN_KEY}
LIMITS = ("scopes", "workspaces", "rate_limit", "allowed_ips")
DEFAULT_LIMITS = {"scopes": ["ask", "workspaces:read"], "workspaces": None, "rate_limit": None, "allowed_ips": None}


@pytest.fixture
def session(client, auth):
    """alice, signed in; returns headers carrying her CSRF token."""
    auth.create_user("alice")
    auth.create_user("bob")
    auth.login("alice")
    return {"X-CSRFToken": auth.csrf()}


def test_create_returns_the_key_once_with_an_exact_shape(client, auth, session):
    response = client.post("/api/keys", json={"name": "ci", "expires_in_days": 90}, headers=session)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"id", "name", "prefix", "key", "created_at", "expires_at", *LIMITS}
    assert {name: body[name] for name in LIMITS} == DEFAULT_LIMITS
    assert KEY_RE.fullmatch(body["key"])
    assert body["name"] == "ci"
    assert body["prefix"] == body["key"][:12]
    assert parse_iso(body["expires_at"]) - parse_iso(body["created_at"]) == timedelta(days=90)
    record = auth.services.keys.get(body["id"])
    assert record["owner"] == "alice"
    assert record["digest"] == digest(body["key"])

    whoami = client.application.test_client().get("/api/whoami", headers={"x-api-key": body["key"]})
    assert whoami.get_json()["key"]["id"] == body["id"]

    listing = client.get("/api/keys").get_data(as_text=True)
    assert body["key"] not in listing and body["key"][12:] not in listing
    assert record["digest"] not in listing


def test_listings_never_carry_the_key_or_digest(client, auth, session):
    mine = auth.services.keys.create("alice", "mine")
    theirs = auth.services.keys.create("bob", "theirs")
    response = client.get("/api/keys")
    assert response.status_code == 200
    keys = response.get_json()["keys"]
    assert [k["id"] for k in keys] == [mine.record["id"]]  # a member sees only their own
    assert set(keys[0]) == LISTED_FIELDS
    assert keys[0]["status"] == "active"

    admin_list = client.application.test_client().get("/api/keys", headers=ADMIN).get_json()["keys"]
    assert {k["id"] for k in admin_list} == {mine.record["id"], theirs.record["id"]}
    text = str(admin_list)
    for new in (mine, theirs):
        assert new.key not in text and new.record["digest"] not in text
    assert all(set(k) == LISTED_FIELDS for k in admin_list)


def test_patch_active_false_revokes(client, auth, session):
    new = auth.services.keys.create("alice", "k")
    api = client.application.test_client()
    assert api.get("/api/whoami", headers={"x-api-key": new.key}).status_code == 200
    response = client.patch(f"/api/keys/{new.record['id']}", json={"active": False}, headers=session)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == LISTED_FIELDS
    assert body["status"] == "revoked" and body["revoked_at"]
    assert api.get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401

    again = client.patch(f"/api/keys/{new.record['id']}", json={"active": True}, headers=session)
    assert (again.status_code, again.get_json()) == (
        400,
        {"error": "A revoked key cannot be made active again; create a new key"},
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "Nothing to change: send any of name, scopes, workspaces, rate_limit, allowed_ips, active, is_active"),
        ({"active": "false"}, 'active must be true or false: send {"active": false} to revoke the key'),
        ({"is_active": 0}, 'is_active must be true or false: send {"is_active": false} to revoke the key'),
        ({"active": False, "is_active": True}, "active and is_active disagree: send one of them"),
        (
            {"active": False, "owner": "bob", "digest": "x"},
            "Unknown field(s): digest, owner; send any of name, scopes, workspaces, rate_limit, allowed_ips, "
            "active, is_active",
        ),
        ({"name": ""}, "Give the key a name, for example 'ci-pipeline'"),
        (
            {"rate_limit": 0, "active": False},
            "rate_limit must be a whole number of requests per hour from 1 to 1000, or null for the instance's limit",
        ),
        ([], "Send a JSON object with Content-Type: application/json"),
    ],
)
def test_patch_refuses_bad_bodies_and_changes_nothing(client, auth, session, body, error):
    new = auth.services.keys.create("alice", "k")
    before = auth.services.keys.get(new.record["id"])
    response = client.patch(f"/api/keys/{new.record['id']}", json=body, headers=session)
    assert (response.status_code, response.get_json()) == (400, {"error": error})
    assert auth.services.keys.get(new.record["id"]) == before


def test_delete_returns_204_and_the_key_is_gone(client, auth, session):
    new = auth.services.keys.create("alice", "k")
    response = client.delete(f"/api/keys/{new.record['id']}", headers=session)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert auth.services.keys.get(new.record["id"]) is None
    assert client.application.test_client().get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401
    response = client.delete(f"/api/keys/{new.record['id']}", headers=session)
    assert (response.status_code, response.get_json()) == (404, NOT_FOUND)


def test_other_users_keys_are_404_not_403(client, auth, session):
    theirs = auth.services.keys.create("bob", "theirs")
    key_id = theirs.record["id"]
    for response in (
        client.patch(f"/api/keys/{key_id}", json={"active": False}, headers=session),
        client.delete(f"/api/keys/{key_id}", headers=session),
        client.patch("/api/keys/key_doesnotexist", json={"active": False}, headers=session),
    ):
        assert (response.status_code, response.get_json()) == (404, NOT_FOUND)
    assert auth.services.keys.get(key_id)["revoked_at"] is None


def test_an_admin_manages_everyones_keys(client, auth):
    auth.create_user("root", admin=True)
    auth.create_user("bob")
    theirs = auth.services.keys.create("bob", "theirs")
    auth.login("root")
    headers = {"X-CSRFToken": auth.csrf()}
    response = client.patch(f"/api/keys/{theirs.record['id']}", json={"active": False}, headers=headers)
    assert (response.status_code, response.get_json()["status"]) == (200, "revoked")
    response = client.post("/api/keys", json={"name": "for-bob", "user": "bob"}, headers=headers)
    assert response.status_code == 201
    assert auth.services.keys.get(response.get_json()["id"])["owner"] == "bob"


def test_the_admin_key_manages_keys_for_a_named_user(client, auth):
    auth.create_user("alice")
    response = client.post("/api/keys", json={"name": "k"}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (
        400,
        {"error": 'The admin key belongs to no user: say whose key this is with "user"'},
    )
    response = client.post("/api/keys", json={"name": "k", "user": "alice", "expires_in_days": 30}, headers=ADMIN)
    assert response.status_code == 201
    key_id = response.get_json()["id"]
    assert client.patch(f"/api/keys/{key_id}", json={"active": False}, headers=ADMIN).status_code == 200
    assert client.delete(f"/api/keys/{key_id}", headers=ADMIN).status_code == 204


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"name": "k", "user": "ghost"}, "No user named 'ghost'"),
        ({"name": "k", "user": ["alice"]}, "user must be a username"),
        ({"name": "", "user": "alice"}, "Give the key a name, for example 'ci-pipeline'"),
        ({"user": "alice"}, "Give the key a name, for example 'ci-pipeline'"),
        (
            {"name": "k", "user": "alice", "expires_in_days": 7},
            "expires_in_days must be one of 30, 90, 365, or null for never",
        ),
        (
            {"name": "k", "user": "alice", "expires_in_days": "30"},
            "expires_in_days must be 30, 90, 365, or null for never",
        ),
        (
            {"name": "k", "user": "alice", "expires_in_days": True},
            "expires_in_days must be 30, 90, 365, or null for never",
        ),
    ],
)
def test_create_validation(client, auth, body, error):
    auth.create_user("alice")
    response = client.post("/api/keys", json=body, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (400, {"error": error})
    assert auth.services.keys.list() == []


def test_no_key_for_a_disabled_user(client, auth):
    auth.create_user("alice")
    auth.services.users.set_disabled("alice", True)
    response = client.post("/api/keys", json={"name": "k", "user": "alice"}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (400, {"error": "User 'alice' is disabled"})


def test_a_member_cannot_create_keys_for_others(client, auth, session):
    response = client.post("/api/keys", json={"name": "k", "user": "bob"}, headers=session)
    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "Only an admin can create keys for another user"},
    )
    assert auth.services.keys.list() == []


@pytest.mark.parametrize("kind", ["dashboard", "admin-dashboard", "client"])
def test_keys_cannot_mint_keys(client, auth, kind):
    auth.create_user("alice")
    auth.create_user("root", admin=True)
    existing = auth.services.keys.create("alice", "existing")
    key = {
        "dashboard": existing.key,
        "admin-dashboard": auth.new_key("root"),
        "client": CLIENT_KEY,
    }[kind]
    headers = {"x-api-key": key}
    key_id = existing.record["id"]
    for response in (
        client.get("/api/keys", headers=headers),
        client.post("/api/keys", json={"name": "more"}, headers=headers),
        client.post("/api/keys", json={"name": "more", "user": "alice"}, headers=headers),
        client.patch(f"/api/keys/{key_id}", json={"active": False}, headers=headers),
        client.delete(f"/api/keys/{key_id}", headers=headers),
    ):
        assert (response.status_code, response.get_json()) == (403, MANAGER_ONLY)
    assert sorted(r["name"] for r in auth.services.keys.list()) == ["existing", "script"]
    assert auth.services.keys.get(key_id)["revoked_at"] is None


def test_key_management_without_credentials(client):
    response = client.get("/api/keys")
    assert (response.status_code, response.get_json()) == (401, {"error": "API key required"})
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- limits and rotation (issue 12) ---------------------------------------------------------------------------
def test_create_with_limits_shows_them_in_201_listing_and_whoami(client, auth, session, workspaces):
    (workspaces / "alpha").mkdir()
    limits = {"scopes": ["ask"], "workspaces": ["alpha"], "rate_limit": 3, "allowed_ips": ["127.0.0.1", "::1"]}
    response = client.post("/api/keys", json={"name": "ci", **limits}, headers=session)
    assert response.status_code == 201
    body = response.get_json()
    shown = {**limits, "allowed_ips": ["127.0.0.1/32", "::1/128"]}
    assert {name: body[name] for name in LIMITS} == shown
    listed = client.get("/api/keys").get_json()["keys"][0]
    assert {name: listed[name] for name in LIMITS} == shown
    assert (listed["is_active"], listed["status"], listed["previous_expires_at"]) == (True, "active", None)
    whoami = client.application.test_client().get("/api/whoami", headers={"x-api-key": body["key"]}).get_json()
    assert {name: whoami["key"][name] for name in LIMITS} == shown


def test_only_admins_give_workspaces_write(client, auth, session):
    response = client.post("/api/keys", json={"name": "ci", "scopes": ["workspaces:write"]}, headers=session)
    assert (response.status_code, response.get_json()) == (
        403,
        {"error": "Only admins can give a key workspaces:write"},
    )
    assert auth.services.keys.list() == []
    response = client.application.test_client().post(  # no session cookie: the admin key is the caller
        "/api/keys", json={"name": "ci", "user": "alice", "scopes": ["ask", "workspaces:write"]}, headers=ADMIN
    )
    assert (response.status_code, response.get_json()["scopes"]) == (201, ["ask", "workspaces:write"])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"scopes": []}, 'scopes must be a non-empty list of "ask", "workspaces:read", "workspaces:write"'),
        ({"workspaces": ["nope"]}, "workspaces: there is no workspace 'nope'"),
        ({"workspaces": []}, "workspaces must be null (every workspace) or a non-empty list of workspace ids"),
        (
            {"rate_limit": 1001},
            "rate_limit must be a whole number of requests per hour from 1 to 1000, or null for the instance's limit",
        ),
        (
            {"allowed_ips": ["10.0.0.0/8", "ten"]},
            "allowed_ips: 'ten' is not an IP address or CIDR range (examples: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32)",
        ),
        (
            {"scope": ["ask"]},
            "Unknown field(s): scope; send any of name, expires_in_days, user, scopes, workspaces, rate_limit, "
            "allowed_ips",
        ),
    ],
)
def test_bad_limits_are_a_400_naming_the_field(client, auth, session, body, error):
    response = client.post("/api/keys", json={"name": "ci", **body}, headers=session)
    assert (response.status_code, response.get_json()) == (400, {"error": error})
    assert auth.services.keys.list() == []


def test_patch_renames_and_changes_limits_and_is_active_false_revokes(client, auth, session, workspaces):
    (workspaces / "alpha").mkdir()
    new = auth.services.keys.create("alice", "k")
    key_id = new.record["id"]
    changes = {"name": "renamed", "scopes": ["ask"], "workspaces": ["alpha"], "rate_limit": 10, "allowed_ips": None}
    response = client.patch(f"/api/keys/{key_id}", json=changes, headers=session)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == LISTED_FIELDS
    assert {name: body[name] for name in changes} == changes
    assert auth.services.keys.get(key_id)["rate_limit"] == 10
    refused = client.patch(f"/api/keys/{key_id}", json={"scopes": ["workspaces:write"]}, headers=session)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "Only admins can give a key workspaces:write"})

    revoked = client.patch(f"/api/keys/{key_id}", json={"is_active": False}, headers=session).get_json()
    assert (revoked["status"], revoked["is_active"], revoked["name"]) == ("revoked", False, "renamed")
    assert client.application.test_client().get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401


def test_rotate_answers_the_new_key_once_and_the_old_one_works_for_the_grace(client, auth, session):
    new = auth.services.keys.create("alice", "ci", 30)
    key_id = new.record["id"]
    response = client.post(f"/api/keys/{key_id}/rotate", json={"grace_seconds": 600}, headers=session)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == LISTED_FIELDS | {"key"}
    assert KEY_RE.fullmatch(body["key"]) and body["key"] != new.key
    assert (body["id"], body["name"], body["expires_at"]) == (key_id, "ci", new.record["expires_at"])
    assert body["prefix"] == body["key"][:12]
    grace = parse_iso(body["previous_expires_at"]) - datetime.now(UTC)
    assert timedelta(seconds=590) < grace <= timedelta(seconds=601)  # at least 600 s, rounded up to a second
    api = client.application.test_client()
    for key in (new.key, body["key"]):
        assert api.get("/api/whoami", headers={"x-api-key": key}).get_json()["key"]["id"] == key_id
    listing = client.get("/api/keys").get_data(as_text=True)
    assert body["key"] not in listing and new.key not in listing and digest(new.key) not in listing
    assert client.get("/api/keys").get_json()["keys"][0]["previous_expires_at"] == body["previous_expires_at"]

    default = client.post(f"/api/keys/{key_id}/rotate", headers=session)  # no body: a day's grace
    assert default.status_code == 201
    assert api.get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401  # the earlier grace ended
    assert api.get("/api/whoami", headers={"x-api-key": body["key"]}).status_code == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"grace_seconds": -1}, "grace_seconds must be a whole number of seconds from 0 to 604800"),
        ({"grace_seconds": 604_801}, "grace_seconds must be a whole number of seconds from 0 to 604800"),
        ({"grace_seconds": "60"}, "grace_seconds must be a whole number of seconds from 0 to 604800"),
        ({"grace_seconds": True}, "grace_seconds must be a whole number of seconds from 0 to 604800"),
        ({"grace": 60}, "Unknown field(s): grace; send any of grace_seconds"),
        ([], "Send a JSON object with Content-Type: application/json"),
    ],
)
def test_rotate_refuses_bad_bodies_and_changes_nothing(client, auth, session, body, error):
    new = auth.services.keys.create("alice", "ci")
    response = client.post(f"/api/keys/{new.record['id']}/rotate", json=body, headers=session)
    assert (response.status_code, response.get_json()) == (400, {"error": error})
    assert auth.services.keys.get(new.record["id"]) == new.record


def test_rotate_is_for_whoever_may_revoke_and_only_for_an_active_key(client, auth, session):
    mine = auth.services.keys.create("alice", "mine")
    theirs = auth.services.keys.create("bob", "theirs")
    response = client.post(f"/api/keys/{theirs.record['id']}/rotate", json={}, headers=session)
    assert (response.status_code, response.get_json()) == (404, NOT_FOUND)
    api = client.application.test_client()
    response = api.post(f"/api/keys/{mine.record['id']}/rotate", json={}, headers={"x-api-key": mine.key})
    assert (response.status_code, response.get_json()) == (403, MANAGER_ONLY)
    response = api.post(f"/api/keys/{theirs.record['id']}/rotate", json={"grace_seconds": 0}, headers=ADMIN)
    assert (response.status_code, response.get_json()["previous_expires_at"]) == (201, None)
    assert api.get("/api/whoami", headers={"x-api-key": theirs.key}).status_code == 401
    auth.services.keys.revoke(mine.record["id"])
    response = client.post(f"/api/keys/{mine.record['id']}/rotate", json={}, headers=session)
    assert (response.status_code, response.get_json()) == (409, {"error": "Only an active key can be rotated"})
