"""Virtual addresses (what tracees see) and real loopback addresses (what the kernel sees).

Every simulated host k gets two real IPv4 loopback addresses of its own: 127.R.x.y for its virtual
IP(s) and INADDR_ANY, 127.R+1.x.y for its 127.0.0.1, where R is drawn per run (two runs, even
concurrent ones, rarely share real addresses, so neither collides with the other's sockets or
TIME_WAIT entries). Ports are kept as they are (two hosts may both
listen on port 80: their real addresses differ), and ports a host picks implicitly are allocated by
us, in order, so runs are reproducible. Which socket a connect reaches is decided by the simulated
state (`Registry`), never by the kernel; the real addresses only have to be unique.
IPv6 sockets use the IPv4-mapped form of the same real addresses (dual-stack sockets).
"""

from __future__ import annotations

import ipaddress
import random
import socket
from typing import Callable

from ..tracer.memory import SockAddr

EPHEMERAL_FIRST = 40000
EPHEMERAL_LAST = 60999
LOOPBACK_V4 = "127.0.0.1"
ANY_V4 = "0.0.0.0"
ANY_V6 = "::"
LOOPBACK_V6 = "::1"


class AddressError(Exception):
    def __init__(self, errno_: int, message: str):
        self.errno = errno_
        super().__init__(message)


class Host:
    """A simulated host as the network sees it."""

    def __init__(self, index: int, name: str, ip: str, run_octet: int = 1, ip6: str | None = None):
        self.index = index
        self.name = name
        self.ip = ip
        self.ip6 = ip6   # its IPv6 address (`<prop id="ip6">`), if the platform gives one
        # `<prop id="silent" value="1"/>`: nothing on it ever answers (no SYN-ACK, no reset, no ICMP)
        self.silent = False
        n = index + 1
        self.real_ip = f"127.{run_octet}.{n >> 8}.{n & 255}"
        self.real_loopback = f"127.{run_octet + 1}.{n >> 8}.{n & 255}"
        self._next_port = {socket.SOCK_STREAM: EPHEMERAL_FIRST, socket.SOCK_DGRAM: EPHEMERAL_FIRST}

    def ephemeral_port(self, kind: int, in_use) -> int:
        """The next free port for an implicit bind (deterministic: counts up from 40000)."""
        for _ in range(EPHEMERAL_LAST - EPHEMERAL_FIRST + 1):
            port = self._next_port[kind]
            self._next_port[kind] = EPHEMERAL_FIRST if port >= EPHEMERAL_LAST else port + 1
            if not in_use(port):
                return port
        raise AddressError(98, f"no ephemeral port left on host {self.name}")  # EADDRINUSE

    def __repr__(self) -> str:
        return f"<host {self.name} {self.ip}>"


def unmap_v4(addr: str) -> str:
    """'::ffff:10.0.0.1' -> '10.0.0.1'; '::' -> '0.0.0.0'; '::1' -> '127.0.0.1'; others unchanged."""
    if ":" not in addr:
        return addr
    ip = ipaddress.IPv6Address(addr)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if addr in (ANY_V6, "0:0:0:0:0:0:0:0") or ip == ipaddress.IPv6Address("::"):
        return ANY_V4
    if ip == ipaddress.IPv6Address("::1"):
        return LOOPBACK_V4
    return addr


def as_family(addr_v4: str, family: int) -> str:
    """An IPv4 address written for a socket of `family` (IPv4-mapped for AF_INET6)."""
    if family == socket.AF_INET6:
        return f"::ffff:{addr_v4}"
    return addr_v4


