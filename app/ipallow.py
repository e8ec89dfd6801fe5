"""The ``ALLOWED_IPS`` check for key-authenticated requests."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IPAllowlist:
    """Addresses and CIDR ranges allowed to use API keys; ``None`` networks means everyone.

    A lookup costs one set probe per distinct prefix length (at most 33 for IPv4, 129 for IPv6),
    so it does not grow with the number of entries.
    """

    def __init__(self, networks: tuple[Network, ...] | None) -> None:
        self.everyone = networks is None
        self._tables: dict[int, list[tuple[int, set[int]]]] = {4: [], 6: []}
        by_family: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        for net in networks or ():
            shift = net.max_prefixlen - net.prefixlen
            by_family[net.version].setdefault(shift, set()).add(int(net.network_address) >> shift)
        for version, shifts in by_family.items():
            self._tables[version] = sorted(shifts.items())

    def allowed(self, addr: str | None) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address((addr or "").split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        return any((value >> shift) in prefixes for shift, prefixes in self._tables[ip.version])
