"""Payloads as the read models get them: decoded from their JSON after upcasting (the few events a
chunk materialises; the matches served from the log are read as sums of typed columns, ``batch.py``).

JSON decoding of many documents happens in DuckDB (``json_transform`` parses each document once into a
typed struct; two to three times faster than Polars' ``str.json_decode`` on this machine), only for the
fields asked for. A few documents (an update's batch) are parsed by Polars instead: DuckDB's fixed costs
(connecting, 30-190 ms in a fresh process on the shared machine, then 3-20 ms per query) are many
times the parsing, which for 600 documents takes Polars about half a millisecond.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Final

import duckdb
import polars as pl
from polars._typing import PolarsDataType

from settler_pipeline.domain.envelope import EventEnvelope, canonical_json
from settler_pipeline.domain.registry import EventRegistry
from settler_pipeline.store.batch import stale_rows

SMALL_DOCUMENTS: Final = 20_000
"""Up to this many documents are parsed by Polars, more by DuckDB (see the module docstring)."""

_connection: tuple[int, duckdb.DuckDBPyConnection] | None = None
_connection_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor on this process's private in-memory DuckDB (connecting costs ~10 ms, a cursor nothing)."""
    global _connection
    with _connection_lock:
        if _connection is None or _connection[0] != os.getpid():  # a forked child needs its own
            _connection = (os.getpid(), duckdb.connect(":memory:"))
        return _connection[1].cursor()


def _duckdb_type(dtype: Any) -> Any:
    """The ``json_transform`` structure for a Polars type."""
    if isinstance(dtype, pl.List):
        return [_duckdb_type(dtype.inner)]
    if isinstance(dtype, pl.Struct):
        return {f.name: _duckdb_type(f.dtype) for f in dtype.fields}
    names = {
        pl.String: "VARCHAR",
        pl.Int64: "BIGINT",
        pl.Int32: "INTEGER",
        pl.Float64: "DOUBLE",
        pl.Boolean: "BOOLEAN",
    }
    for polars_type, name in names.items():
        if dtype == polars_type:
            return name
    raise TypeError(f"no JSON decoding for {dtype}")


def decode_payloads(
    frame: pl.DataFrame, fields: dict[str, pl.DataType], rows: pl.Expr | None = None
) -> pl.DataFrame:
    """The rows of ``frame`` selected by ``rows`` (all by default), without ``data``, plus one typed
    column per field of their JSON payload (null when a payload lacks the field or has another type).
    Row order is kept."""
    picked = frame.select(rows.alias("_pick")).to_series() if rows is not None else None
    envelope = frame.drop("data")
    if picked is not None:
        envelope = envelope.filter(picked)
    if envelope.height == 0:
        return envelope.with_columns(pl.lit(None, dtype).alias(n) for n, dtype in fields.items())
    if envelope.height <= SMALL_DOCUMENTS:
        texts = frame["data"] if picked is None else frame["data"].filter(picked)
        few = _decode_few(texts, fields)
        if few is not None:
            return pl.concat([envelope, few], how="horizontal")
    structure = json.dumps({name: _duckdb_type(dtype) for name, dtype in fields.items()})
    # Hand DuckDB the payloads without copying them (Arrow string views). A small selection is cheaper
    # to copy out first; a large one is cheaper to filter inside DuckDB's scan.
    if picked is not None and envelope.height < frame.height // 2:
        payloads = frame.select("data").filter(picked).with_columns(pl.lit(True).alias("_pick"))
    else:
        payloads = frame.select("data", (picked if picked is not None else pl.lit(True)).alias("_pick"))
    con = _cursor()
    try:
        con.register("payloads", payloads.to_arrow(compat_level=pl.CompatLevel.newest()))
        table = con.sql(
            "SELECT unnest(json_transform(data, $1)) FROM payloads WHERE _pick", params=[structure]
        ).to_arrow_table()
    finally:
        con.close()
    decoded = pl.from_arrow(table)
    assert isinstance(decoded, pl.DataFrame)
    # A filter-and-project query keeps insertion order in DuckDB (preserve_insertion_order is on by default).
    return pl.concat([envelope, decoded.cast(fields)], how="horizontal")  # type: ignore[arg-type]


def _decode_few(texts: pl.Series, fields: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """``texts`` parsed by Polars into one typed column per field, or None when a document has a
    field of another type (Polars refuses it where DuckDB gives null: DuckDB then decodes them all,
    so every batch, small or large, gets the same values)."""
    try:
        # Types as the documents have them first: Polars' typed parse quietly converts some values of
        # another type (1.5 in an integer field becomes 1, 2.0 in a text field "2", a scalar where a
        # list belongs a list of one) that DuckDB reads otherwise, so those go to DuckDB. A field whose
        # values mix types across the batch infers as their common type (texts and a number as text)
        # and is not caught; Settler's own events never have one (they are checked by their models).
        found = texts.str.json_decode(infer_schema_length=None).dtype
        if not isinstance(found, pl.Struct) or not _fits(found, pl.Struct(fields)):
            return None
        decoded = texts.str.json_decode(pl.Struct(fields)).struct.unnest()
    except pl.exceptions.PolarsError:
        return None
    return decoded.select(pl.col(name).cast(dtype) for name, dtype in fields.items())


def _fits(found: PolarsDataType, wanted: PolarsDataType) -> bool:
    """Whether values the documents hold as ``found`` read as ``wanted`` without a conversion the two
    parsers make differently (an integer as a float is fine, a float as an integer is not)."""
    if found == pl.Null() or found == wanted:
        return True
    if wanted.is_integer():
        return found.is_integer()
    if wanted.is_float():
        return found.is_numeric()
    if isinstance(wanted, pl.List):
        return isinstance(found, pl.List) and _fits(found.inner, wanted.inner)
    if isinstance(wanted, pl.Struct):
        if not isinstance(found, pl.Struct):
            return False
        want = {f.name: f.dtype for f in wanted.fields}
        return all(f.name not in want or _fits(f.dtype, want[f.name]) for f in found.fields)
    return False


def upcast_payloads(frame: pl.DataFrame, registry: EventRegistry) -> pl.DataFrame:
    """Rewrite the ``data`` of rows stored at an older ``event_version`` to the current version of their
    type (a no-op, and cheap, when every row is current: the usual case)."""
    needs = stale_rows(frame, registry)
    if needs is None:
        return frame
    fixed = [
        canonical_json(
            registry.upcast(
                EventEnvelope.model_construct(
                    event_type=event_type, event_version=version, data=json.loads(data)
                )
            ).data
        )
        for event_type, version, data in frame.filter(needs)
        .select("event_type", "event_version", "data")
        .iter_rows()
    ]
    index = frame.with_row_index("_row").filter(needs)["_row"]
    data = frame["data"].scatter(index, fixed)
    return frame.with_columns(data)
