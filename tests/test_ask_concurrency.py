"""Several processes asking at once: the index is built once, and readers never wait for a writer."""

import multiprocessing
import time
from pathlib import Path

import pytest

from app.ask import ask, indexdb, search, update_index

FILES = 120
WORKERS = 4


def _make_workspace(root: Path) -> None:
    folder = root / "busy"
    for number in range(FILES):
        package = folder / f"pkg{number % 6}"
        package.mkdir(parents=True, exist_ok=True)
        functions = "".join(
            f'def handler_{number}_{i}(request):\n    """Handle request {i} of module {number}."""\n'
            f"    return request.get('item_{i}')\n\n\n"
            for i in range(15)
        )
        (package / f"module_{number}.py").write_text(f'"""Module {number}."""\n\n\n{functions}')


def _update(root: str, start: object, results: object) -> None:
    start.wait(10)
    stats = update_index(Path(root), "busy")
    results.put((stats.files_read, stats.chunks))


def _ask(root: str, start: object, results: object) -> None:
    start.wait(10)
    result = ask(Path(root), "busy", "What does handler_42_7 do?", top_k=3)
    results.put(result["sources"][0]["symbol"])


def _run_all(target: object, root: Path) -> list:
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=target, args=(str(root), start, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    return outcomes


@pytest.mark.parametrize("elsewhere", [False, True])
def test_concurrent_updates_build_the_index_once(tmp_path: Path, tmp_path_factory, monkeypatch, elsewhere) -> None:
    monkeypatch.setattr(indexdb, "_placed", {})
    index_dir = tmp_path / ".index"
    if elsewhere:  # INDEX_DIR away from the workspaces: its lock files still serialise this host's writers
        index_dir = tmp_path_factory.mktemp("local-indexes")
        indexdb.place_indexes(tmp_path, index_dir)
    _make_workspace(tmp_path)
    outcomes = _run_all(_update, tmp_path)
    assert (index_dir / "busy.lock").is_file()
    assert (tmp_path / ".index").exists() is not elsewhere
    reads = sorted(files_read for files_read, _ in outcomes)
    assert reads == [0] * (WORKERS - 1) + [FILES]
    assert len({chunks for _, chunks in outcomes}) == 1
    assert outcomes[0][1] >= FILES * 15
    assert update_index(tmp_path, "busy").files_read == 0


def test_concurrent_questions_get_the_same_answer(tmp_path: Path) -> None:
    _make_workspace(tmp_path)
    assert _run_all(_ask, tmp_path) == ["handler_42_7"] * WORKERS


def test_readers_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    _make_workspace(tmp_path)
    update_index(tmp_path, "busy")
    writer = indexdb.connect(indexdb.index_db_path(tmp_path, "busy"))
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM chunks")
    try:
        started = time.monotonic()
        found = search(tmp_path, "busy", "handler_42_7", 1)
        assert time.monotonic() - started < 2
        assert found[0].symbol == "handler_42_7"  # the last committed index
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize("kind", ["update", "ask"])
def test_waiting_for_the_lock_then_finding_nothing_to_do(tmp_path: Path, kind: str) -> None:
    _make_workspace(tmp_path)
    update_index(tmp_path, "busy")
    # Holding the lock stands in for another process mid-update; the caller waits, then reads nothing.
    # The worker is forked before the lock is taken: a child forked while holding it would share it.
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    worker = ctx.Process(target=_update if kind == "update" else _ask, args=(str(tmp_path), start, results))
    worker.start()
    with indexdb.workspace_lock(tmp_path, "busy"):
        start.set()
        time.sleep(0.5)
        assert results.empty()
    outcome = results.get(timeout=30)
    worker.join(30)
    assert worker.exitcode == 0
    if kind == "update":
        assert outcome[0] == 0
    else:
        assert outcome == "handler_42_7"
