"""TCP timing beyond the flow model (issue 16): slow start, and connects to a silent host.

Slow start: under CM02 (`--tcp-slow-start auto`, or `on`) a stream's data leaves in rounds one round
trip apart, from Linux's initial window of 10 segments, the window growing by what each round
acknowledged until it covers the route's bandwidth-delay product (RFC 5681; docs/emulator.md). The
expected dates are computed here from that rule and the platform's link (10 MB/s, 10 ms), with
SimGrid (simterpose.sim.predict) carrying each round's bytes.

Silent host: a platform host with `<prop id="silent" value="1"/>` never answers. A connect to it
times out as Linux's does, after its SYN retransmissions, in simulated time; the errno and the
poll bits are compared with Linux's own against a black-holed peer (root: network namespaces).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from net_helpers import EPS, PLATFORMS, PYTHON, TWO_HOSTS, emulate, py, syn_synack, toy

from simterpose.sim.predict import predict_sequence, predict_transfers

pytestmark = pytest.mark.timeout(180)

MODES = ["address-translation", "full-mediation"]

# two_hosts.xml: one 10 MB/s, 10 ms link. A segment carries 1448 bytes (tcp(7) TCP_MAXSEG on
# Ethernet with timestamps); Linux's initial window is 10 segments (include/net/tcp.h TCP_INIT_CWND).
BANDWIDTH, LATENCY, MSS, INIT_CWND = 10e6, 0.010, 1448, 10


def slow_start_rounds(size: int) -> list[int]:
    """The bytes of each round of a `size`-byte write under slow start: the window starts at 10
    segments and doubles per full round (each acknowledged byte adds one to it) until it reaches
    the bandwidth-delay product; then the rest leaves at once (the link is the limit)."""
    rtt = 2 * LATENCY + MSS / BANDWIDTH
    bdp = BANDWIDTH * rtt
    cwnd, rounds, left = INIT_CWND * MSS, [], size
    while left > 0 and cwnd < bdp:
        n = min(cwnd, left)
        rounds.append(n)
        left -= n
        cwnd += n
    if left:
        rounds.append(left)
    return rounds


def predict_bulk(start: float, size: int, slow_start: bool) -> tuple[float, float]:
    """(receiver's EOF, sender's end) of bulk_sender -> bulk_receiver over two_hosts.xml under CM02:
    the handshake, the data (in rounds one RTT apart with slow start, else one flow), the FIN riding
    with the last bytes, then the receiver's FIN back alone."""
    established = predict_sequence(TWO_HOSTS, "CM02", syn_synack("h2", "h1"), start_time=start)[-1]
    rtt = 2 * LATENCY + MSS / BANDWIDTH
    rounds = slow_start_rounds(size) if slow_start else [size]
    flows = [("h2", "h1", n, established + k * rtt) for k, n in enumerate(rounds)]
    eof = max(predict_transfers(TWO_HOSTS, "CM02", flows))
    back = predict_transfers(TWO_HOSTS, "CM02", [("h1", "h2", 0, eof)])[0]
    return eof, back


def test_the_rounds_of_a_1MB_write():
    """The rule the tests below compute with: 4 rounds of 10, 20, 40, 80 segments before the window
    (160 segments, 231680 B) covers the 10 MB/s x 20.1 ms path (201448 B)."""
    assert slow_start_rounds(1_000_000) == [14480, 28960, 57920, 115840, 1_000_000 - 217200]
    assert slow_start_rounds(10_000) == [10_000]


