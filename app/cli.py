"""Flask CLI commands: ``user``, ``key`` and ``workspace``."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup

from app import accounts, audit, usage
from app.accounts import AccountRefused
from app.ask.errors import AskError
from app.audit import AuditQueryError, AuditUnavailable
from app.documents import StoreAdminError
from app.documents.sharedfile import StoreUnavailable, StoreWriteError
from app.inputs import DEFAULT_KEY_SCOPES, KEY_EXPIRY_DAYS, KEY_SCOPES, ROTATE_GRACE_DEFAULT, ROTATE_GRACE_MAX
from app.keys.store import KeyRequestError, key_status
from app.names import shown
from app.services import services
from app.users.store import UserError

user_cli = AppGroup("user", help="Manage users.")
key_cli = AppGroup("key", help="Manage API keys.")
workspace_cli = AppGroup("workspace", help="Manage workspaces of code.")
store_cli = AppGroup("store", help="Check, restore and migrate the key and user store.")
audit_cli = AppGroup("audit", help="Read the audit log.")
OPERATOR = accounts.Actor.operator()  # whoever runs these commands on the server


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def _read_password(password_stdin: bool, prompt: str = "Password") -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _guard(func):
    """Turn store and validation errors into one readable line and exit status 1."""

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (UserError, KeyRequestError, AccountRefused, StoreUnavailable, StoreWriteError, AskError) as exc:
            _fail(str(exc))
        except AuditUnavailable as exc:
            _fail(f"{exc}: nothing was changed ({exc.reason})")

    return wrapped


@user_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_guard
def user_create(name: str, admin: bool, password_stdin: bool) -> None:
    """Create a user (the first one can be the admin instead of using /setup)."""
    user = accounts.create_user(OPERATOR, name, _read_password(password_stdin), admin)
    click.echo(f"Created {user.role} {user.username}.")


@user_cli.command("list")
@_guard
def user_list() -> None:
    """List users."""
    for user in services().users.list():
        state = "disabled" if user.disabled else "active"
        click.echo(f"{shown(user.username)}\t{user.role}\t{state}\t{user.created_at}")


@user_cli.command("disable")
@click.argument("name")
@_guard
def user_disable(name: str) -> None:
    """Disable a user: ends their sessions and revokes their keys."""
    user, revoked = accounts.disable_user(OPERATOR, name)
    click.echo(f"Disabled {user.username}; revoked {revoked} key(s).")


@user_cli.command("enable")
@click.argument("name")
@_guard
def user_enable(name: str) -> None:
    """Let a disabled user sign in again (their old keys stay revoked)."""
    user = accounts.enable_user(OPERATOR, name)
    click.echo(f"Enabled {user.username}.")


@user_cli.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_guard
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password (ends their sessions)."""
    user = accounts.change_password(OPERATOR, name, _read_password(password_stdin, "New password"))
    click.echo(f"Password of {user.username} changed.")


@user_cli.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "member"]))
@_guard
def user_role(name: str, role: str) -> None:
    """Make a user an admin or a member."""
    user = accounts.set_role(OPERATOR, name, role == "admin")
    click.echo(f"{user.username} is now {user.role}.")


@key_cli.command("create")
@click.option("--user", "username", required=True, help="Owner of the key.")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--expires-in-days", type=click.Choice([str(days) for days in KEY_EXPIRY_DAYS if days]), default=None)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(KEY_SCOPES),
    help=f"What the key may do; repeat for several (default: {', '.join(DEFAULT_KEY_SCOPES)}).",
)
@click.option("--workspace", "workspaces", multiple=True, help="A workspace the key may use; repeat (default: all).")
@click.option("--rate-limit", type=int, default=None, help="Requests per hour (default: API_RATE_LIMIT).")
@click.option(
    "--allow-ip", "allowed_ips", multiple=True, help="An address or CIDR range the key may be used from; repeat."
)
@_guard
def key_create(
    username: str,
    name: str,
    expires_in_days: str | None,
    scopes: tuple[str, ...],
    workspaces: tuple[str, ...],
    rate_limit: int | None,
    allowed_ips: tuple[str, ...],
) -> None:
    """Create a key and print only the key on stdout (it is never shown again)."""
    days = int(expires_in_days) if expires_in_days else None
    limits: dict = {"rate_limit": rate_limit}
    for field, values in (("scopes", scopes), ("workspaces", workspaces), ("allowed_ips", allowed_ips)):
        if values:
            limits[field] = list(values)
    new = accounts.create_key_for(OPERATOR, username, name, days, limits)
    click.echo(f"Created key {new.record['id']} ({new.record['prefix']}…) for {new.record['owner']}.", err=True)
    click.echo(new.key)


