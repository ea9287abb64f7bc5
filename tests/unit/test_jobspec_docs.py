"""docs/job-spec.md documents every key a job spec accepts."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from settler_pipeline.jobspec import JobSpec, job_spec_from_mapping

DOC = Path(__file__).resolve().parents[2] / "docs" / "job-spec.md"


def _models(annotation: Any) -> list[type[BaseModel]]:
    """Every pydantic model an annotation can hold (through unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found += _models(argument)
    if isinstance(annotation, types.UnionType):
        for argument in annotation.__args__:
            found += _models(argument)
    return found


def accepted_keys() -> dict[str, set[str]]:
    """Key -> the models accepting it, over the whole job spec model tree."""
    keys: dict[str, set[str]] = {}
    seen: set[type[BaseModel]] = set()
    pending: list[type[BaseModel]] = [JobSpec]
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            keys.setdefault(name, set()).add(model.__name__)
            pending += _models(field.annotation)
    return keys


def test_every_key_the_spec_models_accept_is_documented() -> None:
    text = DOC.read_text()
    keys = accepted_keys()
    assert {"reference_patterns", "any_reference", "timezone_column", "max_parts"} <= set(keys)
    missing = sorted(
        f"{key} ({', '.join(sorted(models))})" for key, models in keys.items() if f"`{key}`" not in text
    )
    assert not missing, f"docs/job-spec.md does not document: {missing}"


def test_every_pass_kind_has_its_own_table() -> None:
    text = DOC.read_text()
    for kind in ("reference", "split", "amount_date", "group", "fuzzy"):
        assert f"**`{kind}`**" in text, kind


def test_the_worked_examples_in_the_docs_are_valid_specs(tmp_path: Path) -> None:
    blocks = DOC.read_text().split("```yaml\n")[1:]
    specs = [yaml.safe_load(block.split("```", 1)[0]) for block in blocks]
    whole = [spec for spec in specs if isinstance(spec, dict) and "name" in spec and "source" in spec]
    assert len(whole) >= 6
    for spec in whole:
        job_spec_from_mapping(spec, base_dir=tmp_path, origin=spec["name"])
