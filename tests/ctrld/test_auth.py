"""Authentication: loopback-only by default, token, TLS (with client certificates), unix socket
permissions and SO_PEERCRED."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from ctrld import auth
from ctrld.client import Client, CtrlError
from ctrld.protocol import codec
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import ROOT, arun, reopening_flood
from tests.ctrld.test_malformed import Raw

TOKEN = "s3cret-token-0123456789abcdef"


def _ctrld(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ctrld.daemon_cli", *args], capture_output=True, text=True, env=env, timeout=20)


def test_refuses_non_loopback_without_auth():
    r = _ctrld("--tcp", "0.0.0.0:0")
    assert r.returncode == 2
    assert "refusing to listen on non-loopback address 0.0.0.0 without authentication" in r.stderr
    assert "Traceback" not in r.stderr


def test_loopback_detection():
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("::") and not auth.is_loopback("192.0.2.1")


@pytest.fixture
def token_file(tmp_path):
    p = tmp_path / "token"
    p.write_text(TOKEN + "\n")
    return p


def test_token_required_on_tcp(start_daemon, token_file):
    d = start_daemon("--tcp", "0.0.0.0:0", "--token-file", str(token_file))

    async def go():
        async with await Client.connect(f"127.0.0.1:{d.port}", token=TOKEN) as c:
            ok = (await c.run(["echo", "in"])).stdout
        with pytest.raises(CtrlError) as wrong:
            await Client.connect(f"127.0.0.1:{d.port}", token="not-the-token-at-all")
        with pytest.raises(CtrlError) as missing:
            await Client.connect(f"127.0.0.1:{d.port}")
        return ok, wrong.value, missing.value

    ok, wrong, missing = arun(go())
    assert ok == b"in\n"
    assert "authentication required" in str(wrong) and "authentication required" in str(missing)

    # a client that skips Hello gets nothing run and is disconnected
    r = Raw(d)
    r.send(codec.encode(g.RunCommandT(path="/bin/true", args=["true"]))[4:])
    kind, err = r.recv()
    assert kind == "Error" and err.code == 13
    with pytest.raises((EOFError, ConnectionError)):
        r.recv()
    # the unix socket relies on peer credentials, no token needed
    async def via_unix():
        async with await Client.connect(d.unix) as c:
            return (await c.run(["true"])).exit_code
    assert arun(via_unix()) == 0


def test_unix_socket_is_private(daemon):
    path = daemon.unix[len("unix:"):]
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_peer_credentials_checked(start_daemon):
    # A directory 'nobody' can traverse, and the socket opened up to everyone afterwards: only
    # SO_PEERCRED stands between another uid and the daemon.
    d_dir = tempfile.mkdtemp(prefix="ctrld-peercred-")
    try:
        os.chmod(d_dir, 0o711)
        sock = os.path.join(d_dir, "s.sock")
        d = start_daemon("--unix", sock, tcp=False)
        os.chmod(sock, 0o666)
        probe = (
            "import socket,struct,sys\n"
            f"s=socket.socket(socket.AF_UNIX); s.connect({sock!r}); s.settimeout(5)\n"
            "data=b''\n"
            "while True:\n"
            "    c=s.recv(4096)\n"
            "    if not c: break\n"
            "    data+=c\n"
            "sys.stdout.write(data.hex())\n"
        )
        py = shutil.which("python3", path="/usr/bin:/bin") or sys.executable  # the venv may be unreachable for nobody
        out = subprocess.run([py, "-c", probe], user=65534, group=65534, capture_output=True,
                             text=True, timeout=20, env={"PATH": os.environ["PATH"]})
        assert out.returncode == 0, out.stderr
        data = bytes.fromhex(out.stdout)
        frames = codec.FrameSplitter().feed(data)
        kinds = [codec.decode(f) for f in frames]
        assert kinds and kinds[0][0] == "Error" and "uid 65534 is not allowed" in kinds[0][1].message
        assert len(kinds) == 1  # refused before the greeting: nothing else
        assert d.alive()
    finally:
        shutil.rmtree(d_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")

    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return d


def test_tls_with_client_certificates(start_daemon, pki):
    d = start_daemon("--tcp", "0.0.0.0:0", "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                     "--tls-client-ca", str(pki / "ca.pem"), unix=False)
    addr = f"127.0.0.1:{d.port}"

    async def go():
        good = auth.client_tls_context(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
        async with await Client.connect(addr, ssl=good) as c:
            out = (await c.run(["echo", "over tls"])).stdout
        failures = []
        for ctx in (auth.client_tls_context(str(pki / "ca.pem")), None):  # no client cert / plain TCP
            try:
                c = await Client.connect(addr, ssl=ctx, timeout=3)
                await c.run(["true"])
                failures.append(None)
            except Exception as e:
                failures.append(e)
        return out, failures

    out, failures = arun(go())
    assert out == b"over tls\n"
    assert all(f is not None for f in failures), "a client without certificate got in"
    assert d.alive()


def test_tls_handshakes_count_as_unauthenticated_connections(start_daemon, pki):
    """asyncio ran TLS handshakes before the daemon saw the connection: 3 000 peers that never
    finished theirs held 3 000 descriptors and 882 MiB (a 256 KiB buffer each), beyond every limit.
    They are now counted at accept and evicted like connections owing their Hello."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    d = start_daemon("--tcp", "0.0.0.0:0", "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                     "--tls-client-ca", str(pki / "ca.pem"), unix=False)
    good = auth.client_tls_context(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))
    idle = []
    try:
        for i in range(1500):
            s = socket.create_connection(("127.0.0.1", d.port))
            if i % 2:
                s.send(b"\x16\x03\x01\x02\x00")  # a TLS record header, then nothing
            idle.append(s)

        async def go():
            async with await Client.connect(f"127.0.0.1:{d.port}", ssl=good) as c:
                return (await c.run(["echo", "in"])).stdout

        assert arun(go()) == b"in\n"
        # Counted once the daemon has caught up with the flood: while it accepts, up to 100
        # accepted sockets per wake-up wait for their connection_made and evicted ones for their
        # close on the next loop iteration (233 seen once in CI, with a busy host).  Before the fix
        # the 1 500 stayed open for asyncio's 60 s handshake timeout, so 5 s tells them apart.
        deadline = time.monotonic() + 5
        while (fds := len(os.listdir(f"/proc/{d.pid}/fd"))) >= 200 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert fds < 200, f"{fds} descriptors for connections that proved nothing"
    assert d.memory_kib()[1] < 200 * 1024, f"daemon peaked at {d.memory_kib()[1] / 1024:.0f} MiB"
    assert d.alive()


