"""Turn a run's loaded sides and match result into columnar event batches (no object per record).

Every frame returned here has the columns of :meth:`EventStore.append_frame`: ``data`` holding the JSON
payload described in ``domain/events.py``, and the same payload as typed columns (every payload
column, types from the payload models), so the store writes them without decoding the JSON again.
"""

from __future__ import annotations

import json

import polars as pl

from settler_pipeline.domain import events as e
from settler_pipeline.domain.envelope import EventContext
from settler_pipeline.domain.events import NewEvent
from settler_pipeline.domain.matching import MatchResult
from settler_pipeline.domain.payload_schema import is_json_text, model_schema
from settler_pipeline.store.event_ids import new_ids
from settler_pipeline.store.payloads import PAYLOAD_SCHEMA, TYPED


def _payload(model: type[e.EventData], source: pl.DataFrame, computed: dict[str, pl.Expr]) -> list[pl.Expr]:
    """``data`` (the payload's JSON text) and the typed payload columns (every payload column of every
    model, so that a run's frames concatenate; types from the models), flagged typed for the store.

    The payload's fields are ``model``'s, in its order: from ``computed`` when named there, else the
    column of ``source`` of the same name; a field with neither is left out of the JSON (null typed)."""
    unknown = set(computed) - set(model.model_fields)
    if unknown:
        raise TypeError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    fields = {
        name: computed[name] if name in computed else pl.col(name)
        for name in model.model_fields
        if name in computed or name in source.columns
    }
    text = pl.struct(*(expr.alias(name) for name, expr in fields.items())).struct.json_encode()
    typed = [
        (fields[name].cast(dtype) if name in fields else pl.lit(None, dtype)).alias(name)
        for name, dtype in PAYLOAD_SCHEMA.items()
    ]
    return [text.alias("data"), pl.lit(True).alias(TYPED), *typed]


def _frame(
    payload: list[pl.Expr], event_type: pl.Expr | str, height: int, ctx: EventContext, source: pl.DataFrame
) -> pl.DataFrame:
    out = source.select(
        pl.lit(ctx.aggregate_id).alias("aggregate_id"),
        pl.lit(e.AGGREGATE_TYPE).alias("aggregate_type"),
        (pl.lit(event_type) if isinstance(event_type, str) else event_type).alias("event_type"),
        *payload,
        pl.lit(ctx.tenant_id).alias("tenant_id"),
        pl.lit(ctx.user_id, dtype=pl.String).alias("user_id"),
        pl.lit(ctx.correlation_id).alias("correlation_id"),
        pl.lit(ctx.causation_id, dtype=pl.String).alias("causation_id"),
        pl.lit(ctx.timestamp, dtype=pl.Datetime("us", "UTC")).alias("timestamp"),
    )
    return (
        out.with_columns(new_ids(height))
        if height
        else out.with_columns(pl.lit(None, pl.String).alias("event_id"))
    )


def quarantine_events(side: str, q: pl.DataFrame, attempt: int, ctx: EventContext) -> pl.DataFrame:
    """One ``RecordQuarantined`` per quarantined row of ``q`` (QUARANTINE_SCHEMA), with the raw row,
    reason and line number."""
    payload = _payload(e.RecordQuarantined, q, {"attempt": pl.lit(attempt), "side": pl.lit(side)})
    return _frame(payload, e.RECORD_QUARANTINED, q.height, ctx, q)


_TIME = "%Y-%m-%dT%H:%M:%S%.6fZ"


def _details(records: pl.DataFrame) -> pl.DataFrame:
    """``line_number`` and the record as review shows it (``RecordDetail``), one row per line."""
    return records.select(
        pl.col("line_number"),
        pl.struct(
            pl.col("record_id").alias("id"),
            pl.col("occurred_at").dt.strftime(_TIME).alias("occurred_at"),
            pl.col("amount_minor").alias("amount"),
            pl.col("currency"),
            pl.col("reference"),
            pl.col("description"),
        ).alias("record"),
    ).unique("line_number", keep="first")


