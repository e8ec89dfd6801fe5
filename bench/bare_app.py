"""The bare-Flask reference: one JSON endpoint, no extensions, no hooks.

``make bench`` serves it with the project's own ``gunicorn.conf.py`` (``gunicorn -c gunicorn.conf.py
bench.bare_app:app``) next to Askgate, so every Askgate figure is a ratio to what Flask alone does on the
same machine in the same run. The body has the shape of a ``/api/whoami`` answer for a dashboard key, so
the difference is the guard (session, key lookup, allowlist, limiter, log line, security headers).
"""

from __future__ import annotations

from flask import Flask, jsonify

REFERENCE_PATH = "/ref"

WHOAMI_SHAPED = {
    "auth_method": "dashboard_key",
    "user": "bench",
    "role": "member",
    "key": {
        "id": "key_0123456789abcdef",
        "name": "bench",
        "prefix": "agk_AbCdEfGh",
        "created_at": "2025-01-01T00:00:00Z",
        "expires_at": None,
    },
}


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get(REFERENCE_PATH)
    def reference():
        return jsonify(WHOAMI_SHAPED)

    return app


app = create_app()
