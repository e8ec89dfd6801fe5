"""Store maintenance: check the documents, restore the last good version, migrate between backends."""

from __future__ import annotations

import json
from typing import Protocol

from app.documents import StoreAdminError, StoreUnavailable

# What a key record holds that its use does not depend on; a migrate checks everything else arrived (secrets, owner,
# state and limits: every field app.keys.store.RECORD_FIELDS adds later is checked without a change here).
_KEY_DISPLAY_FIELDS = frozenset({"name", "prefix", "created_at", "last_used_at"})


class StoreDocuments(Protocol):
    """The stores to look after (such as ``app.stores.Stores``): their documents by name, ``keys`` and ``users``."""

    def documents(self) -> dict: ...


def check(stores: StoreDocuments) -> dict[str, str | None]:
    """For each document, what is wrong with it, or None when it is fine."""
    return {name: document.check() for name, document in stores.documents().items()}


def _backup(document) -> dict | None:
    try:
        return document.read_backup()
    except StoreUnavailable as exc:
        raise StoreAdminError(f"The backup is not usable either: {exc}") from None


def restore(stores: StoreDocuments, only_broken: bool = True) -> list[str]:
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


def _key_use(record: dict) -> dict:
    """The fields a key's use depends on; a field holding null and one a store leaves out are alike."""
    return {name: value for name, value in record.items() if name not in _KEY_DISPLAY_FIELDS and value is not None}


def _fingerprint(stores: StoreDocuments) -> dict:
    try:
        documents = stores.documents()
        keys = documents["keys"].read()["keys"]
        users = documents["users"].read()["users"]
    except StoreUnavailable as exc:
        raise StoreAdminError(str(exc)) from None
    return {
        "keys": sorted(json.dumps(_key_use(k), sort_keys=True) for k in keys),
        "users": sorted((u["id"], u["username"], u["password_hash"], bool(u["disabled"])) for u in users),
    }


def migrate(source: StoreDocuments, target: StoreDocuments, *, overwrite: bool = False) -> dict[str, int]:
    """Copy every key and user from ``source`` to ``target``, then verify counts and digests match."""
    before = _fingerprint(target)
    if (before["keys"] or before["users"]) and not overwrite:
        raise StoreAdminError(
            f"The target already holds {len(before['keys'])} key(s) and {len(before['users'])} user(s); "
            "refusing to overwrite them (pass --overwrite if you mean it)"
        )
    try:
        documents = {name: document.read() for name, document in source.documents().items()}
    except StoreUnavailable as exc:
        raise StoreAdminError(f"The source cannot be read: {exc}") from None
    for name, document in target.documents().items():
        document.replace_all(documents[name])
    expected, got = _fingerprint(source), _fingerprint(target)
    if expected != got:
        raise StoreAdminError("Verification failed: the target differs from the source after copying")
    return {"keys": len(got["keys"]), "users": len(got["users"])}
