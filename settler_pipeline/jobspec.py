"""The job spec: what a reconciliation job reads (source and target), how it maps their columns, and
how it matches them.

A job spec is a YAML file (see ``docs/job-spec.md``) validated by the pydantic models below, all with
``extra="forbid"`` so a misspelt key is an error instead of a silently ignored option. Loading promises:

* every problem is reported as one :class:`~settler_pipeline.errors.JobSpecError` naming the spec file, the
  field path (``source.columns.amount``) and what was expected, never a raw pydantic traceback;
* a ``preset`` is expanded into its defaults when the spec is validated, so the model holds the effective
  settings (explicit keys override the preset's);
* relative ``path`` values are resolved against the spec file's directory, and :attr:`JobSpec.base_dir`
  is that directory (DuckDB SQL sides resolve relative file names in their query against it too).
"""

from __future__ import annotations

import codecs
import difflib
import functools
import hashlib
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from settler_pipeline.domain.matching.config import MatchConfig
from settler_pipeline.errors import JobSpecError, NotFoundError, ValidationError
from settler_pipeline.ids import UUID_PATTERN

JOB_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
CURRENCY_CODE_PATTERN = r"^[A-Z]{3}$"

AdapterKind = Literal["csv", "parquet", "jsonl", "duckdb_sql"]
PresetName = Literal["stripe_balance_transactions", "bank_statement_csv"]
ColumnField = Literal[
    "record_id",
    "amount",
    "debit",
    "credit",
    "currency",
    "occurred_at",
    "reference",
    "description",
    "counterparty",
    "group_key",
    "any_reference",
]
FILE_ADAPTERS: frozenset[str] = frozenset({"csv", "parquet", "jsonl"})
THOUSANDS_SEPARATORS = (",", ".", " ", "'", "\u00a0", "\u202f", "")
DOCS_HINT = "see docs/job-spec.md for every key and a complete example"
MAX_ROW_ZONES = 200
MAX_REFERENCE_PATTERNS = 20
MAX_PATTERN_LENGTH = 200
MAX_SPEC_BYTES = 256 * 1024
MAX_REPORTED_PROBLEMS = 20


class DateRange(BaseModel):
    """An inclusive range of calendar dates (UTC) a run reconciles; ``start <= end``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.start > self.end:
            # Our own error (not ValueError) so it surfaces as is instead of wrapped by pydantic.
            raise ValidationError(
                f"date range start {self.start} is after its end {self.end}",
                hint="give start <= end (both dates are included)",
            )
        return self

    @property
    def days(self) -> int:
        """Number of calendar days in the range, both ends included."""
        return (self.end - self.start).days + 1

    def widened(self, margin_days: int) -> DateRange:
        """The range extended by ``margin_days`` on both sides (the settlement-lag margin)."""
        if margin_days < 0:
            raise ValidationError(f"margin_days must be >= 0, got {margin_days}", hint="use 0 for no margin")
        return DateRange(
            start=self.start - timedelta(days=margin_days), end=self.end + timedelta(days=margin_days)
        )

    def contains(self, day: date) -> bool:
        """Whether ``day`` lies in the range (ends included)."""
        return self.start <= day <= self.end


def _as_column_list(value: object) -> object:
    # One column name is the common case; a list means "the first of these columns with a value".
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError("expected a column name or a list of column names")


ColumnRef = Annotated[
    list[Annotated[str, Field(min_length=1)]], BeforeValidator(_as_column_list), Field(min_length=1)
]

# A binary + or - between column names needs spaces around it: "net-amount" stays one column name.
_TERM_SPLIT = re.compile(r"\s+([+-])\s+")
AMOUNT_TERM_SEPARATOR = "#"
"""Mapped field names of an amount expression's terms: ``amount#0``, ``amount#1``, ..."""


class AmountTerm(BaseModel):
    """One column of an amount expression, added (``sign`` 1) or subtracted (-1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sign: Literal[1, -1] = 1
    column: str = Field(min_length=1)


class AmountExpression(BaseModel):
    """An amount computed from several columns of the row: ``gross - fee``, ``net + tip``, ``- amount``.

    Each column is parsed as an amount on its own (same format options); a blank term counts as 0, a
    row whose terms are all blank is quarantined as missing its amount."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    terms: list[AmountTerm] = Field(min_length=1, max_length=20)

    def __str__(self) -> str:
        text = ""
        for i, term in enumerate(self.terms):
            op = "-" if term.sign < 0 else "+"
            text += (f"{op} " if op == "-" else "") + term.column if i == 0 else f" {op} {term.column}"
        return text


