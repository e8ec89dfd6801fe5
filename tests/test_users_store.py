"""The user store: users.json with scrypt hashes only, session versions that end sessions."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from app.documents.sharedfile import StoreUnavailable
from app.users.store import UserError, UserStore

PASSWORD = "correct horse battery"


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path)


def test_create_stores_a_scrypt_hash_and_never_the_password(users):
    user = users.create("alice", PASSWORD, "admin")
    assert (user.username, user.role, user.disabled, user.session_version) == ("alice", "admin", False, 1)
    assert user.is_admin and user.is_active and user.is_authenticated and not user.is_anonymous
    assert re.fullmatch(r"usr_[0-9a-f]{16}", user.id)
    assert user.get_id() == f"{user.id}:1"

    raw = users.file.path.read_text()
    assert PASSWORD not in raw
    doc = json.loads(raw)
    assert doc["version"] == 1
    (record,) = doc["users"]
    assert set(record) == {"id", "username", "password_hash", "role", "disabled", "created_at", "session_version"}
    assert record["password_hash"].startswith("scrypt:")
    assert stat.S_IMODE(os.stat(users.file.path).st_mode) == 0o600


def test_authenticate(users):
    users.create("alice", PASSWORD)
    assert users.authenticate("alice", PASSWORD).username == "alice"
    assert users.authenticate("ALICE", PASSWORD).username == "alice"  # usernames are case-insensitive
    assert users.authenticate("alice", PASSWORD + "x") is None
    assert users.authenticate("alice", "") is None
    assert users.authenticate("nobody", PASSWORD) is None


def test_a_disabled_user_cannot_authenticate_and_their_sessions_end(users):
    before = users.create("alice", PASSWORD)
    after = users.set_disabled("alice", True)
    assert after.disabled and not after.is_active
    assert after.session_version == before.session_version + 1
    assert users.authenticate("alice", PASSWORD) is None
    enabled = users.set_disabled("alice", False)
    assert enabled.session_version == after.session_version  # enabling does not revive old sessions
    assert users.authenticate("alice", PASSWORD).username == "alice"


def test_set_password_bumps_the_session_version(users):
    before = users.create("alice", PASSWORD)
    after = users.set_password("alice", "a brand new password")
    assert after.session_version == before.session_version + 1
    assert users.authenticate("alice", PASSWORD) is None
    assert users.authenticate("alice", "a brand new password").username == "alice"


@pytest.mark.parametrize("name", ["", " ", "-alice", "al ice", "a" * 33, "al/ice", "ålice"])
def test_bad_usernames_are_refused(users, name):
    with pytest.raises(UserError, match="A username is 1–32 characters"):
        users.create(name, PASSWORD)


@pytest.mark.parametrize("password", ["", "short", "x" * 9, "x" * 1025])
def test_bad_passwords_are_refused(users, password):
    with pytest.raises(UserError):
        users.create("alice", password)
    assert users.count() == 0


def test_duplicate_usernames_are_refused_whatever_the_case(users):
    users.create("alice", PASSWORD)
    with pytest.raises(UserError) as info:
        users.create("Alice", PASSWORD)
    assert str(info.value) == "A user named 'Alice' already exists"
    assert users.count() == 1


def test_unknown_role_and_unknown_user(users):
    with pytest.raises(UserError, match="Role must be one of admin, member"):
        users.create("alice", PASSWORD, "root")
    with pytest.raises(UserError) as info:
        users.set_password("ghost", PASSWORD)
    assert str(info.value) == "No user named 'ghost'"


def test_only_if_empty_refuses_a_second_first_admin(users):
    users.create("alice", PASSWORD, "admin", only_if_empty=True)
    with pytest.raises(UserError, match="Setup is already complete"):
        users.create("mallory", PASSWORD, "admin", only_if_empty=True)
    assert [u.username for u in users.list()] == ["alice"]


def test_lookups_and_listing(users, tmp_path):
    bob = users.create("bob", PASSWORD)
    users.create("Alice", PASSWORD, "admin")
    other = UserStore(tmp_path)  # another process sees the same users
    assert [u.username for u in other.list()] == ["Alice", "bob"]
    assert other.get("alice").username == "Alice"
    assert other.get_by_id(bob.id) == bob
    assert other.get("nobody") is None
    assert other.count() == 2
    assert users.set_role("bob", "admin").is_admin
    assert other.get("bob").is_admin


def test_a_corrupt_users_file_fails_closed(users):
    users.file.path.write_text('{"version": 1, "users": [{"username": "x"}]}')
    before = users.file.path.read_bytes()
    with pytest.raises(StoreUnavailable, match="users.json"):
        users.authenticate("x", PASSWORD)
    with pytest.raises(StoreUnavailable):
        users.create("alice", PASSWORD)
    assert users.file.path.read_bytes() == before
