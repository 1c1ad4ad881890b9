"""Structures handed to the kernel in a tracee's name, kept in the task's own page (`Tracer.scratch`)."""

from __future__ import annotations

from .results import Unsupported


class Scratch:
    """Bump allocator in the task's own page (`Tracer.scratch`), for the structures we pass to the
    kernel instead of the tracee's own (rewritten sockaddrs, truncated iovecs, paths, timeouts).
    Each allocator starts at the page's beginning: what it holds only lives for one syscall of one
    task."""

    def __init__(self, sc, tracer):
        self.sc = sc
        self.base = tracer.scratch(sc)
        self.size = tracer.SCRATCH_SIZE
        self.used = 0

    def put(self, data: bytes) -> int:
        """Copy `data` into the page; returns its address in the tracee. Raises Unsupported when the
        page is full."""
        size = (len(data) + 15) & ~0xF
        if self.used + size > self.size:
            raise Unsupported(self.sc.name, "arguments too large for the emulator's page")
        addr = self.base + self.used
        self.used += size
        self.sc.mem.write(addr, data)
        return addr