@key_cli.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, ROTATE_GRACE_MAX),
    default=ROTATE_GRACE_DEFAULT,
    show_default=True,
    help="How long the old key keeps working.",
)
@_guard
def key_rotate(key_id: str, grace_seconds: int) -> None:
    """Give a key a new secret and print only the new key on stdout; the old one works for the grace period."""
    try:
        accounts.find_key(OPERATOR, key_id)
    except AccountRefused:
        _fail(f"No key with id {key_id!r} (see: flask --app wsgi key list)")
    new = accounts.rotate_key(OPERATOR, key_id, grace_seconds)
    until = new.record["previous_expires_at"]
    old = f"the old one works until {until}" if until else "the old one no longer works"
    click.echo(f"Rotated key {new.record['id']} ({new.record['prefix']}…); {old}.", err=True)
    click.echo(new.key)


@key_cli.command("list")
@click.option("--user", "username", default=None, help="Only this user's keys.")
@_guard
def key_list(username: str | None) -> None:
    """List keys (never the keys themselves), with their limits: scopes, workspaces, hourly limit, addresses, and
    when each was last used."""
    records = services().keys.list(username)
    for r, view in zip(records, usage.key_views(services().usage, records), strict=True):
        click.echo(
            "\t".join(
                [
                    r["id"],
                    shown(r["owner"]),
                    shown(r["name"]),
                    r["prefix"] + "…",
                    key_status(r),
                    r["created_at"],
                    r["expires_at"] or "never",
                    ",".join(r["scopes"]),
                    ",".join(r["workspaces"]) if r["workspaces"] else "all-workspaces",
                    f"{r['rate_limit']}/hour" if r["rate_limit"] else "API_RATE_LIMIT",
                    ",".join(r["allowed_ips"]) if r["allowed_ips"] else "any-address",
                    view["last_used_at"] or "never-used",
                ]
            )
        )


@key_cli.command("revoke")
@click.argument("key_id")
@_guard
def key_revoke(key_id: str) -> None:
    """Revoke a key by id."""
    try:
        record = accounts.revoke_key(OPERATOR, key_id)
    except AccountRefused:
        _fail(f"No key with id {key_id!r} (see: flask --app wsgi key list)")
    click.echo(f"Revoked {record['id']} ({record['prefix']}…).")


@workspace_cli.command("import")
@click.argument("workspace_id")
@click.argument("path", type=click.Path(exists=True, dir_okay=True, file_okay=True))
@click.option("--replace", is_flag=True, help="Replace an existing workspace of that id.")
@click.option("--wait", is_flag=True, help="Build the index here, with a progress bar, instead of in the background.")
@_guard
def workspace_import(workspace_id: str, path: str, replace: bool, wait: bool) -> None:
    """Create workspace WORKSPACE_ID from a folder, a .zip or a .tar.gz, then index it in the background."""
    root = services().config.workspaces_dir
    result = accounts.import_workspace_from(OPERATOR, workspace_id, path=Path(path), replace=replace)
    click.echo(f"Imported {result['file_count']} files ({result['size_bytes']} bytes) into workspace {result['id']}.")
    command = None if wait else _background_index_command(result["id"])
    if command is None:
        _echo_stats(_index_with_progress(root, result["id"]))
        return
    _start_detached(command, root, result["id"])
    click.echo(
        "Indexing it in the background: see the dashboard or `flask --app wsgi workspace list`; "
        f"`flask --app wsgi workspace index {result['id']}` follows it with a progress bar."
    )


