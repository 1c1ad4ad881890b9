"""Which TCP ports are in LISTEN, asked from the kernel with one NETLINK_SOCK_DIAG dump.

Netlink has no notification for a socket entering LISTEN, so port watches poll this dump (one
request per address family, filtered on TCP_LISTEN by the kernel); each dump costs tens of
microseconds, cheap enough to run every millisecond while a port watch exists.
"""

from __future__ import annotations

import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid (48 bytes, zeroed)
_REQ = struct.Struct("=BBBBI48x")
# inet_diag_msg: family, state, timer, retrans, then sockid: sport (be16), dport (be16), ...
_MSG_HEAD = struct.Struct("=BBBB")
_PORT = struct.Struct("!H")


class ListenScanner:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self.sock.bind((0, 0))
        self._seq = 0
        self._requests = []
        for family in (socket.AF_INET, socket.AF_INET6):
            body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
            self._requests.append(body)

    def listening_ports(self) -> set[int]:
        ports: set[int] = set()
        for body in self._requests:
            self._seq += 1
            hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0)
            self.sock.send(hdr + body)
            done = False
            while not done:
                data = self.sock.recv(65536)
                pos = 0
                while pos + _NLMSGHDR.size <= len(data):
                    length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
                    if length < _NLMSGHDR.size:
                        done = True
                        break
                    if mtype == NLMSG_DONE:
                        done = True
                    elif mtype == NLMSG_ERROR:
                        done = True  # e.g. no IPv6 in this kernel: nothing listens there
                    else:
                        payload = pos + _NLMSGHDR.size
                        _fam, state, _t, _r = _MSG_HEAD.unpack_from(data, payload)
                        if state == TCP_LISTEN:
                            ports.add(_PORT.unpack_from(data, payload + 4)[0])
                    pos += (length + 3) & ~3
        return ports

    def close(self) -> None:
        self.sock.close()
