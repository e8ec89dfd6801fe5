"""Two gunicorn "hosts" sharing one WORKSPACES_DIR, each with its own INDEX_DIR on local disk.

A workspace replaced through one host's dashboard is answered from the new files by the other on its next
question, even when the new files repeat the old ones' names, sizes and mtimes (as a cached or coarse clock on
a shared volume can show them): the other host sees the import's new token in the folder itself.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest
import requests

from tests.conftest import ADMIN_KEY, PASSWORD, csrf_from

pytestmark = pytest.mark.server

V1 = "def alpha_handler(request):\n    return request.get('alpha')\n"
V2 = "def omega_handler(request):\n    return request.get('omega')\n"


def _archive(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        member = tarfile.TarInfo("app.py")
        member.size = len(text.encode())
        archive.addfile(member, io.BytesIO(text.encode()))
    return buffer.getvalue()


def _signed_in(server) -> requests.Session:
    session = requests.Session()
    token = csrf_from(session.get(server.url + "/login", timeout=10).text)
    data = {"username": "root", "password": PASSWORD, "csrf_token": token}
    assert session.post(server.url + "/login", data=data, timeout=10).status_code == 200
    return session


def _upload(server, session: requests.Session, text: str, replace: bool) -> None:
    token = csrf_from(session.get(server.url + "/dashboard", timeout=10).text)
    data = {"workspace_id": "shop", "csrf_token": token, **({"replace": "y"} if replace else {})}
    files = {"archive": ("shop.tar.gz", _archive(text), "application/gzip")}
    page = session.post(server.url + "/workspaces/upload", data=data, files=files, timeout=30)
    assert page.status_code == 200
    assert "Workspace shop is uploaded: 1 files." in page.text


def _best(server, question: str) -> str | None:
    response = requests.post(
        server.url + "/api/ask",
        json={"workspaceId": "shop", "question": question},
        headers={"x-api-key": ADMIN_KEY},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    return sources[0]["symbol"] if sources else None


def _state(server) -> str:
    listed = requests.get(server.url + "/api/workspaces", headers={"x-api-key": ADMIN_KEY}, timeout=10).json()
    (shop,) = listed["workspaces"]
    return shop["state"]


def test_a_workspace_replaced_through_one_host_is_answered_from_the_new_files_by_the_other(
    start_server, workspaces, tmp_path
):
    from app.users.store import UserStore

    UserStore(workspaces).create("root", PASSWORD, "admin")
    index_a, index_b = tmp_path / "host-a-index", tmp_path / "host-b-index"
    host_a = start_server({"INDEX_DIR": str(index_a)})
    host_b = start_server({"INDEX_DIR": str(index_b)})
    admin = _signed_in(host_a)

    _upload(host_a, admin, V1, replace=False)
    assert _best(host_b, "alpha") == "alpha_handler"
    assert _best(host_a, "alpha") == "alpha_handler"
    assert _state(host_b) == "ready"

    old = os.stat(workspaces / "shop" / "app.py")
    _upload(host_a, admin, V2, replace=True)
    os.utime(workspaces / "shop" / "app.py", ns=(old.st_atime_ns, old.st_mtime_ns))
    new = os.stat(workspaces / "shop" / "app.py")
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns)

    assert _state(host_b) == "not_indexed"  # host B's index describes the old import
    assert _best(host_b, "omega") == "omega_handler"
    assert _best(host_b, "alpha") is None
    assert _best(host_a, "omega") == "omega_handler"
    assert _state(host_b) == "ready"

    for index in (index_a, index_b):
        assert {"shop.sqlite3", "shop.lock", "shop.job-lock", "shop.state.json"} <= {p.name for p in index.iterdir()}
    assert not (workspaces / ".index").exists()  # nothing of the indexes on the shared volume
