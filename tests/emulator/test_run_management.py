"""Runs managed as Shadow users expect (issue 14): seeded randomness (`--seed`, `seed:`), progress
(`--heartbeat`, a live line on a terminal) and Ctrl-C / SIGTERM, each on real processes and real
SimGrid runs."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest
from simrun_helpers import ROOT, SIMTERPOSE, runner, simterpose_run, write_scenario

MODES = ["address-translation", "full-mediation"]
PROBE_KEYS = ["at_random", "getrandom", "syscall", "urandom_read", "urandom_readv", "urandom_pread",
              "random_read", "child_getrandom"]
# Python's `random` is seeded from getrandom (os.urandom), its hash secret too; os.urandom and a raw
# read of /dev/urandom through Python's own file objects as well.
PY_RANDOM = ("import os, random; print(random.random(), random.getrandbits(64), os.urandom(8).hex(), "
             "os.getrandom(8).hex(), open('/dev/urandom', 'rb').read(8).hex(), hash('salt'))")


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


def _random_processes(python: str) -> list:
    return [{"host": "h1", "args": ["sh", "-c", "head -c 32 /dev/urandom | od -x"]},
            {"host": "h2", "path": python, "args": ["-c", PY_RANDOM]},
            {"host": "h1", "path": "{toys}/random_probe"}]


def _outputs(r) -> list[str]:
    assert r.rc == 0, r.stdout + r.stderr
    return [r.out(i) for i in range(len(r.procs))]


def _probe(text: str) -> dict:
    """random_probe's output as {name: hex}."""
    return dict(re.findall(r"(\w+)=([0-9a-f]{32})", text))


@pytest.mark.parametrize("mode", MODES)
def test_one_seed_gives_the_same_random_bytes_another_seed_others(run, python, mode):
    procs = _random_processes(python)
    seven = _outputs(run(procs, "--seed", "7", "--cpu-model", "none", "--mediate", mode))
    again = _outputs(run(procs, "--seed", "7", "--cpu-model", "none", "--mediate", mode))
    eight = _outputs(run(procs, "--seed", "8", "--cpu-model", "none", "--mediate", mode))
    assert seven == again
    od, py, probe = seven
    assert re.fullmatch(r"0000000( [0-9a-f]{4}){8}\n0000020( [0-9a-f]{4}){8}\n0000040\n", od), od
    assert len(py.split()) == 6
    assert sorted(_probe(probe)) == sorted(PROBE_KEYS) and "poll=POLLIN" in probe
    # --seed 8: every value differs, line by line and field by field.
    for a, b in zip(seven[:2], eight[:2], strict=True):
        assert all(x != y for x, y in zip(a.split("\n")[:2] if a.startswith("0000000") else a.split(),
                                          b.split("\n")[:2] if b.startswith("0000000") else b.split(), strict=True))
    p7, p8 = _probe(seven[2]), _probe(eight[2])
    assert all(p7[k] != p8[k] for k in PROBE_KEYS)
    # Every draw is new: no two sources (nor parent and child after a fork) share bytes.
    assert len(set(p7.values())) == len(PROBE_KEYS)


def test_default_seed_scenario_seed_and_flag(tmp_path, toys, python):
    procs = [{"host": "h1", "path": str(toys / "random_probe")}, {"host": "h2", "path": python, "args": ["-c", PY_RANDOM]}]
    scen = write_scenario(tmp_path, procs)
    doc = {"platform": str(ROOT / "examples/platforms/two_hosts.xml"), "seed": 7, "processes": procs}
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text(json.dumps(doc))  # JSON is YAML

    def outs(*args):
        return _outputs(simterpose_run([*args, "--cpu-model", "none"], tmp_path))

    default, one = outs(scen), outs(scen, "--seed", "1")
    assert default == one  # without a seed anywhere, the seed is 1: runs are reproducible anyway
    assert outs(seeded) == outs(scen, "--seed", "7") != default
    assert outs(seeded, "--seed", "8") == outs(scen, "--seed", "8")  # the flag wins over seed:


