"""PUT /api/workspaces/<id>: an archive body creates (201) or replaces (200) a workspace, for CI.

Who: the admin key, an admin session with CSRF, or an admin's dashboard key with ``workspaces:write`` (those are
in tests/test_keyrules.py). The archive goes through the dashboard upload's checks; a refused one changes nothing.
"""

from __future__ import annotations

import io

import pytest

from tests.conftest import ADMIN_KEY, CLIENT_KEY
from tests.storeservers import tgz_bytes, zip_bytes

ADMIN = {"x-api-key": ADMIN_KEY}
PUT_REFUSED = {"error": "Putting a workspace needs an admin session, the admin key or a key with workspaces:write"}


OLD = {"shop/cart.py": "def add_to_cart(item):\n    return [item]\n"}
NEW = {"shop/billing.py": "def charge_invoice(amount):\n    return amount * 2\n", "README.md": "# shop\n"}


def put(client, workspace_id: str, body: bytes, content_type: str = "application/zip", headers: dict | None = None):
    return client.put(f"/api/workspaces/{workspace_id}", data=body, content_type=content_type, headers=headers or ADMIN)


def ask(client, workspace_id: str, question: str, headers: dict | None = None):
    return client.post("/api/ask", json={"workspaceId": workspace_id, "question": question}, headers=headers or ADMIN)


def files_of(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_admin_key_creates_then_replaces_a_workspace_and_asks_are_answered_from_the_new_files(client, workspaces):
    created = put(client, "shop", zip_bytes(OLD))
    assert (created.status_code, created.get_json()) == (
        201,
        {"id": "shop", "file_count": 1, "size_bytes": len(OLD["shop/cart.py"])},
    )
    assert ask(client, "shop", "add_to_cart").get_json()["sources"][0]["path"] == "shop/cart.py"

    replaced = put(client, "shop", tgz_bytes(NEW), "application/gzip")
    size = sum(len(text) for text in NEW.values())
    assert (replaced.status_code, replaced.get_json()) == (200, {"id": "shop", "file_count": 2, "size_bytes": size})
    assert {k: v for k, v in files_of(workspaces / "shop").items() if not k.startswith(".")} == NEW
    answer = ask(client, "shop", "charge_invoice").get_json()
    assert answer["sources"][0]["path"] == "shop/billing.py"
    assert ask(client, "shop", "add_to_cart").get_json()["sources"] == []
    assert "X-RateLimit-Limit" in replaced.headers
    assert not [p.name for p in workspaces.iterdir() if p.name.startswith((".import-", ".upload-", ".replaced-"))]


def test_a_multipart_field_archive_works_too(client):
    data = {"archive": (io.BytesIO(tgz_bytes(NEW)), "src.tar.gz")}
    response = client.put("/api/workspaces/shop", data=data, content_type="multipart/form-data", headers=ADMIN)
    assert (response.status_code, response.get_json()["file_count"]) == (201, 2)
    # The part's own type says the format when its file name does not.
    data = {"archive": (io.BytesIO(zip_bytes(OLD)), "blob", "application/zip")}
    response = client.put("/api/workspaces/shop", data=data, content_type="multipart/form-data", headers=ADMIN)
    assert (response.status_code, response.get_json()["file_count"]) == (200, 1)
    response = client.put(
        "/api/workspaces/shop", data={"other": "x"}, content_type="multipart/form-data", headers=ADMIN
    )
    assert (response.status_code, response.get_json()) == (
        400,
        {"error": 'Send the archive in the multipart field "archive"'},
    )


def test_an_admin_session_needs_the_csrf_header(client, auth):
    auth.create_user("root", admin=True)
    auth.login("root")
    refused = put(client, "shop", zip_bytes(OLD), headers={})
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith("CSRF token missing or invalid")
    created = put(client, "shop", zip_bytes(OLD), headers={"X-CSRFToken": auth.csrf()})
    assert created.status_code == 201


def test_members_and_client_keys_are_refused_and_nothing_changes(app, client, auth, workspaces):
    put(client, "shop", zip_bytes(OLD))
    auth.create_user("alice")
    auth.login("alice")
    member_session = (client, {"X-CSRFToken": auth.csrf()})
    for caller, headers in (member_session, (app.test_client(), {"x-api-key": CLIENT_KEY})):
        for workspace_id in ("shop", "fresh"):
            response = put(caller, workspace_id, zip_bytes(NEW), headers=headers)
            assert (response.status_code, response.get_json()) == (403, PUT_REFUSED)
    assert files_of(workspaces / "shop").keys() >= {"shop/cart.py"}
    assert not (workspaces / "fresh").exists()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not an archive", "application/zip", "'upload.zip' is not a valid zip archive (File is not a zip file)"),
        (b"not an archive", "application/gzip", "'upload.tar.gz' is not a valid tar archive (not a gzip file)"),
        (
            zip_bytes({"../evil.py": "x = 1\n"}),
            "application/zip",
            "Archive member '../evil.py' escapes the workspace folder",
        ),
        (zip_bytes({"dir/": ""}), "application/zip", "'upload.zip' contains no files"),
    ],
)
def test_a_refused_archive_changes_nothing_and_says_why(client, workspaces, body, content_type, message):
    put(client, "shop", zip_bytes(OLD))
    before = files_of(workspaces / "shop")
    response = put(client, "shop", body, content_type)
    assert (response.status_code, response.get_json()) == (400, {"error": message})
    assert files_of(workspaces / "shop") == before
    assert ask(client, "shop", "add_to_cart").get_json()["sources"][0]["path"] == "shop/cart.py"
    assert [p.name for p in workspaces.iterdir() if p.is_dir() and not p.name.startswith(".")] == ["shop"]
    assert not [p.name for p in workspaces.iterdir() if p.name.startswith((".import-", ".upload-", ".replaced-"))]


