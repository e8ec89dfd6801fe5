"""The pages: sign-in and setup, the dashboard, Account Security, and user administration."""

from flask import Flask


def register(app: Flask) -> None:
    from app.web import account, admin, auth, dashboard

    for module in (auth, dashboard, account, admin):
        app.register_blueprint(module.bp)
