"""Store maintenance: check the documents, restore the last good version, migrate between backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.documents import StoreAdminError, StoreUnavailable
from app.keys.store import KeyStore
from app.users.store import UserStore


@dataclass(frozen=True)
class Stores:
    keys: KeyStore
    users: UserStore

    @classmethod
    def open(cls, location: str, workspaces_dir: Path) -> Stores:
        """``files`` (the JSON files in ``workspaces_dir``) or a ``redis://`` URL."""
        if location == "files":
            return cls(KeyStore(workspaces_dir), UserStore(workspaces_dir))
        if location.startswith(("redis://", "rediss://", "unix://")):
            from app.documents.redisdoc import redis_client

            client = redis_client(location)
            return cls(KeyStore(redis_client=client), UserStore(redis_client=client))
        raise StoreAdminError(f"Unknown store {location!r}: use 'files' or a redis:// URL")

    def documents(self) -> dict:
        return {"keys": self.keys.file, "users": self.users.file}


def check(stores: Stores) -> dict[str, str | None]:
    """For each document, what is wrong with it, or None when it is fine."""
    return {name: document.check() for name, document in stores.documents().items()}


def _backup(document) -> dict | None:
    try:
        return document.read_backup()
    except StoreUnavailable as exc:
        raise StoreAdminError(f"The backup is not usable either: {exc}") from None


def restore(stores: Stores, only_broken: bool = True) -> list[str]:
    """Put back the last good version (written on each successful change) of each broken document."""
    restored = []
    for name, document in stores.documents().items():
        if only_broken and document.check() is None:
            continue
        data = _backup(document)
        if data is None:
            raise StoreAdminError(f"No backup of the {name} store to restore from ({document.path})")
        document.replace_all(data)
        restored.append(name)
    return restored


def _fingerprint(stores: Stores) -> dict:
    try:
        keys = stores.keys.file.read()["keys"]
        users = stores.users.file.read()["users"]
    except StoreUnavailable as exc:
        raise StoreAdminError(str(exc)) from None
    return {
        "keys": sorted((k["id"], k["digest"], k["revoked_at"] or "") for k in keys),
        "users": sorted((u["id"], u["username"], u["password_hash"], bool(u["disabled"])) for u in users),
    }


def migrate(source: Stores, target: Stores, *, overwrite: bool = False) -> dict[str, int]:
    """Copy every key and user from ``source`` to ``target``, then verify counts and digests match."""
    before = _fingerprint(target)
    if (before["keys"] or before["users"]) and not overwrite:
        raise StoreAdminError(
            f"The target already holds {len(before['keys'])} key(s) and {len(before['users'])} user(s); "
            "refusing to overwrite them (pass --overwrite if you mean it)"
        )
    try:
        keys_doc = source.keys.file.read()
        users_doc = source.users.file.read()
    except StoreUnavailable as exc:
        raise StoreAdminError(f"The source cannot be read: {exc}") from None
    target.keys.file.replace_all(keys_doc)
    target.users.file.replace_all(users_doc)
    expected, got = _fingerprint(source), _fingerprint(target)
    if expected != got:
        raise StoreAdminError("Verification failed: the target differs from the source after copying")
    return {"keys": len(got["keys"]), "users": len(got["users"])}
