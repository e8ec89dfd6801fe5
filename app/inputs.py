"""Every input limit, in one place: forms, the API, the CLI and the domain code all import them from here.

Text is stripped before it is checked, everywhere: "  x  " is the one-character "x".
"""

from __future__ import annotations

import re

QUESTION_MAX = 2000  # characters, after stripping
TOP_K_MIN, TOP_K_MAX, TOP_K_DEFAULT = 1, 20, 5

KEY_NAME_MAX = 100
KEY_EXPIRY_DAYS = (None, 30, 90, 365)  # None: never expires
KEY_EXPIRY_CHOICES = ", ".join(str(days) for days in KEY_EXPIRY_DAYS if days)  # "30, 90, 365", for messages
# What a key may do; a key without a scope is refused that kind of request. workspaces:write is for admins to give.
KEY_SCOPES = ("ask", "workspaces:read", "workspaces:write")
DEFAULT_KEY_SCOPES = ("ask", "workspaces:read")
KEY_RATE_LIMIT_ADMIN_MAX = 1_000_000  # requests per hour; others up to API_RATE_LIMIT
KEY_ALLOWED_IPS_MAX = 100  # entries in one key's allowed_ips
KEY_WORKSPACES_MAX = 1000  # ids in one key's workspaces
ROTATE_GRACE_DEFAULT = 86_400  # seconds the old secret of a rotated key keeps working
ROTATE_GRACE_MAX = 604_800  # a week

USERNAME_MAX = 32
USERNAME_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{USERNAME_MAX - 1}}}$")
PASSWORD_MIN, PASSWORD_MAX = 10, 1024

WORKSPACE_ID_MAX = 64
WORKSPACE_ID_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{WORKSPACE_ID_MAX - 1}}}$")


def stripped(value: object) -> object:
    """``value`` without surrounding whitespace if it is text; anything else as it is (a WTForms filter too)."""
    return value.strip() if isinstance(value, str) else value
