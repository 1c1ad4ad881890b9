"""SimGrid's ns-3 network model (packet-level TCP) under `simterpose run` and `ctrld --mediate`.

Under ns-3 every SimGrid transfer is a TCP connection of its own in ns-3 (handshake, slow start,
close: SimGrid's binding, src/surf/network_ns3.cpp), and a 0-byte transfer never completes; so the
emulator's control segments (SYN, SYN-ACK, RST, a lone FIN) are timers of the one-way latency of
the path ns-3 builds, and each flow of data is one ns-3 transfer. Expected dates come from SimGrid
itself (simterpose.sim.predict runs the same transfers under ns-3 in a subprocess).
"""

from __future__ import annotations

import subprocess

import pytest
from net_helpers import PLATFORMS, SIMTERPOSE, TWO_HOSTS, emulate, py, toy

from simterpose.sim.predict import predict_sequence

pytestmark = pytest.mark.timeout(120)

MODES = ["address-translation", "full-mediation"]
LATENCY = 0.010  # two_hosts.xml's one link
ROUTERS = PLATFORMS / "routers.xml"  # h1 - l1 (1 ms) - r1 - backbone (10 ms) - r2 - l2 (1 ms) - h2


@pytest.mark.parametrize("mode", MODES)
def test_pingpong_under_ns3_follows_ns3_and_the_run_exits_cleanly(tmp_path, mode):
    n, size, start = 5, 1000, 0.1
    r = emulate(tmp_path, [toy("pingpong_server", "h1", 5000, n, size),
                           toy("pingpong_client", "h2", "h1", 5000, n, size, start_time=start)],
                mode, model="ns-3").check_ok()  # exit status 0: no crash at exit
    assert r.stdout(1) == f"client: {n} messages of {size} bytes ok\n"
    assert "Segmentation" not in r.output
    # Handshake: SYN and SYN-ACK, one latency each; then each message is one ns-3 transfer.
    dates = predict_sequence(TWO_HOSTS, "ns-3", [("h2", "h1", size), ("h1", "h2", size)] * n,
                             start_time=start + 2 * LATENCY)
    assert r.end(1) == pytest.approx(dates[-1], abs=1e-6)
    assert r.end(0) == pytest.approx(dates[-2], abs=1e-6)
    # SimGrid's ns-3 charges each transfer a TCP connection of its own: 4 latencies for 1000 B.
    assert dates[0] - start - 2 * LATENCY == pytest.approx(4 * LATENCY, rel=0.02)


@pytest.mark.parametrize("mode", MODES)
def test_eof_of_a_1MB_bulk_under_ns3_comes_with_its_last_byte(tmp_path, mode):
    size, start = 1_000_000, 0.1
    r = emulate(tmp_path, [toy("bulk_receiver", "h1", 5000), toy("bulk_sender", "h2", "h1", 5000, size, start_time=start)],
                mode, model="ns-3").check_ok()
    [data] = predict_sequence(TWO_HOSTS, "ns-3", [("h2", "h1", size)], start_time=start + 2 * LATENCY)
    assert r.end(0) == pytest.approx(data, rel=0.01)
    assert r.end(1) == pytest.approx(data + LATENCY, rel=0.01)  # the receiver's FIN back: a latency


REFUSED = """
import errno, socket, time
t0 = time.monotonic()
for _ in range(3):
    try:
        socket.create_connection(("h2", 6000))
    except OSError as e:
        print(errno.errorcode[e.errno])
print(f"{time.monotonic() - t0:.9f}")
"""


def test_refused_connects_and_routers_under_ns3(tmp_path):
    # routers.xml: every route one link long, ns-3 routes h1 -> r1 -> r2 -> h2 itself (12 ms one way)
    r = emulate(tmp_path, [py("h1", REFUSED)], "address-translation", platform=ROUTERS, model="ns-3").check_ok()
    lines = r.stdout(0).split()
    assert lines[:3] == ["ECONNREFUSED"] * 3
    assert float(lines[3]) == pytest.approx(3 * 2 * 0.012, abs=1e-6)  # SYN + RST: a round trip each


def _run(tmp_path, platform, *options):
    from simterpose.scenario import load_platform_info

    hosts = load_platform_info(platform).host_names[:2]
    scen = tmp_path / "s.yaml"
    scen.write_text(f"platform: {platform}\nprocesses:\n" + "".join(f"  - {{host: '{h}', path: /bin/true}}\n"
                                                                    for h in hosts))
    return subprocess.run([str(SIMTERPOSE), "run", str(scen), *options], capture_output=True, text=True, timeout=60)


def test_what_ns3_cannot_simulate_is_refused_with_a_clear_error(tmp_path):
    cases = [
        (PLATFORMS / "four_hosts_backbone.xml", ("--network-model", "ns-3"), "their route has 3 links"),
        (PLATFORMS / "wifi.xml", ("--network-model", "ns-3"), "is a wifi link"),
        (PLATFORMS / "cluster.xml", ("--network-model", "ns-3"), "<cluster> 'cluster'"),
        (TWO_HOSTS, ("--network-model", "ns-3", "--cfg", "ns3/TcpModel:Reno"), "accepts default or NewReno"),
        (TWO_HOSTS, ("--network-model", "ns-4"), "offers LV08"),
    ]
    for platform, options, message in cases:
        p = _run(tmp_path, platform, *options)
        assert p.returncode == 2, (platform, p.stdout, p.stderr)
        assert message in p.stderr and p.stderr.startswith("simterpose run: "), p.stderr
        assert "Segmentation" not in p.stderr and "CRITICAL" not in p.stderr
    # the models the linked SimGrid offers
    p = subprocess.run([str(SIMTERPOSE), "run", "--network-model", "help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert {line.split(":")[0] for line in p.stdout.splitlines()} >= {"LV08", "CM02", "ns-3"}
