"""The flask CLI: ``user create|list|disable|enable|passwd`` and ``key create|list|revoke``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import firstrun
from app.keys.store import key_status
from tests.conftest import PASSWORD, ROOT, AuthActions, base_env

KEY_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(args=list(args), input=input)

    return invoke


def _whoami(app, key: str) -> int:
    return app.test_client().get("/api/whoami", headers={"x-api-key": key}).status_code


# -- users ----------------------------------------------------------------------------------------------------
def test_user_create_admin_from_stdin_ends_setup(app, cli, workspaces):
    assert firstrun.read_token(workspaces)
    result = cli("user", "create", "alice", "--admin", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Created admin alice.\n"
    user = app.extensions["askgate"].users.authenticate("alice", PASSWORD)
    assert user.role == "admin"
    assert firstrun.read_token(workspaces) is None
    assert app.test_client().get("/setup", query_string={"token": "anything"}).status_code == 404


def test_user_create_prompts_twice_without_stdin_flag(app, cli):
    result = cli("user", "create", "bob", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Created member bob." in result.stdout
    assert PASSWORD not in result.output  # the prompt hides what is typed
    assert app.extensions["askgate"].users.get("bob").role == "member"


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        (
            ("user", "create", "alice", "--password-stdin"),
            "short\n",
            "Error: Choose a password of at least 10 characters\n",
        ),
        (("user", "create", "bad name", "--password-stdin"), PASSWORD + "\n", "Error: A username is 1–32 characters"),
        (("user", "disable", "ghost"), None, "Error: No user named 'ghost'\n"),
        (("user", "passwd", "ghost", "--password-stdin"), PASSWORD + "\n", "Error: No user named 'ghost'\n"),
        (("key", "create", "--user", "ghost", "--name", "k"), None, "Error: No user named 'ghost'\n"),
        (("key", "revoke", "key_doesnotexist"), None, "Error: No key with id 'key_doesnotexist'"),
    ],
)
def test_refusals_exit_1_with_one_line(app, cli, args, stdin, error):
    result = cli(*args, input=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(error)
    assert result.stderr.count("\n") == 1


def test_a_duplicate_user_is_refused(cli, auth):
    auth.create_user("alice")
    result = cli("user", "create", "ALICE", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert result.stderr == "Error: A user named 'ALICE' already exists\n"


def test_user_list(cli, auth):
    auth.create_user("bob")
    auth.create_user("alice", admin=True)
    auth.services.users.set_disabled("bob", True)
    lines = [line.split("\t") for line in cli("user", "list").stdout.splitlines()]
    assert [line[:3] for line in lines] == [["alice", "admin", "active"], ["bob", "member", "disabled"]]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line[3]) for line in lines)


def test_user_disable_ends_sessions_and_revokes_keys(app, cli, auth):
    auth.create_user("bob")
    key = auth.new_key("bob")
    browser = app.test_client()
    AuthActions(app, browser).login("bob")
    assert browser.get("/dashboard").status_code == 200

    result = cli("user", "disable", "bob")
    assert (result.exit_code, result.stdout) == (0, "Disabled bob; revoked 1 key(s).\n")
    assert browser.get("/dashboard").status_code == 302
    assert _whoami(app, key) == 401

    result = cli("user", "enable", "bob")
    assert (result.exit_code, result.stdout) == (0, "Enabled bob.\n")
    assert auth.services.users.authenticate("bob", PASSWORD) is not None
    assert _whoami(app, key) == 401  # old keys stay revoked


def test_user_passwd_ends_sessions(app, cli, auth):
    auth.create_user("bob")
    browser = app.test_client()
    AuthActions(app, browser).login("bob")
    result = cli("user", "passwd", "bob", "--password-stdin", input="a new long password\n")
    assert (result.exit_code, result.stdout) == (0, "Password of bob changed.\n")
    assert browser.get("/dashboard").status_code == 302
    assert auth.services.users.authenticate("bob", "a new long password") is not None
    assert auth.services.users.authenticate("bob", PASSWORD) is None


# -- keys -----------------------------------------------------------------------------------------------------
def test_key_create_prints_only_the_key_on_stdout(app, cli, auth):
    auth.create_user("alice")
    result = cli("key", "create", "--user", "alice", "--name", "ci", "--expires-in-days", "30")
    assert result.exit_code == 0, result.output
    key = result.stdout.rstrip("\n")
    assert result.stdout == key + "\n"
    assert KEY_RE.fullmatch(key)
    record = auth.services.keys.lookup(key)
    assert (record["owner"], record["name"]) == ("alice", "ci")
    assert record["expires_at"] is not None
    assert result.stderr == f"Created key {record['id']} ({record['prefix']}…) for alice.\n"
    assert _whoami(app, key) == 200


def test_key_create_for_a_disabled_user_is_refused(cli, auth):
    auth.create_user("alice")
    auth.services.users.set_disabled("alice", True)
    result = cli("key", "create", "--user", "alice", "--name", "ci")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "Error: User 'alice' is disabled\n")
    assert auth.services.keys.list() == []


def test_key_list_shows_no_secret(cli, auth):
    auth.create_user("alice")
    auth.create_user("bob")
    a = auth.services.keys.create("alice", "a-key", 90)
    b = auth.services.keys.create("bob", "b-key")
    auth.services.keys.revoke(b.record["id"])
    output = cli("key", "list").stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in output.splitlines()}
    assert rows[a.record["id"]][:5] == [a.record["id"], "alice", "a-key", a.record["prefix"] + "…", "active"]
    assert rows[a.record["id"]][6] == a.record["expires_at"]
    assert rows[b.record["id"]][4:] == [
        "revoked",
        b.record["created_at"],
        "never",
        "ask,workspaces:read",
        "all-workspaces",
        "API_RATE_LIMIT",
        "any-address",
        "never-used",
    ]
    limited = auth.services.keys.create(
        "alice", "c-key", limits={"workspaces": ["x", "y"], "rate_limit": 5, "allowed_ips": ["10.0.0.0/8", "::1"]}
    )
    row = {line.split("\t")[0]: line.split("\t") for line in cli("key", "list").stdout.splitlines()}[
        limited.record["id"]
    ]
    assert row[7:] == ["ask,workspaces:read", "x,y", "5/hour", "10.0.0.0/8,::1/128", "never-used"]
    for new in (a, b):
        assert new.key not in output and new.record["digest"] not in output
    only_bob = cli("key", "list", "--user", "bob").stdout.splitlines()
    assert [line.split("\t")[0] for line in only_bob] == [b.record["id"]]


def test_key_revoke_is_refused_by_the_running_app_at_once(app, cli, auth):
    auth.create_user("alice")
    new = auth.services.keys.create("alice", "k")
    assert _whoami(app, new.key) == 200
    result = cli("key", "revoke", new.record["id"])
    assert (result.exit_code, result.stdout) == (0, f"Revoked {new.record['id']} ({new.record['prefix']}…).\n")
    assert key_status(auth.services.keys.get(new.record["id"])) == "revoked"
    assert _whoami(app, new.key) == 401


def test_a_corrupt_key_store_is_reported_and_left_alone(cli, auth):
    auth.create_user("alice")
    path = auth.services.keys.file.path
    path.write_text("[1, 2")
    result = cli("key", "create", "--user", "alice", "--name", "k")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and str(path) in result.stderr
    assert path.read_text() == "[1, 2"


# -- the real command line ------------------------------------------------------------------------------------
def _flask(workspaces: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **base_env(workspaces)}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=workspaces.parent,  # no .env files here
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_flask_command_creates_a_user_and_a_key(app, workspaces):
    result = _flask(workspaces, "user", "create", "alice", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert (result.returncode, result.stdout) == (0, "Created admin alice.\n"), result.stderr
    result = _flask(workspaces, "key", "create", "--user", "alice", "--name", "ci")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and KEY_RE.fullmatch(key)
    assert key not in result.stderr
    assert _whoami(app, key) == 200  # the running app sees the key created by another process
    raw = (workspaces / "api-keys.json").read_text()
    assert key not in raw and key[12:] not in raw


def test_key_create_with_limits(cli, auth, workspaces):
    (workspaces / "alpha").mkdir()
    auth.create_user("alice")
    result = cli(
        "key", "create", "--user", "alice", "--name", "ci", "--scope", "ask", "--scope", "workspaces:write",
        "--workspace", "alpha", "--rate-limit", "5000", "--allow-ip", "10.0.0.0/8", "--allow-ip", "::1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = auth.services.keys.lookup(result.stdout.rstrip("\n"))
    assert {name: record[name] for name in ("scopes", "workspaces", "rate_limit", "allowed_ips")} == {
        "scopes": ["ask", "workspaces:write"],
        "workspaces": ["alpha"],
        "rate_limit": 5000,
        "allowed_ips": ["10.0.0.0/8", "::1/128"],
    }
    plain = auth.services.keys.lookup(cli("key", "create", "--user", "alice", "--name", "d").stdout.rstrip("\n"))
    assert (plain["scopes"], plain["workspaces"], plain["rate_limit"]) == (["ask", "workspaces:read"], None, None)

    refused = cli("key", "create", "--user", "alice", "--name", "x", "--workspace", "beta")
    assert (refused.exit_code, refused.stderr) == (1, "Error: workspaces: there is no workspace 'beta'\n")
    refused = cli("key", "create", "--user", "alice", "--name", "x", "--allow-ip", "nowhere")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: allowed_ips: 'nowhere' is not an IP address or CIDR range")
    assert len(auth.services.keys.list()) == 2


def test_key_rotate_prints_only_the_new_key(app, cli, auth):
    auth.create_user("alice")
    old = auth.services.keys.create("alice", "ci", 30)
    result = cli("key", "rotate", old.record["id"], "--grace-seconds", "600")
    assert result.exit_code == 0, result.output
    key = result.stdout.rstrip("\n")
    assert result.stdout == key + "\n" and KEY_RE.fullmatch(key) and key != old.key
    record = auth.services.keys.lookup(key)
    assert record["id"] == old.record["id"] and record["expires_at"] == old.record["expires_at"]
    assert result.stderr == (
        f"Rotated key {record['id']} ({record['prefix']}…); the old one works until {record['previous_expires_at']}.\n"
    )
    assert (_whoami(app, old.key), _whoami(app, key)) == (200, 200)

    again = cli("key", "rotate", old.record["id"], "--grace-seconds", "0")
    assert again.exit_code == 0 and "the old one no longer works" in again.stderr
    assert (_whoami(app, key), _whoami(app, again.stdout.rstrip("\n"))) == (401, 200)

    missing = cli("key", "rotate", "key_missing")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "Error: No key with id 'key_missing' (see: flask --app wsgi key list)\n",
    )
    assert cli("key", "rotate", old.record["id"], "--grace-seconds", "604801").exit_code == 2
    auth.services.keys.revoke(old.record["id"])
    revoked = cli("key", "rotate", old.record["id"])
    assert (revoked.exit_code, revoked.stderr) == (1, "Error: Only an active key can be rotated\n")
