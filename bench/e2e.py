"""End to end: Askgate under gunicorn with its own ``gunicorn.conf.py``, load from ``wrk`` on loopback.

Every figure is a ratio to the bare-Flask reference (``bench/bare_app.py``) served by the same
``gunicorn.conf.py`` with the same environment in the same run, because absolute numbers drift on a
shared machine. Rounds interleave the reference with the Askgate scenarios so that drift hits both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.keys.store import KeyStore  # noqa: E402
from app.users.store import UserStore  # noqa: E402
from bench.bare_app import REFERENCE_PATH  # noqa: E402
from bench.common import ADMIN_KEY, CLIENT_KEY, PASSWORD  # noqa: E402
from bench.peer_app import PEER_PATH  # noqa: E402

USER_AGENT = "askgate-bench"  # the same for login and load, so flask-login's session protection stays quiet
NO_LIMIT = "100000000"  # requests per hour: the limiter does all its work but never refuses
REFERENCE_NAME = "bare Flask reference"
PEER_NAME = "flask-limiter peer (@limit, no key check)"
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')

# wrk reports through this script: exact percentiles (µs) and error counts as one JSON line.
WRK_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,'
    .. '"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class LoadSettings:
    duration: int = 5  # seconds per measured run
    warmup: int = 1  # seconds of unmeasured load before each measured run
    connections: int = 8
    threads: int = 2
    rounds: int = 3


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx responses and socket errors
    requests: int = 0
    cpu_us_per_request: float = 0.0  # the gunicorn workers' user+system CPU time, per request served


@dataclass
class Scenario:
    group: str  # "memory" | "redis"
    name: str
    server: str  # "bare" | "peer" | "askgate"
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # to the reference of the same round
    peer_ratios: list[float] = field(default_factory=list)  # to the flask-limiter peer of the same round


# -- tools ------------------------------------------------------------------------------------------------
def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and we are root, else a clear hint."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing it with apt-get (Debian package 'wrk')", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("bench: wrk is not installed. Install it with: sudo apt-get install wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_wrk(wrk: str, script: Path, url: str, headers: dict[str, str], seconds: int, load: LoadSettings) -> Sample:
    cmd = [wrk, "-t", str(load.threads), "-c", str(load.connections), "-d", f"{seconds}s", "--timeout", "5s"]
    cmd += ["-s", str(script)]
    for name, value in {"User-Agent": USER_AGENT, **headers}.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30)
    match = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    r = json.loads(match.group(1))
    errors = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return Sample(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        errors=errors,
        requests=r["requests"],
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (from /proc; 0 where unavailable)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py MODULE:app`` on a free loopback port, as ``make run`` starts it."""

    def __init__(self, module: str, env: dict[str, str], ready_path: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", module],
            cwd=ROOT,
            env={**env, "HOST": "127.0.0.1", "PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn {module} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + ready_path, timeout=1).status_code == 200:
                    return
            except requests.RequestException:  # refused, or accepted but not yet answered (worker booting)
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn {module} did not come up:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class RedisServer:
    """A private redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("bench: redis-server is not installed. Install it with: sudo apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        self.version = client.info("server").get("redis_version", "?")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# -- the Askgate side ----------------------------------------------------------------------------------
def prepare_workspace(workspaces: Path) -> str:
    """One member user and one dashboard key, through the stores themselves; returns the raw key."""
    UserStore(workspaces).create("bench", PASSWORD, "member")
    return KeyStore(workspaces).create("bench", "bench").key


def session_cookie(base_url: str) -> str:
    """Sign in through the real form and return the ``Cookie`` header value for wrk."""
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    page = http.get(base_url + "/login", timeout=10)
    token = CSRF_RE.search(page.text)
    if not token:
        raise RuntimeError("login page carries no csrf-token")
    reply = http.post(
        base_url + "/login",
        data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)},
        allow_redirects=False,
        timeout=10,
    )
    if reply.status_code != 302 or "session" not in http.cookies:
        raise RuntimeError(f"login failed: {reply.status_code}")
    check = http.get(base_url + "/api/whoami", timeout=10)
    if check.status_code != 200 or check.json().get("auth_method") != "session":
        raise RuntimeError(f"session cookie not accepted: {check.status_code} {check.text}")
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


def server_env(workspaces: Path, storage_uri: str, workers: int) -> dict[str, str]:
    """The environment both the reference and Askgate get: identical, so gunicorn settings are identical."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "WEB_CONCURRENCY"))}
    env.update(
        {
            "WORKSPACES_DIR": str(workspaces),
            "SECRET_KEY": "bench-secret-key",
            "ADMIN_API_KEY": ADMIN_KEY,
            "VALID_API_KEYS": CLIENT_KEY,
            "API_RATE_LIMIT": NO_LIMIT,
            "RATELIMIT_STORAGE_URI": storage_uri,
            "ALLOWED_IPS": "*",
            "WEB_CONCURRENCY": str(workers),
        }
    )
    return env


def scenarios_for(group: str, dashboard_key: str, cookie: str) -> list[Scenario]:
    return [
        Scenario(group, REFERENCE_NAME, "bare", REFERENCE_PATH),
        Scenario(group, PEER_NAME, "peer", PEER_PATH),
        Scenario(group, "/api/health (no auth)", "askgate", "/api/health"),
        Scenario(group, "/api/whoami dashboard key", "askgate", "/api/whoami", {"x-api-key": dashboard_key}),
        Scenario(group, "/api/whoami admin key", "askgate", "/api/whoami", {"x-api-key": ADMIN_KEY}),
        Scenario(group, "/api/whoami client key", "askgate", "/api/whoami", {"Authorization": f"Bearer {CLIENT_KEY}"}),
        Scenario(group, "/api/whoami session", "askgate", "/api/whoami", {"Cookie": cookie}),
    ]


def _check(url: str, headers: dict[str, str]) -> None:
    reply = requests.get(url, headers={"User-Agent": USER_AGENT, **headers}, timeout=10)
    if reply.status_code != 200:
        raise RuntimeError(f"{url} answered {reply.status_code}: {reply.text[:200]}")


def run_group(
    group: str, storage_uri: str, workers: int, wrk: str, load: LoadSettings, scratch: Path, log=print
) -> list[Scenario]:
    """Start the reference and Askgate with the same settings, then interleave their wrk runs by round."""
    workspaces = scratch / f"workspaces-{group}"
    workspaces.mkdir()
    dashboard_key = prepare_workspace(workspaces)
    env = server_env(workspaces, storage_uri, workers)
    script = scratch / "report.lua"
    script.write_text(WRK_REPORT)
    servers: dict[str, Gunicorn] = {}
    try:
        servers["bare"] = Gunicorn("bench.bare_app:app", env, REFERENCE_PATH, scratch / f"bare-{group}.log")
        servers["peer"] = Gunicorn("bench.peer_app:app", env, PEER_PATH, scratch / f"peer-{group}.log")
        servers["askgate"] = Gunicorn("wsgi:app", env, "/api/health", scratch / f"askgate-{group}.log")
        cookie = session_cookie(servers["askgate"].url)
        scenarios = scenarios_for(group, dashboard_key, cookie)
        for sc in scenarios:
            _check(servers[sc.server].url + sc.path, sc.headers)
        for round_no in range(1, load.rounds + 1):
            reference: Sample | None = None
            peer: Sample | None = None
            for sc in scenarios:
                url = servers[sc.server].url + sc.path
                if load.warmup:
                    run_wrk(wrk, script, url, sc.headers, load.warmup, load)
                workers = servers[sc.server].worker_pids()
                cpu_before = cpu_seconds(workers)
                sample = run_wrk(wrk, script, url, sc.headers, load.duration, load)
                sample.cpu_us_per_request = (cpu_seconds(workers) - cpu_before) * 1e6 / max(1, sample.requests)
                if servers[sc.server].proc.poll() is not None:
                    raise RuntimeError(f"{sc.server} server died during '{sc.name}':\n{servers[sc.server].log_tail()}")
                sc.samples.append(sample)
                reference = reference or sample
                sc.ratios.append(sample.rps / reference.rps)
                if sc.server == "peer":
                    peer = sample
                if peer is not None:
                    sc.peer_ratios.append(sample.rps / peer.rps)
                flag = f"  ERRORS: {sample.errors}" if sample.errors else ""
                log(
                    f"  [{group} round {round_no}/{load.rounds}] {sc.name:<28} {sample.rps:8.0f} req/s"
                    f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
                    f"  cpu {sample.cpu_us_per_request:4.0f} µs/req"
                    f"  x{sc.ratios[-1]:.2f}" + (f" (peer x{sc.peer_ratios[-1]:.2f})" if sc.peer_ratios else "") + flag
                )
        return scenarios
    finally:
        for server in servers.values():
            server.stop()


def summarize(scenarios: list[Scenario]) -> list[dict]:
    rows = []
    for sc in scenarios:
        rows.append(
            {
                "group": sc.group,
                "name": sc.name,
                "rps": statistics.median(s.rps for s in sc.samples),
                "p50_ms": statistics.median(s.p50_ms for s in sc.samples),
                "p99_ms": statistics.median(s.p99_ms for s in sc.samples),
                "cpu_us": statistics.median(s.cpu_us_per_request for s in sc.samples),
                "ratio": statistics.median(sc.ratios),
                "ratio_min": min(sc.ratios),
                "ratio_max": max(sc.ratios),
                "peer_ratio": statistics.median(sc.peer_ratios) if sc.peer_ratios else None,
                "errors": sum(s.errors for s in sc.samples),
            }
        )
    return rows


def run(load: LoadSettings, redis_workers: int, log=print) -> dict:
    """All end-to-end groups; returns rows and what the run used."""
    wrk = ensure_wrk()
    scratch = Path(tempfile.mkdtemp(prefix="askgate-bench-e2e-"))
    info: dict = {"load": load, "redis_workers": redis_workers, "rows": []}
    try:
        log(f"end to end: memory storage, 1 worker x {os.environ.get('GUNICORN_THREADS', '8')} threads")
        info["rows"] += summarize(run_group("memory", "memory://", 1, wrk, load, scratch, log))
        redis = RedisServer(scratch)
        info["redis_version"] = redis.version
        try:
            log(f"end to end: Redis {redis.version} storage, {redis_workers} workers (reference too)")
            info["rows"] += summarize(run_group("redis", redis.url, redis_workers, wrk, load, scratch, log))
        finally:
            redis.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return info
