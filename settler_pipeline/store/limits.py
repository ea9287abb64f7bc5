"""Tunable sizes of the log (read at call time, so tests can lower them)."""

PROJECTION_COLUMNS = (
    "global_position",
    "aggregate_id",
    "aggregate_version",
    "event_type",
    "event_version",
    "tenant_id",
    "timestamp",
    "created_at",
)
"""The envelope columns :meth:`EventStore.read_fields` returns unless told otherwise."""
GRANULE_CACHE_LIMIT = 1_000_000  # stream granules held in memory per store instance (~100 bytes each)
WAL_FLUSH_ROWS = 200_000  # move the write-ahead tail into segments (and so publish it) at this many events
SEGMENT_ROWS = 50_000  # batches at least this big go straight to segments; smaller ones to the tail
BULK_ROWS = 2_000  # envelope batches at least this big take the columnar path
