"""JSON errors for everything under ``/api``."""

from __future__ import annotations

from flask import Response, jsonify

MESSAGES = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
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
