"""What a key may do, checked once: its scopes, workspaces, hourly limit and addresses, and a rotation's grace.

``parse_key_limits`` checks the shape of the four limits, whoever sends them (the API, the form, the CLI, and the
store itself when it loads a file). The rules that need context (who may give ``workspaces:write``, which
workspaces exist, the instance's ``API_RATE_LIMIT``) are in ``app.accounts``.
"""

from __future__ import annotations

import ipaddress

from app.inputs import (
    DEFAULT_KEY_SCOPES,
    KEY_ALLOWED_IPS_MAX,
    KEY_RATE_LIMIT_ADMIN_MAX,
    KEY_SCOPES,
    KEY_WORKSPACES_MAX,
    ROTATE_GRACE_MAX,
    WORKSPACE_ID_MAX,
    WORKSPACE_ID_RE,
)
from app.keys.errors import KeyRequestError

LIMIT_FIELDS = ("scopes", "workspaces", "rate_limit", "allowed_ips")
DEFAULT_LIMITS = {"scopes": list(DEFAULT_KEY_SCOPES), "workspaces": None, "rate_limit": None, "allowed_ips": None}
SCOPE_CHOICES = ", ".join(f'"{scope}"' for scope in KEY_SCOPES)
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


def default_limits() -> dict:
    """The limits of a key that was given none: today's behaviour (a fresh copy, safe to change)."""
    return {name: (list(value) if isinstance(value, list) else value) for name, value in DEFAULT_LIMITS.items()}


def parse_key_limits(body: dict, *, partial: bool) -> dict:
    """The limits present in ``body``, checked and normalised; every one of the four when not ``partial``
    (defaults for those absent). Other fields of ``body`` are ignored. Raises KeyRequestError naming the field."""
    parsed = {} if partial else default_limits()
    for name, parse in _PARSERS.items():
        if name in body:
            parsed[name] = parse(body[name])
    return parsed


def _scopes(value: object) -> list[str]:
    message = f"scopes must be a non-empty list of {SCOPE_CHOICES}"
    if not isinstance(value, list) or not value:
        raise KeyRequestError(message)
    for scope in value:
        if scope not in KEY_SCOPES or not isinstance(scope, str):
            shown = repr(scope) if isinstance(scope, str) else type(scope).__name__
            raise KeyRequestError(f"scopes: {shown[:80]} is not a scope; choose from {SCOPE_CHOICES}")
    return [scope for scope in KEY_SCOPES if scope in value]  # one order everywhere, no repeats


def _workspaces(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise KeyRequestError("workspaces must be null (every workspace) or a non-empty list of workspace ids")
    if len(value) > KEY_WORKSPACES_MAX:
        raise KeyRequestError(f"workspaces can list at most {KEY_WORKSPACES_MAX} workspace ids")
    ids: list[str] = []
    for entry in value:
        if not isinstance(entry, str) or not WORKSPACE_ID_RE.fullmatch(entry):
            shown = repr(entry)[:80] if isinstance(entry, str) else type(entry).__name__
            raise KeyRequestError(
                f"workspaces: {shown} is not a workspace id (1-{WORKSPACE_ID_MAX} letters, digits, '.', '_' or '-')"
            )
        if entry not in ids:
            ids.append(entry)
    return ids


def _rate_limit(value: object) -> int | None:
    return check_rate_limit(value, KEY_RATE_LIMIT_ADMIN_MAX)


def check_rate_limit(value: object, maximum: int) -> int | None:
    """``value`` as a key's hourly limit of at most ``maximum``; None is the instance's ``API_RATE_LIMIT``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise KeyRequestError(
            f"rate_limit must be a whole number of requests per hour from 1 to {maximum}, "
            "or null for the instance's limit"
        )
    return value


def _allowed_ips(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise KeyRequestError("allowed_ips must be null (any address) or a non-empty list of addresses or CIDR ranges")
    if len(value) > KEY_ALLOWED_IPS_MAX:
        raise KeyRequestError(f"allowed_ips can list at most {KEY_ALLOWED_IPS_MAX} addresses or ranges")
    networks: list[str] = []
    for entry in value:
        text = str(_network(entry))
        if text not in networks:
            networks.append(text)
    return networks


def _network(entry: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(entry, str):
        raise KeyRequestError(f"allowed_ips: {type(entry).__name__} is not an address or CIDR range")
    try:
        net = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise KeyRequestError(
            f"allowed_ips: {entry[:80]!r} is not an IP address or CIDR range (examples: 203.0.113.7, 10.0.0.0/8, "
            "2001:db8::/32)"
        ) from None
    if net.version == 6 and net.subnet_of(_MAPPED_V4):
        # As in ALLOWED_IPS: an IPv4-mapped range (::ffff:10.0.0.0/104) means the IPv4 one.
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def parse_grace_seconds(value: object) -> int:
    """How long the old secret of a rotated key keeps working: 0 (not at all) to ``ROTATE_GRACE_MAX`` seconds."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ROTATE_GRACE_MAX:
        raise KeyRequestError(f"grace_seconds must be a whole number of seconds from 0 to {ROTATE_GRACE_MAX}")
    return value


_PARSERS = {"scopes": _scopes, "workspaces": _workspaces, "rate_limit": _rate_limit, "allowed_ips": _allowed_ips}
