"""API views: parse the input, call one domain function, return JSON."""

from __future__ import annotations

from typing import BinaryIO

from flask import g, jsonify, request

from app import accounts, audit, bodylimit, usage
from app.accounts import AccountRefused
from app.answer_html import render_result
from app.api import bp
from app.ask import indexjobs
from app.ask.engine import ask as ask_engine
from app.ask.errors import DISK_FULL_MESSAGE, AskError, IndexFailed, IndexNotReady, WorkspaceNotFound, is_disk_full
from app.ask.importer import ARCHIVE_SUFFIXES
from app.ask.workspaces import is_valid_workspace_id, list_workspaces
from app.auth import keyrules
from app.auth.hook import protect_api
from app.errors import APIError, json_error
from app.extensions import limiter
from app.inputs import QUESTION_MAX, ROTATE_GRACE_DEFAULT, TOP_K_DEFAULT, WORKSPACE_ID_MAX
from app.keys.limits import LIMIT_FIELDS
from app.keys.store import CHANGEABLE_FIELDS, KeyRequestError
from app.names import name_problem
from app.ratelimits import LimitReached
from app.services import services

protect_api(bp)

# The media types of an archive body, and the suffix that tells the importer its format.
ARCHIVE_TYPES = {"application/zip": ".zip", "application/gzip": ".tar.gz"}
ARCHIVE_TYPE_MESSAGE = (
    "Send the archive as the body with Content-Type application/zip or application/gzip, "
    'or in the multipart field "archive"'
)


@bp.errorhandler(APIError)
def _api_error(exc: APIError):
    return json_error(exc.status, exc.message)


@bp.errorhandler(AccountRefused)
def _refused(exc: AccountRefused):
    return json_error(exc.status, str(exc))


@bp.errorhandler(KeyRequestError)
def _bad_key_request(exc: KeyRequestError):
    return json_error(400, str(exc))


@bp.errorhandler(LimitReached)
def _limit_reached(exc: LimitReached):
    return json_error(429, str(exc), exc.headers)


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
    listing = list_workspaces(services().config.workspaces_dir)
    return jsonify(workspaces=keyrules.visible_workspaces(g.principal.rules, listing))


@bp.put("/workspaces/<workspace_id>")
def put_workspace(workspace_id: str):
    """Create (201) or replace (200) a workspace from an archive: how CI keeps a workspace current."""
    actor = _actor()
    accounts.require_workspace_putter(actor)  # before the body is read: a refusal costs no upload
    stream, filename = _archive_upload()
    try:
        result, created = accounts.put_workspace(actor, workspace_id, stream, filename)
    except AskError as exc:
        raise APIError(400, str(exc)) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise APIError(507, DISK_FULL_MESSAGE) from None
        raise
    indexjobs.submit(services().config.workspaces_dir, result["id"])
    return jsonify(result), 201 if created else 200


def _archive_upload() -> tuple[BinaryIO, str]:
    """The uploaded archive as a stream, and a file name whose suffix says its format."""
    suffix = ARCHIVE_TYPES.get(request.mimetype)
    if suffix:
        return bodylimit.capped(request.stream), f"upload{suffix}"
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("archive")
        if upload is None:
            raise APIError(400, 'Send the archive in the multipart field "archive"')
        filename = upload.filename or ""
        if not filename.lower().endswith(ARCHIVE_SUFFIXES) and upload.mimetype in ARCHIVE_TYPES:
            filename = f"upload{ARCHIVE_TYPES[upload.mimetype]}"
        return upload.stream, filename
    raise APIError(415, ARCHIVE_TYPE_MESSAGE)


@bp.delete("/workspaces/<workspace_id>")
def delete_workspace(workspace_id: str):
    """Admins only (an admin session, the admin key, or an admin's key with workspaces:write): removes the
    folder and its index."""
    try:
        accounts.delete_workspace(_actor(), workspace_id)
    except WorkspaceNotFound:
        raise APIError(404, "Workspace not found") from None
    return "", 204


