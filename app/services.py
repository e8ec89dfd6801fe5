"""The app's long-lived objects (config, stores, allowlist), kept in ``app.extensions``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from flask import Flask, current_app

from app import audit, usage
from app.ask import indexdb
from app.ask.llm import LLMSettings
from app.config import Config
from app.ipallow import IPAllowlist
from app.keys.store import KeyStore
from app.ratelimits import ClientLimits
from app.stores import Stores
from app.users.store import UserStore

EXTENSION_NAME = "askgate"


@dataclass(frozen=True)
class Services:
    config: Config
    keys: KeyStore
    users: UserStore
    allowlist: IPAllowlist
    env_keys: tuple[tuple[bytes, str, str], ...]  # (key bytes, auth method, rate-limit bucket)
    llm: LLMSettings
    limits: ClientLimits
    session_cookie: str
    audit: object = None  # app.audit.FileAuditLog or RedisAuditLog
    usage: usage.UsageRecorder | None = None  # each key's requests, counted per process and flushed (app.usage)
    principals: dict = field(default_factory=dict)  # the auth hook's cache, see app.auth.principal


def init_services(app: Flask, config: Config, limiter_storage=None) -> Services:
    """Build the long-lived objects once per app; ``limiter_storage`` is flask-limiter's storage."""
    env_keys: list[tuple[bytes, str, str]] = []
    if config.admin_api_key:
        env_keys.append((config.admin_api_key.encode(), "admin_key", "env:admin"))
    for key in config.valid_api_keys:
        # The bucket names the key by a digest fragment so limiter storage never holds the key itself.
        bucket = "env:" + hashlib.sha256(key.encode()).hexdigest()[:16]
        env_keys.append((key.encode(), "client_key", bucket))
    stores = Stores.open(config.store_url or "files", config.workspaces_dir, config.store_stale_seconds)
    if config.index_dir is not None:
        indexdb.place_indexes(config.workspaces_dir, config.index_dir)
    svc = Services(
        config=config,
        keys=stores.keys,
        users=stores.users,
        allowlist=IPAllowlist(config.allowed_ips),
        env_keys=tuple(env_keys),
        llm=LLMSettings(config.llm_base_url, config.llm_model, config.llm_api_key, config.llm_timeout),
        limits=ClientLimits(
            config.api_rate_limit,
            config.auth_failure_limit,
            limiter_storage,
            user_per_hour=config.user_rate_limit,
            key_create_limit=config.key_create_limit,
        ),
        session_cookie=app.config["SESSION_COOKIE_NAME"],
        audit=audit.open_log(config.store_url, config.workspaces_dir, config.audit_max_bytes, config.audit_max_events),
        usage=usage.UsageRecorder(
            usage.open_store(config.store_url, config.workspaces_dir), config.usage_flush_seconds
        ),
    )
    app.extensions[EXTENSION_NAME] = svc
    return svc


def services() -> Services:
    return current_app.extensions[EXTENSION_NAME]
