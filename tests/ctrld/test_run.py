"""Running commands through the client library: output, exit/signal, exec failure, timeouts,
resource usage, whole-tree kill, request ids, disconnect behaviour."""

from __future__ import annotations

import asyncio
import errno
import signal
import time

import pytest

from ctrld.client import Client, CtrlError, RunHandle
from ctrld.protocol.generated import ctrld_generated as g
from tests.ctrld.conftest import arun, pid_alive, wait_until


async def _client(daemon, unix=False):
    return await Client.connect(daemon.unix if unix else daemon.tcp)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_echo_output_and_events(daemon, unix):
    async def go():
        async with await _client(daemon, unix) as c:
            h = await c.start(["/bin/echo", "hello", "world"])
            kinds, rids = [], set()
            out = b""
            async for ev in h.events():
                kinds.append(ev.kind)
                rids.add(ev.request_id)
                if ev.kind == "OutputChunk":
                    out += ev.body.data
                    assert ev.body.timeNs > 0
                if ev.kind == "ProcessTerminated":
                    term = ev.body
            return kinds, rids, out, term, h.request_id

    kinds, rids, out, term, rid = arun(go())
    assert kinds[:2] == ["ProcessLaunched", "ExecveTerminated"] and kinds[-1] == "ProcessTerminated"
    assert rids == {rid}
    assert out == b"hello world\n"
    assert term.exitCode == 0 and term.signal == 0 and not term.timedOut and term.timeNs > 0


def test_exit_code_and_stderr_separate(daemon):
    r = arun(_run(daemon, ["sh", "-c", "echo out; echo err >&2; exit 42"]))
    assert (r.exit_code, r.signal, r.status) == (42, 0, 42)
    assert r.stdout == b"out\n" and r.stderr == b"err\n"


async def _run(daemon, argv, **kw):
    async with await _client(daemon) as c:
        return await c.run(argv, **kw)


def test_killed_by_signal_is_not_an_exit_code(daemon):
    r = arun(_run(daemon, ["sh", "-c", "kill -TERM $$"]))
    assert r.signal == signal.SIGTERM and r.exit_code == -1 and r.status == 128 + 15


def test_exec_failure_distinct_from_exit(daemon):
    r = arun(_run(daemon, ["/no/such/binary", "x"]))
    assert r.exec_failed and r.exec_errno == errno.ENOENT and "No such file" in r.message
    assert r.pid > 0
    r2 = arun(_run(daemon, ["/etc/passwd"]))  # not executable
    assert r2.exec_failed and r2.exec_errno == errno.EACCES


def test_bad_cwd_is_exec_failure(daemon, tmp_path):
    r = arun(_run(daemon, ["/bin/true"], cwd=str(tmp_path / "missing")))
    assert r.exec_failed and r.exec_errno == errno.ENOENT
    # The message names the missing directory, not the program (which exists).
    assert r.message == f"No such file or directory: {tmp_path / 'missing'}"


def test_bad_cwd_with_raw_environment_names_the_directory(daemon, tmp_path):
    """An envp entry without "=" takes the fork+execve path (_start_raw); a missing cwd there was
    reported as "No such file or directory: /bin/pwd", sending the user after the program.  It must
    say what the other spawn paths say, with the seed's sequence of events for an exec failure."""
    missing = str(tmp_path / "missing")

    async def go():
        async with await _client(daemon) as c:
            # Client.start() only sends NAME=VALUE entries: the raw request is built here.
            rid, req = c._new_request({"ProcessTerminated", "ChildCreationError", "Error"})
            c._send(g.RunCommandT(path="/bin/pwd", args=["pwd"], requestId=rid, envp=["badenvp"], cwd=missing))
            return [ev async for ev in RunHandle(c, rid, req).events()]

    events = arun(go())
    assert [ev.kind for ev in events] == ["ProcessLaunched", "ExecveTerminated", "ProcessTerminated"]
    launched, ex, term = (ev.body for ev in events)
    assert launched.pid > 0 and ex.pid == launched.pid and not ex.success
    assert ex.execErrno == errno.ENOENT
    assert ex.message == f"No such file or directory: {missing}"
    assert term.execFailed and term.exitCode == 127 and term.message == ex.message


