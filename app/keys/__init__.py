"""API keys: their format and the store that keeps their digests."""

from app.keys.errors import KeyRequestError
from app.keys.format import digest, generate_key, is_well_formed
from app.keys.store import KeyStore, key_status, public_view

__all__ = [
    "KeyRequestError",
    "KeyStore",
    "digest",
    "generate_key",
    "is_well_formed",
    "key_status",
    "public_view",
]
