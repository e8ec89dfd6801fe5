"""Background indexing: the states a job goes through, one job per workspace across processes, the wait of a
question, and what the API, the dashboard and the command line show of it.

Indexing is held half-way deterministically by the test gate (``ASKGATE_TEST_INDEX_GATE``): a job pauses after
its first file until the gate file exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.ask import indexjobs, indexstate
from app.ask.errors import IndexFailed, IndexNotReady
from tests.conftest import ADMIN_KEY, ROOT, base_env

FILES = {
    "cart.py": 'def add_to_cart(cart, sku):\n    """Put one more of sku in the cart."""\n    cart[sku] += 1\n',
    "coupons.py": 'def apply_coupon(total, code):\n    """Take the coupon off the total."""\n    return total\n',
    "session.py": 'def save_session_cookie(response):\n    """Set the session cookie."""\n    return response\n',
}
ADMIN = {"x-api-key": ADMIN_KEY}


def add_workspace(root: Path, workspace_id: str = "shop") -> Path:
    folder = root / workspace_id
    folder.mkdir(parents=True)
    for name, text in FILES.items():
        (folder / name).write_text(text)
    return folder


def wait_for(condition: Callable[[], object], timeout: float = 30) -> object:
    """Poll ``condition`` until it is truthy (an event to wait for, not a delay to assert on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {condition}")


class Gate:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def gate(tmp_path: Path, monkeypatch) -> Gate:
    """Jobs of this process (and of processes started with its environment) pause after their first file."""
    gate = Gate(tmp_path / "gate")
    monkeypatch.setenv(indexjobs.TEST_GATE_ENV, str(gate.path))
    yield gate
    gate.open()  # never leave this process's job thread paused for the tests after this one


def progress_of(root: Path, workspace_id: str = "shop") -> tuple:
    state = indexstate.read_state(root, workspace_id)
    return state["state"], state["done"], state["total"]


# -- the job ---------------------------------------------------------------------------------------------------
def test_a_job_goes_from_indexing_n_of_n_to_ready(workspaces):
    add_workspace(workspaces)
    seen = []
    stats = indexjobs.run_index(workspaces, "shop", lambda done, total: seen.append(progress_of(workspaces)))
    assert stats.files_read == 3
    # The state file follows at most four times a second, and always at the first and the last file.
    assert seen[0] == ("indexing", 1, 3) and seen[-1] == ("indexing", 3, 3)
    assert all(state == "indexing" and total == 3 for state, _, total in seen)
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert progress_of(workspaces) == ("ready", 3, 3)
    assert not indexstate.job_running(workspaces, "shop")


def test_a_failed_job_says_why_and_is_retried_on_the_next_question(workspaces):
    add_workspace(workspaces)
    index_db = workspaces / ".index" / "shop.sqlite3"
    index_db.mkdir(parents=True)  # a folder where the database should be: SQLite cannot open it
    with pytest.raises(Exception, match="unable to open database file"):
        indexjobs.run_index(workspaces, "shop")
    state = indexstate.read_state(workspaces, "shop")
    assert indexstate.public_state(state) == {
        "state": "failed",
        "reason": "the index database failed: unable to open database file",
    }
    with pytest.raises(IndexFailed, match="^Workspace could not be indexed: the index database failed: unable"):
        indexjobs.wait_until_indexed(workspaces, "shop", timeout=30)
    index_db.rmdir()
    indexjobs.wait_until_indexed(workspaces, "shop", timeout=30)  # retried: it works now
    assert progress_of(workspaces) == ("ready", 3, 3)


def test_two_processes_never_index_the_same_workspace_at_once(workspaces, gate):
    add_workspace(workspaces)
    code = "import sys, pathlib, app.ask.indexjobs as jobs; jobs.run_index(pathlib.Path(sys.argv[1]), 'shop')"
    other = subprocess.Popen([sys.executable, "-c", code, str(workspaces)], cwd=ROOT, env=os.environ.copy())
    try:
        wait_for(lambda: progress_of(workspaces) == ("indexing", 1, 3))  # the other process, paused at the gate
        assert indexstate.job_running(workspaces, "shop")
        result = {}
        here = threading.Thread(target=lambda: result.update(stats=indexjobs.run_index(workspaces, "shop")))
        here.start()  # queues on the job lock
        gate.open()
        assert other.wait(timeout=60) == 0
        here.join(timeout=60)
    finally:
        gate.open()
        other.wait(timeout=60)
    assert result["stats"].files_read == 0  # the other process had done the work; this job only checked
    assert result["stats"].chunks == 3
    assert progress_of(workspaces)[0] == "ready"


def test_submit_indexes_in_the_background(workspaces):
    add_workspace(workspaces)
    indexjobs.submit(workspaces, "shop")
    wait_for(lambda: progress_of(workspaces) == ("ready", 3, 3))


def test_a_question_waits_then_gives_up_with_a_retry_after(workspaces, gate):
    add_workspace(workspaces)
    with pytest.raises(IndexNotReady) as info:
        indexjobs.wait_until_indexed(workspaces, "shop", timeout=0.2)
    assert str(info.value) == "Workspace is being indexed"
    assert 1 <= info.value.retry_after <= 60
    wait_for(lambda: progress_of(workspaces) == ("indexing", 1, 3))
    gate.open()
    indexjobs.wait_until_indexed(workspaces, "shop", timeout=30)
    assert progress_of(workspaces) == ("ready", 3, 3)


def test_retry_after_is_the_time_left_at_the_rate_seen():
    first = {"state": "indexing", "done": 10, "total": 110}
    last = {"state": "indexing", "done": 30, "total": 110}
    assert indexjobs.retry_after(first, last, waited=2.0) == 8  # 80 files left at 10 files/s
    assert indexjobs.retry_after(first, first, waited=2.0) == 5  # no progress seen: a fixed guess
    assert indexjobs.retry_after({"state": "queued"}, {"state": "queued"}, waited=2.0) == 5
    slow = {"state": "indexing", "done": 11, "total": 100000}
    assert indexjobs.retry_after(first, slow, waited=10.0) == 60  # capped


# -- the API -----------------------------------------------------------------------------------------------------
def test_ask_answers_503_with_retry_after_while_the_first_index_is_built(make_app, workspaces, gate):
    client = make_app(ASK_INDEX_WAIT="0.3").test_client()
    add_workspace(workspaces)
    question = {"workspaceId": "shop", "question": "Where is the coupon applied?"}
    response = client.post("/api/ask", json=question, headers=ADMIN)
    assert response.status_code == 503
    assert response.get_json() == {"error": "Workspace is being indexed"}
    assert re.fullmatch(r"[1-9][0-9]?", response.headers["Retry-After"])

    wait_for(lambda: progress_of(workspaces) == ("indexing", 1, 3))
    listed = client.get("/api/workspaces", headers=ADMIN).get_json()["workspaces"]
    assert listed == [
        {
            "id": "shop",
            "file_count": 3,
            "size_bytes": sum(len(text) for text in FILES.values()),
            "last_indexed": None,
            "state": "indexing",
            "progress": {"done": 1, "total": 3},
        }
    ]
    gate.open()
    wait_for(lambda: progress_of(workspaces)[0] == "ready")
    response = client.post("/api/ask", json=question, headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json()["sources"][0]["symbol"] == "apply_coupon"
    (listed,) = client.get("/api/workspaces", headers=ADMIN).get_json()["workspaces"]
    assert listed["state"] == "ready" and "progress" not in listed and "reason" not in listed
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["last_indexed"])


def test_ask_within_the_wait_answers_as_before(client, workspaces):
    add_workspace(workspaces)  # never indexed: the question starts the job and waits for it (10 s default)
    response = client.post(
        "/api/ask", json={"workspaceId": "shop", "question": "How is the session cookie set?"}, headers=ADMIN
    )
    assert response.status_code == 200
    assert response.get_json()["sources"][0]["symbol"] == "save_session_cookie"
    assert "Retry-After" not in response.headers


def test_a_failed_index_is_listed_with_its_reason_and_asking_says_so(client, workspaces):
    add_workspace(workspaces)
    (workspaces / ".index" / "shop.sqlite3").mkdir(parents=True)
    response = client.post("/api/ask", json={"workspaceId": "shop", "question": "cart?"}, headers=ADMIN)
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "Workspace could not be indexed: the index database failed: unable to open database file"
    }
    (listed,) = client.get("/api/workspaces", headers=ADMIN).get_json()["workspaces"]
    assert (listed["state"], listed["reason"]) == ("failed", "the index database failed: unable to open database file")
    assert "progress" not in listed


