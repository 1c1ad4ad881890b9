"""Scenario and platform parsing (pure Python), and the example platforms in the real engine."""

import os
import re
import shutil
import stat
import textwrap
from pathlib import Path

import pytest

from simterpose.scenario import (
    ScenarioError,
    load_deployment,
    load_platform_info,
    load_scenario,
    load_yaml_scenario,
    parse_bandwidth,
    parse_speed,
    parse_time,
)

ROOT = Path(__file__).resolve().parent.parent.parent
DOCTYPE = '<?xml version="1.0"?>\n<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'
SLEEP = shutil.which("sleep")


def write(path: Path, text: str, prefix: str = "") -> Path:
    path.write_text(prefix + textwrap.dedent(text).lstrip("\n"))
    return path


# ---- units ------------------------------------------------------------------------------------------


def test_units():
    assert parse_speed("1Gf") == 1e9 and parse_speed("100Mf") == 1e8 and parse_speed("1.5kf") == 1500
    assert parse_speed("2Gf,1Gf") == 2e9 and parse_speed("1e6") == 1e6 and parse_speed("3flops") == 3
    assert parse_bandwidth("10MBps") == 1e7 and parse_bandwidth("100Mbps") == 1.25e7
    assert parse_bandwidth("1GiBps") == 2.0**30
    assert parse_time("10ms") == pytest.approx(0.01) and parse_time("5us") == pytest.approx(5e-6)
    assert parse_time("2") == 2.0 and parse_time("1h") == 3600
    for bad in ("fast", "10Qf", ""):
        with pytest.raises(ValueError):
            parse_speed(bad)


# ---- platforms --------------------------------------------------------------------------------------


def test_example_platforms():
    two = load_platform_info(ROOT / "examples/platforms/two_hosts.xml")
    assert [(h.name, h.speed, h.ip, h.declared_ip) for h in two.hosts] == [
        ("h1", 1e9, "10.0.0.1", "10.0.0.1"), ("h2", 1e9, "10.0.0.2", "10.0.0.2")]
    assert [(lk.name, lk.bandwidth, lk.latency) for lk in two.links] == [("link", 1e7, 0.01)]
    assert [(r.src, r.dst, r.links) for r in two.routes] == [("h1", "h2", ("link",))]
    four = load_platform_info(ROOT / "examples/platforms/four_hosts_backbone.xml")
    assert four.host_names == ["h1", "h2", "h3", "h4"]
    assert [h.ip for h in four.hosts] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert len(four.routes) == 6 and all("backbone" in r.links for r in four.routes)
    assert four.host_by_ip("10.0.0.3").name == "h3"


def test_zones_clusters_and_auto_ips(tmp_path):
    plat = write(tmp_path / "p.xml", prefix=DOCTYPE, text="""
        <platform version="4.1">
          <zone id="world" routing="Full">
            <AS id="old" routing="Full">
              <host id="a" speed="1Gf"/>
              <host id="b" speed="1Gf"><prop id="ip" value="10.0.0.2"/></host>
            </AS>
            <zone id="z2" routing="Full">
              <host id="c" speed="250Mf" core="8"/>
            </zone>
            <cluster id="cl" prefix="node-" suffix=".lan" radical="0-2,7" speed="1Gf" bw="125MBps" lat="50us"/>
            <link id="l" bandwidth="1Gbps" latency="1ms"/>
            <zoneRoute src="old" dst="z2" gw_src="a" gw_dst="c"><link_ctn id="l"/></zoneRoute>
          </zone>
        </platform>
    """)
    info = load_platform_info(plat)
    assert info.host_names == ["a", "b", "c", "node-0.lan", "node-1.lan", "node-2.lan", "node-7.lan"]
    ips = {h.name: h.ip for h in info.hosts}
    # Document order, skipping the declared 10.0.0.2.
    assert ips == {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3", "node-0.lan": "10.0.0.4",
                   "node-1.lan": "10.0.0.5", "node-2.lan": "10.0.0.6", "node-7.lan": "10.0.0.7"}
    assert info.host("a").declared_ip is None and info.host("c").cores == 8 and info.host("c").speed == 2.5e8
    assert info.host("node-7.lan").zone == "cl" and info.zones == ["world", "old", "z2", "cl"]
    assert load_platform_info(plat).hosts == info.hosts  # deterministic


