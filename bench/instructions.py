"""Instructions per WSGI call (valgrind's callgrind), for this checkout or others: a comparison load cannot move.

Usage: .venv/bin/python bench/instructions.py [TREE ...] [--calls N] [--cases C ...]  (TREE: a checkout, default: this)

Timings on a shared 2-core machine drift by tens of percent; an instruction count does not. Each figure is
(instructions with N calls - instructions with 0 calls) / N, in a child process started in TREE (its own code and
its own ``bench/inprocess.py`` fixtures), with a fixed hash seed. Slow (valgrind runs Python ~50x slower): about
20 s per row. Compare an old commit with ``git worktree add /tmp/old COMMIT`` and pass both trees.

Callgrind counts every thread. Key usage's flush (a SQLite write, ``USAGE_FLUSH_SECONDS``) is set to a day, so it
never lands in one run and not another: its cost is ``bench/inprocess.py``'s "usage: flush" rows. Its thread's
summing of the queued counts every second stays in: that is work each request causes. Start-up's heap is frozen
(``gc.freeze``) before the calls: otherwise whether a full collection falls inside a run depends on how much a
tree imported, a few thousand instructions per call either way.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("bare", "health", "whoami")

# The fixtures a child process builds in a TREE from that tree's own bench/ (old checkouts included, so only what
# bench/inprocess.py has long had): ``callers``, one function per case that builds its WSGI caller (one call made).
# bench/compare.py builds the same.
CHILD_SETUP = """
import contextlib, gc, io, json, logging, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, ".")
with contextlib.redirect_stderr(io.StringIO()):
    from bench import inprocess as ip
    from bench.bare_app import REFERENCE_PATH, create_app as bare
    logging.getLogger("askgate").setLevel(logging.WARNING)
    workspaces, raw = ip.make_workspace(Path(tempfile.mkdtemp()), "ws", 10)
    # Key usage is flushed by a thread every USAGE_FLUSH_SECONDS (off the request path): a day, so no flush lands
    # in one run and not the other. Trees from before usage counting ignore the setting.
    app = ip.make_app(workspaces, USAGE_FLUSH_SECONDS="86400")
    ip.quiet_access_log()
    callers = {
        "bare": lambda: ip.wsgi_caller(bare(), REFERENCE_PATH, {}),
        "health": lambda: ip.wsgi_caller(app, "/api/health", {}),
        "whoami": lambda: ip.wsgi_caller(app, "/api/whoami", {"x-api-key": raw}),
    }
"""

CHILD = (
    CHILD_SETUP
    + """
    calls = {case: make() for case, make in callers.items()}  # every run pays the same set-up
    call = calls[sys.argv[1]]
    # What start-up left on the heap out of the collector's way: a full collection walks it all, and whether one
    # happens to fall inside a run depends on how much the tree imported, not on the request path.
    gc.collect()
    gc.freeze()
    for _ in range(int(sys.argv[2])):
        call()
"""
)


def instructions(tree: Path, case: str, calls: int) -> int:
    run = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD,
            case,
            str(calls),
        ],
        cwd=tree,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(re.search(r"Collected : (\d+)", run.stderr).group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    p.add_argument("--calls", type=int, default=300, help="WSGI calls per measured run (default 300)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which rows (default all)")
    args = p.parse_args(argv)
    if not shutil.which("valgrind"):
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    for tree in args.trees:
        base = instructions(tree, "health", 0)  # start-up and fixtures alone: the same for every case
        for case in args.cases:
            per_call = (instructions(tree, case, args.calls) - base) / args.calls
            print(f"{tree}  {case:<7} {per_call:>12,.0f} instructions per WSGI call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
