"""The OpenAPI 3.1 document of the JSON API, served at ``GET /api/openapi.json``.

It is written by hand next to the views it describes; ``tests/test_openapi.py`` checks that every
``/api`` rule is in it and runs schemathesis against a live server so the two cannot drift apart.
"""

from __future__ import annotations

from flask import jsonify

from app.api import bp
from app.ask.callgraph import MAX_NEIGHBOURS
from app.ask.indexstate import STATES
from app.audit import ACTIONS as AUDIT_ACTIONS
from app.audit import LIMIT_MAX as AUDIT_LIMIT_MAX
from app.audit import TARGET_TYPES as AUDIT_TARGETS
from app.errors import MESSAGES
from app.extensions import limiter
from app.inputs import (
    DEFAULT_KEY_SCOPES,
    KEY_ALLOWED_IPS_MAX,
    KEY_EXPIRY_DAYS,
    KEY_NAME_MAX,
    KEY_RATE_LIMIT_ADMIN_MAX,
    KEY_SCOPES,
    KEY_WORKSPACES_MAX,
    QUESTION_MAX,
    ROTATE_GRACE_DEFAULT,
    ROTATE_GRACE_MAX,
    TOP_K_DEFAULT,
    TOP_K_MAX,
    TOP_K_MIN,
    WORKSPACE_ID_RE,
)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

