"""The API key format: ``agk_`` + 43 random base62 characters (256 bits) + a 6-character CRC32 checksum.

Like GitHub's tokens, the checksum lets us refuse a mistyped key without a lookup and lets secret
scanners recognise a leaked key by ``agk_[0-9A-Za-z]{40,}`` alone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

PREFIX = "agk_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
KEY_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
DISPLAY_LENGTH = len(PREFIX) + 8
KEY_RE = re.compile(rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of the random part."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_key() -> str:
    """A new random key; it exists only until the response that shows it is sent."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + body + checksum(body)


# Two base62 digits -> their value: a checksum reads back as three lookups instead of six divisions (every API
# request with a key checks one). The checksum is no secret (anyone can compute it from the key they send).
_PAIRS = {a + b: ALPHABET.index(a) * 62 + ALPHABET.index(b) for a in ALPHABET for b in ALPHABET}


def looks_like_key(text: str) -> bool:
    """Cheaply, whether ``text`` could be a dashboard key at all (``is_well_formed`` says whether it is one)."""
    return len(text) == KEY_LENGTH and text.startswith(PREFIX)


def is_well_formed(key: str) -> bool:
    """True if ``key`` has the agk_ shape and its checksum matches (no lookup needed to refuse typos)."""
    if not isinstance(key, str) or len(key) != KEY_LENGTH or not KEY_RE.match(key):
        return False
    body, mark = key[len(PREFIX) : -CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    value = (_PAIRS[mark[:2]] * 3844 + _PAIRS[mark[2:4]]) * 3844 + _PAIRS[mark[4:]]  # checksum() read back
    return value == zlib.crc32(body.encode("ascii"))


def digest(key: str) -> str:
    """SHA-256 hex digest: the only form in which a key is ever stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown again: enough to recognise it, far too little to use it."""
    return key[:DISPLAY_LENGTH]
