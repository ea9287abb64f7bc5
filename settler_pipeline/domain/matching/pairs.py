"""Helpers shared by the passes that pair records through a key (reference, group key)."""

from __future__ import annotations

import polars as pl

from settler_pipeline.domain.matching.config import DateWindow, Tolerance
from settler_pipeline.domain.matching.positions import LinePositions
from settler_pipeline.domain.matching.tolerance import within_tolerance, within_window

_HASH_SEED = 20261201


def key_hash(key: pl.Expr) -> pl.Expr:
    """The 64-bit hash :func:`keyed_pairs` joins keys on (a column ``_h`` it reuses when present)."""
    return key.hash(_HASH_SEED)


def keyed_pairs(
    source_keys: pl.DataFrame,
    target_keys: pl.DataFrame,
    *,
    max_candidates: int,
    names: tuple[str, str] = ("source_line", "target_line"),
) -> pl.DataFrame:
    """``(source_line, target_line, via)`` for equal keys, best ``via`` per pair (the two line
    columns are called ``names``).

    Both frames have ``line_number``, ``key`` (and the target ``via``). A key found more than
    ``max_candidates`` times on either side identifies nothing and is skipped, which also keeps the
    join from blowing up on keys such as ``N/A``.
    """
    # Joins run on a 64-bit hash of the key (hashing strings once is far cheaper than joining on
    # them); the final pairs are checked on the keys themselves, so a hash collision cannot pair
    # records whose keys differ. Narrow both sides to shared keys first (semi-joins never multiply
    # rows), so counting and the final join only touch keys that can pair at all.
    if "_h" not in source_keys.columns:
        source_keys = source_keys.with_columns(_h=key_hash(pl.col("key")))
    if "_h" not in target_keys.columns:
        target_keys = target_keys.with_columns(_h=key_hash(pl.col("key")))
    target_keys = target_keys.join(source_keys.select("_h"), on="_h", how="semi")
    source_keys = source_keys.join(target_keys.select("_h"), on="_h", how="semi")
    crowded = _crowded_keys(source_keys, target_keys, max_candidates)
    # Streamed: the joined rows carry both keys until they are compared, and at scale (a block of
    # millions of records) holding all of them at once was a run's highest point of memory.
    joined = (
        source_keys.join(crowded, on="key", how="anti")
        .lazy()
        .join(target_keys.lazy(), on="_h")
        .filter(pl.col("key") == pl.col("key_right"))
    )
    if not _packable(source_keys["line_number"], target_keys["line_number"]):
        return (
            joined.group_by(
                pl.col("line_number").alias(names[0]), pl.col("line_number_right").alias(names[1])
            )
            .agg(pl.col("via").min())
            .collect(engine="streaming")
        )
    # Both lines in one integer: grouping one column costs far less than grouping two.
    return (
        joined.group_by(_pair=pl.col("line_number") * _PACK + pl.col("line_number_right"))
        .agg(pl.col("via").min())
        .collect(engine="streaming")
        .select((pl.col("_pair") // _PACK).alias(names[0]), (pl.col("_pair") % _PACK).alias(names[1]), "via")
    )


_PACK = 2**32


def _packable(*lines: pl.Series) -> bool:
    """Whether every line is in ``[0, _PACK / 2)``: two such lines pack into one Int64."""
    return all(
        column.len() == 0 or (column.min() >= 0 and column.max() < _PACK // 2)  # type: ignore[operator]
        for column in lines
    )


def _crowded_keys(source_keys: pl.DataFrame, target_keys: pl.DataFrame, max_candidates: int) -> pl.DataFrame:
    """The keys found more than ``max_candidates`` times on either side. Counted on the hashes first
    (integers in order: a hash found more than ``max_candidates`` times equals the one that many
    places before it, which takes a sort and a comparison, far less than grouping); only keys whose
    hash is that frequent are counted again by the key itself, so a hash collision cannot make a key
    crowded."""

    def frequent(frame: pl.DataFrame, by: str) -> pl.DataFrame:
        return frame.group_by(by).len().filter(pl.col("len") > max_candidates).select(by)

    def frequent_hashes(frame: pl.DataFrame) -> pl.Series:
        ordered = frame["_h"].sort()
        return ordered.filter(ordered == ordered.shift(max_candidates))

    hashes = pl.concat([frequent_hashes(source_keys), frequent_hashes(target_keys)]).unique().to_frame()
    if hashes.height == 0:
        return pl.DataFrame(schema={"key": pl.String})
    suspects = [frame.join(hashes, on="_h", how="semi") for frame in (source_keys, target_keys)]
    return pl.concat([frequent(frame, "key") for frame in suspects]).unique()


def attach_checks(pairs: pl.DataFrame, source: pl.DataFrame, target: pl.DataFrame) -> pl.DataFrame:
    """Add amounts, days and currencies of both records and the ``amount_difference`` and
    ``day_difference`` (target minus source) of each pair (pairs whose records are not in ``source``
    and ``target`` are dropped)."""
    cols = ["line_number", "amount_minor", "currency", "day"]
    lines = (source["line_number"], target["line_number"], pairs["source_line"], pairs["target_line"])
    s_lines, t_lines = (None, None) if any(c.null_count() for c in lines) else map(LinePositions, lines[:2])
    if s_lines is None or t_lines is None or not (s_lines.unique and t_lines.unique):
        # A repeated line pairs with each of its rows: the joins say so.
        joined = pairs.join(
            source.select(cols).rename({c: f"s_{c}" for c in cols}),
            left_on="source_line",
            right_on="s_line_number",
        ).join(
            target.select(cols).rename({c: f"t_{c}" for c in cols}),
            left_on="target_line",
            right_on="t_line_number",
        )
    else:
        # Line numbers are unique on each side: a record's row is a lookup away, and gathering four
        # columns by position costs a fraction of two joins of every pair.
        s_at = s_lines.rows(pairs["source_line"].to_numpy())
        t_at = t_lines.rows(pairs["target_line"].to_numpy())
        found = (s_at >= 0) & (t_at >= 0)
        if not found.all():
            pairs, s_at, t_at = pairs.filter(pl.Series(found)), s_at[found], t_at[found]
        s_rows, t_rows = pl.Series(s_at), pl.Series(t_at)
        joined = pl.concat(
            [
                pairs,
                source.select(cols[1:])[s_rows].rename({c: f"s_{c}" for c in cols[1:]}),
                target.select(cols[1:])[t_rows].rename({c: f"t_{c}" for c in cols[1:]}),
            ],
            how="horizontal",
        )
    return joined.with_columns(
        amount_difference=pl.col("t_amount_minor") - pl.col("s_amount_minor"),
        day_difference=pl.col("t_day") - pl.col("s_day"),
        currency_ok=(pl.col("s_currency") == pl.col("t_currency")).fill_null(False),
    )


def with_fit_checks(pairs: pl.DataFrame, tolerance: Tolerance, window: DateWindow) -> pl.DataFrame:
    """Add ``amount_ok`` (within ``tolerance``) and ``date_ok`` (within ``window``) to pairs from
    :func:`attach_checks`."""
    amount_ok = within_tolerance(
        pairs["s_amount_minor"].to_numpy(), pairs["t_amount_minor"].to_numpy(), tolerance
    )
    date_ok = within_window(pairs["day_difference"].to_numpy(), window)
    return pairs.with_columns(
        amount_ok=pl.Series(amount_ok, dtype=pl.Boolean), date_ok=pl.Series(date_ok, dtype=pl.Boolean)
    )
