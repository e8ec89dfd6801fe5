"""The Ask page: pick a workspace, ask, read the answer. It asks through ``/api/ask`` with the session."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from app.ask.workspaces import list_workspaces
from app.services import services

bp = Blueprint("ask", __name__)


@bp.get("/ask")
@login_required
def page():
    workspaces = list_workspaces(services().config.workspaces_dir)
    return render_template("ask.html", workspaces=workspaces, selected=request.args.get("workspace", ""))
