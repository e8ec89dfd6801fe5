"""Helpers for the fault tests: page logins and form posts over HTTP, folder snapshots.

The servers they drive (``LiveServer``, ``RedisServer``) live in conftest.py, pinned connections in procnet.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import requests

from tests.conftest import PASSWORD, csrf_from

NONCE_RE = re.compile(r'name="nonce" value="([^"]+)"')


def login(base_url: str, username: str, password: str = PASSWORD) -> requests.Session:
    """A requests session signed in through the real login form."""
    session = requests.Session()
    token = csrf_from(session.get(base_url + "/login", timeout=10).text)
    response = session.post(
        base_url + "/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code in (302, 303), response.text
    return session


def generate_key_on_page(session: requests.Session, base_url: str, name: str) -> requests.Response:
    """Submit the Account Security page's generate form, as a browser would."""
    page = session.get(base_url + "/account/security", timeout=10).text
    nonce = NONCE_RE.search(page)
    data = {"name": name, "expiry": "never", "csrf_token": csrf_from(page)}
    if nonce:
        data["nonce"] = nonce.group(1)
    return session.post(base_url + "/account/security", data=data, timeout=10)


def add_user_on_page(session: requests.Session, base_url: str, username: str) -> requests.Response:
    """Submit the admin page's add-user form."""
    page = session.get(base_url + "/admin/users", timeout=10).text
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page)}
    return session.post(base_url + "/admin/users", data=data, allow_redirects=False, timeout=10)


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    """Every regular file directly in ``folder`` with its bytes."""
    return {entry.name: entry.read_bytes() for entry in sorted(folder.iterdir()) if entry.is_file()}