def test_bad_requests_are_clear_json_errors(client, workspaces):
    response = put(client, "shop", b'{"a": 1}', "application/json")
    assert (response.status_code, response.get_json()) == (
        415,
        {
            "error": "Send the archive as the body with Content-Type application/zip or application/gzip, "
            'or in the multipart field "archive"'
        },
    )
    for workspace_id in (".hidden", "x" * 300, "a b"):
        response = put(client, workspace_id, zip_bytes(OLD))
        assert response.status_code == 400
        assert response.get_json()["error"].startswith(f"Invalid workspace id '{workspace_id[:200]}'")
    assert [p.name for p in workspaces.iterdir() if not p.name.startswith(".")] == []


def test_the_body_may_be_as_large_as_max_content_length_not_api_max_json_bytes(make_app, workspaces):
    # Stored (incompressible enough) so the archive's size is known: just over the JSON limit, under the upload one.
    files = {"big.py": "".join(f"value_{n} = {n * 7919 % 104729}\n" for n in range(6000))}
    body = zip_bytes(files)
    app = make_app(API_MAX_JSON_BYTES="1024", MAX_CONTENT_LENGTH=str(len(body)))
    client = app.test_client()
    assert len(body) > 1024
    assert put(client, "shop", body).status_code == 201  # exactly at the limit
    app = make_app(API_MAX_JSON_BYTES="1024", MAX_CONTENT_LENGTH=str(len(body) - 1))
    client = app.test_client()
    before = files_of(workspaces / "shop")
    response = put(client, "shop", zip_bytes({"other.py": "x = 1\n"}) + b"\0" * len(body))
    assert (response.status_code, response.get_json()) == (
        413,
        {"error": f"The archive is larger than {_human(len(body) - 1)} (MAX_CONTENT_LENGTH, the upload limit)"},
    )
    assert files_of(workspaces / "shop") == before


def _human(size: int) -> str:
    from app.ask.unpack import human

    return human(size)