@pytest.mark.parametrize("body,line,message", [
    ('<platform version="4.1">\n<zone id="w" routing="Full">\n<host id="a" speed="1Gf">\n</zone></platform>', 6,
     "malformed XML: mismatched tag"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host id="a" speed="fast"/>\n</zone></platform>', 4,
     "<host> speed: invalid speed 'fast'"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host id="a" speed="1Gf"/>\n<host id="a" speed="1Gf"/>'
     '</zone></platform>', 5, "duplicate host 'a' (first at line 4)"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host id="a" speed="1Gf"><prop id="ip" value="10.0.0.1"/>'
     '</host>\n<host id="b" speed="1Gf"><prop id="ip" value="10.0.0.1"/></host></zone></platform>', 5,
     "ip 10.0.0.1 already belongs to host 'a'"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host id="a" speed="1Gf"><prop id="ip" value="10.0.0.300"/>'
     '</host></zone></platform>', 4, "invalid ip property '10.0.0.300'"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host id="a" speed="1Gf"/><host id="b" speed="1Gf"/>\n'
     '<route src="a" dst="b"><link_ctn id="nope"/></route></zone></platform>', 5, "unknown link 'nope'"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<host speed="1Gf"/></zone></platform>', 4,
     "<host> lacks the 'id' attribute"),
    # SimGrid itself would say only "Not a valid model!", or load it and abort at the first transfer:
    ('<platform version="4.1">\n<zone id="w" routing="Star">\n<host id="a" speed="1Gf"/></zone></platform>', 4,
     "<zone> routing: unknown 'Star'"),
    ('<platform version="4.1"><zone id="w" routing="Full">\n<link id="l" bandwidth="-5MBps" latency="1ms"/>'
     '</zone></platform>', 4, "invalid bandwidth '-5MBps': must be > 0"),
])
def test_platform_errors(tmp_path, body, line, message):
    plat = tmp_path / "plat.xml"
    plat.write_text(DOCTYPE + body)
    with pytest.raises(ScenarioError) as exc:
        load_platform_info(plat)
    assert str(exc.value).startswith(f"{plat}:{line}: ")
    assert message in str(exc.value)


def test_platform_without_doctype_is_rejected_like_simgrid_does(tmp_path):
    plat = write(tmp_path / "p.xml", '<platform version="4.1"><host id="a" speed="1Gf"/></platform>')
    with pytest.raises(ScenarioError, match=r"p\.xml:1: missing <!DOCTYPE platform"):
        load_platform_info(plat)


def test_example_platforms_load_in_the_engine(simrun):
    out = simrun("""
        sims = {}
        sim = S.Simulation(FOUR_HOSTS, "CM02")
        res = {}
        def probe():
            t = S.transfer_async("h1", "h4", 1000)
            S.wait(t)
            res["t"] = S.now()
        sim.spawn("probe", "h1", probe)
        sim.run()
        res["hosts"] = sorted(h.name for h in sim.hosts)
        emit(res)
    """)
    assert out["hosts"] == ["h1", "h2", "h3", "h4"]
    # CM02: the three latencies (1 + 10 + 1 ms) plus 1000 B (+5 % ACKs) through the 10 MB/s bottleneck.
    assert out["t"] == pytest.approx(0.012 + 1050 / 1e7, rel=1e-6)


# ---- deployment XML ---------------------------------------------------------------------------------


@pytest.fixture()
def platform(tmp_path):
    return ROOT / "examples/platforms/two_hosts.xml"


def test_deployment_parsing(tmp_path, platform):
    prog = tmp_path / "bin" / "prog"
    prog.parent.mkdir()
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o755)
    deploy = write(tmp_path / "deploy.xml", prefix=DOCTYPE, text="""
        <platform version="4.1">
          <actor host="h1" function="sleep" start_time="0.5" kill_time="10">
            <argument value="2"/>
          </actor>
          <process host="h2" function="bin/prog">
            <argument value="-v"/><argument value="x y"/>
            <prop id="cwd" value="bin"/>
            <prop id="expected_exit" value="3"/>
            <prop id="env:LANG" value="C"/>
          </process>
          <actor host="h2" function="/bin/true" kill_time="-1"><prop id="expected_exit" value="any"/></actor>
        </platform>
    """)
    sc = load_deployment(deploy, platform)
    a, b, c = sc.processes
    assert (a.host, a.argv, a.binary, a.start_time, a.kill_time) == ("h1", ["sleep", "2"], SLEEP, 0.5, 10.0)
    assert a.expected_exit == 0 and a.env == {} and a.cwd is None and a.source == f"{deploy}:4"
    assert (b.host, b.argv, b.binary) == ("h2", ["bin/prog", "-v", "x y"], str(prog.resolve()))
    assert b.cwd == str(prog.parent.resolve()) and b.expected_exit == 3 and b.env == {"LANG": "C"}
    assert c.kill_time is None and c.expected_exit is None
    assert sc.platform == platform and load_scenario(deploy, platform).processes == sc.processes


