"""Create, revoke and look up a key on the Redis key store (one hash per key) at 10, 10,000 and 100,000 keys.

    .venv/bin/python bench/redis_store.py [--rounds 5] [--ops 40]

A private redis-server on a free loopback port (no persistence) holds the three stores side by side, in databases
0, 1 and 2, filled in bulk through ``replace_all`` (pipelined, one MULTI). Two ``KeyStore`` instances with their own
connections stand for two processes: the writer creates and revokes, the reader looks up. Rounds interleave the
sizes, so a burst of load elsewhere hits every size alike; each figure is the median over all rounds. Flat means
the 100,000-key figure is within a small factor (2x) of the 10-key one, measured in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.documents.redisdoc import redis_client  # noqa: E402
from app.keys.store import SCHEMA_VERSION, KeyStore, iso, key_record, utcnow  # noqa: E402
from bench.e2e import RedisServer  # noqa: E402

SIZES = (10, 10_000, 100_000)
FLAT = 2.0  # the largest ratio, 100,000 keys to 10, still called flat


def fill(url: str, count: int) -> None:
    """``count`` active keys of ``bench``, written in bulk (digests of random bytes: nobody needs their secrets)."""
    stamp = iso(utcnow())
    records = [
        key_record(
            f"key_{n:016x}", f"bench-{n}", "bench", "agk_bench000", hashlib.sha256(os.urandom(16)).hexdigest(), stamp
        )
        for n in range(count)
    ]
    KeyStore(redis_client=redis_client(url)).file.replace_all({"version": SCHEMA_VERSION, "keys": records})


class Size:
    """One store: a writer and a reader process's view of it, and a key the reader looks up."""

    def __init__(self, url: str, count: int) -> None:
        self.count = count
        start = time.perf_counter()
        fill(url, count)
        self.fill_seconds = time.perf_counter() - start
        self.writer = KeyStore(redis_client=redis_client(url))
        self.reader = KeyStore(redis_client=redis_client(url))
        self.raw = self.writer.create("bench", "looked-up").key
        start = time.perf_counter()
        assert self.reader.lookup(self.raw) is not None
        self.load_seconds = time.perf_counter() - start  # the reader's one full load
        self.times: dict[str, list[float]] = {name: [] for name in OPERATIONS}

    def round(self, ops: int) -> None:
        created = []
        for n in range(ops):
            start = time.perf_counter()
            created.append(self.writer.create("bench", f"new-{n}").record["id"])
            self.times["create"].append(time.perf_counter() - start)
        for key_id in created:
            start = time.perf_counter()
            self.writer.revoke(key_id)
            self.times["revoke"].append(time.perf_counter() - start)
            start = time.perf_counter()
            found = self.reader.lookup(self.raw)  # fetches the one record that changed, and its index entries
            self.times["lookup after a change"].append(time.perf_counter() - start)
            assert found is not None and found["revoked_at"] is None
        for _ in range(ops * 5):
            start = time.perf_counter()
            self.reader.lookup(self.raw)
            self.times["lookup"].append(time.perf_counter() - start)
        assert self.reader.file.full_loads == 1, "a change made the reader load everything again"


OPERATIONS = ("create", "revoke", "lookup", "lookup after a change")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=40, help="creates and revokes per size and round")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="askgate-bench-redis-"))
    server = RedisServer(scratch)
    try:
        print(f"redis-server {server.version} on 127.0.0.1:{server.port}; load average {os.getloadavg()[0]:.1f}")
        sizes = []
        for db, count in enumerate(SIZES):
            sizes.append(Size(server.url.rsplit("/", 1)[0] + f"/{db}", count))
            print(
                f"  {count:>7,} keys: filled in {sizes[-1].fill_seconds:.1f} s, "
                f"a process's first full load {sizes[-1].load_seconds * 1000:.0f} ms"
            )
        for _ in range(args.rounds):
            for size in sizes:
                size.round(args.ops)
        print()
        print(f"| operation (median µs) | {' | '.join(f'{count:,} keys' for count in SIZES)} | 100,000 / 10 |")
        print(f"|---|{'---:|' * len(SIZES)}---:|")
        flat = True
        for name in OPERATIONS:
            medians = [statistics.median(size.times[name]) * 1e6 for size in sizes]
            ratio = medians[-1] / medians[0]
            flat &= ratio <= FLAT
            print(f"| {name} | {' | '.join(f'{m:,.0f}' for m in medians)} | {ratio:.2f}x |")
        print()
        print(
            f"{'flat' if flat else 'NOT flat'}: every 100,000-key figure within {FLAT:g}x of the 10-key one "
            f"({args.rounds} interleaved rounds; lookups by a second connection that never reloaded everything)"
        )
        return 0 if flat else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
