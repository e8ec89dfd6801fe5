"""Build and incrementally update a workspace's full-text index of code chunks."""

import functools
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.ask import callgraph, indexdb, textfiles
from app.ask.chunking import Chunk, chunk_file
from app.ask.generation import read_generation
from app.ask.tokens import text_terms, word_terms
from app.ask.workspaces import workspace_dir

log = logging.getLogger("askgate.ask")

Progress = Callable[[int, int], None]


@dataclass
class IndexStats:
    """What one update did; ``read_paths`` lists every file whose contents were read."""

    files_seen: int = 0
    files_read: int = 0
    files_removed: int = 0
    chunks: int = 0
    read_paths: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    generation: str | None = None  # the import token of the folder the index now describes


@functools.lru_cache(maxsize=20_000)
def symbol_terms(symbol: str | None) -> tuple[str, ...]:
    """Terms of a qualified name such as ``SecureCookieSessionInterface.save_session``."""
    if not symbol:
        return ()
    return tuple(term for part in symbol.split(".") for term in word_terms(part))


@functools.lru_cache(maxsize=20_000)
def path_terms(path: str) -> tuple[str, ...]:
    """Terms of a relative path: folder names and the file name without its extension."""
    parts = path.split("/")
    parts[-1] = parts[-1].split(".", 1)[0]
    return tuple(term for part in parts for term in text_terms(part))


def update_index(root: Path, workspace_id: str, progress: Progress | None = None) -> IndexStats:
    """Bring the index in line with the folder, reading only files whose size or mtime changed, or every
    file when the folder was replaced by an import (its generation token changed, on whichever host)."""
    folder = workspace_dir(root, workspace_id)
    # Concurrent callers queue here; whoever comes second finds the work done and reads nothing.
    with indexdb.workspace_lock(root, workspace_id):
        # Read before the files: if the folder is replaced during the scan, the index is labelled with the
        # old token and rebuilt on the next update, never labelled new with old files in it.
        generation = read_generation(folder)
        conn = indexdb.open_for_writing(root, workspace_id)
        try:
            if indexdb.stored_generation(conn) != generation:
                # Another import's files, maybe with the same names, sizes and mtimes: start afresh.
                conn.close()
                indexdb.drop_index(root, workspace_id)
                conn = indexdb.open_for_writing(root, workspace_id)
            stats = _update(conn, folder, progress)
            if indexdb.stored_generation(conn) != generation:
                indexdb.store_generation(conn, generation)
            stats.generation = generation
            return stats
        finally:
            conn.close()


def _update(conn: sqlite3.Connection, folder: Path, progress: Progress | None) -> IndexStats:
    stats = IndexStats()
    current = {path: (size, mtime) for path, size, mtime in textfiles.scan(folder)}
    known = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT path, size, mtime_ns FROM files")}
    stats.files_seen = len(current)
    changed = sorted(path for path, signature in current.items() if known.get(path) != signature)
    removed = sorted(path for path in known if path not in current)
    if not changed and not removed:
        stats.chunks = _chunk_count(conn)
        return stats

    # Files are read before the write transaction so that searches are never blocked for long.
    new_chunks: dict[str, list[Chunk]] = {}
    graph_nodes: dict[str, list[callgraph.Node]] = {}
    for number, path in enumerate(changed, 1):
        text = textfiles.read_text(folder / path)
        stats.read_paths.append(path)
        if text is None and not (folder / path).is_file():
            removed.append(path)  # vanished between the scan and the read
        else:
            new_chunks[path] = chunk_file(path, text) if text else []
            graph_nodes[path] = callgraph.file_nodes(path, new_chunks[path])
        if progress is not None:
            progress(number, len(changed))
    stats.files_read = len(stats.read_paths)
    stats.removed_paths = [path for path in removed if path in known]
    stats.files_removed = len(stats.removed_paths)

    conn.execute("BEGIN IMMEDIATE")
    try:
        for path in [*removed, *new_chunks]:
            _forget(conn, path)
        for path, chunks in new_chunks.items():
            size, mtime = current[path]
            # Binary and skipped files are remembered too, so they are not re-read next time.
            conn.execute("INSERT INTO files VALUES (?, ?, ?)", (path, size, mtime))
            for chunk in chunks:
                _insert(conn, chunk)
        callgraph.replace_files(conn, [*removed, *new_chunks], graph_nodes)
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_indexed', ?)", (now,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    stats.chunks = _chunk_count(conn)
    log.info(
        "indexed %s: %d read, %d removed, %d chunks",
        folder.name,
        stats.files_read,
        stats.files_removed,
        stats.chunks,
    )
    return stats


def _chunk_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM chunks").fetchone()[0]


def _forget(conn: sqlite3.Connection, path: str) -> None:
    # A contentless FTS5 table forgets a row only when told the terms it was given.
    rows = conn.execute("SELECT id, symbol, doc, text, extra FROM chunks WHERE path = ?", (path,))
    conn.executemany(
        "INSERT INTO chunk_terms (chunk_terms, rowid, symbol, path, doc, body) VALUES ('delete', ?, ?, ?, ?, ?)",
        [(row[0], *chunk_terms(_stored_chunk(path, row))) for row in rows.fetchall()],
    )
    conn.execute("DELETE FROM chunks WHERE path = ?", (path,))
    conn.execute("DELETE FROM files WHERE path = ?", (path,))


def doc_terms(doc: str | None) -> str:
    """The terms of the doc column: the summary of the docstring or leading comment. Only the summary:
    the rest of a long docstring (parameters, examples) matched everything and is in the body anyway."""
    return " ".join(text_terms(doc or ""))


def chunk_terms(chunk: Chunk) -> tuple[str, str, str, str]:
    """What the FTS5 table indexes for a chunk: its symbol, path, doc and body terms."""
    return (
        " ".join(symbol_terms(chunk.symbol)),
        " ".join(path_terms(chunk.path)),
        doc_terms(chunk.doc),
        " ".join(text_terms(f"{chunk.text}\n{chunk.extra_terms}")),
    )


def _stored_chunk(path: str, row: tuple) -> Chunk:
    _, symbol, doc, text, extra = row
    return Chunk(path, 0, 0, symbol, doc, indexdb.unpack(text), extra or "")


def _insert(conn: sqlite3.Connection, chunk: Chunk) -> None:
    cursor = conn.execute(
        "INSERT INTO chunks (path, start_line, end_line, symbol, doc, text, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            chunk.path,
            chunk.start_line,
            chunk.end_line,
            chunk.symbol,
            chunk.doc,
            indexdb.pack(chunk.text),
            chunk.extra_terms or None,
        ),
    )
    conn.execute(
        "INSERT INTO chunk_terms (rowid, symbol, path, doc, body) VALUES (?, ?, ?, ?, ?)",
        (cursor.lastrowid, *chunk_terms(chunk)),
    )
