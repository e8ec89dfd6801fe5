"""A dashboard key's own limits, enforced in the request hook: allowed_ips, scopes, workspaces, rate_limit.

Sessions, ADMIN_API_KEY and VALID_API_KEYS are not affected. Through real gunicorn, the file store and Redis:
tests/test_keyrules_server.py.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile

import pytest

from app import accounts
from app.accounts import Actor
from app.auth.keyrules import rules_for
from tests.conftest import ADMIN_KEY, CLIENT_KEY

IP_DENIED = {"error": "Access denied from this IP address"}


def lacks(scope: str) -> dict:
    return {"error": f"This key lacks the {scope} scope"}


def cannot(workspace_id: str) -> dict:
    return {"error": f"This key cannot access workspace {workspace_id}"}


def limited_key(auth, owner: str = "alice", **limits) -> str:
    """A new key of ``owner`` with ``limits`` (scopes, workspaces, rate_limit, allowed_ips), as an admin makes it."""
    with auth.app.app_context():
        return accounts.create_key_for(Actor.operator(), owner, "limited", None, limits).key


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def workspace(workspaces, name: str, text: str) -> None:
    (workspaces / name).mkdir()
    (workspaces / name / "code.py").write_text(text)


def call(client, method: str, path: str, key: str, ip: str = "127.0.0.1", **kwargs):
    return client.open(path, method=method, headers={"x-api-key": key}, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def answer(response) -> tuple[int, dict]:
    return response.status_code, response.get_json()


@pytest.fixture
def alice(auth):
    auth.create_user("alice")
    return auth


@pytest.fixture
def two_workspaces(workspaces):
    workspace(workspaces, "alpha", "def alpha_thing():\n    return 1\n")
    workspace(workspaces, "beta", "def beta_thing():\n    return 2\n")
    return workspaces


# -- parsing once -------------------------------------------------------------------------------------------
def test_a_record_without_limits_gets_the_defaults():
    rules = rules_for({"id": "key_x"})
    assert (rules.allowlist, rules.scopes, rules.workspaces, rules.rate_limit) == (
        None,
        frozenset({"ask", "workspaces:read"}),
        None,
        None,
    )


def test_allowed_ips_are_normalised_like_allowed_ips_and_an_unreadable_entry_allows_nothing(caplog):
    rules = rules_for({"id": "key_x", "allowed_ips": ["10.0.0.0/8", "::ffff:192.0.2.0/120", "2001:db8::/32"]})
    for ip in ("10.1.2.3", "::ffff:10.1.2.3", "192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1"):
        assert rules.allowlist.allowed(ip), ip
    for ip in ("127.0.0.1", "11.0.0.1", "2001:db9::1", "", "not-an-ip"):
        assert not rules.allowlist.allowed(ip), ip
    with caplog.at_level(logging.WARNING, "askgate.auth"):
        broken = rules_for({"id": "key_y", "allowed_ips": ["10.0.0.0/8", "nonsense"]})
    assert not broken.allowlist.allowed("10.1.2.3")
    assert "key key_y has an unreadable allowed_ips" in caplog.text


# -- allowed_ips ----------------------------------------------------------------------------------------------
def test_a_key_outside_its_allowed_ips_is_refused_and_a_key_without_them_is_not(client, alice):
    limited = limited_key(alice, allowed_ips=["10.0.0.0/8"])
    free = limited_key(alice)
    assert answer(call(client, "GET", "/api/whoami", limited)) == (403, IP_DENIED)
    assert call(client, "GET", "/api/whoami", free).status_code == 200
    for ip in ("10.9.8.7", "::ffff:10.9.8.7"):
        assert call(client, "GET", "/api/whoami", limited, ip=ip).status_code == 200


def test_allowed_ips_come_in_addition_to_allowed_ips(make_app):
    app = make_app(ALLOWED_IPS="10.0.0.0/8,203.0.113.0/24")
    client = app.test_client()
    from tests.conftest import AuthActions

    auth = AuthActions(app, client)
    auth.create_user("alice")
    key = limited_key(auth, allowed_ips=["10.1.0.0/16", "198.51.100.0/24"])
    assert call(client, "GET", "/api/whoami", key, ip="10.1.2.3").status_code == 200
    assert answer(call(client, "GET", "/api/whoami", key, ip="10.2.0.1")) == (403, IP_DENIED)  # the key's
    assert answer(call(client, "GET", "/api/whoami", key, ip="198.51.100.1")) == (403, IP_DENIED)  # ALLOWED_IPS
    assert call(client, "GET", "/api/whoami", ADMIN_KEY, ip="203.0.113.9").status_code == 200


# -- scopes ---------------------------------------------------------------------------------------------------
def test_each_endpoint_needs_its_scope(client, alice, two_workspaces):
    ask_only = limited_key(alice, scopes=["ask"])
    read_only = limited_key(alice, scopes=["workspaces:read"])
    question = {"workspaceId": "alpha", "question": "alpha_thing"}
    assert answer(call(client, "GET", "/api/workspaces", ask_only)) == (403, lacks("workspaces:read"))
    assert call(client, "POST", "/api/ask", ask_only, json=question).status_code == 200
    assert answer(call(client, "POST", "/api/ask", read_only, json=question)) == (403, lacks("ask"))
    assert call(client, "GET", "/api/workspaces", read_only).status_code == 200
    for key in (ask_only, read_only):
        assert call(client, "GET", "/api/whoami", key).status_code == 200  # needs no scope


def test_writing_a_workspace_needs_workspaces_write(client, auth, two_workspaces):
    auth.create_user("root", admin=True)
    default = limited_key(auth, "root")
    for method, path in (("PUT", "/api/workspaces/alpha"), ("DELETE", "/api/workspaces/alpha")):
        response = call(
            client, method, path, default, data=zip_bytes({"x.py": "x = 1\n"}), content_type="application/zip"
        )
        assert answer(response) == (403, lacks("workspaces:write"))
    assert (two_workspaces / "alpha" / "code.py").read_text() == "def alpha_thing():\n    return 1\n"

    writer = limited_key(auth, "root", scopes=["ask", "workspaces:read", "workspaces:write"])
    body = zip_bytes({"fresh.py": "def fresh_thing():\n    return 3\n"})
    created = call(client, "PUT", "/api/workspaces/gamma", writer, data=body, content_type="application/zip")
    assert answer(created) == (201, {"id": "gamma", "file_count": 1, "size_bytes": 32})
    replaced = call(client, "PUT", "/api/workspaces/alpha", writer, data=body, content_type="application/zip")
    assert replaced.status_code == 200
    question = {"workspaceId": "alpha", "question": "fresh_thing"}
    assert call(client, "POST", "/api/ask", writer, json=question).get_json()["sources"][0]["path"] == "fresh.py"
    assert call(client, "DELETE", "/api/workspaces/gamma", writer).status_code == 204
    assert not (two_workspaces / "gamma").exists()


def test_a_members_key_an_admin_gave_workspaces_write_may_write(client, alice, two_workspaces):
    key = limited_key(alice, scopes=["workspaces:write"])
    body = zip_bytes({"x.py": "x = 1\n"})
    response = call(client, "PUT", "/api/workspaces/alpha", key, data=body, content_type="application/zip")
    assert answer(response) == (200, {"id": "alpha", "file_count": 1, "size_bytes": 6})
    assert answer(call(client, "POST", "/api/ask", key, json={"workspaceId": "alpha", "question": "x"})) == (
        403,
        lacks("ask"),
    )
    assert call(client, "DELETE", "/api/workspaces/alpha", key).status_code == 204
    assert not (two_workspaces / "alpha").exists()


def test_the_write_rule_itself_wants_the_scope_from_a_dashboard_key(app, two_workspaces):
    refused = "Putting a workspace needs an admin session, the admin key or a key with workspaces:write"
    body = zip_bytes({"x.py": "x = 1\n"})
    with app.app_context():
        for actor in (
            Actor("dashboard_key", "root", True, frozenset({"ask", "workspaces:read"})),
            Actor("client_key", None, False),
            Actor("session", "alice", False),
        ):
            with pytest.raises(accounts.AccountRefused, match=refused):
                accounts.put_workspace(actor, "alpha", io.BytesIO(body), "a.zip")
            assert not accounts.may_delete_workspaces(actor)
        writer = Actor("dashboard_key", "alice", False, frozenset({"workspaces:write"}))
        assert accounts.put_workspace(writer, "alpha", io.BytesIO(body), "a.zip")[1] is False
        assert accounts.may_delete_workspaces(writer)


# -- workspaces -----------------------------------------------------------------------------------------------
def test_a_key_limited_to_a_workspace_asks_only_about_it_and_lists_only_it(client, auth, two_workspaces):
    auth.create_user("root", admin=True)
    key = limited_key(auth, "root", workspaces=["alpha"], scopes=["ask", "workspaces:read", "workspaces:write"])
    ok = call(client, "POST", "/api/ask", key, json={"workspaceId": "alpha", "question": "alpha_thing"})
    assert ok.get_json()["sources"][0]["path"] == "code.py"
    refused = call(client, "POST", "/api/ask", key, json={"workspaceId": "beta", "question": "beta_thing"})
    assert answer(refused) == (403, cannot("beta"))
    listing = call(client, "GET", "/api/workspaces", key).get_json()["workspaces"]
    assert [ws["id"] for ws in listing] == ["alpha"]
    for method, path in (("PUT", "/api/workspaces/beta"), ("DELETE", "/api/workspaces/beta")):
        response = call(client, method, path, key, data=zip_bytes({"x.py": "x\n"}), content_type="application/zip")
        assert answer(response) == (403, cannot("beta"))
    assert (two_workspaces / "beta" / "code.py").read_text() == "def beta_thing():\n    return 2\n"
    # Everyone else still sees every workspace.
    listing = call(client, "GET", "/api/workspaces", ADMIN_KEY).get_json()["workspaces"]
    assert [ws["id"] for ws in listing] == ["alpha", "beta"]
    assert [ws["id"] for ws in call(client, "GET", "/api/workspaces", CLIENT_KEY).get_json()["workspaces"]] == [
        "alpha",
        "beta",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", (400, {"error": "Send a JSON object with Content-Type: application/json"})),
        (b"[1, 2]", (400, {"error": "Send a JSON object with Content-Type: application/json"})),
        (json.dumps({"workspaceId": 7, "question": "q"}).encode(), (400, {"error": "workspaceId is required"})),
        (b"[" * 100_000 + b"]" * 100_000, None),
    ],
)
def test_bad_ask_bodies_from_a_limited_key_are_the_usual_400s(make_app, two_workspaces, body, expected):
    app = make_app(API_MAX_JSON_BYTES="1000000")
    client = app.test_client()
    from tests.conftest import AuthActions

    auth = AuthActions(app, client)
    auth.create_user("alice")
    key = limited_key(auth, workspaces=["alpha"])
    response = call(client, "POST", "/api/ask", key, data=body, content_type="application/json")
    assert response.status_code == 400
    if expected:
        assert answer(response) == expected


# -- rate_limit -----------------------------------------------------------------------------------------------
def test_a_keys_own_rate_limit_is_its_hourly_limit(client, alice):
    key = limited_key(alice, rate_limit=3)
    other = limited_key(alice)
    seen = []
    for _ in range(3):
        response = call(client, "GET", "/api/whoami", key)
        seen.append(
            (response.status_code, response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"])
        )
    assert seen == [(200, "3", "2"), (200, "3", "1"), (200, "3", "0")]
    refused = call(client, "GET", "/api/whoami", key)
    assert answer(refused) == (429, {"error": "Rate limit exceeded"})
    assert refused.headers["X-RateLimit-Limit"] == "3" and int(refused.headers["Retry-After"]) > 0
    assert call(client, "GET", "/api/whoami", other).headers["X-RateLimit-Limit"] == "1000"


def test_refusals_by_the_keys_rules_do_not_spend_its_hour(client, alice):
    key = limited_key(alice, rate_limit=2, scopes=["ask"])
    for _ in range(5):
        assert call(client, "GET", "/api/workspaces", key).status_code == 403
    assert [call(client, "GET", "/api/whoami", key).status_code for _ in range(3)] == [200, 200, 429]


def test_the_log_line_says_which_rule_refused(client, alice, two_workspaces, caplog):
    lines = []
    ip_key = limited_key(alice, allowed_ips=["10.0.0.0/8"])
    scope_key = limited_key(alice, scopes=["ask"])
    ws_key = limited_key(alice, workspaces=["alpha"])
    with caplog.at_level(logging.INFO, "askgate.access"):
        call(client, "GET", "/api/whoami", ip_key)
        call(client, "GET", "/api/workspaces", scope_key)
        call(client, "POST", "/api/ask", ws_key, json={"workspaceId": "beta", "question": "q"})
        call(client, "GET", "/api/whoami", ws_key)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "askgate.access"]
    assert [(line["status"], line["outcome"]) for line in lines] == [
        (403, "ip_denied"),
        (403, "scope_denied"),
        (403, "workspace_denied"),
        (200, "ok"),
    ]


def test_changed_limits_count_from_the_next_request(client, alice, two_workspaces):
    key = limited_key(alice)
    assert call(client, "GET", "/api/workspaces", key).status_code == 200  # the principal is cached now
    key_id = call(client, "GET", "/api/whoami", key).get_json()["key"]["id"]
    with alice.app.app_context():
        accounts.update_key(Actor.operator(), key_id, {"scopes": ["ask"], "workspaces": ["alpha"], "rate_limit": 5})
    assert answer(call(client, "GET", "/api/workspaces", key)) == (403, lacks("workspaces:read"))
    refused = call(client, "POST", "/api/ask", key, json={"workspaceId": "beta", "question": "q"})
    assert answer(refused) == (403, cannot("beta"))
    assert call(client, "GET", "/api/whoami", key).headers["X-RateLimit-Limit"] == "5"
