"""Syscall numbers <-> names for x86_64 (python-ptrace's table, completed with recent syscalls)."""

from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES as _PTRACE_NAMES

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