def test_env_and_cwd(daemon, tmp_path):
    r = arun(_run(daemon, ["sh", "-c", 'echo "$A-$B"; pwd; test -n "$PYTHONPATH"'], env={"A": "1", "B": "two"}, cwd=str(tmp_path)))
    assert r.exit_code == 0
    assert r.stdout.decode().splitlines() == ["1-two", str(tmp_path)]
    # the daemon has PYTHONPATH (conftest): a clean environment must not
    r = arun(_run(daemon, ["/bin/sh", "-c", 'test -z "$PYTHONPATH" && test "$A" = 1'], env={"A": "1"}, inherit_env=False))
    assert r.exit_code == 0


def test_stdout_to_file(daemon, tmp_path):
    out = tmp_path / "out.log"
    r = arun(_run(daemon, ["sh", "-c", "echo to-file; echo captured >&2"], stdout_path=str(out)))
    assert r.exit_code == 0 and out.read_text() == "to-file\n" and r.stdout == b"" and r.stderr == b"captured\n"


def test_timeout_sigterm(daemon):
    t0 = time.monotonic()
    r = arun(_run(daemon, ["sleep", "30"], timeout=0.3))
    assert r.timed_out and r.signal == signal.SIGTERM
    assert 0.29 <= r.wall_s < 2 and time.monotonic() - t0 < 5


def test_timeout_grace_then_sigkill(daemon):
    # The shell ignores SIGTERM: the grace period expires and SIGKILL follows.
    r = arun(_run(daemon, ["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"], timeout=0.2, grace=0.3))
    assert r.timed_out and r.signal == signal.SIGKILL
    assert 0.45 <= r.wall_s < 3


def test_rusage_and_wall(daemon):
    # ~0.3 s of user CPU in a busy loop
    r = arun(_run(daemon, ["python3", "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass"]))
    assert r.exit_code == 0
    assert 0.25 <= r.user_cpu_s + r.sys_cpu_s < 3
    assert r.wall_s >= 0.25
    assert r.max_rss_kb > 1000


