"""Mechanism: seccomp-filtered ptrace engine. Knows stops, registers, memory, process trees -- not networks or clocks."""
