"""The JSON API: the blueprint and its views live in ``routes``, errors in ``errors``."""
