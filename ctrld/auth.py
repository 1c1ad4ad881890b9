"""Who may talk to the daemon: loopback policy, token, TLS contexts, unix peer credentials."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

_UCRED = struct.Struct("3i")  # pid, uid, gid


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
