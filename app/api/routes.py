"""API views: parse the input, call one domain function, return JSON."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from app.api.errors import APIError, json_error
from app.ask.engine import ask as ask_engine
from app.ask.errors import AskError, IndexFailed, IndexNotReady, WorkspaceNotFound
from app.ask.workspaces import delete_workspace as remove_workspace
from app.ask.workspaces import is_valid_workspace_id, list_workspaces
from app.auth.hook import protect_api
from app.auth.limits import LimitReached
from app.extensions import limiter
from app.inputs import QUESTION_MAX, TOP_K_DEFAULT
from app.keys.store import KeyRequestError, public_view
from app.names import name_problem
from app.services import services
from app.web.ask import render_result

bp = Blueprint("api", __name__, url_prefix="/api")
protect_api(bp)


@bp.errorhandler(APIError)
def _api_error(exc: APIError):
    return json_error(exc.status, exc.message)


def json_body() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser's recursion limit: bad input, not a server error
        raise APIError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "Send a JSON object with Content-Type: application/json")
    return body


@bp.get("/health")
@limiter.exempt
def health():
    return jsonify(status="ok")


@bp.get("/whoami")
def whoami():
    return jsonify(g.principal.whoami())


@bp.post("/ask")
def ask():
    body = json_body()
    workspace_id = body.get("workspaceId")
    question = body.get("question")
    if not isinstance(workspace_id, str) or not workspace_id.strip():
        raise APIError(400, "workspaceId is required")
    question = question.strip() if isinstance(question, str) else None
    if not question:
        raise APIError(400, "question is required")
    if len(question) > QUESTION_MAX:
        raise APIError(400, f"question is too long: at most {QUESTION_MAX} characters")
    problem = name_problem(workspace_id, "workspaceId")
    if problem:
        raise APIError(400, problem)
    if not is_valid_workspace_id(workspace_id):
        raise APIError(
            400,
            "workspaceId must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    top_k = body.get("top_k", TOP_K_DEFAULT)
    try:
        result = ask_engine(
            services().config.workspaces_dir,
            workspace_id,
            question,
            top_k=top_k,
            llm=services().llm,
            index_wait=services().config.ask_index_wait,
        )
    except WorkspaceNotFound:
        raise APIError(404, "Workspace not found") from None
    except IndexNotReady as exc:
        return json_error(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
    except IndexFailed as exc:
        return json_error(503, str(exc))
    except AskError as exc:
        raise APIError(400, str(exc)) from None
    if g.principal.auth_method == "session" and request.accept_mimetypes.best == "text/html":
        return render_result(result)  # the dashboard's Ask page: same hook, answer rendered server-side
    return jsonify(result)


@bp.get("/workspaces")
def workspaces():
    return jsonify(workspaces=list_workspaces(services().config.workspaces_dir))


@bp.delete("/workspaces/<workspace_id>")
def delete_workspace(workspace_id: str):
    """Admins only (session admin or the admin key): removes the folder and its index."""
    if not g.principal.is_admin or g.principal.auth_method not in ("session", "admin_key"):
        raise APIError(403, "Deleting a workspace needs an admin session or the admin key")
    try:
        remove_workspace(services().config.workspaces_dir, workspace_id)
    except WorkspaceNotFound:
        raise APIError(404, "Workspace not found") from None
    return "", 204


# -- key management -------------------------------------------------------------------------------------
def _require_key_manager():
    """Only a session or the admin key may manage keys: a leaked key must not mint more keys."""
    if g.principal.auth_method not in ("session", "admin_key"):
        raise APIError(403, "Key management needs a dashboard session or the admin key")
    return g.principal


def _visible_key(key_id: str) -> dict:
    principal = _require_key_manager()
    record = services().keys.get(key_id)
    if record is None or (not principal.is_admin and record["owner"] != principal.user):
        raise APIError(404, "Key not found")  # not 403: ids of other users' keys do not leak
    return record


@bp.get("/keys")
def list_keys():
    principal = _require_key_manager()
    owner = None if principal.is_admin else principal.user
    return jsonify(keys=[public_view(r) for r in services().keys.list(owner)])


@bp.post("/keys")
def create_key():
    principal = _require_key_manager()
    body = json_body()
    owner = principal.user
    if "user" in body and body["user"] is not None:
        if not principal.is_admin:
            raise APIError(403, "Only an admin can create keys for another user")
        owner = body["user"]
    if owner is None:
        raise APIError(400, 'The admin key belongs to no user: say whose key this is with "user"')
    if not isinstance(owner, str):
        raise APIError(400, "user must be a username")
    target = services().users.get(owner)
    if target is None:
        raise APIError(400, f"No user named {owner!r}")
    if target.disabled:
        raise APIError(400, f"User {owner!r} is disabled")
    expires = body.get("expires_in_days")
    if isinstance(expires, bool) or not (expires is None or isinstance(expires, int)):
        raise APIError(400, "expires_in_days must be 30, 90, 365, or null for never")
    try:
        new = services().keys.create(
            target.username, body.get("name"), expires, admit=lambda: services().limits.admit_key_creation(target.id)
        )
    except KeyRequestError as exc:
        raise APIError(400, str(exc)) from None
    except LimitReached as exc:
        return json_error(429, str(exc), exc.headers)
    record = new.record
    payload = {name: record[name] for name in ("id", "name", "prefix", "created_at", "expires_at")}
    payload["key"] = new.key
    response = jsonify(payload)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.patch("/keys/<key_id>")
def update_key(key_id: str):
    record = _visible_key(key_id)
    body = json_body()
    if set(body) != {"active"} or not isinstance(body["active"], bool):
        raise APIError(400, 'Send {"active": false} to revoke the key')
    if body["active"]:
        if record["revoked_at"]:
            raise APIError(400, "A revoked key cannot be made active again; create a new key")
        return jsonify(public_view(record))
    return jsonify(public_view(services().keys.revoke(key_id)))


@bp.delete("/keys/<key_id>")
def delete_key(key_id: str):
    _visible_key(key_id)
    services().keys.delete(key_id)
    return "", 204


from app.api import openapi  # noqa: E402,F401  (registers /api/openapi.json)
