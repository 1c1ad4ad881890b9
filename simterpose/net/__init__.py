"""Policy: what socket syscalls mean on the simulated network."""
