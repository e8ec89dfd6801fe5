"""The dashboard: where a signed-in user starts."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from app import accounts, usage
from app.ask.workspaces import list_workspaces
from app.services import services
from app.web.forms import DeleteWorkspaceForm, UploadWorkspaceForm

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def home():
    actor = accounts.Actor.signed_in(current_user)
    keys = usage.key_views(services().usage, services().keys.list(current_user.username))
    return render_template(
        "dashboard.html",
        keys=keys,
        active_keys=sum(1 for k in keys if k["status"] == "active"),
        workspaces=list_workspaces(services().config.workspaces_dir),
        upload_form=UploadWorkspaceForm(),
        delete_form=DeleteWorkspaceForm(),
        may_delete_workspaces=accounts.may_delete_workspaces(actor),
        may_replace_workspaces=accounts.may_replace_workspaces(actor),
    )
