"""`simterpose trace`: strace-like lines, exit statuses, -e/-f/-o, crash reports; and the formatter."""

import re
import signal
import socket
import struct
import subprocess

import pytest
from conftest import PY

from simterpose.tracer import names, strace


def trace(args, env, timeout=30):
    p = subprocess.run([PY, "-m", "simterpose.cli", "trace", *args], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


CLIENT = """
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); port = s.getsockname()[1]
c = socket.create_connection(("127.0.0.1", port)); a, _ = s.accept()
c.send(b"ping\\n\\x00" + b"x" * 40); a.recv(100)
s.close()
r = socket.socket()
try: r.connect(("127.0.0.1", port))
except ConnectionRefusedError: print("refused")
time.monotonic()
print(port)
"""


def test_network_and_time_lines(tmp_path, env_with_project):
    out = tmp_path / "trace.txt"
    rc, stdout, stderr = trace(["-o", str(out), "--", PY, "-c", CLIENT], env_with_project)
    assert rc == 0, stderr
    port = int(stdout.split()[-1])
    lines = out.read_text().splitlines()
    text = "\n".join(lines)
    sa = f'{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("127.0.0.1")}}'
    assert f"connect(4, {sa}, 16) = 0" in lines
    assert re.search(r"^connect\(\d+, " + re.escape(sa) + r", 16\) = -1 ECONNREFUSED \(Connection refused\)$",
                     text, re.M)
    assert "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 3" in lines
    assert 'sendto(4, "ping\\n\\0xxxxxxxxxxxxxxxxxxxxxxxxxx"..., 46, 0, NULL, 0) = 46' in lines
    assert 'recvfrom(5, "ping\\n\\0xxxxxxxxxxxxxxxxxxxxxxxxxx"..., 100, 0, NULL, NULL) = 46' in lines
    assert re.search(r"^accept4\(3, \{sa_family=AF_INET, sin_port=htons\(\d+\), "
                     r'sin_addr=inet_addr\("127.0.0.1"\)\}, \[16\], SOCK_CLOEXEC\) = 5$', text, re.M)
    assert re.search(r"^clock_gettime\(CLOCK_MONOTONIC, \{tv_sec=\d+, tv_nsec=\d+\}\) = 0$", text, re.M)
    assert lines[-1] == "+++ exited with 0 +++"
    assert not any(line.startswith("[pid") for line in lines)


def test_exit_status_and_crash_report(env_with_project):
    rc, _, err = trace(["--", "/bin/sh", "-c", "exit 42"], env_with_project)
    assert rc == 42 and err.splitlines()[-1] == "+++ exited with 42 +++"
    rc, _, err = trace(["--", PY, "-c", "import ctypes; ctypes.string_at(0)"], env_with_project)
    assert rc == 128 + signal.SIGSEGV
    assert "--- SIGSEGV ---" in err
    assert re.search(r"^\+\+\+ killed by SIGSEGV( \(core dumped\))? \+\+\+$", err, re.M)


def test_follow_children(tmp_path, env_with_project):
    code = "import os, socket\npid = os.fork()\nif pid == 0:\n    socket.socket(); os._exit(0)\nos.waitpid(pid, 0)"
    rc, _, err = trace(["-e", "trace=socket,wait4", "--", PY, "-c", code], env_with_project)
    assert rc == 0
    assert "socket(" not in err  # the child's line: only with -f
    assert re.search(r"^wait4\(\d+, \[\{WIFEXITED\(s\) && WEXITSTATUS\(s\) == 0\}\], 0x0, NULL\) = \d+$",
                     err, re.M)
    rc, _, err = trace(["-f", "-e", "trace=socket,wait4", "--", PY, "-c", code], env_with_project)
    assert rc == 0
    child = re.search(r"^\[pid (\d+)\] socket\(AF_INET, SOCK_STREAM\|SOCK_CLOEXEC, IPPROTO_IP\) = 3$",
                      err, re.M)
    assert child
    assert f"[pid {child.group(1)}] +++ exited with 0 +++" in err


def test_vdso_option(toys, env_with_project):
    _, _, err = trace(["-e", "trace=%time", "--", str(toys / "time_probe"), "0"], env_with_project)
    assert len(re.findall(r"^gettimeofday\(\{tv_sec=\d+, tv_usec=\d+\}, NULL\) = 0$", err, re.M)) == 2
    assert len(re.findall(r"^time\(NULL\) = \d+$", err, re.M)) == 2
    _, _, err = trace(["--vdso", "keep", "-e", "trace=%time", "--", str(toys / "time_probe"), "0"],
                      env_with_project)
    assert "gettimeofday(" not in err and "time(NULL)" not in err


def test_process_class_and_exec_failure(env_with_project):
    rc, _, err = trace(["-e", "trace=%process", "--", "/bin/sh", "-c", "/nonexistent/x; exit 3"],
                       env_with_project)
    assert rc == 3
    assert re.search(r'^execve\("/bin/sh", \["/bin/sh", "-c", "/nonexistent/x; exit 3"\], 0x[0-9a-f]+ '
                     r"/\* \d+ vars \*/\) = 0$", err, re.M)
    assert re.search(r"^exit_group\(3\) = \?$", err, re.M)
    rc, _, err = trace(["--", "/nonexistent/prog"], env_with_project)
    assert rc == 127 and "/nonexistent/prog: No such file or directory" in err


def test_bad_arguments(env_with_project):
    assert trace(["-e", "trace=nosuchcall", "--", "/bin/true"], env_with_project)[0] == 2
    assert trace(["-e", "trace=%nosuchclass", "--", "/bin/true"], env_with_project)[0] == 2
    assert trace([], env_with_project)[0] == 2


# -- the formatter on its own ----------------------------------------------------------------------
def test_parse_set():
    assert strace.parse_set("trace=connect,%time") >= {names.number("connect"), names.number("nanosleep")}
    assert names.number("connect") not in strace.parse_set("!connect")
    assert strace.parse_set("all") == set(names.NAMES)
    with pytest.raises(ValueError):
        strace.parse_set("%bogus")


def test_quote():
    assert strace.quote(b'a"b\\c\n\t\x00\x01' + b"9") == '"a\\"b\\\\c\\n\\t\\0\\0019"'
    assert strace.quote(b"x" * 40) == '"' + "x" * 32 + '"...'
    assert strace.quote(b"ab", truncated=True) == '"ab"...'


def test_format_sockaddr_families():
    v6 = struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", 80, 0) + socket.inet_pton(
        socket.AF_INET6, "2001:db8::1") + struct.pack("<I", 3)
    assert strace.format_sockaddr(v6) == ('{sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), '
                                          'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=3}')
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/x.sock\0"
    assert strace.format_sockaddr(unix) == '{sa_family=AF_UNIX, sun_path="/run/x.sock"}'
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0name"
    assert strace.format_sockaddr(abstract) == '{sa_family=AF_UNIX, sun_path=@"name"}'
    assert strace.format_sockaddr(struct.pack("<H", socket.AF_UNIX)) == "{sa_family=AF_UNIX}"
    nl = struct.pack("<HHII", socket.AF_NETLINK, 0, 0, 1)
    assert strace.format_sockaddr(nl) == "{sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000001}"


def test_result_formatting():
    f = strace.Formatter()
    assert f.result("connect", -111) == "-1 ECONNREFUSED (Connection refused)"
    assert f.result("recvfrom", -512) == "? ERESTARTSYS (To be restarted if SA_RESTART is set)"
    assert f.result("mmap", 0x7F0000001000) == "0x7f0000001000"
    assert f.result("exit_group", None) == "?"
    assert strace.describe_exit(0x8B) == "+++ killed by SIGSEGV (core dumped) +++"
    assert strace.describe_exit(3 << 8) == "+++ exited with 3 +++"
