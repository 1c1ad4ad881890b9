"""The SimGrid adapter against the real engine (each scenario in its own interpreter)."""

import textwrap

import pytest

from simterpose.scenario import load_platform_info
from simterpose.sim.predict import predict_executions, predict_sequence, predict_transfers

MB = 1_000_000
NO_CROSS = {"network/crosstraffic": 0}


def test_two_host_platform_inspection(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS, "CM02")
        emit({"hosts": [[h.name, h.speed, h.cores, h.ip] for h in sim.hosts],
              "ip": sim.ip("h2"), "speed": sim.host("h1").speed, "now": sim.now(),
              "version": S.SIMGRID_VERSION})
    """)
    assert sorted(out["hosts"]) == [["h1", 1e9, 1, "10.0.0.1"], ["h2", 1e9, 1, "10.0.0.2"]]
    assert out["ip"] == "10.0.0.2" and out["speed"] == 1e9 and out["now"] == 0.0
    assert out["_stderr"] == ""  # SimGrid's import and config chatter is silenced


def test_four_host_platform_loads(simrun, four_hosts):
    out = simrun("""
        sim = S.Simulation(FOUR_HOSTS, "LV08")
        emit({h.name: [h.speed, h.ip] for h in sim.hosts})
    """)
    assert out.pop("_stderr") == ""
    assert out == {"h1": [1e9, "10.0.0.1"], "h2": [1e9, "10.0.0.2"], "h3": [2e9, "10.0.0.3"],
                   "h4": [5e8, "10.0.0.4"]}
    info = load_platform_info(four_hosts)
    assert {h.name: h.speed for h in info.hosts} == {k: v[0] for k, v in out.items()}


def test_cores_and_missing_ip(simrun, tmp_path):
    plat = tmp_path / "p.xml"
    plat.write_text("""<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1"><zone id="z" routing="Full">
  <host id="a" speed="100Mf" core="4"/>
  <host id="b" speed="2Gf"><prop id="ip" value="192.168.1.9"/></host>
  <link id="l" bandwidth="1Gbps" latency="5us"/>
  <route src="a" dst="b"><link_ctn id="l"/></route>
</zone></platform>""")
    out = simrun(f"""
        sim = S.Simulation({str(plat)!r})
        emit({{h.name: [h.speed, h.cores, h.ip] for h in sim.hosts}})
    """)
    assert out["a"] == [1e8, 4, None] and out["b"] == [2e9, 1, "192.168.1.9"]


TRANSFER_1MB = """
    sim = S.Simulation(TWO_HOSTS, MODEL, EXTRA)
    res = {}
    def sender():
        t = S.transfer_async("h1", "h2", 1_000_000)
        S.wait(t)
        res["end"] = S.now()
        res["start"] = t.start_time
        res["finish"] = t.finish_time
    sim.spawn("sender", "h1", sender)
    sim.run()
    res["now"] = sim.now()
    emit(res)
"""


@pytest.mark.parametrize("model,extra", [("CM02", {}), ("CM02", NO_CROSS), ("LV08", {})])
def test_1mb_transfer_matches_engine_prediction(simrun, two_hosts, model, extra):
    out = simrun(f"MODEL = {model!r}\nEXTRA = {extra!r}\n" + textwrap.dedent(TRANSFER_1MB))
    [predicted] = predict_transfers(two_hosts, model, [("h1", "h2", MB, 0.0)], extra)
    assert out["end"] == pytest.approx(predicted, rel=1e-9)
    assert out["finish"] == pytest.approx(predicted, rel=1e-9) and out["start"] == 0.0


def test_transfer_durations_follow_model_parameters(two_hosts):
    link = {lk.name: lk for lk in load_platform_info(two_hosts).links}["link"]
    lat, bw = link.latency, link.bandwidth
    assert (lat, bw) == (0.01, 1e7)
    [cm02_plain] = predict_transfers(two_hosts, "CM02", [("h1", "h2", MB, 0.0)], NO_CROSS)
    [cm02] = predict_transfers(two_hosts, "CM02", [("h1", "h2", MB, 0.0)])
    [lv08] = predict_transfers(two_hosts, "LV08", [("h1", "h2", MB, 0.0)])
    # CM02 is latency + size/bandwidth ...
    assert cm02_plain == pytest.approx(lat + MB / bw, rel=1e-6)
    # ... and by default a reverse flow of 5 % of the bytes (the ACKs) shares the link.
    assert cm02 == pytest.approx(lat + 1.05 * MB / bw, rel=1e-6)
    # LV08: latency x 13.01, bandwidth x 0.97 (SimGrid's default factors for this model), same cross traffic.
    assert lv08 == pytest.approx(13.01 * lat + 1.05 * MB / (0.97 * bw), rel=1e-6)
    assert abs(lv08 - cm02) > 0.1


def test_two_flows_sharing_a_link_take_twice_as_long(simrun, two_hosts):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS, "CM02", {"network/crosstraffic": 0})
        ends = []
        def flows():
            a = S.transfer_async("h1", "h2", 1_000_000)
            b = S.transfer_async("h1", "h2", 1_000_000)
            S.wait(a); S.wait(b)
            ends.extend([a.finish_time, b.finish_time])
        sim.spawn("flows", "h1", flows)
        sim.run()
        emit({"ends": ends})
    """)
    alone = predict_transfers(two_hosts, "CM02", [("h1", "h2", MB, 0.0)], NO_CROSS)[0]
    both = predict_transfers(two_hosts, "CM02", [("h1", "h2", MB, 0.0)] * 2, NO_CROSS)
    assert out["ends"] == pytest.approx(both, rel=1e-9)
    assert both[0] == pytest.approx(0.01 + 2 * MB / 1e7, rel=1e-6)
    assert (both[0] - 0.01) == pytest.approx(2 * (alone - 0.01), rel=1e-6)


