"""whoami with 1,000 dashboard keys in use vs the same keys idle, side by side in one run (issue 14).

"In use": wrk sends every request with the next of the 1,000 keys, so each key is used many times a second, and each
worker's usage recorder adds the counts and a last use for all of them to the usage store at every flush (every
``USAGE_FLUSH_SECONDS``, default 10; ``--flush-seconds``). "Idle": the same wrk script, the same server, with one of
the keys only; the other 999 sit unused. Last use lives apart from the keys (``app/usage.py``), so using keys must
not make the key store reload: the target is a ratio of at least 0.95 (within 0.05). Both the requests/s ratio and
the CPU ratio (the workers' CPU per request, idle / in use: steadier on a shared machine) are printed.

    .venv/bin/python bench/keys_in_use.py                 # Redis store and files store, 3 rounds of 5 s each
    .venv/bin/python bench/keys_in_use.py --store redis --rounds 5 --duration 10

Loopback only; gunicorn with the project's gunicorn.conf.py on Redis rate limits (several workers), a private
redis-server on a free port (no persistence), wrk bounded by ``-d``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.keys.format import digest, display_prefix, generate_key  # noqa: E402
from app.keys.store import iso, key_record, utcnow  # noqa: E402
from app.stores import Stores  # noqa: E402
from bench.common import PASSWORD  # noqa: E402
from bench.e2e import (  # noqa: E402
    WRK_REPORT,
    Gunicorn,
    LoadSettings,
    RedisServer,
    cpu_seconds,
    ensure_wrk,
    run_wrk,
    server_env,
)

# Every request takes the next key of keys.txt (one per line); each wrk thread starts at its own place.
ROTATING_KEYS = r"""
local keys = {}
for line in io.lines(KEYS_FILE) do keys[#keys + 1] = line end
local n = math.random(#keys)
request = function()
  n = n % #keys + 1
  wrk.headers["x-api-key"] = keys[n]
  return wrk.format("GET", "/api/whoami")
end
"""


def bulk_keys(stores: Stores, owner: str, count: int) -> list[tuple[str, str]]:
    """``count`` active dashboard keys of ``owner`` written in one document change; (id, raw key) each."""
    created = iso(utcnow())
    made, records = [], []
    for number in range(count):
        raw = generate_key()
        key_id = f"key_{number:016x}"
        made.append((key_id, raw))
        records.append(key_record(key_id, f"bulk-{number}", owner, display_prefix(raw), digest(raw), created))
    document = stores.keys.file.read()
    document["keys"].extend(records)
    stores.keys.file.replace_all(document)
    return made


def script_for(scratch: Path, name: str, keys: list[str]) -> Path:
    keys_file = scratch / f"{name}.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    keys_file.chmod(0o600)
    script = scratch / f"{name}.lua"
    script.write_text(f"KEYS_FILE = {str(keys_file)!r}\n" + ROTATING_KEYS + WRK_REPORT)
    return script


def run_store(
    store: str, redis_url: str, workers: int, count: int, load: LoadSettings, scratch: Path, flush_seconds: int
) -> dict:
    workspaces = scratch / f"workspaces-{store}"
    workspaces.mkdir()
    stores = Stores.open(redis_url if store == "redis" else "files", workspaces)
    stores.users.create("bench", PASSWORD, "member")
    keys = [raw for _, raw in bulk_keys(stores, "bench", count)]
    env = server_env(workspaces, redis_url, workers)
    env |= {"USAGE_FLUSH_SECONDS": str(flush_seconds), "AUTH_FAILURE_LIMIT": "1000000/minute"}
    if store == "redis":
        env["STORE_URL"] = redis_url
    scripts = {
        "idle": script_for(scratch, f"idle-{store}", keys[:1]),
        "in use": script_for(scratch, f"use-{store}", keys),
    }
    wrk = ensure_wrk()
    server = Gunicorn("wsgi:app", env, "/api/health", scratch / f"askgate-{store}.log")
    samples: dict[str, list] = {"idle": [], "in use": []}
    ratios, cpu_ratios = [], []
    try:
        url = server.url + "/api/whoami"
        for round_no in range(1, load.rounds + 1):
            order = ["idle", "in use"] if round_no % 2 else ["in use", "idle"]  # drift hits both alike
            for name in order:
                run_wrk(wrk, scripts[name], url, {}, load.warmup, load)
                pids = server.worker_pids()
                cpu_before = cpu_seconds(pids)
                sample = run_wrk(wrk, scripts[name], url, {}, load.duration, load)
                sample.cpu_us_per_request = (cpu_seconds(pids) - cpu_before) * 1e6 / max(1, sample.requests)
                if sample.errors:
                    raise SystemExit(f"{store} {name}: {sample.errors} errors (non-2xx or socket): not a measurement")
                samples[name].append(sample)
            ratios.append(samples["in use"][-1].rps / samples["idle"][-1].rps)
            cpu_ratios.append(samples["idle"][-1].cpu_us_per_request / samples["in use"][-1].cpu_us_per_request)
            print(
                f"  [{store} round {round_no}/{load.rounds}] idle {samples['idle'][-1].rps:7.0f} req/s "
                f"({samples['idle'][-1].cpu_us_per_request:4.0f} µs cpu/req)  in use {samples['in use'][-1].rps:7.0f}"
                f" req/s ({samples['in use'][-1].cpu_us_per_request:4.0f} µs cpu/req)  ratio {ratios[-1]:.3f}"
                f"  cpu ratio {cpu_ratios[-1]:.3f}",
                flush=True,
            )
    finally:
        server.stop()
    return {
        "store": store,
        "idle": statistics.median(s.rps for s in samples["idle"]),
        "in_use": statistics.median(s.rps for s in samples["in use"]),
        "cpu_idle": statistics.median(s.cpu_us_per_request for s in samples["idle"]),
        "cpu_in_use": statistics.median(s.cpu_us_per_request for s in samples["in use"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=("redis", "files", "both"), default="both")
    p.add_argument("--keys", type=int, default=1000, help="dashboard keys, all in use in the 'in use' runs (1000)")
    p.add_argument("--workers", type=int, default=3, help="gunicorn workers (3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (10)")
    p.add_argument("--flush-seconds", type=int, default=10, help="USAGE_FLUSH_SECONDS (10, the default)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run (1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each idle and in use back to back (3)")
    p.add_argument("--connections", type=int, default=8, help="wrk -c (8)")
    args = p.parse_args(argv)
    load = LoadSettings(duration=args.duration, warmup=args.warmup, connections=args.connections, rounds=args.rounds)
    scratch = Path(tempfile.mkdtemp(prefix="askgate-bench-keys-"))
    redis = RedisServer(scratch)
    results = []
    try:
        for store in ("redis", "files") if args.store == "both" else (args.store,):
            print(f"{store} store, {args.keys} keys, {args.workers} workers, Redis {redis.version} limits", flush=True)
            results.append(run_store(store, redis.url, args.workers, args.keys, load, scratch, args.flush_seconds))
    finally:
        redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n| store | idle req/s | {args.keys} keys in use | CPU µs/req idle / in use | ratio | CPU ratio | rounds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    ok = True
    for r in results:
        ok = ok and r["ratio"] >= 0.95
        rounds = ", ".join(f"{x:.3f}" for x in r["ratios"])
        print(
            f"| {r['store']} | {r['idle']:.0f} | {r['in_use']:.0f} | {r['cpu_idle']:.0f} / {r['cpu_in_use']:.0f} "
            f"| **{r['ratio']:.3f}** | {r['cpu_ratio']:.3f} | {rounds} |"
        )
    print(f"\ntarget: ratio at least 0.95 (within 0.05): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
