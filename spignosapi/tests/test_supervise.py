"""``python -m spignosapi.supervise`` (each process of ``make run``): a real wrapper process around a real command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tests.helpers import ROOT, wait_until

# Records its start (its pid, a line each), exits with code 3 on its first two starts, then runs until told to
# stop; on SIGTERM it writes "stopped" and exits 0.
COMMAND = """
import os, signal, sys, time
runs = sys.argv[1]
with open(runs, "a") as f:
    f.write(f"{os.getpid()}\\n")
if len(open(runs).read().split()) < 3:
    sys.exit(3)
def stop(*_):
    with open(runs, "a") as f:
        f.write("stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.05)
"""


def supervise(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    runs, errors = tmp_path / "runs", tmp_path / "stderr"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spignosapi.supervise", "demo", "--backoff", "0.1", *args, "--"]
            + [sys.executable, "-c", COMMAND, str(runs)],
            cwd=ROOT,
            stderr=err,
            start_new_session=True,  # as honcho starts it: the wrapper leads its own group
        )
    return proc, runs, errors


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_it_starts_a_command_that_exits_again_and_says_so(tmp_path: Path) -> None:
    proc, runs, errors = supervise(tmp_path)
    try:
        assert wait_until(lambda: len(lines(runs)) == 3, timeout=30), lines(runs)
        assert errors.read_text().splitlines() == [
            "demo exited with code 3; starting it again in 0.1 s",
            "demo exited with code 3; starting it again in 0.2 s",
        ]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_stop_signal_to_its_group_reaches_the_command_once_and_ends_both(tmp_path: Path) -> None:
    proc, runs, _ = supervise(tmp_path)
    assert wait_until(lambda: len(lines(runs)) == 3, timeout=30)
    command = psutil.Process(int(lines(runs)[-1]))
    os.killpg(proc.pid, signal.SIGTERM)  # what honcho sends on Ctrl-C
    assert proc.wait(timeout=30) == 0  # the command's own exit code
    assert lines(runs)[3:] == ["stopped"]
    assert not command.is_running() or command.status() == psutil.STATUS_ZOMBIE


def test_a_command_that_ignores_the_stop_signal_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spignosapi.supervise", "stubborn", "--grace", "0.5", "--"]
        + [
            sys.executable,
            "-c",
            f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open({str(runs)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    assert wait_until(lambda: bool(lines(runs)), timeout=30)
    command = psutil.Process(int(lines(runs)[0]))
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    assert wait_until(lambda: not command.is_running() or command.status() == psutil.STATUS_ZOMBIE, timeout=5)
