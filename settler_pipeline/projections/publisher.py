"""The analyst database: ``<data_dir>/analytics.duckdb``, views over the published read models and the
log's files, and :func:`sql` to query it.

The pipeline never opens ``analytics.duckdb`` for writing in place (DuckDB allows one read-write
process *or* many read-only ones, so an analyst's open connection would block it, and vice versa). When
the set of read models or their columns change, a new database file is built beside it and
``os.replace``-d into place; a connection already open keeps the old file, which stays valid because
its views name files by glob. Updates never touch the database: they replace Parquet files and swap
generation symlinks (the log's files included: ``read_models/events``), which the views pick up at
their next query.

Views name their files relative to the data directory (``read_models/...``, ``log/segments/...``), so a
copied or moved data directory reads its own files: DuckDB resolves relative paths against
``file_search_path`` (which :func:`sql` sets to the data directory) or else the working directory (so
``cd data && duckdb -readonly analytics.duckdb`` works too). Someone holding the file read-write never
makes an update or :func:`sql` fail: updates replace the file rather than open it, and :func:`sql` then
builds the same views in memory from the statements saved beside the read models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl

from settler_pipeline.errors import NotFoundError
from settler_pipeline.files import replace_durably, staging_path, write_atomic
from settler_pipeline.projections import analyst, exponents, logrows
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.projection import Column, PartedReadModel, ReadModel
from settler_pipeline.store.payloads import SEGMENT_SCHEMA

ANALYTICS_DB: Final = "analytics.duckdb"
_FINGERPRINT: Final = ".views.json"
_DUCKDB_TYPES: Final[dict[str, str]] = {
    "String": "VARCHAR",
    "Int64": "BIGINT",
    "Float64": "DOUBLE",
    "Date": "DATE",
    "Datetime": "TIMESTAMPTZ",
    "List": "VARCHAR[]",
}
EVENTS_COMMENT: Final = (
    "The published event log (the current files of its Delta Lake table), for ad-hoc SQL: one row per "
    "event, positions 1..published_position with no gap. Payload fields are typed columns (amount, "
    "currency, match_id, ...) on rows where payload_typed is true; data holds every payload as JSON "
    "text (data->>'field'). "
    "`settler project` publishes before it updates the read models, so it holds every event they do."
)


def _literal(text: str) -> str:
    """A SQL string literal (for our own file paths: DuckDB views take no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _sql_type(dtype: pl.DataType) -> str:
    return _DUCKDB_TYPES[type(dtype).__name__]


def _comment_statements(view: str, doc: str, columns: Sequence[Column]) -> list[str]:
    statements = [f"COMMENT ON VIEW {view} IS {_literal(doc)}"]
    statements += [f"COMMENT ON COLUMN {view}.{c.name} IS {_literal(c.doc)}" for c in columns]
    return statements


def view_statements(
    data_dir: Path,
    read_models: Sequence[ReadModel],
    status_name: str,
    status_columns: Sequence[Column],
    tenant_names: Mapping[str, str] | None = None,
) -> list[str]:
    """The statements that create every view (identifiers are our read models' names, never input),
    each read model's with its analyst columns (:mod:`~settler_pipeline.projections.analyst`: the tenant
    names of ``tenant_names``, ``_major`` amounts with the places its currencies need). File paths are
    relative to ``data_dir`` (see the module docstring)."""
    root = Path("read_models")
    status_file = _literal(str(root / f"{status_name}.parquet"))
    statements: list[str] = []
    logged_models = _logged_models(data_dir / root, read_models)
    declared = exponents.of_tenants(exponents.declared(data_dir / root, remember=True), None)
    for read_model in read_models:
        if isinstance(read_model, PartedReadModel):
            files = root / read_model.name / "part-*.parquet"
        else:
            files = root / f"{read_model.name}.parquet"
        source = _literal(str(files))
        expressions = {c.name: f"x.{c.name}" for c in read_model.columns}
        joins = ""
        if "age_days" in read_model.derived:
            # Ages are relative to the read model's as-of time, published in projection_status.
            expressions["age_days"] = (
                "date_diff('microsecond', x.opened_at, s.as_of_time) // 86400000000 AS age_days"
            )
            joins = (
                f" LEFT JOIN (SELECT as_of_time FROM read_parquet({status_file}) "  # noqa: S608
                f"WHERE name = {_literal(read_model.name)}) AS s ON TRUE"
            )
        logged = ""
        if read_model.name in logged_models:
            # the rows read from the log's files (logrows.py), with the same columns
            types = {c.name: _sql_type(c.dtype) for c in read_model.columns}
            events = str(root / logrows.EVENTS)
            logged = " UNION ALL " + logrows.view_sql(str(root / read_model.name), events, types)
        stored = (
            f"SELECT {', '.join(expressions.values())} "  # noqa: S608
            f"FROM read_parquet({source}) AS x{joins}{logged}"
        )
        names = [c.name for c in read_model.columns]
        integer = [c.name for c in read_model.columns if c.dtype.is_integer()]
        currencies = _currencies(data_dir, read_model, files)
        scale = analyst.scale_of(currencies, declared)
        shown = analyst.select_sql(stored, names, integer, tenant_names or {}, scale, declared)
        statements.append(f"CREATE OR REPLACE VIEW {read_model.name} AS {shown}")
        statements += _comment_statements(read_model.name, read_model.doc, read_model.columns)
        for name, after in analyst.added_columns(names):
            doc = analyst.TENANT_DOC if name == "tenant" else analyst.MAJOR_DOC.format(column=after)
            if name == "tenant" or after in integer:
                statements.append(f"COMMENT ON COLUMN {read_model.name}.{name} IS {_literal(doc)}")
    statements.append(
        f"CREATE OR REPLACE VIEW {status_name} AS SELECT {', '.join(c.name for c in status_columns)} "  # noqa: S608
        f"FROM read_parquet({status_file})"
    )
    statements += _comment_statements(
        status_name, "Freshness of every read model (checkpoint and lag).", status_columns
    )
    # The published Delta table's current files as of the last update (DuckDB's delta extension cannot
    # be installed here), hard-linked as a generation of their own (logrows.publish_events): exactly
    # the committed, published events, each once, never a file being written or compacted away; and
    # a glob, so the definition does not change when the files do.
    if Generations(data_dir / root, logrows.EVENTS).current() is not None:
        events = _literal(str(root / logrows.EVENTS / "*.parquet"))
        # every column of the log's schema, also one no file holds yet (a zero-row file holds them all)
        columns = _literal(str(root / _events_columns(data_dir / root)))
        # event_date: the UTC date of the event's own time, as the table partitions its files
        source = (
            "SELECT *, CAST(timezone('UTC', \"timestamp\") AS DATE) AS event_date "  # noqa: S608
            f"FROM read_parquet([{events}, {columns}], hive_partitioning = false, union_by_name = true)"
        )
        names = [*SEGMENT_SCHEMA, "event_date"]
        integer = [c for c, dtype in SEGMENT_SCHEMA.items() if dtype.is_integer()]
        scale = analyst.scale_of(analyst.every_currency(declared), declared)
        shown = analyst.select_sql(source, names, integer, tenant_names or {}, scale, declared)
        statements.append(f"CREATE OR REPLACE VIEW events AS {shown}")
        for name, after in analyst.added_columns(names):
            doc = analyst.TENANT_DOC if name == "tenant" else analyst.MAJOR_DOC.format(column=after)
            if name == "tenant" or after in integer:
                statements.append(f"COMMENT ON COLUMN events.{name} IS {_literal(doc)}")
        statements.append(f"COMMENT ON VIEW events IS {_literal(EVENTS_COMMENT)}")
    return statements


def _events_columns(root: Path) -> str:
    """The name of a zero-row Parquet file under ``root`` with every column of the log's files (written
    once per schema): read beside them, each column the analysts' ``events`` view names exists."""
    digest = hashlib.sha256(repr(list(SEGMENT_SCHEMA.items())).encode()).hexdigest()[:16]
    name = f".events-columns-{digest}.parquet"
    if not (root / name).is_file():
        staging = staging_path(root / name)
        pl.DataFrame(schema=SEGMENT_SCHEMA).write_parquet(staging)
        replace_durably(staging, root / name)
    return name


def _currencies(data_dir: Path, read_model: ReadModel, files: Path) -> list[str]:
    """The currencies of a read model with amounts: those of its rows read from the log (in its
    generation's manifest: never a scan of them) and of its stored rows (a small scan)."""
    names = {c.name for c in read_model.columns}
    if "currency" not in names or not names & set(analyst.AMOUNT_COLUMNS):
        return []
    parted = isinstance(read_model, PartedReadModel)
    manifest = Generations(data_dir / "read_models", read_model.name).manifest() if parted else None
    logged = (manifest or {}).get("log", {}).get("currencies", {})
    codes = {str(code) for codes in logged.values() for code in codes}
    parts = (manifest or {}).get("parts", [])
    if manifest is not None and all("currencies" in p for p in parts):
        # every part's currencies are in the manifest: no scan of its rows
        return sorted(codes | {str(code) for p in parts for code in p["currencies"]})
    try:
        source = _literal(str(data_dir / files))
        with duckdb.connect(":memory:") as con:
            column = "currency"
            if "closest_currency" in names:  # a closest candidate's amount is shown in its own currency
                column = "unnest([currency, closest_currency])"
            rows = con.execute(f"SELECT DISTINCT {column} FROM read_parquet({source})").fetchall()  # noqa: S608
        codes |= {str(row[0]) for row in rows if row[0] is not None}
    except duckdb.IOException:
        pass  # no stored rows yet
    return sorted(codes)


def _logged_models(root: Path, read_models: Sequence[ReadModel]) -> set[str]:
    """The read models whose current generation reads rows from the log's files."""
    logged = set()
    for read_model in read_models:
        if isinstance(read_model, PartedReadModel) and read_model.logged:
            manifest = Generations(root, read_model.name).manifest()
            events = Generations(root, logrows.EVENTS).current() is not None
            if events and manifest is not None and manifest.get("log", {}).get("rows"):
                logged.add(read_model.name)
    return logged


def ensure_views(
    data_dir: Path,
    read_models: Sequence[ReadModel],
    status_name: str,
    status_columns: Sequence[Column],
    *,
    tenant_names: Mapping[str, str] | None = None,
) -> bool:
    """Make ``analytics.duckdb`` hold the current views; rebuilds it (new file + ``os.replace``) only when
    the view definitions changed (a read model, a column, a tenant's name, a currency needing more
    decimal places). Without ``tenant_names`` the names saved by the previous call stay. Returns
    whether it was rebuilt."""
    marker = data_dir / "read_models" / _FINGERPRINT
    try:
        saved = json.loads(marker.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    names = dict(tenant_names) if tenant_names is not None else dict(saved.get("tenants", {}))
    statements = view_statements(data_dir, read_models, status_name, status_columns, names)
    fingerprint = hashlib.sha256("\n".join(statements).encode()).hexdigest()
    target = data_dir / ANALYTICS_DB
    current = saved.get("fingerprint")
    if current == fingerprint and target.exists():
        return False
    staging = staging_path(target)
    staging.unlink(missing_ok=True)
    con = duckdb.connect(str(staging))
    try:
        _search_in(con, data_dir)
        con.execute("BEGIN")  # one commit for every view: a commit per statement costs ~3 ms each
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    replace_durably(staging, target)
    staging.with_name(staging.name + ".wal").unlink(missing_ok=True)
    saved = {"fingerprint": fingerprint, "statements": statements, "tenants": names}
    write_atomic(marker, json.dumps(saved).encode())
    return True


def _search_in(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """Resolve the views' relative file paths against ``data_dir``."""
    con.execute(f"SET GLOBAL file_search_path = {_literal(str(Path(data_dir).resolve()))}")


def sql(
    data_dir: str | Path, query: str, params: Sequence[Any] | dict[str, Any] | None = None
) -> pl.DataFrame:
    """Run a read-only SQL query against the analyst database of ``data_dir`` and return the result.

    Each call attaches the current ``analytics.duckdb`` read-only to a private in-memory connection (about
    a millisecond), so it never blocks the pipeline or other readers and always sees the newest views.
    Times come back in UTC. Pass values as ``params`` (``$1`` / ``?`` placeholders), never spliced in."""
    path = Path(data_dir) / ANALYTICS_DB
    if not path.exists():
        raise NotFoundError(
            f"{path} does not exist", hint="run projections.update (it creates the analyst views)"
        )
    con = duckdb.connect(":memory:")
    try:
        _search_in(con, Path(data_dir))
        try:
            con.execute(f"ATTACH {_literal(str(path))} AS analytics (READ_ONLY)")
        except duckdb.IOException:
            # Someone holds the file read-write (DuckDB then refuses every other open): the same views,
            # built in memory from the statements the last publish saved, read the same Parquet files.
            _views_in_memory(con, Path(data_dir))
        cursor = con.cursor()
        try:
            cursor.execute("SET TimeZone = 'UTC'")
            cursor.execute("USE analytics")
            frame: pl.DataFrame = cursor.sql(query, params=params).pl()
        finally:
            cursor.close()
        return frame
    finally:
        con.close()


def _views_in_memory(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """Create the analyst views as schema ``analytics`` of the in-memory ``con``."""
    try:
        statements = json.loads((data_dir / "read_models" / _FINGERPRINT).read_text())["statements"]
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise NotFoundError(
            f"{data_dir / ANALYTICS_DB} is locked by another process and no saved view definitions exist",
            hint="close the read-write connection, or run projections.update once (it saves them)",
        ) from exc
    con.execute("ATTACH ':memory:' AS analytics")
    con.execute("USE analytics")
    for statement in statements:
        con.execute(statement)
