"""JSON API bodies: API_MAX_JSON_BYTES caps them before anything is parsed; deep nesting is a 400, never a 500."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time

import pytest

from app.ask import indexjobs
from tests.conftest import ADMIN_KEY, AuthActions
from tests.storeservers import tgz_bytes

ADMIN = {"x-api-key": ADMIN_KEY}
TOO_LARGE = {"error": "Request body too large"}
NOT_VALID = {"error": "Request body is not valid JSON"}


def _padded(size: int) -> bytes:
    """A JSON object for /api/ask of exactly ``size`` bytes."""
    head, tail = b'{"workspaceId": "demo", "question": "q", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _assert(response, status: int, body: dict) -> None:
    assert (response.status_code, response.mimetype, response.get_json()) == (status, "application/json", body)


def test_json_bodies_over_the_default_64_kib_are_413(client, auth):
    auth.create_user("alice")
    key_id = auth.services.keys.create("alice", "k").record["id"]
    big = _padded(64 * 1024 + 1)
    for method, path in (("post", "/api/ask"), ("post", "/api/keys"), ("patch", f"/api/keys/{key_id}")):
        response = getattr(client, method)(path, data=big, content_type="application/json", headers=ADMIN)
        _assert(response, 413, TOO_LARGE)
    assert auth.services.keys.get(key_id)["revoked_at"] is None
    # Refused before authentication: a stranger's huge body is not read either.
    _assert(client.post("/api/ask", data=big, content_type="application/json"), 413, TOO_LARGE)


def test_a_body_at_the_limit_is_parsed(client):
    response = client.post("/api/ask", data=_padded(64 * 1024), content_type="application/json", headers=ADMIN)
    _assert(response, 404, {"error": "Workspace not found"})


def test_the_limit_is_configurable_and_uploads_keep_max_content_length(make_app):
    app = make_app(API_MAX_JSON_BYTES="2048")
    client = app.test_client()
    ask = {"content_type": "application/json", "headers": ADMIN}
    _assert(client.post("/api/ask", data=_padded(2049), **ask), 413, TOO_LARGE)
    _assert(client.post("/api/ask", data=_padded(2048), **ask), 404, {"error": "Workspace not found"})
    # The dashboard's archive upload is far larger than the JSON limit and still lands.
    auth = AuthActions(app, client)
    auth.create_user("alice")
    auth.login()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = os.urandom(48 * 1024).hex().encode()  # incompressible: the upload is well over 2048 bytes
        info = tarfile.TarInfo("big.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert len(archive.getvalue()) > 10 * 2048
    form = {"workspace_id": "big", "archive": (io.BytesIO(archive.getvalue()), "big.tar.gz"), "csrf_token": auth.csrf()}
    response = client.post("/workspaces/upload", data=form, content_type="multipart/form-data")
    assert response.status_code == 303
    assert (app.extensions["askgate"].config.workspaces_dir / "big" / "big.txt").read_bytes() == data


@pytest.mark.parametrize("depth", [5_000, 30_000])
def test_deep_nesting_is_a_400_not_a_500(client, depth):
    body = "[" * depth + "]" * depth
    _assert(client.post("/api/ask", data=body, content_type="application/json", headers=ADMIN), 400, NOT_VALID)
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    _assert(client.post("/api/keys", data=body, content_type="application/json", headers=ADMIN), 400, NOT_VALID)


# -- through real gunicorn ---------------------------------------------------------------------------------
def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, json.loads(rest[:length])


def test_a_50_mb_json_body_costs_the_worker_no_memory(live_server):
    server = live_server()
    (worker,) = server.wait_workers(1)
    body = b'{"workspaceId": "demo", "question": "q", "pad": [' + b"1," * (24 * 1024 * 1024) + b"1]}"
    head = (
        f"POST /api/ask HTTP/1.1\r\nHost: x\r\nx-api-key: {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + body[: 1024 * 1024])
        status, payload = _response(sock)
    assert (status, payload) == (413, TOO_LARGE)
    assert time.monotonic() - started < 10
    assert _vm_hwm_kib(worker) < 200 * 1024, f"worker peak RSS {_vm_hwm_kib(worker)} KiB"
    # The server still answers.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _response(sock) == (200, {"status": "ok"})


def test_a_chunked_json_body_is_cut_off_at_the_limit(live_server):
    server = live_server()
    (worker,) = server.wait_workers(1)
    head = (
        f"POST /api/ask HTTP/1.1\r\nHost: x\r\nx-api-key: {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"[" * 16384
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)))
        assert _response(sock) == (413, TOO_LARGE)  # never waits for the rest: 128 KiB sent, no last chunk
    assert _vm_hwm_kib(worker) < 200 * 1024
    body = _padded(64 * 1024)  # exactly at the limit, in chunks: parsed
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert _response(sock) == (404, {"error": "Workspace not found"})


# A multipart part whose Content-Disposition has no usable name (here an unclosed quote): RFC 7578 requires one.
# werkzeug keeps such a part under the key None, and flask-wtf's CSRF check failed on it with a 500.
NAMELESS_PART = b'--b\r\nContent-Disposition: form-data; name="x\\"\r\n\r\nv\r\n'
MULTIPART = "multipart/form-data; boundary=b"


def test_a_nameless_multipart_part_on_a_page_is_the_form_expired_page_not_a_500(client, auth):
    auth.create_user("alice")
    response = client.post("/login", data=NAMELESS_PART + b"--b--\r\n", content_type=MULTIPART)

    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302  # nobody signed in


def test_a_nameless_multipart_part_is_dropped_and_the_named_ones_still_count(client, auth, workspaces):
    auth.create_user("alice", admin=True)
    auth.login("alice")
    headers = {"X-CSRFToken": auth.csrf()}
    only_nameless = NAMELESS_PART + b"--b--\r\n"
    response = client.put("/api/workspaces/shop", data=only_nameless, content_type=MULTIPART, headers=headers)
    _assert(response, 400, {"error": 'Send the archive in the multipart field "archive"'})
    assert not (workspaces / "shop").exists()

    source = "def charge_invoice(amount):\n    return amount\n"
    archive = tgz_bytes({"shop/billing.py": source})
    with_archive = (
        NAMELESS_PART
        + b'--b\r\nContent-Disposition: form-data; name="archive"; filename="src.tar.gz"\r\n'
        + b"Content-Type: application/gzip\r\n\r\n"
        + archive
        + b"\r\n--b--\r\n"
    )
    response = client.put("/api/workspaces/shop", data=with_archive, content_type=MULTIPART, headers=headers)
    assert (response.status_code, response.get_json()) == (201, {"id": "shop", "file_count": 1, "size_bytes": 46})
    assert (workspaces / "shop" / "shop" / "billing.py").read_text() == source
    indexjobs.wait_until_indexed(workspaces, "shop", timeout=30)  # its background index, done before the next test
