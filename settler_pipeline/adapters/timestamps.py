"""Dates and times of normalisation: text in ISO 8601, epoch or strftime form parsed to UTC, with
naive values read in the side's zone or in each row's own zone."""

from __future__ import annotations

import zoneinfo

import polars as pl

from settler_pipeline.adapters.reasons import PREFIX, column_listing, quoted, sparse_reason
from settler_pipeline.errors import JobSpecError
from settler_pipeline.jobspec import DateOptions

_ISO_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M%z",
)
_SAMPLE_SIZE = 200


def with_datetime(
    frame: pl.DataFrame, text_col: str, options: DateOptions, field: str, *, zone_col: str | None = None
) -> pl.DataFrame:
    """Add ``value_<field>`` (UTC datetime) and ``reason_<field>`` columns parsed from ``text_col``.

    Naive values are local times in ``options.timezone`` (or, with ``zone_col``, in the zone that
    column names on each row): an ambiguous time (the repeated hour when clocks go back) takes the
    earlier instant; a time that does not exist (the hour skipped when clocks go forward) is refused
    with a reason.
    """
    p = f"{PREFIX}{field}_"
    text = pl.col(text_col)
    fmt = options.format
    aware_col, naive_col = f"{p}aware", f"{p}naive"
    if fmt in ("epoch_seconds", "epoch_millis"):
        # Digit limits keep the value inside the datetime range instead of overflowing.
        seconds = fmt == "epoch_seconds"
        pattern = r"^[+-]?\d{1,11}$" if seconds else r"^[+-]?\d{1,14}$"
        digits = pl.when(text.str.contains(pattern)).then(text).cast(pl.Int64, strict=False)
        epoch = pl.from_epoch(digits, time_unit="s") if seconds else pl.from_epoch(digits, time_unit="ms")
        frame = frame.with_columns(
            epoch.dt.cast_time_unit("us").dt.replace_time_zone("UTC").alias(aware_col),
            pl.lit(None, dtype=pl.Datetime("us")).alias(naive_col),
        )
        described = fmt.replace("_", " ")
    elif fmt == "iso":
        # Normalise the cheap, common variations on the whole column; rarer ones (lower-case "t",
        # a space before the offset) only on the rows the first round leaves unparsed.
        norm = frame.select(
            text.str.replace("T", " ", literal=True).str.replace(r"\s*[Zz]$", "+00:00")
        ).to_series()
        naive, aware = parse_with_formats(norm, _ISO_FORMATS)
        left = (norm.is_not_null() & naive.is_null() & aware.is_null()).arg_true()
        if left.len():
            retry = norm.gather(left).str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt ]\s*", "$1 ")
            retry_naive, retry_aware = parse_with_formats(
                retry.str.replace(r"\s+([+-]\d{2}(:?\d{2})?)$", "$1"), _ISO_FORMATS
            )
            naive.scatter(left, retry_naive)
            aware.scatter(left, retry_aware)
        frame = frame.with_columns(naive.alias(naive_col), aware.alias(aware_col))
        described = "an ISO 8601 date/time"
    else:
        naive, aware = parse_with_formats(frame[text_col], (fmt,))
        frame = frame.with_columns(naive.alias(naive_col), aware.alias(aware_col))
        described = f"a date in format {fmt!r}"

    if zone_col is None:
        local = pl.col(naive_col).pipe(_in_zone, options.timezone)
        zone_name = options.timezone
    else:
        local = pl.lit(_in_row_zones(frame[naive_col], frame[zone_col], options.timezone))
        zone_name = "the row's time zone"
    frame = frame.with_columns(pl.coalesce(pl.col(aware_col), local).alias(f"{PREFIX}value_{field}"))
    value = pl.col(f"{PREFIX}value_{field}")
    unparsed = pl.col(naive_col).is_null() & pl.col(aware_col).is_null()
    gap = f"does not exist in {zone_name} (clocks went forward: daylight-saving gap)"
    reason = sparse_reason(
        frame,
        [
            (text.is_null(), pl.lit(f"{field}: missing")),
            (unparsed, quoted(field, text, f"cannot be parsed as {described}")),
            (value.is_null(), quoted(field, text, gap)),
        ],
    )
    return frame.with_columns(reason.alias(f"{PREFIX}reason_{field}"))


