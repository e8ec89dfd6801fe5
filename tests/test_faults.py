"""Faults survived, nothing lost (issue 4): killed workers, a full or read-only disk, corrupt stores, SIGTERM."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from app.keys.store import KeyStore
from app.keys.store import _validate as validate_key_document
from app.usage import FILE_NAME as USAGE_FILE
from app.usage import SQLiteUsage
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, PASSWORD, ROOT, base_env
from tests.fake_llm import ANSWER, FakeLLM
from tests.faultlib import add_user_on_page, folder_snapshot, generate_key_on_page, login

ADMIN = {"x-api-key": ADMIN_KEY}
FULL_KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
QUESTION = "How is the session cookie saved?"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# -- kill -9 of workers while keys are created --------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.redis
def test_killing_workers_in_a_loop_never_shows_a_partial_file_nor_loses_a_created_key(
    start_server, redis_db, workspaces
):
    UserStore(workspaces).create("alice", PASSWORD)
    server = start_server({"RATELIMIT_STORAGE_URI": redis_db, "WEB_CONCURRENCY": "3", "API_RATE_LIMIT": "1000000"})
    server.wait_workers(3)
    store_file = workspaces / "api-keys.json"
    stop = threading.Event()
    created: list[tuple[str, dict]] = []  # (name, 201 body)
    statuses: list[int] = []
    dropped: list[str] = []  # requests cut off by a kill: no answer, so no promise was made
    reads: list[int] = []
    bad_reads: list[str] = []
    lock = threading.Lock()

    def creator(index: int) -> None:
        session = requests.Session()
        attempt = 0
        while not stop.is_set():
            attempt += 1
            name = f"c{index}-{attempt}"
            try:
                response = session.post(
                    server.url + "/api/keys", json={"name": name, "user": "alice"}, headers=ADMIN, timeout=20
                )
            except requests.RequestException:
                with lock:
                    dropped.append(name)
                session = requests.Session()
                continue
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 201:
                    created.append((name, response.json()))

    def reader() -> None:
        count = 0
        while not stop.is_set():
            try:
                raw = store_file.read_bytes()
            except FileNotFoundError:  # before the first key only
                time.sleep(0.01)
                continue
            count += 1
            time.sleep(0.001)
            try:
                validate_key_document(json.loads(raw))
            except ValueError as exc:
                with lock:
                    bad_reads.append(f"{exc}: {raw[:200]!r}")
        with lock:
            reads.append(count)

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    rng = random.Random(4)
    kills = 0
    # Kill for at least 15 s, and on a loaded machine (slow worker boots) until enough keys got their promise
    # too; the bound keeps a real failure from hanging the suite.
    start = time.monotonic()

    def enough() -> bool:
        with lock:
            made = len(created)
        return time.monotonic() - start >= 15 and kills >= 30 and made >= 20

    try:
        while not enough() and time.monotonic() - start < 120:
            time.sleep(0.3)
            pids = server.worker_pids()
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)

    assert bad_reads == []  # never a partial or invalid file, at any read
    assert sum(reads) >= 200, f"readers only looked {sum(reads)} times"
    assert kills >= 30
    assert set(statuses) == {201}, f"statuses other than 201: {statuses}"  # a kill drops a request, never a 5xx
    assert len(created) >= 20, f"only {len(created)} keys created ({len(dropped)} requests dropped)"
    assert server.proc.poll() is None and len(server.wait_workers(3)) == 3  # gunicorn respawned every worker

    stored = {record["id"]: record for record in validate_key_document(json.loads(store_file.read_bytes()))["keys"]}
    for name, body in created:
        record = stored.get(body["id"])
        assert record is not None, f"key {body['id']} ({name}) got a 201 but is not in the file"
        assert (record["name"], record["owner"], record["prefix"]) == (name, "alice", body["prefix"])
        assert record["digest"] == sha256(body["key"])
    attempted = {name for name, _ in created} | set(dropped)
    assert {record["name"] for record in stored.values()} <= attempted  # nothing invented
    # And every promised key works, through whichever worker gets the request.
    session = requests.Session()
    for _, body in created:
        response = session.get(server.url + "/api/whoami", headers={"x-api-key": body["key"]}, timeout=10)
        assert (response.status_code, response.json()["key"]["id"]) == (200, body["id"])


# -- a full or read-only WORKSPACES_DIR ----------------------------------------------------------------------------
def _private_tmpfs(workspaces: Path, seed: Path, size_kb: int) -> list[str]:
    """A command prefix: in a private mount namespace, a small tmpfs on ``workspaces`` seeded from ``seed``."""
    script = 'set -e; mount -t tmpfs -o "size=$1,mode=0700" askgate-test "$2"; cp -a "$3"/. "$2"/; shift 3; exec "$@"'
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        f"{size_kb}k",
        str(workspaces),
        str(seed),
    ]


def _require_private_mounts(probe_dir: Path) -> None:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) from util-linux to mount a tmpfs in a private mount namespace")
    probe_dir.mkdir()
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=64k", "probe", probe_dir],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace here (needs root/CAP_SYS_ADMIN): {done.stderr}")


@pytest.fixture
def disk_server(tmp_path: Path, workspaces: Path, start_server):
    """gunicorn whose WORKSPACES_DIR is a 256 KiB tmpfs only it sees, holding two users and alice's key."""
    _require_private_mounts(tmp_path / "probe")
    seed = tmp_path / "seed"
    seed.mkdir()
    users = UserStore(seed)
    users.create("root", PASSWORD, "admin")
    users.create("alice", PASSWORD)
    key = KeyStore(seed).create("alice", "first").key
    server = start_server({}, wrapper=_private_tmpfs(workspaces, seed, 256))
    assert server.path("users.json").read_bytes() == (seed / "users.json").read_bytes()
    assert not (workspaces / "users.json").exists()  # the tmpfs is private to the server: nothing leaks out
    return server, key


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC: the disk is now full
    finally:
        os.close(fd)


