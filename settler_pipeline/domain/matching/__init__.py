"""Matching: reconcile source records against target records in configured passes.

The public surface is :func:`match_records`, its result :class:`MatchResult` (with the output
schemas) and the configuration models. Everything else in this package is internal.
"""

from settler_pipeline.domain.matching.config import (
    AmountDatePass,
    DateWindow,
    FuzzyPass,
    GroupPass,
    MatchConfig,
    MatchPass,
    ReferencePass,
    SplitPass,
    Tolerance,
    default_passes,
)
from settler_pipeline.domain.matching.matcher import match_records
from settler_pipeline.domain.matching.matches import MATCH_ID_NAMESPACE
from settler_pipeline.domain.matching.result import (
    DUPLICATE_SCHEMA,
    MATCH_SCHEMA,
    UNMATCHED_REASONS,
    UNMATCHED_SCHEMA,
    MatchResult,
)

__all__ = [
    "DUPLICATE_SCHEMA",
    "MATCH_ID_NAMESPACE",
    "MATCH_SCHEMA",
    "UNMATCHED_REASONS",
    "UNMATCHED_SCHEMA",
    "AmountDatePass",
    "DateWindow",
    "FuzzyPass",
    "GroupPass",
    "MatchConfig",
    "MatchPass",
    "MatchResult",
    "ReferencePass",
    "SplitPass",
    "Tolerance",
    "default_passes",
    "match_records",
]
