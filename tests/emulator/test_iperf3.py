"""iperf3, unmodified, on the 10 MB/s link of two_hosts.xml: delivery at the model's pace.

iperf3 -t 5 (JSON output) between h2 (client, sender) and h1 (server). A stream carrying bulk
traffic becomes readable progressively as SimGrid transmits it (simterpose/net/sockets.py), so
every full one-second interval, on both sides, reports the link's rate within 10 %, and the pcap
files hold every byte the client sent with dates consistent with that delivery (no megabytes
arriving at one instant).

The CPU model is `per-syscall=1us`: iperf3's client selects on its always-writable data socket in a
loop that never blocks, so with a zero-cost CPU model the clock would never move; a fixed cost per
syscall (as Shadow's model_unblocked_syscall_latency) lets it advance and keeps the run
deterministic. TCP_INFO (the Retr and Cwnd columns, the RTT) comes from the model in both modes
(policy.py `_tcp_info`): the route's round trip, a window of WINDOW bytes in 1448-byte segments.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
from collections import Counter
from pathlib import Path

import pytest
from net_helpers import emulate

pytestmark = pytest.mark.timeout(180)

MODES = ["address-translation", "full-mediation"]
LINK_RATE = 10e6  # bytes/s: two_hosts.xml's one link
IPERF3 = shutil.which("iperf3") or "/usr/bin/iperf3"


def _tcp_payloads(pcap: Path):
    """(date, src ip, src port, dst ip, dst port, payload length) of every TCP packet of a pcap
    written by --pcap-dir (nanosecond timestamps, raw IPv4)."""
    data = pcap.read_bytes()
    off = 24
    while off < len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        pkt = data[off:off + incl]
        off += incl
        if pkt[9] != socket.IPPROTO_TCP:
            continue
        ihl = (pkt[0] & 0xF) * 4
        tcp = pkt[ihl:]
        sport, dport = struct.unpack_from("!HH", tcp)
        yield (sec + frac / 1e9, socket.inet_ntoa(pkt[12:16]), sport, socket.inet_ntoa(pkt[16:20]), dport,
               len(tcp) - (tcp[12] >> 4) * 4)


@pytest.mark.parametrize("mode", MODES)
def test_iperf3_reports_the_link_rate_every_second_and_the_pcap_has_every_byte(tmp_path, mode):
    server = {"host": "h1", "path": IPERF3, "args": ["-s", "-1", "-J", "-p", "5201"]}
    client = {"host": "h2", "path": IPERF3, "args": ["-c", "h1", "-p", "5201", "-t", "5", "-J"], "start_time": 0.5}
    pcap = tmp_path / "pcap"
    # Slow start off: the rates below are the flow model's pace (with it, the first second also
    # holds the ~58 ms of slow-start rounds, as a real first second does: 71.6 Mbit/s measured).
    r = emulate(tmp_path, [server, client], mode, model="CM02", cpu_model="per-syscall=0.000001",
                extra=("--pcap-dir", pcap, "--tcp-slow-start", "off"), timeout=150).check_ok()
    sent, received = json.loads(r.stdout(1)), json.loads(r.stdout(0))
    for side in (sent, received):
        full = [i["sum"] for i in side["intervals"] if i["sum"]["seconds"] > 0.99]
        assert len(full) == 5, side["intervals"]
        for interval in full:
            assert interval["bits_per_second"] == pytest.approx(8 * LINK_RATE, rel=0.10), interval
    # TCP_INFO, alike in both modes: the 10 ms link's round trip, the flow-control window as cwnd
    stats = sent["end"]["streams"][0]["sender"]
    assert (stats["min_rtt"], stats["max_rtt"]) == (20000, 20000), stats
    assert stats["max_snd_cwnd"] == (2 * 1024 * 1024 // 1448) * 1448, stats
    total_sent = sent["end"]["sum_sent"]["bytes"]
    assert total_sent > 4 * LINK_RATE

    # The data connection is the one carrying the bulk (iperf3's control connection has a few bytes).
    leaving = [p for p in _tcp_payloads(pcap / "h2.pcap") if p[1] == "10.0.0.2" and p[5] > 0]
    per_port = Counter()
    for p in leaving:
        per_port[p[2]] += p[5]
    data_port, data_bytes = per_port.most_common(1)[0]
    # every byte the client sent, once: the test's bytes after the 37-byte cookie that opens every
    # iperf3 connection (COOKIE_SIZE in iperf3's source)
    assert data_bytes == total_sent + 37
    arriving = [p for p in _tcp_payloads(pcap / "h1.pcap") if p[3] == "10.0.0.1" and p[2] == data_port and p[5]]
    assert sum(p[5] for p in arriving) >= received["end"]["sum_received"]["bytes"]
    dates = [p[0] for p in arriving]
    assert dates == sorted(dates)
    # No instant delivers megabytes: in 50 ms bins, never more than the link could carry.
    bins = Counter()
    for date, *_, n in arriving:
        bins[int(date / 0.05)] += n
    assert max(bins.values()) <= 1.05 * LINK_RATE * 0.05, max(bins.values())
