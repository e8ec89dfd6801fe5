"""In-process micro-benchmarks: the cost of each guard, per call, without a network in the way.

Stores are written straight to disk with pre-computed digests (10 to 100,000 keys in a second or two);
principal resolution runs inside ``app.test_request_context`` the way the request hook calls it.
Each figure is the median of several timed batches, each batch sized to take about ``batch_seconds``.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.auth.principal import Principal, resolve_principal  # noqa: E402
from app.config import load_config, parse_allowed_ips  # noqa: E402
from app.documents.sharedfile import atomic_write  # noqa: E402
from app.ipallow import IPAllowlist  # noqa: E402
from app.keys import format as keyformat  # noqa: E402
from app.keys.store import FILE_NAME, SCHEMA_VERSION, iso, key_record, utcnow  # noqa: E402
from app.users.store import UserStore  # noqa: E402
from bench.bare_app import REFERENCE_PATH  # noqa: E402
from bench.bare_app import create_app as create_bare_app  # noqa: E402
from bench.common import ADMIN_KEY, CLIENT_KEY, PASSWORD  # noqa: E402

STORE_SIZES = (10, 10_000, 100_000)
RESOLVE_BY_SIZE = "resolve_principal: dashboard key in a store of"
CLIENT_IP = "127.0.0.1"


@dataclass(frozen=True)
class Timing:
    name: str
    median_us: float
    min_us: float
    calls: int
    note: str = ""


def _calibrate(fn: Callable[[], object], batch_seconds: float) -> int:
    """How many calls make a batch of about ``batch_seconds``."""
    fn()  # warm: first-call work (lazy imports, a first last_used_at write) is not what we measure
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= batch_seconds / 5 or number >= 1_000_000:
            break
        number *= 4
    return max(1, int(number * batch_seconds / max(elapsed, 1e-9)))


def _batches(fn: Callable[[], object], number: int, batches: int) -> list[float]:
    per_call = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - start) / number * 1e6)
    return per_call


def measure(name: str, fn: Callable[[], object], *, batch_seconds: float = 0.04, batches: int = 7, note: str = ""):
    """Per-call µs: the median and the best of ``batches`` batches, each sized to about ``batch_seconds``."""
    number = _calibrate(fn, batch_seconds)
    per_call = _batches(fn, number, batches)
    return Timing(name, statistics.median(per_call), min(per_call), number * batches, note)


@dataclass(frozen=True)
class Case:
    """One benchmark: ``setup()`` is a context manager that yields the function to time."""

    name: str
    setup: Callable[[], contextlib.AbstractContextManager[Callable[[], object]]]
    note: str = ""


def run_cases(cases: list[Case], rounds: int = 5, batches: int = 2, batch_seconds: float = 0.03) -> list[Timing]:
    """Time every case in ``rounds`` interleaved rounds, so a burst of load elsewhere hits all of them alike."""
    numbers: dict[str, int] = {}
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            with case.setup() as fn:
                if case.name not in numbers:
                    numbers[case.name] = _calibrate(fn, batch_seconds)
                samples[case.name] += _batches(fn, numbers[case.name], batches)
    return [
        Timing(
            c.name,
            statistics.median(samples[c.name]),
            min(samples[c.name]),
            numbers[c.name] * len(samples[c.name]),
            c.note,
        )
        for c in cases
    ]


def plain(name: str, fn: Callable[[], object], note: str = "") -> Case:
    return Case(name, lambda: contextlib.nullcontext(fn), note)


def measure_each(name: str, fn: Callable[[], object], calls: int, note: str = "") -> Timing:
    """Per-call µs for slow operations (milliseconds each): every call timed on its own."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    return Timing(name, statistics.median(times), min(times), calls, note)


# -- fixtures ------------------------------------------------------------------------------------------
def _random_key(rng: random.Random) -> str:
    body = "".join(rng.choices(keyformat.ALPHABET, k=keyformat.RANDOM_LENGTH))
    return keyformat.PREFIX + body + keyformat.checksum(body)


