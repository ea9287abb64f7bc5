"""Source and target adapters: read CSV, Parquet, JSON Lines or a DuckDB query into the canonical
transaction schema, quarantining rows that do not parse."""

from settler_pipeline.adapters.loader import LoadedSide, load_side, resolve_columns
from settler_pipeline.adapters.presets import PRESETS, preset_names

__all__ = ["PRESETS", "LoadedSide", "load_side", "preset_names", "resolve_columns"]