def parse_amount_expression(text: str) -> AmountExpression | None:
    """``"gross - fee"`` as an :class:`AmountExpression`; ``None`` for a plain column name. Operators
    are ``+`` and ``-`` with spaces around them; a leading ``-`` flips the sign of the first column."""
    body = text.strip()
    sign: Literal[1, -1] = 1
    if body.startswith("-") and len(body) > 1:
        sign, body = -1, body[1:].strip()
    parts = _TERM_SPLIT.split(body)
    if len(parts) == 1 and sign == 1:
        return None
    terms = [AmountTerm(sign=sign, column=parts[0].strip())]
    for op, column in zip(parts[1::2], parts[2::2], strict=True):
        terms.append(AmountTerm(sign=1 if op == "+" else -1, column=column.strip()))
    if any(not t.column or _TERM_SPLIT.search(f" {t.column} ") for t in terms):
        raise ValueError(f"cannot read the amount expression {text!r}; write it like 'gross - fee'")
    return AmountExpression(terms=terms)


def _as_amount_ref(value: object) -> object:
    # A string with + or - between names is an expression; a list is always column names.
    if isinstance(value, str) and (expression := parse_amount_expression(value)) is not None:
        return expression
    if isinstance(value, dict | AmountExpression):
        return value
    return _as_column_list(value)


AmountRef = Annotated[
    AmountExpression | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)],
    BeforeValidator(_as_amount_ref),
]


