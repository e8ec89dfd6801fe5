"""Archive headers are bounded before they are read: tar long names and PAX headers, the zip central directory.

The memory tests import in a child process and read its peak RSS (``VmHWM``): the issue's attacks cost the
worker 0.5-3 GB before these checks, and must stay under 200 MB.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from app.ask import ImportRefused, import_workspace
from tests.conftest import ROOT

PEAK_LIMIT_KIB = 200 * 1024
CODE = b"def f():\n    return 1\n"


def _import_in_child(root: Path, source: Path) -> dict:
    """Import ``source`` in a fresh interpreter: its refusal (or None) and its peak RSS in KiB."""
    script = (
        "import json, sys\n"
        "from app.ask import ImportRefused, import_workspace\n"
        "try:\n"
        "    import_workspace(sys.argv[1], 'attack', sys.argv[2]); refusal = None\n"
        "except ImportRefused as exc:\n"
        "    refusal = str(exc)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so a child of a large pytest would report
        # pytest's own peak; VmHWM belongs to the new process image alone.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps({'refusal': refusal, 'peak_kib': int(hwm)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root), str(source)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _gzip_stream(path: Path, pieces) -> Path:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        for piece in pieces:
            out.write(packer.compress(piece))
        out.write(packer.flush())
    return path


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def _long_name_bomb(path: Path, claimed: int, kind: bytes = tarfile.GNUTYPE_LONGNAME) -> Path:
    """A .tar.gz whose first header claims ``claimed`` bytes of long name (or PAX data), then one small file."""

    def pieces():
        yield _header("././@LongLink", kind, claimed)
        block = b"a" * (1024 * 1024)
        for _ in range(claimed // len(block)):
            yield block
        yield _padded(b"a" * (claimed % len(block)))
        yield _header("ok.py", tarfile.REGTYPE, len(CODE)) + _padded(CODE) + b"\0" * 1024

    return _gzip_stream(path, pieces())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces"
    path.mkdir()
    return path


def _nothing_left(root: Path) -> bool:
    return sorted(p.name for p in root.iterdir()) == []


# -- tar ------------------------------------------------------------------------------------------------------
def test_a_long_name_header_claiming_256_mib_is_refused_unread(root, tmp_path):
    bomb = _long_name_bomb(tmp_path / "bomb.tar.gz", 256 * 1024 * 1024)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    result = _import_in_child(root, bomb)
    assert result["refusal"] == "An archive member's name is longer than 4 KiB (its header claims 256 MiB)"
    assert result["peak_kib"] < PEAK_LIMIT_KIB, f"peak RSS {result['peak_kib']} KiB"
    assert _nothing_left(root)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_a_pax_header_over_64_kib_is_refused_unread(root, tmp_path, kind):
    bomb = _long_name_bomb(tmp_path / "pax.tar.gz", 64 * 1024 + 1, kind)
    with pytest.raises(ImportRefused) as refused:
        import_workspace(root, "demo", bomb)
    assert str(refused.value) == "An archive member's PAX header is larger than 64 KiB (it claims 64 KiB)"
    assert _nothing_left(root)


def test_a_long_link_header_is_bounded_too(root, tmp_path):
    bomb = _long_name_bomb(tmp_path / "link.tar.gz", 4097, tarfile.GNUTYPE_LONGLINK)
    with pytest.raises(ImportRefused, match=r"^An archive member's name is longer than 4 KiB \(its header claims"):
        import_workspace(root, "demo", bomb)


def test_a_pax_path_over_4_kib_is_refused(root, tmp_path):
    path = tmp_path / "long.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d/" * 2100 + "x.py")  # 4204 bytes, in a PAX header well under 64 KiB
        info.size = len(CODE)
        tar.addfile(info, io.BytesIO(CODE))
    with pytest.raises(ImportRefused, match=r"has a name longer than 4 KiB$"):
        import_workspace(root, "demo", path)
    assert _nothing_left(root)


def test_ordinary_long_names_and_pax_headers_still_import(root, tmp_path):
    path = tmp_path / "fine.tar.gz"
    name = "a" * 120 + "/" + "b" * 120 + "/" + "c" * 120 + ".py"  # over 100 bytes: a long-name header
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(CODE)
        tar.addfile(info, io.BytesIO(CODE))
    import_workspace(root, "gnu", path)
    assert (root / "gnu" / name).read_bytes() == CODE
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": "c" * 60_000}) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(CODE)
        info.pax_headers = {"comment": "m" * 60_000}
        tar.addfile(info, io.BytesIO(CODE))
    import_workspace(root, "pax", path)
    assert (root / "pax" / name).read_bytes() == CODE


def test_header_bytes_count_against_the_budget(root, tmp_path):
    path = tmp_path / "headers.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for number in range(4):
            info = tarfile.TarInfo(f"f{number}.py")
            info.size = len(CODE)
            info.pax_headers = {"comment": "x" * 60_000}  # 60 KB of header for 22 bytes of file
            tar.addfile(info, io.BytesIO(CODE))
    with pytest.raises(ImportRefused) as refused:
        import_workspace(root, "demo", path, max_bytes=200 * 1024)
    assert str(refused.value) == "The import unpacks to more than 200 KiB (the limit)"
    assert _nothing_left(root)
    import_workspace(root, "demo", path, max_bytes=300 * 1024)


# -- zip ------------------------------------------------------------------------------------------------------
def _lying_zip(path: Path, entries: int, name: bytes = b"a.py") -> Path:
    """One real member, then a central directory of ``entries`` entries whose end record says there is 1."""
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(CODE), len(CODE), len(CODE), len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, zlib.crc32(CODE), len(CODE), len(CODE), len(name), 0, 0, 0,
        0, 0o100644 << 16, 0,
    ) + name  # fmt: skip
    data_size = len(local) + len(name) + len(CODE)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) * entries, data_size, 0)
    with path.open("wb") as out:
        out.write(local + name + CODE)
        out.write(central * entries)
        out.write(end)
    return path


def test_a_zip_directory_of_a_million_entries_claiming_one_is_refused_before_parsing(root, tmp_path):
    bomb = _lying_zip(tmp_path / "lying.zip", 1_000_000)
    assert bomb.stat().st_size > 50 * 1000 * 1000
    result = _import_in_child(root, bomb)
    assert result["refusal"] == "The zip's central directory is 47.68 MiB, more than 20000 files need (the limit)"
    assert result["peak_kib"] < PEAK_LIMIT_KIB, f"peak RSS {result['peak_kib']} KiB"
    assert _nothing_left(root)


def test_zip_entries_are_counted_by_walking_the_directory(root, tmp_path):
    lying = _lying_zip(tmp_path / "small.zip", 25)  # 1.2 KiB of directory: under the size cap for 10 files
    with pytest.raises(ImportRefused) as refused:
        import_workspace(root, "demo", lying, max_files=10)
    assert str(refused.value) == "The import has more than 10 files (the limit)"
    assert _nothing_left(root)
    honest = _lying_zip(tmp_path / "one.zip", 1)
    import_workspace(root, "demo", honest, max_files=10)
    assert (root / "demo" / "a.py").read_bytes() == CODE


def test_a_zip_member_name_over_4_kib_is_refused(root, tmp_path):
    path = tmp_path / "long.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("d/" * 2100 + "x.py", CODE)
    with pytest.raises(ImportRefused) as refused:
        import_workspace(root, "demo", path)
    assert str(refused.value) == "An archive member's name is longer than 4 KiB (the limit)"
    assert _nothing_left(root)
