"""Property tests (hypothesis): the key format, ALLOWED_IPS and the allowlist, and hostile credential headers."""

from __future__ import annotations

import ipaddress
import re
import socket
import zlib

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from app.config import ConfigError, parse_allowed_ips
from app.ipallow import IPAllowlist
from app.keys.format import generate_key, is_well_formed
from app.keys.store import KeyStore
from app.users.store import UserStore
from tests.conftest import ADMIN_KEY, CLIENT_KEY, PASSWORD, LiveServer

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SCANNER_RE = re.compile(r"agk_[0-9A-Za-z]{40,}")
FAST = settings(max_examples=100, deadline=None)
FIXTURE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REFUSALS = {"API key required", "Invalid API key"}


# -- the key format ---------------------------------------------------------------------------------------
def reference_checksum(body: str) -> str:
    """An independent CRC32-in-base62 (6 characters, most significant first), written from the spec."""
    number = zlib.crc32(body.encode("ascii"))
    digits = ""
    for _ in range(6):
        number, rem = divmod(number, 62)
        digits = BASE62[rem] + digits
    return digits


bodies = st.text(alphabet=BASE62, min_size=43, max_size=43)
valid_keys = st.one_of(bodies.map(lambda body: "agk_" + body + reference_checksum(body)), st.builds(generate_key))


@FAST
@given(st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.floats(), st.lists(st.text())))
def test_is_well_formed_never_raises_and_answers_a_bool(value):
    assert is_well_formed(value) in (True, False)


@FAST
@given(valid_keys)
def test_every_key_with_a_right_checksum_is_accepted_and_scannable(key):
    assert is_well_formed(key) is True
    assert SCANNER_RE.fullmatch(key)


@FAST
@given(st.text(max_size=80))
@example("agk_" + "0" * 49)
@example("agk_" + "A" * 43 + "000000")
def test_arbitrary_text_is_accepted_only_with_the_agk_shape_and_its_checksum(text):
    shaped = re.fullmatch(r"agk_[0-9A-Za-z]{49}", text) is not None
    expected = shaped and reference_checksum(text[4:-6]) == text[-6:]

    assert is_well_formed(text) is expected


@FAST
@given(key=valid_keys, data=st.data())
def test_any_single_character_substitution_is_refused(key, data):
    index = data.draw(st.integers(0, len(key) - 1), label="index")
    replacement = data.draw(st.characters().filter(lambda ch: ch != key[index]), label="replacement")

    assert is_well_formed(key[:index] + replacement + key[index + 1 :]) is False


@FAST
@given(key=valid_keys, data=st.data())
def test_any_single_character_insertion_or_deletion_is_refused(key, data):
    index = data.draw(st.integers(0, len(key)), label="index")
    inserted = key[:index] + data.draw(st.characters(), label="inserted") + key[index:]
    deleted = key[: max(index - 1, 0)] + key[max(index, 1) :]

    assert is_well_formed(inserted) is False
    assert is_well_formed(deleted) is False