def described_records(result: MatchResult, sides: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The records of ``sides`` that the events of ``result`` describe (those of its proposals and
    of its unmatched records), with the columns they show: all that :func:`match_events` and
    :func:`unmatched_events` read of ``sides``, usually a small part of a block's records."""
    proposed = result.matches.filter(pl.col("status") == "proposed")
    out = {}
    for side in ("source", "target"):
        lines = pl.concat(
            [
                proposed[f"{side}_lines"].explode().drop_nulls(),
                result.unmatched.filter(pl.col("side") == side)["line_number"],
            ]
        )
        out[side] = (
            sides[side]
            .filter(pl.col("line_number").is_in(lines.implode()))
            .select(
                "line_number",
                "record_id",
                "occurred_at",
                "amount_minor",
                "currency",
                "reference",
                "description",
            )
        )
    return out


def _with_proposal_records(matches: pl.DataFrame, sides: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """``matches`` with ``source_records`` / ``target_records`` lists on proposals (null on automatic
    matches, which nobody reviews: a million matches must not carry their records twice)."""
    proposed = matches.select("match_id", "source_lines", "target_lines", "status").filter(
        pl.col("status") == "proposed"
    )
    out = matches
    for side in ("source", "target"):
        lines = proposed.select("match_id", pl.col(f"{side}_lines").alias("line_number")).explode(
            "line_number"
        )
        # Only the proposals' records are described: the side may hold a whole block of records.
        records = sides[side].filter(pl.col("line_number").is_in(lines["line_number"].implode()))
        per_match = (
            lines.with_row_index("__line_order")
            .join(_details(records), on="line_number", how="left")
            .sort("__line_order")
            .group_by("match_id", maintain_order=True)
            .agg(pl.col("record").alias(f"{side}_records"))
        )
        # Aligned on the ids alone and added as a column: joining the matches themselves would
        # gather every column of them again.
        aligned = matches.select("match_id").join(per_match, on="match_id", how="left", maintain_order="left")
        out = out.with_columns(aligned[f"{side}_records"])
    return out


def match_events(
    result: MatchResult, attempt: int, ctx: EventContext, sides: dict[str, pl.DataFrame] | None = None
) -> pl.DataFrame:
    """``RecordMatched`` (auto-confirmed) and ``MatchProposed`` (needs review) events; with the loaded
    ``sides`` (each side's records, a superset of those matched), proposals carry both sides' records."""
    m = result.matches
    if sides is not None and m.height:
        m = _with_proposal_records(m, sides)
    computed = {
        "attempt": pl.lit(attempt),
        "amount": pl.col("source_amount_minor"),
        "target_amount": pl.col("target_amount_minor"),
        "amount_difference": pl.col("amount_difference_minor"),
        "confidence": pl.col("confidence").round(4),
    }
    data, *typed = _payload(e.RecordMatched, m, computed)
    if "source_records" in m.columns:
        # Automatic matches leave the record lists out entirely rather than writing nulls: their
        # text is encoded without the lists, and only the proposals' (a few percent) with them.
        # Encoding every row once is most of the cost of a million events; encoding all of them
        # twice (with the lists, then cut) cost as much again.
        short, *_ = _payload(e.RecordMatched, m.drop("source_records", "target_records"), computed)
        text = m.select(short).to_series()
        proposals = m.select(pl.arg_where(pl.col("status") != "matched")).to_series()
        if len(proposals):
            text = text.scatter(proposals, m[proposals].select(data).to_series())
        m = m.with_columns(text)
        data = pl.col("data")
    event_type = (
        pl.when(pl.col("status") == "matched")
        .then(pl.lit(e.RECORD_MATCHED))
        .otherwise(pl.lit(e.MATCH_PROPOSED))
    )
    return _frame([data, *typed], event_type, m.height, ctx, m)


def unmatched_events(
    result: MatchResult, attempt: int, ctx: EventContext, sides: dict[str, pl.DataFrame] | None = None
) -> pl.DataFrame:
    """One ``RecordUnmatched`` per record left unmatched, with its reason (and, with the loaded
    ``sides``, its reference and description, for review)."""
    u = result.unmatched
    if sides is not None and u.height:
        texts = pl.concat(
            [
                sides[side]
                .filter(
                    pl.col("line_number").is_in(u.filter(pl.col("side") == side)["line_number"].implode())
                )
                .select(pl.lit(side).alias("side"), "line_number", "reference", "description")
                .unique("line_number", keep="first")
                for side in ("source", "target")
            ]
        )
        aligned = u.select("side", "line_number").join(
            texts, on=["side", "line_number"], how="left", maintain_order="left"
        )
        u = u.with_columns(aligned["reference"], aligned["description"])
    payload = _payload(
        e.RecordUnmatched,
        u,
        {
            "attempt": pl.lit(attempt),
            "amount": pl.col("amount_minor"),
            "occurred_at": pl.col("occurred_at").dt.strftime(_TIME),
            "closest_amount": pl.col("closest_amount_minor"),
            "closest_occurred_at": pl.col("closest_occurred_at").dt.strftime(_TIME),
        },
    )
    return _frame(payload, e.RECORD_UNMATCHED, u.height, ctx, u)


def duplicate_events(d: pl.DataFrame, attempt: int, ctx: EventContext) -> pl.DataFrame:
    """One ``DuplicateRecordDetected`` per extra occurrence of a record id (rows of ``d``,
    DUPLICATE_SCHEMA)."""
    payload = _payload(e.DuplicateRecordDetected, d, {"attempt": pl.lit(attempt)})
    return _frame(payload, e.DUPLICATE_DETECTED, d.height, ctx, d)


def single_event(new: NewEvent, ctx: EventContext) -> pl.DataFrame:
    """A one-row frame for a lifecycle event."""
    model = type(new.payload)
    values = new.payload.model_dump(mode="json")
    typed = pl.DataFrame(
        [
            {
                name: json.dumps(v) if v is not None and is_json_text(model, name) else v
                for name, v in values.items()
            }
        ],
        schema=model_schema(model),
    )
    data = pl.lit(json.dumps(new.data(), sort_keys=True)).alias("data")
    known = e.PAYLOADS.get(new.event_type) is model  # the store types only the models it knows
    payload = [
        data,
        pl.lit(known).alias(TYPED),
        *(pl.lit(None, t).alias(n) for n, t in PAYLOAD_SCHEMA.items()),
    ]
    return _frame(payload, new.event_type, 1, ctx, typed).with_columns(typed if known else [])
