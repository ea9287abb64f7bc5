"""The physical shape of stored events, and conversion between envelopes and columnar batches.

Every segment, write-ahead-log record and in-memory batch has exactly :data:`EVENT_SCHEMA`. The event's
date (UTC date of ``timestamp``, the event's own time) is the Hive partition key and is not stored as a
column inside the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from settler_pipeline.domain.envelope import EventEnvelope, canonical_json, validate_name
from settler_pipeline.errors import InvalidIdError, ValidationError
from settler_pipeline.ids import UUID_PATTERN
from settler_pipeline.store.event_ids import new_ids

TS = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [  # type: ignore[arg-type]
        pa.field("global_position", pa.int64(), nullable=False),
        pa.field("aggregate_version", pa.int64(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("aggregate_id", pa.string(), nullable=False),
        pa.field("aggregate_type", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_version", pa.int32(), nullable=False),
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("correlation_id", pa.string(), nullable=False),
        pa.field("causation_id", pa.string()),
        pa.field("timestamp", TS, nullable=False),
        pa.field("created_at", TS, nullable=False),
        pa.field("data", pa.string(), nullable=False),
        pa.field("metadata_extra", pa.string()),
    ]
)
COLUMNS = tuple(EVENT_SCHEMA.names)
POLARS_SCHEMA: dict[str, pl.DataType] = {
    "global_position": pl.Int64(),
    "aggregate_version": pl.Int64(),
    "event_id": pl.String(),
    "aggregate_id": pl.String(),
    "aggregate_type": pl.String(),
    "event_type": pl.String(),
    "event_version": pl.Int32(),
    "tenant_id": pl.String(),
    "user_id": pl.String(),
    "correlation_id": pl.String(),
    "causation_id": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "created_at": pl.Datetime("us", "UTC"),
    "data": pl.String(),
    "metadata_extra": pl.String(),
}

# Columns a caller supplies for a columnar append; the store assigns the rest.
REQUIRED_INPUT = ("aggregate_id", "aggregate_type", "event_type", "data", "tenant_id", "correlation_id")
OPTIONAL_INPUT = ("event_id", "event_version", "user_id", "causation_id", "timestamp", "metadata_extra")
UUID_COLUMNS = ("event_id", "aggregate_id", "tenant_id", "correlation_id", "causation_id")
_LOWER_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$"


def envelope_columns(events: Sequence[EventEnvelope]) -> dict[str, list[Any]]:
    """The caller-chosen columns of a batch of (already validated) envelopes, in batch order."""
    meta = [event.metadata for event in events]
    return {
        "event_id": [event.id for event in events],
        "aggregate_id": [event.aggregate_id for event in events],
        "aggregate_type": [event.aggregate_type for event in events],
        "event_type": [event.event_type for event in events],
        "event_version": [event.event_version for event in events],
        "data": [canonical_json(event.data) for event in events],
        "tenant_id": [m.tenant_id for m in meta],
        "user_id": [m.user_id for m in meta],
        "correlation_id": [m.correlation_id for m in meta],
        "causation_id": [m.causation_id for m in meta],
        "timestamp": [m.timestamp for m in meta],
        # model_extra is what extra_fields() copies; read once per event, not twice
        "metadata_extra": [canonical_json(dict(x)) if (x := m.model_extra) else None for m in meta],
    }


# nullable here: missing values are refused by prepare_frame with a clear error, not by Arrow
_INPUT_SCHEMA = pa.schema([pa.field(n, EVENT_SCHEMA.field(n).type) for n in REQUIRED_INPUT + OPTIONAL_INPUT])


def envelopes_to_frame(events: Sequence[EventEnvelope]) -> pl.DataFrame:
    """A batch of (already validated) envelopes as an input frame for :func:`prepare_frame`."""
    columns = envelope_columns(events)
    # through Arrow: building the columns from Python lists is 2-3x faster there than in Polars
    frame = pl.from_arrow(pa.table({n: columns[n] for n in _INPUT_SCHEMA.names}, schema=_INPUT_SCHEMA))
    assert isinstance(frame, pl.DataFrame)
    return frame


def prepare_frame(batch: pl.DataFrame | pa.Table, *, now: datetime) -> pl.DataFrame:
    """Validate a columnar batch and fill defaults, without positions.

    Returns a frame with every :data:`EVENT_SCHEMA` column except the store-assigned
    ``global_position``, ``aggregate_version`` and ``created_at`` (filled with placeholders).
    Raises :class:`ValidationError` / :class:`InvalidIdError` naming the column and the first bad value;
    nothing is written when it raises."""
    frame = pl.from_arrow(batch) if isinstance(batch, pa.Table) else batch
    if not isinstance(frame, pl.DataFrame):
        raise ValidationError("a columnar batch must be a Polars DataFrame or an Arrow table")
    missing = [c for c in REQUIRED_INPUT if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"columnar batch is missing column(s) {', '.join(missing)}",
            hint=f"required: {', '.join(REQUIRED_INPUT)}; optional: {', '.join(OPTIONAL_INPUT)}",
        )
    unknown = [c for c in frame.columns if c not in REQUIRED_INPUT + OPTIONAL_INPUT]
    if unknown:
        raise ValidationError(
            f"columnar batch has unknown column(s) {', '.join(unknown)}",
            hint="put event fields inside the JSON 'data' column and extra metadata in 'metadata_extra'",
        )
    timestamp_type = frame.schema.get("timestamp")
    if isinstance(timestamp_type, pl.Datetime) and timestamp_type.time_zone is None:
        raise ValidationError(
            "column timestamp has no time zone",
            hint="pass timezone-aware timestamps (Settler stores every time in UTC)",
        )
    n = frame.height
    defaults: list[pl.Expr] = []
    if "event_id" not in frame.columns:
        frame = frame.with_columns(new_ids(n))
    for name, value in (
        ("event_version", pl.lit(1, dtype=pl.Int32)),
        ("user_id", pl.lit(None, dtype=pl.String)),
        ("causation_id", pl.lit(None, dtype=pl.String)),
        ("timestamp", pl.lit(now, dtype=POLARS_SCHEMA["timestamp"])),
        ("metadata_extra", pl.lit(None, dtype=pl.String)),
    ):
        if name not in frame.columns:
            defaults.append(value.alias(name))
    if defaults:
        frame = frame.with_columns(defaults)
    try:
        frame = frame.select(
            [pl.col(name).cast(POLARS_SCHEMA[name], strict=True) for name in REQUIRED_INPUT + OPTIONAL_INPUT]
        )
    except pl.exceptions.PolarsError as exc:
        raise ValidationError(f"columnar batch has a column of the wrong type: {exc}") from exc
    if _plainly_valid(frame):
        lower: list[str] = []
    else:  # find what is wrong (and name it), or the id columns sent in upper case
        lower = _check_ids(frame)  # before lowercasing, so an error names the value exactly as sent
        frame = frame.with_columns(*(pl.col(c).str.to_lowercase() for c in lower))
        _check_columns(frame)
    return frame.with_columns(
        pl.col("timestamp").dt.convert_time_zone("UTC"),
        pl.lit(0, dtype=pl.Int64).alias("global_position"),
        pl.lit(0, dtype=pl.Int64).alias("aggregate_version"),
        pl.lit(now, dtype=POLARS_SCHEMA["created_at"]).alias("created_at"),
    ).select(COLUMNS)


def _plainly_valid(frame: pl.DataFrame) -> bool:
    """Whether the batch passes every check of :func:`_check_ids` and :func:`_check_columns` with its
    ids already in lower case: one pass computing every check at once (the usual batch), where the
    checks one by one took some twenty passes."""
    ids = ("aggregate_id", "tenant_id", "correlation_id", "causation_id")
    verdict = frame.select(
        *(pl.col(c).unique().drop_nulls().str.contains(_LOWER_UUID_PATTERN).all().alias(c) for c in ids),
        pl.col("event_id").str.contains(_LOWER_UUID_PATTERN).all().alias("event_id"),
        *(
            pl.col(c).unique().str.contains(_NAME_PATTERN).all().alias(c)
            for c in ("aggregate_type", "event_type")
        ),
        pl.any_horizontal(pl.col(_NOT_NULL).null_count() > 0).alias("nulls"),
        (pl.col("event_version").min().fill_null(1) >= 1).alias("versions"),
        (pl.col("event_id").n_unique() == pl.len()).alias("unique"),
    ).row(0, named=True)
    return not verdict.pop("nulls") and all(verdict.values())


_NOT_NULL = (
    "aggregate_id",
    "tenant_id",
    "correlation_id",
    "event_id",
    "aggregate_type",
    "event_type",
    "data",
)


def _check_ids(frame: pl.DataFrame) -> list[str]:
    """Validate every UUID column; return the columns holding upper-case hex (to be lower-cased).

    Bulk batches repeat the same stream, tenant and correlation ids, so those columns are checked on
    their distinct values; the common all-lower-case case costs one anchored regex per value."""
    upper: list[str] = []
    for column in ("aggregate_id", "tenant_id", "correlation_id", "event_id", "causation_id"):
        values = (
            frame[column] if column == "event_id" else frame[column].unique(maintain_order=True)
        ).drop_nulls()
        odd = values.filter(~values.str.contains(_LOWER_UUID_PATTERN))
        if not odd.len():
            continue
        bad = odd.filter(~odd.str.contains(UUID_PATTERN))
        if bad.len():
            field = column if column in ("aggregate_id", "event_id") else f"metadata.{column}"
            raise InvalidIdError(field, bad[0])
        upper.append(column)
    return upper


def _check_columns(frame: pl.DataFrame) -> None:
    for column in _NOT_NULL:
        if frame[column].null_count():
            raise ValidationError(f"column {column} has null values; every event needs one")
    for column in ("aggregate_type", "event_type"):
        names = frame[column].unique()
        bad_names = names.filter(~names.str.contains(_NAME_PATTERN))
        if bad_names.len():
            validate_name(column, str(bad_names[0]))
    if frame["event_version"].min() is not None and int(frame["event_version"].min()) < 1:  # type: ignore[arg-type]
        raise ValidationError("event_version must be >= 1")
    if frame["event_id"].n_unique() != frame.height:
        dupes = frame["event_id"].is_duplicated()
        raise ValidationError(
            f"event id {frame.filter(dupes)['event_id'][0]} appears twice in one batch",
            hint="every event in a batch needs its own id",
        )
