"""The `ctrl` command line against real daemons, including fan-out over several daemons."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from tests.ctrld.conftest import ROOT, pid_alive, wait_until


def ctrl(*args, timeout=30, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ctrld.ctrl_cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, **kw)


def test_run_streams_output_and_exit_code(daemon, tmp_path):
    r = ctrl("--connect", daemon.tcp, "run", "--env", "WHO=ctrl", "--cwd", str(tmp_path), "--",
             "sh", "-c", 'echo "hi $WHO"; pwd; echo oops >&2; exit 7')
    assert r.returncode == 7
    assert r.stdout == f"hi ctrl\n{tmp_path}\n" and r.stderr == "oops\n"


def test_run_over_unix_socket(daemon):
    r = ctrl("--connect", daemon.unix, "run", "--", "echo", "unix")
    assert r.returncode == 0 and r.stdout == "unix\n"


def test_run_killed_is_128_plus_signal(daemon):
    r = ctrl("-c", daemon.tcp, "run", "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 128 + 9 and "killed by SIGKILL" in r.stderr


def test_run_timeout(daemon):
    t0 = time.monotonic()
    r = ctrl("-c", daemon.tcp, "run", "--timeout", "0.3", "--", "sleep", "20")
    assert r.returncode == 128 + 15 and "timed out after 0.3 s" in r.stderr
    assert time.monotonic() - t0 < 10


def test_run_exec_failure_is_readable(daemon):
    r = ctrl("-c", daemon.tcp, "run", "--", "/no/such/prog")
    assert r.returncode == 127
    assert r.stderr.strip() == "ctrl: cannot execute /no/such/prog: No such file or directory: /no/such/prog"


def test_connection_refused_is_readable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = ctrl("-c", f"127.0.0.1:{port}", "run", "--", "true")
    assert r.returncode == 255
    assert r.stderr.strip() == f"ctrl: cannot connect to 127.0.0.1:{port}: Connection refused"


def test_fan_out_over_three_daemons(start_daemon):
    ds = [start_daemon(unix=False) for _ in range(3)]
    conn = []
    for i, d in enumerate(ds):
        conn += ["--connect", f"n{i}={d.tcp}"]
    r = ctrl(*conn, "run", "--", "sh", "-c", "echo one; echo two; echo err >&2")
    lines = sorted(r.stdout.splitlines())
    assert lines == sorted(f"n{i}: {w}" for i in range(3) for w in ("one", "two"))
    assert sorted(r.stderr.splitlines()) == [f"n{i}: err" for i in range(3)]
    assert r.returncode == 0
    # worst exit status: the command fails on one daemon only ($PPID of the shell is its daemon)
    marker = f"/tmp/ctrld-fanout-{os.getpid()}"
    with open(marker, "w") as f:
        f.write(str(ds[1].pid))
    try:
        r = ctrl(*conn, "run", "--", "sh", "-c", f'test "$(cat {marker})" != "$PPID" || exit 5')
    finally:
        os.unlink(marker)
    assert r.returncode == 5


def test_fan_out_one_daemon_down(start_daemon):
    d = start_daemon(unix=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    r = ctrl("-c", f"up={d.tcp}", "-c", f"down=127.0.0.1:{dead}", "run", "--", "true")
    assert r.returncode == 255 and "cannot connect to down" in r.stderr


def test_ps_status_kill(daemon):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runner = subprocess.Popen([sys.executable, "-m", "ctrld.ctrl_cli", "-c", daemon.tcp, "run", "--", "sleep", "45"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        pid = None

        def find():
            nonlocal pid
            out = ctrl("-c", daemon.tcp, "ps").stdout
            for line in out.splitlines()[1:]:
                if line.endswith("sleep 45"):
                    pid = int(line.split()[1])
            return pid is not None

        assert wait_until(find, 10)
        st = ctrl("-c", daemon.tcp, "status")
        assert st.returncode == 0 and socket.gethostname() in st.stdout and "cpus=" in st.stdout
        k = ctrl("-c", daemon.tcp, "kill", str(pid), "--signal", "TERM")
        assert k.returncode == 0
        out, err = runner.communicate(timeout=10)
        assert runner.returncode == 128 + 15 and "killed by SIGTERM" in err
        bad = ctrl("-c", daemon.tcp, "kill", "999999")
        assert bad.returncode == 1 and "no running command for pid 999999" in bad.stderr
    finally:
        runner.kill()
        runner.wait()


def test_interrupted_ctrl_kills_remote_command(daemon, tmp_path):
    pidfile = tmp_path / "pid"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runner = subprocess.Popen([sys.executable, "-m", "ctrld.ctrl_cli", "-c", daemon.tcp, "run", "--",
                               "sh", "-c", f"echo $$ > {pidfile}; exec sleep 45"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10)
    remote = int(pidfile.read_text())
    runner.kill()  # the connection drops: kill_on_disconnect (ctrl's default) ends the command
    runner.wait()
    gone = wait_until(lambda: not pid_alive(remote), 5)
    if not gone:  # diagnostics for a failure seen once and not reproduced since
        state = open(f"/proc/{remote}/status").read().splitlines()[:3]
        ps = ctrl("-c", daemon.tcp, "ps").stdout
        os.kill(remote, 9)
        raise AssertionError(f"remote command {remote} survived its client: {state}\n{ps}")


def test_watch_file_and_port(daemon, tmp_path):
    target = tmp_path / "appears"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    w = subprocess.Popen([sys.executable, "-m", "ctrld.ctrl_cli", "-c", daemon.tcp, "watch-file", str(target),
                          "--events", "created", "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    assert w.stderr.readline().strip() == f"ctrl: watching {target}"  # registered: events from now on count
    target.write_text("x")
    out, err = w.communicate(timeout=15)
    assert w.returncode == 0 and out.strip() == f"created {target}", err

    r = ctrl("-c", daemon.tcp, "watch-file", str(tmp_path / "never"), "--timeout", "0.2")
    assert r.returncode == 1 and "watch timed out" in r.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = ctrl("-c", daemon.tcp, "watch-port", str(port), "--timeout", "5")
    assert r.returncode == 0 and f"port {port} is listening" in r.stdout
    r = ctrl("-c", daemon.tcp, "watch-port", str(port), "--timeout", "0.2")
    assert r.returncode == 1 and "not listening after 0.2 s" in r.stderr
