"""The network interfaces of a simulated host, as a process asks for them: NETLINK_ROUTE sockets
(rtnetlink(7)) and the SIOCGIF* ioctls (netdevice(7)). A process sees its simulated host's
interfaces, not the machine's.

getifaddrs(3), if_nameindex(3), `ip addr`, Go's net.Interfaces and service-discovery libraries
(picking the address to advertise) ask the kernel for links and addresses over a NETLINK_ROUTE
socket (rtnetlink(7)). Left to the kernel, they would list this machine's interfaces and addresses,
which no simulated host has. A simulated host has two interfaces, as a machine with one network
card: `lo` (index 1: 127.0.0.1/8, ::1/128) and `eth0` (index 2: the host's IP as /32 — hosts are
routed one by one, there is no subnet — and its IPv6 address as /128 if the platform gives one),
with a MAC address derived from the host's index (02:00:00:00:hi:lo, locally administered).

The socket itself is the kernel's (bind, getsockname, close, fcntl stay native); what is sent on it
is answered here: a dump of links (RTM_GETLINK) or addresses (RTM_GETADDR, by family), one link by
index or name; other dumps (routes, neighbours, rules...) are empty; requests that would change the
configuration fail with EPERM. Answers are datagrams queued on the socket and read with
recv/recvfrom/recvmsg/read, MSG_PEEK and MSG_TRUNC honoured (netlink(7)). Formats from
include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h.

The older interface (if_nametoindex(3), ifconfig, Java's NetworkInterface) is ioctls on any socket
with a struct ifreq (SIOCGIFINDEX, SIOCGIFNAME, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFNETMASK,
SIOCGIFBRDADDR, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFTXQLEN) or struct ifconf (SIOCGIFCONF):
`ifreq_ioctl` answers them from the same model (include/uapi/linux/sockios.h, if.h).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections import deque
from dataclasses import dataclass
from typing import Optional

from ..wait import Waitable
from .fdtable import SimulatedFile

NETLINK_ROUTE = 0
POLLIN, POLLOUT = 0x1, 0x4

# nlmsghdr types and flags (netlink.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300   # NLM_F_ROOT | NLM_F_MATCH
# rtnetlink.h
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_BASE, RTM_MAX = 16, 127
RT_SCOPE_UNIVERSE, RT_SCOPE_HOST = 0, 254
# if_link.h / if_addr.h attribute types
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU, IFLA_TXQLEN, IFLA_OPERSTATE = 1, 2, 3, 4, 13, 16
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 6, 8
IFA_F_PERMANENT = 0x80
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6
# if.h interface flags
IFF_UP, IFF_BROADCAST, IFF_LOOPBACK, IFF_RUNNING, IFF_MULTICAST = 0x1, 0x2, 0x8, 0x40, 0x1000
IFF_LOWER_UP = 0x10000
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: int        # ARPHRD_*
    flags: int       # IFF_*
    mtu: int
    mac: bytes
    broadcast: bytes
    operstate: int
    txqlen: int


@dataclass(frozen=True)
class Address:
    family: int
    ip: str
    prefix: int
    scope: int
    link: Link


def interfaces(host) -> tuple[list[Link], list[Address]]:
    """The links and addresses of a simulated host (an `addressing.Host`)."""
    lo = Link(1, "lo", ARPHRD_LOOPBACK, IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP, 65536,
              bytes(6), bytes(6), IF_OPER_UNKNOWN, 1000)
    n = host.index + 1
    eth0 = Link(2, "eth0", ARPHRD_ETHER,
                IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST | IFF_LOWER_UP, 1500,
                bytes([2, 0, 0, 0, (n >> 8) & 255, n & 255]), b"\xff" * 6, IF_OPER_UP, 1000)
    addrs = [Address(socket.AF_INET, "127.0.0.1", 8, RT_SCOPE_HOST, lo),
             Address(socket.AF_INET, host.ip, 32, RT_SCOPE_UNIVERSE, eth0),
             Address(socket.AF_INET6, "::1", 128, RT_SCOPE_HOST, lo)]
    if host.ip6:
        addrs.append(Address(socket.AF_INET6, host.ip6, 128, RT_SCOPE_UNIVERSE, eth0))
    return [lo, eth0], addrs


def _attr(kind: int, data: bytes) -> bytes:
    """One struct rtattr, padded to 4 bytes (RTA_ALIGN)."""
    raw = struct.pack("<HH", 4 + len(data), kind) + data
    return raw + bytes(-len(raw) % 4)


def _message(kind: int, flags: int, seq: int, portid: int, body: bytes) -> bytes:
    raw = struct.pack("<IHHII", 16 + len(body), kind, flags, seq, portid) + body
    return raw + bytes(-len(raw) % 4)


def _link_body(link: Link) -> bytes:
    # struct ifinfomsg {family, pad, type, index, flags, change}
    return (struct.pack("<BxHiII", socket.AF_UNSPEC, link.kind, link.index, link.flags, 0)
            + _attr(IFLA_IFNAME, link.name.encode() + b"\0")
            + _attr(IFLA_MTU, struct.pack("<I", link.mtu))
            + _attr(IFLA_TXQLEN, struct.pack("<I", link.txqlen))
            + _attr(IFLA_OPERSTATE, bytes([link.operstate]))
            + _attr(IFLA_ADDRESS, link.mac)
            + _attr(IFLA_BROADCAST, link.broadcast))


def _addr_body(a: Address) -> bytes:
    raw = socket.inet_pton(a.family, a.ip)
    # struct ifaddrmsg {family, prefixlen, flags, scope, index}
    body = struct.pack("<BBBBI", a.family, a.prefix, IFA_F_PERMANENT, a.scope, a.link.index)
    body += _attr(IFA_ADDRESS, raw)
    if a.family == socket.AF_INET:
        body += _attr(IFA_LOCAL, raw) + _attr(IFA_LABEL, a.link.name.encode() + b"\0")
    # struct ifa_cacheinfo {preferred, valid, cstamp, tstamp}: "forever"
    body += _attr(IFA_CACHEINFO, struct.pack("<IIII", 0xFFFFFFFF, 0xFFFFFFFF, 0, 0))
    body += _attr(IFA_FLAGS, struct.pack("<I", IFA_F_PERMANENT))
    return body


class RouteNetlink(SimulatedFile, Waitable):
    """A NETLINK_ROUTE socket of a process on a simulated host: its answers, queued."""

    def __init__(self, host, nonblocking: bool):
        self.links, self.addrs = interfaces(host)
        self.nonblocking = nonblocking
        self.queue: deque[bytes] = deque()   # answer datagrams, oldest first
        self.portid = 0                       # the socket's nl_pid, once known

    # -- SimulatedFile ---------------------------------------------------------------------------
    def revents(self, events: int) -> int:
        return events & ((POLLIN if self.queue else 0) | POLLOUT)

    # -- requests --------------------------------------------------------------------------------
    def request(self, data: bytes, portid: int) -> None:
        """Answer every message of one datagram the program sent (netlink(7): a datagram may hold
        several); `portid` is the socket's address, which answers carry."""
        off = 0
        while off + 16 <= len(data):
            length, kind, flags, seq, _pid = struct.unpack_from("<IHHII", data, off)
            if length < 16 or off + length > len(data):
                break   # a truncated message: the kernel ignores the rest too
            self._answer(kind, flags, seq, portid, data[off + 16:off + length])
            off += (length + 3) & ~3
        self.notify()

    def _answer(self, kind: int, flags: int, seq: int, portid: int, body: bytes) -> None:
        if not flags & NLM_F_REQUEST:
            return   # not a request: the kernel ignores it
        if kind in (RTM_GETLINK, RTM_GETADDR) and flags & NLM_F_DUMP == NLM_F_DUMP:
            parts = []
            if kind == RTM_GETLINK:
                parts = [_message(RTM_NEWLINK, NLM_F_MULTI, seq, portid, _link_body(link)) for link in self.links]
            else:
                family = body[0] if body else socket.AF_UNSPEC
                parts = [_message(RTM_NEWADDR, NLM_F_MULTI, seq, portid, _addr_body(a))
                         for a in self.addrs if family in (socket.AF_UNSPEC, a.family)]
            parts.append(_message(NLMSG_DONE, NLM_F_MULTI, seq, portid, struct.pack("<i", 0)))
            self.queue.append(b"".join(parts))
            return
        if kind == RTM_GETLINK:
            link = self._find_link(body)
            if link is None:
                self._error(-errno.ENODEV, kind, flags, seq, portid, body)
                return
            self.queue.append(_message(RTM_NEWLINK, 0, seq, portid, _link_body(link)))
            if flags & NLM_F_ACK:
                self._error(0, kind, flags, seq, portid, body)
            return
        if RTM_BASE <= kind <= RTM_MAX and kind % 4 == 2 and flags & NLM_F_DUMP == NLM_F_DUMP:
            # another dump (routes, neighbours, rules, qdiscs...): nothing simulated to list
            self.queue.append(_message(NLMSG_DONE, NLM_F_MULTI, seq, portid, struct.pack("<i", 0)))
            return
        # Changes (RTM_NEW*/DEL*/SET*) and lookups we do not model: the configuration of a
        # simulated host is the platform's.
        self._error(-errno.EPERM if kind % 4 != 2 else -errno.EOPNOTSUPP, kind, flags, seq, portid, body)

    def _find_link(self, body: bytes) -> Optional[Link]:
        index = struct.unpack_from("<i", body, 4)[0] if len(body) >= 8 else 0
        if index:
            return next((link for link in self.links if link.index == index), None)
        off = 16
        while off + 4 <= len(body):   # IFLA_IFNAME among the request's attributes
            alen, atype = struct.unpack_from("<HH", body, off)
            if alen < 4:
                break
            if atype == IFLA_IFNAME:
                name = body[off + 4:off + alen].split(b"\0")[0].decode(errors="replace")
                return next((link for link in self.links if link.name == name), None)
            off += (alen + 3) & ~3
        return None

    def _error(self, err: int, kind: int, flags: int, seq: int, portid: int, body: bytes) -> None:
        """NLMSG_ERROR: the error (0: an acknowledgement) and the request's header (netlink(7))."""
        request = struct.pack("<IHHII", 16 + len(body), kind, flags, seq, portid)
        self.queue.append(_message(NLMSG_ERROR, 0, seq, portid, struct.pack("<i", err) + request))

    # -- reading ---------------------------------------------------------------------------------
    def take(self, room: int, peek: bool) -> tuple[bytes, int]:
        """The next answer datagram cut to `room` bytes, and its whole size; consumed unless
        `peek` (MSG_PEEK). The queue must not be empty."""
        datagram = self.queue[0] if peek else self.queue.popleft()
        return datagram[:room], len(datagram)


