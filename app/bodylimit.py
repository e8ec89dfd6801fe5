"""The JSON API's own body limit: /api takes a little JSON, whatever MAX_CONTENT_LENGTH allows for uploads.

``MAX_CONTENT_LENGTH`` must be large for workspace archives, but parsing that much JSON costs a worker gigabytes
of memory. Requests under ``/api`` get ``API_MAX_JSON_BYTES`` instead: a declared length over it is refused before
a byte is read, and a chunked body is read at most one byte past the limit, then refused.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge


def _is_api_path(path: str) -> bool:
    path = path.lower()
    return path == "/api" or path.startswith("/api/")


def init_app(app: Flask, limit: int) -> None:
    """Limit every ``/api`` request body to ``limit`` bytes (413 beyond, nothing parsed)."""

    def limit_api_body() -> None:
        environ = request.environ
        if environ.get("CONTENT_LENGTH") is None and "HTTP_TRANSFER_ENCODING" not in environ:
            return  # neither a length nor a transfer coding: no body at all (a GET), nothing to limit
        if not _is_api_path(request.path):
            return
        if request.content_length is not None:
            if request.content_length > limit:
                raise RequestEntityTooLarge()
            request.max_content_length = limit
            return
        # A chunked body declares no length. werkzeug's bounded stream stops quietly at its maximum, so read
        # (and cache, for get_json) one byte more than we accept: getting it means the body is too large.
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise RequestEntityTooLarge()

    # First of all before-request functions, so nothing (CSRF, auth) reads a body that is too large.
    app.before_request_funcs.setdefault(None, []).insert(0, limit_api_body)
