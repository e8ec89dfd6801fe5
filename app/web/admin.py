"""User administration: add users, disable and enable them, reset passwords (admins only)."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app import accounts, audit, usage
from app.accounts import AccountRefused
from app.services import services
from app.users.store import UserError
from app.web import charts
from app.web.forms import AddUserForm, ResetPasswordForm, UserActionForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


def admin_required(view):
    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _actor() -> accounts.Actor:
    return accounts.Actor.signed_in(current_user, request.remote_addr)


def _render(add_form: AddUserForm | None = None, status: int = 200):
    return (
        render_template(
            "admin_users.html",
            users=services().users.list(),
            add_form=add_form or AddUserForm(),
            action_form=UserActionForm(),
            reset_form=ResetPasswordForm(),
        ),
        status,
    )


@bp.get("/users")
@admin_required
def users():
    return _render()


@bp.post("/users")
@admin_required
def add_user():
    form = AddUserForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(_actor(), form.username.data, form.password.data, bool(form.admin.data))
        except UserError as exc:
            form.username.errors.append(str(exc))
        else:
            flash(f"User {user.username} added. Give them their initial password privately.", "success")
            return redirect(url_for("admin.users"), 303)
    return _render(form, 400)


@bp.post("/users/disable")
@admin_required
def disable_user():
    form = UserActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        user, revoked = accounts.disable_user(_actor(), form.username.data)
    except (UserError, AccountRefused) as exc:
        flash(str(exc), "error")
    else:
        flash(f"{user.username} is disabled: signed out everywhere, {revoked} key(s) revoked.", "success")
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/enable")
@admin_required
def enable_user():
    form = UserActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        user = accounts.enable_user(_actor(), form.username.data)
    except UserError as exc:
        flash(str(exc), "error")
    else:
        flash(f"{user.username} can sign in again. Their old keys stay revoked.", "success")
    return redirect(url_for("admin.users"), 303)


@bp.post("/users/password")
@admin_required
def reset_password():
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            user = accounts.change_password(_actor(), form.username.data, form.password.data)
        except UserError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Password of {user.username} reset; their sessions are signed out.", "success")
    else:
        for errors in form.errors.values():
            for error in errors:
                flash(f"Password not reset: {error}", "error")
    return redirect(url_for("admin.users"), 303)


@bp.get("/audit")
@admin_required
def audit_log():
    """The audit log, newest first, with the API's filters and paging (a bad filter is a message, not an error)."""
    args = {name: (request.args.get(name) or "").strip() for name in audit.QUERY_FIELDS}
    problem, page = None, audit.Page([], None)
    try:
        query = audit.make_query(**{name: value or None for name, value in args.items()})
    except audit.AuditQueryError as exc:
        problem = str(exc)
    else:
        page = accounts.audit_page(_actor(), query)
    status = 400 if problem else 200
    filters = {name: value for name, value in args.items() if name not in ("cursor",) and value}
    return (
        render_template(
            "admin_audit.html",
            events=page.events,
            next_cursor=page.next_cursor,
            args=args,
            filters=filters,
            actions=audit.ACTIONS,
            problem=problem,
            limit_max=audit.LIMIT_MAX,
        ),
        status,
    )


BUSIEST_SHOWN = 20
BUSIEST_DAYS = 7


@bp.get("/usage")
@admin_required
def usage_overview():
    """The instance's requests per day (90 days) and its busiest keys over the last 7 days."""
    try:
        starts, days = services().usage.daily()
    except usage.UsageUnavailable:
        abort(503)
    series = []
    for start in starts:
        row = [0, 0, 0, 0]
        for counts in days.get(start, {}).values():
            row = [a + b for a, b in zip(row, counts, strict=True)]
        series.append({"start": usage.iso(start), **dict(zip(usage.OUTCOMES, row, strict=True))})
    by_bucket: dict[str, list[int]] = {}
    for start in starts[-BUSIEST_DAYS:]:
        for bucket, counts in days.get(start, {}).items():
            mine = by_bucket.setdefault(bucket, [0, 0, 0, 0])
            by_bucket[bucket] = [a + b for a, b in zip(mine, counts, strict=True)]
    busiest = sorted(by_bucket.items(), key=lambda item: (-sum(item[1]), item[0]))[:BUSIEST_SHOWN]
    last = services().usage.last_used()
    rows = [
        {
            **_bucket_label(bucket),
            **dict(zip(usage.OUTCOMES, counts, strict=True)),
            "total": sum(counts),
            "last_used": last.get(bucket),
        }
        for bucket, counts in busiest
    ]
    return render_template(
        "admin_usage.html",
        usage=charts.figure(series, "Requests with keys on this instance", "the last 90 days, by day"),
        busiest=rows,
        busiest_days=BUSIEST_DAYS,
    )


def _bucket_label(bucket: str) -> dict:
    """What the busiest-keys table shows for a bucket: a dashboard key's name and owner, or which env key."""
    if bucket.startswith(usage.KEY_BUCKET_PREFIX):
        key_id = bucket[len(usage.KEY_BUCKET_PREFIX) :]
        record = services().keys.get(key_id)
        if record is None:
            return {"name": f"deleted key {key_id}", "owner": None, "key_id": None}
        return {"name": record["name"], "owner": record["owner"], "key_id": key_id}
    if bucket == "env:admin":
        return {"name": "ADMIN_API_KEY", "owner": None, "key_id": None}
    return {"name": f"a VALID_API_KEYS key ({bucket})", "owner": None, "key_id": None}
