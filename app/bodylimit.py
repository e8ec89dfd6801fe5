"""The JSON API's own body limit: /api takes a little JSON, whatever MAX_CONTENT_LENGTH allows for uploads.

``MAX_CONTENT_LENGTH`` must be large for workspace archives, but parsing that much JSON costs a worker gigabytes
of memory. Requests under ``/api`` get ``API_MAX_JSON_BYTES`` instead: a declared length over it is refused before
a byte is read, and a chunked body is read at most one byte past the limit, then refused. The one API route that
takes an archive (``PUT /api/workspaces/<id>``) gets the dashboard upload's ``MAX_CONTENT_LENGTH``, read as a
stream in blocks (:func:`capped`), never whole.
"""

from __future__ import annotations

from typing import BinaryIO

from flask import Flask, Request, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from app.ask.unpack import human
from app.errors import APIError, json_error

# Endpoints whose body is an archive, not JSON.
ARCHIVE_ENDPOINTS = frozenset({"api.put_workspace"})


def _is_api_path(path: str) -> bool:
    path = path.lower()
    return path == "/api" or path.startswith("/api/")


def archive_too_large(limit: int) -> str:
    return f"The archive is larger than {human(limit)} (MAX_CONTENT_LENGTH, the upload limit)"


class NamedPartsParser(FormDataParser):
    """werkzeug's form parser, without the multipart parts that carry no ``name``.

    RFC 7578 requires every part to be named; werkzeug keeps a nameless one (a malformed ``Content-Disposition``,
    e.g. an unclosed quote) under the key ``None``, and flask-wtf's CSRF check, which scans the form's keys for its
    field, fails on it with an AttributeError: a 500 any anonymous POST could cause. Such a part names no field
    anyone could read, so it is dropped here, once, for every page and API route.
    """

    def _parse_multipart(self, stream, mimetype, content_length, options):
        stream, form, files = super()._parse_multipart(stream, mimetype, content_length, options)
        if None in form:
            form = self.cls((name, value) for name, value in form.items(multi=True) if name is not None)
        if None in files:
            files = self.cls((name, value) for name, value in files.items(multi=True) if name is not None)
        return stream, form, files


class FormRequest(Request):
    form_data_parser_class = NamedPartsParser


class CappedBody:
    """A request body read in blocks; past ``limit`` bytes it is a 413, whatever the body declared."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit, self.received = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.received += len(block)
        if self.received > self.limit:
            raise APIError(413, archive_too_large(self.limit))
        return block


def capped(stream: BinaryIO) -> CappedBody:
    """``stream`` (an archive upload's raw body) held to MAX_CONTENT_LENGTH."""
    return CappedBody(stream, current_app.config["MAX_CONTENT_LENGTH"])


def _limit_archive(limit: int) -> Response | None:
    if request.content_length is not None and request.content_length > limit:
        return json_error(413, archive_too_large(limit))
    if request.mimetype != "multipart/form-data":
        # werkzeug refuses a stream that reaches its maximum even when the body ends there; CappedBody counts
        # exactly. A multipart body is parsed by werkzeug itself, which holds it to the limit.
        request.max_content_length = limit + 1
    return None


def init_app(app: Flask, limit: int) -> None:
    """Limit every ``/api`` request body to ``limit`` bytes (413 beyond, nothing parsed)."""

    def limit_api_body() -> Response | None:
        environ = request.environ
        if environ.get("CONTENT_LENGTH") is None and "HTTP_TRANSFER_ENCODING" not in environ:
            return None  # neither a length nor a transfer coding: no body at all (a GET), nothing to limit
        if not _is_api_path(request.path):
            return None
        if request.endpoint in ARCHIVE_ENDPOINTS:
            return _limit_archive(app.config["MAX_CONTENT_LENGTH"])
        if request.content_length is not None:
            if request.content_length > limit:
                raise RequestEntityTooLarge()
            request.max_content_length = limit
            return None
        # A chunked body declares no length. werkzeug's bounded stream stops quietly at its maximum, so read
        # (and cache, for get_json) one byte more than we accept: getting it means the body is too large.
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise RequestEntityTooLarge()
        return None

    # First of all before-request functions, so nothing (CSRF, auth) reads a body that is too large.
    app.before_request_funcs.setdefault(None, []).insert(0, limit_api_body)