@pytest.mark.parametrize("mode", MODES)
def test_a_1MB_transfer_takes_the_slow_start_rounds_under_CM02(tmp_path, mode):
    start, size = 0.1, 1_000_000
    procs = [toy("bulk_receiver", "h1", 5000), toy("bulk_sender", "h2", "h1", 5000, size, start_time=start)]
    eof, back = predict_bulk(start, size, slow_start=True)
    plain_eof, plain_back = predict_bulk(start, size, slow_start=False)
    # The mechanism is visible: 4 rounds of 20 ms cost ~58 ms more than one flow (less the
    # serialisation they overlap with).
    assert eof - plain_eof > 0.05
    for option in ((), ("--tcp-slow-start", "on")):   # auto (the default) is on under CM02
        r = emulate(tmp_path, procs, mode, model="CM02", extra=option).check_ok()
        assert r.stdout(0).split()[1] == str(size)
        assert r.end(0) == pytest.approx(eof, abs=EPS)     # the receiver exits at EOF
        assert r.end(1) == pytest.approx(back, abs=EPS)    # the sender once the receiver's FIN is back
    off = emulate(tmp_path, procs, mode, model="CM02", extra=("--tcp-slow-start", "off")).check_ok()
    assert off.end(0) == pytest.approx(plain_eof, abs=EPS)
    assert off.end(1) == pytest.approx(plain_back, abs=EPS)


def test_a_scenario_sets_slow_start_and_the_flag_wins(tmp_path):
    start, size = 0.1, 1_000_000
    procs = [toy("bulk_receiver", "h1", 5000), toy("bulk_sender", "h2", "h1", 5000, size, start_time=start)]
    eof, _ = predict_bulk(start, size, slow_start=True)
    plain_eof, _ = predict_bulk(start, size, slow_start=False)
    off = emulate(tmp_path, procs, "address-translation", model="CM02", keys={"tcp_slow_start": "off"}).check_ok()
    assert off.end(0) == pytest.approx(plain_eof, abs=EPS)
    on = emulate(tmp_path, procs, "address-translation", model="CM02", keys={"tcp_slow_start": "off"},
                 extra=("--tcp-slow-start", "on")).check_ok()
    assert on.end(0) == pytest.approx(eof, abs=EPS)
    bad = emulate(tmp_path, procs, "address-translation", model="CM02", keys={"tcp_slow_start": False})
    assert bad.rc == 2 and "'tcp_slow_start' must be auto, on or off, not False (quote it" in bad.output


RESTART = r"""
import socket, sys, time
size, pause = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("h1", 5000))
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
print("snd_cwnd", int.from_bytes(info[80:84], "little"))   # tcpi_snd_cwnd: Linux's initial 10
s.sendall(b"x" * size)
time.sleep(pause)
s.sendall(b"y" * size)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""


@pytest.mark.parametrize("mode", MODES)
def test_slow_start_restarts_after_an_idle_period(tmp_path, mode):
    """RFC 5681 4.1 (Linux's tcp_slow_start_after_idle): after 1 s without sending (several RTOs of
    220 ms) the window is back to 10 segments, so the second 1 MB takes the same rounds as the first."""
    start, size, pause = 0.1, 1_000_000, 1.0
    r = emulate(tmp_path, [toy("bulk_receiver", "h1", 5000),
                           py("h2", RESTART, size, pause, start_time=start)],
                mode, model="CM02").check_ok()
    assert r.stdout(0).split()[1] == str(2 * size)
    assert r.stdout(1) == "snd_cwnd 10\n"
    first_eof, _ = predict_bulk(start, size, slow_start=True)
    established = predict_sequence(TWO_HOSTS, "CM02", syn_synack("h2", "h1"), start_time=start)[-1]
    # the second write starts `pause` after the first (writes of 1 MB fit the 2 MiB window at once)
    second_eof = first_eof + pause
    assert first_eof - established < pause   # the first burst was over before the pause ended
    assert r.end(0) == pytest.approx(second_eof, abs=EPS)


# -- a silent host ---------------------------------------------------------------------------------

SILENT = PLATFORMS / "silent_host.xml"   # h1 10.9.0.1, h2 10.9.0.3, h3 10.9.0.2 silent
SILENT_IP = "10.9.0.2"

# One connect attempt per argument KIND:SYNCNT:USER_TIMEOUT_MS. Prints the observable results (the
# errno names, poll bits) and, on stderr, the time each attempt took (virtual under simterpose).
CLIENT = r"""
import errno, select, socket, sys, time

def name(e):
    return errno.errorcode.get(e, str(e)) if e else "0"