def test_ping_pong_matches_predict_sequence(simrun, two_hosts):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS, "LV08")
        dates = []
        def pinger():
            S.sleep_until(3.0)
            for _ in range(3):
                S.transfer("h1", "h2", 1000); dates.append(S.now())
                S.transfer("h2", "h1", 1000); dates.append(S.now())
        sim.spawn("pinger", "h1", pinger)
        sim.run()
        emit({"dates": dates})
    """)
    expected = predict_sequence(two_hosts, "LV08", [("h1", "h2", 1000), ("h2", "h1", 1000)] * 3, start_time=3.0)
    assert out["dates"] == pytest.approx(expected, rel=1e-9)
    assert expected[0] == pytest.approx(3.0 + 13.01 * 0.01 + 1.05 * 1000 / (0.97 * 1e7), rel=1e-6)


def test_execute_takes_flops_over_speed(simrun, four_hosts):
    out = simrun("""
        sim = S.Simulation(FOUR_HOSTS)
        res = {}
        def worker(name, flops):
            t0 = S.now(); S.execute(flops); res[name] = [S.this_host(), S.now() - t0]
        sim.spawn("w3", "h3", worker, "w3", 3e9)
        sim.spawn("w4", "h4", worker, "w4", 1e9)
        def async_worker():
            e = S.exec_async(2e9)
            res["pending"] = [S.test(e), S.remaining(e)]
            e.wait()
            res["async_end"] = S.now()
        sim.spawn("wa", "h1", async_worker)
        sim.run()
        res["speeds"] = {h.name: h.speed for h in sim.hosts}
        emit(res)
    """)
    assert out["w3"] == ["h3", pytest.approx(3e9 / out["speeds"]["h3"], rel=1e-9)]
    assert out["w4"] == ["h4", pytest.approx(1e9 / out["speeds"]["h4"], rel=1e-9)]
    assert out["pending"] == [False, 2e9]
    assert out["async_end"] == pytest.approx(2e9 / out["speeds"]["h1"], rel=1e-9)
    assert predict_executions(four_hosts, [("h3", 3e9, 1.0)]) == [pytest.approx(1.0 + 3e9 / 2e9)]


def test_sleep_for_and_sleep_until(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS)
        dates = []
        def sleeper():
            S.sleep_for(1.25); dates.append(S.now())
            S.sleep_until(4.0); dates.append(S.now())
            S.sleep_until(2.0); dates.append(S.now())   # in the past: returns at once
            S.sleep_for(0); dates.append(S.now())
        sim.spawn("sleeper", "h2", sleeper)
        sim.run()
        emit({"dates": dates, "end": sim.now()})
    """)
    assert out["dates"] == [1.25, 4.0, 4.0, 4.0] and out["end"] == 4.0


