"""Syscall numbers <-> names for x86_64 (python-ptrace's table, completed with recent syscalls)."""

import importlib.util
import sys
from types import ModuleType


def python_ptrace_table(module: str) -> ModuleType:
    """One of python-ptrace's data modules (e.g. "syscall.linux.x86_64", "syscall.prototypes": plain
    dicts, no imports), loaded from its file without running the packages' __init__: `ptrace.syscall`'s
    imports python-ptrace's whole debugger for two tables (a run of /bin/true starts 3-4 ms sooner
    without it). Loaded once (kept in sys.modules under a name of ours). Raises ImportError if
    python-ptrace is missing."""
    key = "_simterpose_ptrace_" + module.replace(".", "_")
    loaded = sys.modules.get(key)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("ptrace")   # finds the package without importing it
    if package is None or not package.submodule_search_locations:
        raise ImportError("python-ptrace is not installed")
    path = f"{package.submodule_search_locations[0]}/{module.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"python-ptrace has no {module} ({path})")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    sys.modules[key] = loaded
    return loaded


_PTRACE_NAMES: dict[int, str] = python_ptrace_table("syscall.linux.x86_64").SYSCALL_NAMES

# python-ptrace's table stops before these; numbers >= 512 there are the x32 ABI, not ours.
_RECENT = {
    436: "close_range", 437: "openat2", 438: "pidfd_getfd", 439: "faccessat2",
    440: "process_madvise", 441: "epoll_pwait2", 442: "mount_setattr", 443: "quotactl_fd",
    444: "landlock_create_ruleset", 445: "landlock_add_rule", 446: "landlock_restrict_self",
    447: "memfd_secret", 448: "process_mrelease", 449: "futex_waitv", 450: "set_mempolicy_home_node",
    451: "cachestat", 452: "fchmodat2", 453: "map_shadow_stack", 454: "futex_wake",
    455: "futex_wait", 456: "futex_requeue", 457: "statmount", 458: "listmount",
    459: "lsm_get_self_attr", 460: "lsm_set_self_attr", 461: "lsm_list_modules", 462: "mseal",
}

# Names python-ptrace spells differently from the kernel's syscall table.
_FIXES = {283: "timerfd_create"}

NAMES: dict[int, str] = {nr: n for nr, n in _PTRACE_NAMES.items() if nr < 512}
NAMES.update(_RECENT)
NAMES.update(_FIXES)
NUMBERS: dict[str, int] = {n: nr for nr, n in NAMES.items()}


def name(nr: int) -> str:
    return NAMES.get(nr, f"syscall_{nr}")


def number(name_: str) -> int:
    try:
        return NUMBERS[name_]
    except KeyError:
        raise ValueError(f"unknown syscall name {name_!r}") from None
