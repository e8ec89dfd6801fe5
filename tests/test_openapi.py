"""The OpenAPI document at /api/openapi.json: complete, valid, and true to a live server (schemathesis)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.keys.format import generate_key
from app.keys.store import KeyStore
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, CSRF_RE, PASSWORD, LiveServer

IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask adds these to every rule
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CALLERS = ("anonymous", "dashboard_key", "admin_key", "session")
MAX_EXAMPLES = 50  # per operation, caller and mode (4 x 2 x 10 operations): about half a minute
WORKSPACE = "demo"  # the workspaceId of the document's own AskRequest example


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def routed_operations(app) -> set[tuple[str, str]]:
    """Every (path, method) the app routes under /api, in OpenAPI's ``{name}`` path syntax."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api" or rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            found |= {(path, method) for method in rule.methods - IGNORED_METHODS}
    return found


# -- the document itself ------------------------------------------------------------------------------------
def test_document_is_served_without_credentials_as_json(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Askgate API"
    assert "X-RateLimit-Limit" not in response.headers  # exempt from the per-client limit, like /api/health


def test_every_api_route_is_documented_and_nothing_else(app, client):
    document = client.get("/api/openapi.json").get_json()

    assert routed_operations(app) == documented_operations(document)
    assert ("/api/openapi.json", "GET") in routed_operations(app)


def test_document_is_a_valid_openapi_31_document(client):
    schema = schemathesis.openapi.from_dict(client.get("/api/openapi.json").get_json())

    schema.validate()  # raises on any violation of the OpenAPI 3.1 meta-schema


def test_security_schemes_are_the_three_ways_in(client):
    document = client.get("/api/openapi.json").get_json()

    assert document["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        "bearer": {"type": "http", "scheme": "bearer", "description": "The same keys as x-api-key."},
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "session",
            "description": "A signed-in dashboard session; writes also need the X-CSRFToken header.",
        },
    }
    assert document["security"] == [{"apiKey": []}, {"bearer": []}, {"session": []}]
    assert document["paths"]["/api/health"]["get"]["security"] == []
    assert document["paths"]["/api/openapi.json"]["get"]["security"] == []


