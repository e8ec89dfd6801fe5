"""Workspace upload and deletion from the dashboard.

Any signed-in user may upload a new workspace; replacing or deleting one is for admins, since it
changes what everyone's keys answer from.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, request, url_for
from flask_login import current_user, login_required

from app import accounts
from app.accounts import AccountRefused
from app.ask import indexjobs
from app.ask.errors import DISK_FULL_MESSAGE, AskError, is_disk_full
from app.ask.workspaces import workspace_dir, workspace_states
from app.services import services
from app.web.forms import DeleteWorkspaceForm, IndexWorkspaceForm, UploadWorkspaceForm

bp = Blueprint("workspaces", __name__, url_prefix="/workspaces")


@bp.post("/upload")
@login_required
def upload():
    form = UploadWorkspaceForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(f"Upload refused: {error}", "error")
        return redirect(url_for("dashboard.home"), 303)
    upload = form.archive.data
    try:
        result = accounts.import_workspace_from(
            accounts.Actor.signed_in(current_user, request.remote_addr),
            form.workspace_id.data,
            stream=upload.stream,
            filename=upload.filename or "",
            replace=bool(form.replace.data),
        )
    except AccountRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.home"), 303)
    except AskError as exc:
        flash(f"Upload refused: {exc}", "error")
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        flash(f"Upload refused: {DISK_FULL_MESSAGE}.", "error")
    else:
        indexjobs.submit(services().config.workspaces_dir, result["id"])
        flash(
            f"Workspace {result['id']} is uploaded: {result['file_count']} files. "
            "Its index is being built; ask about it once it says ready.",
            "success",
        )
    return redirect(url_for("dashboard.home"), 303)


def state_text(ws: dict) -> str:
    """How the dashboard words a workspace's index state (the page and its polling script share it)."""
    state = ws["state"]
    if state == "indexing":
        done, total = ws["progress"]["done"], ws["progress"]["total"]
        return f"Indexing {done} of {total} files" if total else "Indexing: finding files…"
    if state == "ready":
        return f"Ready · indexed {ws['last_indexed'][:10]}" if ws.get("last_indexed") else "Ready"
    if state == "failed":
        return f"Indexing failed: {ws['reason']}"
    return {"queued": "Queued for indexing", "not_indexed": "Not indexed yet"}[state]


@bp.get("/states")
@login_required
def states():
    """The dashboard polls this while an index is being built."""
    listed = workspace_states(services().config.workspaces_dir)
    return jsonify(workspaces=[{**ws, "text": state_text(ws)} for ws in listed])


bp.add_app_template_global(state_text, "index_state_text")


@bp.post("/index")
@login_required
def index():
    """Index now (or again, after a failure); anyone signed in may, since it changes no content."""
    form = IndexWorkspaceForm()
    if not form.validate_on_submit():
        abort(400)
    root = services().config.workspaces_dir
    try:
        workspace_dir(root, form.workspace_id.data)
    except AskError as exc:
        flash(str(exc), "error")
    else:
        indexjobs.submit(root, form.workspace_id.data)
        flash(f"Indexing {form.workspace_id.data} has started.", "success")
    return redirect(url_for("dashboard.home"), 303)


@bp.post("/delete")
@login_required
def delete():
    if not accounts.may_delete_workspaces(accounts.Actor.signed_in(current_user, request.remote_addr)):
        abort(403)  # before the form: a member learns nothing from it
    form = DeleteWorkspaceForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        accounts.delete_workspace(accounts.Actor.signed_in(current_user, request.remote_addr), form.workspace_id.data)
    except AskError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Workspace {form.workspace_id.data} and its index are deleted.", "success")
    return redirect(url_for("dashboard.home"), 303)
