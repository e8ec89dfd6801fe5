"""Sign in and out: CSRF on the form, a fresh session at login, local-only redirects, limits per IP and user."""

from __future__ import annotations

import pytest

from app.web.auth import safe_next
from tests.conftest import PASSWORD, AuthActions, csrf_from

FORM_EXPIRED = "This form has expired or was opened in another session."


def _post_login(client, username: str, password: str, next_path: str | None = None, ip: str = "127.0.0.1"):
    query = {"next": next_path} if next_path is not None else {}
    page = client.get("/login", query_string=query, environ_base={"REMOTE_ADDR": ip})
    data = {"username": username, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, environ_base={"REMOTE_ADDR": ip})


def _signed_in(client) -> bool:
    response = client.get("/dashboard")
    return response.status_code == 200


def test_login_lands_on_the_dashboard(client, auth):
    auth.create_user("alice")
    assert not _signed_in(client)
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "alice" in page.get_data(as_text=True)
    assert client.get("/login").headers["Location"] == "/dashboard"
    assert client.get("/").headers["Location"] == "/dashboard"


def test_pages_need_a_session(client, auth):
    auth.create_user("alice")
    assert client.get("/").headers["Location"] == "/login"
    for path in ("/dashboard", "/account/security", "/admin/users"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password!"), ("ALICE", "wrong"), ("nobody", PASSWORD)],
)
def test_wrong_credentials_do_not_sign_in(client, auth, username, password):
    auth.create_user("alice")
    response = _post_login(client, username, password)
    assert response.status_code == 200
    assert "Wrong username or password, or the account is disabled." in response.get_data(as_text=True)
    assert not _signed_in(client)


def test_an_empty_password_does_not_sign_in(client, auth):
    auth.create_user("alice")
    assert _post_login(client, "alice", "").status_code == 200
    assert not _signed_in(client)


def test_usernames_are_case_insensitive_at_login(client, auth):
    auth.create_user("alice")
    assert _post_login(client, "Alice", PASSWORD).status_code == 302
    assert _signed_in(client)


