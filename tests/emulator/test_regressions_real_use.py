"""Regressions found by running real programs the way a researcher would (trial of the tool).

Each test runs the same program natively and under both mediation modes where the outcome can be
compared, and requires the same observable output. Dates are simulated ones (`--cpu-model none`).
"""

from __future__ import annotations

import pytest
from net_helpers import emulate, native

MODES = ["address-translation", "full-mediation"]


# -- signal dispositions at exec ---------------------------------------------------------------------

SIGPIPE_SCRIPT = "grep SigIgn /proc/self/status; grep SigBlk /proc/self/status; " \
                 "yes | head -c 10 >/dev/null; echo ${PIPESTATUS[@]}"


@pytest.mark.parametrize("mode", MODES)
def test_programs_start_with_default_signal_dispositions(tmp_path, mode):
    # The tracer is a Python process: it ignores SIGPIPE and SIGXFSZ, and posix_spawn left glibc's
    # signals 32 and 33 ignored; exec keeps ignored signals. `yes` then printed "Broken pipe" and
    # exited 1 instead of dying of SIGPIPE (141) as under a shell.
    expected = native(["bash", "-c", SIGPIPE_SCRIPT])[0]
    assert expected.splitlines()[-1] == "141 0"
    r = emulate(tmp_path, [{"host": "h1", "path": "/bin/bash", "args": ["-c", SIGPIPE_SCRIPT]}],
                mode).check_ok()
    assert r.stdout(0) == expected
    assert r.stderr(0) == ""

