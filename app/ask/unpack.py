"""Unpack a folder, a .zip or a .tar.gz into a staging folder, refusing anything unsafe on the way."""

import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from app.ask.errors import ImportRefused

_BUFFER = 1024 * 1024
_EOCD_SEARCH = 65_535 + 22  # the end record sits within the last 64 KiB (its comment) plus its own size
MAX_NAME_BYTES = 4 * 1024  # a member's name; tar's GNU long-name headers are refused beyond this, unread
MAX_PAX_HEADER_BYTES = 64 * 1024  # a tar PAX header (the extended attributes of one member, or global ones)
_MAX_DIRECTORY_ENTRY = 1024  # average bytes per zip directory entry allowed; real ones are 100-300
# What a broken archive raises while being read; turned into one ImportRefused by the caller. zipfile raises
# UnicodeDecodeError for a name flagged as UTF-8 that is not.
CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError)
_SURROGATE = re.compile("[\ud800-\udfff]")


def show(name: str) -> str:
    """A member name quoted for a message: unprintable characters escaped, length capped."""
    shown = name if name.isprintable() else repr(name)[1:-1]
    return f"'{shown[:200]}'"


def human(size: float) -> str:
    """A byte count for people: "500 MiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:g} {unit}" if unit == "bytes" else f"{size:.4g} {unit}"
        size /= 1024
    return f"{size} GiB"  # pragma: no cover


class Budget:
    """Counts files and bytes against the limits; raises ImportRefused the moment one is crossed."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.max_bytes, self.max_files = max_bytes, max_files
        self.files = self.dirs = self.declared = self.written = 0
        self.header_bytes = 0  # of ``written``: tar headers, counted against the limit but not the files' size

    def add_dir(self) -> None:
        self.dirs += 1
        if self.dirs > self.max_files:
            raise ImportRefused(f"The import has more than {self.max_files} folders (the limit)")

    def add_file(self, name: str, declared_size: int) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ImportRefused(f"The import has more than {self.max_files} files (the limit)")
        self.declared += max(declared_size, 0)
        if self.declared > self.max_bytes:
            raise ImportRefused(
                f"The import declares more than {human(self.max_bytes)} of files (the limit); refused at {show(name)}"
            )

    def add_header(self, size: int) -> None:
        # Header blocks (and long-name or PAX headers) are read into memory too, so they count like file data.
        self.written += size
        self.header_bytes += size
        if self.written > self.max_bytes:
            raise ImportRefused(f"The import unpacks to more than {human(self.max_bytes)} (the limit)")

    def copy(self, source: BinaryIO, target: Path, name: str) -> None:
        # Headers can lie about sizes, so the bytes actually written are counted too.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            while block := source.read(_BUFFER):
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise ImportRefused(
                        f"The import unpacks to more than {human(self.max_bytes)} (the limit); refused at {show(name)}"
                    )
                out.write(block)


def _percent(match: re.Match) -> str:
    char = match.group()
    raw = char.encode("utf-8", "surrogateescape" if "\udc80" <= char <= "\udcff" else "surrogatepass")
    return "".join(f"%{byte:02X}" for byte in raw)


def decodable(name: str) -> str:
    """``name`` with every byte that was not UTF-8 written as ``%XX``: ``src/bad\\xff.py`` -> ``src/bad%FF.py``.

    tarfile and os.walk hand such bytes over as lone surrogates, which the index (and any page) cannot store.
    """
    return _SURROGATE.sub(_percent, name) if _SURROGATE.search(name) else name


def _member_path(name: str) -> PurePosixPath | None:
    """The safe relative path of an archive member, or None for the top folder itself."""
    name = decodable(name)
    if "\x00" in name:
        raise ImportRefused(f"Archive member {show(name)} has a NUL character in its name")
    if "\\" in name:
        raise ImportRefused(f"Archive member {show(name)} has a backslash in its path")
    if name.startswith("/"):
        raise ImportRefused(f"Archive member {show(name)} has an absolute path")
    if re.match(r"[A-Za-z]:", name):
        raise ImportRefused(f"Archive member {show(name)} starts with a drive letter")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ImportRefused(f"Archive member {show(name)} escapes the workspace folder")
    return PurePosixPath(*parts) if parts else None


def _prepare(staging: Path, rel: PurePosixPath) -> Path:
    target = staging.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        raise ImportRefused(f"Archive member '{rel}' appears more than once")
    return target