def test_a_disabled_user_cannot_sign_in(client, auth):
    auth.create_user("alice")
    auth.services.users.set_disabled("alice", True)
    assert _post_login(client, "alice", PASSWORD).status_code == 200
    assert not _signed_in(client)


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_the_login_form_needs_its_csrf_token(client, auth, token):
    auth.create_user("alice")
    client.get("/login")
    data = {"username": "alice", "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert FORM_EXPIRED in response.get_data(as_text=True)
    assert not _signed_in(client)


def test_a_csrf_token_from_another_session_is_refused(app, auth):
    auth.create_user("alice")
    other = app.test_client()
    token = csrf_from(other.get("/login").get_data(as_text=True))
    victim = app.test_client()
    victim.get("/login")
    response = victim.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 400
    assert FORM_EXPIRED in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        "///evil.example",
    ],
)
def test_next_never_redirects_off_site(client, auth, target):
    auth.create_user("alice")
    response = _post_login(client, "alice", PASSWORD, next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


def test_next_leads_to_a_local_path(client, auth):
    auth.create_user("alice")
    response = _post_login(client, "alice", PASSWORD, next_path="/account/security?tab=keys")
    assert response.headers["Location"] == "/account/security?tab=keys"


def test_an_encoded_line_break_in_next_stays_a_local_path(client, auth):
    auth.create_user("alice")
    response = _post_login(client, "alice", PASSWORD, next_path="/%0d%0aSet-Cookie:x=y")
    assert response.headers["Location"] == "/%0d%0aSet-Cookie:x=y"
    assert "x=y" not in " ".join(response.headers.getlist("Set-Cookie"))


def test_the_login_page_carries_next_from_the_redirect(client, auth):
    auth.create_user("alice")
    redirect = client.get("/account/security")
    page = client.get(redirect.headers["Location"])
    assert 'value="/account/security"' in page.get_data(as_text=True)


def test_safe_next_unit():
    assert safe_next("/dashboard") == "/dashboard"
    assert safe_next("/a/b?c=d#e") == "/a/b?c=d#e"
    for bad in (None, "", "//x", "///x", "/\\x", "http://x", "x", "/a\nb", "/a\x00b", "https:/x"):
        assert safe_next(bad) is None, bad


def test_the_session_is_renewed_at_login(client, auth):
    auth.create_user("alice")
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
        session["_user_id"] = "usr_forged:1"
    before = client.get_cookie("session").value
    assert auth.login().status_code == 302
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == auth.services.users.get("alice").get_id()
    assert client.get_cookie("session").value != before


@pytest.mark.parametrize(("secure", "expected"), [("false", False), ("true", True)])
def test_session_cookie_flags(make_app, secure, expected):
    app = make_app(SESSION_COOKIE_SECURE=secure)
    app.extensions["askgate"].users.create("alice", PASSWORD)
    client = app.test_client()
    response = AuthActions(app, client).login()
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert "samesite=lax" in cookie.lower()
    assert ("secure" in attributes) is expected


def test_logout_needs_post_and_csrf(client, auth):
    auth.create_user("alice")
    auth.login()
    assert client.get("/logout").status_code == 405
    response = client.post("/logout")
    assert response.status_code == 400
    assert _signed_in(client)
    response = client.post("/logout", data={"csrf_token": auth.csrf()})
    assert (response.status_code, response.headers["Location"]) == (302, "/login")
    assert not _signed_in(client)
    assert client.get("/api/whoami").status_code == 401


def test_logout_ends_the_api_session_too(client, auth):
    auth.create_user("alice")
    auth.login()
    assert client.get("/api/whoami").get_json()["auth_method"] == "session"
    client.post("/logout", data={"csrf_token": auth.csrf()})
    assert client.get("/api/whoami").get_json() == {"error": "API key required"}


# -- login limits ---------------------------------------------------------------------------------------------
def test_failed_logins_are_limited_per_ip(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    client = app.test_client()
    for name in ("u1", "u2", "u3"):
        assert _post_login(client, name, "wrong", ip="198.51.100.1").status_code == 200
    response = _post_login(client, "alice", PASSWORD, ip="198.51.100.1")  # even the right password waits
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True)
    assert _post_login(app.test_client(), "alice", PASSWORD, ip="198.51.100.2").status_code == 302


def test_failures_against_one_username_from_many_addresses_never_refuse_its_right_password(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    for n in range(12):  # four times the limit, spread over addresses
        assert _post_login(app.test_client(), "alice", "wrong", ip=f"198.51.100.{n + 1}").status_code == 200
    assert _post_login(app.test_client(), "ALICE", PASSWORD, ip="198.51.100.99").status_code == 302


def test_failed_logins_are_limited_per_address_and_username(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    client = app.test_client()
    for _ in range(3):
        assert _post_login(client, "alice", "wrong", ip="198.51.100.1").status_code == 200
    assert _post_login(client, "ALICE", PASSWORD, ip="198.51.100.1").status_code == 429
    assert _post_login(app.test_client(), "alice", PASSWORD, ip="198.51.100.2").status_code == 302


def test_an_ipv6_client_is_limited_per_64(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    for n in range(3):  # one /64 is one client, whichever of its addresses it picks
        assert _post_login(app.test_client(), f"u{n}", "wrong", ip=f"2001:db8:1:2::{n + 1}").status_code == 200
    assert _post_login(app.test_client(), "alice", PASSWORD, ip="2001:db8:1:2:ffff::9").status_code == 429
    assert _post_login(app.test_client(), "alice", PASSWORD, ip="2001:db8:1:3::1").status_code == 302


def test_successful_logins_are_not_counted(make_app):
    app = make_app(LOGIN_RATE_LIMIT="2/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    for _ in range(4):
        assert _post_login(app.test_client(), "alice", PASSWORD).status_code == 302


def test_the_login_page_itself_is_not_limited(make_app):
    app = make_app(LOGIN_RATE_LIMIT="1/minute")
    app.extensions["askgate"].users.create("alice", PASSWORD)
    client = app.test_client()
    assert [client.get("/login").status_code for _ in range(5)] == [200] * 5