def test_at_random_is_seeded_with_the_vdso_kept_and_in_static_binaries(run):
    # AT_RANDOM is written by the same walk of the new stack that hides the vDSO: it must not
    # depend on that walk being asked for. A static binary gets the same bytes: same process key,
    # same draws (its libc reads AT_RANDOM without a dynamic loader).
    probe = [{"host": "h1", "path": "{toys}/random_probe"}]
    static = [{"host": "h1", "path": "{toys}/random_probe_static"}]
    hidden = _probe(_outputs(run(probe, "--seed", "7", "--cpu-model", "none"))[0])
    kept = _probe(_outputs(run(probe, "--seed", "7", "--cpu-model", "none", "--vdso", "keep"))[0])
    assert hidden == kept
    assert _probe(_outputs(run(static, "--seed", "7", "--cpu-model", "none"))[0]) == hidden
    assert _probe(_outputs(run(static, "--seed", "8", "--cpu-model", "none"))[0])["at_random"] != hidden["at_random"]


def test_getrandom_answers_as_the_kernel_does(run, python):
    script = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def raw(buf, n, flags):
    r = libc.syscall(318, buf, ctypes.c_size_t(n), ctypes.c_uint(flags))
    return r if r >= 0 else -ctypes.get_errno()
buf = ctypes.create_string_buffer(64)
print("unknown flag", raw(buf, 8, 0x80) == -errno.EINVAL)
print("random+insecure", raw(buf, 8, 0x2 | 0x4) == -errno.EINVAL)
print("nonblock", raw(buf, 8, 0x1), "random", raw(buf, 8, 0x2), "insecure", raw(buf, 8, 0x4))
print("zero", raw(buf, 0, 0))
print("bad buffer", raw(ctypes.c_void_p(8), 8, 0) == -errno.EFAULT)
big = ctypes.create_string_buffer(1 << 20)
print("1 MiB", raw(big, 1 << 20, 0), len(set(big.raw)) == 256)
"""
    (out,) = _outputs(run([{"host": "h1", "path": python, "args": ["-c", script]}], "--cpu-model", "none"))
    assert out.splitlines() == ["unknown flag True", "random+insecure True", "nonblock 8 random 8 insecure 8",
                                "zero 0", "bad buffer True", "1 MiB 1048576 True"]


def test_random_device_descriptors_follow_dup_fork_and_exec(run, python):
    # A descriptor on /dev/urandom inherited by an exec'd program (the shell's `<` redirection),
    # dup'ed, or opened write-only (read fails: EBADF, as the kernel says).
    shell = "od -An -N8 -tx1 < /dev/urandom; exec 3</dev/urandom 4>&3; od -An -N8 -tx1 <&4"
    script = ("import os\nfd = os.open('/dev/urandom', os.O_WRONLY)\n"
              "try:\n    os.read(fd, 4)\nexcept OSError as e:\n    print(e.errno == 9)\n")
    procs = [{"host": "h1", "args": ["sh", "-c", shell]}, {"host": "h1", "path": python, "args": ["-c", script]}]
    a = _outputs(run(procs, "--seed", "7", "--cpu-model", "none"))
    b = _outputs(run(procs, "--seed", "7", "--cpu-model", "none"))
    assert a == b and a[1] == "True\n"
    first, second = a[0].split("\n")[:2]
    assert len(first.split()) == len(second.split()) == 8 and first != second


# -- progress -----------------------------------------------------------------------------------

def _sleeper(python: str, seconds: str = "0.01", count: int = 1_000_000) -> dict:
    """A process that wakes every `seconds` (simulated) `count` times: a long run in wall time."""
    return {"host": "h1", "path": python,
            "args": ["-c", f"import time\nfor _ in range({count}): time.sleep({seconds})"]}


HEARTBEAT = re.compile(r"simterpose: heartbeat simulated=(\d+\.\d{6})s wall=\d+\.\ds processes=(\d+) "
                       r"syscalls=(\d+) syscalls/s=\d+")


def test_heartbeat_lines_for_logs(run, python):
    r = run([_sleeper(python, count=20000)], "--cpu-model", "none", "--heartbeat", "0.05", timeout=120)
    assert r.rc == 0, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(HEARTBEAT.fullmatch(line) for line in lines), r.stderr
    beats = [HEARTBEAT.fullmatch(line).groups() for line in lines]
    dates = [float(d) for d, _, _ in beats]
    assert dates == sorted(dates) and dates[-1] <= 200.0
    assert all(int(n) == 1 for _, n, _ in beats)
    assert [int(s) for _, _, s in beats] == sorted(int(s) for _, _, s in beats)
    # no terminal, no heartbeat asked: stderr stays empty (no progress line in logs)
    quiet = run([_sleeper(python, count=2000)], "--cpu-model", "none")
    assert quiet.rc == 0 and quiet.stderr == ""


def test_a_live_line_on_a_terminal(tmp_path, python):
    scen = write_scenario(tmp_path, [_sleeper(python)])
    master, slave = pty.openpty()
    p = subprocess.Popen([str(SIMTERPOSE), "run", str(scen), "--cpu-model", "none", "--json", "r.json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while b"syscalls/s\x1b[K" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                seen += os.read(master, 4096)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
        while select.select([master], [], [], 0.5)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:  # EIO: the writer is gone
                break
    finally:
        p.kill()
        os.close(master)
    text = seen.decode()
    assert re.search(r"\rsimterpose: simulated \d+\.\d{6} s \| wall \d+\.\d s \| 1 process \| [\d,]+ syscalls/s\x1b\[K",
                     text), text
    # erased before the last message, which starts on a clean line
    assert "\r\x1b[Ksimterpose run: interrupted at t=" in text, text
    assert p.returncode == 130


# -- Ctrl-C and SIGTERM -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to simterpose"])
def test_an_interrupted_run_reports_every_process(tmp_path, how):
    """The example scenario meant for it (a server until its kill_time a simulated day later, a quick
    job, a late starter), stopped mid-way once the heartbeat shows it under way: the partial JSON holds
    each process's state at that moment, the logs and pcaps are written, exit 128+N."""
    data = tmp_path / "data"
    # its own session, like a shell's job: a Ctrl-C at a terminal is SIGINT to the whole group
    p = subprocess.Popen([str(SIMTERPOSE), "run", str(ROOT / "examples/scenarios/until_interrupted.yaml"),
                          "--cpu-model", "none", "--data-dir", str(data), "--heartbeat", "0.05"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        beats = 0
        while beats < 3:  # progress seen on the heartbeat: the run is under way, the quick job done
            line = p.stderr.readline()
            beat = HEARTBEAT.fullmatch(line.rstrip("\n"))
            assert beat, line
            beats += float(beat.group(1)) > 2.0
        if how.startswith("SIGINT"):
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    sig = signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM
    assert p.returncode == 128 + sig, out + err
    m = re.search(r"^simterpose run: interrupted at t=(\d+\.\d{6}) s \((SIG\w+)\): 1 process still running, killed$",
                  err, re.M)
    assert m and m.group(2) == sig.name, err
    doc = json.loads((data / "results.json").read_text())
    t = float(m.group(1))
    assert 2.0 < t < 43200
    assert doc["interrupted"] == {"signal": sig.name, "simulated_time": pytest.approx(t, abs=1e-6)}
    server, quick, late = doc["processes"]
    # still running, as it was expected to be: killed by us, not by the terminal's signal (tracees
    # have their own process group)
    assert (server["final_state"], server["signal"], server["end"], server["ok"]) == (
        "running", "SIGKILL", pytest.approx(t), True)
    assert (quick["final_state"], quick["ok"], quick["end"]) == ({"exited": 0}, True, 2.0)
    assert (late["final_state"], late["start"], late["end"], late["ok"]) == (None, None, None, False)
    assert late["error"] == f"not started: the run was interrupted at t={m.group(1)}"
    assert doc["simulated_time"] == pytest.approx(t)
    # logs and pcaps are there, complete up to the interruption
    hosts = data / "hosts"
    assert (hosts / "h2" / "sh.1.stdout").read_text() == "done\n"
    assert "clock_nanosleep" in (hosts / "h1" / "python3.0.syscalls").read_text()
    assert (hosts / "h1" / "eth0.pcap").stat().st_size >= 24  # the pcap header, at least
    assert "(running when interrupted, killed)" in out
