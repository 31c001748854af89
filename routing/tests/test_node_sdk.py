"""The official OpenAI Node SDK (``openai`` from npm, pinned by ``tests/node/package-lock.json``) against the live
gateway: a streamed chat completion, a Responses API function-tool round trip, and an error's class.

``npm ci`` installs it on first use (the npm registry must be reachable); ``node`` runs ``tests/node/client.mjs``,
which prints what the SDK got as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from accounts.services import apikey_create
from tests.fixtures import Fake, Gateway

pytestmark = pytest.mark.django_db(transaction=True)

NODE_PACKAGE = Path(__file__).resolve().parents[2] / "tests" / "node"


def node_client(gateway: Gateway, model: str) -> Any:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node is not None and npm is not None, "node and npm are needed (Node.js 20 or later)"
    if not (NODE_PACKAGE / "node_modules" / "openai" / "package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_PACKAGE, check=True, timeout=300)
    env = {
        **os.environ,
        "OPENAI_BASE_URL": gateway.url + "/v1",
        "OPENAI_API_KEY": apikey_create(name="node")[1],
        "MODEL": model,
    }
    done = subprocess.run(
        [node, "client.mjs"], cwd=NODE_PACKAGE, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_node_sdk_streams_chat_and_runs_a_responses_tool_round_trip(gateway: Gateway, fake: Fake) -> None:
    got = node_client(gateway, "demo/demo-fast")
    direct = OpenAI(base_url=fake.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    expected = direct.chat.completions.create(
        model="demo-fast", messages=[{"role": "user", "content": "hello there"}], max_tokens=6
    )

    chat = got["chat"]
    # The opening chunk (the role), the text chunks, the finish_reason chunk, the usage chunk (no choice).
    assert chat["roles"] == ["assistant", *[None] * (len(chat["roles"]) - 1)]
    assert (chat["text"], chat["finish"], chat["model"]) == (
        expected.choices[0].message.content,
        ["length"],
        "demo/demo-fast",
    )
    assert expected.usage is not None
    assert chat["usage"] == {
        "prompt_tokens": expected.usage.prompt_tokens,
        "completion_tokens": 6,
        "total_tokens": expected.usage.prompt_tokens + 6,
    }

    first, second = got["first"], got["second"]
    assert first["id"].startswith("resp_") and first["status"] == "completed"
    assert first["call"] == {"name": "get_weather", "arguments": '{"city":"fake"}'}
    assert (second["previous"], second["status"], len(second["text"].split())) == (first["id"], "completed", 16)
    assert got["failure"] == {"name": "NotFoundError", "status": 404, "code": "model_not_found", "param": "model"}