def test_wait_any_with_timeout(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS, "CM02", {"network/crosstraffic": 0})
        res = []
        def waiter():
            small = S.transfer_async("h1", "h2", 1_000_000)       # ends at 0.11
            big = S.transfer_async("h2", "h1", 5_000_000)         # other direction, same link
            res.append([S.wait_any([small, big], timeout=0.05), S.now()])
            res.append([S.wait_any([small, big], timeout=0), S.now()])   # poll
            res.append([S.wait_any([big, small]), S.now()])
            res.append([S.test(small), S.test(big), S.remaining(big) > 0])
            res.append([S.wait_any([big, small], timeout=100), S.now()])  # small is done already
            big.cancel()
        sim.spawn("waiter", "h1", waiter)
        sim.run()
        emit({"res": res})
    """)
    r = out["res"]
    assert r[0] == [None, pytest.approx(0.05)]
    assert r[1] == [None, pytest.approx(0.05)]
    assert r[2][0] == 1 and r[2][1] > 0.11  # both flows share the link, so the small one ends later
    assert r[3] == [True, False, True]
    assert r[4] == [1, pytest.approx(r[2][1])]


SIGNAL = """
    sim = S.Simulation(TWO_HOSTS)
    sig = S.Signal()
    log = []
    def server():
        log.append(["accept-wait", S.now()])
        ok = sig.wait()
        log.append(["woken", ok, S.now()])
        ok = sig.wait(timeout=2.5)
        log.append(["timeout", ok, S.now()])
        log.append(["zero", sig.wait(timeout=0), S.now()])
        ok = sig.wait(timeout=10)
        log.append(["woken-before-timeout", ok, S.now()])
    def client():
        S.sleep_for(1.75)
        log.append(["notify", sig.notify(), S.now()])
        S.sleep_until(4.25)   # the server's 2.5 s timeout fired at 4.25
        S.sleep_for(1.0)
        log.append(["notify2", sig.notify(), S.now()])
        log.append(["notify-nobody", sig.notify(), S.now()])
    sim.spawn("server", "h1", server)
    sim.spawn("client", "h2", client)
    sim.run()
    emit({"log": log})
"""


def test_signal_wakes_waiter_at_notify_date_and_times_out(simrun):
    log = simrun(SIGNAL)["log"]
    # Same-date events may be logged in either order: compare by tag.
    assert {entry[0]: entry[1:] for entry in log} == {
        "accept-wait": [0.0],
        "notify": [1, 1.75],
        "woken": [True, 1.75],
        "timeout": [False, 4.25],
        "zero": [False, 4.25],
        "notify2": [1, 5.25],
        "notify-nobody": [0, 5.25],
        "woken-before-timeout": [True, 5.25],
    }
    assert len(log) == 8


def test_signal_notify_all_and_event(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS)
        sig, ev = S.Signal(), S.Event()
        woken = []
        def waiter(i):
            sig.wait(); woken.append(["sig", i, S.now()])
            ok = ev.wait(timeout=1.0); woken.append(["ev", i, ok, S.now()])
        for i in range(3):
            sim.spawn(f"w{i}", "h1", waiter, i)
        def notifier():
            S.sleep_for(2)
            woken.append(["waiting", sig.waiting])
            woken.append(["notified", sig.notify_all()])
            S.sleep_for(0.5)
            ev.set()
            S.sleep_for(5)
            woken.append(["late", ev.wait(timeout=3), S.now()])   # already set: no wait
        sim.spawn("notifier", "h2", notifier)
        sim.run()
        emit({"woken": woken})
    """)
    w = out["woken"]
    assert ["waiting", 3] in w and ["notified", 3] in w
    assert sorted(x[1] for x in w if x[0] == "sig") == [0, 1, 2]
    assert all(x[2] == 2.0 for x in w if x[0] == "sig")
    assert [x[2:] for x in w if x[0] == "ev"] == [[True, 2.5]] * 3
    assert w[-1] == ["late", True, 7.5]