def test_error_bodies_and_success_shapes(client):
    document = client.get("/api/openapi.json").get_json()
    components = document["components"]
    error_ref = {"$ref": "#/components/schemas/Error"}

    for status in ("400", "401", "403", "404", "405", "413", "429", "500", "503", "507"):
        assert components["responses"][status]["content"]["application/json"]["schema"] == error_ref
    assert components["schemas"]["Error"]["required"] == ["error"]
    assert components["schemas"]["Error"]["properties"]["error"]["type"] == "string"
    assert components["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert components["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    limits = ["scopes", "workspaces", "rate_limit", "allowed_ips"]
    summary = ["id", "name", "prefix", "created_at", "expires_at", *limits]
    assert components["schemas"]["NewKey"]["required"] == [*summary, "key"]
    assert components["schemas"]["KeySummary"]["required"] == summary  # whoami's key
    assert set(components["schemas"]["Key"]["required"]) >= {*limits, "previous_expires_at", "is_active", "status"}
    assert components["schemas"]["RotatedKey"]["required"] == [*components["schemas"]["Key"]["required"], "key"]
    assert set(components["schemas"]["KeyUpdate"]["properties"]) == {"name", *limits, "active", "is_active"}
    assert components["schemas"]["Whoami"]["required"] == ["auth_method", "user", "role", "key"]
    assert components["schemas"]["AskResult"]["required"] == ["workspaceId", "question", "answer", "sources", "engine"]
    assert components["schemas"]["Source"]["required"] == [
        "path",
        "start_line",
        "end_line",
        "symbol",
        "snippet",
        "score",
        "callers",
        "callees",
    ]
    neighbours = {"type": "array", "items": {"$ref": "#/components/schemas/SymbolRef"}, "maxItems": 5}
    for field in ("callers", "callees"):
        assert {
            k: v for k, v in components["schemas"]["Source"]["properties"][field].items() if k != "description"
        } == (neighbours)
    assert components["schemas"]["SymbolRef"]["required"] == ["symbol", "path", "line"]
    assert components["schemas"]["SymbolRef"]["properties"]["line"] == {
        "type": "integer",
        "minimum": 1,
        "description": "Where the definition starts.",
    }
    paths = document["paths"]
    assert set(paths["/api/keys"]["post"]["responses"]) == {"201", "400", "401", "403", "413", "429", "503", "507"}
    assert set(paths["/api/ask"]["post"]["responses"]) == {"200", "400", "401", "403", "404", "413", "429", "503"}
    assert set(paths["/api/keys/{key_id}"]["delete"]["responses"]) >= {"204", "404"}
    rotate = paths["/api/keys/{key_id}/rotate"]["post"]
    assert set(rotate["responses"]) == {"201", "400", "401", "403", "404", "409", "413", "429", "503", "507"}
    assert rotate["requestBody"]["required"] is False
    assert rotate["responses"]["201"]["headers"]["Cache-Control"]["schema"]["const"] == "no-store"


def test_undocumented_methods_and_paths_answer_the_documented_error_shapes(client):
    """405 and unknown-path 404 are not per-operation responses; they answer with the shared components."""
    wrong_method = client.put("/api/health")
    unknown = client.get("/api/no-such-thing")

    assert wrong_method.status_code == 405
    assert wrong_method.get_json() == {"error": "Method not allowed: use GET"}
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert unknown.status_code == 404
    assert unknown.get_json() == {"error": "Not found: the API's routes are listed at /api/openapi.json"}


# -- the error answers a fuzzer rarely reaches, validated against the document in-process ---------------------
def _validated(app, path: str, method: str, response, checks=CHECKS, **case_kwargs):
    """Check a test-client response with schemathesis' own conformance checks for that operation."""
    schema = schemathesis.openapi.from_dict(app.test_client().get("/api/openapi.json").get_json())
    case = schema[path][method].Case(**case_kwargs)
    case.validate_response(response, checks=checks)
    return response


def test_rate_limited_answers_conform(make_app):
    app = make_app(API_RATE_LIMIT="1")
    client = app.test_client()
    client.get("/api/whoami", headers={"x-api-key": ADMIN_KEY})

    response = _validated(app, "/api/whoami", "GET", client.get("/api/whoami", headers={"x-api-key": ADMIN_KEY}))

    assert (response.status_code, response.get_json()) == (429, {"error": "Rate limit exceeded"})
    assert int(response.headers["Retry-After"]) > 0


def test_throttled_failed_attempts_conform(make_app):
    app = make_app(AUTH_FAILURE_LIMIT="1/minute")
    client = app.test_client()
    client.get("/api/whoami", headers={"x-api-key": "wrong"})

    response = _validated(app, "/api/whoami", "GET", client.get("/api/whoami", headers={"x-api-key": "wrong"}))

    assert (response.status_code, response.get_json()) == (429, {"error": "Rate limit exceeded"})


def test_ip_refusals_conform(make_app):
    app = make_app(ALLOWED_IPS="203.0.113.0/24")
    response = app.test_client().get("/api/workspaces", headers={"x-api-key": ADMIN_KEY})

    _validated(app, "/api/workspaces", "GET", response)

    assert (response.status_code, response.get_json()) == (403, {"error": "Access denied from this IP address"})


def test_too_large_bodies_conform(make_app):
    app = make_app(API_MAX_JSON_BYTES="1024")
    body = {"workspaceId": "demo", "question": "x" * 2000}
    response = app.test_client().post("/api/ask", json=body, headers={"x-api-key": ADMIN_KEY})

    _validated(app, "/api/ask", "POST", response, body=body)

    assert (response.status_code, response.get_json()) == (413, {"error": "Request body too large"})


def test_an_unreadable_key_store_conforms(app, workspaces):
    (workspaces / "api-keys.json").write_text("{ not json")
    client = app.test_client()
    lookup = client.get("/api/whoami", headers={"Authorization": f"Bearer {generate_key()}"})
    listing = client.get("/api/keys", headers={"x-api-key": ADMIN_KEY})

    for path, response in (("/api/whoami", lookup), ("/api/keys", listing)):
        _validated(app, path, "GET", response, checks=CHECKS[1:])  # a 503 is the point here

        assert (response.status_code, response.get_json()) == (503, {"error": "Key store unavailable"})


# -- schemathesis against a live gunicorn -------------------------------------------------------------------
class Caller:
    """Credentials to put on every generated request, replacing any schemathesis generated for them."""

    def __init__(self, name: str, headers: dict | None = None, cookies: dict | None = None) -> None:
        self.name = name
        self.headers = headers or {}
        self.cookies = cookies or {}

    def apply(self, case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("x-api-key", "authorization")}
        cookies = {k: v for k, v in (case.cookies or {}).items() if k != "session"}
        if self.name == "session":
            headers.pop("X-CSRFToken", None)
        case.headers = {**headers, **self.headers}
        case.cookies = {**cookies, **self.cookies}


def _seed_workspace(root: Path) -> None:
    folder = root / WORKSPACE
    if folder.is_dir():
        return
    folder.mkdir()
    (folder / "cookies.py").write_text(
        '"""Session cookies."""\n\n\n'
        "def save_session(response, session):\n"
        '    """Set the session cookie on the response."""\n'
        '    response.set_cookie("session", session.sign(), httponly=True)\n'
    )
    (folder / "README.md").write_text("# demo\n\nA tiny workspace for the API tests.\n")


def _session_login(base_url: str, username: str) -> tuple[dict, str]:
    http = requests.Session()
    page = http.get(base_url + "/login", timeout=10)
    token = CSRF_RE.search(page.text).group(1)
    done = http.post(
        base_url + "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 302, done.text
    dashboard = http.get(base_url + "/dashboard", timeout=10)
    return {"session": http.cookies["session"]}, CSRF_RE.search(dashboard.text).group(1)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One gunicorn for all callers: generous limits so 429s do not drown the other answers."""
    tmp = tmp_path_factory.mktemp("openapi")
    workspaces = tmp / "workspaces"
    workspaces.mkdir()
    users = UserStore(workspaces)
    users.create("root", PASSWORD, "admin")
    users.create("alice", PASSWORD, "member")
    _seed_workspace(workspaces)
    dashboard_key = KeyStore(workspaces).create("alice", "schemathesis", None).key
    server = LiveServer(
        workspaces,
        {"API_RATE_LIMIT": "100000", "AUTH_FAILURE_LIMIT": "100000/minute", "LOGIN_RATE_LIMIT": "1000/minute"},
        tmp / "gunicorn.log",
    )
    server.dashboard_key = dashboard_key
    yield server
    server.stop()


def make_caller(name: str, server) -> Caller:
    if name == "dashboard_key":
        return Caller(name, {"Authorization": f"Bearer {server.dashboard_key}"})
    if name == "admin_key":
        return Caller(name, {"x-api-key": ADMIN_KEY})
    if name == "session":
        cookies, token = _session_login(server.url, "root")
        return Caller(name, {"X-CSRFToken": token}, cookies)
    return Caller(name)


@pytest.fixture(scope="module")
def callers(module_server) -> dict[str, Caller]:
    return {name: make_caller(name, module_server) for name in CALLERS}


@pytest.fixture(scope="module")
def live_schema(module_server):
    """The document as the live server serves it, loaded by schemathesis."""
    return schemathesis.openapi.from_url(module_server.url + "/api/openapi.json")


def fuzz(operation, mode: GenerationMode, caller: Caller, server) -> None:
    """Send ``MAX_EXAMPLES`` generated requests for one operation and validate every response."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing case is reported as found
    )
    def run(case) -> None:
        caller.apply(case)
        case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=30)

    run()


