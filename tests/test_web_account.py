"""Account Security: generate a key (shown once), revoke keys, change the password."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.keys.store import key_status, parse_iso
from tests.conftest import PASSWORD, AuthActions, csrf_from

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')
NEW_PASSWORD = "another long passphrase"


def _generate(client, name: str = "ci", expiry: str = "never", page: str | None = None):
    html = page or client.get("/account/security").get_data(as_text=True)
    data = {
        "csrf_token": csrf_from(html),
        "nonce": NONCE_RE.search(html).group(1),
        "name": name,
        "expiry": expiry,
    }
    return client.post("/account/security", data=data), data


def _whoami_status(app, key: str) -> int:
    return app.test_client().get("/api/whoami", headers={"x-api-key": key}).status_code


@pytest.fixture
def alice(client, auth):
    auth.create_user("alice")
    auth.login("alice")
    return auth


def test_the_new_key_is_shown_exactly_once(app, client, alice):
    response, _ = _generate(client, "ci-pipeline")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    keys = KEY_RE.findall(html)
    assert len(keys) == 1
    key = keys[0]
    assert "you won&#39;t see it again" in html or "you won't see it again" in html
    assert "data-copy" in html  # the copy button
    assert response.headers["Cache-Control"] == "no-store"

    record = alice.services.keys.lookup(key)
    assert (record["owner"], record["name"], record["expires_at"]) == ("alice", "ci-pipeline", None)
    assert _whoami_status(app, key) == 200

    for path in ("/account/security", "/dashboard"):
        later = client.get(path).get_data(as_text=True)
        assert key not in later and key[12:] not in later
    assert record["prefix"] in client.get("/account/security").get_data(as_text=True)


@pytest.mark.parametrize(("expiry", "days"), [("30", 30), ("90", 90), ("365", 365)])
def test_expiry_choices(client, alice, expiry, days):
    response, _ = _generate(client, "k", expiry)
    record = alice.services.keys.lookup(KEY_RE.search(response.get_data(as_text=True)).group(0))
    assert parse_iso(record["expires_at"]) - parse_iso(record["created_at"]) == timedelta(days=days)


def test_an_unknown_expiry_is_refused(client, alice):
    response, _ = _generate(client, "k", "7")
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []


def test_resubmitting_the_same_form_does_not_mint_a_second_key(client, alice):
    first, data = _generate(client)
    assert first.status_code == 200
    again = client.post("/account/security", data=data)
    assert again.status_code == 303
    assert again.headers["Location"] == "/account/security"
    assert len(alice.services.keys.list()) == 1
    assert "already created" in client.get("/account/security").get_data(as_text=True)


def test_generating_needs_the_csrf_token(client, alice):
    html = client.get("/account/security").get_data(as_text=True)
    response = client.post(
        "/account/security", data={"name": "k", "expiry": "never", "nonce": NONCE_RE.search(html).group(1)}
    )
    assert response.status_code == 400
    assert alice.services.keys.list() == []


def test_an_empty_name_shows_the_form_again(client, alice):
    response, _ = _generate(client, "   ")
    assert not KEY_RE.search(response.get_data(as_text=True))
    assert alice.services.keys.list() == []


def test_a_corrupt_key_store_is_reported_not_overwritten(client, alice):
    html = client.get("/account/security").get_data(as_text=True)
    path = alice.services.keys.file.path
    path.write_text("{broken")
    response, _ = _generate(client, page=html)
    assert response.status_code == 503
    assert path.read_text() == "{broken"


def test_revoke_own_key(app, client, alice):
    new = alice.services.keys.create("alice", "k")
    assert _whoami_status(app, new.key) == 200
    response = client.post("/account/security/revoke", data={"csrf_token": alice.csrf(), "key_id": new.record["id"]})
    assert (response.status_code, response.headers["Location"]) == (303, "/account/security")
    assert key_status(alice.services.keys.get(new.record["id"])) == "revoked"
    assert _whoami_status(app, new.key) == 401
    assert "is revoked" in client.get("/account/security").get_data(as_text=True)


def test_revoking_needs_the_csrf_token(client, alice):
    new = alice.services.keys.create("alice", "k")
    response = client.post("/account/security/revoke", data={"key_id": new.record["id"]})
    assert response.status_code == 400
    assert alice.services.keys.get(new.record["id"])["revoked_at"] is None


def test_a_member_neither_sees_nor_revokes_others_keys(client, alice):
    alice.create_user("bob")
    theirs = alice.services.keys.create("bob", "bobs-secret-name")
    assert "bobs-secret-name" not in client.get("/account/security").get_data(as_text=True)
    response = client.post("/account/security/revoke", data={"csrf_token": alice.csrf(), "key_id": theirs.record["id"]})
    assert response.status_code == 303
    assert "That key does not exist." in client.get("/account/security").get_data(as_text=True)
    assert alice.services.keys.get(theirs.record["id"])["revoked_at"] is None


def test_an_admin_sees_and_revokes_everyones_keys(app, client, auth):
    auth.create_user("root", admin=True)
    auth.create_user("bob")
    theirs = auth.services.keys.create("bob", "bobs-key")
    auth.login("root")
    html = client.get("/account/security").get_data(as_text=True)
    assert "bobs-key" in html and theirs.record["prefix"] in html
    assert theirs.key not in html
    response = client.post("/account/security/revoke", data={"csrf_token": auth.csrf(), "key_id": theirs.record["id"]})
    assert response.status_code == 303
    assert _whoami_status(app, theirs.key) == 401


# -- password -------------------------------------------------------------------------------------------------
def _change_password(client, auth, current: str, new: str, confirm: str | None = None):
    return client.post(
        "/account/password",
        data={
            "csrf_token": auth.csrf("/account/security"),
            "current_password": current,
            "new_password": new,
            "confirm": new if confirm is None else confirm,
        },
    )


def test_a_password_change_ends_other_sessions_but_not_this_one(app, client, alice):
    other = app.test_client()
    AuthActions(app, other).login("alice")
    assert other.get("/dashboard").status_code == 200

    response = _change_password(client, alice, PASSWORD, NEW_PASSWORD)
    assert (response.status_code, response.headers["Location"]) == (303, "/account/security")
    assert client.get("/dashboard").status_code == 200
    assert client.get("/api/whoami").get_json()["user"] == "alice"
    assert other.get("/dashboard").status_code == 302
    assert other.get("/api/whoami").status_code == 401

    assert alice.services.users.authenticate("alice", PASSWORD) is None
    assert alice.services.users.authenticate("alice", NEW_PASSWORD) is not None


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("wrong password!", NEW_PASSWORD, None, "That is not your current password."),
        (PASSWORD, "short", None, "Field must be between 10 and 1024 characters long."),
        (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", "The passwords do not match"),
    ],
)
def test_a_refused_password_change_changes_nothing(client, alice, current, new, confirm, message):
    response = _change_password(client, alice, current, new, confirm)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert alice.services.users.authenticate("alice", PASSWORD) is not None
    assert client.get("/dashboard").status_code == 200


def test_a_password_change_needs_the_csrf_token(client, alice):
    response = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert alice.services.users.authenticate("alice", PASSWORD) is not None
