"""Error pages and JSON errors (``json_error``: the one shape of every API error); never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.audit import AuditUnavailable
from app.documents.sharedfile import StoreUnavailable, StoreWriteError

log = logging.getLogger("askgate")

MESSAGES = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def json_error(status: int, message: str | None = None, headers: dict | None = None) -> Response:
    """The one shape of every API error: ``{"error": message}`` with the status."""
    response = jsonify(error=message or MESSAGES.get(status, "Error"))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class APIError(Exception):
    """Raised by API views for an expected refusal; rendered by ``json_error``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


PAGE_MESSAGES = {
    400: "The request could not be understood.",
    404: "There is no page at this address.",
    405: "This page does not accept that kind of request.",
    413: "What you sent is larger than this server accepts.",
    429: "Too many attempts. Wait a minute, then try again.",
    500: "Something went wrong on our side. The error has been logged.",
    503: "The data store is unavailable right now. An administrator has been told in the server log.",
}


def _wants_json() -> bool:
    # Case-insensitively: /API/… is still the API's address space, so its errors are JSON too.
    path = request.path.lower()
    return path == "/api" or path.startswith("/api/")


def _api_message(exc: HTTPException) -> str:
    if isinstance(exc, RateLimitExceeded):
        return "Rate limit exceeded"
    if isinstance(exc, CSRFError):
        return "CSRF token missing or invalid: send the page's csrf-token in the X-CSRFToken header"
    if exc.code == 404:
        return "Not found: the API's routes are listed at /api/openapi.json"
    if exc.code == 405:
        allowed = sorted(set(getattr(exc, "valid_methods", None) or ()) - {"HEAD", "OPTIONS"})
        return f"Method not allowed: use {' or '.join(allowed)}" if allowed else MESSAGES[405]
    return MESSAGES.get(exc.code or 500, exc.name)


def _page(status: int, message: str, title: str | None = None):
    return render_template("error.html", status=status, title=title, message=message), status


def handle_http_error(exc: HTTPException):
    code = exc.code or 500
    if _wants_json():
        response = json_error(code, _api_message(exc))
        if code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response
    if isinstance(exc, CSRFError):
        return _page(
            400,
            "This form has expired or was opened in another session. Go back, reload the page and try again.",
            "Form expired",
        )
    if code == 429 and request.endpoint == "auth.login":
        return _page(
            429,
            PAGE_MESSAGES[429] + " Sign-in pauses after repeated failures to keep passwords from being guessed.",
            "Too many sign-in attempts",
        )
    return _page(code, PAGE_MESSAGES.get(code, exc.description or exc.name), exc.name)


def handle_store_unavailable(exc: StoreUnavailable):
    log.error("store unavailable: %s", exc)
    if _wants_json():
        return json_error(503, "Key store unavailable")
    return _page(503, PAGE_MESSAGES[503], "Store unavailable")


def handle_store_write_error(exc: StoreWriteError):
    log.error("store write failed: %s", exc)
    status = 507 if exc.disk_full else 503
    if _wants_json():
        return json_error(status, str(exc))
    return _page(status, str(exc), "Could not save")


def handle_audit_unavailable(exc: AuditUnavailable):
    log.error("audit log unavailable, action refused: %s", exc.reason)
    if exc.disk_full:  # as for the stores: the one cause an operator can fix at once, said plainly
        message = "Audit log unavailable: the disk is full. Nothing was changed."
        return json_error(507, message) if _wants_json() else _page(507, message, "Audit log unavailable")
    if _wants_json():
        return json_error(503, "Audit log unavailable")
    return _page(
        503,
        "Nothing was changed: the audit log cannot be written (or read) right now, and every change must be "
        "recorded there first. "
        "An administrator has been told in the server log.",
        "Audit log unavailable",
    )


def handle_unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return handle_http_error(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http_error(InternalServerError())


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(StoreUnavailable, handle_store_unavailable)
    app.register_error_handler(StoreWriteError, handle_store_write_error)
    app.register_error_handler(AuditUnavailable, handle_audit_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