def test_spawn_from_actor_join_and_run_until(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS)
        log = []
        def child(tag):
            S.sleep_for(2); log.append([tag, S.this_host(), S.now()]); return tag * 2
        def parent():
            S.sleep_for(1)
            h = sim.spawn("child", "h2", child, "c")
            log.append(["joined", h.join(), S.now(), h.result])
            h2 = sim.spawn("child2", "h2", child, "d")
            log.append(["join-timeout", h2.join(timeout=0.5), S.now()])
        sim.spawn("parent", "h1", parent)
        sim.run_until(2.0)
        log.append(["paused", sim.now()])
        sim.run()
        log.append(["end", sim.now(), [repr(a) for a in sim.actors]])
        emit({"log": log})
    """)
    assert out["log"][:4] == [["paused", 2.0], ["c", "h2", 3.0], ["joined", True, 3.0, "cc"],
                              ["join-timeout", False, 3.5]]
    assert out["log"][4][:2] == ["d", "h2"] and out["log"][4][2] == 5.0
    assert out["log"][5][:2] == ["end", 5.0]


def test_mailbox_messaging(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS, "CM02", {"network/crosstraffic": 0})
        log = []
        def receiver():
            try:
                S.recv("box", timeout=0.5)
            except S.SimTimeout:
                log.append(["timeout", S.now()])
            log.append(["got", S.recv("box"), S.now()])
            log.append(["got", S.recv("box", timeout=10), S.now()])
        def sender():
            S.sleep_for(1)
            S.send_detached("box", {"n": 1}, 1_000_000)
            log.append(["detached", S.now()])
            S.send("box", [2], 0)
            log.append(["sent", S.now()])
        sim.spawn("r", "h2", receiver)
        sim.spawn("s", "h1", sender)
        sim.run()
        emit({"log": log})
    """)
    log = out["log"]
    assert log[0] == ["timeout", 0.5] and log[1] == ["detached", 1.0]
    got = [entry for entry in log if entry[0] == "got"]
    assert got == [["got", {"n": 1}, pytest.approx(1.11)], ["got", [2], pytest.approx(1.12)]]
    assert ["sent", pytest.approx(1.12)] in log


def test_actor_failure_is_reported_not_aborting(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS)
        def bad():
            S.sleep_for(1); raise ValueError("boom")
        def other():
            S.sleep_for(10)
        sim.spawn("bad", "h1", bad)
        o = sim.spawn("other", "h2", other)
        try:
            sim.run()
        except S.ActorFailed as exc:
            emit({"msg": str(exc), "cause": repr(exc.__cause__), "now": sim.now(), "other": repr(o)})
    """)
    assert "actor 'bad' on host 'h1' failed" in out["msg"] and out["cause"] == "ValueError('boom')"
    assert out["now"] == 1.0 and "killed" in out["other"]


def test_deadlock_and_second_engine(simrun):
    out = simrun("""
        sim = S.Simulation(TWO_HOSTS)
        sig = S.Signal()
        sim.spawn("stuck", "h1", sig.wait)
        sim.spawn("daemon", "h2", sig.wait, daemon=True)
        sim.spawn("sleeper", "h2", S.sleep_for, 3)
        res = {}
        try:
            sim.run()
        except S.Deadlock as exc:
            res["deadlock"] = [exc.date, [a.name for a in exc.actors]]
        try:
            S.Simulation(TWO_HOSTS)
        except S.SimulationError as exc:
            res["second"] = str(exc)
        emit(res)
    """)
    assert out["deadlock"] == [3.0, ["stuck"]]
    assert "only one SimGrid Engine" in out["second"]


def test_bad_model_and_missing_platform(simrun):
    out = simrun("""
        res = []
        for args in [(TWO_HOSTS, "nope"), ("/nonexistent.xml", "LV08")]:
            try:
                S.Simulation(*args)
            except S.SimulationError as exc:
                res.append(str(exc))
        emit({"res": res})
    """)
    assert "unknown network model 'nope'" in out["res"][0]
    assert "platform file not found" in out["res"][1]


def test_actor_blocking_on_real_work_freezes_the_clock(simrun):
    out = simrun("""
        import time
        sim = S.Simulation(TWO_HOSTS)
        log = []
        def real_worker():
            t0 = time.monotonic()
            time.sleep(0.2)                       # real work, outside SimGrid
            log.append(["real", S.now(), time.monotonic() - t0 >= 0.2])
            S.sleep_for(1)
            log.append(["real-done", S.now()])
        def sim_sleeper():
            S.sleep_for(0.5)
            log.append(["sim", S.now()])
        sim.spawn("real", "h1", real_worker)
        sim.spawn("sim", "h2", sim_sleeper)
        ev = S.Event()
        def timeout_waiter():
            log.append(["event-timeout", ev.wait(timeout=0.25), S.now(), ev.is_set()])
        sim.spawn("ev", "h2", timeout_waiter)
        sim.run()
        emit({"log": log})
    """)
    log = {entry[0]: entry[1:] for entry in out["log"]}
    assert log["real"] == [0.0, True]  # no simulated time passed while the actor did real work
    assert log["sim"] == [0.5] and log["real-done"] == [1.0]
    assert log["event-timeout"] == [False, 0.25, False]