def _in_zone(naive: pl.Expr, zone: str) -> pl.Expr:
    """Naive local times in ``zone`` as UTC: the earlier instant of an ambiguous time, null for one
    that does not exist."""
    return (
        naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.cast_time_unit("us")
    )


def _in_row_zones(naive: pl.Series, zones: pl.Series, default: str) -> pl.Series:
    """``naive`` read in the zone ``zones`` names on each row (``default`` where null), as UTC.
    Polars converts one zone per call: each zone converts only its own rows, so the cost stays one
    pass whatever the number of zones the file names."""
    zones = zones.fill_null(default)
    result = pl.repeat(None, naive.len(), dtype=pl.Datetime("us", "UTC"), eager=True)
    for zone in zones.unique().sort().to_list():
        rows = (zones == zone).arg_true()
        if rows.len() == naive.len():
            return pl.select(_in_zone(pl.lit(naive), zone)).to_series()
        result.scatter(rows, pl.select(_in_zone(pl.lit(naive.gather(rows)), zone)).to_series())
    return result


def parse_with_formats(text: pl.Series, formats: tuple[str, ...]) -> tuple[pl.Series, pl.Series]:
    """Parse ``text`` with strftime ``formats``: returns ``(naive, aware_utc)`` datetime series
    (microseconds), null where no format parsed the value.

    Each format is tried only on the rows the earlier ones left unparsed, starting with the format
    that parses most of a small sample: a failing parse costs as much as a succeeding one, so trying
    every format on every row would multiply the cost for no gain.
    """
    size = text.len()
    naive = pl.repeat(None, size, dtype=pl.Datetime("us"), eager=True)
    aware = pl.repeat(None, size, dtype=pl.Datetime("us", "UTC"), eager=True)
    remaining = text.is_not_null().arg_true()
    sample = text.gather(remaining.head(_SAMPLE_SIZE))
    hits = {f: sample.str.to_datetime(f, time_unit="us", strict=False).is_not_null().sum() for f in formats}
    for fmt in sorted(formats, key=lambda f: -hits[f]):
        if remaining.len() == 0:
            break
        subset = text if remaining.len() == size else text.gather(remaining)
        parsed = subset.str.to_datetime(fmt, time_unit="us", strict=False)
        hit = parsed.is_not_null()
        if not hit.any():
            continue
        if "%z" in fmt:
            aware.scatter(remaining.filter(hit), parsed.filter(hit).dt.convert_time_zone("UTC"))
        else:
            naive.scatter(remaining.filter(hit), parsed.filter(hit))
        remaining = remaining.filter(~hit)
    return naive, aware


def with_row_zones(
    frame: pl.DataFrame, table: pl.DataFrame, options: DateOptions
) -> tuple[pl.DataFrame, str]:
    """Add each row's IANA zone (from ``timezone_column``, through ``timezones`` when given; blank:
    ``timezone``) and a reason column for rows whose zone is unknown; returns the zone column name."""
    column = options.timezone_column
    assert column is not None  # the caller checked
    if column not in table.columns:
        raise JobSpecError(
            f"dates.timezone_column names column {column!r}, which is not in the input; "
            f"columns there: {column_listing([c for c in table.columns if not c.startswith(PREFIX)])}",
            hint="column names are case-sensitive",
        )
    value = table[column].cast(pl.String).str.strip_chars()
    value = pl.select(pl.when(value.str.len_bytes() > 0).then(value)).to_series()
    if options.timezones:
        zone = value.replace_strict(options.timezones, default=None, return_dtype=pl.String)
        unknown = value.is_not_null() & zone.is_null()
        why = "is not a key of dates.timezones"
    else:
        known = {z: z for z in value.drop_nulls().unique().to_list() if _is_zone(z)}
        zone = value.replace_strict(known, default=None, return_dtype=pl.String)
        unknown = value.is_not_null() & zone.is_null()
        why = "is not an IANA time zone name (such as Europe/Berlin)"
    zone = zone.fill_null(options.timezone)
    zone_col = f"{PREFIX}zone"
    return (
        frame.with_columns(
            zone.alias(zone_col),
            pl.when(unknown)
            .then(quoted(f"dates.timezone_column {column}", pl.lit(value), why))
            .alias(f"{PREFIX}reason_zone"),
        ),
        zone_col,
    )


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