JSON = "application/json"
TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_body(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = dict(headers)  # a copy: callers add to it
    return response


def _object(properties: dict, required: tuple[str, ...] | None = None, **extra) -> dict:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    schema.update(extra)
    return schema


# -- schemas ----------------------------------------------------------------------------------------------
KEY_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": KEY_NAME_MAX,
    "description": "Plain text: no lone surrogates, bidi controls, zero-width or control characters.",
}
# A key's limits, as requests send them and every answer shows them (app/keys/limits.py checks them).
KEY_LIMITS = {
    "scopes": {
        "type": "array",
        "items": {"enum": list(KEY_SCOPES)},
        "minItems": 1,
        "description": "What the key may do: `ask` (POST /api/ask), `workspaces:read` (GET /api/workspaces), "
        "`workspaces:write` (replace and delete workspaces; only admins may give it). Default "
        f"{list(DEFAULT_KEY_SCOPES)}.",
    },
    "workspaces": {
        "type": ["array", "null"],
        "items": {"type": "string", "pattern": WORKSPACE_ID_RE.pattern},
        "minItems": 1,
        "maxItems": KEY_WORKSPACES_MAX,
        "description": "The existing workspaces the key may use; null (the default) for all, future ones included.",
    },
    "rate_limit": {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": KEY_RATE_LIMIT_ADMIN_MAX,
        "description": "The key's own hourly limit: 1 to API_RATE_LIMIT (admins up to "
        f"{KEY_RATE_LIMIT_ADMIN_MAX}); null (the default) for API_RATE_LIMIT.",
    },
    "allowed_ips": {
        "type": ["array", "null"],
        "items": {"type": "string", "examples": ["10.0.0.0/8"]},
        "minItems": 1,
        "maxItems": KEY_ALLOWED_IPS_MAX,
        "description": "Addresses and CIDR ranges (IPv4, IPv6) the key may be used from, checked in addition to "
        "ALLOWED_IPS; null (the default) for any. Answers show them normalised (`10.0.0.0/8`, `203.0.113.7/32`).",
    },
}
KEY_SUMMARY = {
    "id": {"type": "string", "examples": ["key_0123456789abcdef"]},
    "name": {"type": "string"},
    "prefix": {"type": "string", "description": "The first characters of the key: enough to recognise it."},
    "created_at": TIMESTAMP,
    "expires_at": NULLABLE_TIMESTAMP,
    **KEY_LIMITS,
}
KEY_VIEW = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "owner": {"type": "string"},
    "prefix": {"type": "string"},
    "created_at": TIMESTAMP,
    "expires_at": NULLABLE_TIMESTAMP,
    "revoked_at": NULLABLE_TIMESTAMP,
    "last_used_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "When the key was last accepted (to within USAGE_FLUSH_SECONDS across processes); "
        "null if never.",
    },
    "last_used_ip": {
        "type": ["string", "null"],
        "description": "The address it was last used from; null if never used (or last used before Askgate kept it).",
    },
    **KEY_LIMITS,
    "previous_expires_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "While the secret a rotation replaced still works: when it stops. Else null.",
    },
    "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
    "is_active": {"type": "boolean", "description": 'status == "active"'},
}
SCHEMAS = {
    "Error": _object(
        {"error": {"type": "string", "description": "What went wrong, fit to show a person."}},
        description="The one shape of every /api error.",
    ),
    "Health": _object({"status": {"type": "string", "const": "ok"}}),
    "KeySummary": _object(KEY_SUMMARY),
    "Whoami": _object(
        {
            "auth_method": {"type": "string", "enum": ["session", "dashboard_key", "admin_key", "client_key"]},
            "user": {"type": ["string", "null"], "description": "null for the admin and client keys"},
            "role": {"type": "string", "enum": ["admin", "member", "client"]},
            "key": {
                "description": "The dashboard key used, else null.",
                "oneOf": [_ref("schemas", "KeySummary"), {"type": "null"}],
            },
        }
    ),
    "AskRequest": _object(
        {
            "workspaceId": {"type": "string", "pattern": WORKSPACE_ID_RE.pattern},
            "question": {
                "type": "string",
                "minLength": 1,
                "maxLength": QUESTION_MAX,
                "description": f"At most {QUESTION_MAX} characters once surrounding whitespace is stripped. "
                'A question about the workspace as a whole ("How does this code work?") gets an '
                "overview: what the README says, the main packages and modules, and the entry points, as sources.",
            },
            "top_k": {"type": "integer", "minimum": TOP_K_MIN, "maximum": TOP_K_MAX, "default": TOP_K_DEFAULT},
        },
        required=("workspaceId", "question"),
        examples=[
            {"workspaceId": "demo", "question": "How does this code work?"},
            {"workspaceId": "demo", "question": "Where is the session cookie set?"},
        ],
    ),
    "Source": _object(
        {
            "path": {"type": "string", "description": "Relative to the workspace, with / separators."},
            "start_line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1},
            "symbol": {"type": ["string", "null"], "description": "The function or class, when known."},
            "snippet": {"type": "string"},
            "score": {"type": "number"},
            "callers": {
                "type": "array",
                "items": _ref("schemas", "SymbolRef"),
                "maxItems": MAX_NEIGHBOURS,
                "description": "Functions, methods and classes of the workspace that call this source's symbol: code "
                "before tests, then by path and line. Empty when the source is not a definition or nothing calls it.",
            },
            "callees": {
                "type": "array",
                "items": _ref("schemas", "SymbolRef"),
                "maxItems": MAX_NEIGHBOURS,
                "description": "What this source's symbol calls among the workspace's own definitions, in the order "
                "it first calls them. Calls whose target is ambiguous or outside the workspace are left out.",
            },
        }
    ),
    "SymbolRef": _object(
        {
            "symbol": {
                "type": "string",
                "description": "`func`, `Class` or `Class.method`.",
                "examples": ["guard_api"],
            },
            "path": {"type": "string", "description": "Relative to the workspace, with / separators."},
            "line": {"type": "integer", "minimum": 1, "description": "Where the definition starts."},
        },
        description="A function, method or class of the workspace, found by the call graph built at index time.",
    ),
    "AskResult": _object(
        {
            "workspaceId": {"type": "string"},
            "question": {"type": "string", "description": "The question as answered (surrounding space removed)."},
            "answer": {"type": "string"},
            "sources": {"type": "array", "items": _ref("schemas", "Source")},
            "engine": {"type": "string", "enum": ["extractive", "llm"]},
        }
    ),
    "Workspace": _object(
        {
            "id": {"type": "string", "pattern": WORKSPACE_ID_RE.pattern},
            "file_count": {"type": "integer", "minimum": 0},
            "size_bytes": {"type": "integer", "minimum": 0},
            "last_indexed": NULLABLE_TIMESTAMP,
            "state": {
                "type": "string",
                "enum": list(STATES),
                "description": "Its index: `queued`, `indexing`, `ready`, `failed` or `not_indexed` (indexed on "
                "the first question). An import or upload starts indexing in the background.",
            },
            "progress": _object(
                {"done": {"type": "integer", "minimum": 0}, "total": {"type": "integer", "minimum": 0}},
                description="While `indexing` only: files read so far of those to read (total 0 while listing).",
            ),
            "reason": {"type": "string", "description": "When `failed` only: why, fit to show a person."},
        },
        required=("id", "file_count", "size_bytes", "last_indexed", "state"),
    ),
    "WorkspaceList": _object({"workspaces": {"type": "array", "items": _ref("schemas", "Workspace")}}),
    "WorkspacePut": _object(
        {
            "id": {"type": "string", "pattern": WORKSPACE_ID_RE.pattern},
            "file_count": {"type": "integer", "minimum": 1},
            "size_bytes": {"type": "integer", "minimum": 0, "description": "The unpacked files' bytes."},
        },
        additionalProperties=False,
        description="What a PUT installed. Its index is built in the background, as after a dashboard upload.",
    ),
    "Key": _object(KEY_VIEW, description="A key as listings show it: never the key itself, never its digest."),
    "KeyList": _object({"keys": {"type": "array", "items": _ref("schemas", "Key")}}),
    "NewKeyRequest": _object(
        {
            "name": KEY_NAME,
            "expires_in_days": {
                "enum": list(KEY_EXPIRY_DAYS),
                "default": None,
                "description": "Days until the key expires; null (or absent) for never.",
            },
            "user": {
                "type": ["string", "null"],
                "description": "Admins only: whose key this is. Required with the admin key, which belongs to no user.",
            },
            **KEY_LIMITS,
        },
        required=("name",),
        additionalProperties=False,
        examples=[
            {"name": "ci-pipeline", "expires_in_days": 90},
            {"name": "docs-bot", "scopes": ["ask"], "workspaces": ["demo"], "rate_limit": 50},
        ],
    ),
    "NewKey": _object(
        {
            **KEY_SUMMARY,
            "key": {
                "type": "string",
                "pattern": "^agk_[0-9A-Za-z]{40,}$",
                "description": "The full key. Shown in this response only: store it now.",
            },
        },
    ),
    "KeyUpdate": _object(
        {
            "name": KEY_NAME,
            **KEY_LIMITS,
            "active": {"type": "boolean", "description": "false revokes the key; true is accepted for an active key."},
            "is_active": {"type": "boolean", "description": "The same as `active` (the name other key APIs use)."},
        },
        required=(),
        additionalProperties=False,
        minProperties=1,
        description="Any of the fields; a field left out is left as it is. Unknown fields are a 400 naming them.",
        examples=[{"active": False}, {"is_active": False}, {"name": "ci", "scopes": ["ask"], "rate_limit": 10}],
    ),
    "RotateRequest": _object(
        {
            "grace_seconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": ROTATE_GRACE_MAX,
                "default": ROTATE_GRACE_DEFAULT,
                "description": "How long the old secret keeps working (never past the key's own expiry); 0 ends it "
                "at once. A grace still running from an earlier rotation ends now.",
            }
        },
        required=(),
        additionalProperties=False,
        examples=[{"grace_seconds": 3600}],
    ),
    "RotatedKey": _object(
        {
            **KEY_VIEW,
            "key": {
                "type": "string",
                "pattern": "^agk_[0-9A-Za-z]{40,}$",
                "description": "The new key. Shown in this response only: store it now.",
            },
        },
        description="The key with its new secret: same id, name, limits and expiry.",
    ),
}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
SCHEMAS["KeyUsage"] = _object(
    {
        "key_id": {"type": "string"},
        "granularity": {"type": "string", "enum": ["hour", "day"]},
        "series": {
            "type": "array",
            "description": "Every period, oldest first, the current one last, zeros included: 168 hours or 90 days.",
            "items": _object(
                {
                    "start": {**TIMESTAMP, "description": "The period's start (UTC)."},
                    "ok": {**_COUNT, "description": "2xx answers."},
                    "client_error": {**_COUNT, "description": "Other 4xx answers."},
                    "rate_limited": {**_COUNT, "description": "429 answers."},
                    "denied": {
                        **_COUNT,
                        "description": "401/403 the key caused: revoked, expired, disabled owner, scope, workspace, "
                        "address.",
                    },
                },
                additionalProperties=False,
            ),
        },
    },
    additionalProperties=False,
    description="A key's requests per period. Each process adds its counts every USAGE_FLUSH_SECONDS.",
)
SCHEMAS["AuditEvent"] = _object(
    {
        "id": {"type": "string", "description": "Unique; newest events come first."},
        "time": TIMESTAMP,
        "action": {"type": "string", "enum": list(AUDIT_ACTIONS)},
        "actor": {**_NULLABLE_TEXT, "description": "The user who acted; null for the admin key and the CLI."},
        "auth_method": {"type": "string", "enum": ["session", "dashboard_key", "admin_key", "client_key", "cli"]},
        "ip": {**_NULLABLE_TEXT, "description": "The client address; null for the CLI."},
        "target": _object(
            {
                "type": {"type": "string", "enum": list(AUDIT_TARGETS)},
                "id": _NULLABLE_TEXT,
                "name": _NULLABLE_TEXT,
            }
        ),
        "detail": {"type": "object", "description": "What changed (never a key, digest, password or token)."},
    }
)
SCHEMAS["AuditPage"] = _object(
    {
        "events": {"type": "array", "items": _ref("schemas", "AuditEvent")},
        "next_cursor": {**_NULLABLE_TEXT, "description": "Pass as cursor for the next (older) page; null at the end."},
    }
)
AUDIT_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    for name, description, schema in (
        ("action", "One action, or a family such as key.*", {"type": "string"}),
        ("actor", "A username (case-insensitive).", {"type": "string"}),
        ("target", "A target's id or name (key id, username, workspace id).", {"type": "string"}),
        ("since", "From this time on: 2026-12-01 or 2026-12-01T10:00:00Z (UTC).", {"type": "string"}),
        ("until", "Before this time; a bare date includes that day.", {"type": "string"}),
        ("limit", f"Events per page, 1 to {AUDIT_LIMIT_MAX} (default 100).", {"type": "string"}),
        ("cursor", "next_cursor of the previous page.", {"type": "string"}),
    )
]