@pytest.mark.server
def test_a_full_disk_refuses_key_and_user_changes_and_leaves_every_file_as_it_was(disk_server):
    server, key = disk_server
    admin = login(server.url, "root")
    before = folder_snapshot(server.path())
    assert sorted(before) == [
        "api-keys.json",
        "api-keys.json.bak",
        "api-keys.json.lock",
        "audit.log",  # root's sign-in; each refused change's event is taken out again
        "audit.log.lock",
        "users.json",
        "users.json.bak",
        "users.json.lock",
    ]
    _fill(server.path("filler"))

    response = requests.post(server.url + "/api/keys", json={"name": "ci", "user": "alice"}, headers=ADMIN, timeout=10)
    assert (response.status_code, response.json()) == (
        507,
        {"error": "Could not save api-keys.json: the disk is full. Nothing was changed."},
    )
    page = generate_key_on_page(admin, server.url, "from-page")
    assert page.status_code == 507
    assert "Could not save api-keys.json: the disk is full. Nothing was changed." in page.text
    assert not FULL_KEY_RE.search(page.text)  # no key shown that was never saved
    added = add_user_on_page(admin, server.url, "bob")
    assert added.status_code == 507
    assert "Could not save users.json: the disk is full. Nothing was changed." in added.text
    # Reading still works: existing keys authenticate (their last-use stamp simply waits).
    used = requests.get(server.url + "/api/whoami", headers={"x-api-key": key}, timeout=10)
    assert (used.status_code, used.json()["auth_method"]) == (200, "dashboard_key")

    after = folder_snapshot(server.path())
    del after["filler"]
    assert after == before  # byte-identical, and no temp file left behind

    server.path("filler").unlink()  # space again: the very next change succeeds
    response = requests.post(server.url + "/api/keys", json={"name": "ci", "user": "alice"}, headers=ADMIN, timeout=10)
    assert response.status_code == 201
    names = [r["name"] for r in json.loads(server.path("api-keys.json").read_bytes())["keys"]]
    assert sorted(names) == ["ci", "first"]
    assert "Traceback" not in server.log()


