"""The identity of the simulated host, as a process sees it: uname's nodename is the host's name,
or its alias when the name is not one programs can use (blanks, all digits, over 64 characters)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .tracer.results import Errno, Native

if TYPE_CHECKING:
    from .emulator import ScenarioProcess

_UTS_FIELD = 65  # struct utsname: six char[65] fields; nodename is the second


class ProcPolicy:
    def __init__(self, actor: "ScenarioProcess"):
        self.actor = actor
        info = actor.emulation.sim.platform_info.find_host(actor.spec.host)
        name = info.resolvable_name if info is not None else actor.spec.host
        self.nodename = name.encode()[: _UTS_FIELD - 1]  # an alias always fits; a usable name too

    def uname(self, sc):
        def rename(sc_, ret):
            if ret == 0:
                sc_.mem.write(sc_.arg(0) + _UTS_FIELD, self.nodename.ljust(_UTS_FIELD, b"\0"))
            return None

        return Native(on_exit=rename)

    def exiting(self, sc):
        # Stopping here lets the actor charge the CPU burst that ends with the process.
        if sc.name == "exit_group":
            # Every other thread of the process dies with this call, blocked in an emulated wait or not.
            self.actor.tracer.group_exiting(sc.process, exclude=sc.task)
        return Native()

    def denied(self, sc):
        return Errno(errno.EPERM)  # the simulated host's name is given by the platform
