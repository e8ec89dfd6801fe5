"""Who an API request is: session, dashboard key, admin key or client key — first match wins."""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

from flask import Request, g, request
from flask_login import current_user

from app.auth.keyrules import KeyRules, rules_for
from app.documents.sharedfile import StoreUnavailable
from app.keys.format import is_well_formed, looks_like_key
from app.keys.limits import LIMIT_FIELDS
from app.keys.store import key_status, parse_iso
from app.services import Services, services

log = logging.getLogger("askgate.auth")

WHOAMI_KEY_FIELDS = ("id", "name", "prefix", "created_at", "expires_at", *LIMIT_FIELDS)
MAX_KEY_HEADER = 512
HTTP_WHITESPACE = " \t"


@dataclass(frozen=True)
class Principal:
    """The resolved caller. Views read it from ``g.principal``."""

    auth_method: str  # "session" | "dashboard_key" | "admin_key" | "client_key"
    user: str | None
    role: str  # "admin" | "member" | "client"
    key: dict | None  # the key record for dashboard keys (never the raw key)
    bucket: str  # the rate-limit bucket: one per key, per env key, per session user
    user_bucket: str | None = None  # USER_RATE_LIMIT's bucket: all of one user's keys and sessions together
    rules: KeyRules | None = None  # a dashboard key's own limits, parsed once with the principal

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def whoami(self) -> dict:
        key = None
        if self.key:  # fields shown as stored: none of them is a secret
            key = {name: self.key[name] for name in WHOAMI_KEY_FIELDS}
        return {"auth_method": self.auth_method, "user": self.user, "role": self.role, "key": key}


@dataclass(frozen=True)
class AuthFailure:
    status: int
    message: str
    outcome: str  # for the log line
    headers: dict | None = None
    key_id: str | None = None  # a dashboard key refused for its own state (revoked, expired, owner disabled)


def presented_key(req: Request) -> str | None:
    """The key from ``x-api-key`` or ``Authorization: Bearer``; ``""`` for a present but unusable one.

    Some clients send a dashboard key in ``Authorization`` with no scheme at all: that is taken only for a
    well-formed ``agk_`` key (its checksum matches), so nothing else without ``Bearer`` becomes a key.

    Only HTTP's own whitespace (space, tab) is trimmed: Python's ``strip()`` would also eat non-ASCII
    spaces, letting a key wrapped in them match.
    """
    environ = req.environ  # what req.headers.get reads, without its name mangling on every request
    raw = environ.get("HTTP_X_API_KEY")
    if raw is not None and raw.strip(HTTP_WHITESPACE):
        return raw.strip(HTTP_WHITESPACE)[: MAX_KEY_HEADER + 1]
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth is not None and auth.strip(HTTP_WHITESPACE):
        scheme, _, token = auth.strip(HTTP_WHITESPACE).partition(" ")
        token = token.strip(" ")
        if scheme.lower() == "bearer" and token:
            return token[: MAX_KEY_HEADER + 1]
        if not token and is_well_formed(scheme):
            return scheme
        return ""
    return None


def _constant_time_equal(candidate: bytes, secret: bytes) -> bool:
    return hmac.compare_digest(candidate, secret)


def _failure(ip: str, status: str, key_id: str | None = None) -> AuthFailure:
    """A wrong, revoked or expired key: count it against the IP; over the limit it is a 429."""
    throttled = services().limits.record_failure(ip)
    if throttled is not None:
        return AuthFailure(429, "Rate limit exceeded", "throttled", headers=throttled, key_id=key_id)
    return AuthFailure(401, "Invalid API key", status, key_id=key_id)


