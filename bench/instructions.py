"""Instructions per WSGI call (valgrind's callgrind), for this checkout or others: a comparison load cannot move.

Usage: .venv/bin/python bench/instructions.py [TREE ...] [--calls N] [--cases ...] (TREE: a checkout; default: this one)

Cases: the bare reference, the flask-limiter peer (``bench/peer_app.py``), ``/api/health``, ``/api/whoami`` with a
dashboard key and with a session (signed in through the real form), memory storage.

Timings on a shared 2-core machine drift by tens of percent; an instruction count does not. Each figure is
(instructions with N calls - instructions with 0 calls) / N, in a child process started in TREE (its own code and
its own ``bench/inprocess.py`` fixtures), with a fixed hash seed. Slow (valgrind runs Python ~50x slower): about
20 s per row. Compare an old commit with ``git worktree add /tmp/old COMMIT`` and pass both trees.
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
CASES = ("bare", "peer", "health", "whoami", "session")

CHILD = """
import contextlib, io, logging, os, re, sys, tempfile
from pathlib import Path
sys.path.insert(0, ".")
os.environ.update(RATELIMIT_STORAGE_URI="memory://", API_RATE_LIMIT="100000000")
with contextlib.redirect_stderr(io.StringIO()):
    from bench import inprocess as ip
    from bench.common import PASSWORD
    logging.getLogger("askgate").setLevel(logging.WARNING)
    workspaces, raw = ip.make_workspace(Path(tempfile.mkdtemp()), "ws", 10)
    app = ip.make_app(workspaces)
    ip.quiet_access_log()
    case = sys.argv[1]
    if case == "bare":
        from bench.bare_app import REFERENCE_PATH, create_app as bare
        call = ip.wsgi_caller(bare(), REFERENCE_PATH, {})
    elif case == "peer":
        from bench.peer_app import PEER_PATH, create_app as peer
        call = ip.wsgi_caller(peer(), PEER_PATH, {})
    elif case == "health":
        call = ip.wsgi_caller(app, "/api/health", {})
    elif case == "whoami":
        call = ip.wsgi_caller(app, "/api/whoami", {"x-api-key": raw})
    else:  # a session signed in through the real form, its cookie sent as a browser would
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = "askgate-bench"  # the same for sign-in and calls, as in e2e.py
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
        cookie = "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())
        call = ip.wsgi_caller(app, "/api/whoami", {"Cookie": cookie, "User-Agent": "askgate-bench"})
    for _ in range(int(sys.argv[2])):
        call()
"""


def instructions(tree: Path, case: str, calls: int) -> int | None:
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
    )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode != 0 or not found:
        return None  # a case this tree cannot run (an older checkout without the peer)
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="*", type=Path, default=[ROOT])
    p.add_argument("--calls", type=int, default=300, help="WSGI calls per measured run (default 300)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which calls (default: all)")
    args = p.parse_args(argv)
    if not shutil.which("valgrind"):
        print("bench/instructions.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 1
    for tree in args.trees:
        for case in args.cases:
            base = instructions(tree, case, 0)  # start-up and the case's own set-up (a sign-in hashes a password)
            total = instructions(tree, case, args.calls)
            if total is None or base is None:
                print(f"{tree}  {case:<7} {'-':>12} (this tree cannot run it)", flush=True)
                continue
            per_call = (total - base) / args.calls
            print(f"{tree}  {case:<7} {per_call:>12,.0f} instructions per WSGI call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
