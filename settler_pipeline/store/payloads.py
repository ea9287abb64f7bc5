"""Typed payload columns: the fields of every known event payload stored as typed Parquet columns
beside the JSON ``data``, so readers take the columns they need without parsing JSON.

Layout (a *sparse union*): one nullable column per payload field name across every payload model of
:data:`settler_pipeline.domain.events.PAYLOADS` (61 fields; a name has one type in every model that
has it), plus the flag :data:`TYPED`. A row's payload columns hold its payload exactly when ``TYPED``
is true, which the store guarantees for every event of a known type at its current version written to
a segment; other rows (unknown types, older versions, segments written before these columns) have
``TYPED`` false or null and only their ``data``. A segment file holds only the payload columns that
are not null on every one of its rows; a column a file lacks reads as null. Nested models are
Structs, lists are Lists, free-form ``dict`` fields are JSON text. Column types come from the payload models
(:mod:`settler_pipeline.domain.payload_schema`); nothing here names a field.

``data`` stays the event's canonical text (identity of a retried event, upcasting, unknown types,
every reader that wants the document); the typed columns are a second, columnar copy of the same
values. ``docs/architecture.md`` gives the measurements behind the layout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import polars as pl
import pyarrow as pa

from settler_pipeline.domain import events as e
from settler_pipeline.domain.payload_schema import TYPED_FLAG, is_json_text, model_schema, union_schema
from settler_pipeline.errors import ValidationError
from settler_pipeline.store.json_fit import misfits
from settler_pipeline.store.schema import EVENT_SCHEMA, POLARS_SCHEMA, prepare_frame

TYPED: Final = TYPED_FLAG
"""Flag column: the row's payload fields are in the typed columns."""

PAYLOAD_SCHEMA: Final[dict[str, pl.DataType]] = union_schema(tuple(dict.fromkeys(e.PAYLOADS.values())))
"""``{field: Polars type}`` of every typed payload column, in first-declared order."""

_CLASH = set(PAYLOAD_SCHEMA) & (set(POLARS_SCHEMA) | {TYPED})
if _CLASH:  # pragma: no cover - a payload model declaring an envelope column's name
    raise TypeError(f"payload field(s) {sorted(_CLASH)} clash with stored envelope columns")

SEGMENT_SCHEMA: Final[dict[str, pl.DataType]] = {**POLARS_SCHEMA, TYPED: pl.Boolean(), **PAYLOAD_SCHEMA}
"""Every column a segment file may have (each holds the envelope columns, the flag and the payload
columns its rows use; files written before the typed columns lack the flag and every payload column)."""

SEGMENT_COLUMNS: Final = tuple(SEGMENT_SCHEMA)
EXTRA_COLUMNS: Final = (TYPED, *PAYLOAD_SCHEMA)
"""Columns of a segment beyond the envelope columns of :data:`COLUMNS`."""

_VERSIONS: Final = pl.DataFrame(
    {"event_type": list(e.PAYLOAD_VERSIONS), "_current": list(e.PAYLOAD_VERSIONS.values())},
    schema={"event_type": pl.String, "_current": pl.Int32},
)


def arrow_schema() -> pa.Schema:
    """The Arrow schema of a segment (every column nullable, as in the files)."""
    extra = pl.DataFrame(schema={name: SEGMENT_SCHEMA[name] for name in EXTRA_COLUMNS}).to_arrow().schema
    return pa.schema([*EVENT_SCHEMA, *extra])


def typed_rows() -> pl.Expr:
    """Rows whose payload the typed columns can hold: a known type at its current version."""
    current = pl.col("event_type").replace_strict(
        _VERSIONS["event_type"], _VERSIONS["_current"], default=None, return_dtype=pl.Int32
    )
    return current.is_not_null() & (pl.col("event_version") == current)


