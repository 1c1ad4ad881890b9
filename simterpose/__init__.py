"""simterpose: run unmodified binaries on a simulated SimGrid platform (ptrace + seccomp)."""

__version__ = "0.1.0"
