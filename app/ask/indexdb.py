"""The search index's SQLite file: where a workspace's index lives on disk, its lock, and its schema.

Indexes, their locks and their state files live in one folder per workspaces root: ``INDEX_DIR``, placed by
the app (``place_indexes``), by default ``WORKSPACES_DIR/.index``. Several hosts sharing ``WORKSPACES_DIR`` each
keep theirs on local disk, where SQLite's and flock's locking hold (on a network filesystem neither is reliable).

Not to be confused with the JSON stores of keys and users (app/keys, app/users, app/documents)."""

import contextlib
import fcntl
import os
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path

INDEX_DIRNAME = ".index"
# Bump when the schema or the token pipeline changes: old indexes are then rebuilt.
SCHEMA_VERSION = 5

# The index must stay small beside the code (issue 9: at most twice the source bytes). So the FTS5 table
# is contentless (only the inverted index), chunk text is stored zlib-compressed (``pack``), and a chunk
# is deleted from the FTS5 table by recomputing its terms from what is stored (index.chunk_terms).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    symbol TEXT,
    doc TEXT,
    text BLOB NOT NULL,  -- pack(chunk text)
    extra TEXT  -- Chunk.extra_terms
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (path);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5 (
    symbol, path, doc, body, content = '', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_vocab USING fts5vocab (chunk_terms, row);
-- The call graph, written and read only by callgraph.py: its nodes are the chunks' symbols, and the
-- calls found in each node's text (receiver "" bare, "." own object, "?" unnamed, "@m" imported from
-- module m), resolved to nodes by name when read.
CREATE TABLE IF NOT EXISTS graph_nodes (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    symbol TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    line INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS graph_nodes_by_path ON graph_nodes (path, symbol);
CREATE INDEX IF NOT EXISTS graph_nodes_by_name ON graph_nodes (name);
CREATE TABLE IF NOT EXISTS graph_calls (
    caller INTEGER NOT NULL,
    receiver TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (caller, receiver, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS graph_calls_by_name ON graph_calls (name);
"""


def pack(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 6)


def unpack(blob: bytes) -> str:
    return zlib.decompress(blob).decode("utf-8", "surrogatepass")


# Workspaces root -> its index folder, for roots whose indexes live elsewhere than ``root/.index``.
_placed: dict[Path, Path] = {}


def place_indexes(root: Path, folder: Path) -> None:
    """Keep the indexes of the workspaces under ``root`` in ``folder`` (``INDEX_DIR``), in this process."""
    _placed[Path(root)] = Path(folder)


def index_dir(root: Path) -> Path:
    root = Path(root)
    return _placed.get(root) or root / INDEX_DIRNAME


def index_db_path(root: Path, workspace_id: str) -> Path:
    return index_dir(root) / f"{workspace_id}.sqlite3"


def _lock_path(root: Path, workspace_id: str) -> Path:
    return index_dir(root) / f"{workspace_id}.lock"


@contextlib.contextmanager
def workspace_lock(root: Path, workspace_id: str) -> Iterator[None]:
    """Hold the per-workspace exclusive lock that serialises index writes, imports and deletes."""
    index_dir(root).mkdir(parents=True, exist_ok=True)
    # Lock files are never deleted: a waiter holding a descriptor to an unlinked file would not exclude
    # a newcomer who creates a fresh one.
    fd = os.open(_lock_path(root, workspace_id), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def connect(db_path: Path) -> sqlite3.Connection:
    """Open a connection in autocommit mode; transactions are explicit ``BEGIN IMMEDIATE``."""
    # The timeout only matters for WAL checkpoints: writers are already serialised by the lock.
    return sqlite3.connect(db_path, timeout=30.0, isolation_level=None)


def open_for_writing(root: Path, workspace_id: str) -> sqlite3.Connection:
    """Open (creating or rebuilding) the index; the caller must hold ``workspace_lock``."""
    db_path = index_db_path(root, workspace_id)
    conn = connect(db_path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError:  # not a database any more (truncated, overwritten): rebuild it
        version = None
    if version != SCHEMA_VERSION:
        conn.close()
        drop_index(root, workspace_id)
        conn = connect(db_path)
        # WAL lets searches read the last committed index while an update writes the next one.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    return conn


def open_for_reading(root: Path, workspace_id: str) -> sqlite3.Connection | None:
    """Open an existing, current index, or return None when there is none yet."""
    db_path = index_db_path(root, workspace_id)
    if not db_path.is_file():
        return None
    conn = connect(db_path)
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return conn
    except sqlite3.DatabaseError:
        pass
    conn.close()
    return None


def drop_index(root: Path, workspace_id: str) -> None:
    """Delete the index files; the caller must hold ``workspace_lock``."""
    db_path = index_db_path(root, workspace_id)
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path}{suffix}")


def stored_generation(conn: sqlite3.Connection) -> str | None:
    """The import token (app/ask/generation.py) of the folder the index was built from; None if it had none."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return row[0] if row else None


def store_generation(conn: sqlite3.Connection, generation: str | None) -> None:
    """Record the import token the index now describes; the caller must hold ``workspace_lock``."""
    if generation is None:
        conn.execute("DELETE FROM meta WHERE key = 'generation'")
    else:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))


def last_indexed(root: Path, workspace_id: str) -> str | None:
    """ISO 8601 UTC time the index was last written, or None if never."""
    conn = open_for_reading(root, workspace_id)
    if conn is None:
        return None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'last_indexed'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    finally:
        conn.close()
    return row[0] if row else None