@pytest.mark.server
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("caller_name", CALLERS)
def test_live_server_conforms_to_the_document(live_schema, callers, module_server, caller_name, mode):
    operations = [result.ok() for result in live_schema.get_all_operations()]
    # schemathesis leaves out the document's own URL; test_document_is_served_... covers it.
    assert {(op.path, op.method.upper()) for op in operations} == documented_operations(live_schema.raw_schema) - {
        ("/api/openapi.json", "GET")
    }

    log_start = len(module_server.log())
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and "requestBody" not in operation.definition.raw:
            continue  # nothing to get wrong: a path segment or a missing header is any string
        fuzz(operation, mode, callers[caller_name], module_server)

    log = module_server.log()[log_start:]
    entries = [json.loads(line) for line in log.splitlines() if line.startswith('{"time"')]
    assert "Traceback" not in log
    assert [e for e in entries if e["status"] >= 500] == []
    # The credentials really were used: otherwise every answer is a 401 and the run proves little.
    assert {e["auth_method"] for e in entries} == {None if caller_name == "anonymous" else caller_name}
    assert len(entries) >= MAX_EXAMPLES * 3


@pytest.mark.server
@pytest.mark.parametrize("caller_name", ["dashboard_key", "admin_key", "session"])
def test_documented_ask_example_is_answered_as_documented(live_schema, callers, module_server, caller_name):
    _seed_workspace(module_server.workspaces)  # again: an admin caller may have fuzzed DELETE /api/workspaces/demo
    operation = live_schema["/api/ask"]["POST"]
    case = operation.Case(body={"workspaceId": WORKSPACE, "question": "Where is the session cookie set?"})
    callers[caller_name].apply(case)

    response = case.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)

    assert response.status_code == 200
    assert response.json()["sources"][0]["path"] == "cookies.py"


