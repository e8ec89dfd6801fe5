"""Askgate's configuration: read from the environment once, validated, frozen."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from app.documents.sharedfile import create_once

log = logging.getLogger("askgate")

TRUE_WORDS = {"1", "true", "yes", "on"}
# X-Forwarded-For and -Proto are always trusted from a trusted proxy; these only when named.
OPTIONAL_PROXY_HEADERS = ("host", "port", "prefix")
DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")
FALSE_WORDS = {"0", "false", "no", "off", ""}
ASK_INDEX_WAIT_MAX = 300.0
STORE_STALE_SECONDS_MAX = 3600.0


class ConfigError(ValueError):
    """A bad environment value; the message names the variable and says what to do."""


@dataclass(frozen=True)
class Config:
    workspaces_dir: Path
    secret_key: str
    admin_api_key: str | None
    valid_api_keys: tuple[str, ...]
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None
    api_rate_limit: int
    auth_failure_limit: str
    login_rate_limit: str
    ratelimit_storage_uri: str
    trusted_proxy_count: int
    session_cookie_secure: bool
    max_content_length: int
    host: str
    port: int
    store_url: str | None = None
    store_stale_seconds: float = 30.0  # with STORE_URL=redis://: how long the last loaded copy answers while it is away
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout: float = 60.0
    ask_index_wait: float = 10.0
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default_factory=lambda: parse_networks("TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES)
    )
    trusted_proxy_headers: frozenset[str] = frozenset()  # of OPTIONAL_PROXY_HEADERS
    user_rate_limit: int | None = None
    key_create_limit: str = "20/hour"
    session_lifetime: int = 12 * 3600  # seconds of inactivity
    api_max_json_bytes: int = 64 * 1024
    request_header_timeout: float = 10.0
    index_dir: Path | None = None  # None: WORKSPACES_DIR/.index
    audit_max_bytes: int = 10 * 1024 * 1024  # audit.log rotates at this size (files store)
    audit_max_events: int = 100_000  # the audit stream's approximate cap (Redis store)
    usage_flush_seconds: int = 10  # how often each process adds its key usage counts to the store

    def flask_settings(self) -> dict:
        """The subset Flask and its extensions read from ``app.config``."""
        return {
            "SECRET_KEY": self.secret_key,
            "WORKSPACES_DIR": str(self.workspaces_dir),
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": self.session_cookie_secure,
            "REMEMBER_COOKIE_HTTPONLY": True,
            "REMEMBER_COOKIE_SAMESITE": "Lax",
            "REMEMBER_COOKIE_SECURE": self.session_cookie_secure,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_uri,
            "RATELIMIT_STRATEGY": "fixed-window",
            "RATELIMIT_HEADERS_ENABLED": True,
            "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
            "RATELIMIT_KEY_PREFIX": "askgate",
            "WTF_CSRF_TIME_LIMIT": 3600 * 8,
            # A dead Redis must cost a request milliseconds, not seconds: flask-limiter then falls back
            # to per-process memory limits and logs it once, and checks back with a growing interval.
            "RATELIMIT_STORAGE_OPTIONS": (
                {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
                if self.ratelimit_storage_uri.startswith(("redis://", "rediss://"))
                else {}
            ),
        }


def _get(env: dict, name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _int(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(env: dict, name: str, default: str, maximum: float) -> float:
    raw = _get(env, name, default)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= maximum:  # also refuses nan and inf
        raise ConfigError(f"{name} must be a number of seconds from 0 to {maximum:g}, got {raw!r}")
    return value


def _bool(env: dict, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _network(name: str, entry: str, examples: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ConfigError(f"{name} entry {entry!r} is not an IP address or CIDR range (examples: {examples})") from None
    if net.version == 6 and net.subnet_of(_MAPPED_V4):
        # An IPv4-mapped range (::ffff:10.0.0.0/104) means the IPv4 one; clients are compared as IPv4.
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def parse_networks(name: str, raw: str) -> tuple:
    """Comma-separated addresses and CIDR ranges; IPv4-mapped IPv6 ranges become their IPv4 range."""
    networks = tuple(
        _network(name, entry.strip(), "127.0.0.1, 10.0.0.0/8, ::1, fd00::/8")
        for entry in raw.split(",")
        if entry.strip()
    )
    if not networks:
        raise ConfigError(f"{name} is set but lists no address")
    return networks


def _header_timeout(env: dict) -> float:
    value = _seconds(env, "REQUEST_HEADER_TIMEOUT", "10", maximum=3600)
    if value == 0:
        raise ConfigError("REQUEST_HEADER_TIMEOUT must be more than 0 seconds (a request needs time for its headers)")
    return value


def parse_allowed_ips(raw: str | None) -> tuple | None:
    """Parse ``ALLOWED_IPS``: ``*`` (or unset) means everyone, else addresses and CIDR ranges.

    Returns None for "everyone", else a tuple of networks.
    """
    if raw is None or raw.strip() in ("", "*"):
        return None
    networks = []
    everyone = False
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry == "*":
            everyone = True  # still check the other entries: a typo must not pass silently
            continue
        networks.append(_network("ALLOWED_IPS", entry, "203.0.113.7, 10.0.0.0/8, 2001:db8::/32, or * for everyone"))
    if everyone:
        return None
    if not networks:
        raise ConfigError("ALLOWED_IPS is set but lists no address; use * to allow everyone")
    return tuple(networks)


def _proxy_headers(env: dict) -> frozenset[str]:
    raw = _get(env, "TRUSTED_PROXY_HEADERS", "")
    names = set()
    for entry in raw.split(","):
        word = entry.strip().lower().removeprefix("x-forwarded-")
        if not word or word in ("for", "proto"):
            continue  # always trusted
        if word not in OPTIONAL_PROXY_HEADERS:
            raise ConfigError(
                f"TRUSTED_PROXY_HEADERS entry {entry.strip()!r} is not one of "
                "X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Prefix"
            )
        names.add(word)
    return frozenset(names)


def parse_duration(name: str, raw: str) -> int:
    """``"12h"``, ``"30m"``, ``"2d"``, ``"90s"`` or plain seconds, as whole seconds."""
    text = raw.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be a duration such as 12h, 30m or 3600 (seconds), got {raw!r}") from None
    if not seconds >= 60 or seconds == float("inf"):
        raise ConfigError(f"{name} must be at least 1 minute, got {raw!r}")
    return int(seconds)


def _limit_string(env: dict, name: str, default: str) -> str:
    from limits import parse_many

    raw = _get(env, name, default)
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must look like '20/minute' or '100 per hour', got {raw!r}") from None
    return raw


def ratelimit_storage_uri(env: dict) -> str:
    """``RATELIMIT_STORAGE_URI`` from ``env``, default ``memory://``."""
    storage = _get(env, "RATELIMIT_STORAGE_URI", "memory://")
    if "://" not in storage:
        raise ConfigError(
            f"RATELIMIT_STORAGE_URI must be a URI such as memory:// or redis://localhost:6379/0, got {storage!r}"
        )
    return storage


