"""The shared JSON file: lock, atomic replace, reload only on change, fail closed on corruption."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

import app.documents.sharedfile as sharedfile
from app.documents.sharedfile import SharedJSONFile, StoreUnavailable, StoreWriteError


def _validate(raw):
    if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("items"), list):
        raise ValueError("not an items document")
    return raw


def make_file(path: Path, loads: list | None = None) -> SharedJSONFile:
    return SharedJSONFile(
        path,
        empty=lambda: {"version": 1, "items": []},
        validate=_validate,
        on_load=(lambda data: loads.append(len(data["items"]))) if loads is not None else None,
    )


def _append(item):
    def change(data):
        data["items"].append(item)
        return len(data["items"])

    return change


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data.json"


def test_missing_file_is_an_empty_document_and_reading_creates_nothing(path):
    shared = make_file(path)
    assert shared.read() == {"version": 1, "items": []}
    assert not path.exists()
    assert shared.check() is None


def test_update_writes_the_document_with_mode_0600(path):
    shared = make_file(path)
    assert shared.update(_append("a")) == 1
    assert json.loads(path.read_text()) == {"version": 1, "items": ["a"]}
    for written in (path, shared.lock_path, shared.backup_path):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600, written
    assert json.loads(shared.backup_path.read_text()) == {"version": 1, "items": ["a"]}


def test_a_failing_change_writes_nothing(path):
    shared = make_file(path)
    shared.update(_append("a"))
    before = path.read_bytes()

    def boom(data):
        data["items"].append("half")
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        shared.update(boom)
    assert path.read_bytes() == before
    assert make_file(path).read()["items"] == ["a"]


def test_unchanged_file_is_not_parsed_again(path, parse_count):
    make_file(path).update(_append("a"))
    reader = make_file(path)
    parse_count.clear()
    for _ in range(50):
        assert reader.read()["items"] == ["a"]
    assert parse_count == [str(path)]


def test_a_change_by_another_writer_is_seen_on_the_next_read(path, parse_count):
    loads: list[int] = []
    reader = make_file(path, loads)
    writer = make_file(path)
    assert reader.read()["items"] == []
    writer.update(_append("a"))
    assert reader.read()["items"] == ["a"]
    writer.update(_append("b"))
    assert reader.read()["items"] == ["a", "b"]
    assert reader.read()["items"] == ["a", "b"]
    assert loads == [0, 1, 2]  # on_load once per change, not per read


def test_the_writer_adopts_its_own_write_without_parsing_it(path, parse_count):
    shared = make_file(path)
    shared.update(_append("a"))
    parse_count.clear()
    shared.update(_append("b"))  # one parse: the fresh read under the lock
    assert parse_count == [str(path)]
    parse_count.clear()
    assert shared.read()["items"] == ["a", "b"]
    assert parse_count == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe", b'{"version": 2, "items": []}', b'{"version": 1, "items": {}}', b"[]"],
)
def test_a_corrupt_file_fails_closed_and_is_never_overwritten(path, content, caplog):
    path.write_bytes(content)
    shared = make_file(path)
    with caplog.at_level(logging.ERROR, logger="askgate.store"):
        with pytest.raises(StoreUnavailable) as info:
            shared.read()
        with pytest.raises(StoreUnavailable):
            shared.read()
    assert str(path) in str(info.value)
    errors = [r for r in caplog.records if r.name == "askgate.store" and r.levelno == logging.ERROR]
    assert len(errors) == 1  # logged once, not on every request
    assert str(path) in errors[0].getMessage()

    called = []
    with pytest.raises(StoreUnavailable):
        shared.update(lambda data: called.append(data))
    assert called == []
    assert path.read_bytes() == content
    assert shared.check() is not None and str(path) in shared.check()


def test_a_repaired_file_is_picked_up(path):
    path.write_text("{broken")
    shared = make_file(path)
    with pytest.raises(StoreUnavailable):
        shared.read()
    path.write_text(json.dumps({"version": 1, "items": ["fixed"]}))
    assert shared.read()["items"] == ["fixed"]


def test_a_failed_write_leaves_the_previous_file_and_no_temp_files(path, monkeypatch):
    shared = make_file(path)
    shared.update(_append("a"))
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sharedfile.os, "fsync", disk_full)
    with pytest.raises(StoreWriteError) as info:
        shared.update(_append("b"))
    assert info.value.disk_full is True
    assert str(info.value) == "Could not save data.json: the disk is full. Nothing was changed."
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.json", "data.json.bak", "data.json.lock"]


def _crash_mid_write(path: str) -> None:
    shared = make_file(Path(path))

    def die(fd):
        os._exit(3)  # the process dies after writing the temp file, before the replace

    sharedfile.os.fsync = die
    shared.update(_append("lost"))


def test_a_crash_mid_write_never_leaves_a_half_written_file(path):
    shared = make_file(path)
    shared.update(_append("a"))
    before = path.read_bytes()
    proc = multiprocessing.get_context("fork").Process(target=_crash_mid_write, args=(str(path),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 3
    assert path.read_bytes() == before
    assert make_file(path).read()["items"] == ["a"]
    shared.update(_append("b"))  # the lock was released by the dead process
    assert make_file(path).read()["items"] == ["a", "b"]


def _append_many(path: str, worker: int, count: int, start) -> None:
    shared = make_file(Path(path))
    start.wait()
    for i in range(count):
        shared.update(_append(f"{worker}-{i}"))


def test_concurrent_writers_in_several_processes_lose_nothing(path):
    ctx = multiprocessing.get_context("fork")
    workers, per_worker = 4, 25
    start = ctx.Barrier(workers)
    procs = [ctx.Process(target=_append_many, args=(str(path), w, per_worker, start)) for w in range(workers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    items = make_file(path).read()["items"]
    assert len(items) == workers * per_worker
    assert set(items) == {f"{w}-{i}" for w in range(workers) for i in range(per_worker)}
    for w in range(workers):  # each writer's own order survives
        assert [x for x in items if x.startswith(f"{w}-")] == [f"{w}-{i}" for i in range(per_worker)]


def test_a_change_sweeps_temp_files_left_by_a_writer_killed_mid_write(path):
    doc = make_file(path)
    doc.update(_append(1))
    leftovers = [path.parent / f".{path.name}.dead1.tmp", path.parent / f".{path.name}.bak.dead2.tmp"]
    for leftover in leftovers:
        leftover.write_text('{"half": ')

    doc.update(_append(2))

    assert [p for p in leftovers if p.exists()] == []
    assert json.loads(path.read_text())["items"] == [1, 2]


# -- one change signal for the folder (app.documents.watch) -------------------------------------------------------
def _count_stats(monkeypatch) -> list:
    stats = []
    real = sharedfile.os.stat

    def counting(path, *args, **kwargs):
        stats.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sharedfile.os, "stat", counting)
    return stats


def _write_in_child(path: Path, item: str) -> None:
    make_file(path).update(_append(item))


def test_with_nothing_changed_a_read_makes_no_stat_and_any_change_counts_on_the_next_read(tmp_path, monkeypatch):
    keys, users = make_file(tmp_path / "keys.json"), make_file(tmp_path / "users.json")
    keys.update(_append("k1"))
    users.update(_append("u1"))
    assert (keys.read()["items"], users.read()["items"]) == (["k1"], ["u1"])
    stats = _count_stats(monkeypatch)
    for _ in range(3):
        assert (keys.read()["items"], users.read()["items"]) == (["k1"], ["u1"])
    assert stats == []  # the folder's queue was empty: no stat at all

    # Another process (forked: it opens its own queue) changes one file: both files check, one reloads.
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(tmp_path / "users.json", "u2"))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert (keys.read()["items"], users.read()["items"]) == (["k1"], ["u1", "u2"])
    assert {Path(p).name for p in stats} == {"keys.json", "users.json"}  # each checked its file again

    # A hand edit in place (no rename, no lock) counts too, and a damaged file fails closed at once.
    (tmp_path / "keys.json").write_text(json.dumps({"version": 1, "items": ["edited"]}))
    assert keys.read()["items"] == ["edited"]
    (tmp_path / "keys.json").write_text("{damaged")
    with pytest.raises(StoreUnavailable):
        keys.read()
    with pytest.raises(StoreUnavailable):
        keys.read()


def test_a_folder_replaced_under_the_store_is_still_seen(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    doc = make_file(folder / "doc.json")
    doc.update(_append("a"))
    assert doc.read()["items"] == ["a"]
    folder.rename(tmp_path / "old")
    folder.mkdir()
    (folder / "doc.json").write_text(json.dumps({"version": 1, "items": ["new folder"]}))
    assert doc.read()["items"] == ["new folder"]
    (folder / "doc.json").write_text(json.dumps({"version": 1, "items": ["edited again"]}))
    assert doc.read()["items"] == ["edited again"]


def test_threads_checking_the_folder_at_once_all_see_every_change(tmp_path):
    """gthread workers read the stores from 8 threads at a time: the shared check must take concurrent callers."""
    doc = make_file(tmp_path / "doc.json")
    doc.update(_append(0))
    errors, stop = [], threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                doc.read()
        except Exception as exc:  # noqa: BLE001  (any failure is the finding)
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        for n in range(1, 40):
            fork = multiprocessing.get_context("fork")
            writer = fork.Process(target=_write_in_child, args=(tmp_path / "doc.json", n))
            writer.start()
            writer.join(10)
            assert doc.read()["items"] == list(range(n + 1))  # the change of another process, on the next read
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
