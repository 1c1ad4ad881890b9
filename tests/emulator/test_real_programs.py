"""Real, unmodified programs from Debian run on the simulated platform (issue 12).

Each runs in both mediation modes; the deterministic ones (`--cpu-model none`) are checked against
the dates the platform implies (two_hosts.xml: one 10 MB/s, 10 ms link; CM02), the others with
`--cpu-model measured` too, for their output. The programs come from the setup script (golang-go,
nginx-light, redis-server, memcached, libmemcached-tools, haproxy, coreutils, Python's asyncio); the Go
sources are examples/go/, built by `make toys`.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from net_helpers import ROOT, emulate, py

MODES = ["address-translation", "full-mediation"]
GO = ROOT / "build" / "go"


def prog(host: str, *argv, **extra) -> dict:
    return {"host": host, "path": str(argv[0]), "args": [str(a) for a in argv[1:]], **extra}


def server(host: str, *argv, **extra) -> dict:
    """A server that runs until its kill date (Shadow's expected_final_state: running)."""
    return prog(host, *argv, kill_time=extra.pop("kill_time", 5), expected_final_state="running", **extra)


# -- Go --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cpu_model", ["none", "measured"])
@pytest.mark.parametrize("mode", MODES)
def test_go_hello_sleep_and_ticker_at_their_simulated_dates(tmp_path, mode, cpu_model):
    r = emulate(tmp_path, [prog("h1", GO / "hello")], mode, cpu_model=cpu_model).check_ok()
    # Started at date 0 (MONOTONIC must not read 0), a 100 ms sleep, then 4 ticks of 250 ms.
    lines = r.stdout(0).splitlines()
    if cpu_model == "none":
        assert lines == ["hello", "slept 100ms", "ticked 1.1s"]
        assert r.end(0) == pytest.approx(1.1, abs=1e-6)
    else:   # the runtime's own computing is charged too: a little later
        assert lines[0] == "hello" and lines[1].startswith("slept 10") and lines[2].startswith("ticked 1.1")
        assert 1.1 <= r.end(0) < 1.2


@pytest.mark.parametrize("cpu_model", ["none", "measured"])
@pytest.mark.parametrize("mode", MODES)
def test_go_net_http_keep_alive_with_a_2MB_body(tmp_path, mode, cpu_model):
    r = emulate(tmp_path, [prog("h1", GO / "httpd", 8080, kill_time=30), prog("h2", GO / "httpc", "h1:8080", start_time=0.5)],
                mode, model="CM02", cpu_model=cpu_model).check_ok()
    big = hashlib.sha256(b"0123456789abcdef" * 128 * 1024).hexdigest()
    small = hashlib.sha256(b"hello\n").hexdigest()
    assert r.stdout(1).splitlines() == [
        f"/small 200 6 {small}", f"/big 200 2097152 {big}", f"/small 200 6 {small}",
        f"/big 200 2097152 {big}", f"/quit 200 4 {hashlib.sha256(b'bye' + bytes([10])).hexdigest()}",
        "connections 1",  # keep-alive: one connection for the five requests
    ]
    # 5 requests (a round trip each, 20 ms) and two 2 MiB bodies at 10 MB/s after the handshake.
    assert r.end(1) - 0.5 > 0.02 + 5 * 0.02 + 2 * 2097152 / 10e6


# -- Python asyncio --------------------------------------------------------------------------------

ASYNCIO = r"""
import asyncio, time
async def main():
    t0 = time.monotonic()
    await asyncio.sleep(0.5)
    print("slept", round(time.monotonic() - t0, 6))
    try:
        await asyncio.wait_for(asyncio.sleep(10), 0.25)
    except asyncio.TimeoutError:
        print("timed out", round(time.monotonic() - t0, 6))
asyncio.run(main())
"""

ECHO_SERVER = r"""
import asyncio
async def echo(reader, writer):
    while data := await reader.read(1000):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "0.0.0.0", 7000)
    async with server:
        await asyncio.sleep(3)
asyncio.run(main())
"""

ECHO_CLIENT = r"""
import asyncio, time
async def main():
    reader, writer = await asyncio.open_connection("h1", 7000)
    t0 = time.monotonic()
    for i in range(10):
        writer.write(b"x" * 100)
        assert await reader.readexactly(100) == b"x" * 100
    print("10 echoes in", round(time.monotonic() - t0, 6))
    writer.close()
    await writer.wait_closed()
asyncio.run(main())
"""


@pytest.mark.parametrize("cpu_model", ["none", "measured"])
@pytest.mark.parametrize("mode", MODES)
def test_asyncio_sleep_wait_for_and_echo(tmp_path, mode, cpu_model):
    r = emulate(tmp_path, [py("h1", ASYNCIO), py("h1", ECHO_SERVER), py("h2", ECHO_CLIENT, start_time=0.5)],
                mode, model="CM02", cpu_model=cpu_model).check_ok()
    if cpu_model == "none":
        assert r.stdout(0) == "slept 0.5\ntimed out 0.75\n"
        # 10 round trips: 20 ms of latency, and 100 B each way at 10 MB/s
        assert 0.2002 <= float(r.stdout(2).split()[-1]) < 0.201
        # asyncio turns its 3 s timer into whole-millisecond epoll_wait timeouts, as on Linux
        assert 3.0 <= r.end(1) < 3.01
    else:
        slept, timed_out = (float(line.split()[-1]) for line in r.stdout(0).splitlines())
        assert 0.5 <= slept < 0.6 and 0.75 <= timed_out < 0.9
        assert 0.2 <= float(r.stdout(2).split()[-1]) < 0.3


# -- coreutils timeout (POSIX timers) ----------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_coreutils_timeout_stops_a_command_at_its_simulated_date(tmp_path, mode):
    script = ("timeout 1.5 sleep 5; echo rc=$?; timeout -s INT 0.5 sleep 9; echo rc=$?; "
              "timeout 5 sleep 1; echo rc=$?")
    r = emulate(tmp_path, [prog("h1", "/bin/bash", "-c", script)], mode).check_ok()
    assert r.stdout(0) == "rc=124\nrc=124\nrc=0\n"
    assert r.end(0) == pytest.approx(3.0, abs=1e-6)


# -- nginx ---------------------------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
user root;
master_process {master};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  sendfile {sendfile};
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 8080; root {d}/www; }}
}}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("nginx")
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text("<h1>hello from nginx</h1>\n")
    body = hashlib.sha256(b"seed").digest() * (2 * 1024 * 1024 // 32)
    (d / "www" / "big.bin").write_bytes(body)
    return d, hashlib.md5(body).hexdigest()


@pytest.mark.parametrize("master,sendfile,cpu_model", [("on", "on", "none"), ("on", "off", "none"),
                                                      ("off", "on", "none"), ("off", "off", "none"),
                                                      ("on", "on", "measured")])
@pytest.mark.parametrize("mode", MODES)
def test_nginx_serves_a_page_and_a_2MB_file_to_curl_and_wget(tmp_path, site, mode, master, sendfile, cpu_model):
    d, md5 = site
    conf = tmp_path / "nginx.conf"
    run_dir = tmp_path / "nginx"
    run_dir.mkdir()
    shutil.copytree(d / "www", run_dir / "www")
    conf.write_text(NGINX_CONF.format(master=master, sendfile=sendfile, d=run_dir))
    client = ("curl -s http://h1:8080/; curl -s http://h1:8080/big.bin | md5sum; "
              "wget -q -O - http://h1:8080/big.bin | md5sum")
    r = emulate(tmp_path, [server("h1", "/usr/sbin/nginx", "-c", conf),
                           prog("h2", "/bin/bash", "-c", client, start_time=0.5)], mode, model="CM02",
                cpu_model=cpu_model).check_ok()
    assert r.stdout(1) == f"<h1>hello from nginx</h1>\n{md5}  -\n{md5}  -\n"
    # Each 2 MiB download takes at least its size at 10 MB/s.
    assert r.end(1) - 0.5 > 2 * 2 * 1024 * 1024 / 10e6
    assert "exited on signal" not in (run_dir / "error.log").read_text()


# -- redis and memcached, default configurations ---------------------------------------------------

@pytest.mark.parametrize("cpu_model", ["none", "measured"])
@pytest.mark.parametrize("mode", MODES)
def test_redis_with_its_default_configuration_serves_cli_and_benchmark(tmp_path, mode, cpu_model):
    # The default configuration listens on 0.0.0.0 and [::] (IPV6_V6ONLY) and starts jemalloc's
    # background thread; protected mode is Redis's own refusal of non-loopback clients.
    client = ("redis-cli -h h1 set k hello && redis-cli -h h1 get k && "
              "redis-benchmark -h h1 -n 200 -c 4 -t set,get -q --csv")
    r = emulate(tmp_path, [server("h1", "/usr/bin/redis-server", "--protected-mode", "no", cwd=str(tmp_path)),
                           prog("h2", "/bin/bash", "-c", client, start_time=0.5)], mode, model="CM02",
                cpu_model=cpu_model).check_ok()
    lines = r.stdout(1).splitlines()
    assert lines[:2] == ["OK", "hello"]
    assert [line.split(",")[0] for line in lines[3:]] == ['"SET"', '"GET"']
    # 200 requests over 4 connections, one 20 ms round trip each: about 200 requests/s.
    for line in lines[3:]:
        assert 150 < float(line.split(",")[1].strip('"')) < 210


@pytest.mark.parametrize("cpu_model", ["none", "measured"])
@pytest.mark.parametrize("mode", MODES)
def test_memcached_with_its_default_configuration_serves_clients(tmp_path, mode, cpu_model):
    (tmp_path / "greeting").write_text("hello memcached\n")
    client = ("memccp --servers=h1 greeting && memccat --servers=h1 greeting && "
              "memcstat --servers=h1 | grep -E 'curr_items'")
    # Started as root, memcached requires -u to drop privileges (its own rule).
    r = emulate(tmp_path, [server("h1", "/usr/bin/memcached", "-u", "root"),
                           prog("h2", "/bin/bash", "-c", client, start_time=0.5, cwd=str(tmp_path))],
                mode, model="CM02", cpu_model=cpu_model).check_ok()
    assert r.stdout(1).split() == ["hello", "memcached", "curr_items:", "1"]


@pytest.mark.parametrize("mode", MODES)
def test_memcslap_load_with_concurrent_threads_and_no_cpu_model(tmp_path, mode):
    # memcslap's 8 threads spin on a start flag that its main thread sets after syscalls of the same
    # round: with a free CPU model they are preempted at no cost (the run hung before).
    r = emulate(tmp_path, [server("h1", "/usr/bin/memcached", "-u", "root"),
                           prog("h2", "/usr/bin/memcslap", "--servers=h1:11211", "--concurrency=8",
                                "--execute-number=200", start_time=0.5)],
                mode, model="CM02", cpu_model="none", timeout=240).check_ok()
    assert "Run time:" in r.stdout(1) or "Time total:" in r.stdout(1), r.stdout(1)


# -- haproxy: a load balancer with a watchdog timer on each thread's CPU-time clock -----------------

HAPROXY_CFG = """
global
    log stderr format raw local0
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 0.0.0.0:8000
    default_backend be
backend be
    balance roundrobin
    server s1 h1:8081
    server s2 h2:8082
"""


@pytest.mark.parametrize("mode", MODES)
def test_haproxy_balances_curl_requests_over_two_http_servers(tmp_path, mode):
    # haproxy 2.6 arms a timer on each thread's CPU-time clock (its watchdog): the run used to end
    # at that timer_create ("unsupported syscall"). Round robin: the requests alternate.
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG)
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "index.html").write_text(f"backend {name}\n")
    client = "for i in 1 2 3 4; do curl -sS http://h1:8000/index.html; done"
    r = emulate(tmp_path, [server("h1", "/usr/bin/python3", "-m", "http.server", "-d", tmp_path / "one", "8081"),
                           server("h2", "/usr/bin/python3", "-m", "http.server", "-d", tmp_path / "two", "8082"),
                           server("h1", "/usr/sbin/haproxy", "-db", "-f", cfg, start_time=0.5),
                           prog("h2", "/bin/sh", "-c", client, start_time=1)],
                mode, model="CM02", cpu_model="none").check_ok()
    assert r.stdout(3) == "backend one\nbackend two\nbackend one\nbackend two\n"


