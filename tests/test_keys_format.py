"""The key format: agk_ + base62 random part + CRC32 checksum, refused on a typo without any lookup."""

from __future__ import annotations

import hashlib
import re
import zlib

import pytest

from app.keys import format as key_format
from app.keys.format import ALPHABET, checksum, digest, display_prefix, generate_key, is_well_formed
from app.keys.store import KeyStore

SCANNER_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")


def test_generated_key_matches_the_published_pattern():
    key = generate_key()
    assert SCANNER_RE.fullmatch(key)
    assert key.startswith("agk_")
    assert len(key) == 4 + 43 + 6
    assert is_well_formed(key)


def test_random_part_carries_at_least_256_bits():
    assert 62**key_format.RANDOM_LENGTH >= 2**256
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    # Every position draws from the whole alphabet, not a fixed or narrowed set.
    bodies = [k[4:-6] for k in keys]
    assert set("".join(bodies)) <= set(ALPHABET)
    assert len(set("".join(bodies))) > 55


def test_checksum_is_the_crc32_of_the_random_part_in_base62():
    key = generate_key()
    body, tail = key[4:-6], key[-6:]
    number = 0
    for ch in tail:
        number = number * 62 + ALPHABET.index(ch)
    assert number == zlib.crc32(body.encode("ascii"))
    assert checksum(body) == tail


def test_every_one_character_typo_is_refused():
    key = generate_key()
    refused = 0
    for position in range(4, len(key)):
        for ch in ALPHABET:
            if ch == key[position]:
                continue
            typo = key[:position] + ch + key[position + 1 :]
            assert not is_well_formed(typo), (position, ch)
            refused += 1
    assert refused == (len(key) - 4) * 61


def _swap_first_unequal_neighbours(key: str) -> str:
    i = next(i for i in range(4, len(key) - 1) if key[i] != key[i + 1])
    return key[:i] + key[i + 1] + key[i] + key[i + 2 :]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: "agk-" + k[4:],  # wrong separator
        lambda k: "AGK_" + k[4:],  # wrong case of the prefix
        lambda k: k[:-1],  # one character short
        lambda k: k + "A",  # one character long
        lambda k: _swap_first_unequal_neighbours(k),
        lambda k: k[:20] + "-" + k[21:],  # not base62
        lambda k: " " + k,
        lambda k: "",
    ],
)
def test_malformed_keys_are_refused(mangle):
    key = generate_key()
    mangled = mangle(key)
    assert mangled != key
    assert not is_well_formed(mangled)


def test_non_strings_are_refused():
    assert not is_well_formed(None)  # type: ignore[arg-type]
    assert not is_well_formed(b"agk_")  # type: ignore[arg-type]


def test_typo_is_refused_without_reading_the_store(tmp_path):
    """A corrupt store raises on any real lookup, so a None here proves the file was never touched."""
    (tmp_path / "api-keys.json").write_text("{not json")
    store = KeyStore(tmp_path)
    key = generate_key()
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert store.lookup(typo) is None
    from app.documents.sharedfile import StoreUnavailable

    with pytest.raises(StoreUnavailable):
        store.lookup(key)


def test_digest_is_sha256_hex_of_the_whole_key():
    key = generate_key()
    assert digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest(key))


def test_display_prefix_is_short_enough_to_be_useless():
    key = generate_key()
    assert display_prefix(key) == key[:12]
    assert not is_well_formed(display_prefix(key))