class CsvOptions(BaseModel):
    """How to read a delimited text file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote_char: str | None = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    skip_rows: int = Field(default=0, ge=0)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codec = codecs.lookup(value)
        except LookupError:
            codec = None
        # rot13, base64 and friends are codecs too, but not text encodings: reading with one fails
        if codec is None or not getattr(codec, "_is_text_encoding", True):
            raise ValueError(
                f"unknown text encoding {value!r}; use e.g. utf-8, utf-8-sig, latin-1, cp1252, utf-16"
            )
        return codec.name

    @model_validator(mode="after")
    def _distinct_characters(self) -> CsvOptions:
        if self.quote_char is not None and self.quote_char == self.delimiter:
            raise ValueError(f"quote_char and delimiter must differ (both are {self.delimiter!r})")
        if self.delimiter in ("\n", "\r") or self.quote_char in ("\n", "\r"):
            raise ValueError("delimiter and quote_char cannot be a line break")
        return self


class ColumnMap(BaseModel):
    """Which input column holds each canonical field.

    Each value is a column name, or a list of column names meaning "the first of these that has a
    value on the row" (columns absent from the file are skipped; at least one must exist). A field
    listed in ``optional`` may name columns that are all absent: the field is then empty.
    ``amount`` and the ``debit``/``credit`` pair are alternatives. Without ``record_id`` the id is
    ``line-<n>`` (the data row number), which is stable for the same file.

    ``any_reference`` is the other list form: *every* one of these columns that has a value on the
    row is a reference of the record (the matcher tries each), beside the one ``reference`` holds.

    ``amount`` may also be computed from several columns: ``amount: gross - fee`` (see
    :class:`AmountExpression`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_id: ColumnRef | None = None
    amount: AmountRef | None = None
    debit: ColumnRef | None = None
    credit: ColumnRef | None = None
    currency: ColumnRef | None = None
    occurred_at: ColumnRef | None = None
    reference: ColumnRef | None = None
    description: ColumnRef | None = None
    counterparty: ColumnRef | None = None
    group_key: ColumnRef | None = None
    any_reference: ColumnRef | None = None
    optional: list[ColumnField] = Field(default_factory=list)

    @model_validator(mode="after")
    def _amount_xor_debit_credit(self) -> ColumnMap:
        if self.amount is not None and (self.debit is not None or self.credit is not None):
            raise ValueError("map either amount or the debit/credit pair, not both")
        if self.amount is None and (self.debit is None) != (self.credit is None):
            raise ValueError("debit and credit go together: map both columns (or map amount instead)")
        if self.amount is None and self.debit is None:
            raise ValueError("map amount (one signed column) or debit and credit (two columns)")
        if self.occurred_at is None:
            raise ValueError("map occurred_at: the column holding the transaction date/time")
        for required in ("amount", "debit", "credit", "occurred_at"):
            if required in self.optional:
                raise ValueError(f"{required} cannot be optional")
        return self

    def mapped(self) -> dict[str, list[str]]:
        """The canonical fields that are mapped, with their candidate columns."""
        out: dict[str, list[str]] = {}
        for name in typing.get_args(ColumnField):
            value = getattr(self, name)
            if isinstance(value, AmountExpression):
                # every column of an expression must be there: one mapped field per term
                for i, term in enumerate(value.terms):
                    out[f"{name}{AMOUNT_TERM_SEPARATOR}{i}"] = [term.column]
            elif value is not None:
                out[name] = list(value)
        return out


class AmountOptions(BaseModel):
    """How amounts are written: decimal or integer minor units, separators and the sign convention.

    ``thousands_separator`` defaults to ``","`` (or ``"."`` when the decimal separator is ``","``);
    ``""`` allows no grouping. Grouping must be in threes (``1,234,567.89``) so that a decimal comma
    read with the wrong settings is rejected rather than silently multiplied by 100.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["decimal", "minor_units"] = "decimal"
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: str | None = None
    sign: Literal["as_is", "negate", "abs"] = "as_is"

    @field_validator("thousands_separator")
    @classmethod
    def _known_separator(cls, value: str | None) -> str | None:
        if value is not None and value not in THOUSANDS_SEPARATORS:
            raise ValueError(f"thousands_separator must be one of {list(THOUSANDS_SEPARATORS)!r}")
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> AmountOptions:
        if self.thousands_separator == self.decimal_separator:
            raise ValueError("thousands_separator and decimal_separator must differ")
        return self

    @property
    def grouping(self) -> str:
        """The effective thousands separator ("" when none is allowed)."""
        if self.thousands_separator is not None:
            return self.thousands_separator
        return "." if self.decimal_separator == "," else ","


class DateOptions(BaseModel):
    """How dates are written and which zone naive values are in.

    ``format`` is ``iso``, ``epoch_seconds``, ``epoch_millis`` or a strftime pattern such as
    ``"%d/%m/%Y"``. Naive values are local times in ``timezone`` (DST-aware) converted to UTC; values
    with an offset keep it; date-only values are midnight in ``timezone``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = "iso"
    timezone: str = "UTC"
    # Per-row zones: the column naming each row's zone (an IANA name, or with ``timezones`` a key
    # of that mapping such as an account number); rows where it is blank use ``timezone``.
    timezone_column: str | None = Field(default=None, min_length=1)
    timezones: dict[str, str] = Field(default_factory=dict, max_length=MAX_ROW_ZONES)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in ("iso", "epoch_seconds", "epoch_millis"):
            return value
        if "%" not in value:
            raise ValueError(
                f"date format {value!r} is neither iso, epoch_seconds, epoch_millis nor a strftime "
                "pattern such as '%d/%m/%Y'"
            )
        if "%Y" not in value and "%y" not in value:
            raise ValueError(f"date format {value!r} has no year (%Y or %y)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # The IANA names the parser knows; "localtime" (the host's zone file) and "Factory" load in
        # zoneinfo but not in Polars, and a spec must mean the same zone on every host anyway.
        if value not in _iana_zones():
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/London")
        return value

    @field_validator("timezones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for key, zone in value.items():
            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"timezones[{key!r}]: unknown time zone {zone!r}; use an IANA name such as Europe/Berlin"
                ) from None
        return value

    @model_validator(mode="after")
    def _mapping_needs_a_column(self) -> DateOptions:
        if self.timezones and self.timezone_column is None:
            raise ValueError("timezones maps values of timezone_column: set timezone_column too")
        return self

    @property
    def has_offset(self) -> bool:
        """Whether a strftime format carries its own UTC offset (``%z``)."""
        return "%z" in self.format


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory", "posixrules"})


class CurrencyOptions(BaseModel):
    """Currency handling: a default for rows (or files) without a currency, and extra minor-unit
    exponents for codes the built-in table does not know (anything else defaults to 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str | None = None
    exponents: dict[str, int] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _iso_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not re.fullmatch(CURRENCY_CODE_PATTERN, code):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code (three letters such as EUR)")
        return code

    @field_validator("exponents")
    @classmethod
    def _exponents(cls, value: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for code, exponent in value.items():
            upper = code.strip().upper()
            if not re.fullmatch(CURRENCY_CODE_PATTERN, upper):
                raise ValueError(f"{code!r} is not an ISO 4217 currency code")
            if not 0 <= exponent <= 4:
                raise ValueError(f"exponent for {upper} must be 0..4, got {exponent}")
            out[upper] = exponent
        return out


class SideSpec(BaseModel):
    """One side of a reconciliation (the source or the target): where its rows come from and how
    they map onto the canonical transaction schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: AdapterKind
    path: Path | None = None
    query: str | None = None
    preset: PresetName | None = None
    csv: CsvOptions | None = None
    columns: ColumnMap
    amount: AmountOptions = AmountOptions()
    dates: DateOptions = DateOptions()
    currency: CurrencyOptions = CurrencyOptions()
    # Regular expressions whose matches in the description or reference text are further references
    # (``INV-?\\d+``); values (besides the documented defaults) that mean "no reference".
    reference_patterns: list[str] = Field(default_factory=list, max_length=MAX_REFERENCE_PATTERNS)
    reference_placeholders: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("reference_patterns")
    @classmethod
    def _safe_patterns(cls, value: list[str]) -> list[str]:
        from settler_pipeline.domain.matching.normalise import check_pattern

        for pattern in value:
            problem = check_pattern(pattern, max_length=MAX_PATTERN_LENGTH)
            if problem:
                raise ValueError(f"reference pattern {pattern!r} {problem}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("preset"), str):
            from settler_pipeline.adapters.presets import apply_preset

            return apply_preset(str(data["preset"]), dict(data))
        return data

    @model_validator(mode="after")
    def _adapter_needs(self) -> SideSpec:
        if self.adapter in FILE_ADAPTERS:
            if self.path is None:
                raise ValueError(f"adapter {self.adapter} needs path: the file to read")
            if self.query is not None:
                raise ValueError("query is only for adapter duckdb_sql")
        else:
            if not self.query or not self.query.strip():
                raise ValueError("adapter duckdb_sql needs query: a SELECT statement")
            if self.path is not None:
                raise ValueError(
                    "adapter duckdb_sql takes no path: name the files inside query "
                    "(relative names resolve against the spec's directory)"
                )
        if self.csv is not None and self.adapter != "csv":
            raise ValueError("csv options only apply to adapter csv")
        if self.columns.currency is None and self.currency.default is None:
            raise ValueError("map columns.currency or set currency.default")
        return self

    @property
    def csv_options(self) -> CsvOptions:
        """The CSV options in effect (defaults when the spec gives none)."""
        return self.csv if self.csv is not None else CsvOptions()

    def describe(self) -> str:
        """A short human label for messages: the file path or ``duckdb_sql query``."""
        return str(self.path) if self.path is not None else "duckdb_sql query"


class JobSpec(BaseModel):
    """A reconciliation job: a source, a target, the matching passes and the settlement-lag margin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=JOB_NAME_PATTERN)
    description: str | None = None
    tenant_id: str | None = Field(default=None, pattern=UUID_PATTERN)
    date_window_days: int = Field(default=3, ge=0, le=366)
    source: SideSpec
    target: SideSpec
    matching: MatchConfig = MatchConfig()

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _spec_path: Path | None = PrivateAttr(default=None)

    @field_validator("tenant_id")
    @classmethod
    def _lower_uuid(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @property
    def base_dir(self) -> Path:
        """The directory relative names resolve against (the spec file's directory)."""
        return self._base_dir

    @property
    def spec_path(self) -> Path | None:
        """The file the spec was loaded from (None for a spec validated from a mapping)."""
        return self._spec_path

    def fingerprint(self) -> str:
        """A SHA-256 of the effective settings (presets expanded, paths resolved): equal fingerprints
        mean the same rules read the same places, which makes re-runs comparable."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def load_job_spec(path: str | Path) -> JobSpec:
    """Read and validate a YAML job spec.

    Raises :class:`NotFoundError` when the file does not exist and :class:`JobSpecError` (naming the
    file, the field path and what was expected) for malformed YAML, unknown keys or invalid values.
    Relative paths in the spec are resolved against the spec file's directory.
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
        raise JobSpecError(
            f"job spec {spec_path} is not valid YAML: {_yaml_problem(e)}", hint=DOCS_HINT
        ) from e
    spec = job_spec_from_mapping(data, base_dir=spec_path.resolve().parent, origin=str(spec_path))
    spec._spec_path = spec_path
    return spec


def job_spec_from_mapping(data: object, *, base_dir: Path, origin: str = "<job spec>") -> JobSpec:
    """Validate an already-parsed job spec (e.g. from an API payload); ``origin`` names it in errors
    and relative paths resolve against ``base_dir``."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise JobSpecError(
            f"job spec {origin} must be a mapping of keys (name, source, target, ...), but it is {kind}",
            hint=DOCS_HINT,
        )
    try:
        spec = JobSpec.model_validate(dict(data))
    except PydanticValidationError as e:
        raise JobSpecError(_format_errors(origin, e), hint=DOCS_HINT) from None
    resolved = spec.model_copy(
        update={
            "source": _resolve_side(spec.source, base_dir),
            "target": _resolve_side(spec.target, base_dir),
        }
    )
    resolved._base_dir = base_dir
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


def _format_errors(origin: str, error: PydanticValidationError) -> str:
    lines = []
    items = error.errors(include_url=False)
    for item in items[:MAX_REPORTED_PROBLEMS]:
        loc = tuple(item["loc"])
        where = _loc_path(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(loc[:-1])
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


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts (best effort: [] when the path cannot be followed)."""
    current: Any = JobSpec
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
