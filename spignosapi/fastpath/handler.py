"""Django's ASGI handler, minus the thread it started (and the hops it paid) for every request.

Replaces: ``django.core.handlers.asgi.ASGIHandler`` (``spignosapi/asgi.py`` installs this one).

Measured gain: alone against ``ASGIHandler``, same middleware, an async view (``GET /health``) costs 261
instead of 772 µs of CPU one request at a time, 225 instead of 655 twenty at a time, and a DRF view (a 401)
910 instead of 1300 (``python -m bench.fastpath``, 2026-12-04; a shared 2-core machine at load average
6-10: noisy). With ``middleware`` it ended the one-thread bottleneck of issue 9: that first round of
speed-ups took a proxied JSON request from 12.2 to 1.66 ms of web CPU and 108 to 951 requests/s at c=50
(``make bench``, 2026-11-23; ``bench/README.md``, "What was on the hot path", items 1 and 2). Sync views
(async-job submission, admin, DRF) also keep their thread's database connection.

``ASGIHandler`` gives each request a thread-sensitive context whose thread is created on first use and
joined at the end; it then sends ``request_started`` to the synchronous receivers in that thread (so every
request, even one for an async view, started a thread and hopped to it), and calls ``response.close()``
(which sends ``request_finished``) in it again. A sync view's thread, and its database connection, died
with the request, so ``CONN_MAX_AGE`` never kept a connection under ASGI.

This handler lends each request a thread from a bounded per-process pool instead (``ThreadSensitiveContext``
with an executor, as asgiref provides for this), and sends Django's own receivers where they matter:

* ``request_started`` (``reset_queries``, ``close_old_connections``: they act on the calling thread's
  database connections) runs in the request's thread just before its first synchronous work, as it would
  under WSGI; a request that never leaves the event loop does not need it.
* ``response.close()`` runs in that thread when the request used it (so an obsolete connection is closed
  there, and a healthy one kept for the next request), else inline: ``close_old_connections`` then acts
  on the event loop's thread, which has no connection (the ORM refuses to run there), ``close_caches`` is
  a no-op for Redis, ``reset_urlconf`` resets a context variable, and the only resource closer is the
  request's in-memory body.

Any other receiver, closer or uploaded file keeps Django's behaviour.

A request is lent a thread on its first synchronous work, not before (most gateway requests never need one),
and keeps it to its end, or until its response starts streaming (a request's synchronous work shares one
thread, as Django expects; a streaming body runs on the event loop). At most
``REQUEST_THREADS`` are lent at once: beyond that, a request's synchronous work waits for a thread to be
given back (a burst of 60 requests started 60 threads, each with a database connection of its own);
``REQUEST_THREADS_IDLE`` of them are kept for the next requests. After each call the thread gives its
database connection back to the pool, so a request holds one only while its synchronous code runs.

Two changes to how the body is read, because uvicorn puts no limit on it and may pass it without a length:

* At most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` + 1 bytes of it are kept (the rest is read and dropped): Django
  spooled all of it to a temporary file first, so one client could fill the disk. What is kept is still
  over the limit, so ``request.body`` and the API's JSON parser answer 413 as before.
* A chunked body (no ``Content-Length``) gets its length set once read: DRF takes a request without one
  for a request without a body, and would have parsed a chunked JSON body as ``{}``.

Everything else is ``ASGIHandler``'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.cache import close_caches
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import reset_urlconf
from django.db import close_old_connections, reset_queries
from django.dispatch import Signal
from django.urls import set_script_prefix

from spignosapi import loops

_STARTED_IN_THREAD = frozenset({reset_queries, close_old_connections})
_FINISHED_INLINE = frozenset({close_old_connections, close_caches, reset_urlconf})


class _Worker(ThreadPoolExecutor):
    """One OS thread, lent to one request at a time."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")


class RequestThread(Executor):
    """The executor of one request's thread-sensitive (synchronous) work: the thread ``threads`` lends it on
    its first work item (that item waits while every thread is lent) and it keeps to the request's end.

    Called from the event loop's thread only (asgiref's ``SyncToAsync`` submits there), as is ``Threads``.
    """

    def __init__(self, threads: Threads) -> None:
        self.threads = threads
        self.worker: _Worker | None = None
        self.used = False
        self._before_first: Callable[[], object] | None = None
        self._waiting: list[tuple[Callable[[], Any], Future[Any]]] = []

    def begin(self, before_first: Callable[[], object] | None) -> None:
        """``before_first`` runs in the thread ahead of the request's first work item."""
        self._before_first = before_first

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.used = True
        before, self._before_first = self._before_first, None
        call = functools.partial(_run, before, functools.partial(fn, *args, **kwargs))
        if self.worker is None and not self._waiting:
            self.worker = self.threads.lend(self)
        if self.worker is not None:
            return self.worker.submit(call)
        future: Future[Any] = Future()
        self._waiting.append((call, future))
        return future

    def attach(self, worker: _Worker) -> None:
        """The thread this request waited for: its waiting work runs there, in order."""
        self.worker = worker
        waiting, self._waiting = self._waiting, []
        for call, future in waiting:
            worker.submit(_run_into, call, future)


