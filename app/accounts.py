"""Every account action, once: the pages, the API and the command line all call these.

Each function checks the rule, changes the store and returns what happened; the acting ``Actor`` is passed in
(signing in, the user signing out). Nothing else writes the key and user stores, but for the user store's own
bookkeeping: a session's last use, written as a side effect of reading it (a key's last use is in app/usage.py).
A refusal is an ``AccountRefused`` (its ``status`` says which kind); invalid names and passwords stay the
stores' own ``UserError`` and ``KeyRequestError``, the key-creation throttle ``LimitReached``. No Flask ``request``
here: the caller says who is acting, and from which address.

Every management action records one audit event (``app.audit``) inside the store write that makes it, after the
change is checked and before it is saved: when the event cannot be written the action raises ``AuditUnavailable``
and nothing is saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app import audit, firstrun
from app.ask.errors import WorkspaceNotFound
from app.ask.importer import import_archive_stream, import_workspace
from app.ask.workspaces import delete_workspace as remove_workspace
from app.ask.workspaces import is_valid_workspace_id, workspace_dir
from app.documents import storeadmin
from app.inputs import KEY_EXPIRY_CHOICES, KEY_RATE_LIMIT_ADMIN_MAX, ROTATE_GRACE_DEFAULT
from app.keys.errors import KeyRequestError
from app.keys.limits import check_rate_limit, parse_key_limits
from app.keys.store import CHANGEABLE_FIELDS, KeyStateError, NewKey, check_changeable
from app.services import services
from app.stores import Stores
from app.users.store import User, UserError

# The ways in that may manage keys: a leaked key must not mint more keys.
KEY_MANAGERS = ("session", "admin_key", "cli")
# Replacing or deleting a workspace through the API changes what every key answers from: an admin session, the
# admin key or the operator, or a dashboard key an admin gave the workspaces:write scope.
WORKSPACE_ADMINS = ("session", "admin_key", "cli")
WORKSPACE_WRITE_SCOPE = "workspaces:write"


@dataclass(frozen=True)
class Actor:
    """Who acts: how they came in (``via``: session, dashboard_key, admin_key, client_key or cli), as which user,
    from which address (``ip``: the front end's client address; None at the console)."""

    via: str
    user: str | None
    is_admin: bool
    scopes: frozenset[str] = frozenset()  # a dashboard key's scopes; nothing for every other way in
    ip: str | None = None

    @classmethod
    def operator(cls) -> Actor:
        """Whoever runs the command line on the server: the operator, with every right."""
        return cls("cli", None, True)

    @classmethod
    def signed_in(cls, user: User, ip: str | None = None) -> Actor:
        return cls("session", user.username, user.is_admin, ip=ip)


class AccountRefused(Exception):
    """The rule says no; ``status`` is 400 (bad request), 403 (not allowed), 404 (nothing the actor may see) or
    409 (not in a state that allows it)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SignedIn:
    """A new sign-in: the user, and the session id to keep in their signed cookie (and nowhere else)."""

    user: User
    session_id: str


# -- the audit log ---------------------------------------------------------------------------------------------------
def _event(actor: Actor, action: str, kind: str, target_id: object, name: object, detail: dict | None = None) -> dict:
    return audit.build(
        action,
        actor=actor.user,
        auth_method=actor.via,
        ip=actor.ip,
        target_type=kind,
        target_id=target_id,
        target_name=name,
        detail=detail,
    )


@contextlib.contextmanager
def _audited(make: Callable[[object, dict], dict]) -> Iterator[None]:
    """Record ``make(result, document)`` inside the block's first store write, before it is saved."""
    with audit.on_commit(services().audit, make):
        yield


def _record(event: dict) -> None:
    """Record an event now (actions that are not one store write): AuditUnavailable refuses the action."""
    services().audit.record(event)


def _user_event(actor: Actor, action: str, user: User, detail: dict | None = None) -> Callable[[object, dict], dict]:
    return lambda _result, _data: _event(actor, action, "user", user.id, user.username, detail)


def _named_user(username: str) -> User:
    user = services().users.get(username)
    if user is None:
        raise UserError(f"No user named {username!r}")
    return user


def require_audit_reader(actor: Actor) -> None:
    if not (actor.is_admin and actor.via in WORKSPACE_ADMINS):
        raise AccountRefused("The audit log needs an admin session or the admin key", 403)


def audit_page(actor: Actor, query: audit.Query) -> audit.Page:
    """The audit events matching ``query``, newest first: for an admin session, the admin key or the operator."""
    require_audit_reader(actor)
    return services().audit.read(query)


# -- sessions ---------------------------------------------------------------------------------------------------
def sign_in(username: str, password: str, ip: str | None = None) -> SignedIn | None:
    """Sign in with a password from address ``ip``; None when the name or password is wrong or the account is
    disabled (a failed sign-in: the caller counts it against the login limit). Both are audited; a failure names
    the user only when one has that name (a password typed into the name field stays out of the log)."""
    user = services().users.authenticate(username, password)
    if user is None:
        known = services().users.get(username) if isinstance(username, str) else None
        target = (known.id, known.username) if known else (None, None)
        _record(_event(Actor("session", None, False, ip=ip), "user.login_failed", "user", *target))
        return None
    with _audited(_user_event(Actor.signed_in(user, ip), "user.login", user)):
        return _open_session(user)


def sign_out(user: User, session_id: str, ip: str | None = None) -> None:
    """End one session of ``user`` on the server: the cookie it leaves behind opens nothing."""
    with _audited(_user_event(Actor.signed_in(user, ip), "user.logout", user)):
        services().users.end_session(user.id, session_id)


def _open_session(user: User) -> SignedIn:
    return SignedIn(user, services().users.start_session(user.id, services().config.session_lifetime))


# -- users ------------------------------------------------------------------------------------------------------
def create_first_admin(username: str, password: str, ip: str | None = None) -> SignedIn:
    """First-run setup: the first user, an admin, only while there are none, signed in at once."""
    actor = Actor("session", username if isinstance(username, str) else None, True, ip=ip)
    return _open_session(_add_user(actor, username, password, "admin", only_if_empty=True))


def create_user(actor: Actor, username: str, password: str, admin: bool = False) -> User:
    _require_admin(actor)
    return _add_user(actor, username, password, "admin" if admin else "member")


def _add_user(actor: Actor, username: str, password: str, role: str, *, only_if_empty: bool = False) -> User:
    action = "setup.complete" if only_if_empty else "user.create"

    def event(record: object, _data: dict) -> dict:
        return _event(actor, action, "user", record["id"], record["username"], {"role": role})

    with _audited(event):
        user = services().users.create(username, password, role, only_if_empty=only_if_empty)
    if user.is_admin:  # an admin exists now: the setup token has done its job
        firstrun.discard_token(services().config.workspaces_dir)
    return user


def disable_user(actor: Actor, username: str) -> tuple[User, int]:
    """Disable a user: their sessions end and every key of theirs is revoked. Returns the user and the count."""
    _require_admin(actor)
    if actor.user is not None and username.lower() == actor.user.lower():
        raise AccountRefused("You cannot disable your own account.")
    with _audited(_user_event(actor, "user.disable", _named_user(username))):
        user = services().users.set_disabled(username, True)
    return user, services().keys.revoke_owner(user.username)


def enable_user(actor: Actor, username: str) -> User:
    """Let a disabled user sign in again; their old keys stay revoked."""
    _require_admin(actor)
    with _audited(_user_event(actor, "user.enable", _named_user(username))):
        return services().users.set_disabled(username, False)


def set_role(actor: Actor, username: str, admin: bool) -> User:
    """Make a user an admin or a member; not oneself (an admin cannot lock themselves out of administration)."""
    _require_admin(actor)
    if actor.user is not None and username.lower() == actor.user.lower():
        raise AccountRefused("You cannot change your own role.")
    role = "admin" if admin else "member"
    with _audited(_user_event(actor, "user.update", _named_user(username), {"role": role})):
        return services().users.set_role(username, role)


def change_password(actor: Actor, username: str, new_password: str, current_password: str | None = None) -> User:
    """Set a password (every session of the user ends): one's own with the current password, anyone's as admin."""
    users = services().users
    if current_password is not None:
        if actor.user is None or actor.user.lower() != username.lower():
            raise AccountRefused("Only the user can change their password with the current one", 403)
        if not users.authenticate(username, current_password):
            raise AccountRefused("That is not your current password.")
    else:
        _require_admin(actor)
    own = current_password is not None
    with _audited(_user_event(actor, "user.password", _named_user(username), {"own": own})):
        return users.set_password(username, new_password)


# -- keys -------------------------------------------------------------------------------------------------------
def require_key_manager(actor: Actor) -> None:
    if actor.via not in KEY_MANAGERS:
        raise AccountRefused("Key management needs a dashboard session or the admin key", 403)


def visible_keys(actor: Actor) -> list[dict]:
    """The keys ``actor`` may see: an admin every key, anyone else their own."""
    require_key_manager(actor)
    return services().keys.list(None if actor.is_admin else actor.user)


def find_key(actor: Actor, key_id: str) -> dict:
    """The key ``key_id`` if ``actor`` may see it; a key of another user is "not found", so ids do not leak."""
    require_key_manager(actor)
    record = services().keys.get(key_id)
    if record is None or (not actor.is_admin and record["owner"] != actor.user):
        raise AccountRefused("Key not found", 404)
    return record


def create_key_for(
    actor: Actor, owner: object, name: object, expires_in_days: object, limits: dict | None = None
) -> NewKey:
    """A new key for ``owner`` (None: the actor), an existing enabled user; counted against KEY_CREATE_LIMIT.

    Naming an owner at all is an admin's request. ``limits`` holds any of ``scopes``, ``workspaces``,
    ``rate_limit`` and ``allowed_ips`` (the defaults for the others; see :func:`check_key_limits`). The raw key
    is in the result and nowhere else. The operator at the console is not throttled.
    """
    require_key_manager(actor)
    if owner is None:
        owner = actor.user
    elif not actor.is_admin:
        raise AccountRefused("Only an admin can create keys for another user", 403)
    elif not isinstance(owner, str):
        raise AccountRefused("user must be a username")
    if owner is None:
        raise AccountRefused('The admin key belongs to no user: say whose key this is with "user"')
    target = services().users.get(owner)
    if target is None:
        raise AccountRefused(f"No user named {owner!r}")
    if target.disabled:
        raise AccountRefused(f"User {owner!r} is disabled")
    if isinstance(expires_in_days, bool) or not (expires_in_days is None or isinstance(expires_in_days, int)):
        raise AccountRefused(f"expires_in_days must be {KEY_EXPIRY_CHOICES}, or null for never")
    checked = check_key_limits(actor, limits or {})
    admit = None if actor.via == "cli" else (lambda: services().limits.admit_key_creation(target.id))

    def event(_result: object, data: dict) -> dict:
        record = data["keys"][-1]  # the store appends the new key
        detail = {field: record.get(field) for field in ("owner", "expires_at", *CHANGEABLE_FIELDS)}
        return _event(actor, "key.create", "key", record["id"], record["name"], detail)

    with _audited(event):
        return services().keys.create(target.username, name, expires_in_days, admit=admit, limits=checked)


def check_key_limits(actor: Actor, limits: dict, current: dict | None = None) -> dict:
    """The limits in ``limits`` (all four for a new key, those present when changing the key ``current``), checked
    against the rules that need context; raises KeyRequestError (400) naming the field, AccountRefused (403).

    Only an admin may give ``workspaces:write``; listed workspaces must exist; ``rate_limit`` is at most
    ``API_RATE_LIMIT`` (an admin's up to KEY_RATE_LIMIT_ADMIN_MAX). What an admin gave a key stays when its
    owner changes something else: a value the key already has is never refused.
    """
    current_limit = (current or {}).get("rate_limit")
    if limits.get("rate_limit") is not None and limits["rate_limit"] != current_limit:
        # The message names the bound that applies to this actor, so it is checked before the general shape.
        check_rate_limit(limits["rate_limit"], _rate_limit_max(actor))
    checked = parse_key_limits(limits, partial=current is not None)
    current = current or {}
    grants_write = "workspaces:write" in checked.get("scopes", ()) and "workspaces:write" not in current.get(
        "scopes", ()
    )
    if grants_write and not actor.is_admin:
        raise AccountRefused("Only admins can give a key workspaces:write", 403)
    for workspace_id in checked.get("workspaces") or ():
        if workspace_id in (current.get("workspaces") or ()):
            continue  # deleted since it was given: keeping it does no harm
        try:
            workspace_dir(services().config.workspaces_dir, workspace_id)
        except WorkspaceNotFound:
            raise KeyRequestError(f"workspaces: there is no workspace {workspace_id!r}") from None
    return checked


def _rate_limit_max(actor: Actor) -> int:
    """The highest hourly limit ``actor`` may give a key: API_RATE_LIMIT, an admin's KEY_RATE_LIMIT_ADMIN_MAX."""
    if actor.is_admin:
        return KEY_RATE_LIMIT_ADMIN_MAX
    return min(services().config.api_rate_limit, KEY_RATE_LIMIT_ADMIN_MAX)


def update_key(actor: Actor, key_id: str, changes: dict) -> dict:
    """Change the name and limits (any of ``name``, ``scopes``, ``workspaces``, ``rate_limit``, ``allowed_ips``) of
    a key the actor may see; returns the record. Unknown fields are a KeyRequestError naming them."""
    record = find_key(actor, key_id)
    check_changeable(changes)
    limits = check_key_limits(actor, changes, current=record)
    changed = {**changes, **limits}
    detail = {field: changed[field] for field in CHANGEABLE_FIELDS if field in changed}
    with _audited(lambda _result, _data: _event(actor, "key.update", "key", key_id, record["name"], detail)):
        updated = services().keys.update(key_id, changed)
    if updated is None:  # deleted in between
        raise AccountRefused("Key not found", 404)
    return updated


def rotate_key(actor: Actor, key_id: str, grace_seconds: object = ROTATE_GRACE_DEFAULT) -> NewKey:
    """A new secret for a key the actor may see (same id, name, limits and expiry); the old one keeps working for
    ``grace_seconds`` (0 to ROTATE_GRACE_MAX). The record's ``previous_expires_at`` says until when (None with no
    grace). A revoked or expired key is refused (409). The raw key is in the result and nowhere else."""
    record = find_key(actor, key_id)
    detail = {"grace_seconds": grace_seconds if isinstance(grace_seconds, int) else None}
    try:
        with _audited(lambda _result, _data: _event(actor, "key.rotate", "key", key_id, record["name"], detail)):
            new = services().keys.rotate(key_id, grace_seconds)
    except KeyStateError as exc:
        raise AccountRefused(str(exc), 409) from None
    if new is None:  # deleted in between
        raise AccountRefused("Key not found", 404)
    return new


def revoke_key(actor: Actor, key_id: str) -> dict:
    """Revoke a key the actor may see; returns its record, now revoked."""
    found = find_key(actor, key_id)
    with _audited(lambda _result, _data: _event(actor, "key.revoke", "key", key_id, found["name"])):
        record = services().keys.revoke(key_id)
    if record is None:  # deleted in between
        raise AccountRefused("Key not found", 404)
    return record


def delete_key(actor: Actor, key_id: str) -> dict:
    """Delete a key the actor may see; returns the record it had."""
    record = find_key(actor, key_id)
    with _audited(lambda _result, _data: _event(actor, "key.delete", "key", key_id, record["name"])):
        services().keys.delete(key_id)
    return record


# -- workspaces -------------------------------------------------------------------------------------------------
def import_workspace_from(
    actor: Actor,
    workspace_id: str,
    *,
    path: Path | None = None,
    stream: BinaryIO | None = None,
    filename: str = "",
    replace: bool = False,
) -> dict:
    """Any signed-in user may add a new workspace (from a folder or archive ``path``, or an uploaded ``stream``);
    replacing one is for admins, since it changes what everyone's keys answer from.

    Audit: a replacement is recorded before it starts (it cannot be undone); a new workspace once it is in place,
    and taken out again when its event cannot be written."""
    if replace and not may_replace_workspaces(actor):
        raise AccountRefused("Only an admin can replace an existing workspace.", 403)
    root = services().config.workspaces_dir
    replacing = replace and _workspace_exists(root, workspace_id)
    if replacing:
        _record(_event(actor, "workspace.replace", "workspace", workspace_id, workspace_id))
    if stream is not None:
        result = import_archive_stream(root, workspace_id, stream, filename, replace=replace)
    else:
        result = import_workspace(root, workspace_id, Path(path), replace=replace)
    if not replacing:
        try:
            _record(_event(actor, "workspace.create", "workspace", workspace_id, workspace_id))
        except audit.AuditUnavailable:
            remove_workspace(root, workspace_id)
            raise
    return result


def _workspace_exists(root: Path, workspace_id: str) -> bool:
    if not isinstance(workspace_id, str):
        return False
    try:
        workspace_dir(root, workspace_id)
    except WorkspaceNotFound:
        return False
    return True


def put_workspace(actor: Actor, workspace_id: str, stream: BinaryIO, filename: str) -> tuple[dict, bool]:
    """Create or replace a workspace from an uploaded archive in one call (``PUT /api/workspaces/<id>``, for CI);
    returns the totals and whether it was created. Who: see :func:`may_write_workspaces`."""
    require_workspace_putter(actor)
    # An invalid id is refused by the import itself, before it names a path.
    created = not (is_valid_workspace_id(workspace_id) and (services().config.workspaces_dir / workspace_id).is_dir())
    result = import_workspace_from(actor, workspace_id, stream=stream, filename=filename, replace=True)
    return result, created


def require_workspace_putter(actor: Actor) -> None:
    if not may_write_workspaces(actor):
        raise AccountRefused(
            "Putting a workspace needs an admin session, the admin key or a key with workspaces:write", 403
        )


def may_replace_workspaces(actor: Actor) -> bool:
    return may_write_workspaces(actor)


def may_write_workspaces(actor: Actor) -> bool:
    """Replace or delete workspaces through the API or the console: an admin session, the admin key, the operator,
    or a dashboard key with the ``workspaces:write`` scope (which only an admin can give a key)."""
    if actor.via == "dashboard_key":
        return WORKSPACE_WRITE_SCOPE in actor.scopes
    return actor.is_admin and actor.via in WORKSPACE_ADMINS


def may_delete_workspaces(actor: Actor) -> bool:
    return may_write_workspaces(actor)


def delete_workspace(actor: Actor, workspace_id: str) -> None:
    """Remove a workspace folder and its index."""
    if not may_delete_workspaces(actor):
        raise AccountRefused(
            "Deleting a workspace needs an admin session, the admin key or a key with workspaces:write", 403
        )
    root = services().config.workspaces_dir
    if not _workspace_exists(root, workspace_id):
        raise WorkspaceNotFound()
    _record(_event(actor, "workspace.delete", "workspace", workspace_id, workspace_id))  # it cannot be undone
    remove_workspace(root, workspace_id)


# -- the stores themselves: the operator's, at the console --------------------------------------------------------
def check_stores(actor: Actor) -> dict[str, str | None]:
    """For each store (``keys``, ``users``), what is wrong with it, or None when it is fine. Changes nothing."""
    _require_operator(actor)
    return storeadmin.check(_configured_stores())


def restore_stores(actor: Actor, only_broken: bool = True) -> list[str]:
    """Put back the last good version of each broken store (each store with ``only_broken=False``); returns
    the names restored. A ``StoreAdminError`` says why one could not be."""
    _require_operator(actor)
    stores = _configured_stores()
    names = [name for name, problem in storeadmin.check(stores).items() if problem or not only_broken]
    where = audit.safe_location(services().config.store_url or "files")
    with _audited(lambda _result, _data: _event(actor, "store.restore", "store", where, where, {"stores": names})):
        return storeadmin.restore(stores, only_broken=only_broken)


def migrate_stores(actor: Actor, target: str, overwrite: bool = False) -> dict[str, int]:
    """Copy every key and user to ``target`` ('files' or a redis:// URL) and verify; returns the counts copied."""
    _require_operator(actor)
    destination = Stores.open(target, services().config.workspaces_dir)
    source = _configured_stores()
    where = audit.safe_location(target)
    detail = {"to": where, "overwrite": overwrite}
    with _audited(lambda _result, _data: _event(actor, "store.migrate", "store", where, where, detail)):
        return storeadmin.migrate(source, destination, overwrite=overwrite)


def _configured_stores() -> Stores:
    return Stores(services().keys, services().users)


def _require_operator(actor: Actor) -> None:
    if actor.via != "cli":
        raise AccountRefused("Only the operator, at the server's console, can do that", 403)


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise AccountRefused("Only an admin can do that", 403)
