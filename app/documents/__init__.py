"""The JSON documents the key and user stores live in: a file several processes share (``sharedfile``), the same
document in Redis as one hash per record (``redisrecords``), what happens while that Redis is away (``stale``), and
their maintenance: check, restore, migrate (``storeadmin``).

The exceptions every store and caller shares are here, so the modules import them from one place, not each other.
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator

# A hook that runs once, inside the first document write of a block, after the change is checked and before it is
# saved (the audit log records there: an exception refuses the change; the ``finish`` it returns hears whether the
# change was then saved). See ``commit_hook``.
_commit_hook: contextvars.ContextVar[list | None] = contextvars.ContextVar("commit_hook", default=None)


class StoreUnavailable(Exception):
    """The document cannot be read or parsed; callers fail closed and never overwrite it."""


class StoreUnreachable(StoreUnavailable):
    """The store's server cannot be reached (Redis stopped, restarting, loading or timing out), as opposed to a
    document that is unreadable. A backend raises it from ``read`` and ``update``; ``app.documents.stale`` then answers
    reads from the last loaded copy for a while and refuses changes (503, nothing changed)."""


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


@contextlib.contextmanager
def commit_hook(hook: Callable[[object, dict], Callable[[bool], None] | None]) -> Iterator[None]:
    """Run ``hook(result, document)`` once, in the first ``update``/``replace_all`` inside the block, just before the
    document is saved; if it raises, that write does not happen and the exception propagates. What it returns, if
    anything, is called with True once the document is saved, with False when saving it failed."""
    token = _commit_hook.set([hook])
    try:
        yield
    finally:
        _commit_hook.reset(token)


def run_commit_hook(result: object, data: dict) -> Callable[[bool], None] | None:
    """Called by the documents right before they save ``data``; returns the ``finish`` to call with whether they did
    (None outside ``commit_hook`` or once it ran)."""
    pending = _commit_hook.get()
    if pending:
        hook = pending.pop()
        return hook(result, data)
    return None


@contextlib.contextmanager
def saving(finish: Callable[[bool], None] | None) -> Iterator[None]:
    """Tell ``finish`` whether the block (the save) completed."""
    if finish is None:
        yield
        return
    try:
        yield
    except BaseException:
        finish(False)
        raise
    finish(True)


@contextlib.contextmanager
def saving_late(get_finish: Callable[[], Callable[[bool], None] | None]) -> Iterator[None]:
    """:func:`saving` for a ``finish`` only known once the block has run (a hook inside a retried transaction)."""
    try:
        yield
    except BaseException:
        finish = get_finish()
        if finish is not None:
            finish(False)
        raise
    finish = get_finish()
    if finish is not None:
        finish(True)
