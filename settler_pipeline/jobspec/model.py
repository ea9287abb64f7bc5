"""The job-spec models: a job and its two sides (the date range a run covers is the domain's
:class:`~settler_pipeline.domain.commands.DateRange`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from settler_pipeline.domain.matching.config import MatchConfig
from settler_pipeline.ids import UUID_PATTERN
from settler_pipeline.jobspec.columns import ColumnMap
from settler_pipeline.jobspec.options import AmountOptions, CsvOptions, CurrencyOptions, DateOptions

JOB_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
AdapterKind = Literal["csv", "parquet", "jsonl", "duckdb_sql"]
PresetName = Literal["stripe_balance_transactions", "bank_statement_csv"]
FILE_ADAPTERS: frozenset[str] = frozenset({"csv", "parquet", "jsonl"})
MAX_REFERENCE_PATTERNS = 20
MAX_PATTERN_LENGTH = 200


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

    @field_validator("path")
    @classmethod
    def _printable_path(cls, value: Path | None) -> Path | None:
        # the operating system refuses a NUL in a file name, and a control character is a name no
        # export tool writes: said here, as the spec's mistake, not later by the file system
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in str(value)):
            raise ValueError(
                f"path {str(value)!r} contains a control character (a NUL, a newline or a tab): "
                "write the file's name as it is on disk"
            )
        return value

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
    # Records (both sides) a run matches at once: a larger input is matched in blocks of one currency
    # and a run of days (see docs/job-spec.md, "Block-wise matching").
    block_records: int = Field(default=2_000_000, ge=1_000, le=1_000_000_000)
    source: SideSpec
    target: SideSpec
    matching: MatchConfig = MatchConfig()

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _spec_path: Path | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # Where a spec lives is not a key of the spec: it arrives in the validation context
        # (``{"base_dir": ..., "spec_path": ...}``), so no caller sets private state from outside.
        if isinstance(context, Mapping):
            self._base_dir = Path(context.get("base_dir", self._base_dir))
            spec_path = context.get("spec_path")
            self._spec_path = Path(spec_path) if spec_path is not None else None

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
        # How a run is cut into blocks is not a rule: it changes how much memory matching takes.
        return hashlib.sha256(self.model_dump_json(exclude={"block_records"}).encode()).hexdigest()