# -- key management -------------------------------------------------------------------------------------
def _actor() -> accounts.Actor:
    principal = g.principal
    scopes = principal.rules.scopes if principal.rules is not None else frozenset()
    return accounts.Actor(principal.auth_method, principal.user, principal.is_admin, scopes, request.remote_addr)


@bp.get("/keys")
def list_keys():
    return jsonify(keys=usage.key_views(services().usage, accounts.visible_keys(_actor())))


NEW_KEY_FIELDS = ("name", "expires_in_days", "user", *LIMIT_FIELDS)
NEW_KEY_SHOWN = ("id", "name", "prefix", "created_at", "expires_at", *LIMIT_FIELDS)
ACTIVE_FIELDS = ("active", "is_active")  # the second is the name other key APIs use


def _refuse_unknown(body: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise APIError(400, f"Unknown field(s): {', '.join(unknown)}; send any of {', '.join(known)}")


def _new_secret(payload: dict):
    """201 with a raw key: it is in this response and nowhere else, so nothing may keep a copy."""
    response = jsonify(payload)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/keys")
def create_key():
    actor = _actor()
    accounts.require_key_manager(actor)
    body = json_body()
    _refuse_unknown(body, NEW_KEY_FIELDS)
    limits = {name: body[name] for name in LIMIT_FIELDS if name in body}
    new = accounts.create_key_for(actor, body.get("user"), body.get("name"), body.get("expires_in_days"), limits)
    return _new_secret({**{name: new.record[name] for name in NEW_KEY_SHOWN}, "key": new.key})


def _active_flag(body: dict) -> bool | None:
    """``active`` or ``is_active`` (the same thing): True, False, or None when neither is sent."""
    flags = {name: body[name] for name in ACTIVE_FIELDS if name in body}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise APIError(400, f'{name} must be true or false: send {{"{name}": false}} to revoke the key')
    if len(set(flags.values())) > 1:
        raise APIError(400, "active and is_active disagree: send one of them")
    return next(iter(flags.values()), None)


@bp.patch("/keys/<key_id>")
def update_key(key_id: str):
    """Rename, change the limits of, or revoke (``{"active": false}`` or ``{"is_active": false}``) a key."""
    actor = _actor()
    record = accounts.find_key(actor, key_id)
    body = json_body()
    _refuse_unknown(body, (*CHANGEABLE_FIELDS, *ACTIVE_FIELDS))
    if not body:
        raise APIError(400, f"Nothing to change: send any of {', '.join((*CHANGEABLE_FIELDS, *ACTIVE_FIELDS))}")
    active = _active_flag(body)
    if active and record["revoked_at"]:
        raise APIError(400, "A revoked key cannot be made active again; create a new key")
    changes = {name: body[name] for name in CHANGEABLE_FIELDS if name in body}
    if changes:
        record = accounts.update_key(actor, key_id, changes)
    if active is False:
        record = accounts.revoke_key(actor, key_id)
    return jsonify(usage.key_views(services().usage, [record])[0])


@bp.post("/keys/<key_id>/rotate")
def rotate_key(key_id: str):
    """A new secret for the key; the old one keeps working for ``grace_seconds`` (default a day)."""
    actor = _actor()
    accounts.find_key(actor, key_id)  # 403/404 before the body is looked at
    body = json_body() if request.get_data() else {}
    _refuse_unknown(body, ("grace_seconds",))
    new = accounts.rotate_key(actor, key_id, body.get("grace_seconds", ROTATE_GRACE_DEFAULT))
    return _new_secret({**usage.key_views(services().usage, [new.record])[0], "key": new.key})


@bp.get("/keys/<key_id>/usage")
def key_usage(key_id: str):
    """The key's requests per hour (the last 168) or per day (the last 90), every period present."""
    accounts.find_key(_actor(), key_id)  # its owner (session) or an admin; anyone else: 404
    granularity = request.args.get("granularity", "hour")
    if granularity not in usage.GRANULARITIES:
        raise APIError(400, "granularity must be hour or day")
    try:
        series = services().usage.series(usage.key_bucket(key_id), granularity)
    except usage.UsageUnavailable:
        raise APIError(503, "Usage store unavailable") from None
    return jsonify(key_id=key_id, granularity=granularity, series=series)


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
