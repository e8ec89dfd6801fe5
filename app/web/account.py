"""Account Security: generate (with limits), rotate and revoke API keys, change the password."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user
from wtforms import SelectChoice

from app import accounts, audit, usage
from app.accounts import AccountRefused
from app.ask.workspaces import workspace_states
from app.inputs import KEY_RATE_LIMIT_ADMIN_MAX
from app.keys.store import KeyRequestError, key_status, public_view
from app.ratelimits import LimitReached
from app.services import services
from app.users.store import UserError
from app.web import charts
from app.web.forms import ChangePasswordForm, NewKeyForm, RevokeKeyForm, RotateKeyForm

bp = Blueprint("account", __name__, url_prefix="/account")

# Remembers which generate-form was already used, so a resubmitted page cannot mint a second key.
FORM_NONCE = "key_form_nonce"
# The same for the rotate forms: a resubmitted rotation would end the grace of the secret it just replaced.
ROTATE_NONCE = "rotate_form_nonce"
KEYS_PER_PAGE = 25


@dataclass(frozen=True)
class KeyPage:
    """One page of a key list, with links to its neighbours (``None`` at either end)."""

    keys: list[dict]
    number: int
    pages: int
    total: int
    active: int
    prev_url: str | None
    next_url: str | None

    @property
    def first_index(self) -> int:
        return (self.number - 1) * KEYS_PER_PAGE + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * KEYS_PER_PAGE + len(self.keys)


def _page_of(records: list[dict], param: str) -> KeyPage:
    pages = max(1, -(-len(records) // KEYS_PER_PAGE))
    raw = request.args.get(param, "1")
    number = int(raw) if raw.isdigit() else 1
    number = min(max(number, 1), pages)  # past the end: the last page, not an empty one
    start = (number - 1) * KEYS_PER_PAGE
    views = usage.key_views(services().usage, records[start : start + KEYS_PER_PAGE])
    for view in views:  # a 7-day sparkline in each key's row; none while the usage store cannot be read
        try:
            hours = services().usage.series(usage.key_bucket(view["id"]), "hour")
        except usage.UsageUnavailable:
            view["sparkline"] = None
        else:
            view["sparkline"] = charts.sparkline(hours, f"Key {view['name']}")
    active = sum(1 for r in records if key_status(r) == "active")

    def link(n: int) -> str | None:
        return url_for("account.security", **{**request.args.to_dict(), param: n}) if 1 <= n <= pages else None

    return KeyPage(views, number, pages, len(records), active, link(number - 1), link(number + 1))


def _workspace_ids() -> list[str]:
    return [w["id"] for w in workspace_states(services().config.workspaces_dir)]


def _render(new_key: str | None = None, new_record: dict | None = None, rotated: bool = False, **forms):
    keys = services().keys
    own = _page_of(keys.list(current_user.username), "page")
    others = (
        _page_of([r for r in keys.list() if r["owner"] != current_user.username], "others_page")
        if current_user.is_admin
        else None
    )
    nonce = secrets.token_urlsafe(16)
    # After a key is made, an empty form: the posted name must not linger in the box.
    key_form = forms.get("key_form") or (NewKeyForm(formdata=None) if new_key else NewKeyForm())
    key_form.workspaces.choices = [SelectChoice(w, w) for w in _workspace_ids()]
    return render_template(
        "account_security.html",
        key_form=key_form,
        password_form=forms.get("password_form") or ChangePasswordForm(),
        revoke_form=RevokeKeyForm(),
        rotate_form=RotateKeyForm(formdata=None),
        instance_rate_limit=services().config.api_rate_limit,
        rate_limit_max=KEY_RATE_LIMIT_ADMIN_MAX if current_user.is_admin else services().config.api_rate_limit,
        own_keys=own,
        other_keys=others,
        nonce=nonce,
        new_key=new_key,
        new_record=new_record,
        rotated=rotated,
    )


class _FormProblem(ValueError):
    """What the page itself refuses before asking accounts, with the field to show it on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _limits_from(form: NewKeyForm) -> dict | None:
    """The form's limits in the API's shape. Values go to accounts as typed, so it judges them with the messages
    the API gives; empty fields are the defaults (null). None (every default) for a post without the limits
    fieldsets, as scripts that drive the page sent before keys had limits: there, no box ticked is no choice."""
    if request.form.get("with_limits") != "1":
        return None
    if form.workspace_access.data == "chosen":
        workspaces: list[str] | None = list(form.workspaces.data or [])
    elif form.workspaces.data:
        raise _FormProblem(
            "workspace_access", "You ticked workspaces but chose “All workspaces”: choose “Only these” or untick them."
        )
    else:
        workspaces = None
    rate = form.rate_limit.data or ""
    addresses = [a for a in re.split(r"[\s,]+", form.allowed_ips.data or "") if a]
    return {
        "scopes": list(form.scopes.data or []),
        "workspaces": workspaces,
        "rate_limit": None if not rate else int(rate) if re.fullmatch(r"[+-]?[0-9]+", rate) else rate,
        "allowed_ips": addresses or None,
    }


def _field_for(message: str) -> str:
    """The form field a refusal from accounts is about (its messages name the API's field)."""
    lowered = message.lower()
    if "scope" in lowered or "workspaces:write" in lowered:
        return "scopes"
    for name in ("rate_limit", "allowed_ips"):
        if name in lowered:
            return name
    if "workspace" in lowered:
        return "workspace_access"
    return "expiry" if "expires" in lowered else "name"