def bits(ev):
    return "|".join(n for n in ("POLLIN", "POLLOUT", "POLLERR", "POLLHUP") if ev & getattr(select, n)) or "0"

addr = sys.argv[1]
for spec in sys.argv[2:]:
    kind, syncnt, uto = spec.split(":")
    if kind == "udp":   # a datagram to the host: no ICMP error comes back
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect((addr, 9))
        u.send(b"hello")
        p = select.poll()
        p.register(u, select.POLLIN)
        print(f"{spec} poll 1 s:", p.poll(1000))
        try:
            u.recv(100, socket.MSG_DONTWAIT)
            print(f"{spec} recv: data")
        except OSError as e:
            print(f"{spec} recv:", name(e.errno))
        u.close()
        continue
    s = socket.socket()
    if int(syncnt):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, int(syncnt))
    if int(uto):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(uto))
    if kind == "sndtimeo":   # SO_SNDTIMEO ends a blocking connect with EINPROGRESS; the SYNs go on
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, b"\x01" + b"\0" * 7 + (500000).to_bytes(8, "little"))
    t0 = time.monotonic()
    if kind == "sndtimeo":
        print(f"{spec} connect:", name(s.connect_ex((addr, 80))))
        print(f"{spec} {time.monotonic() - t0:.9f}", file=sys.stderr)
        print(f"{spec} connect again:", name(s.connect_ex((addr, 80))))
        s.close()
        continue
    if kind == "blocking":
        try:
            s.connect((addr, 80))
            print(f"{spec} connect: 0")
        except OSError as e:
            print(f"{spec} connect:", name(e.errno))
    else:
        s.setblocking(False)
        print(f"{spec} connect:", name(s.connect_ex((addr, 80))))
        p = select.poll()
        p.register(s, select.POLLIN | select.POLLOUT)
        print(f"{spec} poll 0.5 s:", p.poll(500))
        print(f"{spec} connect again:", name(s.connect_ex((addr, 80))))
        (fd, ev), = p.poll(1000 * 1000)
        print(f"{spec} poll:", bits(ev))
        print(f"{spec} SO_ERROR:", name(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
        print(f"{spec} SO_ERROR again:", name(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    print(f"{spec} {time.monotonic() - t0:.9f}", file=sys.stderr)
    s.close()
"""


def _sysctl(name: str, default: int) -> int:
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text())
    except OSError:
        return default


def linux_syn_timeout(syncnt: int, user_timeout_ms: int) -> float:
    return linux_syn_dates(syncnt, user_timeout_ms)[-1]


def linux_syn_dates(syncnt: int, user_timeout_ms: int) -> list[float]:
    """The dates of the SYNs of a connect nobody answers, and last when Linux 6.x reports ETIMEDOUT
    (tcp(7), net/ipv4/tcp_timer.c;
    measured on this kernel: SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s, ETIMEDOUT at 131 s by
    default; TCP_SYNCNT=1: 3 s; TCP_USER_TIMEOUT=2500: 2.5 s). The retransmission timer starts at
    1 s, stays there for tcp_syn_linear_timeouts retransmissions, then doubles; each time it fires
    the attempt ends if the time since the first SYN reached the limit: TCP_USER_TIMEOUT (the timer
    then clamped to it), else the classic backoff's 2^(retries+1) - 1 seconds."""
    retries = syncnt or _sysctl("tcp_syn_retries", 6)
    linear = _sysctl("tcp_syn_linear_timeouts", 0)
    limit = user_timeout_ms / 1000 if user_timeout_ms else float(2 ** (retries + 1) - 1)
    fired, rto, sent, dates = 1.0, 1.0, 0, [0.0]   # the first SYN, then each retransmission
    while fired < limit:
        dates.append(fired)
        sent += 1
        rto = 1.0 if sent <= linear else min(2.0 ** (sent - linear), 120.0)
        fired = min(fired + rto, limit) if user_timeout_ms else fired + rto
    return dates + [fired]   # ... and the date of ETIMEDOUT


ATTEMPTS = ["blocking:0:0", "nonblocking:0:0", "blocking:2:0", "nonblocking:1:0", "blocking:0:2500", "udp:0:0",
            "sndtimeo:0:0"]
SNDTIMEO = 1.5   # the program's SO_SNDTIMEO


def _expected_lines(attempts: list[str]) -> list[str]:
    lines = []
    for spec in attempts:
        kind = spec.split(":")[0]
        if kind == "udp":
            lines += [f"{spec} poll 1 s: []", f"{spec} recv: EAGAIN"]
        elif kind == "sndtimeo":
            lines += [f"{spec} connect: EINPROGRESS", f"{spec} connect again: EALREADY"]
        elif kind == "blocking":
            lines.append(f"{spec} connect: ETIMEDOUT")
        else:
            lines += [f"{spec} connect: EINPROGRESS", f"{spec} poll 0.5 s: []", f"{spec} connect again: EALREADY",
                      f"{spec} poll: POLLIN|POLLOUT|POLLERR|POLLHUP", f"{spec} SO_ERROR: ETIMEDOUT",
                      f"{spec} SO_ERROR again: 0"]
    return lines


@pytest.mark.parametrize("mode", MODES)
def test_connecting_to_a_silent_host_times_out_as_linux_in_simulated_time(tmp_path, mode):
    """ETIMEDOUT after Linux's SYN retransmissions: blocking and non-blocking (poll), with the
    defaults (131 s on Linux 6.x), TCP_SYNCNT, TCP_USER_TIMEOUT, and SO_SNDTIMEO (EINPROGRESS, the
    SYNs going on); every SYN in the pcap. The ~280 s of simulated time take a fraction of a second
    of wall time (the run's timeout is far below them)."""
    pcap = tmp_path / f"pcap-{mode}"
    r = emulate(tmp_path, [py("h1", CLIENT, SILENT_IP, *ATTEMPTS)], mode, platform=SILENT, timeout=100,
                extra=("--pcap-dir", pcap)).check_ok()
    assert r.stdout(0).splitlines() == _expected_lines(ATTEMPTS)
    # Every SYN left h1 (and none came back): the retransmissions before ETIMEDOUT, and for the
    # socket closed after SO_SNDTIMEO, those before its close only.
    syns = sum(1 for _date, src, dst, flags in _tcp_segments(pcap / "h1.pcap")
               if src == "10.9.0.1" and dst == SILENT_IP and flags & 0x02)
    want = sum(len(linux_syn_dates(int(spec.split(":")[1]), int(spec.split(":")[2]))) - 1
               for spec in ATTEMPTS if spec.split(":")[0] in ("blocking", "nonblocking"))
    want += sum(1 for d in linux_syn_dates(0, 0)[:-1] if d < SNDTIMEO)
    assert syns == want
    took = dict(line.split() for line in r.stderr(0).splitlines())
    total = 0.0
    for spec in ATTEMPTS:
        kind, syncnt, uto = spec.split(":")
        if kind == "udp":
            continue
        want = SNDTIMEO if kind == "sndtimeo" else linux_syn_timeout(int(syncnt), int(uto))
        assert float(took[spec]) == pytest.approx(want, abs=EPS), spec
        total += want
    assert total > 200   # what the run did not wait in wall time
    assert r.end(0) == pytest.approx(total + 1.0, abs=1e-3)   # + the UDP attempt's 1 s poll


def _tcp_segments(pcap: Path):
    """(date, src ip, dst ip, TCP flags) of every TCP packet of a --pcap-dir file (raw IPv4)."""
    import socket
    import struct

    data = pcap.read_bytes()
    off = 24
    while off < len(data):
        sec, frac, incl, _ = struct.unpack_from("<IIII", data, off)
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if pkt[9] == socket.IPPROTO_TCP:
            ihl = (pkt[0] & 0xF) * 4
            yield sec + frac / 1e9, socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), pkt[ihl + 13]


def test_a_process_cannot_run_on_a_silent_host(tmp_path):
    r = emulate(tmp_path, [py("h3", "pass")], "address-translation", platform=SILENT)
    assert r.rc == 2
    assert "host 'h3' is silent" in r.output


def test_a_refused_connect_still_gets_a_reset_next_to_a_silent_host(tmp_path):
    """h2 is an ordinary host where nothing listens: a reset comes back after one round trip."""
    code = ("import socket\ns = socket.socket()\n"
            "try:\n    s.connect(('h2', 80))\nexcept OSError as e:\n    print(e.errno)\n")
    r = emulate(tmp_path, [py("h1", code)], "address-translation", platform=SILENT, model="CM02").check_ok()
    assert r.stdout(0) == "111\n"   # ECONNREFUSED
    assert r.end(0) == pytest.approx(0.020, abs=EPS)


# -- Linux's own answers, against a black-holed peer (root) -----------------------------------------

def _black_hole_run(args: list[str]) -> subprocess.CompletedProcess:
    """Run `python -c CLIENT ARGS` natively in a network namespace where 10.9.0.2 is routed to a
    veth whose far end drops everything (a static neighbour entry: no ARP, the frames are for a MAC
    nobody has), so SYNs go unanswered as they do toward a silent host."""
    ns = f"stpsilent{os.getpid()}"
    run = lambda *c: subprocess.run(c, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", ns)
    run("ip", "netns", "add", ns + "b")
    try:
        run("ip", "link", "add", "d0", "netns", ns, "type", "veth", "peer", "name", "d1", "netns", ns + "b")
        run("ip", "netns", "exec", ns + "b", "ip", "link", "set", "d1", "up")
        for cmd in ("ip link set lo up", "ip link set d0 up", "ip addr add 10.9.0.1/24 dev d0",
                    "ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev d0 nud permanent"):
            run("ip", "netns", "exec", ns, *cmd.split())
        return subprocess.run(["ip", "netns", "exec", ns, PYTHON, "-c", CLIENT, SILENT_IP, *args],
                              capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns + "b"], capture_output=True)


def test_linux_answers_the_same_against_a_black_hole(tmp_path):
    """The same program natively (TCP_SYNCNT=1 and TCP_USER_TIMEOUT keep it to seconds): the same
    lines as under simterpose (the errnos, the poll bits) — the expectations above are Linux's."""
    assert os.geteuid() == 0, "a black-holed peer needs network namespaces: run the suite as root (CI does)"
    attempts = ["blocking:1:0", "nonblocking:1:0", "blocking:0:1500", "udp:0:0", "sndtimeo:0:0"]
    p = _black_hole_run(attempts)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == _expected_lines(attempts)
    for mode in MODES:
        r = emulate(tmp_path, [py("h1", CLIENT, SILENT_IP, *attempts)], mode, platform=SILENT).check_ok()
        assert r.stdout(0) == p.stdout


def test_slow_start_option_help_and_ns3(tmp_path):
    """--help says what the option does and why auto is the default; ns-3 has its own TCP, so
    `--tcp-slow-start on` is a usage error there (auto is off there)."""
    from net_helpers import SIMTERPOSE

    text = subprocess.run([str(SIMTERPOSE), "run", "--help"], capture_output=True, text=True).stdout
    flat = " ".join(text.split())
    assert "--tcp-slow-start {auto,on,off}" in flat
    assert "10 segments" in flat and "docs/compare.md" in flat and "'on' is refused there" in flat
    r = emulate(tmp_path, [py("h1", "pass")], "address-translation", model="ns-3", extra=("--tcp-slow-start", "on"))
    assert r.rc == 2
    assert "ns-3 simulates TCP (and its slow start) itself" in r.output


def test_a_silent_property_must_be_a_boolean(tmp_path):
    from simterpose.scenario import ScenarioError, load_platform_info

    bad = tmp_path / "p.xml"
    bad.write_text(SILENT.read_text().replace('<prop id="silent" value="1"/>', '<prop id="silent" value="maybe"/>'))
    with pytest.raises(ScenarioError, match="property silent must be 1 or 0"):
        load_platform_info(bad)
    assert [h.name for h in load_platform_info(SILENT).hosts if h.silent] == ["h3"]
