"""Where a workspace's index stands: queued, indexing (n of N files), ready, failed, or not indexed.

The state lives in ``<id>.state.json`` beside the index (``INDEX_DIR``), so every worker and the CLI of a host see
the same thing; each host has its own, as it has its own index. Only the holder of the job lock writes
``indexing``, ``ready`` and ``failed``; a state left behind by a process that died is recognised (the lock is free)
and ignored. A ready state counts only while the workspace folder holds the import the index was built from
(app/ask/generation.py): a replacement made through another host makes it ``not_indexed`` here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from app.ask import indexdb
from app.ask.generation import read_generation

QUEUED, INDEXING, READY, FAILED, NOT_INDEXED = "queued", "indexing", "ready", "failed", "not_indexed"
STATES = (QUEUED, INDEXING, READY, FAILED, NOT_INDEXED)
ACTIVE = (QUEUED, INDEXING)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def state_path(root: Path, workspace_id: str) -> Path:
    return indexdb.index_dir(root) / f"{workspace_id}.state.json"


def _job_lock_path(root: Path, workspace_id: str) -> Path:
    # Not "<id>.job.lock": that is the workspace lock of a workspace named "<id>.job".
    return indexdb.index_dir(root) / f"{workspace_id}.job-lock"


@contextlib.contextmanager
def job_lock(root: Path, workspace_id: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the lock of whoever is indexing the workspace; yields False if ``blocking`` is off and it is taken.

    It spans a whole job (state writes included), unlike ``indexdb.workspace_lock``, which imports and deletes
    also take; so "is anyone indexing this?" is answered by trying it.
    """
    indexdb.index_dir(root).mkdir(parents=True, exist_ok=True)
    fd = os.open(_job_lock_path(root, workspace_id), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def job_running(root: Path, workspace_id: str) -> bool:
    """True while some process (any worker, the CLI) holds the workspace's job lock."""
    if not _job_lock_path(root, workspace_id).exists():
        return False
    with job_lock(root, workspace_id, blocking=False) as acquired:
        return not acquired


def write_state(
    root: Path,
    workspace_id: str,
    state: str,
    *,
    done: int = 0,
    total: int = 0,
    reason: str | None = None,
    generation: str | None = None,
) -> None:
    """Replace the state file atomically (readers see the old or the new one, never half of either).

    ``generation``: for a ready index, the import token of the folder it was built from."""
    record = {"state": state, "done": done, "total": total, "reason": reason, "updated_at": _now()}
    record.update(pid=os.getpid(), host=socket.gethostname(), schema=indexdb.SCHEMA_VERSION, generation=generation)
    folder = indexdb.index_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    # No fsync: the state is advice that the next job rewrites, and it changes several times a second.
    fd, tmp = tempfile.mkstemp(prefix=f".{workspace_id}.state.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        os.replace(tmp, state_path(root, workspace_id))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def mark_queued(root: Path, workspace_id: str) -> None:
    """Say a job is coming, unless one is running now (its own state is the truth then)."""
    with job_lock(root, workspace_id, blocking=False) as acquired:
        if acquired:
            write_state(root, workspace_id, QUEUED)


def clear_state(root: Path, workspace_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(root, workspace_id))


def _load(root: Path, workspace_id: str) -> dict | None:
    try:
        with open(state_path(root, workspace_id), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("state") not in STATES:
        return None
    return record


def _writer_gone(record: dict) -> bool:
    """True if the process that wrote ``record`` ran on this host and has exited."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _abandoned(root: Path, workspace_id: str, record: dict) -> bool:
    if job_running(root, workspace_id):
        return False
    # An indexing state is only written under the job lock, so with the lock free its writer died.
    # A queued one waits for its process's job thread: abandoned only if that process is gone.
    return record["state"] == INDEXING or _writer_gone(record)


def read_state(root: Path, workspace_id: str) -> dict:
    """``{"state", "done", "total", "reason", "updated_at"}`` for the workspace, never raising for a bad file."""
    record = _load(root, workspace_id)
    if record is not None and record["state"] in ACTIVE and _abandoned(root, workspace_id, record):
        record = None
    if record is None or record["state"] == READY:
        # A ready state is only as good as the index beside it (an import or a schema change drops it); no
        # believable state at all means an index built before states existed, or none yet.
        has_index = _has_current_index(root, workspace_id, record)
        if record is None or not has_index:
            state = READY if has_index else NOT_INDEXED
            return {"state": state, "done": 0, "total": 0, "reason": None, "updated_at": None}
    return {name: record.get(name) for name in ("state", "done", "total", "reason", "updated_at")}


def _has_current_index(root: Path, workspace_id: str, record: dict | None) -> bool:
    """True if an index of the current schema exists and describes the import the folder holds now."""
    generation = read_generation(Path(root) / workspace_id)
    if record is not None and record.get("schema") == indexdb.SCHEMA_VERSION:
        # Cheap, and on every question: opening and closing an SQLite database in WAL mode costs milliseconds.
        return record.get("generation") == generation and indexdb.index_db_path(root, workspace_id).is_file()
    conn = indexdb.open_for_reading(root, workspace_id)
    if conn is None:
        return False
    try:
        return indexdb.stored_generation(conn) == generation
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def public_state(state: dict) -> dict:
    """What the API and the dashboard show: the state, progress while indexing, the reason of a failure."""
    shown: dict = {"state": state["state"]}
    if state["state"] == INDEXING:
        shown["progress"] = {"done": state["done"], "total": state["total"]}
    elif state["state"] == FAILED:
        shown["reason"] = state["reason"] or "unknown"
    return shown