# -- the ioctls of netdevice(7) ------------------------------------------------------------------
SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR = 0x8910, 0x8912, 0x8913, 0x8915
SIOCGIFBRDADDR, SIOCGIFNETMASK, SIOCGIFMTU, SIOCGIFHWADDR = 0x8919, 0x891B, 0x8921, 0x8927
SIOCGIFINDEX, SIOCGIFTXQLEN = 0x8933, 0x8942
IFREQ_IOCTLS = frozenset((SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFBRDADDR,
                          SIOCGIFNETMASK, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFTXQLEN))
IFREQ_SIZE = 40    # struct ifreq: char ifr_name[16]; a 24-byte union


def _sockaddr_in(ip: str) -> bytes:
    return struct.pack("<H2x4s8x", socket.AF_INET, socket.inet_aton(ip))


def _mask(prefix: int) -> str:
    return socket.inet_ntoa(struct.pack(">I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))


def ifreq_ioctl(host, request: int, mem, arg: int) -> int:
    """Answer one SIOCGIF* ioctl of a process on `host`, reading and writing its struct ifreq (or
    ifconf) at `arg` through `mem`; returns 0 or a negative errno (ENODEV: no such interface,
    EADDRNOTAVAIL: no IPv4 address on it), as dev_ioctl does (net/core/dev_ioctl.c)."""
    links, addrs = interfaces(host)
    v4 = {a.link.index: a for a in addrs if a.family == socket.AF_INET}
    if request == SIOCGIFCONF:
        length, buf = struct.unpack("<i4xQ", mem.read(arg, 16))
        entries = [link.name.encode().ljust(16, b"\0") + _sockaddr_in(v4[link.index].ip).ljust(24, b"\0")
                   for link in links if link.index in v4]
        if buf:   # as many whole entries as fit
            entries = entries[:max(0, length) // IFREQ_SIZE]
            mem.write(buf, b"".join(entries))
        mem.write(arg, struct.pack("<i", IFREQ_SIZE * len(entries)))
        return 0
    req = mem.read(arg, IFREQ_SIZE)
    if request == SIOCGIFNAME:
        index = struct.unpack_from("<i", req, 16)[0]
        link = next((x for x in links if x.index == index), None)
        if link is None:
            return -errno.ENODEV
        mem.write(arg, link.name.encode().ljust(16, b"\0"))
        return 0
    name = req[:16].split(b"\0")[0].decode(errors="replace")
    link = next((x for x in links if x.name == name), None)
    if link is None:
        return -errno.ENODEV
    if request == SIOCGIFINDEX:
        out = struct.pack("<i", link.index)
    elif request == SIOCGIFFLAGS:
        out = struct.pack("<H", link.flags & 0xFFFF)   # a short: IFF_LOWER_UP is not in it
    elif request == SIOCGIFMTU:
        out = struct.pack("<i", link.mtu)
    elif request == SIOCGIFTXQLEN:
        out = struct.pack("<i", link.txqlen)
    elif request == SIOCGIFHWADDR:
        out = struct.pack("<H", link.kind) + link.mac.ljust(14, b"\0")
    else:   # SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFBRDADDR: its IPv4 address
        a = v4.get(link.index)
        if a is None:
            return -errno.EADDRNOTAVAIL
        ip = {SIOCGIFADDR: a.ip, SIOCGIFNETMASK: _mask(a.prefix), SIOCGIFBRDADDR: "0.0.0.0"}[request]
        out = _sockaddr_in(ip)
    mem.write(arg + 16, out)
    return 0