def _run(before: Callable[[], object] | None, call: Callable[[], Any]) -> Any:
    """``call`` in the request's thread, which then gives its database connection back to the pool: a request
    that waits on the event loop between two calls (an SSE stream for its whole life) holds none meanwhile."""
    if before is not None:
        before()
    try:
        return call()
    finally:
        close_old_connections()


def _run_into(call: Callable[[], Any], future: Future[Any]) -> None:
    """Run ``call`` for ``future`` (what ``ThreadPoolExecutor`` does for its own futures)."""
    if not future.set_running_or_notify_cancel():
        return  # the request was cancelled while it waited
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Threads:
    """The process's request threads: at most ``limit`` lent at once, ``keep`` kept while idle (most recently
    used first: its connections are the warmest), requests waiting for one served in arrival order."""

    def __init__(self, *, limit: int, keep: int) -> None:
        self.limit = limit
        self.keep = keep
        self.lent = 0
        self._idle: list[_Worker] = []
        self._queue: collections.deque[RequestThread] = collections.deque()

    def lend(self, request: RequestThread) -> _Worker | None:
        """A thread for ``request``, or None if every thread is lent (then ``request.attach`` comes later)."""
        if self.lent < self.limit:
            self.lent += 1
            return self._idle.pop() if self._idle else _Worker()
        self._queue.append(request)
        return None

    def give_back(self, request: RequestThread) -> None:
        """The request is over (or streams): its thread goes to the first request waiting, else back to the idle
        ones. Work the request submits later is lent a thread again."""
        worker, request.worker = request.worker, None
        if worker is None:  # it needed no thread, or ended (cancelled) while it waited for one
            if request._waiting:  # it is in the queue
                self._queue.remove(request)
            return
        if self._queue:
            self._queue.popleft().attach(worker)
            return
        self.lent -= 1
        if len(self._idle) < self.keep:
            self._idle.append(worker)
        else:
            worker.shutdown(wait=False)


def _receivers_within(signal: Signal, sender: type, allowed: frozenset[Any]) -> bool:
    sync_receivers, async_receivers = signal._live_receivers(sender)
    return not async_receivers and all(receiver in allowed for receiver in sync_receivers)


def _closes_only(response: Any, request: Any) -> bool:
    """Is closing the response only closing the request's in-memory body (no uploaded files)?"""
    closers = response._resource_closers
    return all(closer == request.close for closer in closers) and not hasattr(request, "_files")


class GatewayASGIHandler(ASGIHandler):
    async def read_body(self, receive: Any) -> Any:
        """``ASGIHandler.read_body``, keeping no more than one byte over the size limit (see above)."""
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        room = None if limit is None else limit + 1
        in_memory = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        # Returned open, as Django does: the handler closes it when the request is done.
        body_file = tempfile.SpooledTemporaryFile(max_size=in_memory, mode="w+b")  # noqa: SIM115
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            if room is None:
                body_file.write(chunk)
            elif room > 0:
                body_file.write(chunk[:room])
                room -= min(room, len(chunk))
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    def create_request(self, scope: Mapping[str, Any], body_file: Any) -> tuple[Any, Any]:
        request, error_response = super().create_request(scope, body_file)
        if request is not None and not request.META.get("CONTENT_LENGTH"):
            size = body_file.seek(0, os.SEEK_END)
            body_file.seek(0)
            if size:
                request.META["CONTENT_LENGTH"] = str(size)
        return request, error_response

    def __init__(self) -> None:
        super().__init__()
        self.threads = Threads(limit=settings.REQUEST_THREADS, keep=settings.REQUEST_THREADS_IDLE)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        loops.use_database_threads(asyncio.get_running_loop())
        thread = RequestThread(self.threads)
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self._handle(scope, receive, send, thread)
        finally:
            self.threads.give_back(thread)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any, thread: RequestThread) -> None:
        """``ASGIHandler.handle`` (Django 5.2) with the two changes described in the module docstring."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        if _receivers_within(signals.request_started, self.__class__, _STARTED_IN_THREAD):
            sender = self.__class__
            thread.begin(lambda: signals.request_started.send(sender=sender, scope=scope))
        else:
            thread.begin(None)
            await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def process_request(request: Any, send: Any) -> Any:
            response = await self.run_get_response(request)
            if response.streaming:
                # A stream may last minutes (a browser's SSE, read with its session in this thread): the thread
                # serves other requests meanwhile, and one is lent again if closing the response needs it.
                self.threads.give_back(thread)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            if (
                not thread.used
                and _closes_only(response, request)
                and _receivers_within(signals.request_finished, self.__class__, _FINISHED_INLINE)
            ):
                response.close()
            else:
                await sync_to_async(response.close)()
        body_file.close()


def get_asgi_application() -> GatewayASGIHandler:
    """``django.core.asgi.get_asgi_application`` with the handler above."""
    import django

    django.setup(set_prefix=False)
    return GatewayASGIHandler()


__all__ = ["GatewayASGIHandler", "RequestThread", "Threads", "get_asgi_application"]