def _zip_directory(handle: BinaryIO) -> tuple[int, int, int] | None:
    """(declared entry count, directory start, directory size) from the end records, found as zipfile finds them."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - _EOCD_SEARCH))
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None  # zipfile will report the archive as invalid
    end = size - len(tail) + at
    count, cd_size = struct.unpack("<HL", tail[at + 10 : at + 16])
    # A zip64 archive keeps the real numbers in a record just before the locator that precedes the end record.
    locator = at - 20
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07" and end >= 76:
        handle.seek(end - 76)
        record = handle.read(56)
        if record[:4] == b"PK\x06\x06":
            count, cd_size = struct.unpack("<QQ", record[32:48])
            return count, end - 76 - cd_size, cd_size
    return count, end - cd_size, cd_size


def _check_zip_directory(source: Path, budget: Budget) -> None:
    """Refuse a zip whose central directory is too big to parse, before zipfile reads it whole.

    The end record's entry count can lie: zipfile parses the directory by its size. So the size is capped, and
    the entries are counted by walking their fixed headers (names are never read) up to the limit.
    """
    max_entries = 2 * budget.max_files  # files and folders are counted separately, each up to the limit
    with source.open("rb") as handle:
        found = _zip_directory(handle)
        if found is None:
            return
        declared, start, cd_size = found
        if declared > max_entries:
            raise ImportRefused(f"The import has more than {budget.max_files} files (the limit)")
        if cd_size > max_entries * _MAX_DIRECTORY_ENTRY:
            raise ImportRefused(
                f"The zip's central directory is {human(cd_size)}, more than {budget.max_files} files need (the limit)"
            )
        if start < 0:
            return  # zipfile will report the archive as invalid
        handle.seek(start)
        walked = entries = 0
        while walked + 46 <= cd_size:
            header = handle.read(46)
            if len(header) < 46 or header[:4] != b"PK\x01\x02":
                return  # a broken directory: zipfile says so
            name_len, extra_len, comment_len = struct.unpack("<3H", header[28:34])
            if name_len > MAX_NAME_BYTES:
                raise ImportRefused(f"An archive member's name is longer than {human(MAX_NAME_BYTES)} (the limit)")
            entries += 1
            if entries > max_entries:
                raise ImportRefused(f"The import has more than {budget.max_files} files (the limit)")
            skip = name_len + extra_len + comment_len
            handle.seek(skip, os.SEEK_CUR)
            walked += 46 + skip


def unpack_zip(source: Path, staging: Path, budget: Budget) -> None:
    """Check every member of a zip, then extract them; links, special and encrypted files are refused."""
    _check_zip_directory(source, budget)
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        plan: list[tuple[PurePosixPath, zipfile.ZipInfo]] = []
        # Everything is checked before anything is written: the central directory lists it all.
        for info in members:
            rel = _member_path(info.filename)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise ImportRefused(f"Archive member {show(info.filename)} is a symbolic link")
            if info.is_dir() or kind == stat.S_IFDIR:
                budget.add_dir()
            elif kind not in (0, stat.S_IFREG):
                raise ImportRefused(f"Archive member {show(info.filename)} is not a regular file")
            elif info.flag_bits & 0x1:
                raise ImportRefused(f"Archive member {show(info.filename)} is encrypted")
            elif rel is None:
                raise ImportRefused(f"Archive member {show(info.filename)} has no file name")
            else:
                budget.add_file(info.filename, info.file_size)
            if rel is not None:
                plan.append((rel, info))
        for rel, info in plan:
            if info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFDIR:
                staging.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            with archive.open(info) as member:
                budget.copy(member, _prepare(staging, rel), info.filename)


_LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


def _bounded_tarinfo(budget: Budget) -> type[tarfile.TarInfo]:
    """A TarInfo that checks each header's declared size before tarfile reads that header into memory.

    tarfile reads a GNU long-name header or a PAX header whole, whatever size its 512-byte block claims (1 GiB
    costs 1 GiB). Every header tarfile reads goes through ``_proc_member`` first, chained headers included.
    """

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # tarfile calls this per header
            extended = self.type in _LONG_NAME_TYPES or self.type in _PAX_TYPES
            if self.type in _LONG_NAME_TYPES and self.size > MAX_NAME_BYTES:
                raise ImportRefused(
                    f"An archive member's name is longer than {human(MAX_NAME_BYTES)} "
                    f"(its header claims {human(self.size)})"
                )
            if self.type in _PAX_TYPES and self.size > MAX_PAX_HEADER_BYTES:
                raise ImportRefused(
                    f"An archive member's PAX header is larger than {human(MAX_PAX_HEADER_BYTES)} "
                    f"(it claims {human(self.size)})"
                )
            budget.add_header(tarfile.BLOCKSIZE + (self._block(self.size) if extended else 0))
            return super()._proc_member(tarfile_)

    return BoundedTarInfo


def unpack_tar(source: Path, staging: Path, budget: Budget) -> None:
    """Extract a .tar.gz member by member; links, devices and FIFOs are refused."""
    with tarfile.open(source, mode="r:gz", tarinfo=_bounded_tarinfo(budget)) as archive:
        # Streamed member by member: a bomb is refused as soon as a limit is crossed.
        for member in archive:
            name = member.name
            if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:  # a PAX path, within its header
                raise ImportRefused(f"Archive member {show(name)} has a name longer than {human(MAX_NAME_BYTES)}")
            rel = _member_path(name)
            if member.issym():
                raise ImportRefused(f"Archive member {show(name)} is a symbolic link")
            if member.islnk():
                raise ImportRefused(f"Archive member {show(name)} is a hard link")
            if member.ischr() or member.isblk():
                raise ImportRefused(f"Archive member {show(name)} is a device file")
            if member.isfifo():
                raise ImportRefused(f"Archive member {show(name)} is a FIFO (named pipe)")
            if member.isdir():
                budget.add_dir()
                if rel is not None:
                    staging.joinpath(*rel.parts).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isreg():
                raise ImportRefused(f"Archive member {show(name)} is not a regular file")
            if rel is None:
                raise ImportRefused(f"Archive member {show(name)} has no file name")
            budget.add_file(name, member.size)
            data = archive.extractfile(member)
            if data is None:  # pragma: no cover - only for non-regular members, refused above
                raise ImportRefused(f"Archive member {show(name)} could not be read")
            with data:
                budget.copy(data, _prepare(staging, rel), name)


def copy_folder(source: Path, staging: Path, budget: Budget) -> None:
    """Copy regular files only: symlinks are skipped, never followed, and so are special files."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel_dir = Path(decodable(str(Path(dirpath).relative_to(source))))
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in dirnames:
            budget.add_dir()
            (staging / rel_dir / decodable(name)).mkdir()
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = (rel_dir / decodable(name)).as_posix()
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # never even open a device node: opening some has side effects
                # O_NONBLOCK: a FIFO swapped in after the check must not hang the import.
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as handle:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                budget.add_file(rel, st.st_size)
                budget.copy(handle, staging / rel, rel)
