"""Full mediation: the emulator carries every byte; no kernel socket links two tracees.

The whole network matrix of test_network.py already runs in both modes (same outputs, same simulated
dates). These tests are about what only full mediation promises: bytes copied exactly (zeros
included) between tracee memories, far more connections than one port would get from kernel
loopback sockets in address translation, and no real TCP socket at all between the tracees.
"""

import hashlib

import pytest
from net_helpers import PYTHON, emulate, py

BINARY_ECHO_SERVER = r"""
import socket
l = socket.socket(); l.bind(("0.0.0.0", 7000)); l.listen()
c, _ = l.accept()
data = b""
while len(data) < 65536:
    chunk = c.recv(65536 - len(data))
    if not chunk:
        break
    data += chunk
c.sendall(data)
print("server", len(data), data.count(0))
"""

BINARY_CLIENT = r"""
import hashlib, socket, time
payload = bytes(range(256)) * 256          # 64 KiB, one zero byte in every 256
for _ in range(1000):
    try:
        s = socket.create_connection(("h1", 7000)); break
    except ConnectionRefusedError:
        time.sleep(0.01)
s.sendall(payload)
back = b""
while len(back) < len(payload):
    back += s.recv(len(payload))
print("client", back == payload, hashlib.sha256(back).hexdigest())
"""


@pytest.mark.parametrize("mode", ["full-mediation", "address-translation"])
def test_binary_payloads_with_zero_bytes_arrive_intact(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", BINARY_ECHO_SERVER), py("h2", BINARY_CLIENT, start_time=0.1)], mode).check_ok()
    assert r.stdout(0) == "server 65536 256\n"
    assert r.stdout(1) == f"client True {hashlib.sha256(bytes(range(256)) * 256).hexdigest()}\n"


MANY_SERVER = r"""
import selectors, socket, sys
n = int(sys.argv[1])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 9000)); l.listen(1024)
sel = selectors.DefaultSelector(); sel.register(l, selectors.EVENT_READ)
accepted = closed = echoed = 0
while closed < n:
    for key, _ in sel.select():
        if key.fileobj is l:
            c, _ = l.accept(); accepted += 1
            sel.register(c, selectors.EVENT_READ)
        else:
            data = key.fileobj.recv(100)
            if data:
                key.fileobj.sendall(data); echoed += 1
            else:
                sel.unregister(key.fileobj); key.fileobj.close(); closed += 1
print("server", accepted, echoed, closed)
"""

MANY_CLIENT = r"""
import socket, sys
n = int(sys.argv[1])
socks = [socket.create_connection(("h1", 9000)) for _ in range(n)]
ports = {s.getsockname()[1] for s in socks}
for i, s in enumerate(socks):
    s.sendall(b"%d" % i)
ok = all(s.recv(100) == b"%d" % i for i, s in enumerate(socks))
for s in socks:
    s.close()
print("client", len(socks), len(ports), ok)
"""


def test_300_connections_to_one_port_are_all_served(tmp_path):
    n = 300
    r = emulate(tmp_path, [py("h1", MANY_SERVER, n), py("h2", MANY_CLIENT, n, start_time=0.1)],
                "full-mediation", timeout=240).check_ok()
    assert r.stdout(0) == f"server {n} {n} {n}\n"
    assert r.stdout(1) == f"client {n} {n} True\n"  # 300 distinct virtual source ports, all echoed


NO_KERNEL_TCP = r"""
import socket, os
l = socket.socket(); l.bind(("0.0.0.0", 8000)); l.listen()
c, addr = l.accept()
c.recv(10)
# Inside full mediation a descriptor is a placeholder: the kernel has no TCP socket for it.
tcp = open("/proc/self/net/tcp").read().split("\n")[1:]
mine = [line for line in tcp if line and ":1F40 " in line.split()[1].upper()]
print("accepted", addr[0], "kernel tcp sockets on port 8000:", len(mine))
"""

HELLO = r"""
import socket, time
for _ in range(1000):
    try:
        s = socket.create_connection(("10.0.0.1", 8000)); break
    except ConnectionRefusedError:
        time.sleep(0.01)
s.sendall(b"hello")
time.sleep(1)
"""


def test_full_mediation_uses_no_kernel_tcp_socket_between_tracees(tmp_path):
    r = emulate(tmp_path, [py("h1", NO_KERNEL_TCP), py("h2", HELLO, start_time=0.1)], "full-mediation").check_ok()
    assert r.stdout(0) == "accepted 10.0.0.2 kernel tcp sockets on port 8000: 0\n"


UDP_SERVER = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7001))
data, peer = s.recvfrom(100)
s.sendto(data.upper(), peer)
print("server got", data, "from", peer[0])
"""

UDP_CLIENT = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"ping", ("h1", 7001))
data, peer = s.recvfrom(100)
print("client got", data, "from", peer)
"""


