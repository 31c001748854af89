"""A web process's graceful shutdown: long-lived responses learn that the process is stopping.

On SIGTERM (``docker stop``) or SIGINT the ASGI server stops accepting connections and waits for the open
ones to end, up to its graceful-shutdown timeout (uvicorn's ``--timeout-graceful-shutdown``), then cancels
them. An SSE stream or a WebSocket of a running job would hold the process that long (65 s were seen),
then be cut. So they watch ``stopping()`` and end at once, in a way their clients take as "reconnect": SSE
ends after a ``retry:`` hint (EventSource reconnects with ``Last-Event-ID`` and the replay continues where it
stopped), a WebSocket closes with 1012 (service restart). The client's next connection reaches another
process and loses nothing: the stream's history is in Redis.

The server does not tell the application when it starts shutting down (ASGI's lifespan shutdown comes
only after every connection has ended), so a handler is chained in front of the server's own signal
handlers. uvicorn installs them when it starts serving, after it has imported the application (in a single
process) or before (``--workers``): the first stream to ask for ``stopping()`` installs it, in either case.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import weakref
from types import FrameType
from typing import Any

_begun = False
_installed = False
# One future per event loop, done when the shutdown begins: streams wait on it beside their messages.
_futures: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[None]] = weakref.WeakKeyDictionary()
# Re-entrant: the signal handler runs begin() in the main thread, possibly while that thread is in stopping().
_lock = threading.RLock()


def begun() -> bool:
    return _begun


def stopping() -> asyncio.Future[None]:
    """A future of the running loop, done once the process has begun shutting down (never cancel it)."""
    if not _installed:
        install()
    loop = asyncio.get_running_loop()
    with _lock:
        future = _futures.get(loop)
        if future is None:
            future = _futures[loop] = loop.create_future()
            if _begun:
                future.set_result(None)
    return future


def begin() -> None:
    """Tell every stream of the process to end (idempotent; safe from any thread and from a signal handler)."""
    global _begun
    with _lock:
        _begun = True
        futures = list(_futures.items())
    for loop, future in futures:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nothing waits on it any more
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def install(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> bool:
    """Run ``begin()`` ahead of the server's own handler of each signal; False where there is none to chain to
    (not the main thread, or no server handling the signal: nothing would shut down gracefully anyway)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    _installed = True  # tried once: a process whose signals no server handles has nothing to chain to
    installed = False
    for signum in signals:
        previous = signal.getsignal(signum)
        if not callable(previous) or isinstance(previous, _Chained):
            continue
        signal.signal(signum, _Chained(previous))
        installed = True
    return installed


class _Chained:
    """``begin()``, then the handler that was there before (the server's)."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        begin()
        self.previous(signum, frame)
