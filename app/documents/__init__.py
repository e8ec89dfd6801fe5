"""The JSON documents the key and user stores live in: a file several processes share (``sharedfile``), the same
document in Redis (``redisdoc``), and their maintenance: check, restore, migrate (``storeadmin``).

The exceptions every store and caller shares are here, so the modules import them from one place, not each other.
"""


class StoreUnavailable(Exception):
    """The document cannot be read or parsed; callers fail closed and never overwrite it."""


class StoreWriteError(Exception):
    """A change could not be written (disk full, read-only folder); the previous document is intact."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class StoreAdminError(Exception):
    """A maintenance step that cannot be done; the message says why and what to do."""


def older_version(raw: object, current: int | None) -> object:
    """The ``"version"`` of a parsed document when it is not ``current`` (and ``current`` is given), else None."""
    if current is None or not isinstance(raw, dict) or raw.get("version") == current:
        return None
    return raw.get("version")
