"""Who may upload, replace and delete a workspace: members upload new ones; replacing and deleting is for admins.

Pages (a signed-in member or admin) and the API (a session, a key made on the dashboard, the admin key) alike.
"""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.conftest import ADMIN_KEY, AuthActions


def _archive(text: str) -> io.BytesIO:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", text)
    archive.seek(0)
    return archive


def _existing(workspaces, text: str = "OLD = 1\n"):
    (workspaces / "shop").mkdir()
    (workspaces / "shop" / "app.py").write_text(text)


@pytest.fixture
def member(app, client, auth) -> AuthActions:
    auth.create_user("alice")
    auth.login("alice")
    return auth


@pytest.fixture
def admin(app, client, auth) -> AuthActions:
    auth.create_user("root", admin=True)
    auth.login("root")
    return auth


def _upload(client, auth, workspace_id: str, text: str, replace: bool = False):
    data = {"workspace_id": workspace_id, "archive": (_archive(text), "shop.zip"), "csrf_token": auth.csrf()}
    if replace:
        data["replace"] = "y"
    return client.post("/workspaces/upload", data=data, content_type="multipart/form-data", follow_redirects=True)


# -- pages -----------------------------------------------------------------------------------------------------
def test_a_member_uploads_a_new_workspace(client, member, workspaces):
    page = _upload(client, member, "  shop  ", "NEW = 1\n").get_data(as_text=True)
    assert "Workspace shop is uploaded: 1 files." in page
    assert (workspaces / "shop" / "app.py").read_text() == "NEW = 1\n"


def test_a_member_cannot_replace_a_workspace(client, member, workspaces):
    _existing(workspaces)
    page = _upload(client, member, "shop", "NEW = 1\n", replace=True).get_data(as_text=True)
    assert "Only an admin can replace an existing workspace." in page
    assert (workspaces / "shop" / "app.py").read_text() == "OLD = 1\n"
    page = _upload(client, member, "shop", "NEW = 1\n").get_data(as_text=True)  # nor by uploading over it
    assert "Upload refused:" in page
    assert (workspaces / "shop" / "app.py").read_text() == "OLD = 1\n"


def test_an_admin_replaces_a_workspace(client, admin, workspaces):
    _existing(workspaces)
    page = _upload(client, admin, "shop", "NEW = 1\n", replace=True).get_data(as_text=True)
    assert "Workspace shop is uploaded: 1 files." in page
    assert (workspaces / "shop" / "app.py").read_text() == "NEW = 1\n"


def test_a_member_cannot_delete_a_workspace_on_the_page(client, member, workspaces):
    _existing(workspaces)
    response = client.post("/workspaces/delete", data={"workspace_id": "shop", "csrf_token": member.csrf()})
    assert response.status_code == 403
    assert (workspaces / "shop" / "app.py").read_text() == "OLD = 1\n"


def test_an_admin_deletes_a_workspace_on_the_page(client, admin, workspaces):
    _existing(workspaces)
    response = client.post(
        "/workspaces/delete", data={"workspace_id": "shop", "csrf_token": admin.csrf()}, follow_redirects=True
    )
    assert "Workspace shop and its index are deleted." in response.get_data(as_text=True)
    assert not (workspaces / "shop").exists()


def test_the_dashboard_offers_replace_and_delete_to_admins_only(app, client, auth, workspaces):
    _existing(workspaces)
    auth.create_user("alice")
    auth.create_user("root", admin=True)
    auth.login("alice")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-workspace="shop"' in page
    assert "Delete workspace shop" not in page and 'name="replace"' not in page
    admin = app.test_client()
    AuthActions(app, admin).login("root")
    page = admin.get("/dashboard").get_data(as_text=True)
    assert 'aria-label="Delete workspace shop"' in page and 'name="replace"' in page


# -- the API ---------------------------------------------------------------------------------------------------
REFUSED = {"error": "Deleting a workspace needs an admin session, the admin key or a key with workspaces:write"}


@pytest.mark.parametrize("role", ["member", "admin"])
def test_dashboard_keys_without_workspaces_write_cannot_delete_a_workspace(app, client, auth, workspaces, role):
    auth.create_user("someone", admin=role == "admin")
    key = auth.new_key("someone")  # the default scopes: ask, workspaces:read
    _existing(workspaces)
    response = client.delete("/api/workspaces/shop", headers={"x-api-key": key})
    assert (response.status_code, response.get_json()) == (403, {"error": "This key lacks the workspaces:write scope"})
    assert (workspaces / "shop" / "app.py").read_text() == "OLD = 1\n"


def test_a_member_session_cannot_delete_a_workspace(client, member, workspaces):
    _existing(workspaces)
    response = client.delete("/api/workspaces/shop", headers={"X-CSRFToken": member.csrf()})
    assert (response.status_code, response.get_json()) == (403, REFUSED)
    assert (workspaces / "shop").is_dir()


def test_an_admin_session_deletes_a_workspace(client, admin, workspaces):
    _existing(workspaces)
    response = client.delete("/api/workspaces/shop", headers={"X-CSRFToken": admin.csrf()})
    assert (response.status_code, response.get_data()) == (204, b"")
    assert not (workspaces / "shop").exists()


def test_the_admin_key_deletes_a_workspace(client, workspaces):
    _existing(workspaces)
    response = client.delete("/api/workspaces/shop", headers={"x-api-key": ADMIN_KEY})
    assert (response.status_code, response.get_data()) == (204, b"")
    assert not (workspaces / "shop").exists()
    response = client.delete("/api/workspaces/shop", headers={"x-api-key": ADMIN_KEY})
    assert (response.status_code, response.get_json()) == (404, {"error": "Workspace not found"})


def test_a_full_disk_during_an_upload_is_a_message_not_a_500(client, member, workspaces, monkeypatch):
    import errno

    from app import accounts

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(accounts, "import_archive_stream", full)
    response = _upload(client, member, "shop", "NEW = 1\n")
    assert response.status_code == 200
    assert "Upload refused: The disk holding WORKSPACES_DIR is full; nothing was changed." in response.get_data(
        as_text=True
    )
    assert not (workspaces / "shop").exists()