@bp.route("/security", methods=["GET", "POST"])
@login_required
def security():
    form = NewKeyForm()
    if not form.validate_on_submit():
        return _render(key_form=form)
    nonce = request.form.get("nonce", "")
    if nonce and session.get(FORM_NONCE) == nonce:
        flash("That key was already created; its value was shown once and cannot be shown again.", "info")
        return redirect(url_for("account.security"), 303)
    expiry = None if form.expiry.data == "never" else int(form.expiry.data)
    try:
        limits = _limits_from(form)
        new = accounts.create_key_for(
            accounts.Actor.signed_in(current_user, request.remote_addr), None, form.name.data, expiry, limits=limits
        )
    except _FormProblem as exc:
        form[exc.field].errors.append(str(exc))
        return _render(key_form=form)
    except (KeyRequestError, AccountRefused) as exc:
        form[_field_for(str(exc))].errors.append(str(exc))
        return _render(key_form=form)
    except LimitReached as exc:
        form.name.errors.append(str(exc))
        response = make_response(_render(key_form=form), 429)
        response.headers.update(exc.headers)
        return response
    session[FORM_NONCE] = nonce
    return _render(new_key=new.key, new_record=public_view(new.record))


@bp.post("/security/revoke")
@login_required
def revoke():
    form = RevokeKeyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        record = accounts.revoke_key(accounts.Actor.signed_in(current_user, request.remote_addr), form.key_id.data)
    except AccountRefused:
        flash("That key does not exist.", "error")
    else:
        flash(f"Key “{record['name']}” ({record['prefix']}…) is revoked. Requests with it now get 401.", "success")
    return redirect(url_for("account.security"), 303)


@bp.route("/security/rotate", methods=["GET", "POST"])
@login_required
def rotate():
    """A new secret for a key (same id, name and limits), shown once; the old one works for the chosen grace."""
    if request.method == "GET":  # the address of a page that showed a new secret, reloaded: the page itself
        return redirect(url_for("account.security"), 303)
    form = RotateKeyForm()
    if not form.validate_on_submit():
        abort(400)
    nonce = request.form.get("nonce", "")
    if nonce and session.get(ROTATE_NONCE) == nonce:
        flash("That key was already rotated; its new secret was shown once and cannot be shown again.", "info")
        return redirect(url_for("account.security"), 303)
    try:
        new = accounts.rotate_key(
            accounts.Actor.signed_in(current_user, request.remote_addr), form.key_id.data, int(form.grace_seconds.data)
        )
    except AccountRefused as exc:
        flash("That key does not exist." if exc.status == 404 else str(exc), "error")
        return redirect(url_for("account.security"), 303)
    except (KeyRequestError, LimitReached) as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.security"), 303)
    session[ROTATE_NONCE] = nonce
    return _render(new_key=new.key, new_record=public_view(new.record), rotated=True)


@bp.post("/password")
@login_required
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            user = accounts.change_password(
                accounts.Actor.signed_in(current_user, request.remote_addr),
                current_user.username,
                form.new_password.data,
                current_password=form.current_password.data,
            )
        except AccountRefused as exc:
            form.current_password.errors.append(str(exc))
        except UserError as exc:
            form.new_password.errors.append(str(exc))
        else:
            # The new session version ends every other session; this one continues.
            login_user(user)
            flash("Password changed. Your other sessions are signed out.", "success")
            return redirect(url_for("account.security"), 303)
    return _render(password_form=form), 400


KEY_AUDIT_EVENTS = 50


@bp.get("/keys/<key_id>")
@login_required
def key_page(key_id: str):
    """One key: its requests by hour (7 days) or by day (90 days), totals, last use, and its audit events."""
    actor = accounts.Actor.signed_in(current_user, request.remote_addr)
    try:
        record = accounts.find_key(actor, key_id)  # the owner or an admin; anyone else: not found
    except AccountRefused:
        abort(404)
    granularity, problem = request.args.get("granularity", "hour"), None
    if granularity not in usage.GRANULARITIES:
        granularity, problem = "hour", "Show usage by hour or by day: this page shows hours."
    recorder = services().usage
    try:
        series = recorder.series(usage.key_bucket(key_id), granularity)
    except usage.UsageUnavailable:
        abort(503)
    (view,) = usage.key_views(recorder, [record])
    totals = {name: sum(row[name] for row in series) for name in usage.OUTCOMES}
    span = "the last 7 days, by hour" if granularity == "hour" else "the last 90 days, by day"
    page = render_template(
        "account_key.html",
        problem=problem,
        key=view,
        granularity=granularity,
        usage=charts.figure(series, f"Requests with key {record['name']}", span),
        totals=totals,
        events=_key_events(key_id),
        flush_seconds=recorder.flush_seconds,
    )
    return page, 400 if problem else 200


def _key_events(key_id: str) -> list[dict] | None:
    """The key's audit events, newest first (None when the log cannot be read)."""
    try:
        page = services().audit.read(audit.make_query(target=key_id, limit=KEY_AUDIT_EVENTS))
    except audit.AuditUnavailable:
        return None
    # A target filter also matches a name: keep only this key's own events.
    return [event for event in page.events if (event.get("target") or {}).get("id") == key_id]
