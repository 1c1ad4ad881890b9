"""Platform features beyond zones of hosts and explicit routes (issue 14): cabinets, clusters, wifi,
host names programs cannot use, and missing routes — read by our parser and by the real engine."""

from pathlib import Path

import pytest

from simterpose.realnet.topology import build_topology
from simterpose.scenario import (
    ScenarioError,
    host_aliases,
    hosts_file_lines,
    is_usable_host_name,
    load_platform_info,
)
from simterpose.sim.predict import predict_routes

PLATFORMS = Path(__file__).resolve().parent.parent.parent / "examples" / "platforms"

DOCTYPE = '<?xml version="1.0"?>\n<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">\n'


def platform(tmp_path, body: str, name="p.xml"):
    path = tmp_path / name
    path.write_text(DOCTYPE + '<platform version="4.1">\n' + body + "\n</platform>\n")
    return path


# ---- our parser -------------------------------------------------------------------------------------


def test_cabinet_hosts_and_links():
    info = load_platform_info(PLATFORMS / "cabinets.xml")
    assert info.host_names == ["host-1.cab1", "host-2.cab1", "host-1.cab2", "host-2.cab2"]
    assert {h.zone for h in info.hosts} == {"rack"}
    links = {lk.name: (lk.bandwidth, lk.latency, lk.sharing_policy) for lk in info.links}
    assert links["link_host-2.cab2"] == (125e6, pytest.approx(50e-6), "SPLITDUPLEX")
    assert links["rack-backbone"] == (1.25e9, pytest.approx(500e-6), "SHARED")


def test_cluster_implicit_links():
    info = load_platform_info(PLATFORMS / "cluster.xml")
    assert info.host_names == [f"node-{i}.cluster" for i in range(4)]
    assert info.zone_routing == {"cluster": "Cluster"}
    names = {lk.name: lk.sharing_policy for lk in info.links}
    assert names == {**{f"cluster_link_{i}": "SPLITDUPLEX" for i in range(4)}, "cluster_backbone": "SHARED"}


def test_wifi_link_rates_and_latency():
    info = load_platform_info(PLATFORMS / "wifi.xml")
    ap = next(lk for lk in info.links if lk.name == "ap")
    assert (ap.bandwidth, ap.rate_count, ap.sharing_policy, ap.zone) == (54e6 / 8, 3, "WIFI", "wlan")
    assert info.host("station2").props["wifi_mcs"] == "2"


def test_a_wifi_link_with_a_latency_is_refused_before_simgrid_aborts(tmp_path):
    bad = platform(tmp_path, '<zone id="w" routing="Wifi"><prop id="access_point" value="r"/>'
                             '<host id="s" speed="1Gf"/><router id="r"/>\n'
                             '<link id="ap" sharing_policy="WIFI" bandwidth="54Mbps" latency="1ms"/></zone>')
    with pytest.raises(ScenarioError, match=r"p.xml:5: wifi link 'ap': SimGrid accepts no latency"):
        load_platform_info(bad)


def test_which_names_need_an_alias():
    for good in ("h1", "node-0.cluster", "Station1", "a" * 63, "1a", "x.1a"):
        assert is_usable_host_name(good), good
    for bad in ("Cpu A", "100030591", "10.5", "my_host", "-h", "h-", "", "a" * 65, "a..b", "é"):
        assert not is_usable_host_name(bad), bad


def test_aliases_are_dns_labels_unique_and_stable():
    long1, long2 = "x" * 70 + "1", "x" * 70 + "2"
    names = ["Cpu A", "Cpu-A", "100030591", "h1", long1, long2, "a b", "a_b", "!!!"]
    aliases = host_aliases(names)
    assert aliases["Cpu A"] == "Cpu-A-2"  # "Cpu-A" is another host's name
    assert aliases["100030591"] == "host-100030591"
    assert aliases["a b"] == "a-b" and aliases["a_b"] == "a-b-2" and aliases["!!!"] == "host"
    assert aliases[long1] != aliases[long2] and all(len(aliases[n]) <= 63 for n in (long1, long2))
    assert "h1" not in aliases and "Cpu-A" not in aliases
    assert all(is_usable_host_name(a) for a in aliases.values())
    assert host_aliases(names) == aliases
    assert hosts_file_lines([("Cpu A", "10.0.0.1"), ("a_b", "10.0.0.2"), ("h1", "10.0.0.3")]) == [
        "10.0.0.1\tCpu-A", "10.0.0.2\ta-b a_b", "10.0.0.3\th1"]


def test_a_scenario_may_name_a_host_by_its_alias(tmp_path):
    from simterpose.scenario import load_yaml_scenario

    scen = tmp_path / "s.yaml"
    scen.write_text(f"platform: {PLATFORMS / 'host_names.xml'}\nprocesses:\n"
                    "  - {host: host-100030591, args: ['true']}\n  - {host: Cpu A, args: ['true']}\n")
    assert [p.host for p in load_yaml_scenario(scen).processes] == ["100030591", "Cpu A"]


# ---- the engine -------------------------------------------------------------------------------------