# -- responses --------------------------------------------------------------------------------------------
_ERROR_WHEN = {
    400: (
        "Bad input: not a JSON object (or nested too deeply to parse), a missing or invalid field, "
        "or (session callers) a missing CSRF token."
    ),
    401: "No credentials (`API key required`) or wrong, expired or revoked ones (`Invalid API key`).",
    403: (
        "A key request from an address outside ALLOWED_IPS, a dashboard key outside its own allowed_ips, scopes "
        "or workspaces, or a caller not allowed to do this."
    ),
    409: "The resource is not in a state that allows this (rotating a revoked or expired key).",
    404: "No such resource, or one that belongs to another user.",
    405: "The path exists but not for this method; `Allow` lists the methods it takes.",
    413: "The request body is larger than API_MAX_JSON_BYTES (default 65536); it is refused unread.",
    415: 'Not an archive: send application/zip, application/gzip, or multipart/form-data with the field "archive".',
    429: (
        "Over API_RATE_LIMIT for this client (or USER_RATE_LIMIT for its user), too many failed attempts "
        "from this address, or (creating a key) over KEY_CREATE_LIMIT for the key's owner."
    ),
    500: "An unexpected error; it is logged, never shown.",
    503: (
        "The key or user store is unreadable (it fails closed), or could not be written; with a Redis store, Redis "
        "is away: a change is refused at once, a dashboard key once the last loaded copy is older than "
        "STORE_STALE_SECONDS."
    ),
    507: "The disk holding WORKSPACES_DIR is full; nothing was changed.",
}
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    405: {"Allow": {"required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "required": True,
            "description": "Seconds until the client may try again.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}
_RATE_HEADERS = {
    f"X-RateLimit-{name}": {"description": description, "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    for name, description in (
        ("Limit", "Requests allowed per hour for this client (API_RATE_LIMIT, or USER_RATE_LIMIT if tighter)."),
        ("Remaining", "Requests left in the current window."),
        ("Reset", "Unix time the window resets."),
    )
}
RESPONSES = {
    str(status): _json_body(
        _ref("schemas", "Error"), f"{MESSAGES[status]}. {_ERROR_WHEN[status]}", _ERROR_HEADERS.get(status)
    )
    for status in sorted(_ERROR_WHEN)
}

# Every authenticated /api operation can answer these before its view runs (see app/auth/hook.py).
GUARD = ("401", "403", "429", "503")
WRITE = ("400", "413")
CSRF_HEADER = {
    "name": "X-CSRFToken",
    "in": "header",
    "required": False,
    "description": 'Session callers only: the page\'s `<meta name="csrf-token">`. Key callers need none.',
    "schema": {"type": "string"},
}
KEY_ID = {
    "name": "key_id",
    "in": "path",
    "required": True,
    "description": "A key id as listed by GET /api/keys.",
    "schema": {"type": "string", "examples": ["key_0123456789abcdef"]},
}
WORKSPACE_ID = {
    "name": "workspace_id",
    "in": "path",
    "required": True,
    "description": "A workspace id as listed by GET /api/workspaces; anything else is 404.",
    "schema": {"type": "string"},
}
EVERY_CALLER = [{"apiKey": []}, {"bearer": []}, {"session": []}]


def _operation(
    summary: str,
    ok: tuple[str, dict],
    errors: tuple[str, ...] = (),
    body: str | None = None,
    parameters: list[dict] | None = None,
    security: list[dict] | None = None,
    description: str | None = None,
    operation_id: str | None = None,
    body_required: bool = True,
) -> dict:
    status, success = ok
    op: dict = {"summary": summary, "operationId": operation_id, "responses": {status: success}}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": body_required, "content": {JSON: {"schema": _ref("schemas", body)}}}
    for code in sorted(set(errors) | (set(GUARD) if security is None else set())):
        op["responses"][code] = _ref("responses", code)
    if security is not None:
        op["security"] = security
    return op


def _ok(schema: str, description: str = "OK") -> tuple[str, dict]:
    return "200", _json_body(_ref("schemas", schema), description, _RATE_HEADERS)


def _ask_unavailable() -> dict:
    """/api/ask's 503: besides the store, a workspace whose first index is still being built."""
    response = _json_body(
        _ref("schemas", "Error"),
        "`Workspace is being indexed`: its first index was not ready within ASK_INDEX_WAIT seconds (ask again "
        "after `Retry-After`); `Workspace could not be indexed: …` when building it failed; or, as for every "
        "call, the key or user store is unavailable.",
        {
            "Retry-After": {
                "description": "With `Workspace is being indexed`: seconds until the index is likely ready.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        },
    )
    response["content"][JSON]["examples"] = {"indexing": {"value": {"error": "Workspace is being indexed"}}}
    return response


def _put_workspace() -> dict:
    """PUT /api/workspaces/{id}: an archive body, not JSON, up to MAX_CONTENT_LENGTH."""
    put = _operation(
        "Create or replace a workspace from a .zip or .tar.gz archive",
        ("200", _json_body(_ref("schemas", "WorkspacePut"), "Replaced: asks now answer from the new files.")),
        errors=("400", "415", "507"),
        parameters=[
            {**WORKSPACE_ID, "description": "The workspace to create or replace.", "schema": {"type": "string"}},
            CSRF_HEADER,
        ],
        description='For CI: `curl -X PUT -H "x-api-key: $KEY" -H "Content-Type: application/gzip" '
        "--data-binary @src.tar.gz …/api/workspaces/my-project`. The admin key, an admin session (with "
        "X-CSRFToken), or a dashboard key with the `workspaces:write` scope; 403 otherwise. The archive passes the "
        "dashboard upload's checks (no links, no paths outside the folder, the file and size limits): a refused "
        "one is a 400 saying why and changes nothing. A replacement is atomic: asks already running finish on the "
        "old files, and no half-unpacked folder is ever visible.",
        operation_id="putWorkspace",
    )
    put["responses"]["201"] = _json_body(_ref("schemas", "WorkspacePut"), "Created.", _RATE_HEADERS)
    put["responses"]["200"]["headers"] = dict(_RATE_HEADERS)
    put["responses"]["413"] = _json_body(
        _ref("schemas", "Error"),
        "The archive is larger than MAX_CONTENT_LENGTH (the dashboard upload's limit, default 50 MiB).",
    )
    binary = {"type": "string", "format": "binary"}
    put["requestBody"] = {
        "required": True,
        "content": {
            "application/zip": {"schema": binary},
            "application/gzip": {"schema": {**binary, "description": "A .tar.gz archive."}},
            "multipart/form-data": {"schema": _object({"archive": binary})},
        },
    }
    return put


def build_document() -> dict:
    """The OpenAPI 3.1 document for every route under /api."""
    ask_ok = _json_body(_ref("schemas", "AskResult"), "The answer and the code it is based on.", _RATE_HEADERS)
    ask_ok["content"]["text/html"] = {
        "schema": {
            "type": "string",
            "description": "Session callers sending `Accept: text/html` (the Ask page) get an HTML fragment.",
        }
    }
    ask = _operation(
        "Ask a question about a workspace's code",
        ("200", ask_ok),
        errors=(*WRITE, "404"),
        body="AskRequest",
        parameters=[CSRF_HEADER],
        description="404 `Workspace not found` for a well-formed id without a folder in WORKSPACES_DIR; "
        "400 for an empty workspace. A workspace without a ready index is indexed first: the call waits up to "
        "ASK_INDEX_WAIT seconds for it, then answers 503 `Workspace is being indexed` with `Retry-After`.",
        operation_id="ask",
    )
    ask["responses"]["503"] = _ask_unavailable()
    new_key = _json_body(_ref("schemas", "NewKey"), "The new key, shown this once.", _RATE_HEADERS)
    new_key["headers"]["Cache-Control"] = {"required": True, "schema": {"type": "string", "const": "no-store"}}
    rotated = _json_body(_ref("schemas", "RotatedKey"), "The key's new secret, shown this once.", _RATE_HEADERS)
    rotated["headers"]["Cache-Control"] = dict(new_key["headers"]["Cache-Control"])
    key_writes = ("400", "404", "413", "507")
    paths = {
        "/api/health": {
            "get": _operation(
                "Liveness check",
                ("200", _json_body(_ref("schemas", "Health"), "The server is up.")),
                security=[],
                operation_id="health",
            )
        },
        "/api/openapi.json": {
            "get": _operation(
                "This document",
                ("200", _json_body({"type": "object"}, "The OpenAPI 3.1 document of the API.")),
                security=[],
                operation_id="openapi",
            )
        },
        "/api/whoami": {
            "get": _operation("Who the API takes the caller to be", _ok("Whoami"), operation_id="whoami"),
        },
        "/api/ask": {"post": ask},
        "/api/workspaces": {
            "get": _operation("List the workspaces", _ok("WorkspaceList"), operation_id="listWorkspaces"),
        },
        "/api/workspaces/{workspace_id}": {
            "put": _put_workspace(),
            "delete": _operation(
                "Delete a workspace and its index",
                ("204", {"description": "Deleted.", "headers": _RATE_HEADERS}),
                errors=("400", "404", "413"),
                parameters=[WORKSPACE_ID, CSRF_HEADER],
                description="An admin session, the admin key, or an admin's dashboard key with the "
                "`workspaces:write` scope only (403 otherwise).",
                operation_id="deleteWorkspace",
            ),
        },
        "/api/keys": {
            "get": _operation(
                "List API keys: your own, or everyone's for an admin",
                _ok("KeyList"),
                description="Session or admin key only: dashboard and client keys get 403.",
                operation_id="listKeys",
            ),
            "post": _operation(
                "Create an API key",
                ("201", new_key),
                errors=(*WRITE, "507"),
                body="NewKeyRequest",
                parameters=[CSRF_HEADER],
                description=(
                    "Session or admin key only (403 otherwise), so a leaked key cannot mint more keys. "
                    "At most KEY_CREATE_LIMIT (default 20/hour) new keys per owner: 429 with the wait beyond it. "
                    "The limits (`scopes`, `workspaces`, `rate_limit`, `allowed_ips`) default to today's behaviour; "
                    "only admins may give `workspaces:write` (403 `Only admins can give a key workspaces:write`). "
                    "A bad value is a 400 naming the field."
                ),
                operation_id="createKey",
            ),
        },
        "/api/keys/{key_id}": {
            "patch": _operation(
                "Rename an API key, change its limits, or revoke it",
                _ok("Key"),
                errors=key_writes,
                body="KeyUpdate",
                parameters=[KEY_ID, CSRF_HEADER],
                description='`{"active": false}` or `{"is_active": false}` revokes the key; `name`, `scopes`, '
                "`workspaces`, `rate_limit` and `allowed_ips` change it, by the rules of POST /api/keys. Other "
                "users' keys are 404 unless you are an admin.",
                operation_id="updateKey",
            ),
            "delete": _operation(
                "Delete an API key",
                ("204", {"description": "Deleted.", "headers": _RATE_HEADERS}),
                errors=key_writes,
                parameters=[KEY_ID, CSRF_HEADER],
                description="Other users' keys are 404 unless you are an admin.",
                operation_id="deleteKey",
            ),
        },
        "/api/keys/{key_id}/rotate": {
            "post": _operation(
                "Give an API key a new secret",
                ("201", rotated),
                errors=(*key_writes, "409"),
                body="RotateRequest",
                body_required=False,
                parameters=[KEY_ID, CSRF_HEADER],
                description="Same id, name, limits and expiry; the new key is in this response only. The old "
                "secret keeps working until `previous_expires_at` (`grace_seconds`, default "
                f"{ROTATE_GRACE_DEFAULT}), then is refused with 401. 409 `Only an active key can be rotated` for "
                "a revoked or expired key. Whoever may revoke the key may rotate it.",
                operation_id="rotateKey",
            )
        },
    }
    paths["/api/keys/{key_id}/usage"] = {
        "get": _operation(
            "A key's requests per hour (last 7 days) or per day (last 90 days)",
            _ok("KeyUsage"),
            errors=("400", "404"),
            parameters=[
                KEY_ID,
                {
                    "name": "granularity",
                    "in": "query",
                    "required": False,
                    "description": "hour (168 periods, the default) or day (90 periods).",
                    "schema": {"type": "string", "enum": ["hour", "day"], "default": "hour"},
                },
            ],
            description="The key's owner (session) or an admin (session or admin key); other users' keys are 404, "
            "dashboard and client keys 403. 400 for another granularity.",
            operation_id="getKeyUsage",
        )
    }
    paths["/api/audit"] = {
        "get": _operation(
            "Read the audit log: management events, newest first",
            _ok("AuditPage"),
            errors=("400",),
            parameters=AUDIT_PARAMETERS,
            description="An admin session or the admin key only (403 otherwise). 400 names a bad filter, limit "
            'or cursor; 503 `{"error": "Audit log unavailable"}` when the log cannot be read.',
            operation_id="listAuditEvents",
        )
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Askgate API",
            "version": API_VERSION,
            "description": "Answers about the code in your workspaces. Authenticate with `x-api-key: KEY`, "
            "`Authorization: Bearer KEY` or a dashboard session (plus `X-CSRFToken` on writes). Every error is "
            'JSON `{"error": …}`; unknown /api paths are 404 and wrong methods 405 in that shape.',
        },
        "security": EVERY_CALLER,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "The same keys as x-api-key."},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "session",
                    "description": "A signed-in dashboard session; writes also need the X-CSRFToken header.",
                },
            },
        },
    }


DOCUMENT = build_document()


@bp.get("/openapi.json")
@limiter.exempt
def openapi():
    """No credentials needed: the document says how to get them."""
    return jsonify(DOCUMENT)
