"""The Ask page: pick a workspace, ask, read the answer. It asks through ``/api/ask`` with the session."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from app.ask.workspaces import list_workspaces
from app.services import services
from app.web.highlight import highlight_source

bp = Blueprint("ask", __name__)


@bp.get("/ask")
@login_required
def page():
    workspaces = list_workspaces(services().config.workspaces_dir)
    return render_template("ask.html", workspaces=workspaces, selected=request.args.get("workspace", ""))


def render_result(result: dict) -> str:
    """The answer as an HTML fragment for the Ask page, sources highlighted server-side."""
    sources = [
        dict(source, html=highlight_source(source["path"], source["snippet"], source["start_line"]))
        for source in result["sources"]
    ]
    return render_template("_ask_result.html", result=result, sources=sources, api_url=request.host_url + "api/ask")