def test_routes_and_reachability_never_crash_on_missing_routes(simrun, tmp_path):
    # SimGrid 3.32 answers a missing route with an empty list (Full), a ValueError (Floyd), an abort
    # (None, Dijkstra) or a segfault (zones without a zoneRoute): the adapter asks in a forked child.
    three = '<host id="a" speed="1Gf"/><host id="b" speed="1Gf"/><host id="c" speed="1Gf"/>'
    link = '<link id="l" bandwidth="10MBps" latency="10ms"/><route src="a" dst="b"><link_ctn id="l"/></route>'
    files = {routing: platform(tmp_path, f'<zone id="w" routing="{routing}">{three}{link}</zone>', f"{routing}.xml")
             for routing in ("Full", "Floyd", "Dijkstra")}
    files["None"] = platform(tmp_path, f'<zone id="w" routing="None">{three}</zone>', "None.xml")
    files["zones"] = platform(tmp_path, '<zone id="w" routing="Full">'
                              '<zone id="z1" routing="Full"><host id="a" speed="1Gf"/></zone>'
                              '<zone id="z2" routing="Full"><host id="b" speed="1Gf"/></zone>'
                              '<zone id="z3" routing="Full"><host id="c" speed="1Gf"/></zone>'
                              '<link id="l" bandwidth="10MBps" latency="10ms"/>'
                              '<zoneRoute src="z1" dst="z2" gw_src="a" gw_dst="b"><link_ctn id="l"/></zoneRoute>'
                              '</zone>', "zones.xml")
    for kind, path in files.items():
        out = simrun(f"""
            sim = S.Simulation({str(path)!r}, "CM02")
            r = sim.route("a", "b")
            emit({{"ab": None if r is None else [[lk.name, lk.bandwidth, lk.latency] for lk in r.links],
                   "ac": sim.route("a", "c") is None, "ca": sim.reachable("c", "a"),
                   "cached": sim.route("a", "c") is sim.route("a", "c")}})
        """)
        assert out["_stderr"] == "", kind  # nothing of the child's abort leaks
        assert (out["ac"], out["ca"], out["cached"]) == (True, False, True), kind
        if kind == "None":
            assert out["ab"] is None
        else:
            assert out["ab"] == [["l", 1e7, 0.01]], kind


def test_the_constant_model_needs_no_route(simrun, tmp_path):
    # (it refuses links altogether: a platform for it has routing="None")
    path = platform(tmp_path, '<zone id="w" routing="None"><host id="a" speed="1Gf"/><host id="b" speed="1Gf"/></zone>')
    out = simrun(f"""
        sim = S.Simulation({str(path)!r}, "Constant")
        emit({{"ab": sim.reachable("a", "b"), "route": sim.route("a", "b")}})
        def go():
            S.transfer("a", "b", 1000)
        sim.spawn("t", "a", go)
        sim.run()
    """)
    assert (out["ab"], out["route"]) == (True, None)


def test_a_wifi_station_talks_at_its_modulations_rate(simrun):
    # station1 (wifi_mcs 0: 54 Mb/s) and station2 (wifi_mcs 2: 24 Mb/s) each receive 1 MB from the
    # wired server, alone: without attaching them SimGrid aborts the transfer.
    out = simrun(f"""
        sim = S.Simulation({str(PLATFORMS / "wifi.xml")!r}, "CM02", {{"network/crosstraffic": 0}})
        ends = {{}}
        def recv(station, start):
            S.sleep_until(start)
            S.transfer("server", station, 1_000_000)
            ends[station] = S.now() - start
        sim.spawn("a", "server", recv, "station1", 0.0)
        sim.spawn("b", "server", recv, "station2", 10.0)
        sim.run()
        emit(ends)
    """)
    # latency of the wired uplink + 1 MB at the station's rate (the 100 MB/s uplink is not the bottleneck)
    assert out["station1"] == pytest.approx(0.005 + 8e6 / 54e6, rel=0.01)
    assert out["station2"] == pytest.approx(0.005 + 8e6 / 24e6, rel=0.01)


def test_compare_topology_of_a_cluster_and_of_cabinets_from_simgrids_routes():
    cluster = load_platform_info(PLATFORMS / "cluster.xml")
    hosts = ["node-0.cluster", "node-3.cluster"]
    topo = build_topology(cluster, hosts, predict_routes(cluster.path, hosts))
    assert topo.core_links == ["cluster_backbone"] and topo.core_bw == 1.25e9
    assert topo.private_links == {"node-0.cluster": ["cluster_link_0"], "node-3.cluster": ["cluster_link_3"]}
    assert topo.latency[("node-3.cluster", "node-0.cluster")] == pytest.approx(600e-6)
    cab = load_platform_info(PLATFORMS / "cabinets.xml")
    hosts = ["host-1.cab1", "host-2.cab1", "host-2.cab2"]
    topo = build_topology(cab, hosts, predict_routes(cab.path, hosts))
    assert topo.core_links == ["rack-backbone"] and topo.private_bw == dict.fromkeys(hosts, 125e6)
    assert predict_routes(PLATFORMS / "no_route.xml", ["h1", "h3"]) == {("h1", "h3"): None, ("h3", "h1"): None}
