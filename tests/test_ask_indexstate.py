"""The index state file: what each state means, and states their writer left behind on dying."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.ask import indexstate
from app.ask.index import update_index
from app.ask.indexdb import drop_index
from tests.conftest import ROOT

HOLD_LOCK = """
import sys
from pathlib import Path
from app.ask import indexstate
with indexstate.job_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "workspaces"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "cart.py").write_text("def add(item):\n    return item\n")
    return root


@pytest.fixture
def other_process(root: Path):
    """``hold()`` makes another process take the job lock of ``shop`` and keep it until the test ends."""
    procs: list[subprocess.Popen] = []

    def hold() -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(root), "shop"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.communicate("\n", timeout=10)


def state(root: Path) -> dict:
    return indexstate.read_state(root, "shop")


def test_a_workspace_never_indexed_is_not_indexed_and_one_with_an_index_is_ready(root):
    assert state(root) == {"state": "not_indexed", "done": 0, "total": 0, "reason": None, "updated_at": None}
    update_index(root, "shop")  # an index built without a job, as before states existed
    assert state(root)["state"] == "ready"


def test_indexing_is_believed_while_the_job_lock_is_held_by_another_process(root, other_process):
    other_process()
    assert indexstate.job_running(root, "shop")
    indexstate.write_state(root, "shop", "indexing", done=2, total=7)
    got = state(root)
    assert (got["state"], got["done"], got["total"]) == ("indexing", 2, 7)
    assert indexstate.public_state(got) == {"state": "indexing", "progress": {"done": 2, "total": 7}}


def test_the_job_lock_excludes_another_process_and_is_free_again_when_it_exits(root, other_process):
    proc = other_process()
    with indexstate.job_lock(root, "shop", blocking=False) as acquired:
        assert acquired is False
    proc.communicate("\n", timeout=10)
    assert not indexstate.job_running(root, "shop")
    with indexstate.job_lock(root, "shop", blocking=False) as acquired:
        assert acquired is True


def test_an_indexing_state_whose_writer_died_is_ignored(root):
    indexstate.write_state(root, "shop", "indexing", done=1, total=3)  # and nobody holds the lock
    assert state(root)["state"] == "not_indexed"
    update_index(root, "shop")
    assert state(root)["state"] == "ready"


def test_queued_holds_while_its_process_lives_and_not_after(root):
    indexstate.write_state(root, "shop", "queued")  # written by this (living) process
    assert state(root)["state"] == "queued"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads(indexstate.state_path(root, "shop").read_text())
    record["pid"] = int(dead.stdout)
    indexstate.state_path(root, "shop").write_text(json.dumps(record))
    assert state(root)["state"] == "not_indexed"
    record["host"] = "another-host"  # another host's process cannot be checked: it is believed
    indexstate.state_path(root, "shop").write_text(json.dumps(record))
    assert state(root)["state"] == "queued"


def test_mark_queued_leaves_a_running_job_state_alone(root, other_process):
    indexstate.mark_queued(root, "shop")
    assert state(root)["state"] == "queued"
    other_process()
    indexstate.write_state(root, "shop", "indexing", done=5, total=9)
    indexstate.mark_queued(root, "shop")
    assert (state(root)["state"], state(root)["done"]) == ("indexing", 5)


def test_ready_without_the_index_beside_it_is_not_ready(root):
    update_index(root, "shop")
    indexstate.write_state(root, "shop", "ready", done=1, total=1)
    assert state(root)["state"] == "ready"
    drop_index(root, "shop")  # what a replacing import does
    assert state(root)["state"] == "not_indexed"


def test_failed_carries_its_reason(root):
    indexstate.write_state(root, "shop", "failed", reason="could not read or write files: Permission denied")
    got = state(root)
    assert indexstate.public_state(got) == {
        "state": "failed",
        "reason": "could not read or write files: Permission denied",
    }


@pytest.mark.parametrize("content", ["", "{", "[]", '{"state": "sleeping"}', "\xff"])
def test_a_damaged_state_file_is_ignored(root, content):
    indexstate.write_state(root, "shop", "ready")
    indexstate.state_path(root, "shop").write_text(content, errors="surrogateescape")
    assert state(root)["state"] == "not_indexed"


def test_writes_are_atomic_and_leave_no_temp_files(root):
    for done in range(1, 30):
        indexstate.write_state(root, "shop", "indexing", done=done, total=29)
    folder = indexstate.state_path(root, "shop").parent
    assert sorted(p.name for p in folder.iterdir() if "state" in p.name) == ["shop.state.json"]


def test_the_job_lock_is_not_another_workspaces_lock(root):
    from app.ask.indexdb import workspace_lock

    (root / "shop.job").mkdir()
    with workspace_lock(root, "shop.job"):  # importing or indexing the workspace "shop.job"
        assert not indexstate.job_running(root, "shop")
