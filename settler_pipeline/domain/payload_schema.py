"""Polars schemas of event payloads, derived from the payload models (the one source of truth).

Every columnar reader of payloads (the bulk fold, snapshots, read models) asks here for the fields it
needs and gets their types from the pydantic models in :mod:`settler_pipeline.domain.events`, so a
field's type is written once. Only the *choice* of fields stays with the reader: decoding fewer
fields is faster, and a reader should say what it depends on.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel

TYPED_FLAG: Final = "payload_typed"
"""Name of the column saying a stored row's payload fields are in its typed payload columns."""

_SCALARS: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
}


def polars_type(annotation: Any) -> pl.DataType:
    """The Polars type that holds values of ``annotation`` as they appear in a payload's JSON:
    scalars as themselves, ``X | None`` as ``X`` (nullable), ``Literal`` of strings as String, lists
    as List, nested models as Struct, free-form ``dict`` as JSON text (String)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"no single column type for {annotation!r}")
        return polars_type(inner[0])
    if origin is Literal:
        values = get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return pl.String()
        raise TypeError(f"no column type for {annotation!r}")
    if origin is list:
        (item,) = get_args(annotation)
        return pl.List(polars_type(item))
    if origin is dict or annotation is dict:
        return pl.String()  # free-form: kept as JSON text
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pl.Struct(model_schema(annotation))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no column type for {annotation!r}")


def model_schema(model: type[BaseModel], fields: Iterable[str] | None = None) -> dict[str, pl.DataType]:
    """``{field: Polars type}`` of ``model`` in declaration order, or of the chosen ``fields`` in the
    order given. Raises ``KeyError`` naming a field the model does not have."""
    declared = model.model_fields
    names = list(declared) if fields is None else list(fields)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise KeyError(f"{model.__name__} has no field(s) {', '.join(unknown)}")
    return {name: polars_type(declared[name].annotation) for name in names}


def union_schema(
    models: Sequence[type[BaseModel]], fields: Iterable[str] | None = None
) -> dict[str, pl.DataType]:
    """One schema for payloads of several models (one column per field; a field absent from a
    payload decodes as null). Each field must exist in at least one model, with one type in all
    models that have it. Without ``fields``: every field of every model, in first-declared order."""
    if fields is None:
        fields = dict.fromkeys(name for m in models for name in m.model_fields)
    out: dict[str, pl.DataType] = {}
    for name in fields:
        found = {polars_type(m.model_fields[name].annotation) for m in models if name in m.model_fields}
        if not found:
            raise KeyError(f"no payload model among {[m.__name__ for m in models]} has a field {name!r}")
        if len(found) > 1:
            raise TypeError(f"field {name!r} has different types in {[m.__name__ for m in models]}")
        out[name] = found.pop()
    return out


def is_json_text(model: type[BaseModel], field: str) -> bool:
    """Whether ``field`` of ``model`` is free-form (a ``dict``) and so held as JSON text."""
    annotation = model.model_fields[field].annotation
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
        origin = get_origin(annotation)
    return origin is dict or annotation is dict
