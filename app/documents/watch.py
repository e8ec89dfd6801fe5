"""Has anything in the store folder changed since the last look? One ``epoll_wait`` on an inotify queue, for both files.

The key and user stores used to ``stat`` their file on every read, so that a change made by another process (a
revocation, a disabled owner, a file edited or damaged by hand) counts on the very next request: two ``stat`` calls
per dashboard-key request, ~1.7 µs each on the development VM. A :class:`FolderWatch` gives both files one signal
instead: the kernel queues an event for anything written, renamed or removed in the folder, synchronously inside
the writer's own call, so a request that starts after a change finds the queue non-empty. ``poll`` with no wait
(``epoll``, which threads may wait on together; ``select.poll`` refuses concurrent calls) costs ~0.5 µs; only when
it reports events does a store ``stat`` its file as before (and reload if it changed).

Linux only (inotify, through libc); anywhere the watch cannot be set up, :meth:`FolderWatch.generation` returns
None and the stores ``stat`` on every read as before. Each process has its own queue: a forked child (a gunicorn
worker) drops the one it inherited and opens its own on first use. Like ``stat`` on NFS, inotify sees only this
host's changes: several hosts keep their stores in Redis (README, "Several hosts").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import weakref
from pathlib import Path

# <sys/inotify.h>: what changes a file's content or which file a name points to.
_EVENTS = (
    0x002  # IN_MODIFY
    | 0x004  # IN_ATTRIB
    | 0x008  # IN_CLOSE_WRITE
    | 0x040  # IN_MOVED_FROM
    | 0x080  # IN_MOVED_TO
    | 0x100  # IN_CREATE
    | 0x200  # IN_DELETE
    | 0x400  # IN_DELETE_SELF
    | 0x800  # IN_MOVE_SELF
)
_FOLDER_GONE = 0x400 | 0x800 | 0x8000  # IN_DELETE_SELF, IN_MOVE_SELF, IN_IGNORED (the watch itself ended)
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)

_libc = None
_watches: weakref.WeakSet[FolderWatch] = weakref.WeakSet()
_by_folder: weakref.WeakValueDictionary[str, FolderWatch] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def _inotify():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    return _libc if _libc and hasattr(_libc, "inotify_init1") else None


class FolderWatch:
    """A number that moves whenever something in ``folder`` may have changed (None: no watch, ``stat`` instead)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._generation = 0
        self._fd: int | None = None
        self._poller: select.epoll | None = None
        self._failed = False
        _watches.add(self)

    @classmethod
    def of(cls, folder: Path) -> FolderWatch:
        """The one watch of ``folder`` in this process (both stores share it)."""
        key = os.path.abspath(folder)
        with _registry_lock:
            watch = _by_folder.get(key)
            if watch is None:
                watch = _by_folder[key] = cls(Path(key))
            return watch

    def __del__(self) -> None:
        self._close()

    def generation(self) -> int | None:
        poller = self._poller
        if poller is None:
            if self._failed or not self._open():
                return None
            poller = self._poller
        try:
            ready = poller.poll(0)
        except (ValueError, OSError):  # closed meanwhile by another thread (the folder went away): stat this time
            return None
        if ready:
            self._drain()
        return self._generation

    def _open(self) -> bool:
        with self._lock:
            if self._poller is not None:
                return True
            libc = _inotify()
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC) if libc else -1
            if fd < 0:
                self._failed = True
                return False
            if libc.inotify_add_watch(fd, os.fsencode(self.folder), _EVENTS) < 0:
                os.close(fd)
                self._failed = True
                return False
            poller = select.epoll()  # closed on exec like the queue; gunicorn's threads may poll it at once
            poller.register(fd, select.EPOLLIN)
            # Whatever was read before the queue existed is checked again (by stat) on its next read.
            self._fd, self._generation, self._poller = fd, self._generation + 1, poller
            return True

    def _drain(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            folder_gone = False
            try:
                while True:
                    folder_gone |= _folder_gone(os.read(self._fd, 65536))
            except BlockingIOError:
                pass  # empty again
            self._generation += 1
            if folder_gone:  # the folder was moved or removed: watch whatever holds its name next time
                self._close()

    def _close(self) -> None:
        poller, fd = self._poller, self._fd
        self._fd, self._poller = None, None
        if poller is not None:
            poller.close()
        if fd is not None:
            os.close(fd)

    def _forget_after_fork(self) -> None:
        """In a forked child: the inherited queue is the parent's to read; the child opens its own."""
        self._lock = threading.Lock()
        self._close()


def _folder_gone(events: bytes) -> bool:
    offset = 0
    while offset + _EVENT.size <= len(events):
        _, mask, _, name_length = _EVENT.unpack_from(events, offset)
        if mask & _FOLDER_GONE:
            return True
        offset += _EVENT.size + name_length
    return False


def _after_fork_in_child() -> None:
    for watch in list(_watches):
        watch._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
