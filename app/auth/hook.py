"""The request hook that guards ``/api``: principal, per-client limits, CSRF for session writes, the log line."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import Blueprint, Response, g, request

from app import usage
from app.auth import keyrules
from app.auth.principal import AuthFailure, Principal, current_principal
from app.errors import json_error
from app.extensions import csrf, limiter
from app.services import services

PUBLIC_ENDPOINTS = frozenset({"api.health", "api.openapi"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

access_log = logging.getLogger("askgate.access")


def guard_api() -> Response | None:
    """Resolve the caller, enforce CSRF for sessions and a dashboard key's own rules (app/auth/keyrules.py),
    then count the request against its hourly limits.

    CSRF comes first: a forged request another page makes a browser send must not spend its user's hour.
    """
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC_ENDPOINTS:
        return None
    principal = current_principal()
    if principal is None:
        failure: AuthFailure = g.auth_result
        return json_error(failure.status, failure.message, failure.headers)
    if principal.auth_method == "session" and request.method not in SAFE_METHODS:
        csrf.protect()  # a session rides on a cookie a browser sends by itself; keys need no token
    rate_limit = None
    if principal.rules is not None:  # a dashboard key: its own addresses, scopes, workspaces and hourly limit
        refused = keyrules.refusal(principal.rules, request, endpoint)
        if refused is not None:
            g.key_refusal = refused[0]  # the log line's outcome
            return json_error(403, refused[1])
        rate_limit = principal.rules.rate_limit
    verdict = services().limits.hit(principal.bucket, principal.user_bucket, rate_limit)
    g.limit_headers = verdict.headers
    if not verdict.allowed:
        return json_error(429, "Rate limit exceeded")
    return None


def finish_api(response: Response) -> Response:
    """Add the limit headers, and write one JSON line per authentication attempt (never the key)."""
    headers = g.get("limit_headers")
    if headers:
        response.headers.extend(headers)  # the guard never sets these itself: no duplicates to replace
    result = g.get("auth_result")
    if result is None or request.endpoint in PUBLIC_ENDPOINTS:
        return response
    principal = None if isinstance(result, AuthFailure) else result
    key = principal.key if principal else None
    status = response.status_code
    ip = request.remote_addr
    if principal is None:
        outcome = result.outcome
    elif status == 429:
        outcome = "rate_limited"
    elif status == 403:
        outcome = g.get("key_refusal", "ok")
    else:
        outcome = "ok"
    _count_use(principal, result, status, outcome, ip)
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": "api_auth",
        "ip": ip,
        "method": request.method,
        "path": request.path,
        "status": status,
        "outcome": outcome,
        "auth_method": principal.auth_method if principal else None,
        "user": principal.user if principal else None,
        "key_id": key["id"] if key else None,
        "key_prefix": key["prefix"] if key else None,
    }
    if access_log.isEnabledFor(logging.INFO):
        write_access_line(_LINE_ENCODER.encode(entry))
    return response


# What json.dumps(entry, separators=(",", ":")) builds on every call, built once: the same line.
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _count_use(
    principal: Principal | None, result: AuthFailure | Principal, status: int, outcome: str, ip: str | None
) -> None:
    """Add the request to its key's usage (app.usage): sessions and unknown keys are no key's use.

    Takes what finish_api already holds: its only lookup is the recorder (``bench/instructions.py``)."""
    if principal is not None:
        if principal.auth_method == "session":
            return
        # A 403 the guard gave for the key's own rules (its log outcome is the reason) is the key's denial.
        bucket, used, refused = principal.bucket, True, status == 403 and outcome != "ok"
    elif result.key_id is not None:
        bucket, used, refused = usage.key_bucket(result.key_id), False, True
    else:
        return
    column = usage.outcome_of(status, refused)
    if column is not None:
        services().usage.count(bucket, column, ip, used)


def write_access_line(line: str) -> None:
    # makeRecord + handle skips logging's caller lookup: ~1.2 µs (1.25x) less than access_log.info(line),
    # bench/inprocess.py's "micro: access line" rows (`.venv/bin/python bench/inprocess.py --micro`).
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, line, None, None))


def configure_access_log() -> None:
    if access_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def _is_api_request() -> bool:
    return request.blueprint == "api"


def protect_api(api: Blueprint) -> None:
    """Guard the API blueprint (once, at import)."""
    csrf.exempt(api)  # CSRF for session callers is enforced in guard_api, after we know who they are
    # The API counts its own limits in guard_api (app.ratelimits); flask-limiter keeps /login.
    limiter.request_filter(_is_api_request)
    api.before_request(guard_api)
    api.after_request(finish_api)
