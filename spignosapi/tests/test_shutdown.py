"""spignosapi/shutdown.py: the server's signal handler, chained, tells every stream of the process to end."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from spignosapi import shutdown


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The module as in a process that has not begun shutting down, and a 'server' handling SIGUSR1."""
    monkeypatch.setattr(shutdown, "_begun", False)
    monkeypatch.setattr(shutdown, "_installed", False)
    monkeypatch.setattr(shutdown, "_futures", type(shutdown._futures)())
    handled: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:
        handled.append(signum)

    previous = signal.signal(signal.SIGUSR1, server_handler)
    try:
        yield handled
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_the_signal_resolves_every_waiting_stream_then_reaches_the_server(fresh: list[int]) -> None:
    assert shutdown.install((signal.SIGUSR1,)) is True

    async def stream() -> str:
        stop = shutdown.stopping()
        assert stop is shutdown.stopping()  # one future per loop, whatever the number of streams
        await asyncio.wait_for(asyncio.shield(stop), timeout=30)
        return "ended"

    async def main() -> list[str]:
        streams = [asyncio.create_task(stream()) for _ in range(3)]
        await asyncio.sleep(0)
        os.kill(os.getpid(), signal.SIGUSR1)
        return await asyncio.gather(*streams)

    assert asyncio.run(main()) == ["ended"] * 3
    assert fresh == [signal.SIGUSR1]  # the server's own handler ran too, after
    assert shutdown.begun() is True


def test_a_stream_that_starts_after_the_signal_is_told_at_once(fresh: list[int]) -> None:
    shutdown.install((signal.SIGUSR1,))
    os.kill(os.getpid(), signal.SIGUSR1)

    async def main() -> bool:
        return shutdown.stopping().done()

    assert asyncio.run(main()) is True


def test_it_chains_once_and_only_onto_a_handler_that_a_server_installed(fresh: list[int]) -> None:
    assert shutdown.install((signal.SIGUSR1,)) is True
    chained = signal.getsignal(signal.SIGUSR1)
    assert shutdown.install((signal.SIGUSR1,)) is False  # already in front: not chained to itself
    assert signal.getsignal(signal.SIGUSR1) is chained

    signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # no server handling the signal: nothing to chain to
    assert shutdown.install((signal.SIGUSR1,)) is False
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
