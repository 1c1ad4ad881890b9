"""`simterpose run` as SimGrid and Shadow users expect it (issue 14): SimGrid settings passed
through, usage errors in one line, quiet when its reader goes away, SimGrid's chatter only on request."""

import json
import os
import subprocess

import pytest
from simrun_helpers import SIMTERPOSE, runner, write_scenario


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


def test_cfg_passes_simgrid_settings_through(run):
    # One 1 MB message each way on CM02: SimGrid's cross-traffic (a 5 % reverse flow) slows it down;
    # --cfg=network/crosstraffic:0 turns it off, as it would for a SimGrid program. Slow start off:
    # its rounds, one RTT each whatever the rate, would dilute the 5 % this compares.
    procs = [{"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 1, 1000000]},
             {"host": "h2", "path": "{toys}/pingpong_client", "args": ["h1", 5000, 1, 1000000]}]
    base = run(procs, "--cpu-model", "none", "--network-model", "CM02", "--tcp-slow-start", "off")
    off = run(procs, "--cpu-model", "none", "--network-model", "CM02", "--cfg=network/crosstraffic:0",
              "--tcp-slow-start", "off")
    assert base.rc == off.rc == 0, base.stderr + off.stderr
    assert off.doc["simulated_time"] < base.doc["simulated_time"] * 0.97
    # repeatable, and SimGrid's spelling of the model is the model
    again = run(procs, "--cpu-model", "none", "--cfg", "network/model:CM02", "--cfg", "network/crosstraffic:0",
                "--tcp-slow-start", "off")
    assert again.rc == 0 and again.doc["simulated_time"] == off.doc["simulated_time"]
    assert base.stderr == off.stderr == again.stderr == ""


def test_the_default_network_model_is_CM02_and_help_says_why(tmp_path):
    """docs/compare.md: against real runs in network namespaces CM02 is the closest model on bulk
    transfers and ping-pongs; LV08 (SimGrid's default) is ~10x too slow on request/response traffic."""
    scen = write_scenario(tmp_path, [{"host": "h1", "args": ["true"]}], model=None)
    p = subprocess.run([str(SIMTERPOSE), "run", str(scen), "--cpu-model", "none", "--log", "root.thresh:info"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Configuration change: Set 'network/model' to 'CM02'" in p.stderr
    helped = subprocess.run([str(SIMTERPOSE), "run", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(helped.stdout.split())
    assert "CM02 (default: it is the closest to real runs" in text and "docs/compare.md" in text
    assert "ns-3" in text and "'help' lists the models" in text


USAGE_ERRORS = {
    "--reference-speed abc": (["--reference-speed", "abc"], "argument --reference-speed: invalid speed 'abc'"),
    "--stop-time -1": (["--stop-time", "-1"], "argument --stop-time: invalid date '-1': must be >= 0"),
    "--stop-time never": (["--stop-time", "never"], "argument --stop-time: invalid date 'never'"),
    "--cfg without a value": (["--cfg", "network/crosstraffic"], "argument --cfg: expected KEY:VALUE"),
    "--cfg unknown key": (["--cfg", "no/such:1"], "SimGrid refused a setting: Bad config key: no/such"),
    "--cfg bad value": (["--cfg", "network/crosstraffic:maybe"], "SimGrid refused a setting: not a boolean"),
    "--log garbage": (["--log", "loud"], "argument --log: invalid SimGrid log setting 'loud'"),
    "--log bad level": (["--log", "root.thresh:loud"], "SimGrid refused a setting: Unknown priority name: loud"),
    "--epoch soon": (["--epoch", "soon"], "argument --epoch: invalid int value: 'soon'"),
    "unknown option": (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    "--seed -1": (["--seed=-1"], "argument --seed: invalid seed '-1': an integer between 0 and 2**64-1"),
    "--seed abc": (["--seed", "abc"], "argument --seed: invalid seed 'abc': an integer >= 0"),
    "--heartbeat 0": (["--heartbeat", "0"], "argument --heartbeat: invalid period '0': must be > 0"),
    "--heartbeat often": (["--heartbeat", "often"], "argument --heartbeat: invalid period 'often'"),
    "--network-model Constant with links": (["--network-model", "Constant"],
                                             "the Constant network model takes platforms without links"),
    "--json in a missing directory": (["--json", "/nonexistent/r.json"], "--json /nonexistent/r.json: its directory"),
    "--log-dir on a file": (["--log-dir", "/etc/hostname"], "--log-dir /etc/hostname: File exists"),
    "--cpu 999": (["--cpu", "999"], "--cpu 999: not a CPU this process may use"),
    "--cpu fast": (["--cpu", "fast"], "--cpu fast: expected a CPU number, auto or none"),
    "--unblocked-syscall-latency 2": (["--unblocked-syscall-latency", "2"], "--unblocked-syscall-latency must be"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_usage_errors_exit_2_with_one_line(tmp_path, case):
    options, message = USAGE_ERRORS[case]
    scen = write_scenario(tmp_path, [{"host": "h1", "args": ["true"]}])
    p = subprocess.run([str(SIMTERPOSE), "run", str(scen), *options], capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("simterpose"), p.stderr
    assert message in p.stderr


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path):
    # `simterpose run ... | head -1`, made deterministic: the reader closes before anything is written.
    scen = write_scenario(tmp_path, [{"host": "h1", "args": ["true"]}] * 30)
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([str(SIMTERPOSE), "run", str(scen), "--cpu-model", "none", "--json", "r.json"],
                       stdout=w, stderr=subprocess.PIPE, text=True, timeout=60, cwd=tmp_path)
    os.close(w)
    assert p.stderr == ""
    assert p.returncode == 141  # 128 + SIGPIPE, what a shell reports for a command its reader left
    assert (tmp_path / "r.json").exists()  # the results are kept all the same


def test_simgrid_says_nothing_unless_asked(run):
    # A server nobody connects to: the run ends with "blocked forever" (found by simterpose's loop,
    # not by SimGrid, whose one actor never waits without a date or a transfer in flight).
    procs = [{"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 1, 10], "expected_exit": None}]
    quiet = run(procs, "--cpu-model", "none")
    assert quiet.stderr == ""
    assert "blocked forever: waiting in accept" in quiet.procs[0]["error"]
    asked = run(procs, "--cpu-model", "none", "--log", "root.thresh:info")
    assert "Configuration change: Set 'network/model' to 'LV08'" in asked.stderr


# -- expected_final_state ---------------------------------------------------------------------------

SEGV = {"host": "h2", "path": "/usr/bin/python3", "args": ["-c", "import ctypes; ctypes.string_at(0)"]}


def test_a_server_still_running_at_its_kill_time_is_expected_running(run):
    server = {"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 3, 100], "kill_time": 5}
    r = run([dict(server, expected_final_state="running")], "--cpu-model", "none")
    assert r.rc == 0, r.stdout + r.stderr
    (p,) = r.procs
    assert (p["final_state"], p["ok"], p["error"], p["end"], p["exit_status"]) == ("running", True, None, 5.0, 137)
    assert "exit=137 (running at kill_time, killed)" in r.stdout and " ok " in r.stdout
    # the default expectation is {exited: 0}: the same server is then a failure, that says why
    r = run([server], "--cpu-model", "none")
    assert r.rc == 1 and r.procs[0]["ok"] is False
    assert "UNEXPECTED (expected exit status 0)" in r.stdout


def test_a_process_that_ends_before_kill_time_is_not_running(run):
    r = run([{"host": "h1", "args": ["sleep", "1"], "kill_time": 5, "expected_final_state": "running"}],
            "--cpu-model", "none")
    assert r.rc == 1
    assert (r.procs[0]["final_state"], r.procs[0]["ok"]) == ({"exited": 0}, False)
    assert "UNEXPECTED (expected running)" in r.stdout


def test_a_crash_is_named_and_may_be_expected(run):
    r = run([SEGV, dict(SEGV, expected_final_state={"signaled": "SIGSEGV"}),
             dict(SEGV, expected_final_state={"signaled": "SIGABRT"})], "--cpu-model", "none")
    assert r.rc == 1
    crash, expected, wrong = r.procs
    assert (crash["exit_status"], crash["signal"], crash["final_state"], crash["ok"]) == \
        (139, "SIGSEGV", {"signaled": "SIGSEGV"}, False)
    assert crash["error"] == "killed by SIGSEGV (Segmentation fault)"
    assert (expected["ok"], expected["error"]) == (True, None)
    assert wrong["ok"] is False and "UNEXPECTED (expected signaled SIGABRT)" in r.stdout
    assert "exit=139 (SIGSEGV)" in r.stdout


def test_expected_exited_status(run):
    r = run([{"host": "h1", "args": ["false"], "expected_final_state": {"exited": 1}}], "--cpu-model", "none")
    assert r.rc == 0 and r.procs[0]["final_state"] == {"exited": 1}


def test_the_stop_time_leaves_processes_running(run):
    r = run([{"host": "h1", "args": ["sleep", "100"], "kill_time": 200, "expected_final_state": "running"}],
            "--cpu-model", "none", "--stop-time", "3")
    assert r.rc == 0, r.stdout
    assert (r.procs[0]["final_state"], r.procs[0]["end"]) == ("running", 3.0)


# -- --data-dir ---------------------------------------------------------------------------------------


def test_data_dir_is_laid_out_per_host_like_shadows(tmp_path, toys):
    from simrun_helpers import PLATFORMS

    scen = write_scenario(tmp_path, [
        {"host": "Cpu A", "path": str(toys / "pingpong_server"), "args": [5000, 3, 100]},
        {"host": "100030591", "path": str(toys / "pingpong_client"), "args": ["Cpu-A", 5000, 3, 100]},
        {"host": "100030591", "args": ["hostname"]}], PLATFORMS / "host_names.xml")
    data = tmp_path / "data"
    p = subprocess.run([str(SIMTERPOSE), "run", str(scen), "--cpu-model", "none", "--data-dir", str(data)],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    files = sorted(str(f.relative_to(data)) for f in data.rglob("*") if f.is_file())
    assert files == sorted([
        "results.json",
        "hosts/Cpu A/pingpong_server.0.stdout", "hosts/Cpu A/pingpong_server.0.stderr",
        "hosts/Cpu A/pingpong_server.0.syscalls", "hosts/Cpu A/eth0.pcap",
        "hosts/100030591/pingpong_client.1.stdout", "hosts/100030591/pingpong_client.1.stderr",
        "hosts/100030591/pingpong_client.1.syscalls",
        "hosts/100030591/hostname.2.stdout", "hosts/100030591/hostname.2.stderr",
        "hosts/100030591/hostname.2.syscalls", "hosts/100030591/eth0.pcap",
        "hosts/Cpu B/eth0.pcap",
        "hosts/a-host-name-that-is-much-longer-than-the-sixty-four-characters-uname-can-hold/eth0.pcap",
    ])
    assert (data / "hosts/100030591/hostname.2.stdout").read_text() == "host-100030591\n"
    assert (data / "hosts/Cpu A/pingpong_server.0.stdout").read_text() == "server: echoed 3 messages of 100 bytes\n"
    assert (data / "hosts/Cpu A/eth0.pcap").stat().st_size > 24  # more than the pcap header
    assert json.loads((data / "results.json").read_text())["processes"][2]["ok"] is True
    # a second run must not mix its outputs with the first's
    again = subprocess.run([str(SIMTERPOSE), "run", str(scen), "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (again.returncode, again.stderr) == (2, f"simterpose run: --data-dir {data}: exists and is not an "
                                                   "empty directory\n")


def test_data_dir_with_the_old_flags_as_shortcuts(tmp_path):
    scen = write_scenario(tmp_path, [{"host": "h1", "args": ["echo", "hi"]}])
    p = subprocess.run([str(SIMTERPOSE), "run", str(scen), "--cpu-model", "none", "--data-dir", "data",
                        "--json", "elsewhere.json", "--log-dir", "logs"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "elsewhere.json").exists() and not (tmp_path / "data/results.json").exists()
    assert (tmp_path / "logs/0-h1-echo.stdout").read_text() == "hi\n"
    assert sorted(f.name for f in (tmp_path / "data/hosts").rglob("*")) == ["eth0.pcap", "eth0.pcap", "h1", "h2"]
