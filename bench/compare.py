"""Time WSGI calls of several checkouts side by side: rounds that interleave the trees, each a same-run ratio.

Usage: .venv/bin/python bench/compare.py TREE [TREE ...] [--rounds N] [--seconds S] [--cases C ...]

Each round starts one child process per tree (its own code and its own ``bench/inprocess.py`` fixtures), which
times the cases in short batches for ``--seconds`` each; the ratio of a tree is its time per call over the first
tree's in the same round. The report gives, per case, each tree's median and best µs per call and the median of
the per-round ratios (and their range): load elsewhere on the machine hits both trees of a round alike. Each figure
is given in wall time and in the process's CPU time (``time.process_time``, all its threads, so the usage thread's
summing too): on a machine busier than its cores, waiting for a core inflates wall time, not CPU time.
``bench/instructions.py`` is the comparison load cannot move at all; this one says what the instructions cost in time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.instructions import CASES, CHILD_SETUP  # noqa: E402

CHILD = (
    CHILD_SETUP
    + """
    seconds = float(sys.argv[1])
    result = {}
    for case in sys.argv[2:]:
        call = callers[case]()
        for _ in range(200):
            call()
        wall, cpu, end = [], [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(100):
                call()
            cpu.append((time.process_time() - start_cpu) / 100 * 1e6)
            wall.append((time.perf_counter() - start) / 100 * 1e6)
        wall.sort()
        cpu.sort()
        result[case] = {"median": wall[len(wall) // 2], "best": wall[0], "cpu": cpu[len(cpu) // 2]}
print(json.dumps(result))
"""
)


def run_tree(tree: Path, cases: list[str], seconds: float) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(seconds), *cases],
        cwd=tree,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", type=Path)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=2.0, help="timing per case, tree and round (default 2)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=["bare", "whoami"])
    args = p.parse_args(argv)
    results: list[list[dict]] = []  # round -> tree -> case -> figures
    for number in range(args.rounds):
        # Alternate which tree goes first: a trend in the machine's load then hits both sides alike.
        order = list(range(len(args.trees)))
        if number % 2:
            order.reverse()
        row = [None] * len(args.trees)
        for i in order:
            row[i] = run_tree(args.trees[i], args.cases, args.seconds)
        results.append(row)
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    for case in args.cases:
        for i, tree in enumerate(args.trees):
            medians = [r[i][case]["median"] for r in results]
            best = min(r[i][case]["best"] for r in results)
            cpu = [r[i][case]["cpu"] for r in results]
            ratios = [r[i][case]["median"] / r[0][case]["median"] for r in results]
            cpu_ratios = [r[i][case]["cpu"] / r[0][case]["cpu"] for r in results]
            print(
                f"{case:<7} {str(tree):<24} wall median {statistics.median(medians):8.2f} µs, best {best:8.2f} µs, "
                f"ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}); "
                f"CPU median {statistics.median(cpu):8.2f} µs, ratio {statistics.median(cpu_ratios):.3f} "
                f"({min(cpu_ratios):.3f}-{max(cpu_ratios):.3f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
