"""Workspace ids, listing and deletion."""

import re
from pathlib import Path

import pytest

from app.ask import (
    WORKSPACE_ID_RE,
    WorkspaceNotFound,
    delete_workspace,
    is_valid_workspace_id,
    list_workspaces,
    update_index,
    workspace_dir,
)
from app.ask.indexdb import index_db_path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "workspaces"
    for name in ("beta", "alpha"):
        (root / name / "src").mkdir(parents=True)
        (root / name / "src" / "main.py").write_text("def main():\n    return 0\n")
    (root / "alpha" / "notes.txt").write_text("12345")
    # The store's own files and folders, and stray entries, are never workspaces.
    for name in ("api-keys.json", "users.json", ".secret-key", ".setup-token", "x.lock", "y.bak", "z.tmp"):
        (root / name).write_text("{}")
    for name in (".index", ".import-abc123", "old.bak", "cache.json"):
        (root / name).mkdir(exist_ok=True)
    (root / "link").symlink_to(root / "alpha")
    return root


@pytest.mark.parametrize("good", ["a", "A1", "my-repo", "my_repo.v2", "0" * 64, "flask-3.1"])
def test_valid_ids(good: str) -> None:
    assert is_valid_workspace_id(good) and WORKSPACE_ID_RE.match(good)


@pytest.mark.parametrize(
    "bad", ["", ".", "..", ".git", "-x", "_x", "a" * 65, "a/b", "a\\b", "a b", "é", "x.json", "users.json", None, 3]
)
def test_invalid_ids(bad: object) -> None:
    assert not is_valid_workspace_id(bad)


def test_regex_is_the_documented_one() -> None:
    assert WORKSPACE_ID_RE.pattern == r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
    assert isinstance(WORKSPACE_ID_RE, re.Pattern)


def test_list_workspaces(root: Path) -> None:
    assert list_workspaces(root) == [
        {"id": "alpha", "file_count": 2, "size_bytes": 30, "last_indexed": None, "state": "not_indexed"},
        {"id": "beta", "file_count": 1, "size_bytes": 25, "last_indexed": None, "state": "not_indexed"},
    ]
    update_index(root, "beta")
    beta = list_workspaces(root)[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", beta["last_indexed"])
    assert beta["state"] == "ready"  # an index built without a job (before states existed) is ready too


def test_list_of_missing_root_is_empty(tmp_path: Path) -> None:
    assert list_workspaces(tmp_path / "nope") == []


def test_workspace_dir(root: Path) -> None:
    assert workspace_dir(root, "alpha") == root / "alpha"
    for name in ("missing", "link", ".index", "api-keys.json", "cache.json", "../workspaces", ""):
        with pytest.raises(WorkspaceNotFound, match="^Workspace not found$"):
            workspace_dir(root, name)


def test_delete_workspace_removes_folder_and_index(root: Path) -> None:
    update_index(root, "alpha")
    assert index_db_path(root, "alpha").exists()
    delete_workspace(root, "alpha")
    assert not (root / "alpha").exists()
    assert not index_db_path(root, "alpha").exists()
    assert [w["id"] for w in list_workspaces(root)] == ["beta"]
    assert not [p for p in root.iterdir() if p.name.startswith(".delete-")]
    with pytest.raises(WorkspaceNotFound):
        delete_workspace(root, "alpha")
    with pytest.raises(WorkspaceNotFound):
        delete_workspace(root, "../workspaces")
    assert (root / "link").is_symlink()
