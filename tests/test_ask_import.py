"""Importing workspaces: valid sources work, every unsafe archive is refused and leaves nothing behind."""

import io
import os
import re
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from app.ask import ImportRefused, ask, import_archive_stream, import_workspace, list_workspaces
from app.ask.generation import GENERATION_FILE, read_generation
from app.ask.unpack import Budget

FILES = {"src/app.py": b"def greet(name):\n    return 'hi ' + name\n", "README.md": b"# Demo\n"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "workspaces"
    path.mkdir()
    return path


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in special or []:
            archive.addfile(info)
    return path


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _assert_nothing_left(root: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == []


def _files(folder: Path) -> dict[str, bytes]:
    """The imported files, without the import's generation token (tested on its own)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert re.fullmatch(rb"[0-9a-f]{32}\n", files.pop(GENERATION_FILE))
    return files


def test_import_folder(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name, data in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    os.symlink("/etc/passwd", source / "passwd-link")
    os.symlink(source / "src", source / "dir-link")
    os.mkfifo(source / "pipe")
    result = import_workspace(root, "demo", source)
    assert result == {"id": "demo", "file_count": 2, "size_bytes": sum(map(len, FILES.values()))}
    assert _files(root / "demo") == FILES
    assert not os.path.lexists(root / "demo" / "passwd-link")
    assert sorted(p.name for p in root.iterdir()) == [".index", "demo"]
    assert ask(root, "demo", "greet")["sources"][0]["symbol"] == "greet"


@pytest.mark.parametrize("name", ["code.zip", "code.tar.gz", "code.tgz", "CODE.ZIP"])
def test_import_archives(root: Path, tmp_path: Path, name: str) -> None:
    members = {"top/": b"", **{f"top/{k}": v for k, v in FILES.items()}}
    if name.lower().endswith(".zip"):
        source = _zip(tmp_path / name, members)
    else:
        source = _tar(tmp_path / name, {k: v for k, v in members.items() if not k.endswith("/")})
    result = import_workspace(root, "demo", source)
    assert result["file_count"] == 2
    assert _files(root / "demo") == {f"top/{k}": v for k, v in FILES.items()}
    assert sorted(p.name for p in root.iterdir()) == [".index", "demo"]


ZIP_ATTACKS = [
    ({"../evil.py": b"x"}, None, "Archive member '../evil.py' escapes the workspace folder"),
    ({"a/../../evil.py": b"x"}, None, "escapes the workspace folder"),
    ({"/etc/cron.d/evil": b"x"}, None, "Archive member '/etc/cron.d/evil' has an absolute path"),
    ({"C:/Windows/evil.dll": b"x"}, None, "starts with a drive letter"),
    ({"..\\..\\evil.py": b"x"}, None, "has a backslash in its path"),
    ({"ok.py": b"x"}, {"link": "/etc/passwd"}, "Archive member 'link' is a symbolic link"),
    ({"ok.py": b"x", "./ok.py": b"y"}, None, "Archive member 'ok.py' appears more than once"),
]


@pytest.mark.parametrize(("members", "links", "message"), ZIP_ATTACKS)
def test_zip_attacks_are_refused(root: Path, tmp_path: Path, members: dict, links: dict, message: str) -> None:
    source = _zip(tmp_path / "evil.zip", {"fine.py": b"print(1)\n", **members}, links)
    with pytest.raises(ImportRefused, match=message.replace(".", r"\.")):
        import_workspace(root, "demo", source)
    _assert_nothing_left(root)


TAR_ATTACKS = [
    ({"../evil.py": b"x"}, [], "escapes the workspace folder"),
    ({"/abs/evil.py": b"x"}, [], "has an absolute path"),
    ({}, [_special("link", tarfile.SYMTYPE, "/etc/passwd")], "Archive member 'link' is a symbolic link"),
    ({}, [_special("hard", tarfile.LNKTYPE, "fine.py")], "Archive member 'hard' is a hard link"),
    ({}, [_special("tty", tarfile.CHRTYPE)], "Archive member 'tty' is a device file"),
    ({}, [_special("disk", tarfile.BLKTYPE)], "Archive member 'disk' is a device file"),
    ({}, [_special("pipe", tarfile.FIFOTYPE)], r"Archive member 'pipe' is a FIFO \(named pipe\)"),
]


@pytest.mark.parametrize(("members", "special", "message"), TAR_ATTACKS)
def test_tar_attacks_are_refused(root: Path, tmp_path: Path, members: dict, special: list, message: str) -> None:
    source = _tar(tmp_path / "evil.tar.gz", {"fine.py": b"print(1)\n", **members}, special)
    with pytest.raises(ImportRefused, match=message):
        import_workspace(root, "demo", source)
    _assert_nothing_left(root)


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_size_bomb_is_refused(root: Path, tmp_path: Path, kind: str) -> None:
    members = {f"part{i}.txt": b"\0" * 400_000 for i in range(5)}  # compresses to almost nothing
    source = _zip(tmp_path / "bomb.zip", members) if kind == "zip" else _tar(tmp_path / "bomb.tar.gz", members)
    assert source.stat().st_size < 50_000
    with pytest.raises(ImportRefused, match=r"more than 1 MiB of files \(the limit\)"):
        import_workspace(root, "demo", source, max_bytes=1024 * 1024)
    _assert_nothing_left(root)


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "folder"])
def test_file_count_bomb_is_refused(root: Path, tmp_path: Path, kind: str) -> None:
    members = {f"f{i}.txt": b"x" for i in range(11)}
    if kind == "zip":
        source = _zip(tmp_path / "many.zip", members)
    elif kind == "tar.gz":
        source = _tar(tmp_path / "many.tar.gz", members)
    else:
        source = tmp_path / "many"
        source.mkdir()
        for name, data in members.items():
            (source / name).write_bytes(data)
    with pytest.raises(ImportRefused, match=r"The import has more than 10 files \(the limit\)"):
        import_workspace(root, "demo", source, max_files=10)
    _assert_nothing_left(root)


def test_actual_bytes_are_counted_even_if_headers_lie(tmp_path: Path) -> None:
    budget = Budget(max_bytes=1000, max_files=10)
    budget.add_file("liar.txt", declared_size=10)
    with pytest.raises(ImportRefused, match=r"unpacks to more than 1000 bytes \(the limit\); refused at 'liar.txt'"):
        budget.copy(io.BytesIO(b"x" * 5000), tmp_path / "liar.txt", "liar.txt")


def test_existing_workspace_needs_replace(root: Path, tmp_path: Path) -> None:
    import_workspace(root, "demo", _zip(tmp_path / "one.zip", {"old.py": b"def old_thing():\n    pass\n"}))
    assert ask(root, "demo", "old thing")["sources"]
    two = _zip(tmp_path / "two.zip", {"new.py": b"def new_thing():\n    pass\n"})
    with pytest.raises(ImportRefused, match="Workspace 'demo' already exists"):
        import_workspace(root, "demo", two)
    first_import = read_generation(root / "demo")
    result = import_workspace(root, "demo", two, replace=True)
    assert result["file_count"] == 1
    assert _files(root / "demo") == {"new.py": b"def new_thing():\n    pass\n"}
    assert read_generation(root / "demo") not in (first_import, None)
    assert ask(root, "demo", "old thing")["sources"] == []
    assert ask(root, "demo", "new thing")["sources"][0]["symbol"] == "new_thing"
    assert sorted(p.name for p in root.iterdir()) == [".index", "demo"]


def test_an_import_through_another_host_landing_first_is_a_clear_refusal(root, tmp_path, monkeypatch) -> None:
    import app.ask.importer as importer

    import_workspace(root, "demo", _zip(tmp_path / "one.zip", {"old.py": b"old = 1\n"}))
    real_rename = os.rename

    def other_host_lands_first(source, target):
        if Path(target) == root / "demo" and Path(source).name.startswith(".import-"):
            (root / "demo").mkdir()  # another host's import, under that host's own lock
            (root / "demo" / "theirs.py").write_bytes(b"theirs = 1\n")
        real_rename(source, target)

    monkeypatch.setattr(importer.os, "rename", other_host_lands_first)
    with pytest.raises(ImportRefused) as exc:
        import_workspace(root, "demo", _zip(tmp_path / "two.zip", {"new.py": b"new = 1\n"}), replace=True)
    assert str(exc.value) == (
        "Workspace 'demo' changed while it was being put in place (Directory not empty); "
        "another import of it may have been under way: try again"
    )
    assert sorted(p.name for p in (root / "demo").iterdir()) == ["theirs.py"]
    assert not any(p.name.startswith(".import-") for p in root.iterdir())


@pytest.mark.parametrize(
    ("source_name", "data", "message"),
    [
        ("code.rar", b"Rar!", "use a folder, a .zip or a .tar.gz/.tgz file"),
        ("code.zip", b"not a zip at all", "'code.zip' is not a valid zip archive"),
        ("code.tar.gz", b"not gzip", "'code.tar.gz' is not a valid tar archive"),
    ],
)
def test_unreadable_sources(root: Path, tmp_path: Path, source_name: str, data: bytes, message: str) -> None:
    (tmp_path / source_name).write_bytes(data)
    with pytest.raises(ImportRefused, match=message):
        import_workspace(root, "demo", tmp_path / source_name)
    _assert_nothing_left(root)


def test_empty_archive_is_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match="contains no files"):
        import_workspace(root, "demo", _zip(tmp_path / "empty.zip", {"dir/": b""}))
    _assert_nothing_left(root)


@pytest.mark.parametrize("workspace_id", ["../x", ".hidden", "", "a" * 65, "users.json", "x.lock", "a/b"])
def test_invalid_ids_are_refused(root: Path, tmp_path: Path, workspace_id: str) -> None:
    with pytest.raises(ImportRefused, match="Invalid workspace id"):
        import_workspace(root, workspace_id, _zip(tmp_path / "ok.zip", FILES))
    _assert_nothing_left(root)


def test_source_folder_containing_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data" / "workspaces"
    root.mkdir(parents=True)
    with pytest.raises(ImportRefused, match="contains the workspaces folder"):
        import_workspace(root, "demo", tmp_path)
    _assert_nothing_left(root)


def test_upload_stream(root: Path, tmp_path: Path) -> None:
    data = _zip(tmp_path / "up.zip", FILES).read_bytes()
    result = import_archive_stream(root, "up", io.BytesIO(data), "project.zip")
    assert result["file_count"] == 2
    assert [w["id"] for w in list_workspaces(root)] == ["up"]
    assert sorted(p.name for p in root.iterdir()) == [".index", "up"]


@pytest.mark.parametrize(
    ("filename", "max_bytes", "message"),
    [("project.exe", 10**6, "upload a .zip or a .tar.gz/.tgz file"), ("p.zip", 100, "upload is larger than 100 bytes")],
)
def test_upload_refusals(root: Path, tmp_path: Path, filename: str, max_bytes: int, message: str) -> None:
    data = _zip(tmp_path / "up.zip", FILES).read_bytes()
    with pytest.raises(ImportRefused, match=message):
        import_archive_stream(root, "up", io.BytesIO(data), filename, max_bytes=max_bytes)
    _assert_nothing_left(root)


def test_upload_of_an_attack_leaves_nothing(root: Path, tmp_path: Path) -> None:
    data = _zip(tmp_path / "evil.zip", {"../../etc/passwd": b"root::0:0"}).read_bytes()
    with pytest.raises(ImportRefused, match="Archive member '../../etc/passwd' escapes the workspace folder"):
        import_archive_stream(root, "up", io.BytesIO(data), "evil.zip")
    _assert_nothing_left(root)


def test_file_and_folder_with_one_name_is_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match="Could not unpack 'clash.zip'"):
        import_workspace(root, "demo", _zip(tmp_path / "clash.zip", {"a": b"file", "a/b.py": b"x"}))
    _assert_nothing_left(root)


def test_zip_entry_count_is_checked_before_parsing(root: Path, tmp_path: Path) -> None:
    # A zip64 end record claiming ten million entries: refused without building ten million ZipInfos.
    zip64_end = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 10**7, 10**7, 0, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    (tmp_path / "huge.zip").write_bytes(zip64_end + locator + end)
    with pytest.raises(ImportRefused, match=r"more than 10 files \(the limit\)"):
        import_workspace(root, "demo", tmp_path / "huge.zip", max_files=10)
    many = _zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(25)})
    with pytest.raises(ImportRefused, match=r"more than 10 files \(the limit\)"):
        import_workspace(root, "demo", many, max_files=10)
    _assert_nothing_left(root)


def test_stale_leftovers_are_swept(root: Path, tmp_path: Path) -> None:
    old, fresh = root / ".import-0ld", root / ".import-fresh"
    (old / "deep").mkdir(parents=True)
    fresh.mkdir()
    (root / ".upload-0ld.zip").write_bytes(b"x")
    day_ago = time.time() - 86400
    for path in (old, root / ".upload-0ld.zip"):
        os.utime(path, (day_ago, day_ago))
    import_workspace(root, "demo", _zip(tmp_path / "ok.zip", FILES))
    assert sorted(p.name for p in root.iterdir()) == [".import-fresh", ".index", "demo"]


def test_a_broken_upload_is_named_by_its_own_file_name(root: Path) -> None:
    with pytest.raises(ImportRefused) as refused:
        import_archive_stream(root, "demo", io.BytesIO(b"not a zip at all"), "project.zip")

    assert str(refused.value).startswith("'project.zip' is not a valid zip archive")
    assert ".upload-" not in str(refused.value)
    assert list_workspaces(root) == []
    assert not [p for p in root.iterdir() if p.name.startswith((".upload-", ".import-"))]
