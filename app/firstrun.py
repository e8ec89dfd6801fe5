"""First-run setup: a one-time setup token, so only whoever can read the server log claims a fresh instance."""

from __future__ import annotations

import contextlib
import hmac
import secrets
from pathlib import Path

from flask import Flask

from app.documents.sharedfile import StoreUnavailable, create_once
from app.users.store import UserStore

TOKEN_FILE = ".setup-token"  # noqa: S105  (a file name)


def token_path(workspaces_dir: Path) -> Path:
    return Path(workspaces_dir) / TOKEN_FILE


def ensure_token(workspaces_dir: Path, users: UserStore | None = None) -> str | None:
    """The setup token while there are no users (created once, mode 0600), else None."""
    users = users or UserStore(workspaces_dir)
    try:
        if users.count():
            return None
    except StoreUnavailable:
        return None
    create_once(token_path(workspaces_dir), secrets.token_urlsafe(32))
    return read_token(workspaces_dir)


def read_token(workspaces_dir: Path) -> str | None:
    try:
        return token_path(workspaces_dir).read_text().strip() or None
    except OSError:
        return None


def token_matches(workspaces_dir: Path, candidate: str | None) -> bool:
    token = read_token(workspaces_dir)
    if not token or not candidate:
        return False
    return hmac.compare_digest(token.encode(), candidate.encode("utf-8", "surrogateescape"))


def discard_token(workspaces_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        token_path(workspaces_dir).unlink()


def setup_url(host: str, port: int, token: str, scheme: str = "http") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104  (only displayed)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}/setup?token={token}"


def setup_message(
    workspaces_dir: Path, host: str, port: int, users: UserStore | None = None, scheme: str = "http"
) -> str | None:
    """The line to log at start-up while the instance has no users yet (``host``/``port``: where it listens)."""
    token = ensure_token(workspaces_dir, users)
    if not token:
        return None
    return (
        f"No users yet. Create the first admin at {setup_url(host, port, token, scheme)} "
        f"(the token is also in {token_path(workspaces_dir)})"
    )


def ensure_setup_token(app: Flask) -> None:
    svc = app.extensions["askgate"]
    ensure_token(svc.config.workspaces_dir, svc.users)
