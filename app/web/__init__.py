"""The pages: sign-in and setup, the dashboard, Account Security, and user administration."""

from flask import Flask


def register(app: Flask) -> None:
    from app.web import account, admin, ask, auth, dashboard, workspaces

    for module in (auth, dashboard, ask, workspaces, account, admin):
        app.register_blueprint(module.bp)