# -- the dashboard -------------------------------------------------------------------------------------------
def test_the_states_endpoint_needs_a_session_and_words_each_state(client, auth, workspaces, gate):
    assert client.get("/workspaces/states").status_code == 302  # to the sign-in page
    assert client.get("/workspaces/states", headers=ADMIN).status_code == 302  # keys are for /api only
    auth.create_user()
    auth.login()
    add_workspace(workspaces, "shop")
    add_workspace(workspaces, "idle")
    indexjobs.submit(workspaces, "shop")
    wait_for(lambda: progress_of(workspaces) == ("indexing", 1, 3))
    assert client.get("/workspaces/states").get_json() == {
        "workspaces": [
            {"id": "idle", "state": "not_indexed", "last_indexed": None, "text": "Not indexed yet"},
            {
                "id": "shop",
                "state": "indexing",
                "progress": {"done": 1, "total": 3},
                "last_indexed": None,
                "text": "Indexing 1 of 3 files",
            },
        ]
    }
    gate.open()
    wait_for(lambda: progress_of(workspaces)[0] == "ready")
    shop = client.get("/workspaces/states").get_json()["workspaces"][1]
    assert shop["state"] == "ready"
    assert shop["text"] == f"Ready · indexed {shop['last_indexed'][:10]}"


