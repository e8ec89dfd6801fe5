"""Issue 10, operator settings that trusted too much (items 14-16), on real gunicorn: forwarded headers count
only from TRUSTED_PROXIES and only the ones named, no redirect is built from Host, and the small things."""

from __future__ import annotations

import http.client
import ipaddress
import re
import subprocess
import time

import pytest
import requests

from app.config import ConfigError, load_config
from tests.conftest import ADMIN_KEY, ROOT, base_env, free_port, gunicorn_command, server_env
from tests.procnet import FromAddress

ADMIN = {"x-api-key": ADMIN_KEY}


def _get(url: str, headers: dict, source: str = "127.0.0.1") -> requests.Response:
    with requests.Session() as http:
        http.mount("http://", FromAddress(source))
        return http.get(url, headers=headers, allow_redirects=False, timeout=10)


# -- 14: only X-Forwarded-For and -Proto by default --------------------------------------------------------------
@pytest.mark.server
def test_a_forwarded_prefix_is_ignored_unless_named(start_server):
    plain = start_server({"TRUSTED_PROXY_COUNT": "1"})
    named = start_server({"TRUSTED_PROXY_COUNT": "1", "TRUSTED_PROXY_HEADERS": "X-Forwarded-Prefix"})
    evil = {"X-Forwarded-Prefix": "//evil.example", "X-Forwarded-Host": "evil.example"}

    ignored = _get(plain.url + "/dashboard", evil)
    honoured = _get(named.url + "/dashboard", {"X-Forwarded-Prefix": "/askgate"})

    assert ignored.status_code == 302
    assert ignored.headers["Location"] == "/login?next=%2Fdashboard"
    assert honoured.headers["Location"] == "/askgate/login?next=%2Faskgate%2Fdashboard"


@pytest.mark.server
def test_forwarded_for_still_counts_from_a_trusted_proxy(start_server):
    server = start_server({"TRUSTED_PROXY_COUNT": "1"})
    response = _get(server.url + "/api/whoami", {**ADMIN, "X-Forwarded-For": "203.0.113.5"})
    assert response.status_code == 200
    assert '"ip":"203.0.113.5"' in server.log()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", frozenset()),
        ("X-Forwarded-For, x-forwarded-proto", frozenset()),
        ("X-Forwarded-Host,X-Forwarded-Port", frozenset({"host", "port"})),
        ("prefix", frozenset({"prefix"})),
    ],
)
def test_trusted_proxy_headers_parse(tmp_path, raw, expected):
    assert load_config(base_env(tmp_path, TRUSTED_PROXY_HEADERS=raw)).trusted_proxy_headers == expected


def test_an_unknown_trusted_proxy_header_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(base_env(tmp_path, TRUSTED_PROXY_HEADERS="X-Real-IP"))
    assert str(info.value) == (
        "TRUSTED_PROXY_HEADERS entry 'X-Real-IP' is not one of X-Forwarded-Host, X-Forwarded-Port, X-Forwarded-Prefix"
    )


# -- 15: forwarded headers only from TRUSTED_PROXIES --------------------------------------------------------------
@pytest.mark.server
def test_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(start_server):
    server = start_server({"TRUSTED_PROXY_COUNT": "1", "TRUSTED_PROXIES": "127.0.0.1", "ALLOWED_IPS": "10.0.0.0/8"})
    spoof = {**ADMIN, "X-Forwarded-For": "10.1.1.1"}

    through_proxy = _get(server.url + "/api/whoami", spoof, source="127.0.0.1")
    straight = _get(server.url + "/api/whoami", spoof, source="127.0.0.2")

    assert through_proxy.status_code == 200
    assert (straight.status_code, straight.json()) == (403, {"error": "Access denied from this IP address"})


