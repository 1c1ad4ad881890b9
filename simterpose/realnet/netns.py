"""Build the real network (iproute2), run the scenario's processes in it, tear everything down.

Layout for a run with prefix ``stp<pid>``::

    host ns stp<pid>-<i>            router ns stp<pid>-r
      lo, eth0 = host IP/32  <-veth->  p<i>   (ip_forward on; policy routing)
      routes: other hosts' IPs dev eth0 dl    (TUN owned by the delay line process)

A packet from host i to host j: eth0(i) egress [tbf: i's private rate] -> p<i> -> routed into dl
[tbf on dl: the core rate, one queue for every pair and direction] -> delay line holds it for the
route latency i->j -> written back into dl -> routed to p<j> [tbf: j's private rate] -> eth0(j).
MACs are fixed and neighbours static (no ARP exchange). Host names resolve through
``/etc/netns/<ns>/hosts`` (``ip netns exec`` bind-mounts it on /etc/hosts); each process runs in its
own UTS namespace whose hostname is the simulated host's name.

Everything lives inside the namespaces: deleting them (after killing what runs in them) removes every
veth, TUN and qdisc; :meth:`RealNetwork.cleanup` also removes the ``/etc/netns`` directories.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..scenario import host_aliases, hosts_file_lines
from .topology import Topology

NETNS_ETC = Path("/etc/netns")
PREFIX_RE = re.compile(r"^stp(\d+)-")
MTU = 1500


class RealNetError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RealNetError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p


def _tc(ns: str, *args: str) -> None:
    p = subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RealNetError(f"tc -n {ns} {' '.join(args)}: {p.stderr.strip()}")


def _sysctl(ns: str, key: str, value: str) -> None:
    # /proc/sys/net belongs to the reader's network namespace: write it from inside.
    _ip("netns", "exec", ns, "sh", "-c", f"echo {value} > /proc/sys/{key.replace('.', '/')}")


def list_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces (and /etc/netns dirs) left by compare runs whose process is gone (SIGKILL)."""
    removed = []
    names = set(list_namespaces())
    if NETNS_ETC.is_dir():
        names |= {p.name for p in NETNS_ETC.iterdir()}
    for name in sorted(names):
        m = PREFIX_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _ip("netns", "pids", name, check=False)
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
            removed.append(name)
    return removed


def _tbf(ns: str, dev: str, rate: float) -> None:
    """Shape ``dev``'s egress to ``rate`` bytes/s: token bucket of 2 ms of traffic (at least 2 MTUs),
    queue of 50 ms of traffic (at least 20 MTUs)."""
    burst = max(2 * (MTU + 14), int(rate * 0.002))
    limit = max(20 * (MTU + 14), int(rate * 0.05))
    _tc(ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{int(rate * 8)}bit",
        "burst", str(burst), "limit", str(limit))


@dataclass
class RealProcess:
    index: int
    host: str
    argv: list[str]
    start: float | None = None
    end: float | None = None
    exit_status: int | None = None
    error: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    killed: bool = False