def test_uploading_starts_the_index_and_index_now_retries(client, auth, workspaces):
    import io
    import zipfile

    auth.create_user()
    auth.login()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in FILES.items():
            zf.writestr(name, text)
    archive.seek(0)
    response = client.post(
        "/workspaces/upload",
        data={"workspace_id": "shop", "archive": (archive, "shop.zip"), "csrf_token": auth.csrf()},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "Workspace shop is uploaded: 3 files. Its index is being built" in page
    assert 'data-workspace="shop"' in page
    wait_for(lambda: progress_of(workspaces) == ("ready", 3, 3))  # nobody asked: the upload started it

    add_workspace(workspaces, "copied")  # copied onto the server by hand: indexed on demand
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'aria-label="Index workspace copied now"' in page
    response = client.post(
        "/workspaces/index", data={"workspace_id": "copied", "csrf_token": auth.csrf()}, follow_redirects=True
    )
    assert "Indexing copied has started." in response.get_data(as_text=True)
    wait_for(lambda: progress_of(workspaces, "copied") == ("ready", 3, 3))
    response = client.post(
        "/workspaces/index", data={"workspace_id": "../etc", "csrf_token": auth.csrf()}, follow_redirects=True
    )
    assert "Workspace not found" in response.get_data(as_text=True)
    assert client.post("/workspaces/index", data={"workspace_id": "copied"}).status_code == 400  # no CSRF token


# -- the command line ------------------------------------------------------------------------------------------
def test_cli_index_prints_its_progress_off_a_terminal(app, workspaces):
    add_workspace(workspaces)
    result = app.test_cli_runner().invoke(args=["workspace", "index", "shop"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Indexing shop: 1/3 files\n"
        "Indexing shop: 2/3 files\n"
        "Indexing shop: 3/3 files\n"
        "3 files, 3 read, 0 removed, 3 chunks.\n"
    )
    assert progress_of(workspaces) == ("ready", 3, 3)
    listed = app.test_cli_runner().invoke(args=["workspace", "list"]).output
    assert listed.startswith("shop\t3 files\t") and listed.endswith("\tready\n")


def _flask_env(workspaces: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **base_env(workspaces)}


def test_cli_index_on_a_terminal_draws_a_bar_with_n_of_n(workspaces):
    import pty

    add_workspace(workspaces)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "workspace", "index", "shop"],
        cwd=workspaces.parent,
        env=_flask_env(workspaces),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    text = output.decode()
    assert re.search(r"Indexing shop\s+\[#+\]\s+3/3", text), text  # the finished bar
    assert "\r" in text  # redrawn in place, as a bar is
    assert text.rstrip().endswith("3 files, 3 read, 0 removed, 3 chunks.")


def test_cli_import_indexes_in_the_background(workspaces, tmp_path):
    source = add_workspace(tmp_path / "src", "project")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "workspace", "import", "shop", str(source)],
        cwd=workspaces.parent,
        env=_flask_env(workspaces),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Imported 3 files (")
    assert "Indexing it in the background" in result.stdout
    wait_for(lambda: progress_of(workspaces) == ("ready", 3, 3))


# -- several gunicorn workers --------------------------------------------------------------------------------
@pytest.mark.server
@pytest.mark.redis
def test_workers_share_one_build_and_its_state(live_server, redis_db, workspaces, gate):
    from tests.procnet import pin_by_worker

    server = live_server(
        RATELIMIT_STORAGE_URI=redis_db,
        STORE_URL=redis_db,
        WEB_CONCURRENCY="3",
        ASK_INDEX_WAIT="0.5",
        **{indexjobs.TEST_GATE_ENV: str(gate.path)},
    )
    conns = [conns[0] for conns in pin_by_worker(server, 3, 1).values()]
    try:
        add_workspace(workspaces)
        question = {"workspaceId": "shop", "question": "Where is the coupon applied?"}
        for conn in conns:  # every worker is asked; each would start a build, one at a time builds
            status, response, body = conn.call("POST", "/api/ask", ADMIN, question)
            assert (status, body) == (503, {"error": "Workspace is being indexed"})
            assert re.fullmatch(r"[1-9][0-9]?", response.getheader("Retry-After"))
        wait_for(lambda: progress_of(workspaces) == ("indexing", 1, 3))
        for conn in conns:
            status, _, body = conn.call("GET", "/api/workspaces", ADMIN)
            assert status == 200
            assert {key: body["workspaces"][0][key] for key in ("id", "state", "progress")} == {
                "id": "shop",
                "state": "indexing",
                "progress": {"done": 1, "total": 3},
            }
        gate.open()
        wait_for(lambda: progress_of(workspaces)[0] == "ready")
        for conn in conns:
            status, _, body = conn.call("POST", "/api/ask", ADMIN, question)
            assert status == 200, body
            assert body["sources"][0]["symbol"] == "apply_coupon"
    finally:
        for conn in conns:
            conn.close()
    # The files were read once, by one worker; the others' jobs found nothing left to read.
    assert len(re.findall(r"indexed shop: 3 read", server.log())) == 1, server.log()
