"""The soak's traffic (``python -m bench --soak``): a realistic mix of the public API at a steady rate.

Each simulated client keeps one keep-alive connection (as an SDK's pool does) and picks a task by
weight: chat completions (JSON and streamed to the end), ``/api/v1/generate``, async jobs (submitted,
then followed by polling the job or by reading its SSE stream, then checked to have succeeded) and the
status endpoints. Every answer's body is checked, not only its status: a wrong body or a failed job is
an error, like any non-2xx. The pace is constant (``SOAK_TASKS_PER_S`` tasks per second over
``SOAK_USERS`` clients): a soak looks for leaks, not for the saturation point.

Run by the harness; by hand: ``SOAK_API_KEY=<key> locust -f bench/locustfile.py --host http://127.0.0.1:8000``
(the key's limits must be above the rate, as the harness's key's are). ``SOAK_PROGRESS_FILE`` names a JSON
file rewritten every ``SOAK_PROGRESS_EVERY_S`` seconds, and once more when locust quits, with the requests,
failures and percentiles so far per request type, so the harness can put the request count beside each
memory sample and report the final figures.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

API_KEY = os.environ.get("SOAK_API_KEY", "")
USERS = max(1, int(os.environ.get("SOAK_USERS", "20")))
TASKS_PER_S = float(os.environ.get("SOAK_TASKS_PER_S", "30"))
PROGRESS_FILE = os.environ.get("SOAK_PROGRESS_FILE", "")
PROGRESS_EVERY_S = float(os.environ.get("SOAK_PROGRESS_EVERY_S", "2"))
# A job normally ends in well under a second; this only bounds a stuck one (counted as an error).
JOB_TIMEOUT_S = float(os.environ.get("SOAK_JOB_TIMEOUT_S", "30"))
JOB_POLL_S = 0.1

PROMPTS = (
    # Routed by keywords to the conversation, code and reasoning categories (all served by the fake upstream).
    "Say hello to the soak test",
    "Tell me a short story about a lighthouse keeper",
    "Write a Python function that reverses a string",
    "Explain why the sky is blue, step by step",
    "Write a haiku about queues",
)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PLATFORM_STATES = frozenset({"operational", "degraded", "partial_outage", "major_outage", "maintenance"})

Check = Callable[[dict[str, Any]], bool]
StreamCheck = Callable[[list[str]], None]


class SoakError(Exception):
    """An answer that came back but was wrong (its body, or the job it started)."""


def _prompt() -> str:
    return random.choice(PROMPTS)


def _json(response: ResponseContextManager) -> dict[str, Any]:
    try:
        payload = json.loads(response.content or b"")
    except ValueError as exc:
        raise SoakError(f"HTTP {response.status_code}: not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise SoakError(f"HTTP {response.status_code}: not a JSON object")
    return payload


def _check(check: Check, payload: dict[str, Any], response: ResponseContextManager) -> None:
    try:
        ok = check(payload)
    except (LookupError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise SoakError(f"unexpected body: {(response.text or '')[:200]}")


def _sse_data(response: ResponseContextManager) -> list[str]:
    """The ``data:`` payloads of a whole server-sent event stream, read to its end."""
    body = b"".join(
        chunk if isinstance(chunk, bytes) else chunk.encode()
        for chunk in response.iter_content(chunk_size=4096, decode_content=False)
    )
    return [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]


def _check_chat_stream(data: list[str]) -> None:
    if not data or data[-1] != "[DONE]":
        raise SoakError(f"the stream did not end with [DONE] ({len(data)} events)")
    chunks = [json.loads(d) for d in data[:-1]]
    if not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]):
        raise SoakError("the stream carried no content")
    if not any(c.get("usage") for c in chunks):
        raise SoakError("the stream carried no usage chunk (stream_options.include_usage)")


def _check_job_stream(data: list[str]) -> None:
    kinds = [json.loads(d)["type"] for d in data]
    if not kinds or kinds[-1] != "complete" or "chunk" not in kinds:
        raise SoakError(f"the job's stream did not end with chunks then 'complete': {kinds[-5:]}")


class SoakUser(FastHttpUser):
    # Clients pace themselves so the total is TASKS_PER_S whatever the latency.
    wait_time = constant_throughput(TASKS_PER_S / USERS)
    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        if not API_KEY:
            raise RuntimeError("SOAK_API_KEY is not set")
        self.auth = {"Authorization": f"Bearer {API_KEY}"}

    # --- one request, checked -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        check: Check,
        body: dict[str, Any] | None = None,
        status: int = 200,
        auth: bool = True,
    ) -> dict[str, Any] | None:
        """One JSON request: a success only with ``status`` and a body ``check`` accepts (else None)."""
        headers = self.auth if auth else {}
        with self.client.request(method, path, json=body, headers=headers, name=name, catch_response=True) as response:
            try:
                if response.status_code != status:
                    raise SoakError(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                payload = _json(response)
                _check(check, payload, response)
            except SoakError as exc:
                response.failure(exc)
                return None
            response.success()
            return payload

    def _stream(
        self, method: str, path: str, *, name: str, check: StreamCheck, body: dict[str, Any] | None = None
    ) -> bool:
        """One server-sent event stream read to its end; ``check`` raises SoakError for a wrong one."""
        started = time.perf_counter()
        with self.client.request(
            method, path, json=body, headers=self.auth, name=name, stream=True, catch_response=True
        ) as response:
            try:
                if response.status_code != 200:
                    raise SoakError(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                # A stream's read has no end of its own while the server sends keep-alives: bound it.
                with gevent.Timeout(JOB_TIMEOUT_S, SoakError(f"the stream did not end in {JOB_TIMEOUT_S:g} s")):
                    data = _sse_data(response)
                # The time to the last byte, not to the headers (locust's default for a stream).
                response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                check(data)
            except (SoakError, ValueError, LookupError, TypeError, AttributeError) as exc:
                response.failure(exc)
                return False
            response.success()
            return True

    # --- the mix --------------------------------------------------------------------------------------

    @task(3)
    def chat_json(self) -> None:
        body = {"model": "auto", "messages": [{"role": "user", "content": _prompt()}], "max_tokens": 64}
        self._call(
            "POST",
            "/v1/chat/completions",
            name="chat json",
            body=body,
            check=lambda p: p["object"] == "chat.completion" and bool(p["choices"][0]["message"]["content"]),
        )

    @task(4)
    def chat_stream(self) -> None:
        body = {
            "model": "auto",
            "messages": [{"role": "user", "content": _prompt()}],
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        self._stream("POST", "/v1/chat/completions", name="chat stream", body=body, check=_check_chat_stream)

    @task(3)
    def generate(self) -> None:
        self._call(
            "POST",
            "/api/v1/generate",
            name="generate",
            body={"prompt": _prompt(), "max_tokens": 64},
            check=lambda p: bool(p["output"]) and bool(p["meta"]["model"]),
        )

    @task(1)
    def async_job_poll(self) -> None:
        started = time.perf_counter()
        job = self._submit()
        if job is None:
            return
        state = self._wait_job(job["job_id"], first_poll=True)
        if state is not None:
            self._job_outcome("async job (poll)", state, started)

    @task(1)
    def async_job_sse(self) -> None:
        started = time.perf_counter()
        job = self._submit()
        if job is None:
            return
        if not self._stream("GET", job["stream_url"], name="job stream (SSE)", check=_check_job_stream):
            return
        # The stream's end and the job's row are written separately: the row must say succeeded too.
        state = self._wait_job(job["job_id"], first_poll=False)
        if state is not None:
            self._job_outcome("async job (SSE)", state, started)

    @task(1)
    def status(self) -> None:
        # The keyed readiness check and the public status API, as a dashboard polls them.
        self._call(
            "GET",
            "/api/v1/status",
            name="status",
            check=lambda p: isinstance(p["models"], list) and bool(p["status"]),
        )
        self._call(
            "GET",
            "/api/v1/platform-status",
            name="platform-status",
            auth=False,
            check=lambda p: p["status"] in PLATFORM_STATES,
        )

    # --- async-job helpers ----------------------------------------------------------------------------

    def _submit(self) -> dict[str, Any] | None:
        return self._call(
            "POST",
            "/api/v1/generate/async",
            name="generate/async",
            body={"prompt": _prompt(), "max_tokens": 64},
            status=202,
            check=lambda p: p["status"] == "queued" and bool(p["job_id"]) and bool(p["stream_url"]),
        )

    def _wait_job(self, job_id: str, *, first_poll: bool) -> dict[str, Any] | None:
        """Poll the job until it ends (or JOB_TIMEOUT_S passes): its last state; None if a poll failed."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        wait = first_poll
        while True:
            if wait:
                gevent.sleep(JOB_POLL_S)
            wait = True
            state = self._call("GET", f"/api/v1/jobs/{job_id}", name="jobs/[id]", check=lambda p: p["job_id"] == job_id)
            if state is None or state.get("status") in TERMINAL or time.monotonic() >= deadline:
                return state

    def _job_outcome(self, name: str, state: dict[str, Any], started: float) -> None:
        """The job as a whole, submitted to finished, as one more row of the statistics."""
        error: Exception | None = None
        if state.get("status") != "succeeded":
            error = SoakError(f"job {state.get('status') or 'unfinished'}: {str(state.get('error'))[:200]}")
        elif not state.get("output"):
            error = SoakError("job succeeded without output")
        self.environment.events.request.fire(
            request_type="JOB",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )


# --- progress for the harness ---------------------------------------------------------------------------


def _write_progress(environment: Environment) -> None:
    stats = environment.stats
    entries = [
        {
            "type": f"{method} {name}",
            "requests": e.num_requests,
            "failures": e.num_failures,
            "p50_ms": e.get_response_time_percentile(0.5) if e.num_requests else None,
            "p99_ms": e.get_response_time_percentile(0.99) if e.num_requests else None,
        }
        for (name, method), e in sorted(stats.entries.items(), key=lambda item: (item[0][1], item[0][0]))
    ]
    errors: list[dict[str, Any]] = [
        {"type": f"{e.method} {e.name}", "error": str(e.error)[:300], "occurrences": e.occurrences}
        for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)
    ]
    runner = environment.runner
    exceptions: list[dict[str, Any]] = [
        {"count": int(ex["count"]), "message": str(ex["msg"])[:300]}
        for ex in (runner.exceptions if runner else {}).values()
    ]
    data = {
        "at": time.time(),
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        # Exceptions raised by the locustfile itself (a bug there, or an answer it could not handle).
        "exceptions": sum(ex["count"] for ex in exceptions),
        "entries": entries,
        "errors": errors,
        "exception_samples": exceptions,
    }
    tmp = f"{PROGRESS_FILE}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, PROGRESS_FILE)


def _progress_loop(environment: Environment) -> None:
    while True:
        gevent.sleep(PROGRESS_EVERY_S)
        _write_progress(environment)


@events.init.add_listener
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    if PROGRESS_FILE:
        gevent.spawn(_progress_loop, environment)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    if PROGRESS_FILE:
        _write_progress(environment)
