"""API views: parse the input, call one domain function, return JSON."""

from __future__ import annotations

from flask import g, jsonify, request

from app import accounts, audit
from app.accounts import AccountRefused
from app.answer_html import render_result
from app.api import bp
from app.ask.engine import ask as ask_engine
from app.ask.errors import AskError, IndexFailed, IndexNotReady, WorkspaceNotFound
from app.ask.workspaces import is_valid_workspace_id, list_workspaces
from app.auth.hook import protect_api
from app.errors import APIError, json_error
from app.extensions import limiter
from app.inputs import QUESTION_MAX, TOP_K_DEFAULT, WORKSPACE_ID_MAX
from app.keys.store import KeyRequestError, public_view
from app.names import name_problem
from app.ratelimits import LimitReached
from app.services import services

protect_api(bp)


@bp.errorhandler(APIError)
def _api_error(exc: APIError):
    return json_error(exc.status, exc.message)


@bp.errorhandler(AccountRefused)
def _refused(exc: AccountRefused):
    return json_error(exc.status, str(exc))


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
            f"workspaceId must be 1-{WORKSPACE_ID_MAX} characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
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
    try:
        accounts.delete_workspace(_actor(), workspace_id)
    except WorkspaceNotFound:
        raise APIError(404, "Workspace not found") from None
    return "", 204


# -- key management -------------------------------------------------------------------------------------
def _actor() -> accounts.Actor:
    principal = g.principal
    return accounts.Actor(principal.auth_method, principal.user, principal.is_admin, request.remote_addr)


@bp.get("/keys")
def list_keys():
    return jsonify(keys=[public_view(r) for r in accounts.visible_keys(_actor())])


@bp.post("/keys")
def create_key():
    actor = _actor()
    accounts.require_key_manager(actor)
    body = json_body()
    try:
        new = accounts.create_key_for(actor, body.get("user"), body.get("name"), body.get("expires_in_days"))
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
    actor = _actor()
    record = accounts.find_key(actor, key_id)
    body = json_body()
    if set(body) != {"active"} or not isinstance(body["active"], bool):
        raise APIError(400, 'Send {"active": false} to revoke the key')
    if body["active"]:
        if record["revoked_at"]:
            raise APIError(400, "A revoked key cannot be made active again; create a new key")
        return jsonify(public_view(record))
    return jsonify(public_view(accounts.revoke_key(actor, key_id)))


@bp.delete("/keys/<key_id>")
def delete_key(key_id: str):
    accounts.delete_key(_actor(), key_id)
    return "", 204


# -- the audit log -------------------------------------------------------------------------------------------------
@bp.get("/audit")
def audit_events():
    """Admin session or the admin key: management events, newest first, ``limit`` (≤ 500) at a time."""
    actor = _actor()
    accounts.require_audit_reader(actor)
    try:
        query = audit.make_query(**{name: request.args.get(name) for name in audit.QUERY_FIELDS})
    except audit.AuditQueryError as exc:
        raise APIError(400, str(exc)) from None
    page = accounts.audit_page(actor, query)
    return jsonify(events=page.events, next_cursor=page.next_cursor)
