"""User administration: admins add, disable, enable and reset users; disabling ends sessions and keys at once."""

from __future__ import annotations

import pytest

from app.keys.store import key_status
from tests.conftest import PASSWORD, AuthActions

NEW_PASSWORD = "a reset password here"


@pytest.fixture
def admin(client, auth):
    auth.create_user("root", admin=True)
    auth.create_user("bob")
    auth.login("root")
    return auth


def _post(client, auth, path: str, **data):
    return client.post(path, data={"csrf_token": auth.csrf("/admin/users"), **data})


def _bob(app):
    """bob, signed in from his own browser."""
    client = app.test_client()
    assert AuthActions(app, client).login("bob").status_code == 302
    return client


def test_only_admins_reach_the_page(app, client, auth):
    auth.create_user("alice")
    anonymous = app.test_client()
    assert anonymous.get("/admin/users").headers["Location"].startswith("/login?next=")
    auth.login("alice")
    assert client.get("/admin/users").status_code == 403
    token = auth.csrf()
    for path in ("/admin/users", "/admin/users/disable", "/admin/users/enable", "/admin/users/password"):
        response = client.post(path, data={"csrf_token": token, "username": "alice", "password": NEW_PASSWORD})
        assert response.status_code == 403, path
    assert not auth.services.users.get("alice").disabled


def test_the_page_lists_users(client, admin):
    html = client.get("/admin/users").get_data(as_text=True)
    assert "root" in html and "bob" in html


@pytest.mark.parametrize(("admin_flag", "role"), [(None, "member"), ("y", "admin")])
def test_add_a_user(app, client, admin, admin_flag, role):
    data = {"username": "carol", "password": PASSWORD}
    if admin_flag:
        data["admin"] = admin_flag
    response = _post(client, admin, "/admin/users", **data)
    assert (response.status_code, response.headers["Location"]) == (303, "/admin/users")
    assert admin.services.users.get("carol").role == role
    assert AuthActions(app, app.test_client()).login("carol").status_code == 302


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("bob", PASSWORD, "A user named &#39;bob&#39; already exists"),
        ("carol", "short", "Field must be between 10 and 1024 characters long."),
        ("bad name", PASSWORD, "A username is 1–32 characters"),
    ],
)
def test_adding_a_bad_user_is_refused(client, admin, username, password, message):
    response = _post(client, admin, "/admin/users", username=username, password=password)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert [u.username for u in admin.services.users.list()] == ["bob", "root"]


def test_disabling_ends_sessions_and_keys_at_once(app, client, admin):
    bob = _bob(app)
    new = admin.services.keys.create("bob", "bobs-key")
    assert bob.get("/dashboard").status_code == 200
    assert app.test_client().get("/api/whoami", headers={"x-api-key": new.key}).status_code == 200

    response = _post(client, admin, "/admin/users/disable", username="bob")
    assert response.status_code == 303
    assert "bob is disabled: signed out everywhere, 1 key(s) revoked." in client.get("/admin/users").get_data(
        as_text=True
    )
    assert bob.get("/dashboard").status_code == 302
    assert bob.get("/api/whoami").status_code == 401
    assert app.test_client().get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401
    assert key_status(admin.services.keys.get(new.record["id"])) == "revoked"
    assert AuthActions(app, app.test_client()).login("bob").status_code == 200  # refused: form shown again


def test_enabling_lets_them_sign_in_but_old_sessions_and_keys_stay_dead(app, client, admin):
    bob = _bob(app)
    new = admin.services.keys.create("bob", "bobs-key")
    _post(client, admin, "/admin/users/disable", username="bob")
    response = _post(client, admin, "/admin/users/enable", username="bob")
    assert response.status_code == 303
    assert not admin.services.users.get("bob").disabled
    assert bob.get("/dashboard").status_code == 302  # the session from before stays ended
    assert AuthActions(app, app.test_client()).login("bob").status_code == 302
    assert app.test_client().get("/api/whoami", headers={"x-api-key": new.key}).status_code == 401


def test_an_admin_cannot_disable_themselves(client, admin):
    response = _post(client, admin, "/admin/users/disable", username="ROOT")
    assert response.status_code == 303
    assert "You cannot disable your own account." in client.get("/admin/users").get_data(as_text=True)
    assert not admin.services.users.get("root").disabled


def test_disabling_an_unknown_user(client, admin):
    _post(client, admin, "/admin/users/disable", username="ghost")
    assert "No user named &#39;ghost&#39;" in client.get("/admin/users").get_data(as_text=True)


def test_reset_password_ends_their_sessions(app, client, admin):
    bob = _bob(app)
    response = _post(client, admin, "/admin/users/password", username="bob", password=NEW_PASSWORD)
    assert response.status_code == 303
    assert bob.get("/dashboard").status_code == 302
    assert admin.services.users.authenticate("bob", NEW_PASSWORD) is not None
    assert admin.services.users.authenticate("bob", PASSWORD) is None
    assert client.get("/dashboard").status_code == 200  # the admin's own session is untouched


def test_a_too_short_reset_password_is_refused(client, admin):
    _post(client, admin, "/admin/users/password", username="bob", password="short")
    assert "Password not reset" in client.get("/admin/users").get_data(as_text=True)
    assert admin.services.users.authenticate("bob", PASSWORD) is not None


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/users", {"username": "carol", "password": PASSWORD}),
        ("/admin/users/disable", {"username": "bob"}),
        ("/admin/users/password", {"username": "bob", "password": NEW_PASSWORD}),
    ],
)
def test_admin_forms_need_the_csrf_token(client, admin, path, data):
    response = client.post(path, data=data)
    assert response.status_code == 400
    users = admin.services.users
    assert users.get("carol") is None
    assert not users.get("bob").disabled
    assert users.authenticate("bob", PASSWORD) is not None
