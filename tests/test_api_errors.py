"""Every /api error is JSON {"error": ...}; security headers on every response, pages and API alike."""

from __future__ import annotations

import re

import pytest

from app.security import CSP
from tests.conftest import ADMIN_KEY

ADMIN = {"x-api-key": ADMIN_KEY}
NOT_JSON = {"error": "Send a JSON object with Content-Type: application/json"}
BAD_WORKSPACE = {
    "error": "workspaceId must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
}


def _assert_json_error(response, status: int, body: dict) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == body


# -- 400 -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("workspaceId=a&question=b", "application/x-www-form-urlencoded"),
        ('{"workspaceId": "a", "question": "b"}', "text/plain"),
        ('{"workspaceId": "a", ', "application/json"),
        ('["a", "b"]', "application/json"),
        ("", "application/json"),
        (b"\xff\xfe{}", "application/json"),
    ],
)
def test_a_non_json_body_is_400(client, data, content_type):
    response = client.post("/api/ask", data=data, content_type=content_type, headers=ADMIN)
    _assert_json_error(response, 400, NOT_JSON)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"question": "q"}, {"error": "workspaceId is required"}),
        ({"workspaceId": "", "question": "q"}, {"error": "workspaceId is required"}),
        ({"workspaceId": 7, "question": "q"}, {"error": "workspaceId is required"}),
        ({"workspaceId": "demo"}, {"error": "question is required"}),
        ({"workspaceId": "demo", "question": "   "}, {"error": "question is required"}),
        ({"workspaceId": "demo", "question": ["q"]}, {"error": "question is required"}),
        ({"workspaceId": "demo", "question": "x" * 2001}, {"error": "question is too long: at most 2000 characters"}),
        ({"workspaceId": "../etc", "question": "q"}, BAD_WORKSPACE),
        ({"workspaceId": ".hidden", "question": "q"}, BAD_WORKSPACE),
        ({"workspaceId": "a/b", "question": "q"}, BAD_WORKSPACE),
        ({"workspaceId": "a" * 65, "question": "q"}, BAD_WORKSPACE),
    ],
)
def test_ask_validation(client, body, error):
    _assert_json_error(client.post("/api/ask", json=body, headers=ADMIN), 400, error)


