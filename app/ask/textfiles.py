"""Which files of a workspace are worth indexing, and reading them as text."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from app.ask.generation import GENERATION_FILE

MAX_FILE_BYTES = 1024 * 1024
_SNIFF_BYTES = 8192
# Minified bundles and data dumps have very long lines; they drown real code in search results.
_MAX_AVERAGE_LINE = 200

SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".bzr", "node_modules", "bower_components", ".venv", "venv",
        "__pycache__", "vendor", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
        ".eggs", ".idea", ".gradle", ".terraform",
    }
)  # fmt: skip
_SKIP_DIR_SUFFIXES = (".egg-info", ".dist-info")
_SKIP_FILES = frozenset(
    {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Pipfile.lock", "Cargo.lock",
     "composer.lock", "uv.lock", "go.sum"}
)  # fmt: skip
# Known binary or generated formats are skipped by name so that they are never even opened.
_SKIP_SUFFIXES = (
    ".min.js", ".min.css", ".map", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".exe", ".bin",
    ".o", ".a", ".lib", ".class", ".jar", ".war", ".whl", ".egg", ".zip", ".gz", ".tgz", ".bz2", ".xz",
    ".7z", ".rar", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".svg",
    ".pdf", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".avi",
    ".mov", ".mkv", ".webm", ".sqlite", ".sqlite3", ".db", ".pkl", ".pickle", ".npy", ".npz",
    ".parquet", ".psd", ".mo", ".ds_store",
)  # fmt: skip


def _skip_dir(name: str, path: str) -> bool:
    if name in SKIP_DIRS or name.endswith(_SKIP_DIR_SUFFIXES):
        return True
    # Any virtualenv, whatever its name, has this marker file at its top.
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def _skip_file(name: str) -> bool:
    return name in _SKIP_FILES or name.lower().endswith(_SKIP_SUFFIXES)


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 come back from os.walk as lone surrogates
        return False
    return True


def scan(folder: Path) -> Iterator[tuple[str, int, int]]:
    """Yield (posix relative path, size, mtime_ns) for every candidate text file, without reading any."""
    base = str(folder)
    for dirpath, dirnames, filenames in os.walk(base):
        # Pruning in place stops os.walk from descending; symlinked folders are never followed.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not _skip_dir(d, os.path.join(dirpath, d)) and not os.path.islink(os.path.join(dirpath, d))
        )
        rel_dir = os.path.relpath(dirpath, base)
        for name in sorted(filenames):
            if _skip_file(name) or (rel_dir == "." and name == GENERATION_FILE):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            # Symlinks could point outside the workspace; only regular files are indexed.
            if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_FILE_BYTES:
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not rel.isascii() and not _is_text(rel):
                continue  # a name that is not UTF-8 cannot be stored or shown; imports escape such names
            yield rel.replace(os.sep, "/"), st.st_size, st.st_mtime_ns


def read_text(path: Path) -> str | None:
    """The file's text, or None if it is binary, not UTF-8, minified, or gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:_SNIFF_BYTES]:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    line_count = text.count("\n") + 1
    if len(text) / line_count > _MAX_AVERAGE_LINE:
        return None
    return text
