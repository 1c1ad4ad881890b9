"""`simterpose run` as SimGrid and Shadow users expect it (issue 14): SimGrid settings passed
through, usage errors in one line, quiet when its reader goes away, SimGrid's chatter only on request."""

import os
import subprocess

import pytest
from simrun_helpers import SIMTERPOSE, runner, write_scenario


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


def test_cfg_passes_simgrid_settings_through(run):
    # One 1 MB message each way on CM02: SimGrid's cross-traffic (a 5 % reverse flow) slows it down;
    # --cfg=network/crosstraffic:0 turns it off, as it would for a SimGrid program.
    procs = [{"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 1, 1000000]},
             {"host": "h2", "path": "{toys}/pingpong_client", "args": ["h1", 5000, 1, 1000000]}]
    base = run(procs, "--cpu-model", "none", "--network-model", "CM02")
    off = run(procs, "--cpu-model", "none", "--network-model", "CM02", "--cfg=network/crosstraffic:0")
    assert base.rc == off.rc == 0, base.stderr + off.stderr
    assert off.doc["simulated_time"] < base.doc["simulated_time"] * 0.97
    # repeatable, and SimGrid's spelling of the model is the model
    again = run(procs, "--cpu-model", "none", "--cfg", "network/model:CM02", "--cfg", "network/crosstraffic:0")
    assert again.rc == 0 and again.doc["simulated_time"] == off.doc["simulated_time"]
    assert base.stderr == off.stderr == again.stderr == ""


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
    # A server nobody connects to: SimGrid detects a deadlock and would print its report.
    procs = [{"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 1, 10], "expected_exit": None}]
    quiet = run(procs, "--cpu-model", "none")
    assert quiet.stderr == ""
    assert "blocked forever: waiting in accept" in quiet.procs[0]["error"]
    asked = run(procs, "--cpu-model", "none", "--log", "root.thresh:info")
    assert "Oops! Deadlock detected" in asked.stderr
    assert "Configuration change: Set 'network/model' to 'LV08'" in asked.stderr
