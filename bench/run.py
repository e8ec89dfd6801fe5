"""``make bench``: what each of Askgate's guards costs, as ratios to bare Flask measured in the same run.

Runs the in-process micro-benchmarks (``bench/inprocess.py``), then the end-to-end load runs under gunicorn
with the project's ``gunicorn.conf.py`` and ``wrk`` (``bench/e2e.py``), prints one markdown report and
writes it to ``bench/results.md``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import e2e, inprocess  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"
TARGET_RESOLVE_US = 5.0
# Issue 15's targets, ratios to the bare reference (same run, medians): {group: {scenario: ratio}}.
TARGETS = {
    "memory": {"/api/health (no auth)": 0.90, "/api/whoami dashboard key": 0.85, "/api/whoami session": 0.75},
    "redis": {"/api/health (no auth)": 0.85, "/api/whoami dashboard key": 0.70, "/api/whoami session": 0.60},
}
ABOVE_PEER = "/api/whoami dashboard key"  # ... and faster than the flask-limiter peer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default_redis_workers = multiprocessing.cpu_count() * 2 + 1  # gunicorn.conf.py's default on shared storage
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load before each run (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every scenario; the median is reported (3)")
    p.add_argument("--connections", type=int, default=8, help="wrk -c (default 8, gunicorn's thread count)")
    p.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument(
        "--redis-workers",
        type=int,
        default=default_redis_workers,
        help=f"gunicorn workers on Redis, reference included (default 2 x cores + 1: {default_redis_workers})",
    )
    p.add_argument("--quick", action="store_true", help="1 round of 2 s runs: a smoke test, not a measurement")
    p.add_argument("--skip-e2e", action="store_true", help="in-process benchmarks only")
    p.add_argument("--skip-inprocess", action="store_true", help="end-to-end runs only")
    p.add_argument("--output", type=Path, default=RESULTS, help="where to write the report (bench/results.md)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 2, 1, 1
    return args


# -- the machine -------------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True)
        if rev.returncode == 0:
            return rev.stdout.strip() + (" (app/ has uncommitted changes)" if dirty.stdout.strip() else "")
    return "unknown"


def _wrk_version() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        return "not installed"
    out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


def machine_info() -> dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{len(os.sched_getaffinity(0))} usable (nproc), {os.cpu_count()} online",
        "cpu model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "flask": _version("flask"),
        "werkzeug": _version("werkzeug"),
        "gunicorn": _version("gunicorn"),
        "flask-limiter": _version("flask-limiter"),
        "limits": _version("limits"),
        "flask-login": _version("flask-login"),
        "redis-py": _version("redis"),
        "wrk": _wrk_version(),
        "revision": _git_revision(),
    }


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# -- the report --------------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _peer_ratio(row: dict) -> str:
    if row["name"] in (e2e.REFERENCE_NAME, e2e.PEER_NAME) or row.get("peer_ratio") is None:
        return "-"
    return f"{row['peer_ratio']:.2f}x"


def render(
    info: dict, args: argparse.Namespace, timings: list, e2e_info: dict | None, load_before: str, load_after: str
) -> str:
    out = ["# Askgate benchmarks", ""]
    out.append(
        "Reproduce with `make bench` (or `.venv/bin/python bench/run.py --help` for the knobs). "
        "Every end-to-end figure is a ratio to the bare-Flask reference (`bench/bare_app.py`) served by the "
        "same `gunicorn.conf.py` with the same environment in the same run; absolute numbers drift on a shared "
        "machine, the ratios much less."
    )
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in info.items()]
    out.append(f"| load average | {load_before} at start, {load_after} at the end |")

    targets: list[tuple[str, str, bool]] = []
    if e2e_info:
        load = e2e_info["load"]
        threads = os.environ.get("GUNICORN_THREADS", "8")
        out += [
            "",
            "## End to end",
            "",
            f"gunicorn with the project's `gunicorn.conf.py` (gthread, {threads} threads per worker); load from "
            f"`wrk -t{load.threads} -c{load.connections} -d{load.duration}s` on 127.0.0.1 after a {load.warmup} s "
            f"warm-up, {load.rounds} round(s) interleaving the reference with Askgate; medians over rounds. "
            "`API_RATE_LIMIT=100000000` so the limiter does all its work and never refuses. "
            "**Memory storage** runs 1 worker (gunicorn.conf.py refuses more); **Redis** "
            f"({e2e_info.get('redis_version', '?')}, private instance) runs {e2e_info['redis_workers']} workers, "
            "and so do its reference and peer.",
            "",
            "*ratio* is requests/s over the reference's in the same round (median, then the range over rounds); "
            "*ratio to peer* the same over the flask-limiter peer (`bench/peer_app.py`: `@limit` on the same "
            "storage, the same headers, no key check). "
            "*worker CPU* is the gunicorn workers' user+system CPU time per request served (from /proc): it "
            "moves less with other load on the machine, and *CPU ratio* (reference CPU / scenario CPU) is the "
            "ratio a CPU-bound server would show.",
            "",
            "| storage | scenario | req/s | p50 ms | p99 ms | ratio to bare | ratio range | ratio to peer "
            "| worker CPU µs/req | CPU ratio | errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        reference_cpu = {row["group"]: row["cpu_us"] for row in e2e_info["rows"] if row["name"] == e2e.REFERENCE_NAME}
        for row in e2e_info["rows"]:
            workers = 1 if row["group"] == "memory" else e2e_info["redis_workers"]
            cpu_ratio = reference_cpu[row["group"]] / row["cpu_us"] if row["cpu_us"] else 0.0
            out.append(
                f"| {row['group']} ({workers}w) | {row['name']} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | **{row['ratio']:.2f}x** | {row['ratio_min']:.2f}-{row['ratio_max']:.2f} | "
                f"{_peer_ratio(row)} | {row['cpu_us']:.0f} | {cpu_ratio:.2f} | {row['errors']} |"
            )
        for row in e2e_info["rows"]:
            target = TARGETS.get(row["group"], {}).get(row["name"])
            if target is None:
                continue
            label = f"{row['name']}, {row['group']} storage >= {target}x bare"
            ok = row["ratio"] >= target
            measured = f"{row['ratio']:.2f}x"
            if row["name"] == ABOVE_PEER and row.get("peer_ratio") is not None:
                label += " and above the flask-limiter peer"
                ok = ok and row["peer_ratio"] > 1.0
                measured += f", {row['peer_ratio']:.2f}x the peer"
            targets.append((label, measured, ok))

    if timings:
        out += [
            "",
            "## In process",
            "",
            "Per call, µs: the median of 10 timed batches taken in 5 rounds that interleave all the cases, and the "
            "best batch (other load on the machine only ever adds time, so the best is the closest to the code's "
            "own cost); the store reload and key creation are timed call by call. `resolve_principal` runs inside "
            "`app.test_request_context` with the key header, memory storage, as the hook calls it once per request "
            "(flask-login's per-request user cache is dropped before each call, so each call pays what a request "
            "pays). *WSGI call* rows drive the app's WSGI callable with a prebuilt environ: no server, no socket.",
            "",
            "| benchmark | median µs | best µs | note |",
            "|---|---:|---:|---|",
        ]
        for t in timings:
            out.append(f"| {t.name} | {t.median_us:,.2f} | {t.min_us:,.2f} | {t.note} |")
        resolve = [t for t in timings if t.name.startswith(inprocess.RESOLVE_BY_SIZE)]
        if resolve:
            worst = max(resolve, key=lambda t: t.min_us).name.removeprefix(inprocess.RESOLVE_BY_SIZE).strip()
            spread = max(t.min_us for t in resolve) / min(t.min_us for t in resolve)
            targets.append(
                (
                    f"principal resolution < {TARGET_RESOLVE_US:g} µs at 100k keys",
                    f"{resolve[-1].min_us:.2f} µs best, {resolve[-1].median_us:.2f} µs median",
                    resolve[-1].min_us < TARGET_RESOLVE_US,
                )
            )
            targets.append(
                (
                    "principal resolution flat from 10 to 100k keys (within 1.25x)",
                    f"slowest/fastest {spread:.2f}x ({worst} slowest)",
                    spread <= 1.25,
                )
            )

    if targets:
        out += ["", "## Targets (issue 15)", "", "| target | measured | |", "|---|---|---|"]
        out += [f"| {name} | {value} | {_verdict(ok)} |" for name, value, ok in targets]
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if not args.skip_e2e:
        e2e.ensure_wrk()  # fail (or install) before spending minutes on the in-process part
    info = machine_info()
    load_before = _loadavg()
    print(f"askgate bench: {info['cpus']} CPUs, {info['cpu model']}, Python {info['python']}", flush=True)

    timings: list = []
    if not args.skip_inprocess:
        print("in process:", flush=True)
        # create_app and the access log write to stderr; the table is the point here.
        with contextlib.redirect_stderr(io.StringIO()):
            timings = inprocess.run(log=lambda msg: print(msg, flush=True))

    e2e_info = None
    if not args.skip_e2e:
        load = e2e.LoadSettings(
            duration=args.duration,
            warmup=args.warmup,
            connections=args.connections,
            threads=args.threads,
            rounds=args.rounds,
        )
        e2e_info = e2e.run(load, args.redis_workers, log=lambda msg: print(msg, flush=True))

    report = render(info, args, timings, e2e_info, load_before, _loadavg())
    print()
    print(report)
    args.output.write_text(report)
    print(f"written to {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    print(f"bench took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
