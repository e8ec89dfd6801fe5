"""Which import a workspace folder holds: a random token that each import writes into the folder it installs.

Hosts that share ``WORKSPACES_DIR`` keep their own indexes (``INDEX_DIR`` on local disk), so a workspace replaced
through one host must be noticed by every other one with no message from it. Each index records the token of the
folder it was built from, and every question compares it with the folder's own. The token is read with ``open``
and ``read``, which NFS's close-to-open consistency keeps current; neither a folder's mtime (NFS clients cache
attributes) nor inotify (it sees only its own host's changes) is relied on, nor are the files' sizes and mtimes
(a replacement may repeat them). A folder made by hand has no token: its files' sizes and mtimes are still
compared on every question, as for any workspace.
"""

import os
import secrets
from pathlib import Path

#: In the workspace folder itself, so the folder and its token are replaced by one rename.
GENERATION_FILE = ".askgate-import"
_MAX_TOKEN = 64


def write_generation(folder: Path) -> str:
    """Give ``folder`` (an import's staging folder, before it is renamed into place) a new token."""
    token = secrets.token_hex(16)
    path = Path(folder) / GENERATION_FILE
    with open(path, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    return token


def read_generation(folder: Path) -> str | None:
    """The folder's token, or None for a folder no import wrote."""
    try:
        fd = os.open(Path(folder) / GENERATION_FILE, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            token = fh.read(_MAX_TOKEN + 1).decode("ascii").strip()
    except (OSError, ValueError):
        return None
    return token if 0 < len(token) <= _MAX_TOKEN else None
