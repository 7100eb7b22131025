"""Steps of a multi-step command (`hipo pipeline`, `hipo iterate`) run as `hipo` child processes, one at a time.

Each step is a command a user could also run alone. Its output streams through; a step that fails ends the
command with the step's exit code. A stop (a signal turned into :class:`~hipo.errors.JobInterrupted` by the
command's :class:`~hipo.training.preemption.StopRequests`, or Ctrl+C) is passed on to the step once, which stops as
it would alone (training at the end of its step, with a checkpoint), and the command waits for it before it stops
too. The step runs in its own session, so that a Ctrl+C at the terminal reaches it only through the command (a
second one would stop it at once, without a checkpoint).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from hipo.errors import JobInterrupted


def run_step(command: str, name: str, argv: list[str]) -> float:
    """Runs ``hipo <argv>`` as the step ``name`` of ``command``; returns its seconds.

    Raises:
        SystemExit: the step failed (its exit code).
        JobInterrupted / KeyboardInterrupt: this process was stopped (after the step stopped).
    """
    print(f"\n=== hipo {command}: {name}: hipo {' '.join(argv)}", flush=True)
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "hipo.cli", *argv], start_new_session=True)
    try:
        code = child.wait()
    except (JobInterrupted, KeyboardInterrupt) as stop:
        child.send_signal(stop.signum if isinstance(stop, JobInterrupted) else signal.SIGINT)
        child.wait()
        raise
    seconds = time.perf_counter() - started
    if code != 0:
        print(f"hipo {command}: step {name} failed (exit {code}) after {seconds:.0f} s", file=sys.stderr)
        raise SystemExit(code)
    return seconds
