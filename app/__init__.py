"""Askgate: team logins, API keys, and answers about the code in your workspaces."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from app.application import AskgateFlask, app_hooks_added
from app.bodylimit import FormRequest
from app.config import Config, ConfigError, load_config, load_dotenv_files
from app.inputs import PASSWORD_MIN, QUESTION_MAX
from app.names import finalize_for_page
from app.sessions import CachedSerializerSessionInterface

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # templates/ and static/ sit beside app/


def create_app(config: Config | None = None) -> Flask:
    """Assemble the app: config, extensions, blueprints, the request hook, error handlers, CLI."""
    if config is None:
        load_dotenv_files()
        try:
            config = load_config()
        except ConfigError as exc:
            # One clear line instead of a traceback, for gunicorn, flask CLI and imports alike.
            raise SystemExit(f"askgate: configuration error: {exc}") from None
    app = AskgateFlask(
        __name__, template_folder=str(PROJECT_ROOT / "templates"), static_folder=str(PROJECT_ROOT / "static")
    )
    # Werkzeug answers "//x" with a redirect whose absolute URL it builds from the Host header: never do that.
    app.url_map.merge_slashes = False
    app.session_interface = CachedSerializerSessionInterface()
    app.request_class = FormRequest  # a multipart part without a name is dropped, not a 500 (app/bodylimit.py)
    app.jinja_env.finalize = finalize_for_page  # a stored name that is not text must not break the page
    app.jinja_env.globals.update(QUESTION_MAX=QUESTION_MAX, PASSWORD_MIN=PASSWORD_MIN)  # the pages' hints and maxlength
    app.config.update(config.flask_settings())
    config.workspaces_dir.mkdir(parents=True, exist_ok=True)

    if config.trusted_proxy_count:
        from app.auth.proxies import TrustedProxyFix

        # Trust exactly as many X-Forwarded-* hops as there are proxies of ours, and only from them.
        app.wsgi_app = TrustedProxyFix(
            app.wsgi_app, config.trusted_proxy_count, config.trusted_proxies, config.trusted_proxy_headers
        )

    _init_logging()

    from app import bodylimit

    bodylimit.init_app(app, config.api_max_json_bytes)

    from app.auth.hook import configure_access_log
    from app.extensions import csrf, limiter, login_manager
    from app.services import init_services

    configure_access_log()
    with app_hooks_added(app) as csrf_hooks:
        csrf.init_app(app)
    login_manager.init_app(app)
    # Registered before the limiter so that it runs after the limiter's header injection.
    app.after_request(_retry_after_only_on_429)
    with app_hooks_added(app) as limiter_hooks:
        limiter.init_app(app)
    # The API checks CSRF itself (for sessions, once it knows who calls) and counts its own limits
    # (app.ratelimits): flask-wtf's and flask-limiter's per-request hooks do nothing for it but cost time.
    app.skip_app_hooks("api", csrf_hooks | limiter_hooks)
    init_services(app, config, limiter.storage)

    from app import errors, firstrun, security, web
    from app.api import bp as api_bp
    from app.api import openapi, routes  # noqa: F401  (importing them adds their views to bp)

    app.register_blueprint(api_bp)
    web.register(app)
    errors.register(app)
    security.register(app)
    firstrun.ensure_setup_token(app)

    from app.cli import register_cli

    register_cli(app)
    return app


def _retry_after_only_on_429(response):
    """flask-limiter adds Retry-After to every limited response; it only means something on a 429."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def _init_logging() -> None:
    root = logging.getLogger("askgate")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    # flask-limiter reports storage failure and recovery on its own logger, which has only a NullHandler.
    limiter_log = logging.getLogger("flask-limiter")
    if not any(h in limiter_log.handlers for h in root.handlers):
        limiter_log.addHandler(root.handlers[0])
        limiter_log.setLevel(logging.INFO)
