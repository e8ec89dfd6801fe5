"""The flask-limiter peer: what most people would write instead of Askgate's guard, with no key check at all.

One route with flask-limiter's ``@limit`` on the storage Askgate runs with (``RATELIMIT_STORAGE_URI``: memory or
the same Redis), the same hourly amount (``API_RATE_LIMIT``), the same fixed window and the same
``X-RateLimit-*`` headers, keyed by the client address. ``make bench`` serves it next to Askgate and the bare
reference, so every Askgate row also reads as a ratio to this peer: a gatekeeper that checks more should not be
slower than the thing it replaces.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from bench.bare_app import WHOAMI_SHAPED

PEER_PATH = "/peer"


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        RATELIMIT_STORAGE_URI=os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        RATELIMIT_STRATEGY="fixed-window",
        RATELIMIT_HEADERS_ENABLED=True,
    )
    limiter = Limiter(get_remote_address, app=app, default_limits=[])
    per_hour = os.environ.get("API_RATE_LIMIT", "100")  # Askgate's default (app/config.py)

    @app.get(PEER_PATH)
    @limiter.limit(f"{per_hour}/hour")
    def peer():
        return jsonify(WHOAMI_SHAPED)

    return app


app = create_app()
