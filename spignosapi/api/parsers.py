r"""A JSON parser that refuses bodies over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` with 413.

DRF reads the raw request stream, which bypasses Django's own size check, and a chunked request has no
Content-Length to check up front: so the parser reads at most one byte more than the limit.

Numbers must be finite: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (Python's ``json`` accepts them
by default), and a literal too large for a float (``1e999``) would become ``inf`` and be sent upstream as
``Infinity``, which is not JSON either.

It also refuses text that JSON can carry but the platform cannot keep: NUL characters (``\u0000``, which
PostgreSQL refuses in text and jsonb) and lone UTF-16 surrogates (``\ud800``, which have no UTF-8 form).
The body is decoded strictly (``json.loads`` decodes bytes with ``surrogatepass``, which let a raw encoded
surrogate through), so both can only arrive as escapes: a body without ``\u0000`` / ``\ud8``-``\udf``
costs one scan.

Nesting is limited to ``JSON_MAX_DEPTH`` levels (400 ``invalid_json``): Python's decoder recurses once per
level and raised ``RecursionError`` (a 500) near 1000, and a body just under that still reached code that
recurses deeper per level (serializer copies, the encoder sending it upstream). A body cannot be deeper
than its count of ``[`` and ``{``, so one ``bytes.count`` of each is all a typical body costs; a body with
more is measured on the parsed value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from .errors import PayloadTooLarge


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


# Built once: json.loads with any option builds a decoder for every call.
_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        if stream is None:
            return {}
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body larger than {limit} bytes.")
        max_depth = settings.JSON_MAX_DEPTH
        try:
            # As json.loads finds the encoding (UTF-8, or UTF-16/32 by their BOM or zero bytes), but strict.
            data = _decoder.decode(raw.decode(json.detect_encoding(raw)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:
            raise _too_deep(max_depth) from None
        # Counted in bytes: in UTF-16/32 every bracket still holds its byte, so the count is never lower.
        if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(data) > max_depth:
            raise _too_deep(max_depth)
        if b"\\u" in raw and _UNSAFE_ESCAPE.search(raw):
            _check_text(data)
        return data


def _too_deep(max_depth: int) -> ParseError:
    return ParseError(f"JSON parse error - nested deeper than {max_depth} levels.", code="invalid_json")


def json_depth(value: Any) -> int:
    """How deeply the lists and dicts of ``value`` (parsed JSON) nest: a scalar is 0, ``[]`` 1, ``[{}]`` 2.

    Level by level, looking only at the values of each container (a text-heavy body has few of them).
    """
    depth = 0
    level = [value] if type(value) is list or type(value) is dict else []
    while level:
        depth += 1
        inner = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                if type(item) is list or type(item) is dict:
                    inner.append(item)
        level = inner
    return depth


# \u0000, or a surrogate escape \ud800-\udfff (a valid pair is checked too: the walk below lets it through).
_UNSAFE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _check_text(value: Any) -> None:
    """Raise ParseError for a string (key or value, at any depth) with a NUL or a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ParseError("JSON strings may not contain NUL (\\u0000) characters.", code="invalid_text")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ParseError(
                    "JSON strings may not contain lone UTF-16 surrogates (e.g. \\ud800).", code="invalid_text"
                ) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
