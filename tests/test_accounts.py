"""The accounts layer: each rule once, whichever front end calls it (pages, API and CLI have their own tests)."""

from __future__ import annotations

import ast
import sys
from datetime import timedelta

import pytest

from app import accounts, firstrun
from app.accounts import AccountRefused, Actor
from app.keys.errors import KeyRequestError
from app.keys.store import key_status, parse_iso
from app.ratelimits import LimitReached
from app.users.store import UserError
from tests.conftest import PASSWORD
from tests.test_import_cycles import app_modules

ROOT = Actor("session", "root", True)
ALICE = Actor("session", "alice", False)


@pytest.fixture
def svc(app):
    with app.app_context():
        yield app.extensions["askgate"]


def _refused(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(AccountRefused) as info:
        call(*args, **kwargs)
    return info.value.status, str(info.value)


def test_the_first_admin_discards_the_setup_token_and_is_signed_in(svc, workspaces):
    assert firstrun.ensure_token(workspaces, svc.users)
    signed_in = accounts.create_first_admin("root", PASSWORD)
    assert (signed_in.user.username, signed_in.user.role) == ("root", "admin")
    assert not firstrun.token_path(workspaces).exists()
    assert svc.users.session_alive(signed_in.user.id, signed_in.session_id, 3600)
    with pytest.raises(UserError, match="Setup is already complete"):
        accounts.create_first_admin("second", PASSWORD)


def test_signing_in_and_out(svc):
    svc.users.create("alice", PASSWORD)
    assert accounts.sign_in("alice", "wrong password") is None
    signed_in = accounts.sign_in(" Alice ", PASSWORD)
    assert signed_in.user.username == "alice"
    assert svc.users.session_alive(signed_in.user.id, signed_in.session_id, 3600)
    accounts.sign_out(signed_in.user, signed_in.session_id)
    assert not svc.users.session_alive(signed_in.user.id, signed_in.session_id, 3600)
    accounts.disable_user(Actor.operator(), "alice")
    assert accounts.sign_in("alice", PASSWORD) is None


def test_store_maintenance_is_the_operators_alone(svc):
    for call, args in (
        (accounts.check_stores, ()),
        (accounts.restore_stores, ()),
        (accounts.migrate_stores, ("files",)),
    ):
        assert _refused(call, ROOT, *args) == (403, "Only the operator, at the server's console, can do that")
    assert accounts.check_stores(Actor.operator()) == {"keys": None, "users": None}
    assert accounts.restore_stores(Actor.operator()) == []


def test_only_admins_create_users_and_an_admin_discards_the_token(svc, workspaces):
    firstrun.ensure_token(workspaces, svc.users)
    assert _refused(accounts.create_user, ALICE, "bob", PASSWORD) == (403, "Only an admin can do that")
    assert svc.users.get("bob") is None
    accounts.create_user(Actor.operator(), "bob", PASSWORD)
    assert firstrun.token_path(workspaces).exists()  # a member is not an admin: setup is not done
    accounts.create_user(Actor.operator(), "root", PASSWORD, admin=True)
    assert not firstrun.token_path(workspaces).exists()


def test_disabling_revokes_every_key_and_never_oneself(svc):
    svc.users.create("root", PASSWORD, "admin")
    svc.users.create("alice", PASSWORD)
    for name in ("a", "b"):
        accounts.create_key_for(ROOT, "alice", name, None)
    assert _refused(accounts.disable_user, ROOT, "ROOT") == (400, "You cannot disable your own account.")
    assert _refused(accounts.disable_user, ALICE, "root") == (403, "Only an admin can do that")
    user, revoked = accounts.disable_user(ROOT, "alice")
    assert (user.disabled, revoked) == (True, 2)
    assert [key_status(r) for r in svc.keys.list("alice")] == ["revoked", "revoked"]
    assert _refused(accounts.create_key_for, ROOT, "alice", "c", None) == (400, "User 'alice' is disabled")
    assert accounts.enable_user(ROOT, "alice").disabled is False
    assert [key_status(r) for r in svc.keys.list("alice")] == ["revoked", "revoked"]  # old keys stay revoked


def test_keys_only_for_existing_enabled_users_and_others_only_by_admins(svc):
    svc.users.create("alice", PASSWORD)
    assert _refused(accounts.create_key_for, ROOT, "nobody", "k", None) == (400, "No user named 'nobody'")
    refused = (403, "Only an admin can create keys for another user")
    assert _refused(accounts.create_key_for, ALICE, "root", "k", None) == refused
    admin_key = Actor("admin_key", None, True)
    no_owner = (400, 'The admin key belongs to no user: say whose key this is with "user"')
    assert _refused(accounts.create_key_for, admin_key, None, "k", None) == no_owner
    leaked = Actor("dashboard_key", "alice", False)
    manager = (403, "Key management needs a dashboard session or the admin key")
    assert _refused(accounts.create_key_for, leaked, None, "k", None) == manager
    new = accounts.create_key_for(ALICE, None, "  mine  ", 30)
    assert (new.record["owner"], new.record["name"]) == ("alice", "mine")
    assert svc.keys.list() == [new.record]


def test_a_key_of_someone_else_is_not_found(svc):
    svc.users.create("alice", PASSWORD)
    svc.users.create("bob", PASSWORD)
    key_id = accounts.create_key_for(ROOT, "bob", "k", None).record["id"]
    assert _refused(accounts.revoke_key, ALICE, key_id) == (404, "Key not found")
    assert _refused(accounts.delete_key, ALICE, key_id) == (404, "Key not found")
    assert key_status(svc.keys.get(key_id)) == "active"
    assert accounts.revoke_key(ROOT, key_id)["revoked_at"]
    assert accounts.delete_key(Actor("session", "bob", False), key_id)["id"] == key_id
    assert svc.keys.get(key_id) is None


def test_the_key_creation_limit_counts_for_every_front_end_but_the_console(make_app):
    app = make_app(KEY_CREATE_LIMIT="2/hour")
    with app.app_context():
        app.extensions["askgate"].users.create("alice", PASSWORD)
        accounts.create_key_for(ALICE, None, "one", None)
        accounts.create_key_for(Actor("admin_key", None, True), "alice", "two", None)
        with pytest.raises(LimitReached):
            accounts.create_key_for(ALICE, None, "three", None)
        accounts.create_key_for(Actor.operator(), "alice", "console", None)
        assert len(app.extensions["askgate"].keys.list("alice")) == 3


def _bad(call, *args) -> str:
    with pytest.raises(KeyRequestError) as info:
        call(*args)
    return str(info.value)


def test_key_limits_at_creation_follow_the_rules_that_need_context(make_app, workspaces):
    app = make_app(API_RATE_LIMIT="100")
    (workspaces / "alpha").mkdir()
    with app.app_context():
        svc = app.extensions["askgate"]
        svc.users.create("alice", PASSWORD)
        svc.users.create("root", PASSWORD, "admin")
        write = {"scopes": ["ask", "workspaces:write"]}
        grant = (403, "Only admins can give a key workspaces:write")
        assert _refused(accounts.create_key_for, ALICE, None, "k", None, write) == grant
        assert _bad(accounts.create_key_for, ALICE, None, "k", None, {"workspaces": ["beta"]}) == (
            "workspaces: there is no workspace 'beta'"
        )
        too_many = (
            "rate_limit must be a whole number of requests per hour from 1 to 100, or null for the instance's limit"
        )
        assert _bad(accounts.create_key_for, ALICE, None, "k", None, {"rate_limit": 101}) == too_many
        assert svc.keys.list() == []  # nothing minted by a refusal

        mine = accounts.create_key_for(ALICE, None, "k", None, {"workspaces": ["alpha"], "rate_limit": 100}).record
        assert (mine["workspaces"], mine["rate_limit"], mine["scopes"]) == (["alpha"], 100, ["ask", "workspaces:read"])
        theirs = accounts.create_key_for(ROOT, "alice", "ci", None, {**write, "rate_limit": 1_000_000}).record
        assert (theirs["owner"], theirs["scopes"], theirs["rate_limit"]) == ("alice", write["scopes"], 1_000_000)
        operator = accounts.create_key_for(Actor.operator(), "alice", "cli", None, write).record
        assert operator["scopes"] == write["scopes"]


def test_updating_a_key(make_app, workspaces):
    app = make_app(API_RATE_LIMIT="100")
    (workspaces / "alpha").mkdir()
    with app.app_context():
        svc = app.extensions["askgate"]
        svc.users.create("alice", PASSWORD)
        svc.users.create("bob", PASSWORD)
        key_id = accounts.create_key_for(ROOT, "alice", "ci", None, {"scopes": ["workspaces:write"], "rate_limit": 500})
        key_id = key_id.record["id"]
        # What an admin gave stays when the owner changes something else, even beyond what she may give.
        updated = accounts.update_key(ALICE, key_id, {"name": "renamed", "scopes": ["ask", "workspaces:write"]})
        assert (updated["name"], updated["scopes"], updated["rate_limit"]) == (
            "renamed",
            ["ask", "workspaces:write"],
            500,
        )
        assert accounts.update_key(ALICE, key_id, {"rate_limit": 500})["rate_limit"] == 500
        assert _bad(accounts.update_key, ALICE, key_id, {"rate_limit": 501}).startswith(
            "rate_limit must be a whole number of requests per hour from 1 to 100"
        )
        narrowed = accounts.update_key(ALICE, key_id, {"scopes": ["ask"], "workspaces": ["alpha"]})
        assert (narrowed["scopes"], narrowed["workspaces"]) == (["ask"], ["alpha"])
        grant = (403, "Only admins can give a key workspaces:write")
        assert _refused(accounts.update_key, ALICE, key_id, {"scopes": ["workspaces:write"]}) == grant
        assert _bad(accounts.update_key, ALICE, key_id, {"colour": "red"}).startswith("Unknown field(s): colour;")
        assert _refused(accounts.update_key, Actor("session", "bob", False), key_id, {"name": "x"}) == (
            404,
            "Key not found",
        )
        leaked = Actor("dashboard_key", "alice", False)
        assert _refused(accounts.update_key, leaked, key_id, {"name": "x"})[0] == 403
        assert accounts.update_key(ROOT, key_id, {"scopes": ["workspaces:write"]})["scopes"] == ["workspaces:write"]
        assert svc.keys.get(key_id)["name"] == "renamed"


def test_rotating_a_key(svc):
    svc.users.create("alice", PASSWORD)
    svc.users.create("bob", PASSWORD)
    new = accounts.create_key_for(ALICE, None, "ci", 30, {"rate_limit": 5})
    rotated = accounts.rotate_key(ALICE, new.record["id"])
    assert rotated.key != new.key and rotated.record["id"] == new.record["id"]
    assert rotated.record["expires_at"] == new.record["expires_at"]
    assert rotated.record["rate_limit"] == 5
    grace = parse_iso(rotated.record["previous_expires_at"]) - parse_iso(rotated.record["created_at"])
    assert grace >= timedelta(seconds=86_400)  # the default, counted from now
    assert svc.keys.lookup(new.key)["id"] == new.record["id"]
    assert _refused(accounts.rotate_key, Actor("session", "bob", False), new.record["id"]) == (404, "Key not found")
    assert _refused(accounts.rotate_key, Actor("dashboard_key", "alice", False), new.record["id"])[0] == 403
    assert _bad(accounts.rotate_key, ALICE, new.record["id"], 604_801).startswith("grace_seconds must be")
    assert accounts.rotate_key(Actor.operator(), new.record["id"], 0).record["previous_expires_at"] is None
    accounts.revoke_key(ALICE, new.record["id"])
    assert _refused(accounts.rotate_key, ROOT, new.record["id"], 60) == (409, "Only an active key can be rotated")


def test_changing_a_password(svc):
    svc.users.create("alice", PASSWORD)
    wrong = (400, "That is not your current password.")
    assert _refused(accounts.change_password, ALICE, "alice", "a new password!", "not it") == wrong
    assert _refused(accounts.change_password, ALICE, "alice", "a new password!") == (403, "Only an admin can do that")
    mallory = Actor("session", "mallory", False)
    not_theirs = (403, "Only the user can change their password with the current one")
    assert _refused(accounts.change_password, mallory, "alice", "a new password!", PASSWORD) == not_theirs
    assert svc.users.authenticate("alice", PASSWORD)
    accounts.change_password(ALICE, "alice", "a new password!", PASSWORD)
    accounts.change_password(ROOT, "alice", "an admin reset one")
    assert svc.users.authenticate("alice", "an admin reset one")


def test_workspaces_replaced_and_deleted_only_by_admins(svc, workspaces, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("NEW = 1\n")
    (workspaces / "shop").mkdir()
    (workspaces / "shop" / "app.py").write_text("OLD = 1\n")
    refused = (403, "Only an admin can replace an existing workspace.")
    assert _refused(accounts.import_workspace_from, ALICE, "shop", path=source, replace=True) == refused
    deleting = (403, "Deleting a workspace needs an admin session, the admin key or a key with workspaces:write")
    assert _refused(accounts.delete_workspace, ALICE, "shop") == deleting
    # A member's key, or a client key, never: an admin's key gets here only with workspaces:write (the hook).
    assert _refused(accounts.delete_workspace, Actor("dashboard_key", "alice", False), "shop") == deleting
    assert _refused(accounts.delete_workspace, Actor("client_key", None, False), "shop") == deleting
    assert (workspaces / "shop" / "app.py").read_text() == "OLD = 1\n"
    assert accounts.import_workspace_from(ROOT, "shop", path=source, replace=True)["file_count"] == 1
    assert (workspaces / "shop" / "app.py").read_text() == "NEW = 1\n"
    accounts.delete_workspace(ROOT, "shop")
    assert not (workspaces / "shop").exists()


# The stores' methods that change them. A session's last use is the user store's own bookkeeping, inside
# ``UserStore.session_alive``; a key's last use is not in the key store at all (app/usage.py).
STORE_WRITES = {
    "users": {"create", "set_password", "set_disabled", "set_role", "start_session", "end_session"},
    "keys": {"create", "revoke", "revoke_owner", "delete"},
}
STORE_OWNERS = ("app.accounts", "app.stores", "app.keys", "app.users", "app.documents")


def _store_writes_outside_accounts() -> list[str]:
    found = []
    for module, path in app_modules().items():
        if module.startswith(STORE_OWNERS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = node.func.value
                store = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", None)
                if node.func.attr in STORE_WRITES.get(store, ()):
                    found.append(f"{module}:{node.lineno} {store}.{node.func.attr}")
            if isinstance(node, ast.ImportFrom) and any(
                "storeadmin" in name for name in (node.module or "", *(alias.name for alias in node.names))
            ):
                found.append(f"{module}:{node.lineno} imports storeadmin")
    return found


def test_nothing_outside_the_accounts_layer_writes_a_store():
    assert _store_writes_outside_accounts() == []


def test_the_store_write_check_can_fail(monkeypatch):
    """The check above sees a write where one is (the stores' own modules are skipped only by name)."""
    monkeypatch.setattr(sys.modules[__name__], "STORE_OWNERS", ("app.keys", "app.users", "app.documents"))
    found = _store_writes_outside_accounts()
    assert "app.accounts" in " ".join(found) and "imports storeadmin" in " ".join(found)