# -- ALLOWED_IPS ----------------------------------------------------------------------------------------------
@st.composite
def networks(draw, version: int | None = None):
    version = version or draw(st.sampled_from([4, 6]))
    address = draw(st.ip_addresses(v=version))
    prefix = draw(st.integers(0, address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


spaces = st.text(alphabet=" \t", max_size=3)
MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def ipv4_form(net):
    """An IPv4-mapped IPv6 range means its IPv4 range (clients are compared as IPv4): what the parser returns."""
    if net.version == 6 and net.subnet_of(MAPPED):
        return ipaddress.ip_network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


@FAST
@given(st.lists(st.tuples(networks(), spaces, spaces), min_size=1, max_size=8))
def test_valid_networks_round_trip(entries):
    raw = ",".join(f"{left}{net}{right}" for net, left, right in entries)

    assert parse_allowed_ips(raw) == tuple(ipv4_form(net) for net, _, _ in entries)


@FAST
@given(st.lists(st.ip_addresses(), min_size=1, max_size=5))
def test_bare_addresses_are_single_host_networks(addresses):
    parsed = parse_allowed_ips(", ".join(map(str, addresses)))

    assert parsed == tuple(ipv4_form(ipaddress.ip_network(addr)) for addr in addresses)
    assert all(net.num_addresses == 1 for net in parsed)


def _entry_is_valid(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


@FAST
@given(st.text().filter(lambda raw: "*" not in raw))
@example("10.0.0.1, not-an-ip")
@example(" , ,")
@example("10.0.0.0/33")
@example("2001:db8::/129")
@example("١٢٣.١.١.١")  # Arabic-Indic digits are digits to str.isdigit, not to an IP address
def test_garbage_raises_config_error_naming_allowed_ips_and_nothing_else(raw):
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    try:
        parsed = parse_allowed_ips(raw)
    except ConfigError as exc:
        assert "ALLOWED_IPS" in str(exc)
        assert raw.strip() and not (entries and all(map(_entry_is_valid, entries)))
    else:
        if not raw.strip():
            assert parsed is None  # unset means everyone
        else:
            assert parsed == tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


@pytest.mark.parametrize("raw", ["*", " * ", "", "10.0.0.1, *"])
def test_star_or_nothing_means_everyone(raw):
    assert parse_allowed_ips(raw) is None


def test_a_bad_entry_after_a_star_still_stops_startup():
    with pytest.raises(ConfigError, match="ALLOWED_IPS"):
        parse_allowed_ips("*, not-an-ip")


# -- IPAllowlist against ipaddress's own membership ------------------------------------------------------
def oracle(nets: list, addr: str | None) -> bool:
    """ipaddress membership, with an IPv4-mapped IPv6 peer (a dual-stack socket) taken as its IPv4 address.

    A zone index (``fe80::1%eth0``) names an interface of ours, not the peer, so it is ignored.
    """
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0] if isinstance(addr, str) else addr)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


@st.composite
def peers(draw, nets: list):
    """Addresses worth asking about: inside a listed network, anywhere, IPv4-mapped, scoped, or garbage."""
    if nets and draw(st.booleans()):
        net = draw(st.sampled_from(nets))
        ip = net.network_address + draw(st.integers(0, net.num_addresses - 1))
    else:
        ip = draw(st.ip_addresses())
    kind = draw(st.sampled_from(["plain", "mapped", "scoped", "garbage"]))
    if kind == "mapped" and ip.version == 4:
        return f"::ffff:{ip}"
    if kind == "scoped" and ip.version == 6:
        return f"{ip}%eth0"
    if kind == "garbage":
        return draw(st.one_of(st.none(), st.text(max_size=45)))
    return str(ip)


@FAST
@given(data=st.data(), nets=st.lists(networks(), min_size=1, max_size=12))
def test_allowlist_agrees_with_ipaddress_membership(data, nets):
    allowlist = IPAllowlist(tuple(nets))
    for _ in range(5):
        addr = data.draw(peers(nets), label="addr")
        assert allowlist.allowed(addr) is oracle(nets, addr), addr


@FAST
@given(st.one_of(st.none(), st.text(), st.ip_addresses().map(str)))
def test_no_allowlist_allows_everyone(addr):
    assert IPAllowlist(None).allowed(addr) is True


# -- hostile credential headers, through the Flask test client ------------------------------------------------
# Werkzeug refuses CR and LF in header values before a request exists; those go over a raw socket below.
header_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=300)
# About 10 KB: a short random text repeated (hypothesis will not draw 10,000 characters one by one quickly).
huge_text = header_text.filter(bool).map(lambda t: (t * (10_240 // len(t) + 1))[:10_240])
bearer_words = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR", "Bearer:", "Bearer=", "Token", "Basic", ""])
separators = st.sampled_from(["", " ", "  ", "\t", " \t ", "\x00", "\u00a0", ":"])


def hostile_headers():
    single = st.one_of(
        st.tuples(st.just("x-api-key"), st.one_of(header_text, huge_text)),
        st.tuples(
            st.just("Authorization"),
            st.one_of(
                header_text,
                st.tuples(bearer_words, separators, header_text).map("".join),
                huge_text.map("Bearer ".__add__),
            ),
        ),
    )
    return st.lists(single, min_size=1, max_size=4)  # several, and the same name repeated


@pytest.fixture
def header_app(make_app):
    """An app whose store holds a real key, with failed attempts unthrottled so every example gets an answer."""
    app = make_app(AUTH_FAILURE_LIMIT="100000/minute")
    services = app.extensions["askgate"]
    services.users.create("alice", PASSWORD, "member")
    app.dashboard_key = services.keys.create("alice", "real", None).key
    return app


def _assert_refused(response) -> None:
    assert response.status_code == 401
    assert response.get_json()["error"] in REFUSALS
    assert response.headers["WWW-Authenticate"] == "Bearer"


@FIXTURE
@given(headers=hostile_headers())
@example(headers=[("x-api-key", "")])
@example(headers=[("Authorization", "")])
@example(headers=[("x-api-key", " "), ("Authorization", "Bearer ")])
@example(headers=[("x-api-key", "agk_\x00"), ("x-api-key", "é€😀")])
@example(headers=[("Authorization", "Bearer" + " " * 5000 + "x")])
def test_hostile_headers_are_refused_with_401(header_app, headers):
    real = {header_app.dashboard_key, ADMIN_KEY, CLIENT_KEY}
    assume(not any(key in value for _, value in headers for key in real))

    response = header_app.test_client().get("/api/whoami", headers=headers)

    _assert_refused(response)


@FIXTURE
@given(key_name=st.sampled_from(["dashboard", "admin", "client"]), data=st.data())
def test_one_character_off_a_real_key_never_matches(header_app, key_name, data):
    key = {"dashboard": header_app.dashboard_key, "admin": ADMIN_KEY, "client": CLIENT_KEY}[key_name]
    index = data.draw(st.integers(0, len(key) - 1), label="index")
    char = data.draw(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs", "Zs", "Cc"]))
    assume(char != key[index])
    near_miss = key[:index] + char + key[index + 1 :]
    header = data.draw(st.sampled_from(["x-api-key", "Authorization"]), label="header")
    value = near_miss if header == "x-api-key" else f"Bearer {near_miss}"

    _assert_refused(header_app.test_client().get("/api/whoami", headers={header: value}))


@FIXTURE
@given(data=st.data())
def test_repeating_a_key_header_never_matches_even_with_the_real_key(header_app, data):
    """Repeated headers reach the app joined by commas; that is not a key, whatever the parts are."""
    name = data.draw(st.sampled_from(["x-api-key", "Authorization"]), label="name")
    real = header_app.dashboard_key if name == "x-api-key" else f"Bearer {header_app.dashboard_key}"
    values = data.draw(st.lists(st.one_of(st.just(real), header_text), min_size=2, max_size=4), label="values")

    _assert_refused(header_app.test_client().get("/api/whoami", headers=[(name, v) for v in values]))


@FIXTURE
@given(
    scheme=st.tuples(*(st.sampled_from([c, c.upper()]) for c in "bearer")).map("".join),
    gap=st.integers(1, 4),
)
def test_bearer_scheme_is_case_insensitive_and_takes_one_or_more_spaces(header_app, scheme, gap):
    """RFC 7235: the auth scheme is case-insensitive and ``1*SP`` separates it from the credentials."""
    response = header_app.test_client().get(
        "/api/whoami", headers={"Authorization": f"{scheme}{' ' * gap}{header_app.dashboard_key}"}
    )

    assert response.status_code == 200
    assert response.get_json()["auth_method"] == "dashboard_key"


@pytest.mark.parametrize("wrapper", ["Bearer\t{}", "Bearer{}", "Bearer:{}", "Bearer={}", "Token {}", "Basic {}"])
def test_anything_but_the_bearer_scheme_and_a_space_is_refused(header_app, wrapper):
    value = wrapper.format(header_app.dashboard_key)

    _assert_refused(header_app.test_client().get("/api/whoami", headers={"Authorization": value}))


@pytest.mark.parametrize("padding", ["\u00a0", "\u0085", "\u3000", "\x1c"])
def test_non_ascii_whitespace_around_a_real_key_is_not_stripped_into_a_match(header_app, padding):
    value = padding + header_app.dashboard_key

    _assert_refused(header_app.test_client().get("/api/whoami", headers={"x-api-key": value}))


# -- the bytes Werkzeug's test client will not send: a raw socket to a live gunicorn ----------------------
def raw_request(port: int, header_block: bytes) -> tuple[int, bytes]:
    request = b"GET /api/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header_block + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raw")
    workspaces = tmp / "workspaces"
    workspaces.mkdir()
    UserStore(workspaces).create("alice", PASSWORD, "member")
    key = KeyStore(workspaces).create("alice", "real", None).key
    server = LiveServer(workspaces, {"AUTH_FAILURE_LIMIT": "100000/minute"}, tmp / "gunicorn.log")
    server.dashboard_key = key
    yield server
    server.stop()


# 400: gunicorn refuses the header itself (NUL, other controls, bare CR, obsolete folding);
# 431: a header field over gunicorn's 8190-byte limit; 401: the app saw it and refused it.
RAW_REFUSALS = {400, 401, 431}


@pytest.mark.server
def test_raw_sanity_the_real_key_works_over_the_socket(raw_server):
    status, body = raw_request(raw_server.port, b"x-api-key: " + raw_server.dashboard_key.encode() + b"\r\n")

    assert status == 200
    assert b'"auth_method":"dashboard_key"' in body


@pytest.mark.server
@pytest.mark.parametrize(
    "block",
    [
        b"x-api-key: {key}\x00\r\n",
        b"x-api-key: \x00{key}\r\n",
        b"Authorization: Bearer\x00{key}\r\n",
        b"Authorization: Bearer {key}\x00\r\n",
        b"x-api-key: {key}\rjunk\r\n",
        b"x-api-key: \r\n {key}\r\n",  # obsolete line folding
        b"x-api-key: \x0b{key}\r\n",
        b"x-api-key: \x7f{key}\r\n",
        b"x-api-key: {key}\r\nx-api-key: {key}\r\n",
        b"x-api-key: junk\r\nx-api-key: {key}\r\n",
        b"Authorization: Bearer {key}\r\nAuthorization: Bearer {key}\r\n",
        b"x-api-key: {key}" + b"a" * 10_240 + b"\r\n",
        b"Authorization: Bearer " + b" " * 10_240 + b"{key}\r\n",
        b"x-api-key : {key}\r\n",
        b"x_api_key: {key}\r\n",
    ],
)
def test_raw_odd_bytes_around_a_real_key_never_match(raw_server, block):
    status, body = raw_request(raw_server.port, block.replace(b"{key}", raw_server.dashboard_key.encode()))

    assert status in RAW_REFUSALS, body
    if status == 401:
        assert body.rstrip().endswith((b'{"error":"Invalid API key"}', b'{"error":"API key required"}'))


@pytest.mark.server
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.one_of(
            st.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b),
            st.binary(min_size=1, max_size=20)
            .filter(lambda b: b"\r" not in b and b"\n" not in b)
            .map(lambda b: (b * (10_240 // len(b) + 1))[:10_240]),
        ),
        min_size=1,
        max_size=3,
    ),
    name=st.sampled_from([b"x-api-key", b"Authorization", b"authorization", b"X-API-KEY"]),
    bearer=st.booleans(),
)
def test_raw_arbitrary_bytes_are_refused_never_5xx(raw_server, values, name, bearer):
    prefix = b"Bearer " if bearer and name.lower() == b"authorization" else b""
    block = b"".join(name + b": " + prefix + value + b"\r\n" for value in values)

    status, _ = raw_request(raw_server.port, block)

    assert status in RAW_REFUSALS
