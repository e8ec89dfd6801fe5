"""gunicorn on the file store or on Redis, for the tests that must hold on both (``tests/test_keys_server.py``,
``tests/test_keyrules_server.py``), and the archives CI would upload.

``start`` serves with the project's ``gunicorn.conf.py``: one worker on the files (memory limits), three on Redis
(``STORE_URL`` and ``RATELIMIT_STORAGE_URI``), after making the users ``root`` (admin) and ``alice`` (member) and the
workspaces ``alpha`` and ``beta``.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import requests

from app.stores import Stores
from tests.conftest import PASSWORD, LiveServer

REDIS_WORKERS = 3
ALPHA = {"alpha.py": "def alpha_thing():\n    return 1\n"}
BETA = {"beta.py": "def beta_thing():\n    return 2\n"}


def write_files(folder: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


def start(request, tmp_path: Path, workspaces: Path, backend: str, **env: str) -> LiveServer:
    """The server on ``backend`` ("files" or "redis"); ``env`` adds to its environment. Its ``store`` is the store
    URL (or "files") and ``workers`` how many it runs, both waited for."""
    store = "files"
    if backend == "redis":
        store = request.getfixturevalue("redis_db")
        env |= {"STORE_URL": store, "RATELIMIT_STORAGE_URI": store, "WEB_CONCURRENCY": str(REDIS_WORKERS)}
    users = Stores.open(store, workspaces).users
    if users.get("root") is None:  # a test may start a second server on the same stores
        users.create("root", PASSWORD, "admin")
        users.create("alice", PASSWORD, "member")
    write_files(workspaces / "alpha", ALPHA)
    write_files(workspaces / "beta", BETA)
    live = LiveServer(workspaces, env, tmp_path / "gunicorn.log")
    live.store = store
    live.workers = REDIS_WORKERS if backend == "redis" else 1
    live.wait_workers(live.workers)
    return live


def answer(response: requests.Response) -> tuple[int, dict]:
    return response.status_code, response.json()


def zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def tgz_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
