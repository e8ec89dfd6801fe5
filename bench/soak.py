"""The soak (issue 14): 4 gunicorn workers on Redis (store and limits), 20 clients, one Redis restart in the middle.

Clients mix questions (a small workspace), whoami, key creation, rotation and revocation, and workspace listing
for ``--duration`` seconds (default 300). Halfway through, Redis is stopped (SIGTERM: it writes its append-only
file) and started again ``--down`` seconds later on the same port. Then:

- counts per action and status; any 5xx other than the documented 503s (``Key store unavailable`` while Redis is
  away, ``Workspace is being indexed``) or any connection error fails the soak;
- no key lost: every key a client was told was created is in the store, revoked exactly when a client was told
  it was revoked, and the store holds no key no client was told about;
- each worker's memory (RSS, from /proc) after the warm-up and at the end, and its open file descriptors;
- no traceback in the gunicorn log.

    .venv/bin/python bench/soak.py                     # 5 minutes
    .venv/bin/python bench/soak.py --duration 20       # a quick look, not a soak

Bounded (``--duration``) and loopback only: gunicorn and a private redis-server on free 127.0.0.1 ports.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.stores import Stores  # noqa: E402
from bench.common import ADMIN_KEY, CLIENT_KEY, PASSWORD  # noqa: E402
from bench.e2e import Gunicorn, free_port, server_env  # noqa: E402

WORKSPACE = "soak"
MEMBERS = 5
QUESTIONS = (
    "Where is the session cookie checked?",
    "How are API keys stored?",
    "What happens when the store is unavailable?",
    "How does rate limiting work?",
    "Where are workspaces imported?",
)
# action -> weight; every client picks one at random each time
MIX = {"ask": 25, "whoami": 30, "workspaces": 15, "create": 12, "rotate": 6, "revoke": 12}
DOCUMENTED_503 = ({"error": "Key store unavailable"}, {"error": "Workspace is being indexed"})


class PersistentRedis:
    """redis-server on a free loopback port, its data in an append-only file that outlives a restart."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise SystemExit("soak: redis-server is not installed. Install it with: sudo apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
            + ["--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:  # not up yet, or still loading its file
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def worker_figures(pids: list[int]) -> dict[int, tuple[int, int]]:
    """pid -> (RSS in KiB, open file descriptors), from /proc."""
    figures = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            continue
        figures[pid] = (rss, fds)
    return figures


class Ledger:
    """What the clients were told: statuses per action, and every key created and revoked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()  # (action, status or error name)
        self.bad: list[str] = []  # unexpected answers, for the report
        self.created: dict[str, str] = {}  # key id -> owner
        self.revoked: set[str] = set()

    def note(self, action: str, status: int | str, body: object = None) -> None:
        with self.lock:
            self.statuses[(action, status)] += 1
            unexpected = isinstance(status, str) or (status >= 500 and body not in DOCUMENTED_503)
            if unexpected and len(self.bad) < 50:
                self.bad.append(f"{action}: {status} {json.dumps(body)[:200]}")


class Client(threading.Thread):
    """One of the clients: its own member, its own key (rotated now and then), keys it made and may revoke."""

    def __init__(self, number: int, url: str, member: str, key_id: str, key: str, ledger: Ledger, stop: float):
        super().__init__(name=f"client-{number}", daemon=True)
        self.url, self.member, self.key_id, self.key = url, member, key_id, key
        self.ledger, self.stop_at = ledger, stop
        self.rng = random.Random(number)
        self.http = requests.Session()
        self.mine: list[str] = []  # keys this client created and has not revoked

    def call(self, action: str, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, object]:
        try:
            reply = self.http.request(method, self.url + path, json=body, headers={"x-api-key": key}, timeout=30)
        except requests.RequestException as exc:
            self.ledger.note(action, type(exc).__name__)
            return 0, None
        try:
            parsed = reply.json() if reply.content else None
        except ValueError:
            parsed = reply.text[:200]
        self.ledger.note(action, reply.status_code, parsed)
        return reply.status_code, parsed

    def run(self) -> None:
        actions, weights = list(MIX), list(MIX.values())
        while time.monotonic() < self.stop_at:
            action = self.rng.choices(actions, weights)[0]
            if action == "ask":
                question = self.rng.choice(QUESTIONS)
                self.call("ask", "POST", "/api/ask", self.key, {"workspaceId": WORKSPACE, "question": question})
            elif action == "whoami":
                self.call("whoami", "GET", "/api/whoami", self.key)
            elif action == "workspaces":
                self.call("workspaces", "GET", "/api/workspaces", self.key)
            elif action == "create":
                status, body = self.call(
                    "create", "POST", "/api/keys", ADMIN_KEY, {"name": "soak", "user": self.member}
                )
                if status == 201:
                    with self.ledger.lock:
                        self.ledger.created[body["id"]] = self.member
                    self.mine.append(body["id"])
            elif action == "rotate":
                status, body = self.call(
                    "rotate", "POST", f"/api/keys/{self.key_id}/rotate", ADMIN_KEY, {"grace_seconds": 0}
                )
                if status == 201:
                    self.key = body["key"]
            elif action == "revoke" and self.mine:
                key_id = self.mine.pop(self.rng.randrange(len(self.mine)))
                status, _ = self.call("revoke", "PATCH", f"/api/keys/{key_id}", ADMIN_KEY, {"active": False})
                if status == 200:
                    with self.ledger.lock:
                        self.ledger.revoked.add(key_id)
                else:
                    self.mine.append(key_id)  # not revoked: may be tried again


def prepare(workspaces: Path, redis_url: str, clients: int) -> list[tuple[str, str, str]]:
    """Members, one key per client (member, key id, raw key), and the small workspace, indexed."""
    stores = Stores.open(redis_url, workspaces)
    members = [f"member-{n}" for n in range(MEMBERS)]
    for member in members:
        stores.users.create(member, PASSWORD, "member")
    made = []
    for number in range(clients):
        member = members[number % MEMBERS]
        new = stores.keys.create(member, f"client-{number}")
        made.append((member, new.record["id"], new.key))
    folder = workspaces / WORKSPACE
    folder.mkdir()
    for source in sorted((ROOT / "app").glob("*.py"))[:12]:  # a small workspace: a dozen Python modules
        shutil.copy(source, folder / source.name)
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=300, help="seconds of load (300)")
    p.add_argument("--clients", type=int, default=20, help="client threads (20)")
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers (4)")
    p.add_argument("--down", type=float, default=10, help="seconds Redis stays stopped in the middle (10)")
    p.add_argument("--stale-seconds", default="30", help="STORE_STALE_SECONDS for the server (30, the default)")
    args = p.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="askgate-soak-"))
    (scratch / "redis").mkdir()
    workspaces = scratch / "workspaces"
    workspaces.mkdir()
    redis = PersistentRedis(scratch / "redis")
    redis.start()
    server = None
    try:
        initial = prepare(workspaces, redis.url, args.clients)
        env = server_env(workspaces, redis.url, args.workers) | {
            "STORE_URL": redis.url,
            "STORE_STALE_SECONDS": args.stale_seconds,
            "KEY_CREATE_LIMIT": "1000000/hour",
            "AUTH_FAILURE_LIMIT": "1000000/minute",
        }
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "workspace", "index", "--quiet", WORKSPACE],
            cwd=ROOT,
            env=env,
            check=True,
        )
        server = Gunicorn("wsgi:app", env, "/api/health", scratch / "gunicorn.log")
        print(f"soak: {args.workers} workers, {args.clients} clients, {args.duration} s, Redis at {redis.url}")
        ledger = Ledger()
        started = time.monotonic()
        stop_at = started + args.duration
        clients = [
            Client(n, server.url, member, key_id, key, ledger, stop_at)
            for n, (member, key_id, key) in enumerate(initial)
        ]
        for client in clients:
            client.start()

        warmup = min(10.0, args.duration / 10)
        time.sleep(warmup)
        pids = sorted(server.worker_pids())
        before = worker_figures(pids)
        restart = {}
        time.sleep(max(0.0, started + args.duration / 2 - time.monotonic()))
        restart["stopped"] = time.monotonic() - started
        redis.stop()
        time.sleep(args.down)
        redis.start()
        restart["started"] = time.monotonic() - started
        env_key_ok = requests.get(server.url + "/api/whoami", headers={"x-api-key": CLIENT_KEY}, timeout=10).ok
        for client in clients:
            client.join(args.duration + 60)
        elapsed = time.monotonic() - started
        after = worker_figures(sorted(server.worker_pids()))
        log = server.log_path.read_text(errors="replace")
    finally:
        if server is not None:
            server.stop()
        store_keys = None
        try:
            store_keys = {r["id"]: r for r in Stores.open(redis.url, workspaces).keys.list()}
        finally:
            redis.stop()
            shutil.rmtree(scratch, ignore_errors=True)

    # -- the report -------------------------------------------------------------------------------------------
    failures = []
    total = sum(ledger.statuses.values())
    print(
        f"\n{total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s); Redis stopped at {restart['stopped']:.0f} s,"
    )
    print(f"started again at {restart['started']:.0f} s\n")
    print("| action | " + " | ".join(["200", "201", "401", "409", "503", "other"]) + " |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for action in MIX:
        row = {status: n for (name, status), n in ledger.statuses.items() if name == action}
        shown = [row.pop(code, 0) for code in (200, 201, 401, 409, 503)]
        other = ", ".join(f"{status}: {n}" for status, n in sorted(row.items(), key=str)) or "-"
        print(f"| {action} | " + " | ".join(str(n) for n in shown) + f" | {other} |")
    if ledger.bad:
        failures.append(f"{len(ledger.bad)}+ answers outside the documented ones, e.g. {ledger.bad[:5]}")
    unexpected_4xx = {k: n for k, n in ledger.statuses.items() if isinstance(k[1], int) and k[1] in (401, 429)}
    if unexpected_4xx:
        failures.append(f"refused requests: {unexpected_4xx}")

    initial_ids = {key_id for _, key_id, _ in initial}
    told = set(ledger.created) | initial_ids
    lost = sorted(told - set(store_keys))
    unknown = sorted(set(store_keys) - told)
    wrong_state = sorted(
        key_id
        for key_id in told & set(store_keys)
        if (store_keys[key_id]["revoked_at"] is not None) != (key_id in ledger.revoked)
    )
    print(
        f"\nkeys: {len(ledger.created)} created and {len(ledger.revoked)} revoked as clients were told; "
        f"store holds {len(store_keys)}: lost {len(lost)}, unknown {len(unknown)}, wrong state {len(wrong_state)}"
    )
    if lost or unknown or wrong_state:
        failures.append(f"keys lost {lost[:5]}, unknown {unknown[:5]}, wrong state {wrong_state[:5]}")

    print("\n| worker | RSS after warm-up MiB | RSS at end MiB | growth MiB | open fds after warm-up | at end |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for pid in pids:
        if pid in before and pid in after:
            (rss0, fd0), (rss1, fd1) = before[pid], after[pid]
            print(f"| {pid} | {rss0 / 1024:.1f} | {rss1 / 1024:.1f} | {(rss1 - rss0) / 1024:+.1f} | {fd0} | {fd1} |")
    if set(pids) != set(after):
        failures.append(f"workers changed during the soak: {pids} -> {sorted(after)} (a worker was restarted)")
    if "Traceback" in log:
        failures.append("a traceback in the gunicorn log")
    if not env_key_ok:
        failures.append("an env key was refused right after Redis came back")
    print("\n" + ("soak: OK" if not failures else "soak: FAILED\n- " + "\n- ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
