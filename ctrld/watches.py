"""File watches (inotify) and TCP port watches (sock_diag), each with a timeout and removable.

File watches: a directory that exists is watched itself (events on its entries); anything else
is watched through its parent directory, filtered on the name - so a file that does not exist
yet, is deleted or re-created is followed with one inotify watch and no polling.  "Size reached"
has no inotify event: the size is checked at registration and on every write event.

Port watches: netlink has no event for a socket entering LISTEN, so while at least one port
watch exists the listening sockets are dumped every POLL_S (one NETLINK_SOCK_DIAG dump per
address family, tens of microseconds); with no port watch there is no timer at all.  There is one
timer whatever the number of watches, and adding a watch only files it under its port (O(1)):
the next dump, at most POLL_S later, reports a port that is already listening.

Simulated port watches (`ctrld --mediate`): the port is "listening" when an emulated process
listens on it (on the watch's simulated host, or on any host when the watch names none).  The
emulation reports each listen (ctrld/mediate.py), so these watches need no polling either; at
registration the emulation's socket table is read once, for a server already listening.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from ctrld import inotify as ino
from ctrld.protocol.codec import now_ns
from ctrld.protocol.generated import ctrld_generated as g

POLL_S = 0.001
SEED_PORT_TIMEOUT_MS = 10_000
ALL_EVENTS = ino.IN_ACCESS | ino.IN_MODIFY | ino.IN_CREATE | ino.IN_DELETE
_ALWAYS = ino.IN_DELETE_SELF | ino.IN_MOVE_SELF  # to notice the watched directory going away


@dataclass(eq=False)
class FileWatch:
    owner: object
    request_id: int
    path: str
    mask: int  # user's inotify bits (ALL_EVENTS when the client gave 0 and no size)
    size: int
    dir: str = ""  # the directory carrying the inotify watch
    name: str = ""  # entry filtered on in `dir` ('' : the directory itself is the target)
    size_reported: bool = False
    timer: object = None


@dataclass(eq=False)
class PortWatch:
    owner: object
    request_id: int
    port: int
    timer: object = None
    host: str = ""  # simulated watches: this host only ('' : any)
    simulated: bool = False


@dataclass
class _Dir:
    wd: int
    watches: set = field(default_factory=set)
    mask: int = 0


def _kernel_mask(w: FileWatch) -> int:
    m = w.mask & ALL_EVENTS
    if w.mask & ino.IN_CREATE:
        m |= ino.IN_MOVED_TO
    if w.mask & ino.IN_DELETE:
        m |= ino.IN_MOVED_FROM
    if w.size:
        m |= ino.IN_MODIFY | ino.IN_CLOSE_WRITE | ino.IN_CREATE | ino.IN_MOVED_TO
    return m | _ALWAYS


class WatchTable:
    """Owns the inotify fd and the port scanner; reports through `emit(owner, body, extension)`."""

    def __init__(self, loop, emit):
        self.loop = loop
        self.emit = emit
        self._inotify: ino.Inotify | None = None
        self._dirs: dict[str, _Dir] = {}
        self._by_wd: dict[int, _Dir] = {}
        self.ports: dict[int, set[PortWatch]] = {}  # port -> its watches (real sockets)
        self._scanner = None
        self._by_owner: dict[object, int] = {}  # connection -> number of its watches (limits)
        self._by_request: dict[tuple, set] = {}  # (connection, request id) -> its watches
        self._poll_handle = None
        self.sim_ports: set[PortWatch] = set()
        self.mediator = None  # ctrld.mediate.Mediator on a mediating daemon

    def sim_now(self) -> int:
        return -1 if self.mediator is None else self.mediator.now_ns()

    # ------------------------------------------------------------------ common
    def all(self):
        for d in self._dirs.values():
            yield from d.watches
        for ws in self.ports.values():
            yield from ws
        yield from self.sim_ports

    def count(self, owner) -> int:
        return self._by_owner.get(owner, 0)

    def _filed(self, w) -> None:
        self._by_owner[w.owner] = self._by_owner.get(w.owner, 0) + 1
        self._by_request.setdefault((w.owner, w.request_id), set()).add(w)

    def _unfiled(self, w) -> None:
        n = self._by_owner.get(w.owner, 0) - 1
        if n > 0:
            self._by_owner[w.owner] = n
        else:
            self._by_owner.pop(w.owner, None)
        key = (w.owner, w.request_id)
        ws = self._by_request.get(key)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self._by_request[key]

    def remove(self, owner, request_id: int) -> int:
        found = list(self._by_request.get((owner, request_id), ()))
        for w in found:
            self._end(w, g.WatchEndReason.removed)
        return len(found)

    def drop_owner(self, owner) -> None:
        for key in [k for k in self._by_request if k[0] is owner]:
            for w in list(self._by_request.get(key, ())):
                self._discard(w)

    def close(self) -> None:
        for w in list(self.all()):
            self._discard(w)
        if self._inotify:
            self.loop.remove_reader(self._inotify.fd)
            self._inotify.close()
        if self._scanner:
            self._scanner.close()

    def _arm_timeout(self, w, timeout_ms: int) -> None:
        if timeout_ms:
            w.timer = self.loop.call_later(timeout_ms / 1000, self._end, w, g.WatchEndReason.timeout)

    def _end(self, w, reason: int, host: str | None = None, sim_ns: int | None = None) -> None:
        """`host`/`sim_ns`: the simulated host that listened and when (simulated port watches)."""
        if not self._discard(w):
            return
        t = now_ns()
        st = self.sim_now() if sim_ns is None else sim_ns
        if isinstance(w, PortWatch):
            state = g.SocketState.listeing if reason == g.WatchEndReason.triggered else g.SocketState.unknown
            self.emit(w.owner, g.SocketWatchTerminatedT(port=w.port, state=state, requestId=w.request_id, timeNs=t,
                                                        simTimeNs=st, host=host), False)
            ended = g.WatchEndedT(requestId=w.request_id, reason=reason, port=w.port, timeNs=t, simTimeNs=st)
        else:
            ended = g.WatchEndedT(requestId=w.request_id, reason=reason, path=w.path, timeNs=t, simTimeNs=st)
        self.emit(w.owner, ended, True)

    def _discard(self, w) -> bool:
        """Forget a watch without telling anyone; False if it was already gone."""
        if w.timer is not None:
            w.timer.cancel()
            w.timer = None
        if isinstance(w, PortWatch) and w.simulated:
            if w not in self.sim_ports:
                return False
            self.sim_ports.discard(w)
            self._unfiled(w)
            return True
        if isinstance(w, PortWatch):
            ws = self.ports.get(w.port)
            if ws is None or w not in ws:
                return False
            ws.discard(w)
            if not ws:
                del self.ports[w.port]
            if not self.ports and self._poll_handle is not None:
                self._poll_handle.cancel()
                self._poll_handle = None
            self._unfiled(w)
            return True
        d = self._dirs.get(w.dir)
        if d is None or w not in d.watches:
            return False
        d.watches.discard(w)
        self._update_dir(w.dir, d)
        self._unfiled(w)
        return True

    # ------------------------------------------------------------------ files
    def add_file(self, owner, request_id: int, path: str, mask: int, size: int, timeout_ms: int) -> FileWatch:
        """Raises OSError when the path cannot be watched (e.g. its directory does not exist)."""
        if not path:
            raise OSError(errno.EINVAL, "empty path")
        if not os.path.isabs(path):
            # Resolved here, it would name a file in the daemon's working directory (`relative/x`
            # watched under the daemon's cwd), which means nothing to a (remote) client: refused.
            raise OSError(errno.EINVAL, f"path {path!r} is relative: a watch path must be absolute")
        path = os.path.normpath(path)  # the name reported in events: no "//", "." or ".."
        if mask == 0 and size == 0:
            mask = ALL_EVENTS
        w = FileWatch(owner=owner, request_id=request_id, path=path, mask=mask, size=size)
        if os.path.isdir(path):
            w.dir, w.name = path, ""
        else:
            w.dir, w.name = os.path.dirname(path), os.path.basename(path)
        if self._inotify is None:
            self._inotify = ino.Inotify()
            self.loop.add_reader(self._inotify.fd, self._on_inotify)
        d = self._dirs.get(w.dir)
        if d is None:
            wd = self._inotify.add_watch(w.dir, _kernel_mask(w) | ino.IN_ONLYDIR)
            d = self._by_wd.get(wd)  # same directory under another spelling (symlink)
            if d is None:
                d = _Dir(wd=wd)
                self._by_wd[wd] = d
            self._dirs[w.dir] = d
        d.watches.add(w)
        self._filed(w)
        self._update_dir(w.dir, d)
        self._arm_timeout(w, timeout_ms)
        self.emit(owner, g.InotifyWatchListUpdatedT(path=path, requestId=request_id, timeNs=now_ns(),
                                                    simTimeNs=self.sim_now()), False)
        if w.size:
            self._check_size(w)
        return w

    def _update_dir(self, key: str, d: _Dir) -> None:
        if not d.watches:
            for k in [k for k, v in self._dirs.items() if v is d]:
                del self._dirs[k]
            self._by_wd.pop(d.wd, None)
            if self._inotify is not None:
                self._inotify.rm_watch(d.wd)
            return
        mask = 0
        for w in d.watches:
            mask |= _kernel_mask(w)
        if mask != d.mask:
            # inotify_add_watch on a watched inode replaces its mask: the union of all watches.
            try:
                self._inotify.add_watch(key, mask | ino.IN_ONLYDIR)
            except OSError:
                return  # the directory is going away: its IN_IGNORED ends the watches
            d.mask = mask

    def _check_size(self, w: FileWatch) -> None:
        if w.size_reported:
            return
        try:
            size = os.stat(w.path).st_size
        except OSError:
            return
        if size >= w.size:
            w.size_reported = True
            self._report(w, w.path, g.InotifyEvent.size_reached, 0, size)

    def _report(self, w: FileWatch, path: str, kind: int, raw: int, size: int) -> None:
        body = g.InotifyPathUpdatedT(
            path=path, triggerEvents=kind, size=min(size, 0xFFFFFFFF), sizeLimit=min(w.size, 0xFFFFFFFF),
            requestId=w.request_id, timeNs=now_ns(), rawMask=raw, size64=size, simTimeNs=self.sim_now(),
        )
        self.emit(w.owner, body, False)

    def _on_inotify(self) -> None:
        for wd, mask, name in self._inotify.read():
            d = self._by_wd.get(wd)
            if d is None:
                continue
            if mask & (ino.IN_IGNORED | ino.IN_DELETE_SELF | ino.IN_MOVE_SELF):
                # The watched directory itself is gone: a directory target was deleted, or the
                # parent of a file target vanished - these watches cannot continue.
                for w in list(d.watches):
                    if w.name == "" and w.mask & ino.IN_DELETE:
                        self._report(w, w.path, g.InotifyEvent.deleted, mask, 0)
                    self._end(w, g.WatchEndReason.error if w.name else g.WatchEndReason.triggered)
                continue
            for w in list(d.watches):
                if w.name and name != w.name:
                    continue
                path = os.path.join(w.dir, name) if name else w.dir
                for bits, kind in (
                    (ino.IN_CREATE | ino.IN_MOVED_TO, g.InotifyEvent.created),
                    (ino.IN_MODIFY, g.InotifyEvent.modified),
                    (ino.IN_ACCESS, g.InotifyEvent.accessed),
                    (ino.IN_DELETE | ino.IN_MOVED_FROM, g.InotifyEvent.deleted),
                ):
                    user_bits = bits & (ino.IN_CREATE | ino.IN_MODIFY | ino.IN_ACCESS | ino.IN_DELETE)
                    if mask & bits and w.mask & user_bits:
                        self._report(w, path, kind, mask, 0)
                if w.size and w.name and mask & (ino.IN_MODIFY | ino.IN_CLOSE_WRITE | ino.IN_CREATE | ino.IN_MOVED_TO):
                    self._check_size(w)

    # ------------------------------------------------------------------ ports
    def add_port(self, owner, request_id: int, port: int, timeout_ms: int, host: str = "",
                 simulated: bool = False) -> PortWatch:
        if not 0 < port < 65536:
            raise OSError(errno.EINVAL, f"invalid port {port}")
        if simulated:
            return self._add_sim_port(owner, request_id, port, timeout_ms, host)
        w = PortWatch(owner=owner, request_id=request_id, port=port)
        self.emit(owner, g.SocketWatchedT(port=port, requestId=request_id, timeNs=now_ns(),
                                          simTimeNs=self.sim_now()), False)
        if self._scanner is None:
            from ctrld.netdiag import ListenScanner

            self._scanner = ListenScanner()
        self.ports.setdefault(port, set()).add(w)
        self._filed(w)
        self._arm_timeout(w, timeout_ms or SEED_PORT_TIMEOUT_MS)
        if self._poll_handle is None:  # the one polling timer of all port watches
            self._poll_handle = self.loop.call_soon(self._poll_ports)
        return w

    def _poll_ports(self) -> None:
        self._poll_handle = None
        if not self.ports:
            return
        listening = self._scanner.listening_ports()
        for port in listening & self.ports.keys():
            for w in list(self.ports.get(port, ())):
                self._end(w, g.WatchEndReason.triggered)
        if self.ports and self._poll_handle is None:
            self._poll_handle = self.loop.call_later(POLL_S, self._poll_ports)

    # ------------------------------------------------------------------ simulated ports
    def _add_sim_port(self, owner, request_id: int, port: int, timeout_ms: int, host: str) -> PortWatch:
        m = self.mediator
        if host and host not in m.hosts:
            raise OSError(errno.EINVAL, f"unknown simulated host {host!r} (hosts: {', '.join(m.hosts)})")
        w = PortWatch(owner=owner, request_id=request_id, port=port, host=host, simulated=True)
        self.emit(owner, g.SocketWatchedT(port=port, requestId=request_id, timeNs=now_ns(),
                                          simTimeNs=self.sim_now()), False)
        self.sim_ports.add(w)
        self._filed(w)
        self._arm_timeout(w, timeout_ms or SEED_PORT_TIMEOUT_MS)
        for h, p in sorted(m.listening()):  # a server that listened before the watch
            if p == port and (not host or h == host):
                self._end(w, g.WatchEndReason.triggered, h)
                break
        return w

    def sim_listened(self, host: str, port: int, sim_ns: int) -> None:
        """An emulated process listens on (host, port) since simulated date sim_ns (loop thread)."""
        for w in [w for w in self.sim_ports if w.port == port and (not w.host or w.host == host)]:
            self._end(w, g.WatchEndReason.triggered, host, sim_ns)