@pytest.mark.parametrize("mode", ["full-mediation", "address-translation"])
def test_a_reply_from_a_wildcard_udp_socket_comes_from_the_hosts_address(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", UDP_SERVER), py("h2", UDP_CLIENT, start_time=0.1)], mode).check_ok()
    assert r.stdout(0) == "server got b'ping' from 10.0.0.2\n"
    assert r.stdout(1) == "client got b'PING' from ('10.0.0.1', 7001)\n"


V6_SERVER = r"""
import socket
l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
l.bind(("::", 8600)); l.listen()
for _ in range(3):
    c, peer = l.accept()
    c.sendall(c.recv(100) + b" to " + c.getsockname()[0].encode())
    print("from", peer[0])
    c.close()
"""

V6_CLIENTS = r"""
import socket, time
def ask(family, addr):
    for _ in range(1000):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect(addr); break
        except ConnectionRefusedError:
            s.close(); time.sleep(0.01)
    s.sendall(b"hi"); print(s.recv(100).decode(), "peer", s.getpeername()[0])
ask(socket.AF_INET6, ("::ffff:10.0.0.1", 8600, 0, 0))
ask(socket.AF_INET, ("10.0.0.1", 8600))
"""

V6_LOCAL = r"""
import socket, time
time.sleep(1)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.connect(("::1", 8600))
s.sendall(b"local"); print(s.recv(100).decode())
"""


@pytest.mark.parametrize("mode", ["full-mediation", "address-translation"])
def test_ipv6_sockets_reach_hosts_through_ipv4_mapped_addresses(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", V6_SERVER), py("h2", V6_CLIENTS, start_time=0.1), py("h1", V6_LOCAL)],
                mode).check_ok()
    assert r.stdout(1) == ("hi to ::ffff:10.0.0.1 peer ::ffff:10.0.0.1\n"
                           "hi to ::ffff:10.0.0.1 peer 10.0.0.1\n")
    assert r.stdout(0).splitlines()[:2] == ["from ::ffff:10.0.0.2", "from ::ffff:10.0.0.2"]
    # ::1 is the IPv6 loopback, not a mapped IPv4 address: Linux names both ends ::1
    # (tests/differential ipv6.py, v6_client_local)
    assert r.stdout(2) == "local to ::1\n"


@pytest.mark.parametrize("mode", ["full-mediation", "address-translation"])
def test_curl_and_wget_download_from_python_http_server(tmp_path, mode):
    """Unmodified C clients (curl, wget) against an unmodified Python server, by host name."""
    www = tmp_path / "www"
    www.mkdir()
    payload = bytes(range(256)) * 4000  # 1 MB with zeros
    (www / "f.bin").write_bytes(payload)
    server = {"host": "h1", "path": PYTHON, "args": ["-m", "http.server", "8080", "--directory", str(www)],
              "kill_time": 20, "expected_exit": None}
    curl = {"host": "h2", "path": "/usr/bin/curl", "start_time": 0.5,
            "args": ["-s", "-o", str(tmp_path / "curl.out"), "-w", "%{http_code} %{size_download}\n",
                     "http://h1:8080/f.bin"]}
    wget = {"host": "h2", "path": "/usr/bin/wget", "start_time": 5,
            "args": ["-q", "-O", str(tmp_path / "wget.out"), "http://h1:8080/f.bin"]}
    r = emulate(tmp_path, [server, curl, wget], mode, model="CM02").check_ok()
    assert r.stdout(1) == f"200 {len(payload)}\n"
    assert (tmp_path / "curl.out").read_bytes() == payload
    assert (tmp_path / "wget.out").read_bytes() == payload
    assert 5 < r.end(2) < 6  # 1 MB over a 10 MB/s link: a fraction of a second after its start
