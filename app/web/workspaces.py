"""Workspace upload and deletion from the dashboard.

Any signed-in user may upload a new workspace; replacing or deleting one is for admins, since it
changes what everyone's keys answer from.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, url_for
from flask_login import current_user, login_required

from app.ask.errors import AskError
from app.ask.importer import import_archive_stream
from app.ask.workspaces import delete_workspace
from app.services import services
from app.web.forms import DeleteWorkspaceForm, UploadWorkspaceForm

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
    replace = bool(form.replace.data)
    if replace and not current_user.is_admin:
        flash("Only an admin can replace an existing workspace.", "error")
        return redirect(url_for("dashboard.home"), 303)
    upload = form.archive.data
    try:
        result = import_archive_stream(
            services().config.workspaces_dir,
            form.workspace_id.data.strip(),
            upload.stream,
            upload.filename or "",
            replace=replace,
        )
    except AskError as exc:
        flash(f"Upload refused: {exc}", "error")
    else:
        flash(f"Workspace {result['id']} is ready: {result['file_count']} files. Ask about it now.", "success")
    return redirect(url_for("dashboard.home"), 303)


@bp.post("/delete")
@login_required
def delete():
    if not current_user.is_admin:
        abort(403)
    form = DeleteWorkspaceForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        delete_workspace(services().config.workspaces_dir, form.workspace_id.data)
    except AskError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Workspace {form.workspace_id.data} and its index are deleted.", "success")
    return redirect(url_for("dashboard.home"), 303)
