"""A JSON file that several processes share: exclusive lock, atomic replace, reload on change.

Both stores (keys and users) keep their data in one of these. Readers never lock: they see either the old
or the new file, because writers replace it with ``os.replace``. Writers serialise on a separate lock file
so a read-modify-write from one process never loses another's change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from app.documents import StoreUnavailable, StoreWriteError, older_version, run_commit_hook, saving
from app.documents.watch import FolderWatch

log = logging.getLogger("askgate.store")

FILE_MODE = 0o600


class SharedJSONFile:
    """One JSON document on disk, cached per process and reloaded when the file changes.

    ``validate`` turns parsed JSON into the in-memory form (raising ValueError on a bad document), upgrading a
    document of an older schema; ``on_load`` sees every freshly loaded document, so owners can rebuild their
    indexes once per change. With ``version``, a file whose ``"version"`` differs is upgraded in place on its first
    change: the ``.bak`` then holds the file as it was, and ``<name>.v<old>.bak`` keeps it for good.
    """

    def __init__(
        self,
        path: Path,
        *,
        empty: Callable[[], dict],
        validate: Callable[[Any], dict],
        on_load: Callable[[dict], None] | None = None,
        version: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.backup_path = self.path.with_name(self.path.name + ".bak")
        self._empty = empty
        self._validate = validate
        self._on_load = on_load
        self._version = version
        self._signature: tuple | None = None
        self._data: dict | None = None
        self._error: str | None = None
        self._mutex = threading.Lock()
        self._watch = FolderWatch.of(self.path.parent)
        self._seen = None  # the watch's generation when the file was last checked (None: stat every read)

    # -- reading -------------------------------------------------------------------------------------
    def _stat_signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _load(self, path: Path) -> dict | None:
        """The validated document at ``path``, None if there is no file; StoreUnavailable if it is bad."""
        return self._load_versioned(path)[0]

    def _load_versioned(self, path: Path) -> tuple[dict | None, object]:
        """:meth:`_load`, and the version the file was written in when that is not ``version`` (else None)."""
        try:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreUnavailable(f"{path} cannot be read: {exc}") from None
        older = older_version(raw, self._version)
        try:
            return self._validate(raw), older
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreUnavailable(f"{path} is not a valid store file: {exc}") from None

    def _parse(self) -> dict:
        data = self._load(self.path)
        return self._empty() if data is None else data

    def change_check(self) -> int | None:
        """Where the folder's changes stand now (one ``epoll_wait``; None without a watch): pass it to :meth:`read`
        of both stores, so that one request checks once. A change made before this call is always seen."""
        return self._watch.generation()

    def read(self, generation: int | None = None) -> dict:
        """The current document, reloaded only if the file changed since the last look.

        Nothing in the folder changed since this file was last checked (one ``epoll_wait``, see
        app.documents.watch, or the ``generation`` a :meth:`change_check` of this request returned): the cached
        document. Otherwise (or with no watch) one ``stat``, and a reload when the file changed."""
        if generation is None:
            generation = self._watch.generation()
        if generation is not None and generation == self._seen and (self._data is not None or self._error):
            if self._error:
                raise StoreUnavailable(self._error)
            return self._data
        signature = self._stat_signature()
        if signature == self._signature and (self._data is not None or self._error):
            self._seen = generation  # checked after that generation: only an older one could be stored here
            if self._error:
                raise StoreUnavailable(self._error)
            return self._data
        with self._mutex:
            self._seen = None  # until this reload is done, check again
            signature = self._stat_signature()
            if signature != self._signature or (self._data is None and not self._error):
                try:
                    data = self._parse()
                except StoreUnavailable as exc:
                    if self._error != str(exc):
                        log.error("store unavailable: %s", exc)
                    self._signature, self._data, self._error = signature, None, str(exc)
                    raise
                # Indexes first, then the signature: a reader that sees the new signature without the lock must
                # find the owner's indexes (keys by digest) already rebuilt, or a revocation could miss a request.
                if self._on_load:
                    self._on_load(data)
                self._signature, self._data, self._error = signature, data, None
            self._seen = generation
            if self._error:
                raise StoreUnavailable(self._error)
            return self._data

    def forget(self) -> None:
        """Parse the file afresh on the next read, even if it looks unchanged."""
        self._signature, self._seen = None, None

    def check(self) -> str | None:
        """Describe what is wrong with the file on disk, or None when it is fine."""
        try:
            self._parse()
        except StoreUnavailable as exc:
            return str(exc)
        return None

    def read_backup(self) -> dict | None:
        """The last good version (``*.bak``), validated, or None when there is none."""
        return self._load(self.backup_path)

    # -- writing -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def update(self, change: Callable[[dict], Any], records: Iterable[str] | None = None) -> Any:
        """Read-modify-write under the exclusive lock; ``change`` mutates the document and returns a result.

        If ``change`` raises, nothing is written. A corrupt file raises StoreUnavailable and is left alone.
        ``records`` (the ids the change looks at, which lets Redis read only those) changes nothing here: the
        file is rewritten whole anyway.
        """
        with self._locked():
            self._remove_stale_temp_files()
            data, older = self._load_versioned(self.path)  # always fresh from disk under the lock
            if data is None:
                data = self._empty()
            result = change(data)
            with saving(run_commit_hook(result, data)):
                if older is None:
                    self._write(data)
                else:
                    self._upgrade(data, older)
            # The file we just wrote is the current one: adopt it without re-parsing.
            with self._mutex:
                if self._on_load:
                    self._on_load(data)
                self._signature, self._data, self._error = self._stat_signature(), data, None
                self._seen = None
            return result

    def replace_all(self, data: dict) -> None:
        """Write ``data`` as the whole document (restore, migrate), under the lock."""
        self._validate(json.loads(json.dumps(data)))
        with self._locked(), saving(run_commit_hook(None, data)):
            self._write(data)
        with self._mutex:
            self._signature, self._seen = None, None

    def _remove_stale_temp_files(self) -> None:
        """Temp files left by a writer killed mid-write; under the lock nobody else is writing one."""
        for name in (self.path.name, self.backup_path.name):
            for stale in self.path.parent.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _write(self, data: dict, backup: bytes | None = None) -> None:
        payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        atomic_write(self.path, payload)
        try:
            atomic_write(self.backup_path, payload if backup is None else backup)
        except StoreWriteError as exc:  # the change itself is saved; a stale backup is only logged
            log.warning("could not refresh backup %s: %s", self.backup_path, exc)

    def _upgrade(self, data: dict, older: object) -> None:
        """Write ``data`` in the current version over a file of version ``older``, keeping that file as it was."""
        try:
            original = self.path.read_bytes()
        except OSError as exc:
            raise _write_error(self.path, exc) from None
        kept = self.path.with_name(f"{self.path.name}.v{older}.bak")
        if not kept.exists():
            atomic_write(kept, original)
        self._write(data, backup=original)
        log.warning(
            "upgraded %s from version %s to %s; the old file is kept in %s", self.path, older, self._version, kept
        )


def _write_error(path: Path, exc: OSError) -> StoreWriteError:
    disk_full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    reason = "the disk is full" if disk_full else (exc.strerror or str(exc))
    return StoreWriteError(f"Could not save {path.name}: {reason}. Nothing was changed.", disk_full=disk_full)


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
        tmp_name = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def create_once(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` (mode 0600) unless it exists; True if this call created it.

    The text goes to a temp file that is hard-linked into place, so a process racing us (another worker,
    the CLI) sees either no file or the whole file, never an empty one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def open_document(
    name: str,
    *,
    workspaces_dir: Path | None,
    redis_client=None,
    redis_prefix: str = "askgate",
    field: str,
    on_change: Callable[[list[dict], list[str]], None] | None = None,
    indexes: dict | None = None,
    stale_seconds: float = 0.0,
    **options,
):
    """The store document ``name`` (whose records are in ``field``): a file in ``workspaces_dir``, or one Redis hash
    per record when a client is given (``on_change`` and ``indexes`` serve that layout; see ``redisrecords``); its
    reads answered from the last loaded copy for up to ``stale_seconds`` while its server cannot be reached."""
    from app.documents.stale import StaleReads

    if redis_client is not None:
        from app.documents.redisrecords import RedisRecords  # only when Redis is used: redis-py is then loaded

        records = RedisRecords(
            redis_client,
            f"{redis_prefix}:{name.removesuffix('.json')}",
            field=field,
            on_change=on_change,
            indexes=indexes,
            legacy_key=f"{redis_prefix}:{name}",
            **options,
        )
        return StaleReads(records, stale_seconds)
    return StaleReads(SharedJSONFile(Path(workspaces_dir) / name, **options), stale_seconds)
