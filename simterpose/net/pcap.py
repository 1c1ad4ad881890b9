"""`--pcap-dir`: what each simulated host would capture on its interface.

One pcap file per host (nanosecond timestamps, raw IPv4 link type), with virtual addresses and
simulated dates: a packet appears in the sender's file when it leaves and in the receiver's when it
arrives. TCP is written as segments carrying the application payload, with sequence numbers
counting the stream's bytes (initial sequence number 0 and SYN/FIN/RST flags, so Wireshark follows
the streams): a stream's bytes appear as they arrive (one segment per write date, sent at the date
of the write, received when the reader could first see them: net/sockets.py, Stream.record), so a
large transfer shows as the pace SimGrid gave it; UDP datagrams as they were sent. Deterministic for a deterministic
run.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Optional

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_RAW = 101
MAX_SEGMENT = 65535 - 20 - 20
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An IPv6 header (LINKTYPE_RAW carries both versions); an IPv4 end is written mapped."""
    def raw(addr: str) -> bytes:
        return socket.inet_pton(socket.AF_INET6, addr if ":" in addr else f"::ffff:{addr}")
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, raw(src), raw(dst)) + payload


def _ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int) -> bytes:
    if ":" in src or ":" in dst:
        return _ipv6(src, dst, proto, payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


class Capture:
    """Writes every simulated host's pcap file."""

    def __init__(self, directory: Path, host_names: list[str]):
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {}
        for name in host_names:
            f = open(directory / f"{name}.pcap", "wb")
            f.write(struct.pack("<IHHiIII", PCAP_MAGIC_NS, 2, 4, 0, 0, 262144, LINKTYPE_RAW))
            self.files[name] = f
        self._ident = 0

    def _write(self, host: str, date: float, packet: bytes) -> None:
        ns = round(date * 1e9)
        sec, frac = divmod(ns, 1_000_000_000)
        f = self.files[host]
        f.write(struct.pack("<IIII", sec, frac, len(packet), len(packet)))
        f.write(packet)

    def _both(self, src_host: str, dst_host: str, start: float, end: Optional[float], packet: bytes) -> None:
        self._write(src_host, start, packet)   # leaving the sender
        if end is not None:                    # arriving (on loopback, the same file sees both)
            self._write(dst_host, end, packet)

    def tcp(self, src_host: str, dst_host: str, start: float, end: Optional[float], src: tuple, dst: tuple,
            seq: int, ack: int, flags: int, payload: bytes = b"") -> None:
        """One or more TCP segments (payloads above the IPv4 size limit are split); `end` None: they
        left the sender but never arrived (the run ended first)."""
        offset = 0
        while True:
            piece = payload[offset:offset + MAX_SEGMENT]
            header = struct.pack("!HHIIBBHHH", src[1], dst[1], (seq + offset) & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                 5 << 4, flags | (TCP_PSH if piece else 0), 65535, 0, 0)
            self._ident += 1
            self._both(src_host, dst_host, start, end, _ipv4(src[0], dst[0], 6, header + piece, self._ident))
            offset += len(piece)
            if offset >= len(payload):
                return

    def udp(self, src_host: str, dst_host: str, start: float, end: float, src: tuple, dst: tuple,
            payload: bytes) -> None:
        header = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0)
        self._ident += 1
        self._both(src_host, dst_host, start, end, _ipv4(src[0], dst[0], 17, header + payload, self._ident))

    def close(self) -> None:
        for f in self.files.values():
            f.close()
