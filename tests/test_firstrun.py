"""First start: a one-time setup token, /setup creates the first admin once, then the page is gone."""

from __future__ import annotations

import os
import re
import stat

import pytest

from app import firstrun
from tests.conftest import PASSWORD, csrf_from


@pytest.fixture
def token(app, workspaces) -> str:
    value = firstrun.read_token(workspaces)
    assert value
    return value


def _submit(client, token: str, username: str = "root", password: str = PASSWORD, confirm: str | None = None):
    page = client.get("/setup", query_string={"token": token})
    assert page.status_code == 200
    return client.post(
        "/setup",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "token": token,
            "username": username,
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


def test_a_fresh_instance_has_a_private_setup_token(app, workspaces, token):
    path = workspaces / ".setup-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 random bytes
    assert not (workspaces / "users.json").exists()


def test_the_token_survives_a_restart_until_used(make_app, workspaces, token):
    make_app()
    assert firstrun.read_token(workspaces) == token


def test_without_users_the_login_page_explains_setup(client, workspaces, token):
    response = client.get("/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert str(workspaces / ".setup-token") in html
    assert token not in html


@pytest.mark.parametrize("query", [{}, {"token": ""}, {"token": "wrong"}])
def test_setup_without_the_token_is_403(client, token, query):
    response = client.get("/setup", query_string=query)
    assert response.status_code == 403
    assert token not in response.get_data(as_text=True)


def test_a_post_with_a_wrong_token_is_403(client, token):
    page = client.get("/setup", query_string={"token": token})
    response = client.post(
        "/setup",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "token": token[:-1] + ("A" if token[-1] != "A" else "B"),
            "username": "mallory",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert response.status_code == 403
    assert client.application.extensions["askgate"].users.count() == 0


def test_setup_creates_the_admin_signs_in_and_disappears(client, workspaces, token):
    response = _submit(client, token)
    assert (response.status_code, response.headers["Location"]) == (302, "/dashboard")
    assert client.get("/api/whoami").get_json() == {
        "auth_method": "session",
        "user": "root",
        "role": "admin",
        "key": None,
    }
    assert not (workspaces / ".setup-token").exists()
    for query in ({"token": token}, {}):
        assert client.get("/setup", query_string=query).status_code == 404
    other = client.application.test_client()
    assert other.get("/setup", query_string={"token": token}).status_code == 404
    assert other.post("/setup", data={"token": token}).status_code in (400, 404)
    assert [u.username for u in client.application.extensions["askgate"].users.list()] == ["root"]


def test_a_restart_after_setup_creates_no_token(make_app, client, workspaces, token):
    _submit(client, token)
    make_app()
    assert not (workspaces / ".setup-token").exists()


def test_mismatched_passwords_create_nothing(client, workspaces, token):
    response = _submit(client, token, confirm=PASSWORD + "x")
    assert response.status_code == 200
    assert "The passwords do not match" in response.get_data(as_text=True)
    assert client.application.extensions["askgate"].users.count() == 0
    assert (workspaces / ".setup-token").exists()


def test_setup_needs_the_csrf_token(client, token):
    client.get("/setup", query_string={"token": token})
    response = client.post(
        "/setup", data={"token": token, "username": "root", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400
    assert client.application.extensions["askgate"].users.count() == 0


@pytest.mark.parametrize(
    ("host", "shown"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]")],
)
def test_the_setup_message_carries_the_url_and_the_token_file(workspaces, host, shown):
    message = firstrun.setup_message(workspaces, host, 8123)
    token = firstrun.read_token(workspaces)
    assert message == (
        f"No users yet. Create the first admin at http://{shown}:8123/setup?token={token} "
        f"(the token is also in {workspaces / '.setup-token'})"
    )


def test_no_setup_message_once_there_are_users(app, auth, workspaces):
    auth.create_user("root", admin=True)
    assert firstrun.setup_message(workspaces, "127.0.0.1", 8000) is None
