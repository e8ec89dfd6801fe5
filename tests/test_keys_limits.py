"""A key's limits: one parser for the shape of scopes, workspaces, rate_limit, allowed_ips and a rotation's grace."""

from __future__ import annotations

import pytest

from app.inputs import DEFAULT_KEY_SCOPES, KEY_SCOPES, ROTATE_GRACE_DEFAULT, ROTATE_GRACE_MAX
from app.keys.errors import KeyRequestError
from app.keys.limits import parse_grace_seconds, parse_key_limits

DEFAULTS = {"scopes": ["ask", "workspaces:read"], "workspaces": None, "rate_limit": None, "allowed_ips": None}
SCOPES_MESSAGE = 'scopes must be a non-empty list of "ask", "workspaces:read", "workspaces:write"'


def _refused(body: dict, partial: bool = False) -> str:
    with pytest.raises(KeyRequestError) as info:
        parse_key_limits(body, partial=partial)
    return str(info.value)


def test_the_contract_constants():
    assert KEY_SCOPES == ("ask", "workspaces:read", "workspaces:write")
    assert DEFAULT_KEY_SCOPES == ("ask", "workspaces:read")
    assert (ROTATE_GRACE_DEFAULT, ROTATE_GRACE_MAX) == (86_400, 604_800)


def test_defaults_fill_what_is_absent_and_other_fields_are_ignored():
    assert parse_key_limits({}, partial=False) == DEFAULTS
    assert parse_key_limits({"name": "ci", "expires_in_days": 30}, partial=False) == DEFAULTS
    assert parse_key_limits({}, partial=True) == {}
    assert parse_key_limits({"rate_limit": 5}, partial=True) == {"rate_limit": 5}
    first, second = parse_key_limits({}, partial=False), parse_key_limits({}, partial=False)
    first["scopes"].append("workspaces:write")
    assert second["scopes"] == ["ask", "workspaces:read"]  # never one shared list


def test_good_values_are_normalised():
    parsed = parse_key_limits(
        {
            "scopes": ["workspaces:write", "ask", "ask"],
            "workspaces": ["b", "a", "b"],
            "rate_limit": 1_000_000,
            "allowed_ips": [" 10.1.2.3/8 ", "203.0.113.7", "2001:DB8::1/32", "::ffff:192.168.0.0/112", "10.0.0.0/8"],
        },
        partial=False,
    )
    assert parsed == {
        "scopes": ["ask", "workspaces:write"],
        "workspaces": ["b", "a"],
        "rate_limit": 1_000_000,
        "allowed_ips": ["10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32", "192.168.0.0/16"],
    }
    assert parse_key_limits({"workspaces": None, "allowed_ips": None, "rate_limit": None}, partial=True) == {
        "workspaces": None,
        "allowed_ips": None,
        "rate_limit": None,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"scopes": []}, SCOPES_MESSAGE),
        ({"scopes": None}, SCOPES_MESSAGE),
        ({"scopes": "ask"}, SCOPES_MESSAGE),
        (
            {"scopes": ["ask", "admin"]},
            'scopes: \'admin\' is not a scope; choose from "ask", "workspaces:read", "workspaces:write"',
        ),
        ({"scopes": [1]}, 'scopes: int is not a scope; choose from "ask", "workspaces:read", "workspaces:write"'),
        ({"workspaces": []}, "workspaces must be null (every workspace) or a non-empty list of workspace ids"),
        ({"workspaces": "a"}, "workspaces must be null (every workspace) or a non-empty list of workspace ids"),
        (
            {"workspaces": ["../etc"]},
            "workspaces: '../etc' is not a workspace id (1-64 letters, digits, '.', '_' or '-')",
        ),
        ({"workspaces": [7]}, "workspaces: int is not a workspace id (1-64 letters, digits, '.', '_' or '-')"),
        ({"workspaces": ["w"] * 1001}, "workspaces can list at most 1000 workspace ids"),
        *[
            (
                {"rate_limit": value},
                "rate_limit must be a whole number of requests per hour from 1 to 1000000, "
                "or null for the instance's limit",
            )
            for value in (0, -1, 1_000_001, 2.5, "10", True, [])
        ],
        ({"allowed_ips": []}, "allowed_ips must be null (any address) or a non-empty list of addresses or CIDR ranges"),
        (
            {"allowed_ips": "10.0.0.0/8"},
            "allowed_ips must be null (any address) or a non-empty list of addresses or CIDR ranges",
        ),
        (
            {"allowed_ips": ["10.0.0.0/33"]},
            "allowed_ips: '10.0.0.0/33' is not an IP address or CIDR range "
            "(examples: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32)",
        ),
        (
            {"allowed_ips": ["example.com"]},
            "allowed_ips: 'example.com' is not an IP address or CIDR range "
            "(examples: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32)",
        ),
        ({"allowed_ips": [None]}, "allowed_ips: NoneType is not an address or CIDR range"),
        ({"allowed_ips": ["10.0.0.1"] * 101}, "allowed_ips can list at most 100 addresses or ranges"),
    ],
)
def test_bad_values_name_their_field(body, message):
    assert _refused(body) == message
    assert _refused(body, partial=True) == message


@pytest.mark.parametrize("value", [0, 1, 86_400, 604_800])
def test_grace_seconds_in_range(value):
    assert parse_grace_seconds(value) == value


@pytest.mark.parametrize("value", [-1, 604_801, 1.5, "60", None, True, False])
def test_grace_seconds_out_of_range_or_not_whole(value):
    with pytest.raises(KeyRequestError) as info:
        parse_grace_seconds(value)
    assert str(info.value) == "grace_seconds must be a whole number of seconds from 0 to 604800"
