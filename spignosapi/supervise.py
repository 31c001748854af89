"""``python -m spignosapi.supervise NAME -- COMMAND…``: run one process of ``make run``, starting it again when
it exits on its own.

honcho (the Procfile runner of ``make run``) stops every process as soon as one exits: beat dying on a database
outage took the web server and the worker down with it (issue 18). Under this wrapper an exit is reported on
stderr (``beat exited with code 1; starting it again in 2 s``) and the process comes back, with a backoff that
grows from ``--backoff`` seconds to 30 s while it keeps failing within a minute of starting.

Stopping: honcho sends SIGTERM to the wrapper's process group. The command runs in a session of its own, so the
signal reaches only its main process, through the wrapper: a Celery worker then shuts down warmly (its pool
processes finish their jobs) instead of each pool process being killed by the group signal. If the command
has not exited after ``--grace`` seconds (honcho kills after 5) its whole group is killed, so nothing is left
running behind ``make run``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

MAX_BACKOFF_S = 30.0
# A run this long counts as healthy: the next failure starts the backoff again from the beginning.
HEALTHY_RUN_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    own, command = args[:split], args[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m spignosapi.supervise", usage="%(prog)s NAME [--backoff S] [--grace S] -- COMMAND..."
    )
    parser.add_argument("name", help="the process's name in messages")
    parser.add_argument("--backoff", type=float, default=1.0, help="first wait before a restart, in seconds")
    parser.add_argument("--grace", type=float, default=4.0, help="seconds to let the command stop when told to")
    options = parser.parse_args(own)
    if not command:
        parser.error("no command given after --")

    stopping = threading.Event()
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    delay = options.backoff
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command, start_new_session=True)
        code = _wait(child, stopping, received, grace=options.grace)
        _kill_group(child)  # whatever the command left in its group (a pool process) goes with it
        if stopping.is_set():
            return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number
        delay = options.backoff if time.monotonic() - started >= HEALTHY_RUN_S else delay
        print(f"{options.name} exited with code {code}; starting it again in {delay:g} s", file=sys.stderr, flush=True)
        if stopping.wait(delay):
            return code
        delay = min(delay * 2, MAX_BACKOFF_S)


def _wait(child: subprocess.Popen[bytes], stopping: threading.Event, received: list[int], *, grace: float) -> int:
    """The command's exit code; once told to stop, it gets the signal, then ``grace`` seconds before SIGKILL."""
    deadline: float | None = None
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if not stopping.is_set():
            continue
        if deadline is None:
            deadline = time.monotonic() + grace
            child.send_signal(received[0])
        elif time.monotonic() > deadline:
            _kill_group(child)


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(child.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
