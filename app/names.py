"""What a name may contain: one rule for key names, usernames and workspace ids, and how stored names are shown.

A name is text people read and compare. Characters that are not text (lone surrogates, which cannot even be
written as UTF-8), that are invisible (zero-width characters) or that reorder what is shown around them (bidi
overrides) make two different names look alike, or break every page that shows them. Usernames and workspace ids
also have ASCII patterns of their own; this rule comes first so the refusal says what is wrong.
"""

from __future__ import annotations

import re
import unicodedata

_KINDS = (
    ("\ud800-\udfff", "a lone surrogate, which is not text"),
    ("\u202a-\u202e\u2066-\u2069", "a bidi control, which reorders the text around it"),
    ("\u200b-\u200d\u2060\ufeff", "a zero-width character"),
    ("\x00-\x1f\x7f-\x9f", "a control character"),
)
_UNSAFE = re.compile("[" + "".join(chars for chars, _ in _KINDS) + "]")
_KIND_RES = [(re.compile(f"[{chars}]"), kind) for chars, kind in _KINDS]


def name_problem(value: str, field: str) -> str | None:
    """Why ``value`` cannot be the ``field`` of something (a message naming the field), or None if it can."""
    match = _UNSAFE.search(value)
    if match is None:
        return None
    char = match.group()
    kind = next(kind for pattern, kind in _KIND_RES if pattern.match(char))
    label = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}" + (f" {label}" if label else "")
    return f"{field} must be plain text: character {match.start() + 1} is {code}, {kind}"


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: str) -> str:
    """``text`` safe to show: every character the rule refuses appears as a visible escape (``\\u202e``)."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


_ON_PAGE = re.compile("[" + _KINDS[0][0] + _KINDS[1][0] + "]")


def finalize_for_page(value: object) -> object:
    """Jinja's ``finalize``: every value a page prints, with lone surrogates and bidi controls escaped.

    A lone surrogate cannot be encoded, so one stored name would otherwise turn every page that shows it into a
    500; a bidi control would reorder what is shown around it. Line breaks and the rest stay as they are.
    """
    if isinstance(value, str) and _ON_PAGE.search(value):
        escaped = _ON_PAGE.sub(_escape, value)
        return type(value)(escaped) if type(value) is not str else escaped  # Markup stays Markup, unescaped
    return value
