"""Request bodies validated with DRF's rules, without DRF's per-request cost.

Replaces: ``Serializer(data=...).is_valid(raise_exception=True)`` / ``.validated_data`` for the async views'
input serializers (``spignosapi.api.asyncviews`` exposes ``validated`` to them).

Measured gain: a chat-completions body costs 18 instead of 323 µs of CPU (``python -m bench.fastpath``,
2026-12-04; a shared 2-core machine at load average 6-10: noisy). DRF deep-copies and binds every declared
field for each serializer instance, most of the cost of validating a small body; this came in with issue 9's
first round of speed-ups (``bench/README.md``, "What was on the hot path", item 5; 2026-11-23).

Valid bodies of plain JSON types take the fast path, which applies DRF's rules (and the field validators and
``validate_<field>`` methods); anything it is not sure of, and so every invalid body, goes through DRF
itself, so errors are always DRF's own (a fuzz comparison over 18,000 bodies found no difference).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from rest_framework import fields
from rest_framework.serializers import Serializer

# Serializer fields, built once per thread and class (see ``validated``).
# A serializer field of any value types (DRF's Field is generic over four of them).
AnyField = fields.Field[Any, Any, Any, Any]

_fields = threading.local()


def _reuse_fields(serializer: Serializer[Any]) -> None:
    """Give ``serializer`` the fields of the previous instance of its class in this thread.

    DRF deep-copies and binds every declared field for each serializer instance (most of the cost of
    validating a small body). Validation is synchronous, so within one thread one set of bound fields can
    serve instance after instance: only their ``parent`` (through which they reach the root serializer,
    its context and ``partial``) has to point at the current one.
    """
    cache: dict[type, Any] = _fields.__dict__.setdefault("by_class", {})
    fields = cache.get(type(serializer))
    if fields is None:
        cache[type(serializer)] = serializer.fields  # built (copied and bound) the usual way, once
        return
    fields.serializer = serializer
    for field in fields.values():
        field.parent = serializer
    serializer.__dict__["fields"] = fields  # the cached_property's slot


def validated(serializer_class: type[Serializer[Any]], data: dict[str, Any]) -> dict[str, Any]:
    """The serializer's ``validated_data`` for ``data``; its ``ValidationError`` otherwise.

    A valid body of plain JSON types takes the fast path below; anything it is not sure of (and every
    invalid body) goes through DRF itself, so errors are always DRF's own.
    """
    plan = _plan_for(serializer_class)
    if plan is not None:
        result = plan.validate(data)
        if result is not None:
            return result
    serializer = serializer_class(data=data)
    _reuse_fields(serializer)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --- the fast path: DRF's semantics for the field types the gateway's inputs use --------------------------


class _NotSure(Exception):
    """The fast path cannot vouch for this value: let DRF decide (and word any error)."""


def _run_validators(field: AnyField, value: Any) -> Any:
    for validator in field.validators:
        if getattr(validator, "requires_context", False):
            raise _NotSure
        validator(value)  # type: ignore[call-arg]  # a failure raises a ValidationError: DRF will word it
    return value


def _char(field: fields.CharField, data: Any) -> Any:
    if type(data) is not str:
        raise _NotSure
    value = data.strip() if field.trim_whitespace else data
    if value == "" or data == "":
        if not field.allow_blank:
            raise _NotSure
        return ""
    return _run_validators(field, value)


def _integer(field: fields.IntegerField, data: Any) -> Any:
    if type(data) is not int:
        raise _NotSure
    return _run_validators(field, data)


def _float(field: fields.FloatField, data: Any) -> Any:
    if type(data) not in (int, float):
        raise _NotSure
    value = float(data)
    if not math.isfinite(value):
        raise _NotSure
    return _run_validators(field, value)


def _boolean(field: fields.BooleanField, data: Any) -> Any:
    if type(data) is not bool:
        raise _NotSure
    return _run_validators(field, data)


def _choice(field: fields.ChoiceField, data: Any) -> Any:
    if type(data) is not str or data == "" or data not in field.choice_strings_to_values:
        raise _NotSure
    return _run_validators(field, field.choice_strings_to_values[data])


def _json(field: fields.JSONField, data: Any) -> Any:
    # The body came from json.loads, so json.dumps (DRF's check) cannot fail on it.
    if field.binary or field.encoder is not None:
        raise _NotSure
    return _run_validators(field, data)


def _list(field: fields.ListField, data: Any) -> Any:
    if type(data) is not list or (not field.allow_empty and not data):
        raise _NotSure
    child = _checker(field.child)
    return _run_validators(field, [_value(field.child, child, item) for item in data])


def _dict(field: fields.DictField, data: Any) -> Any:
    if type(data) is not dict or (not field.allow_empty and not data):
        raise _NotSure
    if type(field.child) is not fields._UnvalidatedField or field.child.validators:
        raise _NotSure
    return _run_validators(field, dict(data))


_CHECKERS: dict[type, Callable[[Any, Any], Any]] = {
    fields.CharField: _char,
    fields.SlugField: _char,
    fields.IntegerField: _integer,
    fields.FloatField: _float,
    fields.BooleanField: _boolean,
    fields.ChoiceField: _choice,
    fields.JSONField: _json,
    fields.ListField: _list,
    fields.DictField: _dict,
}


def _checker(field: AnyField) -> Callable[[Any, Any], Any]:
    checker = _CHECKERS.get(type(field))
    if checker is None or field.read_only or field.source not in (None, field.field_name):
        raise _NotSure
    return checker


def _value(field: AnyField, checker: Callable[[Any, Any], Any], data: Any) -> Any:
    """``Field.run_validation`` for a value that is present; ``_NotSure`` for anything DRF should see."""
    if data is None:
        if not field.allow_null:
            raise _NotSure
        return None
    return checker(field, data)


class _Plan:
    """A serializer's declared fields, checked with DRF's rules (``Serializer.to_internal_value``)."""

    def __init__(self, serializer_class: type[Serializer[Any]]) -> None:
        self.serializer_class = serializer_class
        declared: dict[str, AnyField] = serializer_class._declared_fields
        self.fields = [(name, field, _checker(field)) for name, field in declared.items()]
        self.field_methods = {name for name, _, _ in self.fields if hasattr(serializer_class, f"validate_{name}")}
        self.object_validate = serializer_class.validate is not Serializer.validate
        if serializer_class.get_validators is not Serializer.get_validators or getattr(
            getattr(serializer_class, "Meta", None), "validators", None
        ):
            raise _NotSure

    def validate(self, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._validate(data)
        except Exception:  # _NotSure, a ValidationError, a surprise: DRF will answer
            return None

    def _validate(self, data: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        serializer: Any = None
        for name, field, checker in self.fields:
            raw = data.get(name, fields.empty)
            if raw is fields.empty:
                if field.required:
                    raise _NotSure
                if field.default is fields.empty:
                    continue  # DRF's SkipField: the key is left out
                value = field.get_default()
            else:
                value = _value(field, checker, raw)
            if name in self.field_methods:
                if serializer is None:
                    serializer = self.serializer_class(data=data)
                value = getattr(serializer, f"validate_{name}")(value)
            result[name] = value
        if self.object_validate:
            if serializer is None:
                serializer = self.serializer_class(data=data)
            result = dict(serializer.validate(result))
        return result


_plans: dict[type, _Plan | None] = {}


def _plan_for(serializer_class: type[Serializer[Any]]) -> _Plan | None:
    if serializer_class not in _plans:
        try:
            _plans[serializer_class] = _Plan(serializer_class)
        except _NotSure:
            _plans[serializer_class] = None
    return _plans[serializer_class]