def test_kill_whole_process_tree(daemon, tmp_path):
    pidfile = tmp_path / "child.pid"

    async def go():
        async with await _client(daemon) as c:
            h = await c.start(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
            async for ev in h.events():
                if ev.kind == "ExecveTerminated":
                    break
            assert await asyncio.to_thread(wait_until, lambda: pidfile.exists() and pidfile.read_text().strip())
            grandchild = int(pidfile.read_text())
            assert pid_alive(grandchild)
            await c.kill(h.pid, sig=signal.SIGTERM)
            r = await h.wait()
            return r, grandchild

    r, grandchild = arun(go())
    assert r.signal == signal.SIGTERM
    assert wait_until(lambda: not pid_alive(grandchild), 3), "the background sleep survived the kill"


def test_kill_by_request_id_and_unknown(daemon):
    async def go():
        async with await _client(daemon) as c:
            h = await c.start(["sleep", "30"])
            await c.kill(request_id=h.request_id, sig=signal.SIGINT)
            r = await h.wait()
            with pytest.raises(CtrlError) as e:
                await c.kill(request_id=h.request_id)
            with pytest.raises(CtrlError):
                await c.kill(pid=999999)
            return r, e.value

    r, err = arun(go())
    assert r.signal == signal.SIGINT
    assert err.code == errno.ESRCH and "no running command" in str(err)


def test_concurrent_commands_one_connection(daemon):
    async def go():
        async with await _client(daemon) as c:
            handles = [await c.start(["sh", "-c", f"sleep 0.{9 - i}; echo {i}; exit {i}"]) for i in range(8)]
            done_order = []

            async def collect(i, h):
                r = await h.wait()
                done_order.append(i)
                return r

            results = await asyncio.gather(*(collect(i, h) for i, h in enumerate(handles)))
            return handles, results, done_order

    handles, results, order = arun(go())
    assert len({h.request_id for h in handles}) == 8
    for i, r in enumerate(results):
        assert r.exit_code == i and r.stdout == f"{i}\n".encode()
    assert order[0] == 7 and order[-1] == 0  # they ran in parallel, shortest first


def test_large_output_arrives_complete(daemon):
    r = arun(_run(daemon, ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"]))
    assert r.exit_code == 0 and len(r.stdout) == 3_000_000 and set(r.stdout) == {ord("x")}


def test_disconnect_keeps_command_unless_asked(daemon):
    async def start(kill_on_disconnect):
        c = await _client(daemon)
        h = await c.start(["sleep", "30"], kill_on_disconnect=kill_on_disconnect)
        async for ev in h.events():
            if ev.kind == "ProcessLaunched":
                break
        await c.close()
        return h.pid

    kept = arun(start(False))
    killed = arun(start(True))
    try:
        assert wait_until(lambda: not pid_alive(killed), 3)
        time.sleep(0.2)
        assert pid_alive(kept)
    finally:
        async def cleanup():
            async with await _client(daemon) as c:
                await c.kill(kept)
        arun(cleanup())
    assert wait_until(lambda: not pid_alive(kept), 3)


def test_defer_start_holds_start_events_until_output_or_end(daemon):
    """RunCommand.defer_start (what Client.run asks for): the owner gets ProcessLaunched and
    ExecveTerminated with the command's first output (before it, in order) or with its end, while a
    subscriber gets them at once; without it they come while the command still runs."""

    async def go():
        watcher = await Client.connect(daemon.unix)
        await watcher.subscribe()
        async with await _client(daemon) as c:
            # Not deferred: ProcessLaunched arrives while `cat` waits for its stdin.
            plain = await c.start(["cat"], stdin=True)
            first_plain = (await plain.events().__anext__()).kind
            # Deferred: nothing comes to the owner until the command writes; the subscriber
            # sees its start meanwhile (awaited: the command is blocked on its stdin until then).
            held = await c.start(["cat"], stdin=True, defer_start=True)
            async for ev in watcher.events():
                if ev.kind == "ProcessLaunched" and ev.request_id == held.request_id:
                    break
            queued_before_output = len(held._req.events)
            await held.write_stdin(b"x\n")
            kinds = []
            async for ev in held.events():
                kinds.append(ev.kind)
                if ev.kind == "OutputChunk":
                    break
            held.close_stdin()
            plain.close_stdin()
            rest = [ev.kind async for ev in held.events()]
            await plain.wait()
            r = await c.run(["/bin/echo", "hi"])  # deferred by default: all of it, in order
        await watcher.close()
        return first_plain, queued_before_output, kinds, rest, r

    first_plain, queued_before_output, kinds, rest, r = arun(go())
    assert first_plain == "ProcessLaunched"
    assert queued_before_output == 0
    assert kinds == ["ProcessLaunched", "ExecveTerminated", "OutputChunk"]
    assert rest[-1] == "ProcessTerminated"
    assert [e.kind for e in r.events] == ["ProcessLaunched", "ExecveTerminated", "OutputChunk", "ProcessTerminated"]
    assert r.exit_code == 0 and r.pid > 0 and r.stdout == b"hi\n"


def test_wait_pid_running_and_after_the_end(daemon):
    """WaitProcess answers with the command's ProcessTerminated (under the wait's request id): when
    it ends, and at once for a command that already ended."""

    async def go():
        async with await _client(daemon) as c:
            h = await c.start(["sh", "-c", "read x; exit 3"], stdin=True)
            async for ev in h.events():
                if ev.kind == "ProcessLaunched":
                    break
            waiting = asyncio.ensure_future(c.wait_pid(h.pid))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            h.close_stdin()
            r = await h.wait()
            live = await waiting
            late = await c.wait_pid(h.pid)
            done = await c.run(["sh", "-c", "kill -KILL $$"])
            late_killed = await c.wait_pid(done.pid)
            with pytest.raises(CtrlError) as unknown:
                await c.wait_pid(2**22 + 12345)
            return h.pid, r, live, late, done, late_killed, unknown.value.code

    pid, r, live, late, done, late_killed, unknown = arun(go())
    assert r.exit_code == 3
    for t in (live, late):
        assert (t.pid, t.exitCode, t.signal, t.errorCode) == (pid, 3, 0, 3)
        assert t.wallNs == int(r.wall_s * 1e9) and t.requestId not in (0,)
    assert live.requestId != late.requestId
    assert (late_killed.pid, late_killed.signal, late_killed.exitCode, late_killed.errorCode) == (done.pid, 9, -1, 137)
    assert late_killed.userCpuNs == int(done.user_cpu_s * 1e9) and late_killed.maxRssKb == done.max_rss_kb
    assert unknown == errno.ESRCH
