"""Index workspaces in the background: one job thread per process, one job per workspace at a time.

An import or upload calls :func:`submit`; the job runs :func:`run_index`, which holds the workspace's job lock
so two workers (or a worker and the CLI) never index the same workspace at once, and keeps its state file
(``app.ask.indexstate``) current for the dashboard and the API. Nothing is persisted beyond that file: a job
lost with its process leaves a workspace without a ready index, which is simply indexed on first need.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from app.ask import indexstate
from app.ask.errors import IndexFailed, IndexNotReady, WorkspaceNotFound
from app.ask.index import IndexStats, Progress, update_index

log = logging.getLogger("askgate.ask")

_WRITE_EVERY = 0.25  # seconds between progress writes to the state file
_POLL = 0.05  # seconds between looks at the state file while a question waits

# Test-only: when set to a path, a job pauses after its first file until that path exists, so the browser
# suite can watch a half-built index without racing the clock. Never set in production.
TEST_GATE_ENV = "ASKGATE_TEST_INDEX_GATE"
_TEST_GATE_LIMIT = 120.0


def _reason(exc: BaseException) -> str:
    """Why a job failed, in words safe to show any signed-in user."""
    if isinstance(exc, OSError):
        return f"could not read or write files: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, sqlite3.Error):
        return f"the index database failed: {exc}"
    return "an unexpected error (see the server log)"


def _pass_test_gate() -> None:
    gate = os.environ.get(TEST_GATE_ENV)
    if not gate:
        return
    deadline = time.monotonic() + _TEST_GATE_LIMIT
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(_POLL)


def run_index(root: Path, workspace_id: str, progress: Progress | None = None) -> IndexStats:
    """Bring the index up to date now, under the job lock, recording each step in the state file."""
    root = Path(root)
    with indexstate.job_lock(root, workspace_id):
        # A ready index stays "ready" while it is checked; it shows "indexing" once a file needs reading.
        if indexstate.read_state(root, workspace_id)["state"] != indexstate.READY:
            indexstate.write_state(root, workspace_id, indexstate.INDEXING)
        last_write = 0.0

        def record(done: int, total: int) -> None:
            nonlocal last_write
            now = time.monotonic()
            if done == 1 or done == total or now - last_write >= _WRITE_EVERY:
                indexstate.write_state(root, workspace_id, indexstate.INDEXING, done=done, total=total)
                last_write = now
            if done == 1:
                _pass_test_gate()
            if progress is not None:
                progress(done, total)

        try:
            stats = update_index(root, workspace_id, record)
        except WorkspaceNotFound:
            indexstate.clear_state(root, workspace_id)  # deleted meanwhile: nothing to report
            raise
        except Exception as exc:
            indexstate.write_state(root, workspace_id, indexstate.FAILED, reason=_reason(exc))
            raise
        indexstate.write_state(
            root,
            workspace_id,
            indexstate.READY,
            done=stats.files_read,
            total=stats.files_read,
            generation=stats.generation,
        )
        return stats


class _JobThread:
    """This process's queue of workspaces to index and the daemon thread that works through it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pending: deque[tuple[Path, str]] = deque()
        self.wakeup = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="askgate-indexer", daemon=True)
        self.thread.start()

    def add(self, root: Path, workspace_id: str) -> None:
        with self.wakeup:
            if (root, workspace_id) not in self.pending:  # one queued job covers any number of requests
                self.pending.append((root, workspace_id))
            self.wakeup.notify()

    def _run(self) -> None:
        while True:
            with self.wakeup:
                while not self.pending:
                    self.wakeup.wait()
                # Taken off the queue before it runs: a request arriving meanwhile (a replaced workspace)
                # queues another pass, which re-reads only what changed.
                root, workspace_id = self.pending.popleft()
            try:
                run_index(root, workspace_id)
            except WorkspaceNotFound:
                pass
            except Exception:
                log.exception("indexing workspace %s failed", workspace_id)


_jobs: _JobThread | None = None
_jobs_guard = threading.Lock()


def submit(root: Path, workspace_id: str) -> None:
    """Index the workspace in this process's background thread, soon; returns at once."""
    global _jobs
    root = Path(root)
    indexstate.mark_queued(root, workspace_id)
    with _jobs_guard:
        if _jobs is None or _jobs.pid != os.getpid():  # a forked child has no copy of the parent's thread
            _jobs = _JobThread()
        jobs = _jobs
    jobs.add(root, workspace_id)


def retry_after(first: dict, last: dict, waited: float) -> int:
    """Seconds a client should wait before asking again: the files left at the rate seen while it waited."""
    gained = (last.get("done") or 0) - (first.get("done") or 0) if first["state"] == last["state"] else 0
    if last["state"] != indexstate.INDEXING or gained <= 0 or waited <= 0:
        return 5
    left = (last.get("total") or 0) - (last.get("done") or 0)
    return max(1, min(60, math.ceil(left * waited / gained)))


def wait_until_indexed(root: Path, workspace_id: str, timeout: float) -> None:
    """Make sure a job is on its way and wait up to ``timeout`` seconds for a ready index.

    Raises IndexNotReady when time runs out and IndexFailed when the job failed.
    """
    root = Path(root)
    state = indexstate.read_state(root, workspace_id)
    if state["state"] == indexstate.READY:
        return
    if state["state"] in (indexstate.NOT_INDEXED, indexstate.FAILED):
        submit(root, workspace_id)  # a failed index is tried again when someone needs it
    started = time.monotonic()
    first = None
    while True:
        state = indexstate.read_state(root, workspace_id)
        first = first or state
        if state["state"] == indexstate.READY:
            return
        if state["state"] == indexstate.FAILED:
            raise IndexFailed(f"Workspace could not be indexed: {state['reason'] or 'unknown'}")
        waited = time.monotonic() - started
        if waited >= timeout:
            raise IndexNotReady(retry_after=retry_after(first, state, waited))
        time.sleep(_POLL)
