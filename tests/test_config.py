"""Configuration: read once from the environment; a bad value stops start-up with one line naming it."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import app.config as config_module
from app.config import ConfigError, load_config, load_dotenv_files, load_server_settings, parse_allowed_ips
from tests.conftest import ROOT, base_env


def env(tmp_path: Path, **values: str) -> dict:
    return {"WORKSPACES_DIR": str(tmp_path / "ws"), **values}


def test_defaults(tmp_path):
    config = load_config(env(tmp_path))
    assert config.workspaces_dir == (tmp_path / "ws").resolve()
    assert config.admin_api_key is None
    assert config.valid_api_keys == ()
    assert config.allowed_ips is None
    assert config.api_rate_limit == 100
    assert config.auth_failure_limit == "20/minute"
    assert config.login_rate_limit == "10/minute"
    assert config.ratelimit_storage_uri == "memory://"
    assert config.trusted_proxy_count == 0
    assert config.session_cookie_secure is False
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.ask_index_wait == 10.0
    settings = config.flask_settings()
    assert settings["SESSION_COOKIE_HTTPONLY"] is True
    assert settings["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert settings["SESSION_COOKIE_SECURE"] is False
    assert settings["RATELIMIT_STORAGE_URI"] == "memory://"


def test_workspaces_dir_defaults_to_dot_workspaces(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_config({"SECRET_KEY": "s"}).workspaces_dir == (tmp_path / "workspaces").resolve()


def test_index_dir_defaults_to_dot_index_in_the_workspaces_folder_and_is_made_when_needed(tmp_path):
    config = load_config(env(tmp_path))
    assert config.index_dir == (tmp_path / "ws").resolve() / ".index"
    assert not config.index_dir.exists()


@pytest.mark.parametrize("value", ["local/indexes", "ws/.cache/indexes"])
def test_index_dir_is_resolved_and_created_at_start(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    config = load_config(env(tmp_path, INDEX_DIR=value))
    assert config.index_dir == (tmp_path / value).resolve()
    assert config.index_dir.is_dir()


def test_bad_index_dirs_stop_start_up_with_one_line_naming_it(tmp_path):
    ws = (tmp_path / "ws").resolve()
    (tmp_path / "a-file").write_text("")
    expected = {
        str(ws): f"INDEX_DIR must be a folder of its own, not WORKSPACES_DIR itself ({ws})",
        str(ws / "indexes"): f"INDEX_DIR {ws / 'indexes'} is inside WORKSPACES_DIR: use a name starting with '.' "
        "there (such as the default .index) or a folder elsewhere",
        str(tmp_path / "a-file"): f"INDEX_DIR {tmp_path / 'a-file'} is not a folder",
        str(tmp_path / "a-file" / "x"): f"INDEX_DIR {tmp_path / 'a-file' / 'x'} does not exist and cannot be created "
        "(Not a directory)",
    }
    for value, message in expected.items():
        with pytest.raises(ConfigError) as exc:
            load_config(env(tmp_path, INDEX_DIR=value))
        assert str(exc.value) == message
    assert not (ws / "indexes").exists()


def test_values_are_read(tmp_path):
    config = load_config(
        env(
            tmp_path,
            ADMIN_API_KEY="a" * 40,
            VALID_API_KEYS=" one-key , two-key ,, ",
            API_RATE_LIMIT="7",
            TRUSTED_PROXY_COUNT="2",
            SESSION_COOKIE_SECURE="true",
            RATELIMIT_STORAGE_URI="redis://localhost:6379/3",
            AUTH_FAILURE_LIMIT="5 per minute",
            HOST="0.0.0.0",
            PORT="9000",
            ASK_INDEX_WAIT="2.5",
            STORE_STALE_SECONDS="0.5",
        )
    )
    assert config.ask_index_wait == 2.5
    assert config.store_stale_seconds == 0.5
    assert config.admin_api_key == "a" * 40
    assert config.valid_api_keys == ("one-key", "two-key")
    assert config.api_rate_limit == 7
    assert config.trusted_proxy_count == 2
    assert config.session_cookie_secure is True
    assert config.flask_settings()["SESSION_COOKIE_SECURE"] is True
    assert config.ratelimit_storage_uri == "redis://localhost:6379/3"
    assert config.auth_failure_limit == "5 per minute"
    assert (config.host, config.port) == ("0.0.0.0", 9000)


def test_secret_key_is_generated_once_with_mode_0600_and_shared(tmp_path):
    first = load_config(env(tmp_path))
    path = tmp_path / "ws" / ".secret-key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert path.read_text().strip() == first.secret_key
    assert load_config(env(tmp_path)).secret_key == first.secret_key  # another worker, or a restart
    assert load_config({"WORKSPACES_DIR": str(tmp_path / "other")}).secret_key != first.secret_key


def test_the_secret_key_file_never_exists_half_written(tmp_path, monkeypatch):
    """Workers and the CLI may start at once on a fresh folder: none may find an empty .secret-key."""
    path = tmp_path / "ws" / ".secret-key"
    seen_while_generating: list[str | None] = []
    real_token = config_module.secrets.token_urlsafe

    def spy(nbytes=None):
        seen_while_generating.append(path.read_text() if path.exists() else None)
        return real_token(nbytes)

    monkeypatch.setattr(config_module.secrets, "token_urlsafe", spy)
    secret = load_config(env(tmp_path)).secret_key
    assert seen_while_generating == [None]  # others see no file, then the whole secret
    assert path.read_text().strip() == secret
    assert sorted(p.name for p in path.parent.iterdir()) == [".secret-key"]  # no temp file left


def test_secret_key_from_the_environment_wins(tmp_path):
    config = load_config(env(tmp_path, SECRET_KEY="from-env"))
    assert config.secret_key == "from-env"
    assert not (tmp_path / "ws" / ".secret-key").exists()


def test_allowed_ips_parsing():
    assert parse_allowed_ips(None) is None
    assert parse_allowed_ips("*") is None
    assert parse_allowed_ips("  ") is None
    assert parse_allowed_ips("10.0.0.0/8, 203.0.113.7 ,2001:db8::/32, 10.1.2.3/16") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("203.0.113.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("10.1.0.0/16"),
    )


@pytest.mark.parametrize("entry", ["10.0.0.300", "example.com", "10.0.0.0/33", "2001:db8::/129", "localhost"])
def test_a_bad_allowed_ips_entry_is_a_config_error_naming_the_variable(tmp_path, entry):
    with pytest.raises(ConfigError) as info:
        load_config(env(tmp_path, ALLOWED_IPS=f"10.0.0.1,{entry}"))
    assert str(info.value) == (
        f"ALLOWED_IPS entry {entry!r} is not an IP address or CIDR range "
        "(examples: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32, or * for everyone)"
    )


def test_allowed_ips_with_only_commas_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="^ALLOWED_IPS is set but lists no address"):
        load_config(env(tmp_path, ALLOWED_IPS=" , ,"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("API_RATE_LIMIT", "lots", "API_RATE_LIMIT must be a whole number of requests per hour, got 'lots'"),
        ("API_RATE_LIMIT", "100/hour", "API_RATE_LIMIT must be a whole number of requests per hour, got '100/hour'"),
        ("API_RATE_LIMIT", "0", "API_RATE_LIMIT must be at least 1, got 0"),
        ("TRUSTED_PROXY_COUNT", "one", "TRUSTED_PROXY_COUNT must be a whole number, got 'one'"),
        ("PORT", "http", "PORT must be a whole number, got 'http'"),
        ("SESSION_COOKIE_SECURE", "maybe", "SESSION_COOKIE_SECURE must be true or false, got 'maybe'"),
        ("AUTH_FAILURE_LIMIT", "often", "AUTH_FAILURE_LIMIT must look like '20/minute' or '100 per hour', got 'often'"),
        ("LOGIN_RATE_LIMIT", "10/fortnight", "LOGIN_RATE_LIMIT must look like"),
        ("KEY_CREATE_LIMIT", "twenty", "KEY_CREATE_LIMIT must look like '20/minute' or '100 per hour', got 'twenty'"),
        ("USER_RATE_LIMIT", "lots", "USER_RATE_LIMIT must be a whole number, got 'lots'"),
        ("USER_RATE_LIMIT", "0", "USER_RATE_LIMIT must be at least 1, got 0"),
        ("RATELIMIT_STORAGE_URI", "redis", "RATELIMIT_STORAGE_URI must be a URI such as memory://"),
        ("ASK_INDEX_WAIT", "soon", "ASK_INDEX_WAIT must be a number of seconds from 0 to 300, got 'soon'"),
        ("ASK_INDEX_WAIT", "-1", "ASK_INDEX_WAIT must be a number of seconds from 0 to 300, got '-1'"),
        ("ASK_INDEX_WAIT", "nan", "ASK_INDEX_WAIT must be a number of seconds from 0 to 300, got 'nan'"),
        ("ASK_INDEX_WAIT", "3600", "ASK_INDEX_WAIT must be a number of seconds from 0 to 300, got '3600'"),
        ("STORE_STALE_SECONDS", "half", "STORE_STALE_SECONDS must be a number of seconds from 0 to 3600, got 'half'"),
        ("STORE_STALE_SECONDS", "-1", "STORE_STALE_SECONDS must be a number of seconds from 0 to 3600, got '-1'"),
        ("STORE_STALE_SECONDS", "inf", "STORE_STALE_SECONDS must be a number of seconds from 0 to 3600, got 'inf'"),
        ("STORE_STALE_SECONDS", "7200", "STORE_STALE_SECONDS must be a number of seconds from 0 to 3600, got '7200'"),
    ],
)
def test_bad_values_are_config_errors_naming_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as info:
        load_config(env(tmp_path, **{name: value}))
    assert str(info.value).startswith(message)
    assert str(info.value).startswith(name)


def test_a_short_admin_key_logs_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="askgate"):
        load_config(env(tmp_path, ADMIN_API_KEY="short-admin-key"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("ADMIN_API_KEY is only 15 characters; use at least 32 random characters")
    assert "short-admin-key" not in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="askgate"):
        load_config(env(tmp_path, ADMIN_API_KEY="k" * 32))
    assert caplog.records == []


def test_dotenv_files_local_first_and_the_real_environment_wins(tmp_path, monkeypatch):
    for name in ("ASKGATE_T_A", "ASKGATE_T_B", "ASKGATE_T_C"):
        monkeypatch.delenv(name, raising=False)  # also removes what the files set, at teardown
    monkeypatch.setenv("ASKGATE_T_C", "real")
    (tmp_path / ".env.local").write_text("ASKGATE_T_A=local\n")
    (tmp_path / ".env").write_text("ASKGATE_T_A=env\nASKGATE_T_B=env\nASKGATE_T_C=env\n")
    load_dotenv_files(tmp_path)
    assert os.environ["ASKGATE_T_A"] == "local"
    assert os.environ["ASKGATE_T_B"] == "env"
    assert os.environ["ASKGATE_T_C"] == "real"


def _import_wsgi(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **base_env(tmp_path / "ws", **overrides),
    }
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=tmp_path,  # no .env files here
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "ALLOWED_IPS",
            "10.0.0.0/8,not-an-ip",
            "askgate: configuration error: ALLOWED_IPS entry 'not-an-ip' is not an IP address or CIDR range "
            "(examples: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32, or * for everyone)",
        ),
        (
            "ASK_INDEX_WAIT",
            "ten",
            "askgate: configuration error: ASK_INDEX_WAIT must be a number of seconds from 0 to 300, got 'ten'",
        ),
        (
            "API_RATE_LIMIT",
            "fast",
            "askgate: configuration error: API_RATE_LIMIT must be a whole number of requests per hour, got 'fast'",
        ),
    ],
)
def test_importing_wsgi_with_a_bad_environment_exits_with_one_line(tmp_path, name, value, line):
    result = _import_wsgi(tmp_path, **{name: value})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == line + "\n"


def test_importing_wsgi_reads_dotenv_from_the_working_directory(tmp_path):
    (tmp_path / ".env").write_text("LOGIN_RATE_LIMIT=never\n")
    result = _import_wsgi(tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("askgate: configuration error: LOGIN_RATE_LIMIT must look like")
    assert result.stderr.count("\n") == 1


def test_server_settings_defaults_and_values(tmp_path):
    config = load_config(env(tmp_path))
    settings = load_server_settings(config, {})
    assert (settings.workers, settings.threads, settings.timeout, settings.graceful_timeout) == (1, 8, 120, 30)
    assert settings.access_log is None
    values = {"GUNICORN_THREADS": "4", "GUNICORN_TIMEOUT": "60", "GUNICORN_GRACEFUL_TIMEOUT": "5"}
    settings = load_server_settings(config, {**values, "GUNICORN_ACCESS_LOG": "-"})
    assert (settings.threads, settings.timeout, settings.graceful_timeout, settings.access_log) == (4, 60, 5, "-")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GUNICORN_THREADS", "x", "GUNICORN_THREADS must be a whole number, got 'x'"),
        ("GUNICORN_THREADS", "0", "GUNICORN_THREADS must be at least 1, got 0"),
        ("GUNICORN_TIMEOUT", "ten", "GUNICORN_TIMEOUT must be a whole number, got 'ten'"),
        ("GUNICORN_GRACEFUL_TIMEOUT", "-1", "GUNICORN_GRACEFUL_TIMEOUT must be at least 0, got -1"),
        ("WEB_CONCURRENCY", "two", "WEB_CONCURRENCY must be a whole number, got 'two'"),
    ],
)
def test_bad_server_setting_names_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as exc:
        load_server_settings(load_config(env(tmp_path)), {name: value})
    assert str(exc.value) == message