def write_key_store(workspaces: Path, count: int, owner: str, seed: int = 6) -> str:
    """Write ``api-keys.json`` with ``count`` active keys of ``owner``; returns one raw key (the last)."""
    rng = random.Random(seed)
    stamp = iso(utcnow())
    records = []
    raw = ""
    for n in range(count):
        raw = _random_key(rng)
        records.append(
            key_record(
                f"key_{n:016x}", f"bench-{n}", owner, keyformat.display_prefix(raw), keyformat.digest(raw), stamp
            )
        )
    payload = json.dumps({"version": SCHEMA_VERSION, "keys": records}, indent=1, sort_keys=True).encode() + b"\n"
    atomic_write(workspaces / FILE_NAME, payload)
    return raw


def make_workspace(root: Path, name: str, keys: int) -> tuple[Path, str]:
    workspaces = root / name
    workspaces.mkdir()
    UserStore(workspaces).create("bench", PASSWORD, "member")
    return workspaces, write_key_store(workspaces, keys, "bench")


def make_app(workspaces: Path, **env: str):
    settings = {
        "WORKSPACES_DIR": str(workspaces),
        "SECRET_KEY": "bench-secret-key",
        "ADMIN_API_KEY": ADMIN_KEY,
        "VALID_API_KEYS": CLIENT_KEY,
        "API_RATE_LIMIT": "100000000",
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    settings.update(env)
    return create_app(load_config(settings))


def quiet_access_log() -> None:
    """The access log still formats and writes every line, just not to the terminal."""
    for handler in logging.getLogger("askgate.access").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115  (lives as long as the process)


def resolve_case(app, name: str, headers: dict[str, str], expect: str, note: str = "") -> Case:
    """``resolve_principal`` inside a test request context, as the hook calls it once per request.

    flask-login caches the current user in ``g`` for the rest of a request; each call drops that cache so
    it pays what the first call of a real request pays.
    """

    @contextlib.contextmanager
    def setup():
        with app.test_request_context("/api/whoami", headers=headers, environ_base={"REMOTE_ADDR": CLIENT_IP}):
            from flask import g, request

            req = request._get_current_object()

            def resolve():
                g.pop("_login_user", None)
                return resolve_principal(req)

            resolve()  # a refusal's first call counts the failure that may throttle the second
            result = resolve()
            got = result.auth_method if isinstance(result, Principal) else f"{result.status} {result.outcome}"
            if got != expect:
                raise RuntimeError(f"{name}: expected {expect}, got {got}")
            yield resolve

    return Case(name, setup, note)


def _networks(count: int, rng: random.Random) -> str:
    """``count`` distinct ranges in 10.0.0.0/8 with prefix lengths /8 to /32, never covering 192.0.2.1."""
    entries = set()
    while len(entries) < count:
        prefix = rng.randint(9, 32)
        address = ipaddress.IPv4Address(0x0A000000 | rng.getrandbits(24))
        entries.add(str(ipaddress.ip_network(f"{address}/{prefix}", strict=False)))
    return ",".join(sorted(entries))


def wsgi_caller(app, path: str, headers: dict[str, str]) -> Callable[[], None]:
    """One request through ``app``'s WSGI callable, as gunicorn makes it, minus the server."""
    environ = EnvironBuilder(path=path, headers=headers, environ_base={"REMOTE_ADDR": CLIENT_IP}).get_environ()
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    def call() -> None:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(b"")
        body = app(env, start_response)
        for _ in body:
            pass
        body.close()

    call()
    if not statuses[-1].startswith("200"):
        raise RuntimeError(f"{path} answered {statuses[-1]}")
    return call


def redis_round_trips(workspaces: Path, raw: str, scratch: Path, log=print) -> list[Timing]:
    """Redis round trips per authenticated request (counted at the client), and what they cost in process."""
    import redis.connection

    from bench.e2e import RedisServer

    if not shutil.which("redis-server"):
        log("  no redis-server: Redis rows skipped")
        return []
    server = RedisServer(scratch)
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent[0] += 1  # one packed send is one round trip (a pipeline or a script call included)
        return original(self, command, check_health)

    def trips_per_call(fn: Callable[[], object], calls: int = 100) -> float:
        sent[0] = 0
        for _ in range(calls):
            fn()
        return sent[0] / calls

    try:
        app = make_app(workspaces, RATELIMIT_STORAGE_URI=server.url)
        quiet_access_log()
        redis.connection.AbstractConnection.send_packed_command = counting
        cases = [
            Case(c.name, c.setup, f"{trips_per_call(c.setup().__enter__()):g} Redis round trips per request")
            for c in (
                plain(
                    "WSGI call: /api/whoami dashboard key, Redis storage",
                    wsgi_caller(app, "/api/whoami", {"x-api-key": raw}),
                ),
                plain(
                    "WSGI call: /api/whoami admin key, Redis storage",
                    wsgi_caller(app, "/api/whoami", {"x-api-key": ADMIN_KEY}),
                ),
            )
        ]
        resolve = resolve_case(
            app, "resolve_principal: dashboard key, Redis storage", {"x-api-key": raw}, "dashboard_key"
        )
        with resolve.setup() as fn:
            note = f"{trips_per_call(fn):g} Redis round trip(s) per call"
        cases.append(Case(resolve.name, resolve.setup, note))
        rows = run_cases(cases, rounds=3)
        log("  Redis round trips done")
        return rows
    finally:
        redis.connection.AbstractConnection.send_packed_command = original
        server.stop()


# -- micro-optimizations in the request path, each against its plain form ---------------------------------
MICRO = "micro:"


def micro_pairs(app) -> list[tuple[Case, Case]]:
    """(kept form, plain form) for each micro-optimization in the request path, the same work done both ways.

    Each optimization keeps its place only while its row shows the plain form measurably slower (issue 11).
    """
    from types import SimpleNamespace

    from flask import request
    from flask.sessions import SecureCookieSessionInterface
    from werkzeug.datastructures import Headers

    from app.auth import hook
    from app.security import HEADERS, add_security_headers
    from app.sessions import CachedSerializerSessionInterface

    def clock_plain() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    # The access log's timestamp was once cached per second (a class like this one). It saved under 1 µs a
    # request, and its two fields could be read half-updated by another thread: app/auth/hook.py has the plain form.
    class CachedClock:
        second, text = -1, ""

        @classmethod
        def now(cls) -> str:
            second = int(time.time())
            if second != cls.second:
                cls.second, cls.text = second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            return cls.text

    line = json.dumps({"time": clock_plain(), "event": "api_auth", "ip": CLIENT_IP, "path": "/api/whoami"})

    # The security headers on a fresh JSON response's headers (the copy is the same in both rows).
    base = Headers([("Content-Type", "application/json"), ("Content-Length", "120"), ("X-RateLimit-Limit", "10")])

    def headers_kept() -> None:
        add_security_headers(SimpleNamespace(headers=base.copy(), mimetype="application/json"))

    def headers_plain() -> None:
        response = SimpleNamespace(headers=base.copy(), mimetype="application/json")
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")

    def session_case(interface) -> Callable[[], contextlib.AbstractContextManager[Callable[[], object]]]:
        @contextlib.contextmanager
        def setup():
            # What every cookie-less request pays: open_session builds (or finds) the signing serializer.
            with app.test_request_context("/api/whoami", environ_base={"REMOTE_ADDR": CLIENT_IP}):
                req = request._get_current_object()
                yield partial(interface.open_session, app, req)

        return setup

    return [
        (
            plain(f"{MICRO} log timestamp, cached per second (dropped)", CachedClock.now),
            plain(f"{MICRO} log timestamp, strftime per call (app/auth/hook.py)", clock_plain),
        ),
        (
            plain(f"{MICRO} access line, makeRecord + handle", partial(hook.write_access_line, line)),
            plain(f"{MICRO} access line, logger.info", partial(hook.access_log.info, line)),
        ),
        (
            plain(f"{MICRO} security headers, one extend", headers_kept),
            plain(f"{MICRO} security headers, setdefault each", headers_plain),
        ),
        (
            Case(
                f"{MICRO} session open, serializer cached (app/sessions.py)",
                session_case(CachedSerializerSessionInterface()),
            ),
            Case(f"{MICRO} session open, Flask's serializer per request", session_case(SecureCookieSessionInterface())),
        ),
    ]


def run_micro(app, rounds: int = 7) -> list[Timing]:
    """Time every pair interleaved; each plain row's note gives plain/kept, the same-run ratio of medians."""
    pairs = micro_pairs(app)
    timings = {t.name: t for t in run_cases([case for pair in pairs for case in pair], rounds=rounds)}
    rows = []
    for kept, plain_case in pairs:
        k, p = timings[kept.name], timings[plain_case.name]
        rows.append(k)
        ratio, best = p.median_us / k.median_us, p.min_us / k.min_us
        note = f"plain/kept {ratio:.2f}x (best {best:.2f}x), {p.median_us - k.median_us:+.2f} µs per call"
        rows.append(Timing(p.name, p.median_us, p.min_us, p.calls, note))
    return rows


# -- the benchmarks ------------------------------------------------------------------------------------
def usage_rows(scratch: Path, log=print) -> list[Timing]:
    """What key usage costs (app/usage.py): one count on the request path, and one flush of a busy window (1,000
    keys each used in it) to SQLite and, with a private redis-server, to Redis."""
    from app import usage
    from app.documents.redisdoc import redis_client
    from bench.e2e import RedisServer

    sqlite = usage.SQLiteUsage(scratch / usage.FILE_NAME)
    recorder = usage.UsageRecorder(sqlite, 3600)
    rows = run_cases(
        [
            plain(
                "usage: count one request",
                partial(recorder.count, "key:k", usage.OK, "127.0.0.1", True),
                "the request thread's part: one deque append",
            )
        ]
    )
    recorder.flush()
    stores = [("SQLite", sqlite, "WAL, additive upserts, one transaction")]
    server = None
    if shutil.which("redis-server"):
        server = RedisServer(scratch)
        stores.append(("Redis", usage.RedisUsage(redis_client(server.url)), "HINCRBYs in one MULTI/EXEC pipeline"))
    else:
        log("  no redis-server: the Redis flush row skipped")
    try:
        for name, store, note in stores:
            recorder = usage.UsageRecorder(store, 3600)

            def fill(recorder=recorder) -> None:  # 1,000 keys each used once in the window
                for n in range(1000):
                    recorder.count(f"key:{n}", usage.OK, "127.0.0.1", True)

            def fill_only(recorder=recorder, fill=fill) -> None:
                fill()
                recorder._pending.clear()

            def window(recorder=recorder, fill=fill) -> None:
                fill()
                recorder.flush()

            window()  # the store's tables or keys exist: each timed flush is a steady-state one
            filled = measure_each(f"usage: 1,000 counts, {name} recorder (no flush)", fill_only, 15)
            both = measure_each(f"usage: 1,000 counts + flush to {name}", window, 15, note)
            rows += [
                filled,
                both,
                Timing(
                    f"usage: flush of 1,000 keys to {name}",
                    both.median_us - filled.median_us,
                    both.min_us - filled.min_us,
                    both.calls,
                    "summing by hour + the write; once per USAGE_FLUSH_SECONDS per process, off the request path",
                ),
            ]
    finally:
        if server is not None:
            server.stop()
    return rows


def run(log=print) -> list[Timing]:
    results: list[Timing] = []
    scratch = Path(tempfile.mkdtemp(prefix="askgate-bench-inproc-"))
    # create_app logs the setup token etc.; none of that belongs in the table.
    logging.getLogger("askgate").setLevel(logging.WARNING)
    try:
        apps = {}
        for size in STORE_SIZES:
            start = time.perf_counter()
            workspaces, raw = make_workspace(scratch, f"ws-{size}", size)
            app = make_app(workspaces)
            with app.app_context():
                app.extensions["askgate"].keys.file.read()  # the first parse is the reload row's business
            apps[size] = (app, workspaces, raw)
            log(f"  store with {size:>7,} keys ready in {time.perf_counter() - start:.1f} s")
        app10k, ws10k, raw10k = apps[10_000]
        # A refusal counts a failed attempt; with the default 20/minute the loop would be timing the 429 path.
        refuse_app = make_app(ws10k, AUTH_FAILURE_LIMIT="100000000/minute")
        throttle_app = make_app(ws10k, AUTH_FAILURE_LIMIT="1/hour")
        quiet_access_log()
        unknown = _random_key(random.Random(99))

        cases = [
            resolve_case(app, f"{RESOLVE_BY_SIZE} {size:,} keys", {"x-api-key": raw}, "dashboard_key")
            for size, (app, _, raw) in apps.items()
        ]
        cases += [
            resolve_case(app10k, "resolve_principal: admin env key", {"x-api-key": ADMIN_KEY}, "admin_key"),
            resolve_case(
                app10k, "resolve_principal: client env key", {"Authorization": f"Bearer {CLIENT_KEY}"}, "client_key"
            ),
            resolve_case(
                refuse_app,
                "resolve_principal: refused key (401)",
                {"x-api-key": unknown},
                "401 invalid",
                "well-formed, unknown; AUTH_FAILURE_LIMIT raised so it stays 401",
            ),
            resolve_case(
                throttle_app,
                "resolve_principal: throttled IP (429)",
                {"x-api-key": unknown},
                "429 throttled",
                "the IP used up its failed attempts",
            ),
        ]
        rng = random.Random(1)
        for count in (1, 1000):
            allowlist = IPAllowlist(parse_allowed_ips(_networks(count, rng)))
            cases.append(
                plain(f"IP allowlist: {count:,} CIDR entries, address refused", partial(allowlist.allowed, "192.0.2.1"))
            )
        allowlist = IPAllowlist(parse_allowed_ips(_networks(999, rng) + ",192.0.2.0/24"))
        cases.append(
            plain("IP allowlist: 1,000 CIDR entries, address allowed", partial(allowlist.allowed, "192.0.2.1"))
        )
        store = app10k.extensions["askgate"].keys
        cases.append(plain("key store: stat-based reload check, unchanged", store.file.read, "10,000 keys"))
        # Whole requests through the WSGI stack (no server, no network): where the end-to-end gap comes from.
        cases += [
            plain("WSGI call: bare Flask reference", wsgi_caller(create_bare_app(), REFERENCE_PATH, {}), "no server"),
            plain("WSGI call: /api/health", wsgi_caller(app10k, "/api/health", {})),
            plain(
                "WSGI call: /api/whoami dashboard key",
                wsgi_caller(app10k, "/api/whoami", {"x-api-key": raw10k}),
                "memory storage, 10,000 keys",
            ),
        ]
        results += run_cases(cases)
        log("  principal, allowlist, stat check and WSGI calls done (5 interleaved rounds)")
        results += run_micro(app10k)
        log("  micro-optimizations against their plain forms done")

        path = store.file.path
        tick = [os.stat(path).st_mtime_ns]

        def touch_and_read():
            tick[0] += 1000
            os.utime(path, ns=(tick[0], tick[0]))  # a change as another process's write looks to us
            store.file.read()

        results.append(measure_each("key store: full reload after a change, 10,000 keys", touch_and_read, 15))
        with app10k.app_context():
            results.append(
                measure_each(
                    "key store: create a key at 10,000 keys",
                    lambda: store.create("bench", "new"),
                    15,
                    "lock, parse, write + fsync file and backup",
                )
            )
        log("  store reload and create done")
        results += usage_rows(scratch, log)
        log("  usage counting and flush done")

        # Last, because flask-limiter's Limiter is one object and the latest init_app picks its storage.
        results += redis_round_trips(ws10k, raw10k, scratch, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def run_micro_only(log=print) -> list[Timing]:
    scratch = Path(tempfile.mkdtemp(prefix="askgate-bench-micro-"))
    logging.getLogger("askgate").setLevel(logging.WARNING)
    try:
        workspaces, _ = make_workspace(scratch, "ws", 10)
        app = make_app(workspaces)
        quiet_access_log()
        return run_micro(app)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.redirect_stderr(io.StringIO()):
        timings = run_micro_only() if "--micro" in sys.argv[1:] else run()
    for t in timings:
        print(f"{t.name:<60} {t.median_us:10.2f} µs  (best {t.min_us:.2f})  {t.note}")
