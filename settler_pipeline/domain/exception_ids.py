"""Exception ids: the one place their format is written.

An open review item of a run is named by a string that says what it is and which record it is about:

* ``unmatched:<side>:<record_id>`` — a record without a counterpart (incl. ambiguous ones and the
  records of a rejected proposal);
* ``proposed:<match_id>`` — a proposed match waiting for a decision;
* ``duplicate:<side>:<line>`` and ``quarantined:<side>:<line>`` — an input row (1-based line).

The aggregate keys its open items by these, ``ExceptionDismissed`` names one, the read models and the
CLI print them. Build and read them only through this module: the plain-Python functions for single
ids, the ``*_expr`` functions for whole Polars columns (same format, so the bulk paths agree with
the aggregate by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from settler_pipeline.errors import ValidationError

UNMATCHED: Final = "unmatched"
PROPOSED: Final = "proposed"
DUPLICATE: Final = "duplicate"
QUARANTINED: Final = "quarantined"
KINDS: Final = (UNMATCHED, PROPOSED, DUPLICATE, QUARANTINED)
SIDES: Final = ("source", "target")

Kind = Literal["unmatched", "proposed", "duplicate", "quarantined"]


@dataclass(frozen=True)
class ExceptionId:
    """A parsed exception id: its kind, the side (``None`` for a proposal) and the record id, match id
    or line number (as text)."""

    kind: Kind
    side: str | None
    key: str

    def __str__(self) -> str:
        return PROPOSED + ":" + self.key if self.side is None else f"{self.kind}:{self.side}:{self.key}"


def unmatched(side: str, record_id: str) -> str:
    """The id of an unmatched record."""
    return f"{UNMATCHED}:{side}:{record_id}"


def proposed(match_id: str) -> str:
    """The id of an open proposed match."""
    return f"{PROPOSED}:{match_id}"


def duplicate(side: str, line: int | str) -> str:
    """The id of a duplicate input row."""
    return f"{DUPLICATE}:{side}:{line}"


def quarantined(side: str, line: int | str) -> str:
    """The id of a quarantined input row."""
    return f"{QUARANTINED}:{side}:{line}"


def parse(text: str) -> ExceptionId:
    """Read an exception id; raises :class:`ValidationError` saying which forms exist."""
    kind, _, rest = text.partition(":")
    if kind == PROPOSED and rest:
        return ExceptionId(PROPOSED, None, rest)
    side, _, key = rest.partition(":")
    if kind in (UNMATCHED, DUPLICATE, QUARANTINED) and side in SIDES and key:
        return ExceptionId(kind, side, key)  # type: ignore[arg-type]
    raise ValidationError(
        f"{text!r} is not an exception id",
        hint="ids look like unmatched:<source|target>:<record id>, proposed:<match id>, "
        "duplicate:<side>:<line> or quarantined:<side>:<line> (see `settler review list`)",
    )


# -- the same formats as Polars expressions ------------------------------------------------------


def unmatched_expr(side: pl.Expr | str, record_id: pl.Expr | str) -> pl.Expr:
    """``unmatched:<side>:<record_id>`` per row (``side`` and ``record_id`` name columns or are
    expressions)."""
    return pl.concat_str(pl.lit(UNMATCHED + ":"), _col(side), pl.lit(":"), _col(record_id))


def proposed_expr(match_id: pl.Expr | str) -> pl.Expr:
    """``proposed:<match_id>`` per row."""
    return pl.concat_str(pl.lit(PROPOSED + ":"), _col(match_id))


def duplicate_expr(side: pl.Expr | str, line: pl.Expr | str) -> pl.Expr:
    """``duplicate:<side>:<line>`` per row."""
    return pl.concat_str(pl.lit(DUPLICATE + ":"), _col(side), pl.lit(":"), _col(line).cast(pl.String))


def quarantined_expr(side: pl.Expr | str, line: pl.Expr | str) -> pl.Expr:
    """``quarantined:<side>:<line>`` per row."""
    return pl.concat_str(pl.lit(QUARANTINED + ":"), _col(side), pl.lit(":"), _col(line).cast(pl.String))


def record_item_expr(kind: pl.Expr | str, side: pl.Expr | str, key: pl.Expr | str) -> pl.Expr:
    """``<kind>:<side>:<key>`` per row, for rows of mixed kinds (unmatched with the record id as
    ``key``, duplicate and quarantined with the line): one string built per row instead of one per
    kind. Same format as :func:`unmatched_expr`, :func:`duplicate_expr` and :func:`quarantined_expr`."""
    return pl.concat_str(_col(kind), pl.lit(":"), _col(side), pl.lit(":"), _col(key).cast(pl.String))


def is_kind_expr(exception_id: pl.Expr | str, kind: Kind) -> pl.Expr:
    """Whether each id is of ``kind``."""
    return _col(exception_id).str.starts_with(kind + ":")


def proposed_match_id_expr(exception_id: pl.Expr | str) -> pl.Expr:
    """The match id of a ``proposed:`` id (other ids come back unchanged; filter with
    :func:`is_kind_expr` first)."""
    return _col(exception_id).str.strip_prefix(PROPOSED + ":")


def _col(value: pl.Expr | str) -> pl.Expr:
    return pl.col(value) if isinstance(value, str) else value
