"""Which JSON payloads Polars' decoder refuses for a typed schema, found row by row without asking it.

``str.json_decode`` into a Struct fails the whole column at the first value of the wrong kind, with no
way to null that row instead. When a batch of payloads fails, :func:`misfits` says which rows cannot
decode, in one pass over their text, so the rest decode in one call (probing the decoder by halving
costs about half a millisecond per attempt, seconds for a batch with many misfits).

The rules are the decoder's (pinned by tests against it): a String takes any scalar; Int64 and Float64
take numbers and booleans; a Boolean takes only booleans; a List takes an array of values its item
type takes, or a scalar its item type takes (as a one-item list); a Struct takes an object whose
fields its field types take (others are ignored); null fits everything. The answer errs one way only:
a row called a misfit is one the decoder refuses; a row it cannot judge (text that is not JSON,
non-finite numbers, repeated keys) is called fitting, and the decoder itself then has the last word.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any, Final

import polars as pl
from polars.datatypes import DataTypeClass


class _Unsure(Exception):
    """The text holds something the rules do not cover: leave the verdict to the decoder."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's fields, refusing repeated keys (which value the decoder keeps is its own affair)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Unsure
    return out


def _unsure_constant(_: str) -> Any:
    raise _Unsure  # NaN and Infinity are not JSON


_STRICT: Final = json.JSONDecoder(object_pairs_hook=_no_repeats, parse_constant=_unsure_constant)
"""The parser that confirms a misfit: the fast one below keeps the last of repeated keys."""

_Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsure  # a number too large for a double
    return not isinstance(value, (str, dict, list))


def _boolean(value: Any) -> bool:
    return value is None or isinstance(value, bool)


def _string(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _checker(given: pl.DataType | DataTypeClass) -> _Check:
    """A function saying whether a parsed JSON value fits ``given`` (null fits every type)."""
    dtype = given() if isinstance(given, type) else given  # a field's type may be the bare class
    if isinstance(dtype, pl.Struct):
        fields = [(f.name, _checker(f.dtype)) for f in dtype.fields]

        def struct(value: Any) -> bool:
            if value is None:
                return True
            return isinstance(value, dict) and all(check(value.get(name)) for name, check in fields)

        return struct
    if isinstance(dtype, pl.List):
        item = _checker(dtype.inner)
        scalar = not isinstance(dtype.inner, (pl.Struct, pl.List))  # a lone scalar is a one-item list

        def listed(value: Any) -> bool:
            if isinstance(value, list):
                return all(item(v) for v in value)
            return value is None or (scalar and not isinstance(value, dict) and item(value))

        return listed
    if isinstance(dtype, pl.String):
        return _string
    if isinstance(dtype, (pl.Int64, pl.Float64)):
        return _number
    if isinstance(dtype, pl.Boolean):
        return _boolean

    def unknown(_: Any) -> bool:
        raise _Unsure

    return unknown


def _verdict(check: _Check, value: Any) -> bool:
    try:
        return check(value)
    except (_Unsure, RecursionError):
        return True


def misfits(texts: Iterable[str | None], schema: pl.Struct) -> list[bool]:
    """For each JSON text, whether ``str.json_decode(schema)`` certainly refuses it (see the module
    docstring: ``False`` for every text it cannot judge)."""
    check = _checker(schema)
    out = []
    for text in texts:
        try:
            fits = text is None or _verdict(check, json.loads(text))
        except (ValueError, RecursionError):
            fits = True  # not JSON as Python reads it: the decoder decides
        if not fits:  # confirmed by the strict parser: repeated keys or NaN make it unsure
            try:
                fits = _verdict(check, _STRICT.decode(text))  # type: ignore[arg-type]
            except (_Unsure, ValueError, RecursionError):
                fits = True
        out.append(not fits)
    return out