def check_worker_count(workers: int, storage_uri: str) -> None:
    """Refuse several worker processes on per-process (memory) rate-limit storage: each would count on its own."""
    if workers > 1 and storage_uri.startswith("memory://"):
        raise ConfigError(
            f"{workers} gunicorn workers need shared rate-limit storage: RATELIMIT_STORAGE_URI={storage_uri} counts "
            f"per process, so every limit would be {workers} times too high; "
            "set RATELIMIT_STORAGE_URI=redis://localhost:6379/0 or run one worker"
        )


def _store_url(env: dict) -> str | None:
    raw = _get(env, "STORE_URL")
    if raw is None or raw == "files":
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"STORE_URL must be a redis:// URL (or unset for the JSON files), got {raw!r}")
    return raw


def _split_keys(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def _workspaces_dir(env: dict) -> Path:
    """``WORKSPACES_DIR``, created when missing (gunicorn's master writes the setup token there first)."""
    path = Path(_get(env, "WORKSPACES_DIR", "./workspaces")).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"WORKSPACES_DIR {path} does not exist and cannot be created ({exc.strerror})") from None
    if not path.is_dir():
        raise ConfigError(f"WORKSPACES_DIR {path} is not a folder")
    return path


def _index_dir(env: dict, workspaces_dir: Path) -> Path:
    """``INDEX_DIR``: the search indexes, their locks and states (default ``WORKSPACES_DIR/.index``).

    A folder named here is created at start, so that a bad path stops start-up with one line."""
    raw = _get(env, "INDEX_DIR")
    if raw is None:
        return workspaces_dir / ".index"  # created when first needed, as it always was
    path = Path(raw).resolve()
    if path == workspaces_dir:
        raise ConfigError(f"INDEX_DIR must be a folder of its own, not WORKSPACES_DIR itself ({path})")
    if path.is_relative_to(workspaces_dir) and not path.relative_to(workspaces_dir).parts[0].startswith("."):
        # A folder such as WORKSPACES_DIR/indexes would be listed, and indexed, as a workspace.
        raise ConfigError(
            f"INDEX_DIR {path} is inside WORKSPACES_DIR: use a name starting with '.' there "
            "(such as the default .index) or a folder elsewhere"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"INDEX_DIR {path} is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"INDEX_DIR {path} does not exist and cannot be created ({exc.strerror})") from None
    return path


def _secret_key(env: dict, workspaces_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept beside the data."""
    configured = _get(env, "SECRET_KEY")
    if configured:
        return configured
    path = workspaces_dir / ".secret-key"
    if not path.exists():
        try:
            workspaces_dir.mkdir(parents=True, exist_ok=True)
            create_once(path, secrets.token_urlsafe(48))
        except OSError as exc:
            raise ConfigError(f"SECRET_KEY is unset and {path} cannot be created ({exc.strerror})") from None
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"SECRET_KEY is unset and {path} cannot be read ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"SECRET_KEY is unset and {path} is empty; delete it to generate a new one")
    return value


def _warn_if_short(name: str, key: str) -> None:
    if len(key) < 32:
        log.warning(
            "%s is only %d characters; use at least 32 random characters "
            '(python -c "import secrets; print(secrets.token_urlsafe(32))")',
            name,
            len(key),
        )


def load_config(env: dict | None = None) -> Config:
    """Build the Config from ``env`` (default: ``os.environ``). Raises ConfigError."""
    env = dict(os.environ if env is None else env)
    workspaces_dir = _workspaces_dir(env)

    raw_limit = _get(env, "API_RATE_LIMIT", "100")
    try:
        api_rate_limit = int(raw_limit)
    except ValueError:
        raise ConfigError(f"API_RATE_LIMIT must be a whole number of requests per hour, got {raw_limit!r}") from None
    if api_rate_limit < 1:
        raise ConfigError(f"API_RATE_LIMIT must be at least 1, got {api_rate_limit}")

    admin_key = _get(env, "ADMIN_API_KEY")
    if admin_key:
        _warn_if_short("ADMIN_API_KEY", admin_key)
    valid_api_keys = _split_keys(env.get("VALID_API_KEYS"))
    for position, key in enumerate(valid_api_keys, start=1):
        _warn_if_short(f"VALID_API_KEYS entry {position}", key)

    user_rate_limit = _int(env, "USER_RATE_LIMIT", 0, minimum=1) if _get(env, "USER_RATE_LIMIT") else None

    llm_timeout_raw = _get(env, "LLM_TIMEOUT", "60")
    try:
        llm_timeout = float(llm_timeout_raw)
    except ValueError:
        raise ConfigError(f"LLM_TIMEOUT must be a number of seconds, got {llm_timeout_raw!r}") from None
    if llm_timeout <= 0:
        raise ConfigError(f"LLM_TIMEOUT must be positive, got {llm_timeout_raw!r}")

    ask_index_wait = _seconds(env, "ASK_INDEX_WAIT", "10", maximum=ASK_INDEX_WAIT_MAX)

    storage = ratelimit_storage_uri(env)

    auth_failure_limit = _limit_string(env, "AUTH_FAILURE_LIMIT", "20/minute")
    login_rate_limit = _limit_string(env, "LOGIN_RATE_LIMIT", "10/minute")

    return Config(
        workspaces_dir=workspaces_dir,
        secret_key=_secret_key(env, workspaces_dir),
        admin_api_key=admin_key,
        valid_api_keys=valid_api_keys,
        allowed_ips=parse_allowed_ips(env.get("ALLOWED_IPS")),
        api_rate_limit=api_rate_limit,
        auth_failure_limit=auth_failure_limit,
        login_rate_limit=login_rate_limit,
        ratelimit_storage_uri=storage,
        trusted_proxy_count=_int(env, "TRUSTED_PROXY_COUNT", 0),
        session_cookie_secure=_bool(env, "SESSION_COOKIE_SECURE", False),
        max_content_length=_int(env, "MAX_CONTENT_LENGTH", 50 * 1024 * 1024, minimum=1024),
        host=_get(env, "HOST", "127.0.0.1"),
        port=_int(env, "PORT", 8000, minimum=1),
        store_url=_store_url(env),
        store_stale_seconds=_seconds(env, "STORE_STALE_SECONDS", "30", maximum=STORE_STALE_SECONDS_MAX),
        llm_base_url=_get(env, "LLM_BASE_URL"),
        llm_model=_get(env, "LLM_MODEL"),
        llm_api_key=_get(env, "LLM_API_KEY"),
        llm_timeout=llm_timeout,
        ask_index_wait=ask_index_wait,
        trusted_proxies=parse_networks("TRUSTED_PROXIES", _get(env, "TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES)),
        trusted_proxy_headers=_proxy_headers(env),
        user_rate_limit=user_rate_limit,
        key_create_limit=_limit_string(env, "KEY_CREATE_LIMIT", "20/hour"),
        session_lifetime=parse_duration("SESSION_LIFETIME", _get(env, "SESSION_LIFETIME", "12h")),
        api_max_json_bytes=_int(env, "API_MAX_JSON_BYTES", 64 * 1024, minimum=1024),
        request_header_timeout=_header_timeout(env),
        index_dir=_index_dir(env, workspaces_dir),
        audit_max_bytes=_int(env, "AUDIT_MAX_BYTES", 10 * 1024 * 1024, minimum=4096),
        audit_max_events=_int(env, "AUDIT_MAX_EVENTS", 100_000, minimum=100),
        usage_flush_seconds=_int(env, "USAGE_FLUSH_SECONDS", 10, minimum=1),
    )


def load_dotenv_files(directory: Path | None = None) -> None:
    """Load ``.env.local`` then ``.env`` when present; the real environment always wins."""
    from dotenv import load_dotenv

    base = directory or Path.cwd()
    for name in (".env.local", ".env"):
        path = base / name
        if path.is_file():
            load_dotenv(path, override=False)


@dataclass(frozen=True)
class ServerSettings:
    """What gunicorn.conf.py reads from the environment, validated like the rest."""

    workers: int
    threads: int
    timeout: int
    graceful_timeout: int
    access_log: str | None


def load_server_settings(config: Config, env: dict | None = None) -> ServerSettings:
    """gunicorn's settings (workers, threads, timeouts) from ``env``. Raises ConfigError naming the variable."""
    import multiprocessing

    env = dict(os.environ if env is None else env)
    shared_storage = not config.ratelimit_storage_uri.startswith("memory://")
    default_workers = multiprocessing.cpu_count() * 2 + 1 if shared_storage else 1
    # Only the default: -w, --workers and GUNICORN_CMD_ARGS override it, so gunicorn.conf.py checks the count
    # gunicorn finally runs (check_worker_count, in its nworkers_changed hook).
    workers = _int(env, "WEB_CONCURRENCY", default_workers, minimum=1)
    return ServerSettings(
        workers=workers,
        threads=_int(env, "GUNICORN_THREADS", 8, minimum=1),
        timeout=_int(env, "GUNICORN_TIMEOUT", 120, minimum=0),
        graceful_timeout=_int(env, "GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=0),
        access_log=_get(env, "GUNICORN_ACCESS_LOG"),
    )
