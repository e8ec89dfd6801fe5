"""Workspaces: one folder of code per id under the workspaces root."""

import os
import secrets
import shutil
import stat
from pathlib import Path

from app.ask import indexdb, indexstate
from app.ask.errors import WorkspaceNotFound
from app.ask.generation import GENERATION_FILE
from app.inputs import WORKSPACE_ID_RE

# The root also holds the app's own stores; these names can never be workspaces.
_RESERVED_NAMES = frozenset({"api-keys.json", "users.json"})
_RESERVED_SUFFIXES = (".json", ".lock", ".bak", ".tmp")


def is_valid_workspace_id(workspace_id: object) -> bool:
    """True if ``workspace_id`` is a well-formed id that cannot collide with the store's own files."""
    if not isinstance(workspace_id, str) or not WORKSPACE_ID_RE.fullmatch(workspace_id):
        return False
    lowered = workspace_id.lower()
    return lowered not in _RESERVED_NAMES and not lowered.endswith(_RESERVED_SUFFIXES)


def workspace_dir(root: Path, workspace_id: str) -> Path:
    """Return the workspace folder, raising WorkspaceNotFound for a bad id or a missing folder."""
    if not is_valid_workspace_id(workspace_id):
        raise WorkspaceNotFound()
    path = Path(root) / workspace_id
    # A symlink planted in the root must not turn into a workspace pointing elsewhere.
    if path.is_symlink() or not path.is_dir():
        raise WorkspaceNotFound()
    return path


def _folder_totals(path: Path) -> tuple[int, int]:
    count = size = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            if name == GENERATION_FILE and dirpath == str(path):
                continue  # the import's token, not the workspace's content
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                count += 1
                size += st.st_size
    return count, size


def _workspace_ids(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    with os.scandir(root) as entries:
        ids = [e.name for e in entries if e.is_dir(follow_symlinks=False) and is_valid_workspace_id(e.name)]
    return sorted(ids)


def workspace_states(root: Path) -> list[dict]:
    """Each workspace's id, index state (see ``indexstate.public_state``) and last index time; no folder walk."""
    root = Path(root)
    return [
        {
            "id": workspace_id,
            **indexstate.public_state(indexstate.read_state(root, workspace_id)),
            "last_indexed": indexdb.last_indexed(root, workspace_id),
        }
        for workspace_id in _workspace_ids(root)
    ]


def list_workspaces(root: Path) -> list[dict]:
    """Describe every workspace under ``root``, sorted by id."""
    root = Path(root)
    result = []
    for workspace_id in _workspace_ids(root):
        file_count, size_bytes = _folder_totals(root / workspace_id)
        result.append(
            {
                "id": workspace_id,
                "file_count": file_count,
                "size_bytes": size_bytes,
                "last_indexed": indexdb.last_indexed(root, workspace_id),
                **indexstate.public_state(indexstate.read_state(root, workspace_id)),
            }
        )
    return result


def delete_workspace(root: Path, workspace_id: str) -> None:
    """Remove a workspace folder and its index."""
    root = Path(root)
    workspace_dir(root, workspace_id)  # validates the id before it names a lock file
    with indexdb.workspace_lock(root, workspace_id):
        path = workspace_dir(root, workspace_id)
        # Renaming first makes the workspace vanish atomically; the slow delete happens afterwards.
        doomed = root / f".delete-{secrets.token_hex(8)}"
        os.rename(path, doomed)
        indexdb.drop_index(root, workspace_id)
        indexstate.clear_state(root, workspace_id)
    shutil.rmtree(doomed, ignore_errors=True)
