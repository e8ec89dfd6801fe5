"""What one dashboard key may do: its addresses, scopes, workspaces and hourly limit (issue 12).

The request hook calls :func:`refusal` for dashboard keys only, after ``ALLOWED_IPS`` and before the hourly
limit; sessions, ``ADMIN_API_KEY`` and ``VALID_API_KEYS`` never come here. A key's limits are parsed once, into
a :class:`KeyRules` kept with its cached principal, so a request pays a few dict and set probes, not a parse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Request

from app.config import ConfigError, parse_networks
from app.inputs import DEFAULT_KEY_SCOPES
from app.ipallow import IPAllowlist

log = logging.getLogger("askgate.auth")


# The scope each endpoint needs from a dashboard key; endpoints not listed need none (whoami, keys).
ENDPOINT_SCOPES = {
    "api.ask": "ask",
    "api.workspaces": "workspaces:read",
    "api.put_workspace": "workspaces:write",
    "api.delete_workspace": "workspaces:write",
}
IP_DENIED = "Access denied from this IP address"


@dataclass(frozen=True)
class KeyRules:
    """A key record's limits, parsed. ``None`` means no limit of that kind."""

    allowlist: IPAllowlist | None
    scopes: frozenset[str]
    workspaces: frozenset[str] | None
    rate_limit: int | None


def rules_for(record: dict) -> KeyRules:
    """Parse a key record's limits once. A stored range that does not parse allows no address (fails closed)."""
    allowlist = None
    if record.get("allowed_ips") is not None:
        try:
            networks = tuple(net for entry in record["allowed_ips"] for net in parse_networks("allowed_ips", entry))
        except (ConfigError, TypeError, AttributeError):
            log.warning("key %s has an unreadable allowed_ips: refusing it from every address", record.get("id"))
            networks = ()
        allowlist = IPAllowlist(networks)
    workspaces = record.get("workspaces")
    return KeyRules(
        allowlist=allowlist,
        scopes=frozenset(record.get("scopes") or DEFAULT_KEY_SCOPES),
        workspaces=None if workspaces is None else frozenset(workspaces),
        rate_limit=record.get("rate_limit"),
    )


def refusal(rules: KeyRules, req: Request, endpoint: str | None) -> tuple[str, str] | None:
    """Why the key may not make this request to ``endpoint`` — ``(log outcome, message)`` for a 403 — or None.

    A key with the default limits costs one dict probe here (whoami) or two (a scoped endpoint); ``req`` is read
    only for a key that has addresses or workspaces to check.
    """
    if rules.allowlist is not None and not rules.allowlist.allowed(req.remote_addr):
        return "ip_denied", IP_DENIED
    scope = ENDPOINT_SCOPES.get(endpoint)
    if scope is not None and scope not in rules.scopes:
        return "scope_denied", f"This key lacks the {scope} scope"
    if rules.workspaces is not None:
        workspace_id = _workspace_of(req, endpoint)
        if workspace_id is not None and workspace_id not in rules.workspaces:
            return "workspace_denied", f"This key cannot access workspace {workspace_id}"
    return None


def _workspace_of(req: Request, endpoint: str | None) -> str | None:
    """The workspace a request is about: the path's, or for an ask the JSON body's ``workspaceId``."""
    workspace_id = (req.view_args or {}).get("workspace_id")
    if workspace_id is None and endpoint == "api.ask":
        try:
            body = req.get_json(silent=True)  # cached: the view reads the same parse
        except RecursionError:
            return None  # nested too deeply to parse: the view refuses it, no workspace is read
        workspace_id = body.get("workspaceId") if isinstance(body, dict) else None
    return workspace_id if isinstance(workspace_id, str) else None


def visible_workspaces(rules: KeyRules | None, listing: list[dict]) -> list[dict]:
    """``GET /api/workspaces``' listing as the caller may see it: a limited key only its own workspaces."""
    if rules is None or rules.workspaces is None:
        return listing
    return [ws for ws in listing if ws["id"] in rules.workspaces]
