"""Who may talk to the daemon: loopback policy, token, TLS contexts, peer credentials.

A peer is identified by the kernel wherever it can be: SO_PEERCRED on unix sockets, and on
loopback TCP the uid of the connecting socket as NETLINK_SOCK_DIAG reports it (the socket is
found by its 4-tuple; its `idiag_uid` is the fsuid of the process that created it).  Remote TCP
peers are identified by the token or by their TLS client certificate.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")  # pid, uid, gid

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid: sport, dport (big
# endian), src[16], dst[16], interface, cookie[2] (INET_DIAG_NOCOOKIE: ~0 ~0)
_DIAG_HEAD = struct.Struct("=BBBBI")
_DIAG_PORTS = struct.Struct("!HH")
_DIAG_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue, uid, inode
_DIAG_UID = struct.Struct("=I")
_DIAG_UID_OFFSET = 4 + 48 + 12


@dataclass(frozen=True)
class Identity:
    """Who a connection speaks for: the owner recorded on its processes and watches.

    `uid` is known when the kernel told us (unix socket, loopback TCP); `name` is what status shows
    and what ownership compares: "uid:N", "token" (a remote token holder) or "cert:SUBJECT"."""

    name: str
    uid: int | None = None

    @classmethod
    def of_uid(cls, uid: int) -> Identity:
        return cls(f"uid:{uid}", uid)

    def is_admin(self) -> bool:
        """The daemon's own uid (or root, which could ptrace the daemon anyway) may act on anyone's
        processes, subscribe to everything and run commands as another user."""
        return self.uid is not None and self.uid in (os.geteuid(), 0)


class ConfigError(Exception):
    """A configuration the daemon refuses to start with (message meant for the operator)."""


def is_loopback(host: str) -> bool:
    """True only if every address `host` resolves to is a loopback address."""
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def read_token(path: str) -> str:
    with open(path) as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ConfigError(f"token in {path} is too short (at least 16 characters)")
    return token


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket (SO_PEERCRED)."""
    return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def tcp_peer_uid(sock: socket.socket) -> int | None:
    """uid owning the client end of an accepted loopback TCP connection, or None if the kernel does
    not know the socket (it was closed meanwhile).

    The client socket is the one whose source is our peer's address and whose destination is our
    address: one exact NETLINK_SOCK_DIAG request by 4-tuple (no dump)."""
    local = sock.getsockname()
    peer = sock.getpeername()
    family = sock.family
    if family == socket.AF_INET6:
        src = socket.inet_pton(socket.AF_INET6, peer[0].split("%")[0])
        dst = socket.inet_pton(socket.AF_INET6, local[0].split("%")[0])
        if src.startswith(b"\0" * 10 + b"\xff\xff") and dst.startswith(b"\0" * 10 + b"\xff\xff"):
            # IPv4-mapped: the client's socket may be a plain AF_INET one
            family, src, dst = socket.AF_INET, src[12:] + bytes(12), dst[12:] + bytes(12)
    else:
        src = socket.inet_pton(socket.AF_INET, peer[0]) + bytes(12)
        dst = socket.inet_pton(socket.AF_INET, local[0]) + bytes(12)
    body = (_DIAG_HEAD.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + _DIAG_PORTS.pack(peer[1], local[1])
            + src + dst + _DIAG_TAIL.pack(0, 0xFFFFFFFF, 0xFFFFFFFF))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body)
        data = nl.recv(8192)
    if len(data) < _NLMSGHDR.size:
        return None
    _length, mtype, _f, _s, _p = _NLMSGHDR.unpack_from(data, 0)
    if mtype == NLMSG_ERROR or len(data) < _NLMSGHDR.size + _DIAG_UID_OFFSET + 4:
        return None
    return _DIAG_UID.unpack_from(data, _NLMSGHDR.size + _DIAG_UID_OFFSET)[0]


def is_loopback_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def cert_identity(peercert: dict | None) -> str | None:
    """'cert:CN=...' from a verified TLS client certificate (None without one)."""
    if not peercert:
        return None
    parts = []
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            parts.append(f"{k}={v}")
    return "cert:" + (",".join(parts) or "?")


def allowed_uids(extra: list[int]) -> set[int]:
    return {os.geteuid(), 0, *extra}


def server_tls_context(cert: str, key: str, client_ca: str | None):
    import ssl  # imported only when TLS is used: it costs several MB of RSS

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_tls_context(ca: str | None, cert: str | None = None, key: str | None = None, check_hostname: bool = True):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = check_hostname
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
