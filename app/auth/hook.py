"""The request hook that guards ``/api``: principal, CSRF for session writes, per-client limits, the log line."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import Blueprint, Response, g, request

from app.api.errors import json_error
from app.auth.principal import AuthFailure, current_principal
from app.extensions import csrf, limiter
from app.services import services

PUBLIC_ENDPOINTS = frozenset({"api.health", "api.openapi"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

access_log = logging.getLogger("askgate.access")


def _exempt_from_client_limit() -> bool:
    return request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS or current_principal() is None


def _client_bucket() -> str:
    principal = current_principal()
    return principal.bucket if principal else "anonymous"


def _hourly_limit() -> str:
    return f"{services().config.api_rate_limit}/hour"


def guard_api() -> Response | None:
    """Refuse the request unless a principal was resolved (the limiter has already counted it)."""
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    principal = current_principal()
    if principal is None:
        failure: AuthFailure = g.auth_result
        return json_error(failure.status, failure.message, failure.headers)
    if principal.auth_method == "session" and request.method not in SAFE_METHODS:
        csrf.protect()  # a session rides on a cookie a browser sends by itself; keys need no token
    return None


def log_attempt(response: Response) -> Response:
    """One JSON line per authentication attempt on ``/api``; never the key itself."""
    if request.endpoint in PUBLIC_ENDPOINTS or "auth_result" not in g:
        return response
    result = g.auth_result
    principal = result if not isinstance(result, AuthFailure) else None
    key = principal.key if principal and principal.key else None
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": "api_auth",
        "ip": request.remote_addr,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "outcome": "ok" if principal else result.outcome,
        "auth_method": principal.auth_method if principal else None,
        "user": principal.user if principal else None,
        "key_id": key["id"] if key else None,
        "key_prefix": key["prefix"] if key else None,
    }
    if principal and response.status_code == 429:
        entry["outcome"] = "rate_limited"
    access_log.info(json.dumps(entry, separators=(",", ":")))
    return response


def configure_access_log() -> None:
    if access_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def protect_api(api: Blueprint) -> None:
    """Guard the API blueprint (once, at import): resolve, then limit per client, then enforce."""
    csrf.exempt(api)  # CSRF for session callers is enforced in guard_api, after we know who they are
    limiter.shared_limit(
        _hourly_limit,
        scope="api",
        key_func=_client_bucket,
        exempt_when=_exempt_from_client_limit,
    )(api)
    api.before_request(guard_api)
    api.after_request(log_attempt)
