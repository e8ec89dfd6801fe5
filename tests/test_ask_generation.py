"""Hosts sharing WORKSPACES_DIR with indexes of their own (INDEX_DIR): a replacement through one is seen by all.

In one process, a "host" is where the workspaces root's indexes are placed (``indexdb.place_indexes``), which is
what each host's app does with its own INDEX_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.ask import ask, import_workspace, indexdb, indexjobs, indexstate, update_index
from app.ask.generation import GENERATION_FILE, read_generation, write_generation

V1 = "def alpha_handler(request):\n    return request.get('alpha')\n"
V2 = "def omega_handler(request):\n    return request.get('omega')\n"
assert len(V1) == len(V2)  # the replacement repeats each file's name and size


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch):
    """``(root, use)``: a shared workspaces root and ``use("a")`` to act as that host."""
    monkeypatch.setattr(indexdb, "_placed", {})
    root = tmp_path / "shared"
    root.mkdir()

    def use(host: str) -> Path:
        folder = tmp_path / f"index-{host}"
        indexdb.place_indexes(root, folder)
        return folder

    return root, use


def _source(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(text)
    return folder


def _best(root: Path, question: str, **options) -> str | None:
    sources = ask(root, "shop", question, **options)["sources"]
    return sources[0]["symbol"] if sources else None


def _replace_keeping_size_and_mtime(root: Path, tmp_path: Path) -> None:
    """Replace the workspace by an import whose file has the old one's name, size and mtime (what a
    coarse-grained or cached clock on a shared volume can show), so only the import's token tells them apart."""
    old = os.stat(root / "shop" / "app.py")
    import_workspace(root, "shop", _source(tmp_path, "v2", V2), replace=True)
    os.utime(root / "shop" / "app.py", ns=(old.st_atime_ns, old.st_mtime_ns))
    new = os.stat(root / "shop" / "app.py")
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns)


def test_a_replacement_through_one_host_is_answered_from_the_new_files_by_another(hosts, tmp_path):
    root, use = hosts
    index_a = use("a")
    import_workspace(root, "shop", _source(tmp_path, "v1", V1))
    assert _best(root, "alpha") == "alpha_handler"
    index_b = use("b")
    assert _best(root, "alpha") == "alpha_handler"

    use("a")
    _replace_keeping_size_and_mtime(root, tmp_path)
    assert _best(root, "omega") == "omega_handler"

    use("b")
    assert _best(root, "omega") == "omega_handler"
    assert _best(root, "alpha") is None
    # Each host's index, lock and nothing on the shared volume.
    assert sorted(p.name for p in index_a.iterdir()) == sorted(p.name for p in index_b.iterdir())
    assert {"shop.sqlite3", "shop.lock"} <= {p.name for p in index_b.iterdir()}
    assert sorted(p.name for p in root.iterdir()) == ["shop"]


def test_another_hosts_ready_index_is_not_ready_after_a_replacement_then_rebuilt_in_the_background(hosts, tmp_path):
    root, use = hosts
    use("a")
    import_workspace(root, "shop", _source(tmp_path, "v1", V1))
    use("b")
    indexjobs.run_index(root, "shop")
    assert indexstate.read_state(root, "shop")["state"] == "ready"

    use("a")
    _replace_keeping_size_and_mtime(root, tmp_path)

    use("b")
    assert indexstate.read_state(root, "shop")["state"] == "not_indexed"
    assert _best(root, "omega", index_wait=30) == "omega_handler"  # queued, built, then answered
    assert indexstate.read_state(root, "shop")["state"] == "ready"


def test_a_folder_made_by_hand_has_no_token_and_is_still_updated_file_by_file(hosts, tmp_path):
    root, use = hosts
    use("a")
    (root / "shop").mkdir()
    (root / "shop" / "app.py").write_text(V1)
    assert read_generation(root / "shop") is None
    assert update_index(root, "shop").files_read == 1
    assert update_index(root, "shop").files_read == 0
    assert indexstate.read_state(root, "shop")["state"] == "ready"
    # Its token appearing (an import, by hand or not) is a replacement: every file is read again.
    write_generation(root / "shop")
    assert indexstate.read_state(root, "shop")["state"] == "not_indexed"
    assert update_index(root, "shop").files_read == 1


def test_the_token_is_not_workspace_content(hosts, tmp_path):
    root, use = hosts
    use("a")
    import_workspace(root, "shop", _source(tmp_path, "v1", V1))
    assert (root / "shop" / GENERATION_FILE).is_file()
    stats = update_index(root, "shop")
    assert stats.read_paths == ["app.py"]
    from app.ask import list_workspaces

    assert list_workspaces(root)[0]["file_count"] == 1


@pytest.mark.parametrize("content", [b"", b"x" * 65, b"\xff\xfe", None])
def test_an_unreadable_token_counts_as_none(tmp_path, content):
    if content is None:
        (tmp_path / GENERATION_FILE).mkdir()
    else:
        (tmp_path / GENERATION_FILE).write_bytes(content)
    assert read_generation(tmp_path) is None