@pytest.mark.server
def test_a_read_only_folder_refuses_key_and_user_changes_and_leaves_every_file_as_it_was(disk_server, workspaces):
    server, key = disk_server
    if not shutil.which("nsenter"):
        pytest.skip("needs nsenter(1) from util-linux to remount the server's private tmpfs read-only")
    admin = login(server.url, "root")
    before = folder_snapshot(server.path())
    subprocess.run(
        ["nsenter", "-t", str(server.proc.pid), "-m", "mount", "-o", "remount,ro", str(workspaces)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(OSError, match="Read-only"):
        server.path("probe").write_bytes(b"x")

    message = re.compile(r"Could not save api-keys\.json(\.lock)?: Read-only file system\. Nothing was changed\.")
    response = requests.post(server.url + "/api/keys", json={"name": "ci", "user": "alice"}, headers=ADMIN, timeout=10)
    assert response.status_code == 503
    assert message.fullmatch(response.json()["error"]), response.json()
    page = generate_key_on_page(admin, server.url, "from-page")
    assert page.status_code == 503 and message.search(page.text)
    assert not FULL_KEY_RE.search(page.text)
    added = add_user_on_page(admin, server.url, "bob")
    assert added.status_code == 503
    assert re.search(r"Could not save users\.json(\.lock)?: Read-only file system\. Nothing was changed\.", added.text)
    used = requests.get(server.url + "/api/whoami", headers={"x-api-key": key}, timeout=10)
    assert (used.status_code, used.json()["auth_method"]) == (200, "dashboard_key")

    assert folder_snapshot(server.path()) == before
    assert "Traceback" not in server.log()


# -- corrupt store files ------------------------------------------------------------------------------------------
def test_a_corrupt_key_file_fails_closed_and_is_never_overwritten(app, client, auth, workspaces):
    auth.create_user("alice")
    key = auth.new_key("alice", "first")
    auth.new_key("alice", "second")  # a second successful change: the backup follows every one
    key_file = workspaces / "api-keys.json"
    good = key_file.read_bytes()
    assert (workspaces / "api-keys.json.bak").read_bytes() == good
    assert (workspaces / "users.json.bak").read_bytes() == (workspaces / "users.json").read_bytes()
    auth.login("alice")
    token = auth.csrf("/account/security")  # the page lists keys, so take its form token while the store is healthy

    damaged = good[: len(good) // 2]  # what a non-atomic writer would leave after a crash
    key_file.write_bytes(damaged)
    api = app.test_client()  # no session cookie: the key decides who the caller is

    response = api.get("/api/whoami", headers={"x-api-key": key})
    assert (response.status_code, response.get_json()) == (503, {"error": "Key store unavailable"})
    response = api.get("/api/whoami", headers=ADMIN)
    assert (response.status_code, response.get_json()["auth_method"]) == (200, "admin_key")
    response = api.post("/api/keys", json={"name": "more", "user": "alice"}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (503, {"error": "Key store unavailable"})
    page = client.post("/account/security", data={"name": "more", "expiry": "never", "csrf_token": token})
    assert page.status_code == 503
    assert "The data store is unavailable right now." in page.get_data(as_text=True)
    assert not FULL_KEY_RE.search(page.get_data(as_text=True))

    assert key_file.read_bytes() == damaged  # never overwritten
    assert (workspaces / "api-keys.json.bak").read_bytes() == good  # the last good version is kept


def test_a_corrupt_user_file_fails_closed_and_is_never_overwritten(app, client, auth, workspaces):
    auth.create_user("alice")
    key = auth.new_key("alice")
    user_file = workspaces / "users.json"
    good = user_file.read_bytes()
    assert (workspaces / "users.json.bak").read_bytes() == good
    damaged = b'{"version": 1, "users": {}}\n'
    user_file.write_bytes(damaged)

    response = client.get("/api/whoami", headers={"x-api-key": key})
    assert (response.status_code, response.get_json()) == (503, {"error": "Key store unavailable"})
    response = client.get("/api/whoami", headers=ADMIN)
    assert (response.status_code, response.get_json()["auth_method"]) == (200, "admin_key")
    response = client.post("/api/keys", json={"name": "more", "user": "alice"}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (503, {"error": "Key store unavailable"})
    result = app.test_cli_runner().invoke(args=["user", "create", "bob", "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "users.json" in result.output and "'users' is not a list" in result.output

    assert user_file.read_bytes() == damaged
    assert (workspaces / "users.json.bak").read_bytes() == good


def _store_cli(workspaces: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **base_env(workspaces)}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "store", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_store_cli_check_explains_corruption_and_restore_puts_back_the_last_good_version(app, client, auth, workspaces):
    """The ``flask --app wsgi store check|restore`` contract (issue 4)."""
    auth.create_user("alice")
    key = auth.new_key("alice", "first")
    auth.new_key("alice", "second")
    good_keys = (workspaces / "api-keys.json").read_bytes()
    good_users = (workspaces / "users.json").read_bytes()

    fine = _store_cli(workspaces, "check")
    assert fine.returncode == 0, fine.stderr
    lines = fine.stdout.splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"(keys|users)\b.*\bok", line) for line in lines), lines

    (workspaces / "api-keys.json").write_bytes(b'{"version": 1, "keys": [')
    (workspaces / "users.json").write_bytes(b'{"version": 1, "users": {}}\n')
    assert client.get("/api/whoami", headers={"x-api-key": key}).status_code == 503

    broken = _store_cli(workspaces, "check")
    assert broken.returncode == 1
    output = broken.stdout + broken.stderr
    assert "api-keys.json" in output and "Expecting value: line 1 column 25 (char 24)" in output
    assert "users.json" in output and "'users' is not a list" in output

    restored = _store_cli(workspaces, "restore")
    assert restored.returncode == 0, restored.stderr
    assert (workspaces / "api-keys.json").read_bytes() == good_keys
    assert (workspaces / "users.json").read_bytes() == good_users
    assert _store_cli(workspaces, "check").returncode == 0

    response = client.get("/api/whoami", headers={"x-api-key": key})
    assert (response.status_code, response.get_json()["key"]["name"]) == (200, "first")


# -- SIGTERM drains in-flight requests -------------------------------------------------------------------------------
@pytest.mark.server
def test_sigterm_lets_an_in_flight_ask_finish_and_keeps_last_use(start_server, workspaces):
    demo = workspaces / "demo"
    demo.mkdir()
    (demo / "sessions.py").write_text(
        "class CookieSessions:\n"
        "    def save_session(self, response):\n"
        '        """Save the session cookie on the response."""\n'
        "        response.set_cookie('session', 'x')\n"
    )
    UserStore(workspaces).create("alice", PASSWORD)
    keys = KeyStore(workspaces)
    asker = keys.create("alice", "asker").key
    idle = keys.create("alice", "idle")
    outcome: dict = {}

    with FakeLLM(model="m1", mode="slow") as llm:
        llm.slow_seconds = 2.0
        server = start_server({"LLM_BASE_URL": llm.base_url, "LLM_MODEL": "m1", "LLM_TIMEOUT": "10"})

        def ask() -> None:
            started = time.monotonic()
            try:
                response = requests.post(
                    server.url + "/api/ask",
                    json={"workspaceId": "demo", "question": QUESTION},
                    headers={"x-api-key": asker},
                    timeout=30,
                )
                outcome.update(status=response.status_code, body=response.json())
            except requests.RequestException as exc:
                outcome.update(error=repr(exc))
            outcome["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=ask)
        thread.start()
        deadline = time.monotonic() + 20
        while not llm.requests:  # the question has reached the model: the request is in flight
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.02)
        used_from = datetime.now(UTC).replace(microsecond=0)
        touched = requests.get(server.url + "/api/whoami", headers={"x-api-key": idle.key}, timeout=10)
        assert touched.status_code == 200
        os.kill(server.proc.pid, signal.SIGTERM)
        thread.join(30)
        exit_code = server.proc.wait(timeout=30)

    assert outcome.get("status") == 200, outcome
    assert outcome["body"]["engine"] == "llm" and ANSWER in outcome["body"]["answer"]
    assert outcome["seconds"] >= 1.9  # it really waited for the slow model
    assert exit_code == 0, server.log()[-2000:]
    assert "Handling signal: term" in server.log()
    use = SQLiteUsage(workspaces / USAGE_FILE).last_used().get("key:" + idle.record["id"])
    assert use is not None, "a use just before SIGTERM was lost"
    last_used = datetime.fromtimestamp(use.at, UTC)
    assert used_from - timedelta(seconds=1) <= last_used <= datetime.now(UTC)
