"""Sign in, sign out, and the one-time setup of the first admin."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_url, login_user, logout_user

from app import accounts, firstrun
from app.documents.sharedfile import StoreUnavailable
from app.extensions import limiter, login_manager
from app.ratelimits import address_bucket
from app.services import services
from app.users.store import User, UserError
from app.web.forms import LoginForm, SetupForm

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Sign in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "basic"


SESSION_ID = "sid"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """Sessions carry ``id:version`` and a session id the user record must still list as open and recently used.

    Bumping the version (password change, disable) ends all of a user's sessions; signing out ends one, on the
    server: the cookie it leaves behind opens nothing. A cookie from before session ids (an upgrade) signs in again.
    """
    user_id, _, version = session_id.partition(":")
    users = services().users
    try:
        user = users.get_by_id(user_id)
        if user is None or user.disabled or str(user.session_version) != version:
            return None
        sid = session.get(SESSION_ID)
        if not isinstance(sid, str) or not users.session_alive(user.id, sid, services().config.session_lifetime):
            return None
    except StoreUnavailable as exc:
        # Not signed out: the store cannot say (Redis away past STORE_STALE_SECONDS). Pages answer 503 (see
        # sign_in_first) and the API "Key store unavailable"; the session counts again once the store is back.
        g.session_store_error = exc
        return None
    return user


@login_manager.unauthorized_handler
def sign_in_first():
    """flask-login's own answer (flash, then the sign-in page with ``next``), unless the store could not say who
    the visitor is: then the readable 503 page rather than a sign-in form that cannot work either."""
    if "session_store_error" in g:
        raise g.session_store_error
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def safe_next(target: str | None) -> str | None:
    """``next`` only ever leads to a path on this site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return None
    return target


def start_session(signed_in: accounts.SignedIn) -> None:
    # A new session at sign-in: nothing from a cookie set before it (a fixed session) survives.
    session.clear()
    session[SESSION_ID] = signed_in.session_id
    login_user(signed_in.user)
    session.permanent = False


def _failed_login(_response) -> bool:
    return bool(g.get("login_failed"))


def _login_limit() -> str:
    return services().config.login_rate_limit


def _login_address() -> str:
    return "addr:" + address_bucket(request.remote_addr)


def _login_address_and_username() -> str:
    # Never the username alone: anyone could then keep its owner out by failing on purpose from anywhere.
    username = (request.form.get("username") or "").strip().lower()[:64]
    return f"addr:{address_bucket(request.remote_addr)}:user:{username}"


@bp.route("/")
def index():
    return redirect(url_for("dashboard.home" if current_user.is_authenticated else "auth.login"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_address, deduct_when=_failed_login)
@limiter.limit(_login_limit, methods=["POST"], key_func=_login_address_and_username, deduct_when=_failed_login)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    if services().users.count() == 0:
        return render_template("setup_needed.html", token_file=firstrun.token_path(services().config.workspaces_dir))
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        signed_in = accounts.sign_in(form.username.data, form.password.data, request.remote_addr)
        if signed_in:
            start_session(signed_in)
            return redirect(safe_next(form.next.data) or url_for("dashboard.home"))
        g.login_failed = True
        flash("Wrong username or password, or the account is disabled.", "error")
    elif request.method == "POST":
        g.login_failed = True
    return render_template("login.html", form=form)


@bp.post("/logout")
def logout():
    sid = session.get(SESSION_ID)
    if current_user.is_authenticated and isinstance(sid, str):
        accounts.sign_out(current_user, sid, request.remote_addr)
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def first_admin():
    workspaces_dir = services().config.workspaces_dir
    if services().users.count() > 0:
        abort(404)  # setup is over: the page no longer exists
    token = request.values.get("token") or ""
    if not firstrun.token_matches(workspaces_dir, token):
        return render_template("setup_needed.html", token_file=firstrun.token_path(workspaces_dir), bad_token=True), 403
    form = SetupForm(token=token)
    if form.validate_on_submit():
        try:
            signed_in = accounts.create_first_admin(form.username.data, form.password.data, request.remote_addr)
        except UserError as exc:
            flash(str(exc), "error")
        else:
            start_session(signed_in)
            flash(f"Welcome, {signed_in.user.username}. You are the first admin of this Askgate.", "success")
            return redirect(url_for("dashboard.home"))
    return render_template("setup.html", form=form)
