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

from settler_pipeline.domain.commands import DateRange
from settler_pipeline.jobspec.columns import (
    AMOUNT_TERM_SEPARATOR,
    AmountExpression,
    AmountTerm,
    ColumnField,
    ColumnMap,
    parse_amount_expression,
)
from settler_pipeline.jobspec.currencies import ISO_4217_CODES
from settler_pipeline.jobspec.loading import MAX_SPEC_BYTES, job_spec_from_mapping, load_job_spec
from settler_pipeline.jobspec.model import (
    FILE_ADAPTERS,
    JOB_NAME_PATTERN,
    AdapterKind,
    JobSpec,
    PresetName,
    SideSpec,
)
from settler_pipeline.jobspec.options import (
    CURRENCY_CODE_PATTERN,
    AmountOptions,
    CsvOptions,
    CurrencyOptions,
    DateOptions,
)
from settler_pipeline.jobspec.problems import DOCS_HINT

__all__ = [
    "AMOUNT_TERM_SEPARATOR",
    "CURRENCY_CODE_PATTERN",
    "DOCS_HINT",
    "FILE_ADAPTERS",
    "ISO_4217_CODES",
    "JOB_NAME_PATTERN",
    "MAX_SPEC_BYTES",
    "AdapterKind",
    "AmountExpression",
    "AmountOptions",
    "AmountTerm",
    "ColumnField",
    "ColumnMap",
    "CsvOptions",
    "CurrencyOptions",
    "DateOptions",
    "DateRange",
    "JobSpec",
    "PresetName",
    "SideSpec",
    "job_spec_from_mapping",
    "load_job_spec",
    "parse_amount_expression",
]
