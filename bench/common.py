"""Credentials the benchmark modules share (throwaway values for throwaway stores)."""

PASSWORD = "bench password 1234"
ADMIN_KEY = "bench-admin-" + "a" * 40
CLIENT_KEY = "bench-client-" + "c" * 40
