"""The toy programs of examples/toys, each run natively once.

The toys are the workloads that the rest of the test suite runs under simterpose, comparing the
emulated stdout with the native one byte for byte. These tests pin down each toy's command line
and exact output, on 127.0.0.1, servers started before their clients.
"""

import os
import re
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
TIMEOUT = 15  # seconds any single toy may take


def run(toys: Path, name: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(toys / name), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    """The stdout of a toy that must have succeeded."""
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}: {proc.stderr}"
    assert proc.stderr == ""
    return proc.stdout


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel considers free right now (the toys themselves refuse port 0)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def bound_ports(proto: str) -> set[int]:
    """Local ports of the listening TCP sockets (or bound UDP sockets), from /proc/net."""
    ports = set()
    for suffix in ("", "6"):
        path = Path(f"/proc/net/{proto}{suffix}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if proto == "tcp" and fields[3] != "0A":  # 0A = TCP_LISTEN
                continue
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class Server:
    port: int
    proc: subprocess.Popen

    def output(self) -> str:
        """Wait for the server to exit by itself; its stdout."""
        out, err = self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == 0, f"{self.proc.args} exited {self.proc.returncode}: {err}"
        return out


@contextmanager
def server(toys: Path, name: str, *args, proto: str = "tcp"):
    """Start `name PORT *args` on a free port and wait until it is bound.

    Another process may grab the port between free_port() and the server's bind: then the
    server dies with "Address already in use" and we retry on another port.
    """
    for _ in range(5):
        port = free_port(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        proc = subprocess.Popen(
            [str(toys / name), str(port), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and port not in bound_ports(proto) and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            break
        _, err = proc.communicate()
        assert "in use" in err, f"{name} failed to start: {err}"
    else:
        pytest.fail(f"no free port for {name}")
    try:
        yield Server(port, proc)
    finally:
        if proc.poll() is None:  # the test failed before the server finished
            proc.kill()
            proc.communicate()


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# --- TCP ping-pong ------------------------------------------------------------------------------


def test_pingpong(toys):
    """pingpong_server PORT N S echoes N messages of S bytes; pingpong_client HOST PORT N S checks them."""
    with server(toys, "pingpong_server", 50, 1000) as srv:
        assert (
            ok(run(toys, "pingpong_client", HOST, srv.port, 50, 1000))
            == "client: 50 messages of 1000 bytes ok\n"
        )
        assert srv.output() == "server: echoed 50 messages of 1000 bytes\n"


def test_pingpong_client_may_start_before_its_server(toys):
    """While the connection is refused the client retries every 10 ms (up to 1000 times)."""
    port = free_port()
    client = subprocess.Popen(
        [str(toys / "pingpong_client"), HOST, str(port), "3", "10"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.1)
    assert ok(run(toys, "pingpong_server", port, 3, 10)) == "server: echoed 3 messages of 10 bytes\n"
    assert client.communicate(timeout=TIMEOUT)[0] == "client: 3 messages of 10 bytes ok\n"
    assert client.returncode == 0


def test_pingpong_over_ipv6(toys):
    """Servers take an optional bind address, IPv6 literals included; clients resolve any host."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server(toys, "pingpong_server", 5, 100, "::1") as srv:
        assert (
            ok(run(toys, "pingpong_client", "::1", srv.port, 5, 100))
            == "client: 5 messages of 100 bytes ok\n"
        )
        assert srv.output() == "server: echoed 5 messages of 100 bytes\n"


def test_client_gives_up_when_nothing_listens(toys):
    """After TOY_CONNECT_RETRIES refused attempts (default 1000), a client fails with a message."""
    env = dict(os.environ, TOY_CONNECT_RETRIES="3")
    proc = run(toys, "pingpong_client", HOST, free_port(), 1, 1, env=env)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Connection refused" in proc.stderr and "gave up after 3 tries" in proc.stderr


# --- Bulk transfer ------------------------------------------------------------------------------


def bulk(toys: Path, host: str, *sender_args) -> tuple[str, str]:
    with server(toys, "bulk_receiver") as srv:
        sent = ok(run(toys, "bulk_sender", host, srv.port, *sender_args))
        return sent, srv.output()


def test_bulk_transfer_checksums_match(toys):
    """bulk_sender HOST PORT M [CHUNK] streams M bytes (1000-based suffixes) to bulk_receiver PORT.

    Both print the FNV-1a 64 checksum of the stream, which depends on M only, not on the chunking.
    """
    sent, received = bulk(toys, "localhost", "5M")
    checksum = re.fullmatch(r"sender: 5000000 bytes checksum ([0-9a-f]{16})\n", sent).group(1)
    assert received == f"receiver: 5000000 bytes checksum {checksum}\n"

    assert bulk(toys, HOST, "5M", 1000) == (sent, received)


def test_bulk_empty_stream(toys):
    """Zero bytes: the checksum is the FNV-1a 64 offset basis."""
    assert bulk(toys, HOST, 0) == (
        "sender: 0 bytes checksum cbf29ce484222325\n",
        "receiver: 0 bytes checksum cbf29ce484222325\n",
    )


def test_bulk_pattern_has_zero_bytes_and_checksum_is_fnv1a64(toys):
    """Receive the stream here: it contains NUL bytes, and its FNV-1a 64 is what the sender printed."""
    with socket.create_server((HOST, 0)) as listener:
        listener.settimeout(TIMEOUT)
        sender = subprocess.Popen(
            [str(toys / "bulk_sender"), HOST, str(listener.getsockname()[1]), "100k"],
            stdout=subprocess.PIPE,
            text=True,
        )
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data = bytearray()
            while chunk := conn.recv(65536):
                data += chunk
    out, _ = sender.communicate(timeout=TIMEOUT)
    assert sender.returncode == 0
    assert len(data) == 100_000 and data.count(0) >= 100_000 // 256
    assert out == f"sender: 100000 bytes checksum {fnv1a64(data):016x}\n"


# --- UDP ----------------------------------------------------------------------------------------


def test_udp_echo(toys):
    """udp_echo_server PORT N echoes N datagrams; udp_echo_client HOST PORT N S sends and checks them."""
    with server(toys, "udp_echo_server", 20, proto="udp") as srv:
        assert (
            ok(run(toys, "udp_echo_client", HOST, srv.port, 20, 512))
            == "udp client: 20 datagrams of 512 bytes ok\n"
        )
        assert srv.output() == "udp server: echoed 20 datagrams\n"


# --- Servers with several clients ---------------------------------------------------------------

CLIENTS = [(10, 100), (20, 1000), (5, 70_000)]  # (N, S) of 3 concurrent pingpong clients
ECHOED = sum(n * s for n, s in CLIENTS)


@pytest.mark.parametrize(
    "name, summary",
    [
        ("poll_server", f"poll server: served 3 clients, {ECHOED} bytes"),
        ("select_server", f"select server: served 3 clients, {ECHOED} bytes"),
        ("epoll_server", f"epoll server: served 3 clients, {ECHOED} bytes"),
        ("fork_server", "fork server: served 3 clients"),
        ("thread_server", "thread server: served 3 clients"),
    ],
)
def test_multi_client_echo_server(toys, name, summary):
    """NAME PORT NCLIENTS echoes NCLIENTS concurrent clients until each closes, then exits."""
    with server(toys, name, len(CLIENTS)) as srv:
        clients = [
            subprocess.Popen(
                [str(toys / "pingpong_client"), HOST, str(srv.port), str(n), str(s)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n, s in CLIENTS
        ]
        for client, (n, s) in zip(clients, CLIENTS, strict=True):
            assert client.communicate(timeout=TIMEOUT)[0] == f"client: {n} messages of {s} bytes ok\n"
            assert client.returncode == 0
        assert srv.output() == summary + "\n"


# --- Time and CPU -------------------------------------------------------------------------------

PROBE = re.compile(r"realtime=(\d+)\.(\d{9}) monotonic=(\d+)\.(\d{9}) gettimeofday=(\d+)\.(\d{6}) time=(\d+)")


@pytest.mark.parametrize("name", ["time_probe", "time_probe_static"])
def test_time_probe(toys, name):
    """time_probe [SLEEP_SECONDS]: the clocks before and after a nanosleep, and the monotonic gap."""
    before, after, slept = ok(run(toys, name, 0.2)).splitlines()
    probes = []
    for line in (before, after):
        rt_s, rt_ns, mono_s, mono_ns, tv_s, tv_us, t = map(int, PROBE.fullmatch(line).groups())
        realtime = rt_s + rt_ns / 1e9
        assert abs(realtime - (tv_s + tv_us / 1e6)) < 1 and abs(realtime - t) < 2
        probes.append(mono_s + mono_ns / 1e9)
    gap = float(re.fullmatch(r"slept_monotonic=(\d+\.\d{9})", slept).group(1))
    assert gap >= 0.2
    assert gap == pytest.approx(probes[1] - probes[0], abs=1e-6)


@pytest.mark.parametrize("name", ["random_probe", "random_probe_static"])
def test_random_probe(toys, name):
    """random_probe: 16 random bytes from each kernel source; natively, new bytes every run."""
    keys = ["at_random", "getrandom", "syscall", "urandom_read", "urandom_readv", "urandom_pread",
            "random_read", "child_getrandom"]
    runs = []
    for _ in range(2):
        out = ok(run(toys, name))
        assert re.fullmatch(r"at_random=\w{32} getrandom=\w{32} syscall=\w{32}\n"
                            r"urandom_read=\w{32} urandom_readv=\w{32} urandom_pread=\w{32} random_read=\w{32} "
                            r"poll=POLLIN\nchild_getrandom=\w{32}\n", out), out
        runs.append(dict(re.findall(r"(\w+)=([0-9a-f]{32})", out)))
    assert sorted(runs[0]) == sorted(keys)
    assert all(runs[0][k] != runs[1][k] for k in keys)


def test_cpu_loop_is_deterministic(toys):
    """cpu_loop ITERATIONS hashes in a loop without syscalls; the result depends only on ITERATIONS."""
    assert ok(run(toys, "cpu_loop", "1M")) == "cpu_loop: 1000000 iterations result cef9701e\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        ((0,), "syscall_loop: 0 getpid"),  # the "empty program" baseline
        ((1000,), "syscall_loop: 1000 getpid"),
        ((1000, "clock_gettime"), "syscall_loop: 1000 clock_gettime"),
        ((100, "nanosleep0"), "syscall_loop: 100 nanosleep0"),
    ],
)
def test_syscall_loop(toys, args, expected):
    """syscall_loop N [getpid|clock_gettime|nanosleep0] makes N raw syscalls of one kind."""
    assert ok(run(toys, "syscall_loop", *args)) == expected + "\n"


def test_nanosleep_loop(toys):
    """nanosleep_loop N MICROSECONDS sleeps N times."""
    start = time.monotonic()
    assert ok(run(toys, "nanosleep_loop", 20, 1000)) == "nanosleep_loop: 20 x 1000 us\n"
    assert time.monotonic() - start >= 0.02


# --- Bad command lines --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["pingpong_server"], 2, "usage: pingpong_server PORT N S [BIND_ADDR]"),
        (["syscall_loop", "1", "fork"], 2, "usage: syscall_loop N [getpid|clock_gettime|nanosleep0]"),
        (["bulk_sender", HOST, "1", "12x"], 1, "invalid M '12x'"),
        (["pingpong_client", HOST, "0", "1", "1"], 1, "invalid port '0'"),
    ],
)
def test_bad_arguments(toys, args, code, message):
    """A usage error exits 2 with the synopsis, an invalid value exits 1; both explain on stderr."""
    proc = run(toys, *args)
    assert (proc.returncode, proc.stdout) == (code, "")
    assert message in proc.stderr
