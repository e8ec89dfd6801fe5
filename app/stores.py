"""The key and user stores, opened from ``STORE_URL``: the JSON files in ``WORKSPACES_DIR``, or Redis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.documents import StoreAdminError
from app.keys.store import KeyStore
from app.users.store import UserStore


@dataclass(frozen=True)
class Stores:
    keys: KeyStore
    users: UserStore

    @classmethod
    def open(cls, location: str, workspaces_dir: Path, stale_seconds: float = 0.0) -> Stores:
        """``files`` (the JSON files in ``workspaces_dir``) or a ``redis://`` URL; while that Redis cannot be
        reached, reads come from the last loaded copy for up to ``stale_seconds`` (``STORE_STALE_SECONDS``)."""
        if location == "files":
            return cls(KeyStore(workspaces_dir), UserStore(workspaces_dir))
        if location.startswith(("redis://", "rediss://", "unix://")):
            from app.documents.redisdoc import redis_client

            client = redis_client(location)
            return cls(
                KeyStore(redis_client=client, stale_seconds=stale_seconds),
                UserStore(redis_client=client, stale_seconds=stale_seconds),
            )
        raise StoreAdminError(f"Unknown store {location!r}: use 'files' or a redis:// URL")

    def documents(self) -> dict:
        """What ``app.documents.storeadmin`` checks, restores and migrates: each store's document, by name."""
        return {"keys": self.keys.file, "users": self.users.file}
