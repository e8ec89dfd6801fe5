"""Create a workspace from a folder, a .zip or a .tar.gz: unsafe content is refused, all or nothing.

Uploads go through ``import_archive_stream``, which saves the stream to a dotfile in the root and then
imports that file like any other archive path.
"""

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from app.ask import indexdb
from app.ask.errors import ImportRefused
from app.ask.generation import write_generation
from app.ask.unpack import CORRUPT, Budget, copy_folder, human, show, unpack_tar, unpack_zip
from app.ask.workspaces import is_valid_workspace_id
from app.names import name_problem

DEFAULT_MAX_BYTES = 500 * 1024 * 1024
DEFAULT_MAX_FILES = 20000
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_BUFFER = 1024 * 1024
_STALE_SECONDS = 6 * 3600  # leftovers of a crashed import older than this are swept away
_TEMP_PREFIXES = (".import-", ".upload-", ".replaced-", ".delete-")


def _sweep_stale(root: Path) -> None:
    """Remove temp folders and files that a killed process left behind long ago."""
    cutoff = time.time() - _STALE_SECONDS
    with os.scandir(root) as entries:
        for entry in entries:
            if not entry.name.startswith(_TEMP_PREFIXES):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue


def _source_kind(source: Path) -> str:
    if source.is_dir():
        return "folder"
    name = source.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    raise ImportRefused(f"Cannot import {show(source.name)}: use a folder, a .zip or a .tar.gz/.tgz file")


def _check_id(workspace_id: str) -> None:
    problem = name_problem(workspace_id, "The workspace id") if isinstance(workspace_id, str) else None
    if problem:
        raise ImportRefused(problem)
    if not is_valid_workspace_id(workspace_id):
        raise ImportRefused(
            f"Invalid workspace id {show(str(workspace_id))}: use 1 to 64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (not ending in .json, .lock, .bak or .tmp)"
        )


def _refuse_existing(root: Path, workspace_id: str, replace: bool) -> None:
    target = root / workspace_id
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise ImportRefused(f"'{workspace_id}' exists in the workspaces folder and is not a workspace")
    if not replace:
        raise ImportRefused(f"Workspace '{workspace_id}' already exists; import it with replace to overwrite")


def import_workspace(
    root: Path,
    workspace_id: str,
    source: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    replace: bool = False,
    display_name: str | None = None,
) -> dict:
    """Unpack ``source`` (folder, .zip, .tar.gz/.tgz) as workspace ``workspace_id``; return its totals.

    ``display_name`` is how messages name the source (an upload's own file name, not our temp file).
    """
    root, source = Path(root), Path(source)
    shown = show(display_name or source.name)
    _check_id(workspace_id)
    kind = _source_kind(source)
    if kind == "folder" and root.resolve().is_relative_to(source.resolve()):
        raise ImportRefused("The source folder contains the workspaces folder itself")
    _refuse_existing(root, workspace_id, replace)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root)
    # Unpacking happens in a dotfolder beside the target so the final rename is atomic and a failure
    # leaves nothing a listing would show.
    staging = root / f".import-{secrets.token_hex(8)}"
    staging.mkdir(mode=0o777)  # the umask applies, as for any folder the app creates
    try:
        budget = Budget(max_bytes, max_files)
        try:
            {"folder": copy_folder, "zip": unpack_zip, "tar": unpack_tar}[kind](source, staging, budget)
            # In the folder before it is renamed into place: every host sees the new files and the new token
            # together, and rebuilds its own index from them (app/ask/generation.py).
            write_generation(staging)
        except CORRUPT as exc:
            raise ImportRefused(f"{shown} is not a valid {kind} archive ({exc})") from None
        except OSError as exc:
            # e.g. a member that is both a file and a folder, or a full disk
            raise ImportRefused(f"Could not unpack {shown}: {exc.strerror or exc}") from None
        if budget.files == 0:
            raise ImportRefused(f"{shown} contains no files")
        _install(root, workspace_id, staging, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The files' bytes, as GET /api/workspaces counts them: a tar's header blocks are not the workspace's size.
    return {"id": workspace_id, "file_count": budget.files, "size_bytes": budget.written - budget.header_bytes}


def _install(root: Path, workspace_id: str, staging: Path, replace: bool) -> None:
    target = root / workspace_id
    old = None
    # The lock keeps indexers and other imports of this id out while folders swap.
    with indexdb.workspace_lock(root, workspace_id):
        _refuse_existing(root, workspace_id, replace)
        try:
            if os.path.lexists(target):
                old = root / f".replaced-{secrets.token_hex(8)}"
                os.rename(target, old)
            try:
                os.rename(staging, target)
            except OSError:
                if old is not None:
                    os.rename(old, target)
                raise
        except OSError as exc:
            # The lock is this host's: an import of the same workspace through another host can land between
            # the check and the renames. The folder then holds one import or the other, whole.
            raise ImportRefused(
                f"Workspace '{workspace_id}' changed while it was being put in place ({exc.strerror or exc}); "
                "another import of it may have been under way: try again"
            ) from None
        # The old index describes other files: it is rebuilt on the next question. Other hosts' indexes
        # are rebuilt too, since the folder's generation token changed.
        indexdb.drop_index(root, workspace_id)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def import_archive_stream(
    root: Path,
    workspace_id: str,
    fileobj: BinaryIO,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    replace: bool = False,
) -> dict:
    """Import an uploaded archive; ``filename`` picks the format and the upload may be ``max_bytes``."""
    root = Path(root)
    _check_id(workspace_id)
    suffix = next((s for s in ARCHIVE_SUFFIXES if str(filename).lower().endswith(s)), None)
    if suffix is None:
        raise ImportRefused(f"Cannot import {show(str(filename))}: upload a .zip or a .tar.gz/.tgz file")
    _refuse_existing(root, workspace_id, replace)
    root.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".upload-", suffix=suffix, dir=root)
    try:
        with os.fdopen(fd, "wb") as out:
            received = 0
            while block := fileobj.read(_BUFFER):
                received += len(block)
                if received > max_bytes:
                    raise ImportRefused(f"The upload is larger than {human(max_bytes)} (the limit)")
                out.write(block)
        return import_workspace(
            root,
            workspace_id,
            Path(temp_name),
            max_bytes=max_bytes,
            max_files=max_files,
            replace=replace,
            display_name=str(filename),
        )
    finally:
        os.unlink(temp_name)
