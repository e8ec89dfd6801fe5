"""The JSON API: ``bp`` is defined here; its views live in ``routes``, the OpenAPI document in ``openapi``.

Both import ``bp`` from here and nothing here imports them: the app factory imports them before it registers
``bp``, so the package and its modules never import each other.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
