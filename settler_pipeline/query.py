"""SQL over the read models, scoped to the tenants a user may see (what `settler sql` and the notebook
API run). Analysts with access to the files can also open ``analytics.duckdb`` directly (all tenants).

The user's query runs in a private in-memory DuckDB holding only the rows of the user's tenants, with
external access switched off and the configuration locked, so a query cannot read other files or undo
the scoping.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from settler_pipeline import projections
from settler_pipeline.errors import NotFoundError, ValidationError


def scoped_sql(data_dir: str | Path, query: str, tenant_ids: list[str]) -> pl.DataFrame:
    """Run ``query`` against the read models (one table per read model, same names and columns as in
    ``analytics.duckdb``), seeing only rows of ``tenant_ids``."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        found = 0
        for name in projections.NAMES:
            try:
                frame = projections.read_model(data_dir, name)
            except NotFoundError:
                continue
            if "tenant_id" in frame.columns:
                frame = frame.filter(pl.col("tenant_id").is_in(tenant_ids))
            con.register(f"_{name}", frame)
            # name is one of the library's read-model names, never user input
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")  # noqa: S608
            con.unregister(f"_{name}")
            found += 1
        if not found:
            raise NotFoundError(
                "no read models have been built in this data directory",
                hint="run `settler project` (or `make demo`) first",
            )
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            result: pl.DataFrame = con.sql(query).pl()
        except duckdb.Error as exc:
            raise ValidationError(
                f"the query failed: {str(exc).splitlines()[0]}",
                hint=f"tables: {', '.join(projections.NAMES)}; see docs/read-models.md",
            ) from exc
        return result
    finally:
        con.close()