def _deploy_error(tmp_path, platform, actor_lines: str) -> str:
    deploy = tmp_path / "deploy.xml"
    # Line 1-2: prolog, 3: <platform>, actor lines from 4.
    deploy.write_text(DOCTYPE + '<platform version="4.1">\n' + actor_lines + "\n</platform>\n")
    with pytest.raises(ScenarioError) as exc:
        load_deployment(deploy, platform)
    return str(exc.value).replace(str(tmp_path) + "/", "")


def test_deployment_errors(tmp_path, platform):
    noexec = tmp_path / "noexec"
    noexec.write_text("data")
    noexec.chmod(0o644)
    ok = '<actor host="h1" function="sleep"/>'
    cases = {
        ok + "\n" + ok + "\n" + ok + '\n<actor host="Hx" function="sleep"/>': "deploy.xml:7: unknown host 'Hx'",
        '<actor host="h1" function="/no/such/binary"/>': "deploy.xml:4: program '/no/such/binary' not found",
        '<actor host="h1" function="no-such-program-xyz"/>': "deploy.xml:4: program 'no-such-program-xyz' not found in PATH",
        ok + '\n<actor host="h1" function="./noexec"/>': "deploy.xml:5: program './noexec' is not executable",
        '<actor host="h1" function="sleep" start_time="-1"/>': "deploy.xml:4: negative start_time '-1'",
        '<actor host="h1" function="sleep" start_time="soon"/>': "deploy.xml:4: invalid start_time 'soon'",
        '<actor host="h1" function="sleep" start_time="5" kill_time="2"/>': "deploy.xml:4: kill_time '2' is not after",
        '<actor host="h1" function="sleep">\n<argument val="x"/></actor>': "deploy.xml:5: <argument> lacks the 'value'",
        '<actor function="sleep"/>': "deploy.xml:4: <actor> lacks the 'host' attribute",
        '<actor host="h1" function="sleep">\n<prop id="colour" value="x"/></actor>': "deploy.xml:5: unknown <prop id='colour'>",
        '<actor host="h1" function="sleep">\n\n<argument value="x">\n</actor>': "deploy.xml:7: malformed XML: mismatched tag",
        '<actor host="h1" function="sleep"><prop id="expected_exit" value="300"/></actor>': "deploy.xml:4: expected_exit 300",
        "": "deploy.xml:3: no <actor> in the deployment",
    }
    for lines, expected in cases.items():
        assert _deploy_error(tmp_path, platform, lines).startswith(expected), (lines, expected)


def test_malformed_xml_reports_line(tmp_path, platform):
    deploy = tmp_path / "deploy.xml"
    deploy.write_text('<platform version="4.1">\n<actor host="h1" function="sleep"\n</platform>\n')
    with pytest.raises(ScenarioError, match=r"deploy\.xml:3: malformed XML: not well-formed"):
        load_deployment(deploy, platform)


# ---- YAML -------------------------------------------------------------------------------------------


def test_yaml_example_scenario():
    sc = load_scenario(ROOT / "examples/scenarios/sleep.yaml")
    assert sc.platform == (ROOT / "examples/platforms/two_hosts.xml").resolve()
    assert sc.network_model == "LV08"
    a, b = sc.processes
    assert (a.host, a.argv, a.binary, a.start_time, a.kill_time, a.expected_exit) == (
        "h1", ["sleep", "2"], SLEEP, 0.0, None, 0)
    assert (b.host, b.argv, b.binary, b.start_time, b.kill_time) == ("h2", ["sleep", "0.5"], SLEEP, 1.0, 30.0)
    assert b.env == {"LC_ALL": "C"}
    assert a.source.endswith("sleep.yaml:6") and b.source.endswith("sleep.yaml:9")


