"""Named kill points: where the kill tests (tests/test_kill.py) stop a run the hard way. Inert unless set.

The code calls ``kill_point("<label>")`` at moments where a crash is interesting: each training step, each
prediction batch, between writing a temporary file and renaming it, between filling a folder and marking it
complete, at the start and end of every unit of work. Labels name the place and the path or step, so a label is
reached once per uninterrupted run and again only when its unit is redone.

Environment (all optional; without them ``kill_point`` is a dictionary lookup):
    ALPACA_KILL_TRACE=<file>   append every label reached to this file (flushed before any kill)
    ALPACA_KILL_AT=<label>     on reaching this exact label, send ALPACA_KILL_SIGNAL to this process
    ALPACA_KILL_SIGNAL=KILL    the signal's name: KILL (default, no clean-up at all), TERM or USR1 (pre-emption)
"""

from __future__ import annotations

import os
import signal


def kill_point(label: str) -> None:
    trace = os.environ.get("ALPACA_KILL_TRACE")
    target = os.environ.get("ALPACA_KILL_AT")
    if trace is None and target is None:
        return
    if trace:
        with open(trace, "a") as handle:
            handle.write(label + "\n")
    if label == target:
        # Fire once per process: a pre-emption signal must not be re-sent when the stage hits the label again.
        os.environ.pop("ALPACA_KILL_AT")
        os.kill(os.getpid(), signal.Signals["SIG" + os.environ.get("ALPACA_KILL_SIGNAL", "KILL")])