@dataclass
class RealNetwork:
    topology: Topology
    hostnames: dict[str, str]  # every platform host name -> its IP (for the hosts files)
    prefix: str = field(default_factory=lambda: f"stp{os.getpid()}")
    namespaces: list[str] = field(default_factory=list)
    etc_dirs: list[Path] = field(default_factory=list)
    delayline: subprocess.Popen | None = None
    children: list[subprocess.Popen] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{self.topology.hosts.index(host)}"

    @property
    def router(self) -> str:
        return f"{self.prefix}-r"

    # -- setup --------------------------------------------------------------------------------------

    def _add_ns(self, name: str) -> None:
        self.namespaces.append(name)  # recorded first: a half-made namespace is still cleaned up
        _ip("netns", "add", name)
        _ip("-n", name, "link", "set", "lo", "up")
        _sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")

    def setup(self) -> None:
        topo = self.topology
        r = self.router
        self._add_ns(r)
        _sysctl(r, "net.ipv4.ip_forward", "1")
        for key in ("all", "default"):
            _sysctl(r, f"net.ipv4.conf.{key}.rp_filter", "0")
            _sysctl(r, f"net.ipv4.conf.{key}.send_redirects", "0")
        lines = hosts_file_lines(list(self.hostnames.items()))  # with aliases, as in the emulated run
        hosts_text = "127.0.0.1\tlocalhost\n" + "".join(f"{line}\n" for line in lines)
        for i, h in enumerate(topo.hosts):
            ns = self.ns(h)
            self._add_ns(ns)
            etc = NETNS_ETC / ns
            self.etc_dirs.append(etc)
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_text)
            port = f"p{i}"
            host_mac, port_mac = f"02:53:00:00:{i >> 8 & 255:02x}:{i & 255:02x}", \
                f"02:54:00:00:{i >> 8 & 255:02x}:{i & 255:02x}"
            _ip("-n", r, "link", "add", port, "address", port_mac, "type", "veth",
                "peer", "name", "eth0", "address", host_mac, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{topo.ips[h]}/32", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            for other in topo.hosts:
                if other != h:
                    # only the platform's hosts are routed: anything else is ENETUNREACH at once, as
                    # in the emulation (a default route would make DNS lookups time out instead)
                    _ip("-n", ns, "route", "add", f"{topo.ips[other]}/32", "dev", "eth0")
                    _ip("-n", ns, "neigh", "replace", topo.ips[other], "lladdr", port_mac, "dev", "eth0",
                        "nud", "permanent")
            _ip("-n", r, "link", "set", port, "up")
            _sysctl(r, f"net.ipv4.conf.{port}.rp_filter", "0")
            _ip("-n", r, "route", "add", f"{topo.ips[h]}/32", "dev", port)
            _ip("-n", r, "neigh", "replace", topo.ips[h], "lladdr", host_mac, "dev", port, "nud", "permanent")
            _ip("-n", r, "rule", "add", "iif", port, "lookup", "100", "priority", "100")
            if topo.private_bw[h] is not None:
                _tbf(ns, "eth0", topo.private_bw[h])    # uplink
                _tbf(r, port, topo.private_bw[h])       # downlink
        # the delay line: a TUN device in the router namespace, owned by a child process
        table = {f"{topo.ips[a]} {topo.ips[b]}": lat for (a, b), lat in topo.latency.items()}
        self.delayline = subprocess.Popen(
            ["ip", "netns", "exec", r, sys.executable, "-m", "simterpose.realnet.delayline", "dl",
             json.dumps(table)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_env_with_project(), start_new_session=True)
        ready, _, _ = select.select([self.delayline.stdout], [], [], 10)
        line = self.delayline.stdout.readline().decode() if ready else ""
        if not line.startswith("ready"):
            err = self.delayline.stderr.read().decode() if self.delayline.poll() is not None else "(timeout)"
            raise RealNetError(f"the delay line did not start: {line.strip()} {err.strip()}")
        _ip("-n", r, "link", "set", "dl", "txqueuelen", "10000", "up")
        _sysctl(r, "net.ipv4.conf.dl.rp_filter", "0")
        _ip("-n", r, "route", "add", "default", "dev", "dl", "table", "100")
        if topo.core_bw is not None:
            _tbf(r, "dl", topo.core_bw)

    # -- processes ----------------------------------------------------------------------------------

    def run(self, specs, timeout: float, log_dir: Path | None = None) -> list[RealProcess]:
        """Start each spec (scenario.ProcessSpec) at its start_time in its host's namespace, kill it
        at its kill_time, wait for all (at most ``timeout`` seconds). Dates relative to the run start."""
        procs = [RealProcess(i, s.host, list(s.argv)) for i, s in enumerate(specs)]
        order = sorted(range(len(specs)), key=lambda i: specs[i].start_time)
        running: dict[int, tuple[subprocess.Popen, int]] = {}  # index -> (popen, pidfd)
        outs: dict[int, tuple] = {}
        t0 = time.monotonic()
        nxt = 0
        try:
            while nxt < len(order) or running:
                now = time.monotonic() - t0
                while nxt < len(order) and specs[order[nxt]].start_time <= now:
                    i = order[nxt]
                    nxt += 1
                    running[i] = self._launch(specs[i], procs[i], outs, i, log_dir)
                    procs[i].start = time.monotonic() - t0
                now = time.monotonic() - t0
                for i, (p, _fd) in list(running.items()):
                    kt = specs[i].kill_time
                    if kt is not None and now >= kt and not procs[i].killed:
                        procs[i].killed = True
                        _killpg(p.pid)
                    if now >= timeout and not procs[i].killed:
                        procs[i].killed = True
                        procs[i].error = f"real run timeout ({timeout:g} s): killed"
                        _killpg(p.pid)
                deadlines = [timeout]
                if nxt < len(order):
                    deadlines.append(specs[order[nxt]].start_time)
                deadlines += [specs[i].kill_time for i in running if specs[i].kill_time is not None
                              and not procs[i].killed]
                wait = max(0.0, min(deadlines) - (time.monotonic() - t0))
                fds = {fd: i for i, (_p, fd) in running.items()}
                ready, _, _ = select.select(list(fds), [], [], wait if fds else min(wait, 0.05))
                for fd in ready:
                    i = fds[fd]
                    p, _ = running.pop(i)
                    rc = p.wait()
                    procs[i].end = time.monotonic() - t0
                    procs[i].exit_status = rc if rc >= 0 else 128 - rc
                    os.close(fd)
        finally:
            for p, fd in running.values():
                _killpg(p.pid)
                p.wait()
                os.close(fd)
            for i, (out, err) in outs.items():
                out.seek(0)
                err.seek(0)
                procs[i].stdout, procs[i].stderr = out.read(), err.read()
                out.close()
                err.close()
        return procs

    def _launch(self, spec, proc: RealProcess, outs: dict, i: int, log_dir: Path | None):
        import tempfile

        if log_dir is not None:
            stem = f"{i}-{spec.host}-{Path(spec.argv[0]).name}"
            out = open(log_dir / f"{stem}.stdout", "w+b")
            err = open(log_dir / f"{stem}.stderr", "w+b")
        else:
            out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        outs[i] = (out, err)
        env = dict(os.environ)
        env.update(spec.env)
        # ip netns exec (network ns + /etc/netns hosts file) -> unshare (own UTS ns) -> bash sets the
        # hostname, then execs the unmodified program with its own argv[0].
        script = 'hostname -- "$1" || exit 127; a0=$2; shift 2; exec -a "$a0" -- "$@"'
        cmd = ["ip", "netns", "exec", self.ns(spec.host), "unshare", "--uts", "bash", "-c", script,
               "simterpose-launch", host_aliases(list(self.hostnames)).get(spec.host, spec.host), spec.argv[0],
               spec.binary, *spec.argv[1:]]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                             cwd=spec.cwd, start_new_session=True)
        self.children.append(p)
        return p, os.pidfd_open(p.pid)

    # -- teardown -----------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill what runs in the namespaces, delete them and the /etc/netns dirs. Idempotent."""
        for p in self.children:
            if p.poll() is None:
                _killpg(p.pid)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.children.clear()
        if self.delayline is not None:
            if self.delayline.poll() is None:
                _killpg(self.delayline.pid)
            try:
                self.delayline.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (self.delayline.stdin, self.delayline.stdout, self.delayline.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            self.delayline = None
        for name in reversed(self.namespaces):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name, check=False)
        self.namespaces.clear()
        for etc in self.etc_dirs:
            shutil.rmtree(etc, ignore_errors=True)
        self.etc_dirs.clear()


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _env_with_project() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