def test_yaml_paths_are_relative_to_the_file(tmp_path, monkeypatch):
    sub = tmp_path / "sc"
    (sub / "bin").mkdir(parents=True)
    prog = sub / "bin" / "srv"
    prog.write_text("#!/bin/sh\n")
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    shutil.copy(ROOT / "examples/platforms/two_hosts.xml", sub / "plat.xml")
    mypath = tmp_path / "mypath"
    mypath.mkdir()
    (mypath / "onlyhere").write_text("#!/bin/sh\n")
    (mypath / "onlyhere").chmod(0o755)
    y = write(sub / "s.yaml", """
        platform: plat.xml
        processes:
          - host: h1
            path: ./bin/srv
            args: "--port 80 'a b'"
            cwd: bin
            start_time: 250ms
            expected_exit: null
          - host: h2
            path: onlyhere
            env: {PATH: %s, N: 3}
    """ % mypath)
    monkeypatch.chdir(tmp_path)  # not the YAML's directory
    a, b = load_yaml_scenario(y).processes
    assert a.argv == ["./bin/srv", "--port", "80", "a b"] and a.binary == str(prog.resolve())
    assert a.cwd == str((sub / "bin").resolve()) and a.start_time == 0.25 and a.expected_exit is None
    assert b.binary == str(mypath / "onlyhere") and b.env == {"PATH": str(mypath), "N": "3"}


