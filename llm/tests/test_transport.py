"""The outbound-HTTP seam: time budgets, pools per event loop, non-2xx answers and transport failures as our
errors, against the fake upstream over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import httpx2
import pytest

from llm import InvalidResponseError, LLMConnectionError, LLMTimeoutError, ProviderConfig
from llm.transport import StatusError, Transport, sse_events

SECRET = "sk-transport-0123456789"


def _config(base_url: str, **overrides: object) -> ProviderConfig:
    fields: dict[str, object] = {"name": "up", "kind": "openai_compatible", "base_url": base_url, "api_key": SECRET}
    fields.update(overrides)
    return ProviderConfig(**fields)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chat(model: str, *, stream: bool = False) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "stream": stream}
    return json.dumps(body).encode()


HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"}


def test_the_httpx_timeouts_bound_connect_read_and_the_whole_call() -> None:
    transport = Transport(_config("http://127.0.0.1:9/v1", timeout_s=30.0, connect_timeout_s=2.0))
    streamed = Transport(_config("http://127.0.0.1:9/v1", timeout_s=30.0, first_token_timeout_s=5.0))

    assert transport.httpx_timeout(None, stream=False) == httpx2.Timeout(30.0, connect=2.0)
    assert transport.httpx_timeout(None, stream=True) == httpx2.Timeout(30.0, connect=2.0)
    assert streamed.httpx_timeout(None, stream=True) == httpx2.Timeout(30.0, connect=10.0, read=5.0)
    assert streamed.httpx_timeout(1.5, stream=True) == httpx2.Timeout(1.5, connect=1.5, read=1.5)
    assert streamed.httpx_timeout(8.0, stream=False) == httpx2.Timeout(8.0, connect=8.0, read=8.0)
    assert (transport.total_timeout(None), transport.total_timeout(4.0)) == (30.0, 4.0)
    assert (streamed.first_token_binds(None), streamed.first_token_binds(5.0), transport.first_token_binds(None)) == (
        True,
        False,
        False,
    )


def test_stream_deadlines_count_from_now_on_the_loop_clock() -> None:
    transport = Transport(_config("http://127.0.0.1:9/v1", timeout_s=30.0, first_token_timeout_s=5.0))

    async def deadlines() -> tuple[float, float, float]:
        now = asyncio.get_running_loop().time()
        first, total = transport.stream_deadlines(None)
        return first - now, total - now, transport.stream_deadlines(2.0)[0] - now

    first, total, short = asyncio.run(deadlines())
    assert 5.0 <= first < 5.1
    assert 30.0 <= total < 30.1
    assert 2.0 <= short < 2.1  # a request budget below the first-token budget bounds the first token too


def test_post_returns_a_2xx_answer_and_one_session_serves_every_call_of_a_loop(fake_reset: str) -> None:
    transport = Transport(_config(f"{fake_reset}/v1"))

    async def main() -> tuple[list[int], bool]:
        statuses = []
        for _ in range(2):
            response = await transport.post(
                f"{fake_reset}/v1/chat/completions", _chat("fake@tokens=3"), HEADERS, timeout_s=None
            )
            statuses.append(response.status)
            body = json.loads(await response.read())
            response.release()
            assert body["usage"]["completion_tokens"] == 3
        session = transport._sessions.get()
        await transport.aclose()
        return statuses, session.closed

    assert asyncio.run(main()) == ([200, 200], True)


def test_post_raises_a_status_error_with_the_body_read(fake_reset: str) -> None:
    transport = Transport(_config(f"{fake_reset}/v1"))

    async def main() -> StatusError:
        try:
            with pytest.raises(StatusError) as caught:
                await transport.post(
                    f"{fake_reset}/v1/chat/completions", _chat("fake@status=503"), HEADERS, timeout_s=None
                )
            return caught.value
        finally:
            await transport.aclose()

    error = asyncio.run(main())
    assert error.status == 503
    assert json.loads(error.body) == {
        "error": {
            "message": "fake upstream: simulated 503 for model 'fake@status=503' (request #1)",
            "type": "server_error",
            "code": "service_unavailable",
            "param": None,
        }
    }
    assert error.headers["Content-Type"] == "application/json; charset=utf-8"


def test_a_session_closes_when_its_event_loop_shuts_down(fake_reset: str) -> None:
    transport = Transport(_config(f"{fake_reset}/v1"))

    async def main() -> aiohttp.ClientSession:
        response = await transport.post(
            f"{fake_reset}/v1/chat/completions", _chat("fake@tokens=1"), HEADERS, timeout_s=None
        )
        response.release()
        return transport._sessions.get()

    session = asyncio.run(main())  # no aclose: asyncio.run's shutdown of async generators closes it
    assert session.closed is True


def test_sse_events_decode_a_stream(fake_reset: str) -> None:
    transport = Transport(_config(f"{fake_reset}/v1"))

    async def main() -> list[str]:
        try:
            response = await transport.post(
                f"{fake_reset}/v1/chat/completions", _chat("fake@tokens=2", stream=True), HEADERS, timeout_s=None
            )
            try:
                return [event.data async for event in sse_events(response)]
            finally:
                response.release()
        finally:
            await transport.aclose()

    data = asyncio.run(main())
    assert data[-1] == "[DONE]"
    deltas = [json.loads(item)["choices"][0]["delta"].get("content") for item in data[:-1]]
    assert len([text for text in deltas if text]) == 2


def test_a_refused_connection_is_a_retryable_connection_error_naming_the_provider() -> None:
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    transport = Transport(_config(base_url))

    async def main() -> BaseException:
        try:
            with pytest.raises(aiohttp.ClientError) as caught:
                await transport.post(f"{base_url}/chat/completions", _chat("m"), HEADERS, timeout_s=None)
            return caught.value
        finally:
            await transport.aclose()

    error = transport.error(asyncio.run(main()), "m")

    assert type(error) is LLMConnectionError
    assert error.retryable is True
    assert error.message.startswith(f"cannot reach provider 'up' at {base_url}: ")
    assert (error.provider, error.model) == ("up", "m")


@pytest.mark.parametrize(
    "exc, pending, phase",
    [
        (httpx2.ConnectTimeout("connect"), False, "connect"),
        (aiohttp.ConnectionTimeoutError(), True, "connect"),
        (httpx2.ReadTimeout("read"), False, "total"),
        (httpx2.ReadTimeout("read"), True, "first_token"),
        (aiohttp.ServerTimeoutError(), True, "first_token"),
        (TimeoutError(), False, "total"),
    ],
)
def test_timeouts_of_either_library_are_timeout_errors_of_their_phase(
    exc: BaseException, pending: bool, phase: str
) -> None:
    error = Transport(_config("http://127.0.0.1:9/v1")).error(exc, "m", first_token_pending=pending)

    assert type(error) is LLMTimeoutError
    assert (error.phase, error.message, error.retryable) == (phase, f"provider 'up' timed out ({phase})", True)


def test_a_body_that_breaks_off_or_is_not_json_is_an_invalid_response_without_the_key() -> None:
    transport = Transport(_config("http://127.0.0.1:9/v1"))

    cut = transport.error(aiohttp.ClientPayloadError(f"cut for {SECRET}"), "m", in_body=True)
    garbage = transport.error(ValueError(f"Expecting value near {SECRET}"), "m")
    httpx_cut = transport.error(httpx2.RemoteProtocolError("peer closed"), "m", in_body=True)

    assert (type(cut), cut.message) == (InvalidResponseError, "the upstream response broke off: cut for ***")
    assert (type(garbage), garbage.message) == (
        InvalidResponseError,
        "the upstream sent invalid JSON: Expecting value near ***",
    )
    assert (type(httpx_cut), httpx_cut.message) == (
        InvalidResponseError,
        "the upstream response broke off: peer closed",
    )
    assert cut.retryable is garbage.retryable is httpx_cut.retryable is True
