"""How each process of a run ended, and whether that is what its scenario expected.

Judged after the run from the emulator's :class:`~simterpose.emulator.ProcessRecord` and the
scenario's :class:`~simterpose.scenario.ProcessSpec`, in Shadow's terms (``expected_final_state``):
``exited N``, ``signaled SIGNAME``, or ``running`` — still running when its ``kill_time`` (or the
run's ``--stop-time``) came, or when the run was interrupted (Ctrl-C, SIGTERM), and killed then by
simterpose.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Optional

from .scenario import FinalState, ProcessSpec, signal_name

# The emulator stops a process at its kill_time exactly; dates are compared with this slack only
# because they went through float arithmetic.
_SAME_DATE = 1e-9


@dataclass(frozen=True)
class Outcome:
    final_state: Optional[FinalState]  # None: the process never ran (it could not be started)
    ok: bool
    error: Optional[str]  # what went wrong, in words (None when nothing did)
    expected: str  # what the scenario expected, in words ("exited 0", "running", "any exit status")

    @property
    def signal(self) -> Optional[str]:
        """The name of the signal that ended the process (SIGKILL for ``running``), or None."""
        fs = self.final_state
        if fs is None or fs.kind == "exited":
            return None
        return signal_name(fs.signal) if fs.kind == "signaled" else "SIGKILL"


def judge(spec: ProcessSpec, record, stop_time: Optional[float] = None) -> Outcome:
    """The :class:`Outcome` of one process (``record``: its ProcessRecord)."""
    expected = _expected(spec)
    state = _final_state(spec, record, stop_time)
    if state is None or (record.error is not None and state.kind != "running"):
        return Outcome(state, False, record.error or "the process did not run", expected)
    if spec.expected_final_state is not None:
        ok = state == spec.expected_final_state
    else:  # expected_exit: the shell-style exit status (128 + N when killed by signal N), or anything
        ok = spec.expected_exit is None or record.exit_status == spec.expected_exit
    error = record.error
    if state.kind == "signaled" and error is None and not ok:  # a crash nobody expected: say which
        error = f"killed by {signal_name(state.signal)} ({signal.strsignal(state.signal) or 'unknown signal'})"
    return Outcome(state, ok, error, expected)


def _final_state(spec: ProcessSpec, record, stop_time: Optional[float]) -> Optional[FinalState]:
    if record.exit_status is None:
        return None
    if record.signal is not None:
        if record.signal == signal.SIGKILL and record.interrupted:
            return FinalState("running")  # we killed it when the run was interrupted (Ctrl-C, SIGTERM)
        if record.signal == signal.SIGKILL and record.end is not None and any(
                date is not None and abs(record.end - date) <= _SAME_DATE for date in (spec.kill_time, stop_time)):
            return FinalState("running")  # we killed it at its kill_time / the stop time: it was running
        return FinalState("signaled", signal=record.signal)
    return FinalState("exited", status=record.exit_status)


def _expected(spec: ProcessSpec) -> str:
    if spec.expected_final_state is not None:
        return str(spec.expected_final_state)
    return "any exit status" if spec.expected_exit is None else f"exit status {spec.expected_exit}"