def test_the_programs_are_the_debian_ones():
    # The point of these tests is unmodified third-party binaries: make sure they are the real ones.
    for path in ("/usr/sbin/nginx", "/usr/bin/redis-server", "/usr/bin/memcached", "/usr/bin/memccp",
                 "/usr/sbin/haproxy"):
        assert os.access(path, os.X_OK), path
    for name in ("hello", "httpd", "httpc"):
        assert (GO / name).is_file(), "run `make toys` (it builds examples/go/)"


# -- iperf3 with --cpu-model none: its busy select loop must let time advance ------------------------

@pytest.mark.parametrize("mode", MODES)
def test_iperf3_sends_20MiB_with_no_cpu_model(tmp_path, mode):
    # The client selects on an always-writable socket in a loop that never blocks: only the
    # busy-wait latency (simterpose/busy_wait.py) lets the simulated clock move.
    r = emulate(tmp_path, [prog("h1", "/usr/bin/iperf3", "-s", "-1", "-J", "-p", 5201),
                           prog("h2", "/usr/bin/iperf3", "-c", "h1", "-p", 5201, "-n", "20M", "-J", start_time=0.5)],
                mode, model="CM02").check_ok()
    import json

    sent = json.loads(r.stdout(1))["end"]["sum_sent"]
    assert sent["bytes"] == 20 * 1024 * 1024
    # 20 MiB over the 10 MB/s link: just over 2 s (CM02 carries ~97 % of the bandwidth).
    assert 2.0 < r.end(1) - 0.5 < 2.6
    assert 70e6 < sent["bits_per_second"] < 85e6


# -- Python multiprocessing: futexes shared between processes, threads woken while others run ------

MULTIPROCESSING = r"""
import multiprocessing as mp
def square(x):
    return x * x
if __name__ == "__main__":
    with mp.Pool(2) as pool:
        print(pool.map(square, range(10)))
    q = mp.Queue()
    p = mp.Process(target=q.put, args=(42,))
    p.start()
    print(q.get())
    p.join()
    lock = mp.Lock()           # a semaphore in shared memory: released by another process
    lock.acquire()
    p = mp.Process(target=lock.release)
    p.start()
    print("acquired across processes:", lock.acquire(timeout=5))
    p.join()
"""


@pytest.mark.parametrize("mode", MODES)
def test_python_multiprocessing_pool_queue_and_shared_lock(tmp_path, mode):
    r = emulate(tmp_path, [py("h1", MULTIPROCESSING)], mode).check_ok()
    assert r.stdout(0) == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n42\nacquired across processes: True\n"
    assert r.end(0) < 1.0   # no lost wake-up: nothing waited for a timeout
