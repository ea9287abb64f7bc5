"""Validation problems of a job spec as one readable message: each problem with its field path,
what was expected and, for an unknown key, the keys allowed there."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

DOCS_HINT = "see docs/job-spec.md for every key and a complete example"
MAX_REPORTED_PROBLEMS = 20


def format_errors(origin: str, error: PydanticValidationError, root: type[BaseModel]) -> str:
    """Every problem of ``error`` (at most :data:`MAX_REPORTED_PROBLEMS`) as lines naming the field path
    and what was expected; ``root`` is the validated model, used to list the keys allowed at a path."""
    lines = []
    items = error.errors(include_url=False)
    for item in items[:MAX_REPORTED_PROBLEMS]:
        loc = tuple(item["loc"])
        where = _loc_path(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(root, loc[:-1])
            detail = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, allowed, n=1)
            if close:
                detail += f" (did you mean {close[0]!r}?)"
            if allowed:
                detail += f"; allowed keys here: {', '.join(allowed)}"
        elif kind == "missing":
            detail = "required key is missing"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            detail = message
            if kind not in ("value_error", "assertion_error") and "input" in item:
                detail += f", got {_shortened(repr(item['input']))}"
        lines.append(f"  - {where}: {detail}")
    if len(items) > MAX_REPORTED_PROBLEMS:
        lines.append(f"  - ... and {len(items) - MAX_REPORTED_PROBLEMS} more")
    count = len(items)
    return f"job spec {origin} has {count} problem{'s' if count != 1 else ''}:\n" + "\n".join(lines)


def _shortened(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters: an error names the bad value, it does not echo a megabyte."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _loc_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts (best effort: [] when the path cannot be followed)."""
    current: Any = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _as_model(current)
    return sorted(model.model_fields) if model is not None else []


def _step(annotation: Any, part: int | str) -> Any:
    for candidate in _union_members(annotation):
        origin = typing.get_origin(candidate)
        if isinstance(part, int) and origin in (list, tuple):
            return typing.get_args(candidate)[0]
        model = _as_model(candidate)
        if model is None or not isinstance(part, str):
            continue
        if part in model.model_fields:
            return model.model_fields[part].annotation
        kind = model.model_fields.get("kind")
        if kind is not None and kind.default == part:
            return model
    return None


def _union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        out: list[Any] = []
        for member in typing.get_args(annotation):
            out.extend(_union_members(member))
        return out
    return [annotation]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
