"""Loading a job spec: reading the YAML safely (no duplicate keys, no aliases, a size limit),
validating it into a :class:`JobSpec` and resolving relative paths against the spec's directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from settler_pipeline.errors import JobSpecError, NotFoundError
from settler_pipeline.jobspec.model import JobSpec, SideSpec
from settler_pipeline.jobspec.problems import DOCS_HINT, format_errors

MAX_SPEC_BYTES = 256 * 1024


def load_job_spec(path: str | Path, *, show_contents: bool = True) -> JobSpec:
    """Read and validate a YAML job spec.

    Raises :class:`NotFoundError` when the file does not exist and :class:`JobSpecError` (naming the
    file, the field path and what was expected) for malformed YAML, unknown keys or invalid values.
    With ``show_contents=False`` an error names the file and the number of problems only, never a key,
    value or line of it: the file is read with the process's rights, which may be more than the
    caller's. Relative paths in the spec are resolved against the spec file's directory.
    """
    spec_path = Path(path)
    if not spec_path.is_file():
        raise NotFoundError(
            f"job spec not found: {spec_path}",
            hint="check the path; job specs are YAML files such as examples/stripe_vs_bank.yaml",
        )
    try:
        size = spec_path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise JobSpecError(
                f"job spec {spec_path} is {size} bytes; the limit is {MAX_SPEC_BYTES}",
                hint="a job spec describes a job; data belongs in the files it reads",
            )
        text = spec_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JobSpecError(f"cannot read job spec {spec_path}: {e}", hint="save it as UTF-8 text") from e
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        if not show_contents:
            raise _withheld(spec_path, "is not valid YAML") from None
        raise JobSpecError(
            f"job spec {spec_path} is not valid YAML: {_yaml_problem(e)}", hint=DOCS_HINT
        ) from e
    try:
        return job_spec_from_mapping(
            data, base_dir=spec_path.resolve().parent, origin=str(spec_path), spec_path=spec_path
        )
    except JobSpecError:
        if show_contents:
            raise
        raise _withheld(spec_path, "is not a valid job spec") from None


def _withheld(spec_path: Path, what: str) -> JobSpecError:
    """An error about a spec whose contents must not be shown: the file and what is wrong in general."""
    return JobSpecError(
        f"job spec {spec_path} {what}; its contents are not shown, as it lies outside the job specs "
        "folder and the allowed input roots",
        hint="move it into the job specs folder or an input root of your tenant to see each problem "
        "(docs/job-spec.md#where-a-spec-may-read)",
    )


def job_spec_from_mapping(
    data: object, *, base_dir: Path, origin: str = "<job spec>", spec_path: Path | None = None
) -> JobSpec:
    """Validate an already-parsed job spec (e.g. from an API payload); ``origin`` names it in errors,
    relative paths resolve against ``base_dir`` and ``spec_path`` is the file it came from, if any."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise JobSpecError(
            f"job spec {origin} must be a mapping of keys (name, source, target, ...), but it is {kind}",
            hint=DOCS_HINT,
        )
    try:
        spec = JobSpec.model_validate(dict(data), context={"base_dir": base_dir, "spec_path": spec_path})
    except PydanticValidationError as e:
        raise JobSpecError(format_errors(origin, e, JobSpec), hint=DOCS_HINT) from None
    resolved = spec.model_copy(
        update={
            "source": _resolve_side(spec.source, base_dir),
            "target": _resolve_side(spec.target, base_dir),
        }
    )
    return resolved


def _resolve_side(side: SideSpec, base_dir: Path) -> SideSpec:
    if side.path is None or side.path.is_absolute():
        return side
    return side.model_copy(update={"path": base_dir / side.path})


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (PyYAML keeps the last one silently) and
    anchors and aliases (a few hundred bytes of nested aliases expand to gigabytes)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed in a job spec",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