def test_question_length_is_checked_after_stripping_like_the_engine(client, workspaces):
    (workspaces / "demo").mkdir()
    (workspaces / "demo" / "signing.py").write_text("def sign_value(value, key):\n    return value\n")
    question = "sign_value " + "x" * 1988 + "     "  # 1,999 characters and 5 trailing spaces
    response = client.post("/api/ask", json={"workspaceId": "demo", "question": question}, headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["question"] == question.strip()
    too_long = {"workspaceId": "demo", "question": "x" * 2001 + "     "}
    _assert_json_error(
        client.post("/api/ask", json=too_long, headers=ADMIN),
        400,
        {"error": "question is too long: at most 2000 characters"},
    )


def test_an_unknown_workspace_is_404(client):
    body = {"workspaceId": "a" * 64, "question": "x" * 2000}  # both at their limits, so valid
    _assert_json_error(client.post("/api/ask", json=body, headers=ADMIN), 404, {"error": "Workspace not found"})


NOT_FOUND = "Not found: the API's routes are listed at /api/openapi.json"


# -- 404, 405 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, ADMIN])
def test_unknown_api_paths_are_json_404(client, headers):
    for path in ("/api/nope", "/api", "/api/keys/key_x/extra"):
        _assert_json_error(client.get(path, headers=headers), 404, {"error": NOT_FOUND})


def test_wrong_methods_are_json_405_with_allow(client):
    response = client.get("/api/ask", headers=ADMIN)
    _assert_json_error(response, 405, {"error": "Method not allowed: use POST"})
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    response = client.put("/api/keys", json={}, headers=ADMIN)
    _assert_json_error(response, 405, {"error": "Method not allowed: use GET or POST"})
    assert "POST" in response.headers["Allow"] and "GET" in response.headers["Allow"]
    _assert_json_error(client.post("/api/health"), 405, {"error": "Method not allowed: use GET"})


# -- 413 -----------------------------------------------------------------------------------------------------
def test_an_oversized_body_is_json_413(make_app):
    client = make_app(API_MAX_JSON_BYTES="1024").test_client()
    body = {"workspaceId": "demo", "question": "x" * 1500}
    _assert_json_error(client.post("/api/ask", json=body, headers=ADMIN), 413, {"error": "Request body too large"})
    _assert_json_error(
        client.post("/api/keys", json={"name": "x" * 2000}, headers=ADMIN),
        413,
        {"error": "Request body too large"},
    )


def test_an_oversized_form_is_an_html_413_page(make_app):
    client = make_app(MAX_CONTENT_LENGTH="1024").test_client()
    response = client.post("/login", data={"username": "x" * 2000, "password": "y"})
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "larger than this server accepts" in response.get_data(as_text=True)


# -- 500 -----------------------------------------------------------------------------------------------------
def test_an_unexpected_error_is_json_500_without_a_trace(make_app, caplog):
    app = make_app()

    def boom():
        raise RuntimeError("internal detail /srv/secret")

    app.add_url_rule("/api/boom", "boom", boom)
    app.add_url_rule("/boom", "page_boom", boom)
    client = app.test_client()
    response = client.get("/api/boom")
    _assert_json_error(response, 500, {"error": "Internal server error"})
    page = client.get("/boom")
    assert page.status_code == 500 and page.mimetype == "text/html"
    for text in (response.get_data(as_text=True), page.get_data(as_text=True)):
        assert "internal detail" not in text and "Traceback" not in text
    logged = [r for r in caplog.records if r.exc_info and "internal detail" in str(r.exc_info[1])]
    assert len(logged) == 2  # the server log keeps the trace for the operator


# -- 401 carries WWW-Authenticate -----------------------------------------------------------------------------
def test_401s_carry_www_authenticate_bearer_and_others_do_not(client):
    missing = client.get("/api/whoami")
    wrong = client.get("/api/keys", headers={"Authorization": "Bearer nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "WWW-Authenticate" not in client.get("/api/nope").headers
    assert "WWW-Authenticate" not in client.get("/api/whoami", headers=ADMIN).headers


# -- security headers -----------------------------------------------------------------------------------------
EXPECTED_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _assert_security_headers(response) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.request.path)
    csp = response.headers["Content-Security-Policy"]
    assert csp == CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "*" not in csp and "http:" not in csp and "https:" not in csp


def test_security_headers_on_pages_and_api(client, auth):
    auth.create_user("alice")
    responses = [
        client.get("/login"),
        client.get("/nope"),
        client.get("/static/app.css"),
        client.get("/api/health"),
        client.get("/api/whoami"),
        client.get("/api/whoami", headers=ADMIN),
        client.get("/api/nope"),
        client.post("/login", data={}),
    ]
    auth.login()
    responses += [client.get("/dashboard"), client.get("/account/security")]
    for response in responses:
        _assert_security_headers(response)


def test_pages_carry_no_inline_script_or_style(client, auth):
    auth.create_user("root", admin=True)
    auth.login("root")
    for path in ("/dashboard", "/account/security", "/admin/users", "/ask"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, (path, tag)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), path  # no inline script body
        assert not re.search(r"\son[a-z]+\s*=", html), path  # no inline event handlers
        assert not re.search(r"<style\b", html), path
        assert not re.search(r"\sstyle\s*=", html), path
        # No CDN: the server may run offline, so every script, style and image is served by itself.
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", html):
            assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", tag), (path, tag)


def test_a_store_write_failure_is_a_json_error_and_a_log_line(client, monkeypatch, caplog):
    import errno
    import logging

    from app.documents import sharedfile

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    client.application.extensions["askgate"].users.create("alice", "a-long-password", "member")
    audit = client.application.extensions["askgate"].audit  # the store's failure, not the audit log's
    monkeypatch.setattr(audit, "begin", lambda event: (event, lambda saved: None))
    monkeypatch.setattr(sharedfile.os, "fsync", disk_full)
    with caplog.at_level(logging.ERROR, logger="askgate"):
        response = client.post("/api/keys", json={"user": "alice", "name": "ci"}, headers=ADMIN)
    message = "Could not save api-keys.json: the disk is full. Nothing was changed."
    _assert_json_error(response, 507, {"error": message})
    logged = [r.getMessage() for r in caplog.records if r.name == "askgate" and r.levelno == logging.ERROR]
    assert logged == [f"store write failed: {message}"]