@pytest.mark.server
def test_trusted_proxies_default_to_loopback_only(start_server):
    server = start_server({"TRUSTED_PROXY_COUNT": "1", "TRUSTED_PROXIES": "192.0.2.10", "ALLOWED_IPS": "10.0.0.0/8"})
    response = _get(server.url + "/api/whoami", {**ADMIN, "X-Forwarded-For": "10.1.1.1"})
    assert response.status_code == 403  # loopback is not trusted once TRUSTED_PROXIES says otherwise
    default = load_config(base_env(server.workspaces)).trusted_proxies
    assert default == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def test_a_bad_trusted_proxy_is_refused_with_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(base_env(tmp_path, TRUSTED_PROXIES="127.0.0.1,proxy.internal"))
    assert str(info.value) == (
        "TRUSTED_PROXIES entry 'proxy.internal' is not an IP address or CIDR range "
        "(examples: 127.0.0.1, 10.0.0.0/8, ::1, fd00::/8)"
    )


# -- 16: small things --------------------------------------------------------------------------------------------
def _gunicorn_run(workspaces, *args: str, wait_for: str, **env: str) -> tuple[subprocess.Popen, str]:
    """Start gunicorn and read its log until ``wait_for`` appears (or it exits); returns the process and log."""
    proc = subprocess.Popen(
        gunicorn_command(*args),
        cwd=ROOT,
        env=server_env(workspaces, free_port(), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if wait_for in line:
            break
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.server
def test_a_missing_workspaces_dir_is_created_and_the_setup_url_names_the_real_bind(tmp_path):
    missing = tmp_path / "not" / "yet"
    port = free_port()
    proc, log = _gunicorn_run(missing, "-b", f"127.0.0.1:{port}", wait_for="No users yet", SECRET_KEY="set")
    try:
        assert "Traceback" not in log
        token = (missing / ".setup-token").read_text().strip()
        assert f"Create the first admin at http://127.0.0.1:{port}/setup?token={token} " in log
        assert requests.get(f"http://127.0.0.1:{port}/setup", params={"token": token}, timeout=10).status_code == 200
    finally:
        _stop(proc)


@pytest.mark.server
def test_an_uncreatable_workspaces_dir_stops_gunicorn_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = subprocess.run(
        gunicorn_command(),
        cwd=ROOT,
        env=server_env(blocker / "workspaces", free_port()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"askgate: configuration error: WORKSPACES_DIR {blocker / 'workspaces'} does not exist "
        "and cannot be created (Not a directory)\n"
    )


def test_key_list_finds_a_users_keys_whatever_the_case(app, auth):
    auth.create_user("carol")
    auth.new_key("carol", "ci")
    result = app.test_cli_runner().invoke(args=["key", "list", "--user", "CAROL"])
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.output.splitlines()]
    assert [(row[1], row[2]) for row in rows] == [("carol", "ci")]


def _raw_get(port: int, path: str, host: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host)
    conn.putheader("x-api-key", ADMIN_KEY)
    conn.endheaders()
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


@pytest.mark.server
def test_no_redirect_is_built_from_the_host_header(live_server):
    server = live_server()
    doubled = _raw_get(server.port, "/api//keys", "evil.example")
    page = _raw_get(server.port, "//dashboard", "evil.example")
    assert doubled.status == 404
    assert doubled.getheader("Location") is None
    assert doubled.getheader("Content-Type") == "application/json"
    assert page.getheader("Location") is None or "evil.example" not in page.getheader("Location")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:203.0.113.7", "203.0.113.7/32"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("2001:db8::/32", "2001:db8::/32"),
    ],
)
def test_ipv4_mapped_ranges_mean_their_ipv4_range(tmp_path, raw, expected):
    config = load_config(base_env(tmp_path, ALLOWED_IPS=raw, TRUSTED_PROXIES=raw))
    assert config.allowed_ips == (ipaddress.ip_network(expected),)
    assert config.trusted_proxies == (ipaddress.ip_network(expected),)


@pytest.mark.server
def test_an_ipv4_mapped_allowlist_lets_its_clients_in(live_server):
    server = live_server(ALLOWED_IPS="::ffff:127.0.0.0/104")
    assert requests.get(server.url + "/api/whoami", headers=ADMIN, timeout=10).status_code == 200


@pytest.mark.server
@pytest.mark.parametrize("path", ["/API/whoami", "/Api/nothing", "/API"])
def test_any_case_of_api_answers_json(live_server, path):
    server = live_server()
    response = requests.get(server.url + path, headers=ADMIN, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"Not found: the API's routes are listed at /api/openapi.json", response.json()["error"])
