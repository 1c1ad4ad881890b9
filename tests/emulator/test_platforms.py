"""Every kind of platform SimGrid loads runs real programs: cabinets, clusters, wifi, host names
programs cannot use as they are, and hosts without a route between them (issue 14).

The platforms are the project's own (examples/platforms); each test runs an unmodified TCP
ping-pong across two of their hosts, the client naming the server's host as programs see it."""

import pytest
from simrun_helpers import PLATFORMS, runner

LONG = "a-host-name-that-is-much-longer-than-the-sixty-four-characters-uname-can-hold"

PINGPONG = {
    # platform, server host, client host, the server's name for the client
    "cabinets": ("cabinets.xml", "host-1.cab1", "host-2.cab2", "host-1.cab1"),
    "cluster": ("cluster.xml", "node-0.cluster", "node-3.cluster", "node-0.cluster"),
    "wifi station to wired server": ("wifi.xml", "server", "station1", "server"),
    "wifi station to station": ("wifi.xml", "station1", "station2", "station1"),
    "name with a blank": ("host_names.xml", "Cpu A", "Cpu B", "Cpu-A"),
    "numeric name": ("host_names.xml", "Cpu A", "100030591", "Cpu-A"),
    "to a numeric name": ("host_names.xml", "100030591", "Cpu A", "host-100030591"),
    "to a long name, by its alias": ("host_names.xml", LONG, "100030591",
                                     "a-host-name-that-is-much-longer-than-the-sixty-four-ch-886e6920"),
    "to a long name, by its name": ("host_names.xml", LONG, "100030591", LONG),
}


@pytest.fixture()
def run(tmp_path, toys):
    return runner(tmp_path, toys)


@pytest.mark.parametrize("case", PINGPONG, ids=list(PINGPONG))
def test_a_pingpong_runs_between_two_hosts_of_the_platform(run, case):
    platform, server, client, target = PINGPONG[case]
    r = run([{"host": server, "path": "{toys}/pingpong_server", "args": [5000, 20, 1000]},
             {"host": client, "path": "{toys}/pingpong_client", "args": [target, 5000, 20, 1000]}],
            "--cpu-model", "none", "--network-model", "CM02", platform=PLATFORMS / platform)
    assert r.rc == 0, r.stdout + r.stderr + r.out(1)
    assert [p["exit_status"] for p in r.procs] == [0, 0]
    assert r.out(1) == "client: 20 messages of 1000 bytes ok\n"
    assert r.procs[1]["end"] > 0  # the bytes crossed the simulated network


def test_programs_see_and_resolve_the_alias_of_a_name_they_cannot_use(run):
    r = run([{"host": "Cpu A", "args": ["hostname"]},
             {"host": "100030591", "args": ["hostname"]},
             {"host": LONG, "args": ["hostname"]},
             {"host": "Cpu-B", "args": ["hostname"]},  # a scenario may name a host by its alias too
             {"host": "Cpu B", "args": ["getent", "ahosts", "Cpu-A"]}],
            "--cpu-model", "none", platform=PLATFORMS / "host_names.xml")
    assert r.rc == 0, r.stdout + r.stderr
    assert [r.out(i).strip() for i in range(4)] == [
        "Cpu-A", "host-100030591", "a-host-name-that-is-much-longer-than-the-sixty-four-ch-886e6920", "Cpu-B"]
    assert r.procs[3]["host"] == "Cpu B"
    assert r.out(4).split()[0] == "10.0.0.1"  # Cpu A's address, not a piece of "Cpu A" read as a name
    # The summary tells which alias stands for which host.
    assert "'Cpu A' is Cpu-A" in r.stdout and "'100030591' is host-100030591" in r.stdout


def test_without_a_route_connect_fails_with_ENETUNREACH_and_the_run_goes_on(run):
    r = run([{"host": "h1", "path": "{toys}/pingpong_server", "args": [5000, 3, 100]},
             {"host": "h3", "path": "{toys}/pingpong_client", "args": ["h1", 5000, 3, 100], "expected_exit": 1},
             {"host": "h2", "path": "{toys}/pingpong_client", "args": ["h1", 5000, 3, 100], "start_time": 1}],
            "--cpu-model", "none", "--network-model", "CM02", platform=PLATFORMS / "no_route.xml")
    assert r.rc == 0, r.stdout + r.stderr
    assert (r.logs / "1-h3-pingpong_client.stderr").read_text() == \
        "pingpong_client: connect to h1 port 5000: Network is unreachable\n"
    server, lost, other = r.procs
    assert (lost["exit_status"], lost["end"]) == (1, 0.0)
    # The pair with a route still talks, and every process is in the JSON, with its dates.
    assert (server["exit_status"], other["exit_status"]) == (0, 0)
    assert all(p["end"] is not None and p["start"] is not None for p in r.procs)
    assert r.out(2) == "client: 3 messages of 100 bytes ok\n"


EXAMPLES = ["cluster_pingpong", "cabinets_pingpong", "wifi_pingpong", "host_names_pingpong", "no_route",
            "final_states", "seeded_random"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_scenario_of_each_feature_passes(tmp_path, toys, name):
    from simrun_helpers import ROOT, simterpose_run

    r = simterpose_run([ROOT / "examples" / "scenarios" / f"{name}.yaml", "--cpu-model", "none"], tmp_path,
                       timeout=60)
    assert r.rc == 0, r.stdout + r.stderr
    assert all(p["ok"] for p in r.procs)