def prepare_typed_frame(batch: pl.DataFrame | pa.Table, *, now: datetime) -> pl.DataFrame:
    """:func:`prepare_frame` for a batch that may also bring typed payload columns and the
    :data:`TYPED` flag (a run's per-record events do, saving the store a JSON decode): those are
    cast to their types and kept. Rows flagged typed must be of a known type at its current version,
    and the batch must bring every field of their payload models.

    Raises :class:`ValidationError` naming the problem; nothing is written then."""
    frame = pl.from_arrow(batch) if isinstance(batch, pa.Table) else batch
    if not isinstance(frame, pl.DataFrame):
        raise ValidationError("a columnar batch must be a Polars DataFrame or an Arrow table")
    given = [c for c in frame.columns if c in EXTRA_COLUMNS]
    prepared = prepare_frame(frame.drop(given), now=now)
    if not given:
        return prepared
    if TYPED not in given:
        raise ValidationError(
            "typed payload columns need the payload_typed column",
            hint="set payload_typed true on rows whose typed columns hold the payload",
        )
    try:
        typed = frame.select(
            pl.col(name).cast(dtype, strict=True) if name in given else pl.lit(None, dtype).alias(name)
            for name, dtype in SEGMENT_SCHEMA.items()
            if name in EXTRA_COLUMNS
        ).with_columns(pl.col(TYPED).fill_null(False))
    except pl.exceptions.PolarsError as exc:
        raise ValidationError(f"a typed payload column has the wrong type: {exc}") from exc
    out = pl.concat([prepared, typed], how="horizontal")
    wrong = out.select(pl.col(TYPED) & ~typed_rows()).to_series()
    if wrong.any():
        row = out.filter(wrong).row(0, named=True)
        raise ValidationError(
            f"event type {row['event_type']} version {row['event_version']} has no typed payload columns",
            hint="flag only events of known types at their current version as typed",
        )
    # the typed rows' types alone (filtering the frame would copy every column of a run's batch)
    kinds = out.select(pl.col("event_type").filter(pl.col(TYPED)).unique()).to_series()
    for event_type in kinds.to_list():
        lacking = [name for name in e.PAYLOADS[event_type].model_fields if name not in given]
        if lacking:
            raise ValidationError(
                f"typed {event_type} events lack the payload column(s) {', '.join(lacking)}",
                hint="a typed event brings every field of its payload model (null where it has none)",
            )
    return out


def with_payload_columns(frame: pl.DataFrame, *, from_json: bool = True) -> pl.DataFrame:
    """``frame`` (stored events) as a segment stores it. With ``from_json``, rows of known types at
    their current version that arrive without typed columns get them from their JSON ``data`` (see
    :func:`typed_from_json`); without, such rows stay untyped (readers decode their JSON; a compaction
    types them later)."""
    if from_json:
        frame = typed_from_json(frame)
    else:
        frame = _with_all_columns(frame).with_columns(pl.col(TYPED).fill_null(False))
    return _without_empty(frame.select(SEGMENT_COLUMNS))


def brought_payload_columns(frame: pl.DataFrame) -> pl.DataFrame | None:
    """The flag and the payload columns a batch brought (``frame``: as :func:`prepare_typed_frame`
    returned it), without those null on every row; ``None`` when it brought none. A batch committed
    to the write-ahead tail keeps them in memory (the record holds the envelope columns only), so
    its flush does not type those rows from their JSON again."""
    if TYPED not in frame.columns:
        return None
    return _without_empty(_with_all_columns(frame).select(EXTRA_COLUMNS))


