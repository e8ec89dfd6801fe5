"""Benchmark the ask domain: cold index, incremental and no-change updates, question latency, index size.

Usage: python bench/ask.py [--site-packages N] [--questions N]

By default the workspace is the installed sources of flask, werkzeug, jinja2, click and itsdangerous
(the pallets libraries tests/test_ask_quality.py asks about); ``--site-packages N`` uses up to N text
files of the whole site-packages instead. Everything happens in a temp folder; the goals of issue 9
(warm ask p50 < 50 ms, cold index < 5 s, index <= 2x the indexed source bytes) are printed beside
the figures.
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ask import ask, textfiles, update_index  # noqa: E402 - after the path fix above
from app.ask.indexdb import index_db_path  # noqa: E402

PALLETS = ("flask", "werkzeug", "jinja2", "click", "itsdangerous")
ASK_P50_GOAL, COLD_GOAL, SIZE_GOAL = 0.050, 5.0, 2.0

TEXT_SUFFIXES = {".py", ".pyi", ".md", ".rst", ".txt", ".cfg", ".toml", ".js", ".css", ".html", ".c", ".h"}

QUESTIONS = [
    "How is the session cookie saved on the response?",
    "How do I build the URL for a view from its endpoint name?",
    "How can settings be loaded from a Python file?",
    "How do I return JSON from a view?",
    "How are passwords hashed with a salt?",
    "How do I make an uploaded filename safe to store on disk?",
    "How is the request path matched against the URL rules?",
    "How does the reloader notice that a source file was modified?",
    "Where is multipart/form-data parsed into files and form fields?",
    "Parse a date string from an HTTP header",
    "How does a loader find templates in folders on disk?",
    "Filter that shortens text to a maximum length",
    "How can I prompt for a password without echoing the input?",
    "How do I display a progress bar while iterating?",
    "How is the age of a timestamped signature checked?",
    "How are retries configured for an HTTP adapter?",
    "How does requests decide which proxy to use for a URL?",
    "How are redirects followed in a session?",
    "Raise an exception when the response status is an error",
    "How is a multipart body encoded for a file upload?",
    "How are two version numbers compared?",
    "How are environment markers evaluated?",
    "How is a .env file parsed into keys and values?",
    "How do I connect a receiver function to a signal?",
    "How does the arbiter replace workers that died?",
    "How are workers that stop responding killed after the timeout?",
    "Which lexer highlights Python source code?",
    "How is a token stream formatted as HTML?",
    "How does hypothesis shrink a failing example?",
    "How are pytest fixtures resolved for a test function?",
    "How does pip resolve dependency conflicts?",
    "Where is the wheel file installed?",
    "How are command line arguments parsed?",
    "How is a rate limit window calculated?",
    "How is a connection to redis retried after a failure?",
    "How does the limiter store hits in memory?",
    "How are markdown headings rendered?",
    "How is a temporary directory created for a test?",
    "How are warnings captured during tests?",
    "How does the cache expire old entries?",
    "How is a file locked so that two processes do not write at once?",
    "Where is logging configured?",
    "How is a string escaped for HTML?",
    "How are cookies parsed from the request headers?",
    "What validates an email address?",
    "How is gzip compression handled?",
    "How do I read a config file in TOML format?",
    "How is a thread pool shut down?",
    "How are signals handled for graceful shutdown?",
    "What converts a dictionary into a query string?",
]


def build_workspace(folder: Path, max_files: int) -> int:
    """Copy up to ``max_files`` text files from site-packages; returns how many were copied."""
    site = Path(sysconfig.get_paths()["purelib"])
    copied = 0
    for package in sorted(p for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")):
        for path in sorted(package.rglob("*")):
            if copied >= max_files:
                return copied
            if "__pycache__" in path.parts or path.suffix not in TEXT_SUFFIXES or not path.is_file():
                continue
            if path.stat().st_size > 512 * 1024:
                continue
            target = folder / path.relative_to(site)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied += 1
    return copied


def build_pallets(folder: Path) -> int:
    """Copy the installed pallets packages, as a team would import their repository."""
    for name in PALLETS:
        spec = importlib.util.find_spec(name)
        source = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return sum(1 for p in folder.rglob("*") if p.is_file())


def indexed_bytes(folder: Path) -> int:
    """Bytes of the files the index reads (text files that are not skipped)."""
    return sum(size for _, size, _ in textfiles.scan(folder))


def timed(fn: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def cpu_timed(fn: object) -> tuple[float, float, object]:
    """Wall and CPU seconds: on a shared machine the CPU time says what an idle one would take."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-packages", type=int, metavar="N", help="use N files of site-packages instead")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="questions to ask")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="askgate-bench-") as temp:
        root = Path(temp)
        if args.site_packages:
            files = build_workspace(root / "bench", args.site_packages)
        else:
            files = build_pallets(root / "bench")
        source_bytes = indexed_bytes(root / "bench")

        cold, cold_cpu, stats = cpu_timed(lambda: update_index(root, "bench"))
        unchanged, _ = timed(lambda: update_index(root, "bench"))
        target = root / "bench" / sorted(stats.read_paths)[len(stats.read_paths) // 2]
        with target.open("a") as handle:
            handle.write("\n\ndef benchmark_added_function():\n    return 42\n")
        incremental, inc_stats = timed(lambda: update_index(root, "bench"))
        assert inc_stats.files_read == 1, inc_stats

        questions = (QUESTIONS * (1 + args.questions // len(QUESTIONS)))[: args.questions]
        measured = [cpu_timed(lambda q=q: ask(root, "bench", q, top_k=5)) for q in questions]
        latencies, cpu_latencies = [m[0] for m in measured], [m[1] for m in measured]
        size = sum(p.stat().st_size for p in index_db_path(root, "bench").parent.glob("bench.sqlite3*"))

        ratio = size / source_bytes
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        cpu_p50 = percentile(cpu_latencies, 0.5)
        what = f"{args.site_packages} site-packages files" if args.site_packages else "+".join(PALLETS)

        def goal(ok: bool, text: str) -> str:
            return f"{text} ({'met' if ok else 'MISSED'})"

        load = os.getloadavg()[0]
        print(f"Load average while measuring: {load:.1f} on {os.cpu_count()} CPUs (wall times grow with it)")
        print(f"Workspace: {what}: {files} files, {stats.files_seen} indexable ({source_bytes / 1e6:.1f} MB), "
              f"{stats.chunks} chunks; Python {sys.version.split()[0]}\n")  # fmt: skip
        print("| measurement | value | goal |")
        print("| --- | --- | --- |")
        print(f"| cold index ({stats.files_read} files read) | {cold:.2f} s | {goal(cold < COLD_GOAL, '< 5 s')} |")
        print(f"| cold index, CPU time | {cold_cpu:.2f} s | {goal(cold_cpu < COLD_GOAL, '< 5 s')} |")
        print(f"| incremental update (1 file changed) | {incremental * 1000:.0f} ms | |")
        print(f"| no-change update (stat only) | {unchanged * 1000:.0f} ms | |")
        print(f"| ask p50 ({len(latencies)} questions, each with its update check) | {p50 * 1000:.0f} ms | "
              f"{goal(p50 < ASK_P50_GOAL, '< 50 ms')} |")  # fmt: skip
        print(f"| ask p50, CPU time | {cpu_p50 * 1000:.0f} ms | {goal(cpu_p50 < ASK_P50_GOAL, '< 50 ms')} |")
        print(f"| ask p95 | {p95 * 1000:.0f} ms | |")
        print(f"| ask mean | {statistics.fmean(latencies) * 1000:.0f} ms | |")
        print(f"| index size | {size / 1e6:.1f} MB = {ratio:.2f}x the indexed source bytes | "
              f"{goal(ratio <= SIZE_GOAL, '<= 2x')} |")  # fmt: skip


if __name__ == "__main__":
    main()