YAML_ERRORS = [
    ("processes: []\n", "s.yaml:1: missing key 'platform'"),
    ("platform: plat.xml\n", "s.yaml:1: missing key 'processes'"),
    ("platform: plat.xml\nprocesses: []\n", "s.yaml:2: 'processes' must be a non-empty list"),
    ("platform: nope.xml\nprocesses: [{host: h1, path: sleep}]\n", "s.yaml:1: platform file not found: nope.xml"),
    ("platform: plat.xml\nprocess: []\n", "s.yaml:2: unknown key 'process'"),
    ("platform: plat.xml\nprocesses:\n  - path: sleep\n", "s.yaml:3: process #1: missing key 'host'"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    env: {A: 1}\n", "s.yaml:3: process #1: missing key 'path'"),
    ("platform: plat.xml\nprocesses:\n  - {host: h1, path: sleep}\n  - host: Hx\n    path: sleep\n",
     "s.yaml:4: process #2: unknown host 'Hx'"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: /no/such/bin\n",
     "s.yaml:4: process #1: program '/no/such/bin' not found"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: ./data.txt\n",
     "s.yaml:4: process #1: program './data.txt' is not executable"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    start_time: -2\n",
     "s.yaml:5: process #1: negative start_time -2"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    start_time: tomorrow\n",
     "s.yaml:5: process #1: invalid start_time 'tomorrow'"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    kill_time: 0\n",
     "s.yaml:5: process #1: kill_time 0 is not after start_time 0.0"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    argz: [1]\n",
     "s.yaml:5: process #1: unknown key 'argz'"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    args: {a: 1}\n",
     "s.yaml:5: process #1: 'args' must be a list"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    args: [true]\n",
     "s.yaml:4: process #1: 'args' item 0 is the YAML boolean true (written true, yes or on), not a string: "
     "quote it"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    args: [echo, no, x]\n",
     "s.yaml:4: process #1: 'args' item 1 is the YAML boolean false (written false, no or off)"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    args: [echo, ~]\n",
     "s.yaml:4: process #1: 'args' item 1 is YAML's null (written null, ~ or nothing)"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    cwd: nowhere\n",
     "s.yaml:5: process #1: cwd 'nowhere' is not a directory"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n    path: sleep\n    expected_exit: maybe\n",
     "s.yaml:5: process #1: invalid expected_exit 'maybe'"),
    ("platform: plat.xml\nprocesses:\n  - host: h1\n   path: sleep\n", "s.yaml:4: malformed YAML"),
    ("- just\n- a list\n", "s.yaml:1: a scenario is a mapping"),
    ("platform: plat.xml\nseed: lucky\nprocesses: [{host: h1, path: sleep}]\n",
     "s.yaml:2: 'seed': invalid seed 'lucky': an integer >= 0"),
    ("platform: plat.xml\nseed: -1\nprocesses: [{host: h1, path: sleep}]\n",
     "s.yaml:2: 'seed': invalid seed -1: an integer between 0 and 2**64-1"),
    ("platform: plat.xml\nseed: 1.5\nprocesses: [{host: h1, path: sleep}]\n",
     "s.yaml:2: 'seed': invalid seed 1.5: an integer >= 0"),
]


def test_yaml_seed(tmp_path):
    shutil.copy(ROOT / "examples/platforms/two_hosts.xml", tmp_path / "plat.xml")
    y = write(tmp_path / "s.yaml", "platform: plat.xml\nseed: 7\nprocesses: [{host: h1, path: sleep}]\n")
    assert load_scenario(y).seed == 7
    y.write_text("platform: plat.xml\nprocesses: [{host: h1, path: sleep}]\n")
    assert load_scenario(y).seed is None  # the runner's: --seed, else 1


@pytest.mark.parametrize("text,expected", YAML_ERRORS)
def test_yaml_errors(tmp_path, text, expected):
    shutil.copy(ROOT / "examples/platforms/two_hosts.xml", tmp_path / "plat.xml")
    (tmp_path / "data.txt").write_text("not a program")
    y = tmp_path / "s.yaml"
    y.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(y)
    assert str(exc.value).replace(str(tmp_path) + os.sep, "").startswith(expected)


def test_yaml_platform_errors_name_the_platform_file(tmp_path):
    (tmp_path / "plat.xml").write_text(DOCTYPE + '<platform version="4.1">\n<host id="a" speed="1Gf">\n</platform>')
    y = write(tmp_path / "s.yaml", "platform: plat.xml\nprocesses: [{host: a, path: sleep}]\n")
    with pytest.raises(ScenarioError, match=r"plat\.xml:5: malformed XML"):
        load_scenario(y)


def test_deployment_needs_a_platform(tmp_path):
    with pytest.raises(ScenarioError, match="needs a platform"):
        load_scenario(tmp_path / "deploy.xml")


# ---- expected_final_state (Shadow's term) ---------------------------------------------------------


def test_expected_final_state_in_yaml_and_deployment(tmp_path):
    from simterpose.scenario import FinalState

    plat = ROOT / "examples/platforms/two_hosts.xml"
    scen = write(tmp_path / "s.yaml", f"""
        platform: {plat}
        processes:
          - {{host: h1, args: [sleep, 9], kill_time: 5, expected_final_state: running}}
          - {{host: h1, args: ['true'], expected_final_state: {{exited: 3}}}}
          - {{host: h2, args: ['true'], expected_final_state: {{signaled: SEGV}}}}
    """)
    running, exited, signaled = load_yaml_scenario(scen).processes
    assert running.expected_final_state == FinalState("running") and running.expected_exit is None
    assert exited.expected_final_state == FinalState("exited", status=3) and exited.expected_exit == 3
    assert signaled.expected_final_state == FinalState("signaled", signal=11) and signaled.expected_exit == 139
    deploy = write(tmp_path / "d.xml", f"""
        <?xml version='1.0'?>
        <platform version="4.1">
          <actor host="h1" function="{SLEEP}" kill_time="4"><prop id="expected_final_state" value="running"/></actor>
          <actor host="h1" function="{SLEEP}"><prop id="expected_final_state" value="signaled SIGTERM"/></actor>
        </platform>
    """)
    a, b = load_deployment(deploy, plat).processes
    assert (str(a.expected_final_state), str(b.expected_final_state)) == ("running", "signaled SIGTERM")


@pytest.mark.parametrize("entry, message", [
    ("{host: h1, args: ['true'], expected_final_state: dead}", "expected running, {exited: N} or {signaled: SIGNAME}"),
    ("{host: h1, args: ['true'], expected_final_state: {signaled: SIGFOO}}", "unknown signal 'SIGFOO'"),
    ("{host: h1, args: ['true'], expected_final_state: running}", "'running' needs a kill_time"),
    ("{host: h1, args: ['true'], expected_exit: 0, expected_final_state: running}", "not both"),
])
def test_bad_expected_final_state(tmp_path, entry, message):
    scen = write(tmp_path / "s.yaml", f"""
        platform: {ROOT / "examples/platforms/two_hosts.xml"}
        processes:
          - {entry}
    """)
    with pytest.raises(ScenarioError, match=r"s.yaml:3: process #1: .*" + re.escape(message)):
        load_yaml_scenario(scen)