class Addressing:
    """The platform's hosts by name, by virtual IP and by real IP."""

    #: Can the platform carry bytes from host A to host B (names)? None: ask the process's
    #: Simulation (:func:`simterpose.sim.reachable`), or say yes when there is none (unit tests).
    reachable: Callable[[str, str], bool] | None = None

    def __init__(self, hosts: list[tuple[str, str]], run_octet: int | None = None,
                 ip6: dict[str, str] | None = None, silent: frozenset[str] = frozenset()):
        if run_octet is None:
            run_octet = random.SystemRandom().randrange(2, 254, 2)
        self.hosts: dict[str, Host] = {}
        self.by_ip: dict[str, Host] = {}
        self.by_ip6: dict[str, Host] = {}
        self.by_real: dict[str, tuple[Host, str]] = {}
        for i, (name, ip) in enumerate(hosts):
            v6 = (ip6 or {}).get(name)
            if v6 is not None:
                addr = ipaddress.IPv6Address(v6)   # ValueError: the platform's ip6 is not an address
                if addr.ipv4_mapped is not None or addr.is_loopback or addr.is_unspecified:
                    raise ValueError(f"host {name}: ip6 {v6} must be a plain IPv6 address")
                v6 = str(addr)
            h = Host(i, name, ip, run_octet, v6)
            h.silent = name in silent
            self.hosts[name] = h
            self.by_ip[ip] = h
            if v6 is not None:
                self.by_ip6[v6] = h
            self.by_real[h.real_ip] = (h, h.ip)
            self.by_real[h.real_loopback] = (h, LOOPBACK_V4)

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def local_virtual(self, host: Host, vaddr: str) -> str:
        """Validate a bind address on `host`: its IP, 127.0.0.1 or ANY; else EADDRNOTAVAIL."""
        v4 = unmap_v4(vaddr)
        if v4 in (ANY_V4, host.ip) or v4.startswith("127."):
            return LOOPBACK_V4 if v4.startswith("127.") else v4
        if host.ip6 is not None and ":" in v4 and ipaddress.IPv6Address(v4) == ipaddress.IPv6Address(host.ip6):
            return host.ip6   # its own IPv6 address: a socket bound there hears IPv6 peers only
        raise AddressError(99, f"cannot bind {vaddr} on host {host.name} (its address is {host.ip})")

    def real_for_bind(self, host: Host, v4: str) -> str:
        return host.real_loopback if v4 == LOOPBACK_V4 else host.real_ip

    def destination(self, src: Host, vaddr: str) -> tuple[Host, str]:
        """Which host a destination address names, seen from `src`, and the address as that host
        knows it (its IP, or 127.0.0.1 for its own loopback). Unknown hosts: ENETUNREACH."""
        v4 = unmap_v4(vaddr)
        if v4.startswith("127."):
            return src, LOOPBACK_V4
        if v4 == ANY_V4:  # connect(0.0.0.0) reaches the local host, as on Linux
            return src, LOOPBACK_V4
        if ":" in v4:
            h6 = self.by_ip6.get(str(ipaddress.IPv6Address(v4)))
            if h6 is None:
                raise AddressError(101, f"no simulated host has address {vaddr}")  # ENETUNREACH
            if h6 is not src and not self._reachable(src.name, h6.name):
                raise AddressError(101, f"the platform has no route from {src.name} to {h6.name}")
            return h6, h6.ip6
        h = self.by_ip.get(v4)
        if h is None:
            raise AddressError(101, f"no simulated host has address {vaddr}")  # ENETUNREACH
        if h is not src and not self._reachable(src.name, h.name):
            # Linux's answer to a destination without a route; SimGrid would abort the transfer.
            raise AddressError(101, f"the platform has no route from {src.name} to {h.name}")  # ENETUNREACH
        return h, h.ip

    def _reachable(self, src: str, dst: str) -> bool:
        if self.reachable is not None:
            return self.reachable(src, dst)
        from .. import sim  # here, not at the top: addressing stays usable without SimGrid

        try:
            simulation = sim.current()
        except sim.SimulationError:
            return True
        return simulation.reachable(src, dst)

    def virtual_of_real(self, real_ip: str) -> tuple[Host, str] | None:
        return self.by_real.get(unmap_v4(real_ip))


def sockaddr(family: int, v4: str, port: int) -> SockAddr:
    if family == socket.AF_INET6 and ":" in v4:   # a true IPv6 address ("::", "::1")
        return SockAddr((family, v4, port, 0, 0))
    if family == socket.AF_INET6:
        return SockAddr((family, as_family(v4, family) if v4 not in (ANY_V4,) else ANY_V6, port, 0, 0))
    return SockAddr((family, v4, port))