@pytest.mark.server
def test_ask_page_fragment_for_a_session_is_the_documented_html(live_schema, callers, module_server):
    _seed_workspace(module_server.workspaces)
    case = live_schema["/api/ask"]["POST"].Case(body={"workspaceId": WORKSPACE, "question": "session cookie"})
    callers["session"].apply(case)
    case.headers["Accept"] = "text/html"

    response = case.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)

    assert response.status_code == 200
    assert response.headers["content-type"] == ["text/html; charset=utf-8"]
    assert 'class="source-path">cookies.py</code>' in response.text


@pytest.mark.server
@pytest.mark.parametrize("caller_name", ["admin_key", "session"])
def test_revoking_then_deleting_a_real_key_is_answered_as_documented(live_schema, callers, module_server, caller_name):
    key_id = KeyStore(module_server.workspaces).create("alice", "doomed", 30).record["id"]
    operations = live_schema["/api/keys/{key_id}"]
    revoke = operations["PATCH"].Case(path_parameters={"key_id": key_id}, body={"active": False})
    delete = operations["DELETE"].Case(path_parameters={"key_id": key_id})
    for case in (revoke, delete):
        callers[caller_name].apply(case)

    revoked = revoke.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    deleted = delete.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    gone = delete.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)

    assert (revoked.status_code, revoked.json()["id"], revoked.json()["status"]) == (200, key_id, "revoked")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (gone.status_code, gone.json()) == (404, {"error": "Key not found"})


@pytest.mark.server
@pytest.mark.parametrize("caller_name", ["admin_key", "session"])
def test_limiting_and_rotating_a_real_key_is_answered_as_documented(live_schema, callers, module_server, caller_name):
    _seed_workspace(module_server.workspaces)
    limits = {"scopes": ["ask"], "workspaces": [WORKSPACE], "rate_limit": 50, "allowed_ips": ["10.0.0.0/8"]}
    create = live_schema["/api/keys"]["POST"].Case(body={"name": "limited", "user": "alice", **limits})
    callers[caller_name].apply(create)
    created = create.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    assert created.status_code == 201
    key_id = created.json()["id"]
    assert {name: created.json()[name] for name in limits} == limits

    update = live_schema["/api/keys/{key_id}"]["PATCH"].Case(
        path_parameters={"key_id": key_id}, body={"name": "narrower", "allowed_ips": None}
    )
    rotate = live_schema["/api/keys/{key_id}/rotate"]["POST"].Case(
        path_parameters={"key_id": key_id}, body={"grace_seconds": 60}
    )
    revoke = live_schema["/api/keys/{key_id}"]["PATCH"].Case(
        path_parameters={"key_id": key_id}, body={"is_active": False}
    )
    for case in (update, rotate, revoke):
        callers[caller_name].apply(case)

    updated = update.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    rotated = rotate.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    revoked = revoke.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)
    too_late = rotate.call_and_validate(base_url=module_server.url, checks=CHECKS, timeout=30)

    assert (updated.status_code, updated.json()["name"], updated.json()["allowed_ips"]) == (200, "narrower", None)
    assert (rotated.status_code, rotated.json()["id"], rotated.json()["rate_limit"]) == (201, key_id, 50)
    assert rotated.json()["previous_expires_at"] is not None
    assert (revoked.status_code, revoked.json()["is_active"]) == (200, False)
    assert (too_late.status_code, too_late.json()) == (409, {"error": "Only an active key can be rotated"})
