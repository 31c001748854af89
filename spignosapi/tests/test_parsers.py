"""spignosapi/api/parsers.py: how deep a JSON body may nest (``JSON_MAX_DEPTH``), measured exactly.

(Every door answering too deep a body with 400: ``tests/test_every_route.py``.)
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from pytest_django import Settings
from rest_framework.exceptions import ParseError

from spignosapi.api.parsers import JSONParser, json_depth


def parse(body: bytes) -> Any:
    return JSONParser().parse(io.BytesIO(body))


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("[[[{{{", 0),
        ([], 1),
        ({}, 1),
        ([1, "]]]", [2, [3]], {"a": {}}], 3),
        ({"a": [{"b": [[]]}], "c": [1, 2, 3]}, 5),
        (json.loads(deep(100)), 100),
    ],
)
def test_it_measures_how_deep_a_value_nests(value: Any, depth: int) -> None:
    assert json_depth(value) == depth


def test_it_accepts_a_body_as_deep_as_the_limit_and_refuses_one_level_more(settings: Settings) -> None:
    settings.JSON_MAX_DEPTH = 10
    assert json_depth(parse(b'{"a": ' + deep(9).encode() + b"}")) == 10
    with pytest.raises(ParseError) as refused:
        parse(b'{"a": ' + deep(10).encode() + b"}")
    assert (str(refused.value.detail), refused.value.get_codes()) == (
        "JSON parse error - nested deeper than 10 levels.",
        "invalid_json",
    )


def test_brackets_inside_strings_do_not_count(settings: Settings) -> None:
    settings.JSON_MAX_DEPTH = 3
    body = json.dumps({"code": "[" * 50 + "{" * 50, "list": [["x"]]}).encode()
    assert parse(body) == {"code": "[" * 50 + "{" * 50, "list": [["x"]]}


@pytest.mark.parametrize("depth", [101, 2_000, 200_000])
def test_it_refuses_bodies_too_deep_for_pythons_own_decoder_with_the_same_400(depth: int) -> None:
    # From ~1000 levels json.loads raises RecursionError (it was a 500); 100 is the default limit.
    with pytest.raises(ParseError) as refused:
        parse(('{"a":' * depth + "1" + "}" * depth).encode())
    assert str(refused.value.detail) == "JSON parse error - nested deeper than 100 levels."


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_it_measures_bodies_in_every_encoding_json_allows(encoding: str) -> None:
    assert json_depth(parse(json.dumps({"a": json.loads(deep(99))}).encode(encoding))) == 100
    with pytest.raises(ParseError):
        parse(json.dumps({"a": json.loads(deep(100))}).encode(encoding))
