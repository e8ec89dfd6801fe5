"""Key management over the API: for a session (with CSRF) or the admin key, never for a key that could mint keys."""

from __future__ import annotations

import re
from datetime import timedelta

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
    assert set(body) == {"id", "name", "prefix", "key", "created_at", "expires_at"}
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


@pytest.mark.parametrize("body", [{}, {"active": "false"}, {"active": 0}, {"active": False, "name": "x"}, []])
def test_patch_accepts_only_active(client, auth, session, body):
    new = auth.services.keys.create("alice", "k")
    response = client.patch(f"/api/keys/{new.record['id']}", json=body, headers=session)
    assert response.status_code == 400
    assert response.get_json()["error"] in (
        'Send {"active": false} to revoke the key',
        "Send a JSON object with Content-Type: application/json",
    )


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