def test_certificate_holder_gets_in_while_idle_tls_connections_reconnect(start_daemon, pki):
    """Evicting the oldest connection still in its TLS handshake let a flood that re-opens every
    evicted idle connection evict the certificate holder mid-handshake (0 of 10 served): the
    connections that never sent a byte go first."""
    d = start_daemon("--tcp", "127.0.0.1:0", "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                     "--tls-client-ca", str(pki / "ca.pem"), unix=False)
    good = auth.client_tls_context(str(pki / "ca.pem"), str(pki / "client.pem"), str(pki / "client.key"))

    async def holder():
        try:
            async with await Client.connect(f"127.0.0.1:{d.port}", ssl=good, timeout=10) as c:
                return (await c.run(["echo", "in"])).stdout
        except CtrlError as e:
            return str(e)

    with reopening_flood("127.0.0.1", d.port, 400):
        outcomes = [arun(holder()) for _ in range(6)]
    assert outcomes == [b"in\n"] * 6, outcomes


def test_tls_cli_flags_validation():
    r = _ctrld("--tcp", "127.0.0.1:0", "--tls-cert", "x.pem")
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = _ctrld("--tcp", f"127.0.0.1:{s.getsockname()[1]}")
    assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_cli_over_tls_with_token(start_daemon, pki, token_file):
    d = start_daemon("--tcp", "0.0.0.0:0", "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                     "--token-file", str(token_file), unix=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "ctrld.ctrl_cli", "-c", f"127.0.0.1:{d.port}", "--tls-ca", str(pki / "ca.pem")]
    ok = subprocess.run([*base, "--token-file", str(token_file), "run", "--", "echo", "secure"],
                        capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0 and ok.stdout == "secure\n", ok.stderr
    no_token = subprocess.run([*base, "run", "--", "true"], capture_output=True, text=True, env=env, timeout=30)
    assert no_token.returncode == 255 and "authentication required" in no_token.stderr