def typed_from_json(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (events with ``event_type``, ``event_version`` and ``data``, and any other columns)
    with :data:`TYPED` and every payload column: rows of known types at their current version that
    are not typed yet are typed from their JSON; a payload that does not decode into its model's types
    stays untyped (its ``data`` is kept as written). Row order is kept."""
    frame = _with_all_columns(frame)
    base = [c for c in frame.columns if c not in EXTRA_COLUMNS]
    todo = frame.select((~pl.col(TYPED).fill_null(False) & typed_rows()).alias("_todo")).to_series()
    if not todo.any():
        return frame.select(*base, *EXTRA_COLUMNS).with_columns(pl.col(TYPED).fill_null(False))
    numbered = frame.with_row_index("_row")
    # a flushed tail is usually all to be typed and of one event type: no filter copies every row
    pending = numbered if todo.all() else numbered.filter(todo)
    types = pending["event_type"].unique().sort()
    decoded = [
        part
        for event_type in types
        if (
            part := _decode(
                pending if types.len() == 1 else pending.filter(pl.col("event_type") == event_type),
                e.PAYLOADS[event_type],
            )
        )
        is not None
    ]
    rebuilt = pending.select("_row", *base)
    if len(decoded) == 1 and decoded[0].height == pending.height:
        # the usual flush: one event type, every payload decoded, rows in the same order (a join
        # and a sort of every column cost more than the decoding)
        rebuilt = rebuilt.hstack(decoded[0].drop("_row"))
    elif decoded:
        rebuilt = rebuilt.join(pl.concat(decoded, how="diagonal"), on="_row", how="left")
    rebuilt = _with_all_columns(rebuilt).with_columns(pl.col(TYPED).fill_null(False))
    columns = ("_row", *base, *EXTRA_COLUMNS)
    extra_types = {name: SEGMENT_SCHEMA[name] for name in EXTRA_COLUMNS}
    rebuilt = rebuilt.select(columns).cast(extra_types)  # type: ignore[arg-type]
    if rebuilt.height == frame.height:  # every row was typed here: nothing to merge back
        return rebuilt.drop("_row")
    kept = numbered.filter(~todo).with_columns(pl.col(TYPED).fill_null(False))
    return pl.concat([kept.select(columns), rebuilt]).sort("_row").drop("_row")


_NULLS: Final = {name: pl.lit(None, SEGMENT_SCHEMA[name]).alias(name) for name in EXTRA_COLUMNS}


def _with_all_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the flag and every payload column (null where it has none)."""
    missing = [null for name, null in _NULLS.items() if name not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _without_empty(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without the payload columns that are null on every row. A segment holds the typed
    columns its events use (writing an all-null column costs ~10 ms per million rows, and a file of
    one event type uses a fifth of them); readers see the missing ones as null."""
    empty = [n for n in frame.columns if n in PAYLOAD_SCHEMA and frame[n].null_count() == frame.height]
    return frame.drop(empty)


def _decode(rows: pl.DataFrame, model: type[e.EventData], *, sorted_out: bool = False) -> pl.DataFrame | None:
    """``_row`` and the typed payload columns of ``rows`` (all of one payload model); rows whose
    payload does not fit the model's types are left out. The batch decodes in one call when every
    payload fits; when one does not, :func:`misfits` names the rows that cannot fit in one pass and
    the rest decode in one more call (halving, should the decoder refuse a row those rules miss)."""
    structured = pl.Struct({n: t for n, t in model_schema(model).items() if not is_json_text(model, n)})
    texts = [n for n in model.model_fields if is_json_text(model, n)]
    try:
        return rows.select(
            "_row",
            pl.col("data").str.json_decode(structured).struct.unnest(),
            *(pl.col("data").str.json_path_match(f"$.{name}").alias(name) for name in texts),
            pl.lit(True).alias(TYPED),
        )
    except pl.exceptions.PolarsError:
        if rows.height <= 1:
            return None
    if not sorted_out:
        refused = pl.Series(misfits(rows["data"], structured), dtype=pl.Boolean)
        if refused.any():
            fitting = rows.filter(~refused)
            return _decode(fitting, model, sorted_out=True) if fitting.height else None
    half = rows.height // 2
    halves = (rows[:half], rows[half:])
    parts = [p for part in halves if (p := _decode(part, model, sorted_out=True)) is not None]
    return pl.concat(parts) if parts else None
