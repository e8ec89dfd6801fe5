"""The API's own limit counting: clock-aligned hourly windows, headers, and the failed-attempt throttle."""

from __future__ import annotations

import time

from app.ratelimits import API_WINDOW, ClientLimits, LocalCounter


def test_local_counter_counts_per_key_and_starts_again_after_the_window():
    counter = LocalCounter()
    now = 1_000_000.0
    assert [counter.incr("a", now + 10, now) for _ in range(3)] == [1, 2, 3]
    assert counter.incr("b", now + 10, now) == 1
    assert counter.incr("a", now + 30, now + 10) == 1  # the window of "a" ended at now + 10


def test_hits_carry_the_headers_and_stop_at_the_limit():
    limits = ClientLimits(3, "5/minute", None)
    verdicts = [limits.hit("key:k1") for _ in range(4)]

    reset = (int(time.time() // API_WINDOW) + 1) * API_WINDOW
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.headers["X-RateLimit-Remaining"] for v in verdicts] == ["2", "1", "0", "0"]
    assert {v.headers["X-RateLimit-Limit"] for v in verdicts} == {"3"}
    assert {v.headers["X-RateLimit-Reset"] for v in verdicts} == {str(reset)}
    assert "Retry-After" not in verdicts[2].headers
    assert 0 < int(verdicts[3].headers["Retry-After"]) <= API_WINDOW
    assert limits.hit("key:k2").allowed  # buckets are separate


def test_failed_attempts_throttle_the_address_once_over_the_limit():
    limits = ClientLimits(100, "2/minute", None)
    assert limits.throttled("198.51.100.7") is None
    assert [limits.record_failure("198.51.100.7") for _ in range(2)] == [None, None]
    over = limits.record_failure("198.51.100.7")
    assert over is not None and over["X-RateLimit-Limit"] == "2" and over["X-RateLimit-Remaining"] == "0"
    assert 0 < int(over["Retry-After"]) <= 60
    assert limits.throttled("198.51.100.7") == limits.throttled("198.51.100.7") is not None
    assert limits.throttled("198.51.100.8") is None


def test_counters_name_buckets_never_keys():
    limits = ClientLimits(10, "5/minute", None)
    limits.hit("key:key_0123")
    limits.record_failure("203.0.113.9")
    names = limits.local.keys()
    assert any("/api/key:key_0123/" in name for name in names)
    assert any("/authfail/203.0.113.9/" in name for name in names)
