"""/chat/ in headless Chromium: a prompt goes out as an async job and its tokens stream in."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from jobs.models import Job
from tests.fixtures import ARTIFACTS, Fake, Gateway

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_chat_page_streams_an_answer(
    logged_in_page: Any, gateway: Gateway, fake: Fake, celery_worker: subprocess.Popen[bytes]
) -> None:
    fake.configure(**{"demo-fast": {"tps": 5}})  # 10 tokens over about two seconds: slow enough to watch
    page = logged_in_page
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(gateway.url + "/chat/")
    page.fill("#prompt", "hello there")
    page.select_option("#priority", "5")
    page.fill("#max-tokens", "10")
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-state=streaming]", timeout=20_000)
    partial = page.inner_text(".msg.assistant")
    page.wait_for_selector(".msg.assistant[data-state=complete]", timeout=20_000)
    answer = page.inner_text(".msg.assistant")
    meta = page.inner_text(".meta")
    job = Job.objects.get()
    assert answer == job.output
    assert partial and len(partial.split()) < 10 and answer.startswith(partial)  # it arrived in pieces
    assert sockets == [gateway.url.replace("http://", "ws://") + f"/ws/v1/stream/{job.session_id}/"]
    assert len(answer.split()) == 10
    assert (job.queue, job.status, job.api_key_id) == ("high", "succeeded", None)
    assert job.owner is not None and job.owner.username == "browser-admin"
    assert meta.startswith("demo/demo-fast · ")
    assert re.search(r" · [\d.,]+ (mWh|Wh) · ", meta), meta  # energy in the unit its size reads best in
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)


def test_the_chat_page_asks_for_a_login(browser: Any, gateway: Gateway) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(gateway.url + "/chat/")
    assert page.url.startswith(gateway.url + "/admin/login/?next=/chat/")
    context.close()
