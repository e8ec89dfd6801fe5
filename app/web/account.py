"""Account Security: generate and revoke API keys, change the password."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user

from app import accounts
from app.accounts import AccountRefused
from app.keys.store import KeyRequestError, key_status, public_view
from app.ratelimits import LimitReached
from app.services import services
from app.users.store import UserError
from app.web.forms import ChangePasswordForm, NewKeyForm, RevokeKeyForm

bp = Blueprint("account", __name__, url_prefix="/account")

# Remembers which generate-form was already used, so a resubmitted page cannot mint a second key.
FORM_NONCE = "key_form_nonce"
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
    views = [public_view(r) for r in records[start : start + KEYS_PER_PAGE]]
    active = sum(1 for r in records if key_status(r) == "active")

    def link(n: int) -> str | None:
        return url_for("account.security", **{**request.args.to_dict(), param: n}) if 1 <= n <= pages else None

    return KeyPage(views, number, pages, len(records), active, link(number - 1), link(number + 1))


def _render(new_key: str | None = None, new_record: dict | None = None, **forms):
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
    return render_template(
        "account_security.html",
        key_form=key_form,
        password_form=forms.get("password_form") or ChangePasswordForm(),
        revoke_form=RevokeKeyForm(),
        own_keys=own,
        other_keys=others,
        nonce=nonce,
        new_key=new_key,
        new_record=new_record,
    )


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
        new = accounts.create_key_for(
            accounts.Actor.signed_in(current_user, request.remote_addr), None, form.name.data, expiry
        )
    except (KeyRequestError, AccountRefused) as exc:
        form.name.errors.append(str(exc))
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