def _background_index_command(workspace_id: str) -> list[str] | None:
    """The command that indexes the workspace in a process of its own; None if this app cannot be named."""
    from flask.cli import ScriptInfo

    info = click.get_current_context().find_object(ScriptInfo)
    app_path = (info.app_import_path if info else None) or os.environ.get("FLASK_APP")
    if not app_path:  # e.g. a test runner's app object: index here instead
        return None
    return [sys.executable, "-m", "flask", "--app", app_path, "workspace", "index", "--quiet", workspace_id]


def _start_detached(command: list[str], root: Path, workspace_id: str) -> None:
    """Run ``command`` in a session of its own so it outlives this one; its output goes beside the index."""
    from app.ask import indexstate
    from app.ask.indexdb import index_dir

    index_dir(root).mkdir(parents=True, exist_ok=True)
    indexstate.mark_queued(root, workspace_id)
    with open(index_dir(root) / f"{workspace_id}.log", "wb") as log_file:
        subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def _index_with_progress(root: Path, workspace_id: str, quiet: bool = False):
    """Index under the job lock, showing n/N files; a build another process has under way is followed first."""
    from app.ask import indexjobs, indexstate

    on_terminal = not quiet and sys.stdout.isatty()
    bar = click.progressbar(length=0, label=f"Indexing {workspace_id}", show_pos=True, show_eta=False)
    tenths_shown = [-1]

    def progress(done: int, total: int) -> None:
        if on_terminal:
            bar.length = total
            bar.update(done - bar.pos)
            return
        # Off a terminal (logs, CI) a bar cannot redraw itself: one line per tenth of the work instead.
        tenth = done * 10 // total if total else 10
        if not quiet and tenth > tenths_shown[0]:
            tenths_shown[0] = tenth
            click.echo(f"Indexing {workspace_id}: {done}/{total} files")

    with contextlib.ExitStack() as stack:
        if on_terminal:
            stack.enter_context(bar)
        if indexstate.job_running(root, workspace_id):
            if not quiet:
                click.echo(f"Another process is indexing {workspace_id}; following it.", err=True)
            while indexstate.job_running(root, workspace_id):
                state = indexstate.read_state(root, workspace_id)
                if state["state"] == indexstate.INDEXING and state["total"]:
                    progress(state["done"], state["total"])
                time.sleep(0.2)
        return indexjobs.run_index(root, workspace_id, progress)


def _echo_stats(stats) -> None:
    read, removed = stats.files_read, stats.files_removed
    click.echo(f"{stats.files_seen} files, {read} read, {removed} removed, {stats.chunks} chunks.")


@workspace_cli.command("index")
@click.argument("workspace_id")
@click.option("--quiet", is_flag=True, help="No output unless it fails (the state file still records progress).")
@_guard
def workspace_index(workspace_id: str, quiet: bool) -> None:
    """Build or refresh the search index of a workspace, with a progress bar."""
    stats = _index_with_progress(services().config.workspaces_dir, workspace_id, quiet)
    if not quiet:
        _echo_stats(stats)


@workspace_cli.command("list")
@_guard
def workspace_list() -> None:
    """List workspaces."""
    from app.ask.workspaces import list_workspaces

    for ws in list_workspaces(services().config.workspaces_dir):
        state = ws["state"]
        if "progress" in ws:
            state += f" {ws['progress']['done']}/{ws['progress']['total']}"
        elif "reason" in ws:
            state += f": {ws['reason']}"
        click.echo(
            f"{ws['id']}\t{ws['file_count']} files\t{ws['size_bytes']} bytes\t{ws['last_indexed'] or 'never'}\t{state}"
        )


