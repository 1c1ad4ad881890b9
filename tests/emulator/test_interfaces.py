"""A process sees its simulated host's network interfaces, not the machine's (net/interfaces.py):
rtnetlink dumps (getifaddrs(3), if_nameindex(3), `ip`, Go's net.Interfaces) and the SIOCGIF*
ioctls (if_nametoindex(3), SIOCGIFCONF), in both mediation modes. The expected answers are the
model's (lo 127.0.0.1/8 ::1/128; eth0 the host's addresses as /32 and /128), written out here."""

import pytest
from net_helpers import PLATFORMS, ROOT, emulate, py

MODES = ["address-translation", "full-mediation"]
IPV6 = PLATFORMS / "two_hosts_ipv6.xml"   # h1 10.0.0.1 fd00::1, h2 10.0.0.2 fd00::2

C_GETIFADDRS = r"""
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>

int main(void)
{
    struct ifaddrs *all, *i;
    if (getifaddrs(&all) != 0) { perror("getifaddrs"); return 1; }
    for (i = all; i; i = i->ifa_next) {
        char addr[64] = "-", mask[64] = "-";
        int family = i->ifa_addr ? i->ifa_addr->sa_family : -1;
        if (family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, addr, sizeof addr);
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_netmask)->sin_addr, mask, sizeof mask);
        } else if (family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, addr, sizeof addr);
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_netmask)->sin6_addr, mask, sizeof mask);
        }
        printf("%s %s %s %s up=%d\n", i->ifa_name, family == AF_INET ? "inet" : family == AF_INET6 ? "inet6" : "link",
               addr, mask, !!(i->ifa_flags & IFF_UP));
    }
    freeifaddrs(all);
    return 0;
}
"""

PY_IOCTLS = r"""
import fcntl, socket, struct
print(socket.if_nameindex(), socket.if_nametoindex("eth0"), socket.if_indextoname(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def get(req, name):
    return fcntl.ioctl(s, req, struct.pack("16s24x", name))
print("addr", socket.inet_ntoa(get(0x8915, b"eth0")[20:24]), "mask", socket.inet_ntoa(get(0x891B, b"eth0")[20:24]))
print("mtu", struct.unpack_from("i", get(0x8921, b"lo"), 16)[0], "hwaddr", get(0x8927, b"eth0")[18:24].hex(":"))
import array
b = array.array("B", bytes(10 * 40))   # struct ifconf's buffer: room for 10 struct ifreq
ifc = struct.pack("iiQ", len(b), 0, b.buffer_info()[0])
n = struct.unpack_from("i", fcntl.ioctl(s, 0x8912, ifc))[0]
print("ifconf", [(bytes(b[i:i + 16]).split(b"\0")[0].decode(), socket.inet_ntoa(bytes(b[i + 20:i + 24])))
                 for i in range(0, n, 40)])
try:
    get(0x8933, b"wlan0")
except OSError as e:
    print("wlan0", e.strerror)
"""


def _c(tmp_path, name, src):
    import subprocess
    exe = tmp_path / name
    (tmp_path / f"{name}.c").write_text(src)
    subprocess.run(["cc", "-O1", "-o", str(exe), str(tmp_path / f"{name}.c")], check=True)
    return exe


@pytest.mark.parametrize("mode", MODES)
def test_getifaddrs_ip_and_go_see_the_simulated_hosts_interfaces(tmp_path, mode):
    exe = _c(tmp_path, "getifaddrs", C_GETIFADDRS)
    r = emulate(tmp_path, [
        {"host": "h2", "path": str(exe), "args": []},
        {"host": "h2", "args": ["ip", "-o", "addr"]},
        {"host": "h1", "args": ["ip", "-o", "link"]},
        {"host": "h2", "path": str(ROOT / "build" / "go" / "ifaddrs"), "args": []},
        {"host": "h1", "args": ["hostname", "-I"]},
    ], mode, platform=IPV6).check_ok()
    assert r.stdout(0).splitlines() == [
        "lo link - - up=1",
        "eth0 link - - up=1",
        "lo inet 127.0.0.1 255.0.0.0 up=1",
        "eth0 inet 10.0.0.2 255.255.255.255 up=1",
        "lo inet6 ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff up=1",
        "eth0 inet6 fd00::2 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff up=1",
    ]
    assert [line.split()[1:4] for line in r.stdout(1).splitlines()] == [
        ["lo", "inet", "127.0.0.1/8"], ["lo", "inet6", "::1/128"],      # ip groups them by link
        ["eth0", "inet", "10.0.0.2/32"], ["eth0", "inet6", "fd00::2/128"]]
    links = r.stdout(2)
    assert "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536" in links
    assert "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500" in links and "link/ether 02:00:00:00:00:01" in links
    assert r.stdout(3).splitlines() == [
        "1 lo 65536  up|loopback [127.0.0.1/8 ::1/128]",     # Go 1.19 (Debian 12) prints no "running"
        "2 eth0 1500 02:00:00:00:00:02 up|broadcast|multicast [10.0.0.2/32 fd00::2/128]",
    ]
    assert r.stdout(4).split() == ["10.0.0.1", "fd00::1"]


@pytest.mark.parametrize("mode", MODES)
def test_interface_ioctls_answer_for_the_simulated_host(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", PY_IOCTLS)], mode).check_ok()
    assert r.stdout(0).splitlines() == [
        "[(1, 'lo'), (2, 'eth0')] 2 lo",
        "addr 10.0.0.1 mask 255.255.255.255",
        "mtu 65536 hwaddr 02:00:00:00:00:01",
        "ifconf [('lo', '127.0.0.1'), ('eth0', '10.0.0.1')]",
        "wlan0 No such device",
    ]


# dnsmasq's netlink_recv: recvmsg(MSG_PEEK | MSG_TRUNC) into a small buffer, then, if msg_flags
# says MSG_TRUNC, a buffer of the size returned and the real read. In full mediation the datagram
# path's recvmsg epilogue cleared msg_flags after the netlink answer, so dnsmasq read a truncated
# dump and never started listening.
PY_NETLINK_PEEK = r"""
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
# RTM_GETADDR (22), NLM_F_REQUEST | NLM_F_DUMP, struct ifaddrmsg for AF_INET
s.send(struct.pack("<IHHII", 16 + 8, 22, 0x301, 1, 0) + struct.pack("<BBBBI", socket.AF_INET, 0, 0, 0, 0))
data, _, flags, _ = s.recvmsg(16, 0, socket.MSG_PEEK | socket.MSG_TRUNC)
print("peek", len(data), "trunc" if flags & socket.MSG_TRUNC else "whole")
whole = s.recv(65536, socket.MSG_PEEK | socket.MSG_TRUNC)
data, _, flags, _ = s.recvmsg(len(whole), 0, 0)
print("read", len(data) == len(whole), "trunc" if flags & socket.MSG_TRUNC else "whole")
"""


@pytest.mark.parametrize("mode", MODES)
def test_netlink_peek_reports_truncation_in_msg_flags(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", PY_NETLINK_PEEK)], mode).check_ok()
    assert r.stdout(0).splitlines() == ["peek 16 trunc", "read True whole"]
