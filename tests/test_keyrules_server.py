"""Issue 12 through real gunicorn, on the file store and on Redis (STORE_URL and RATELIMIT_STORAGE_URI, 3 workers):
a key's workspaces, addresses, scopes and own hourly limit, and PUT /api/workspaces/<id> from CI.

Keys are made as an admin makes them: ``POST /api/keys`` with the admin key.
"""

from __future__ import annotations

import pytest
import requests

from tests.conftest import ADMIN_KEY
from tests.procnet import pin_by_worker
from tests.storeservers import ALPHA, BETA, answer, start, tgz_bytes

pytestmark = pytest.mark.server

ADMIN = {"x-api-key": ADMIN_KEY}
IP_DENIED = {"error": "Access denied from this IP address"}


def new_key(server, user: str, **limits) -> str:
    """A key of ``user`` with ``limits``, made as an admin makes it: ``POST /api/keys`` with the admin key."""
    created = requests.post(
        server.url + "/api/keys", json={"name": "ci", "user": user, **limits}, headers=ADMIN, timeout=10
    )
    assert created.status_code == 201, created.text
    assert {name: created.json()[name] for name in limits} == limits
    return created.json()["key"]


def ask(server, key: str, workspace_id: str, question: str) -> requests.Response:
    body = {"workspaceId": workspace_id, "question": question}
    return requests.post(server.url + "/api/ask", json=body, headers={"x-api-key": key}, timeout=30)


def get(server, path: str, key: str) -> requests.Response:
    return requests.get(server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def put(server, workspace_id: str, key: str, body) -> requests.Response:
    headers = {"x-api-key": key, "Content-Type": "application/gzip"}
    return requests.put(server.url + f"/api/workspaces/{workspace_id}", data=body, headers=headers, timeout=30)


@pytest.fixture(params=["files", pytest.param("redis", marks=pytest.mark.redis)])
def server(request, tmp_path, workspaces):
    live = start(request, tmp_path, workspaces, request.param, MAX_CONTENT_LENGTH=str(64 * 1024))
    yield live
    live.stop()


@pytest.fixture
def redis_server(request, tmp_path, workspaces):
    live = start(request, tmp_path, workspaces, "redis", MAX_CONTENT_LENGTH=str(64 * 1024))
    yield live
    live.stop()


def test_a_key_limited_to_one_workspace(server):
    key = new_key(server, "alice", workspaces=["alpha"])
    assert ask(server, key, "alpha", "alpha_thing").json()["sources"][0]["path"] == "alpha.py"
    assert answer(ask(server, key, "beta", "beta_thing")) == (403, {"error": "This key cannot access workspace beta"})
    assert [ws["id"] for ws in get(server, "/api/workspaces", key).json()["workspaces"]] == ["alpha"]
    assert [ws["id"] for ws in get(server, "/api/workspaces", ADMIN_KEY).json()["workspaces"]] == ["alpha", "beta"]


def test_allowed_ips_and_scopes(server):
    ten = new_key(server, "alice", allowed_ips=["10.0.0.0/8"])
    free = new_key(server, "alice")
    ask_only = new_key(server, "alice", scopes=["ask"])
    read_only = new_key(server, "alice", scopes=["workspaces:read"])
    assert answer(get(server, "/api/whoami", ten)) == (403, IP_DENIED)  # the test client is 127.0.0.1
    assert answer(ask(server, ten, "alpha", "alpha_thing"))[0] == 403
    assert get(server, "/api/whoami", free).json()["user"] == "alice"
    assert ask(server, free, "alpha", "alpha_thing").status_code == 200

    scope = "This key lacks the {} scope"
    assert answer(get(server, "/api/workspaces", ask_only)) == (403, {"error": scope.format("workspaces:read")})
    assert ask(server, ask_only, "alpha", "alpha_thing").status_code == 200
    assert answer(ask(server, read_only, "alpha", "alpha_thing")) == (403, {"error": scope.format("ask")})
    assert get(server, "/api/workspaces", read_only).status_code == 200
    refused = put(server, "alpha", free, tgz_bytes(BETA))
    assert answer(refused) == (403, {"error": scope.format("workspaces:write")})
    refused = requests.delete(server.url + "/api/workspaces/alpha", headers={"x-api-key": free}, timeout=10)
    assert answer(refused) == (403, {"error": scope.format("workspaces:write")})
    assert (server.workspaces / "alpha" / "alpha.py").read_text() == ALPHA["alpha.py"]


def test_ci_puts_a_workspace_with_a_workspaces_write_key_then_asks_about_the_new_files(server):
    writer = new_key(server, "root", scopes=["ask", "workspaces:read", "workspaces:write"])
    first = {"src/billing.py": "def charge_invoice(amount):\n    return amount * 2\n"}
    created = put(server, "shop", writer, tgz_bytes(first))
    size = len(first["src/billing.py"])
    assert answer(created) == (201, {"id": "shop", "file_count": 1, "size_bytes": size})
    assert created.headers["X-RateLimit-Limit"] == "1000"
    assert ask(server, writer, "shop", "charge_invoice").json()["sources"][0]["path"] == "src/billing.py"

    second = {"src/shipping.py": "def ship_parcel(address):\n    return address\n"}
    replaced = put(server, "shop", writer, tgz_bytes(second))
    assert answer(replaced) == (200, {"id": "shop", "file_count": 1, "size_bytes": len(second["src/shipping.py"])})
    assert ask(server, writer, "shop", "ship_parcel").json()["sources"][0]["path"] == "src/shipping.py"
    assert ask(server, writer, "shop", "charge_invoice").json()["sources"] == []

    # A refused archive changes nothing: not an archive, then a chunked body over MAX_CONTENT_LENGTH (64 KiB).
    refused = put(server, "shop", writer, b"not a tarball")
    assert answer(refused) == (400, {"error": "'upload.tar.gz' is not a valid tar archive (not a gzip file)"})
    too_large = put(server, "shop", writer, (b"\0" * 8192 for _ in range(9)))
    assert answer(too_large) == (
        413,
        {"error": "The archive is larger than 64 KiB (MAX_CONTENT_LENGTH, the upload limit)"},
    )
    assert ask(server, writer, "shop", "ship_parcel").json()["sources"][0]["path"] == "src/shipping.py"
    leftovers = [p.name for p in server.workspaces.iterdir() if p.name.startswith((".import-", ".upload-"))]
    assert leftovers == []


@pytest.mark.redis
def test_a_keys_rate_limit_of_3_holds_across_3_workers_on_redis(redis_server):
    server = redis_server
    key = new_key(server, "alice", rate_limit=3)
    connections = pin_by_worker(server, 3, 2)
    try:
        order = [conns[i] for i in range(2) for conns in connections.values()]  # worker 1, 2, 3, 1, 2, 3
        seen = []
        for conn in order:
            status, response, body = conn.get("/api/whoami", headers={"x-api-key": key})
            seen.append((status, response.getheader("X-RateLimit-Limit"), body.get("error")))
        assert seen == [(200, "3", None)] * 3 + [(429, "3", "Rate limit exceeded")] * 3
        assert len({conn.pid for conn in order[:3]}) == 3
    finally:
        for conns in connections.values():
            for conn in conns:
                conn.close()