@workspace_cli.command("delete")
@click.argument("workspace_id")
@click.confirmation_option(prompt="Delete the workspace folder and its index?")
@_guard
def workspace_delete(workspace_id: str) -> None:
    """Delete a workspace and its index."""
    accounts.delete_workspace(OPERATOR, workspace_id)
    click.echo(f"Deleted workspace {workspace_id}.")


@store_cli.command("check")
def store_check() -> None:
    """Say whether the key and user stores can be read, and what is wrong if not."""
    problems = accounts.check_stores(OPERATOR)
    for name, problem in problems.items():
        click.echo(f"{name}: {'ok' if problem is None else 'BROKEN: ' + problem}")
    if any(problems.values()):
        click.echo("Restore the last good version with: flask --app wsgi store restore", err=True)
        sys.exit(1)


@store_cli.command("restore")
@click.option("--all", "restore_all", is_flag=True, help="Restore every store, not only broken ones.")
def store_restore(restore_all: bool) -> None:
    """Put back the last good version (*.bak) of each broken store."""
    try:
        restored = accounts.restore_stores(OPERATOR, only_broken=not restore_all)
    except (StoreAdminError, StoreWriteError, AuditUnavailable) as exc:
        _fail(str(exc))
    click.echo(f"Restored: {', '.join(restored)}." if restored else "Nothing to restore: every store is fine.")


@store_cli.command("migrate")
@click.option("--to", "target", required=True, help="'files' (the JSON files in WORKSPACES_DIR) or a redis:// URL.")
@click.option("--overwrite", is_flag=True, help="Replace what the target already holds.")
def store_migrate(target: str, overwrite: bool) -> None:
    """Copy every key and user from the configured store (STORE_URL) to another, then verify."""
    try:
        counts = accounts.migrate_stores(OPERATOR, target, overwrite=overwrite)
    except (StoreAdminError, StoreWriteError, AuditUnavailable) as exc:
        _fail(str(exc))
    click.echo(f"Copied {counts['keys']} key(s) and {counts['users']} user(s); counts and digests verified.")
    click.echo("Point STORE_URL at the new store (unset it for the files) and restart every host.")


@audit_cli.command("list")
@click.option("--action", help="One action (key.create) or a family (key.*).")
@click.option("--actor", help="Only events of this user.")
@click.option("--target", help="Only events about this key id, username or workspace.")
@click.option("--since", help="From this date or time on (2026-12-01, UTC).")
@click.option("--until", help="Before this date or time (a bare date includes that day).")
@click.option("--limit", type=int, default=100, show_default=True, help=f"At most this many (up to {audit.LIMIT_MAX}).")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
def audit_list(action, actor, target, since, until, limit, cursor, as_json) -> None:
    """Print audit events, newest first."""
    try:
        query = audit.make_query(
            action=action, actor=actor, target=target, since=since, until=until, limit=limit, cursor=cursor
        )
        page = accounts.audit_page(OPERATOR, query)
    except (AuditQueryError, AuditUnavailable) as exc:
        _fail(f"{exc} ({exc.reason})" if isinstance(exc, AuditUnavailable) else str(exc))
    for event in page.events:
        if as_json:
            click.echo(json.dumps(event, ensure_ascii=False))
            continue
        who = event["actor"] or {"cli": "(cli)", "admin_key": "(admin key)"}.get(event["auth_method"], "-")
        target_ = event["target"]
        shown_target = f"{target_['type']}:{target_['name'] or target_['id'] or '-'}"
        detail = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in event["detail"].items())
        fields = (event["time"], event["action"], who, event["ip"] or "-", shown_target, detail)
        click.echo("\t".join(shown(str(field)) for field in fields).rstrip())
    if page.next_cursor:
        click.echo(f"More: --cursor {page.next_cursor}", err=True)


def register_cli(app: Flask) -> None:
    app.cli.add_command(user_cli)
    app.cli.add_command(key_cli)
    app.cli.add_command(workspace_cli)
    app.cli.add_command(store_cli)
    app.cli.add_command(audit_cli)
