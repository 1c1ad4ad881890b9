"""`simterpose run` as a command: its inputs (YAML scenario, or platform + deployment XML), the
errors it reports before anything starts, its exit status and its JSON results."""

import subprocess

import pytest
from simrun_helpers import SIMTERPOSE, TWO_HOSTS, runner, simterpose_run, write_scenario


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


# -- deployment XML ----------------------------------------------------------------------------

DEPLOYMENT = """<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <actor host="h1" function="{toys}/time_probe">
    <argument value="1.5"/>
  </actor>
  <process host="h2" function="/bin/sleep" start_time="0.25" kill_time="2">
    <argument value="100"/>
    <prop id="expected_exit" value="137"/>
  </process>
</platform>
"""


def test_a_deployment_xml_runs_its_actor_and_process_elements(tmp_path, toys):
    deploy = tmp_path / "deploy.xml"
    deploy.write_text(DEPLOYMENT.format(toys=toys))
    r = simterpose_run(["--platform", TWO_HOSTS, "--deployment", deploy, "--cpu-model", "none"], tmp_path)
    assert r.rc == 0, r.stdout + r.stderr
    actor, process = r.procs
    assert (actor["host"], actor["argv"], actor["end"], actor["exit_status"]) == \
        ("h1", [f"{toys}/time_probe", "1.5"], 1.5, 0)
    assert (process["host"], process["start"], process["end"], process["exit_status"]) == ("h2", 0.25, 2.0, 137)
    assert r.out(0).splitlines()[-1] == "slept_monotonic=1.500000000"


# -- bad inputs: reported before anything starts, naming the file and line ---------------------

BAD_INPUTS = {
    "unknown host": (
        "scenario.yaml",
        "platform: {platform}\nprocesses:\n  - host: h1\n    args: [sleep, 1]\n  - host: hX\n    args: [sleep, 1]\n",
        [],
        "scenario.yaml:5: process #2: unknown host 'hX'"),
    "missing binary": (
        "scenario.yaml",
        "platform: {platform}\nprocesses:\n  - host: h1\n    path: ./no/such/program\n",
        [],
        "scenario.yaml:4: process #1: program './no/such/program' not found"),
    "malformed deployment XML": (
        "deploy.xml",
        "<?xml version='1.0'?>\n<platform version=\"4.1\">\n  <actor host=\"h1\" function=\"/bin/sleep\">\n"
        "    <argument value=\"1\">\n  </actor>\n</platform>\n",
        ["--platform", str(TWO_HOSTS)],
        "deploy.xml:5: malformed XML: mismatched tag"),
    "unknown host in a deployment": (
        "deploy.xml",
        "<?xml version='1.0'?>\n<platform version=\"4.1\">\n  <actor host=\"h1\" function=\"/bin/sleep\"/>\n"
        "  <process host=\"h9\" function=\"/bin/sleep\"/>\n</platform>\n",
        ["--platform", str(TWO_HOSTS)],
        "deploy.xml:4: unknown host 'h9'"),
    "malformed platform XML": (
        "platform.xml",
        "<?xml version='1.0'?>\n<platform version=\"4.1\">\n  <zone id=\"z\" routing=\"Full\">\n"
        "    <host id=\"h1\" speed=\"1Gf\">\n  </zone>\n</platform>\n",
        None,  # this file is the platform; the scenario is a valid YAML using it
        "platform.xml:5: malformed XML: mismatched tag"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_every_bad_input_gives_its_message_and_nothing_starts(tmp_path, case):
    name, text, options, message = BAD_INPUTS[case]
    bad = tmp_path / name
    bad.write_text(text.format(platform=TWO_HOSTS))
    if options is None:
        args = [write_scenario(tmp_path, [{"host": "h1", "args": ["sleep", 1]}], platform=bad,
                               name="uses_bad_platform.yaml")]
    elif name.endswith(".xml"):
        args = [*options, "--deployment", bad]
    else:
        args = [bad]
    r = simterpose_run(args, tmp_path)
    assert r.rc == 2
    assert r.stderr.startswith("simterpose run: ")
    assert f"{tmp_path}/{message}" in r.stderr, r.stderr
    # Nothing ran: no results, no process logs.
    assert r.doc is None
    assert not r.logs.exists() or not any(r.logs.iterdir())


def test_a_bad_cpu_model_is_refused(tmp_path):
    scenario = write_scenario(tmp_path, [{"host": "h1", "args": ["sleep", 1]}])
    r = simterpose_run([scenario, "--cpu-model", "per-syscall=soon"], tmp_path)
    assert r.rc == 2
    assert "simterpose run: bad --cpu-model 'per-syscall=soon'" in r.stderr


# -- exit status -------------------------------------------------------------------------------

def test_the_run_fails_when_a_process_exits_other_than_expected(run):
    r = run([{"host": "h1", "path": "/bin/true"}, {"host": "h2", "path": "/bin/false"}], "--cpu-model", "none")
    assert r.rc == 1
    assert [p["exit_status"] for p in r.procs] == [0, 1]
    assert "UNEXPECTED (expected exit status 0)  /bin/false" in r.stdout
    # Once expected, the same exit is fine.
    r = run([{"host": "h1", "path": "/bin/true"}, {"host": "h2", "path": "/bin/false", "expected_exit": 1}],
            "--cpu-model", "none")
    assert r.rc == 0, r.stdout


def test_a_process_killed_by_a_signal_is_reported_as_128_plus_the_signal(run):
    suicide = {"host": "h1", "path": "/usr/bin/python3",
               "args": ["-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]}
    r = run([suicide], "--cpu-model", "none")
    assert r.rc == 1
    assert r.procs[0]["exit_status"] == 128 + 15
    r = run([dict(suicide, expected_exit=143)], "--cpu-model", "none")
    assert r.rc == 0, r.stdout
    assert r.procs[0]["exit_status"] == 143


# -- the JSON results --------------------------------------------------------------------------

def test_the_json_results_have_the_documented_keys(run):
    r = run([{"host": "h2", "path": "/bin/sleep", "args": [0.5], "start_time": 1}], "--cpu-model", "none")
    assert r.rc == 0, r.stderr
    assert set(r.doc) == {"simulated_time", "interrupted", "hosts", "processes"}
    assert r.doc["interrupted"] is None  # {"signal": "SIGINT", "simulated_time": T} after a Ctrl-C
    assert r.doc["hosts"] == {"h2": {"ip": "10.0.0.2", "alias": "h2"}}  # the scenario's hosts
    (p,) = r.procs
    assert set(p) == {"host", "argv", "exit_status", "start", "end", "error", "wall", "final_state", "signal", "ok"}
    assert p == dict(p, host="h2", argv=["/bin/sleep", "0.5"], exit_status=0, start=1.0, end=1.5, error=None,
                     final_state={"exited": 0}, signal=None, ok=True)
    assert isinstance(p["wall"], float) and 0 < p["wall"] < 5
    assert r.doc["simulated_time"] == 1.5
    assert "simulated time: 1.500000000 s" in r.stdout


def test_help_lists_the_options():
    out = subprocess.run([str(SIMTERPOSE), "run", "--help"], capture_output=True, text=True).stdout
    for option in ("--platform", "--deployment", "--cpu-model", "--reference-speed", "--epoch", "--stop-time",
                   "--json", "--log-dir", "--vdso"):
        assert option in out
