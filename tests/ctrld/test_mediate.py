"""`ctrld --mediate`: commands run inside one live emulation (real daemon, real processes, real
SimGrid).  The reference for simulated dates and outputs is `simterpose run` of the same scenario."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ctrld.client import Client, CtrlError
from simterpose.sim.predict import predict_sequence
from tests.ctrld.conftest import ROOT, arun, pid_alive, wait_until

PLATFORM = ROOT / "examples" / "platforms" / "two_hosts.xml"
MODES = ["address-translation", "full-mediation"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def mediating(start_daemon, mode="address-translation", *extra):
    return start_daemon("--mediate", mode, "--platform", str(PLATFORM), "--network-model", "CM02",
                        "--cpu-model", "none", *extra)


def simterpose_run(tmp_path, mode, processes) -> tuple[dict, dict]:
    """Run a scenario with `simterpose run`; returns (--json report, {index: stdout bytes})."""
    lines = [f"platform: {PLATFORM}", "network_model: CM02", "processes:"]
    for host, argv in processes:
        lines += [f"  - host: {host}", f"    path: {argv[0]}", f"    args: {json.dumps(argv[1:])}", "    start_time: 0"]
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("\n".join(lines) + "\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-c", "import sys; from simterpose.cli import main; sys.exit(main())", "run",
         str(scenario), "--mediate", mode, "--cpu-model", "none", "--json", str(report), "--log-dir", str(logs)],
        check=True, capture_output=True, timeout=60, cwd=ROOT,
    )
    outputs = {}
    for i, (host, argv) in enumerate(processes):
        outputs[i] = (logs / f"{i}-{host}-{os.path.basename(argv[0])}.stdout").read_bytes()
    return json.loads(report.read_text()), outputs


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


async def first(handle, kind: str):
    async for ev in handle.events():
        if ev.kind == kind:
            return ev
    raise AssertionError(f"no {kind} event")


async def collect(handle, already=()):
    """The rest of a run (after events already consumed by `first`), as {kind: [bodies]}, stdout."""
    kinds: dict[str, list] = {}
    out = b""
    for ev in list(already):
        kinds.setdefault(ev.kind, []).append(ev.body)
    async for ev in handle.events():
        kinds.setdefault(ev.kind, []).append(ev.body)
        if ev.kind == "OutputChunk":
            out += ev.body.data
    return kinds, out


# --------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("mode", MODES)
def test_server_and_client_from_two_requests_match_simterpose_run(start_daemon, toys, tmp_path, mode):
    server = [str(toys / "pingpong_server"), "5000", "10", "1000"]
    client = [str(toys / "pingpong_client"), "h1", "5000", "10", "1000"]
    d = mediating(start_daemon, mode)

    async def go():
        c1 = await Client.connect(d.tcp)
        c2 = await Client.connect(d.unix)  # the client comes from another connection
        try:
            hs = await c1.start(server, host="h1")
            launched_s = await first(hs, "ProcessLaunched")
            await asyncio.sleep(0.5)  # real time passes; the server waits for a client
            between = await c2.status()
            hc = await c2.start(client, host="h2")
            (kc, out_c), (ks, out_s) = await asyncio.gather(collect(hc), collect(hs, [launched_s]))
            return between, kc, out_c, ks, out_s
        finally:
            await c1.close()
            await c2.close()

    between, kc, out_c, ks, out_s = arun(go(), 60)
    report, outputs = simterpose_run(tmp_path, mode, [("h1", server), ("h2", client)])
    ref_s, ref_c = report["processes"]
    assert ref_s["exit_status"] == ref_c["exit_status"] == 0
    # While only the server waited, the simulated clock stayed at 0: the client starts at 0 too,
    # which is exactly the scenario where both have start_time 0.
    assert between.simTimeNs == 0
    assert out_c == outputs[1] == b"client: 10 messages of 1000 bytes ok\n"
    assert out_s == outputs[0]
    for kinds, ref, host in ((kc, ref_c, "h2"), (ks, ref_s, "h1")):
        (launched,) = kinds["ProcessLaunched"]
        (term,) = kinds["ProcessTerminated"]
        assert launched.host == host
        assert launched.simTimeNs == ns(ref["start"]) == 0
        assert term.simStartNs == ns(ref["start"])
        assert term.simTimeNs == ns(ref["end"]), (term.simTimeNs, ref["end"])
        assert term.exitCode == 0 and term.signal == 0
        assert launched.timeNs > 0 and term.timeNs > launched.timeNs  # wall (monotonic) stamps too
    assert kc["ProcessTerminated"][0].simTimeNs == ns(0.2221)  # CM02, 10 ms link: the known date


# --------------------------------------------------------------------------------- plain processes
def test_unmediated_process_on_a_mediating_daemon(start_daemon):
    d = mediating(start_daemon)
    probe = ["sh", "-c", "grep TracerPid /proc/self/status; uname -n"]

    async def go():
        async with await Client.connect(d.tcp) as c:
            plain = await c.run(probe, unmediated=True)
            emulated = await c.run(probe, host="h2")
            with pytest.raises(CtrlError, match="plain process"):
                await c.run(["true"], host="h2", unmediated=True)
            return plain, emulated

    plain, emulated = arun(go())
    assert plain.exit_code == 0 and emulated.exit_code == 0
    tracer_plain, name_plain = plain.stdout.decode().splitlines()
    tracer_emu, name_emu = emulated.stdout.decode().splitlines()
    assert tracer_plain.split() == ["TracerPid:", "0"]  # nobody traces it
    assert tracer_emu.split()[1] != "0"  # the emulation's tracer
    assert name_emu == "h2" and name_plain == os.uname().nodename
    assert plain.host == "" and plain.sim_end is None and plain.user_cpu_s + plain.sys_cpu_s >= 0
    assert plain.events[-1].body.simStartNs == -1
    assert emulated.host == "h2" and emulated.sim_end is not None


def test_default_host_and_launch_errors(start_daemon):
    d = mediating(start_daemon, "full-mediation", "--default-host", "h2")

    async def go():
        async with await Client.connect(d.tcp) as c:
            return (await c.run(["uname", "-n"]), await c.run(["true"], host="nowhere"),
                    await c.run(["/no/such/program"]), await c.run(["/etc/passwd"]))

    default, bad_host, missing, not_exec = arun(go())
    assert default.stdout == b"h2\n" and default.host == "h2"
    assert bad_host.exec_failed and bad_host.status == 127 and "nowhere" in bad_host.message
    assert missing.exec_failed and missing.exec_errno == 2
    assert not_exec.exec_failed and not_exec.exec_errno == 13


def test_host_refused_by_a_plain_daemon(daemon):
    async def go():
        async with await Client.connect(daemon.tcp) as c:
            with pytest.raises(CtrlError, match="does not mediate"):
                await c.run(["true"], host="h1")
            r = await c.run(["true"], unmediated=True)  # harmless without --mediate
            return r

    r = arun(go())
    assert r.exit_code == 0 and r.events[0].body.simTimeNs == -1


# --------------------------------------------------------------------------------- kill and timeout
def test_kill_emulated_sleep(start_daemon):
    d = mediating(start_daemon)

    async def go():
        async with await Client.connect(d.tcp) as c:
            # sleep 1e6 simulated seconds: the clock runs (nothing else is waiting), far from the end
            h = await c.start(["sleep", "1000000"], host="h2")
            launched = await first(h, "ProcessLaunched")
            await asyncio.sleep(0.2)
            alive = pid_alive(launched.body.pid)
            await h.kill(signal.SIGTERM)
            r = await h.wait()
            return launched.body, alive, r

    launched, alive, r = arun(go())
    assert alive
    assert r.signal == signal.SIGTERM and r.exit_code == -1 and r.status == 128 + signal.SIGTERM
    assert 0 <= r.sim_start < r.sim_end < r.sim_start + 1_000_000
    assert not pid_alive(launched.pid)


def test_kill_waiting_server_by_pid_and_timeout(start_daemon, toys):
    d = mediating(start_daemon)

    async def go():
        async with await Client.connect(d.tcp) as c:
            w = await c.watch_port(5001, host="h1", timeout=10)
            h = await c.start([str(toys / "pingpong_server"), "5001", "1", "10"], host="h1")
            pid = (await first(h, "ProcessLaunched")).body.pid
            assert [ev.body.state async for ev in w.events() if ev.kind == "SocketWatchTerminated"] == [2]
            await asyncio.sleep(0.1)  # now blocked in accept, inside the simulation
            # SIGKILL ends a ptrace-stopped tracee at once: the emulation must still notice and report it
            await c.kill(pid, sig=signal.SIGKILL)
            killed = await h.wait()
            # a wall-clock timeout on an emulated process: SIGTERM, like a plain one
            t = await c.run([str(toys / "pingpong_server"), "5002", "1", "10"], timeout=0.3)
            return pid, killed, t

    pid, killed, t = arun(go())
    assert killed.signal == signal.SIGKILL and not pid_alive(pid)
    assert killed.sim_end == killed.sim_start == 0  # the clock stays frozen while it waits for a client
    assert t.timed_out and t.signal == signal.SIGTERM and 0.29 <= t.wall_s < 3


# --------------------------------------------------------------------------------- port watches
def test_port_watch_fires_when_the_emulated_server_listens(start_daemon, toys):
    d = mediating(start_daemon)

    async def go():
        async with await Client.connect(d.tcp) as c:
            w_h1 = await c.watch_port(6000, host="h1", timeout=10)
            w_any = await c.watch_port(6000, timeout=10)
            w_h2 = await c.watch_port(6000, host="h2", timeout=0.5)  # nobody listens on h2
            h = await c.start([str(toys / "pingpong_server"), "6000", "1", "10"], host="h1")
            got = {}
            for name, w in (("h1", w_h1), ("any", w_any), ("h2", w_h2)):
                got[name] = [ev async for ev in w.events()]
            late = await c.watch_port(6000, timeout=5)  # registered after the listen
            got["late"] = [ev async for ev in late.events()]
            st = await c.status()
            await h.kill()
            return got, st

    got, st = arun(go())
    for name in ("h1", "any", "late"):
        term, ended = got[name]
        assert term.kind == "SocketWatchTerminated" and term.body.state == 2  # listeing
        assert term.body.host == "h1" and term.body.simTimeNs == 0
        assert ended.kind == "WatchEnded" and ended.body.reason == 0  # triggered
    term, ended = got["h2"]
    assert term.body.state == 0 and ended.body.reason == 1  # unknown, timeout
    assert not st.watches


# --------------------------------------------------------------------------------- status and CLI
def ctrl(*args, timeout=30):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ctrld.ctrl_cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_ctrl_status_and_run_host(start_daemon, toys):
    d = mediating(start_daemon)
    server = [str(toys / "pingpong_server"), "5000", "3", "100"]

    async def start_server():
        c = await Client.connect(d.tcp)
        h = await c.start(server, host="h1", kill_on_disconnect=False)
        return (await first(h, "ProcessLaunched")).body.pid, c

    pid, c = arun(start_server())  # the connection is gone with its loop; the server stays
    st = ctrl("-c", d.tcp, "status")
    assert st.returncode == 0, st.stderr
    assert "mediating (address-translation)  simulated clock=0.000000000 s  default host=h1" in st.stdout
    assert "host h1 (10.0.0.1): 1 process(es)" in st.stdout and "host h2 (10.0.0.2): 0 process(es)" in st.stdout
    assert f"pid={pid} " in st.stdout and " ".join(server) in st.stdout
    ps = ctrl("-c", d.tcp, "ps")
    assert f"[h1] {' '.join(server)}" in ps.stdout

    run = ctrl("-c", d.tcp, "run", "--host", "h2", "--", str(toys / "pingpong_client"), "h1", "5000", "3", "100")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "client: 3 messages of 100 bytes ok\n"
    assert wait_until(lambda: not pid_alive(pid))  # the server ended with its client
    after = ctrl("-c", d.tcp, "status").stdout
    clock = float(after.split("simulated clock=")[1].split()[0])
    assert clock > 0.02  # 2 handshake transfers + 6 messages over a 10 ms link
    assert "host h1 (10.0.0.1): 0 process(es)" in after
    plain = ctrl("-c", d.tcp, "run", "--unmediated", "--", "sh", "-c", "grep TracerPid /proc/self/status")
    assert plain.stdout.split() == ["TracerPid:", "0"]


# --------------------------------------------------------------------------------- idle CPU
def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, every thread


def test_idle_daemon_with_waiting_server_burns_no_cpu(start_daemon, toys):
    d = mediating(start_daemon)

    async def go():
        c = await Client.connect(d.tcp)
        h = await c.start([str(toys / "pingpong_server"), "5000", "1", "10"], host="h1", kill_on_disconnect=False)
        return (await first(h, "ProcessLaunched")).body.pid

    server_pid = arun(go())
    time.sleep(0.3)  # let start-up work settle
    before = _cpu_s(d.pid), _cpu_s(server_pid)
    time.sleep(1.0)
    after = _cpu_s(d.pid), _cpu_s(server_pid)
    daemon_cpu, server_cpu = after[0] - before[0], after[1] - before[1]
    print(f"idle: daemon {daemon_cpu:.3f} s, server {server_cpu:.3f} s of CPU over 1 s")
    assert daemon_cpu < 0.05, f"daemon used {daemon_cpu:.3f} s of CPU in 1 s while idle"
    assert server_cpu < 0.05
    assert pid_alive(server_pid)  # still waiting: the test measured a live, blocked emulation


# --------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("args, message", [
    (["--mediate", "full-mediation"], "--mediate needs --platform"),
    (["--platform", str(PLATFORM)], "--platform only makes sense with --mediate"),
    (["--mediate", "full-mediation", "--platform", "/no/such.xml"], "/no/such.xml"),
    (["--mediate", "full-mediation", "--platform", str(PLATFORM), "--network-model", "Bogus"], "Bogus"),
    (["--mediate", "full-mediation", "--platform", str(PLATFORM), "--default-host", "h7"], "h7"),
    (["--tcp-slow-start", "off"], "--tcp-slow-start only makes sense with --mediate"),
    (["--mediate", "full-mediation", "--platform", str(PLATFORM), "--network-model", "ns-3",
      "--tcp-slow-start", "on"], "ns-3 simulates TCP (and its slow start) itself"),
])
def test_refused_configurations(args, message):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "ctrld.daemon_cli", "--tcp", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 2
    assert p.stderr.startswith("ctrld: ") and message in p.stderr and "Traceback" not in p.stderr


# --------------------------------------------------------------------------------- ns-3
def test_ctrld_mediates_under_ns3_and_exits_cleanly(start_daemon, toys):
    d = start_daemon("--mediate", "address-translation", "--platform", str(PLATFORM), "--network-model", "ns-3",
                     "--cpu-model", "none")

    async def go():
        c = await Client.connect(d.unix)
        try:
            hs = await c.start([str(toys / "pingpong_server"), "5000", "3", "1000"], host="h1")
            hc = await c.start([str(toys / "pingpong_client"), "h1", "5000", "3", "1000"], host="h2")
            ends = {}
            for name, h in (("server", hs), ("client", hc)):
                async for ev in h.events():
                    if ev.kind == "ProcessTerminated":
                        ends[name] = ev.body
            return ends
        finally:
            await c.close()

    ends = arun(go(), 60)
    assert ends["client"].exitCode == 0 and ends["server"].exitCode == 0
    dates = predict_sequence(PLATFORM, "ns-3", [("h2", "h1", 1000), ("h1", "h2", 1000)] * 3,
                             start_time=2 * 0.010)  # handshake: two 10 ms latencies
    assert ends["client"].simTimeNs == round(dates[-1] * 1e9)
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(10) == 0  # a clean exit: no crash in SimGrid's ns-3 teardown (SIGSEGV otherwise)
    assert "Segmentation" not in d.proc.stderr.read()
