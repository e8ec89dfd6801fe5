"""Flask's cookie sessions, with the signing serializer built once instead of on every request."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    # Every request opens the session: ~5 µs (3.4x) less than Flask's serializer built per request,
    # bench/inprocess.py's "micro: session open" rows (`.venv/bin/python bench/inprocess.py --micro`).
    def __init__(self) -> None:
        self._serializers: dict[tuple, URLSafeTimedSerializer | None] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # Keyed on the secrets, so a changed SECRET_KEY (tests build many apps) gets its own serializer.
        cache_key = (id(app), app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        serializer = self._serializers.get(cache_key)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            self._serializers[cache_key] = serializer
        return serializer
