"""File names that are not UTF-8 (latin-1 repositories): imported under an escaped name, and asking still answers."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from app.ask import import_workspace
from app.ask.index import update_index
from app.ask.unpack import decodable
from tests.conftest import ADMIN_KEY

ADMIN = {"x-api-key": ADMIN_KEY}
BAD = "src/bad\udcff.py"  # the bytes b"src/bad\xff.py" as tarfile and os.walk hand them over
CODE = b"def latin_greeting(name):\n    return 'hola ' + name\n"


def _latin1_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in ((BAD, CODE), ("src/good.py", b"def plain():\n    return 1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as check:  # the archive really holds the raw byte 0xff
        assert check.getnames()[0].encode("utf-8", "surrogateescape") == b"src/bad\xff.py"
    return path


def test_decodable_escapes_only_bytes_that_were_not_utf8():
    assert decodable("src/bad\udcff.py") == "src/bad%FF.py"
    assert decodable("caf\udce9/\udcc3\udca9t\udce9.py") == "caf%E9/%C3%A9t%E9.py"
    assert decodable("déjà/vu 100%.py") == "déjà/vu 100%.py"


def test_a_tar_member_named_in_latin1_is_imported_escaped_and_asking_answers(client, workspaces, tmp_path):
    import_workspace(workspaces, "latin", _latin1_tar(tmp_path / "latin.tar.gz"))
    assert (workspaces / "latin" / "src" / "bad%FF.py").read_bytes() == CODE
    response = client.post("/api/ask", json={"workspaceId": "latin", "question": "latin_greeting hola"}, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["sources"][0]["path"] == "src/bad%FF.py"


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_a_folder_import_escapes_such_names_too(workspaces, tmp_path):
    source = tmp_path / "src"
    (source / "caf\udce9").mkdir(parents=True)  # bytes b"caf\xe9": a latin-1 folder name on disk
    (source / "caf\udce9" / "bad\udcff.py").write_bytes(CODE)
    import_workspace(workspaces, "folder", source)
    assert (workspaces / "folder" / "caf%E9" / "bad%FF.py").read_bytes() == CODE


def test_a_name_copied_in_by_hand_is_skipped_and_the_rest_answers(client, workspaces):
    folder = workspaces / "manual"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "bad\udcff.py").write_bytes(CODE)
    (folder / "src" / "good.py").write_bytes(b"def latin_plain():\n    return 'hola'\n")
    stats = update_index(workspaces, "manual")
    assert stats.read_paths == ["src/good.py"]
    response = client.post("/api/ask", json={"workspaceId": "manual", "question": "hola"}, headers=ADMIN)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [s["path"] for s in response.get_json()["sources"]] == ["src/good.py"]