def resolve_principal(req: Request) -> Principal | AuthFailure:
    """Decide who ``req`` is, in the documented order. Never raises."""
    svc = services()
    # flask-login is asked only when a session cookie came along: a script's key request pays nothing.
    if svc.session_cookie in req.cookies and current_user.is_authenticated:
        user = current_user._get_current_object()
        return Principal("session", user.username, user.role, None, f"user:{user.id}", f"user:{user.id}")
    raw = presented_key(req)
    if raw is None:
        if "session_store_error" in g:  # a session the store cannot check right now
            return AuthFailure(503, "Key store unavailable", "store_unavailable")
        return AuthFailure(401, "API key required", "missing")

    ip = req.remote_addr or ""
    if not svc.allowlist.allowed(ip):
        return AuthFailure(403, "Access denied from this IP address", "ip_denied")

    throttled = svc.limits.throttled(ip)
    if throttled is not None:  # refused before the key is looked at, right or wrong
        return AuthFailure(429, "Rate limit exceeded", "throttled", headers=throttled)

    store_down = False
    generation = svc.keys.generation  # before the lookup: a reload racing it leaves the cache entry stale, not wrong
    # One change check for both stores (a revocation or a disabled owner counts at once), only for what could be
    # a dashboard key: ADMIN_API_KEY and VALID_API_KEYS never touch the stores.
    checked = svc.keys.file.change_check() if looks_like_key(raw) else None
    try:
        record = svc.keys.lookup(raw, checked)
    except StoreUnavailable:
        record, store_down = None, True
    if record is not None:
        return _dashboard_principal(svc, record, ip, generation, checked)

    candidate = raw.encode("utf-8", "surrogateescape")
    match = None
    for secret, method, bucket in svc.env_keys:  # compare against every key: no early exit to time
        if _constant_time_equal(candidate, secret) and match is None:
            match = (method, bucket)
    if match:
        method, bucket = match
        role = "admin" if method == "admin_key" else "client"
        return Principal(method, None, role, None, bucket)

    if store_down:
        return AuthFailure(503, "Key store unavailable", "store_unavailable")
    return _failure(ip, "invalid")


_NEVER = float("inf")


def _dashboard_principal(
    svc: Services, record: dict, ip: str, keys_generation: int, checked: int | None
) -> Principal | AuthFailure:
    """The principal of a key ``record`` looked up at key-store generation ``keys_generation``; ``checked``: the
    request's change check of the store folder (``SharedJSONFile.change_check``), None to check here."""
    users_generation = svc.users.generation  # as for the keys: read before the store is
    try:
        svc.users.file.read(checked)  # reloads if users.json changed
    except StoreUnavailable:
        return AuthFailure(503, "Key store unavailable", "store_unavailable")
    # services().principals: digest -> (key-store generation, user-store generation, expiry epoch, principal).
    # An entry is reused only while neither store has reloaded, so a revocation or a disabled owner counts at once;
    # it is tagged with the generations read before the records were, so one built from a record that a reload
    # (in another thread) has just replaced is never taken for current.
    principals = svc.principals
    cached = principals.get(record["digest"])
    if cached and cached[:2] == (svc.keys.generation, svc.users.generation) and time.time() < cached[2]:
        principal = cached[3]
    else:
        status = key_status(record)
        if status != "active":
            return _failure(ip, status, record["id"])
        owner = svc.users.get(record["owner"])
        if owner is None or owner.disabled:
            return _failure(ip, "owner_disabled", record["id"])
        principal = Principal(
            "dashboard_key",
            owner.username,
            owner.role,
            record,
            f"key:{record['id']}",
            f"user:{owner.id}",
            rules_for(record),
        )
        expires = parse_iso(record["expires_at"])
        if len(principals) > 100_000:
            principals.clear()
        principals[record["digest"]] = (
            keys_generation,
            users_generation,
            expires.timestamp() if expires else _NEVER,
            principal,
        )
    return principal  # its use is counted, with its last use, after the response (app.usage)


def current_principal() -> Principal | None:
    """The request's principal, resolved once and cached on ``g``; None if authentication failed."""
    if "auth_result" not in g:
        g.auth_result = resolve_principal(request)
        if isinstance(g.auth_result, Principal):
            g.principal = g.auth_result
    result = g.auth_result
    return result if isinstance(result, Principal) else None
