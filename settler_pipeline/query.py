"""SQL over the read models, scoped to the tenants a user may see (what `settler sql` and the notebook
API run). Analysts with access to the files can also open ``analytics.duckdb`` directly (all tenants).

The user's query runs in a private in-memory DuckDB holding only the rows of the user's tenants, with
external access switched off and the configuration locked, so a query cannot read other files or undo
the scoping.

Beside the read models it holds ``events`` (the published log, as ``analytics.duckdb`` shows it: only
the user's tenants' events) and ``projection_status`` (every read model's freshness), each opened only
when the query names it.

Analyst columns: beside each ``tenant_id`` the tables carry ``tenant`` (the tenant's name), and beside
each amount in minor units (``amount``, ``target_amount``, ``amount_difference``, ``closest_amount``)
the same amount in major units as an exact DECIMAL (``amount_major``, ...: 1234 EUR cents are 12.34).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from settler_pipeline import projections
from settler_pipeline.adapters.amounts import CURRENCY_EXPONENTS, DEFAULT_EXPONENT
from settler_pipeline.adapters.sql_reader import unavailable_function
from settler_pipeline.errors import CorruptionError, NotFoundError, ValidationError
from settler_pipeline.projections import analyst, exponents
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.logrows import EVENTS
from settler_pipeline.projections.status import STATUS_COLUMNS, STATUS_NAME
from settler_pipeline.settings import DEFAULT_SQL_MEMORY_LIMIT, DEFAULT_SQL_TIMEOUT_SECONDS
from settler_pipeline.store.payloads import SEGMENT_SCHEMA


def with_analyst_columns(
    frame: pl.LazyFrame,
    tenant_names: Mapping[str, str],
    currencies: Sequence[str] = (),
    declared: Mapping[str, Mapping[str, int]] | None = None,
) -> pl.LazyFrame:
    """``frame`` with the analyst columns (:mod:`settler_pipeline.projections.analyst`): ``tenant`` after
    ``tenant_id`` and ``<amount>_major`` after each minor-unit amount of a frame that has a
    ``currency``, exact decimals with as many places as ``currencies`` (the codes the frame holds)
    need, in the exponents runs declared (``declared``: run id -> code -> exponent) where they did."""
    schema = frame.collect_schema()
    added: dict[str, pl.Expr] = {}
    for name, after in analyst.added_columns(schema.names()):
        if name == "tenant":
            # an expression, not a join: a query that does not read ``tenant`` then costs nothing for it
            added[name] = pl.col("tenant_id").replace_strict(
                list(tenant_names), list(tenant_names.values()), default=None, return_dtype=pl.String
            )
        elif schema[after].is_integer():
            currency = pl.col(analyst.currency_of(after, schema.names()))
            exponent = currency.replace_strict(
                CURRENCY_EXPONENTS, default=DEFAULT_EXPONENT, return_dtype=pl.Int64
            )
            run_column = analyst.run_of(schema.names())
            if declared and run_column:
                for run, exponents in declared.items():
                    for code, own in exponents.items():
                        mine = (pl.col(run_column) == run) & (currency == code)
                        exponent = pl.when(mine).then(pl.lit(own, pl.Int64)).otherwise(exponent)
            divisor = pl.lit(10, pl.Int64).pow(exponent).cast(pl.Decimal(38, 0))
            scale = analyst.scale_of(currencies, declared)
            added[name] = pl.col(after).cast(pl.Decimal(38, scale)) / divisor
    order = [c for c in analyst.in_order(schema.names()) if c in schema or c in added]
    return frame.with_columns(expr.alias(name) for name, expr in added.items()).select(order)


def scoped_sql(
    data_dir: str | Path,
    query: str,
    tenant_ids: list[str],
    tenant_names: Mapping[str, str] | None = None,
    *,
    timeout_seconds: float = DEFAULT_SQL_TIMEOUT_SECONDS,
    memory_limit: int = DEFAULT_SQL_MEMORY_LIMIT,
) -> pl.DataFrame:
    """Run ``query`` against the read models (one table per read model, plus ``events`` and
    ``projection_status``: same names and columns as in ``analytics.duckdb``), seeing only rows of
    ``tenant_ids``. Only the tables the query names are opened, and of those only what the query
    reads (each is a lazy scan of its files). An empty query, a statement other than a SELECT, or one
    that returns no rows, is a :class:`ValidationError`; a refused statement runs nothing and creates
    nothing. A query still running after ``timeout_seconds``, or needing more than ``memory_limit``
    bytes of DuckDB's memory (or as much again of spill space), is stopped: :class:`ValidationError`."""
    if not query.strip():
        raise ValidationError(
            "the query is empty", hint='give a SELECT, e.g. "SELECT * FROM reconciliation_summary LIMIT 5"'
        )
    _check_read_only(query)
    built = [name for name in projections.NAMES if projections.is_built(data_dir, name)]
    if not built:
        raise NotFoundError(
            "no read models have been built in this data directory",
            hint="a global admin runs `settler project` (or Dagster materializes the read models) first",
        )
    con = duckdb.connect(":memory:")
    spill = tempfile.mkdtemp(prefix="settler-sql-")
    try:
        con.execute("SET TimeZone = 'UTC'")
        # DuckDB's default spill folder is ``./.tmp`` under the caller's working directory: a query
        # may spill, but into a private folder, never into whatever directory the user stands in.
        con.execute("SET temp_directory = ?", [str(Path(spill))])
        # DuckDB's defaults (80 % of the host's memory, 90 % of the disk to spill to) would let one
        # analyst's query starve every other process on the host, the pipeline's included.
        con.execute(f"SET memory_limit = '{int(memory_limit)}B'")
        con.execute(f"SET max_temp_directory_size = '{int(memory_limit)}B'")
        tables = built + [name for name in (EVENTS, STATUS_NAME) if _published(data_dir, name)]
        for name in _named_tables(query, tables):
            frame = _scoped_table(data_dir, name, tenant_ids, tenant_names or {})
            columns = ", ".join(f'"{column}"' for column in frame.collect_schema().names())
            # A registered lazy frame: DuckDB asks Polars for the columns the query reads. A query
            # reading none (``count(*)``) gets the first one, so that is a constant that costs nothing.
            con.register(f"_{name}", frame.select(pl.lit(True).alias("_row"), pl.all()))
            # name and columns are the library's own read-model names, never user input
            con.execute(f"CREATE VIEW {name} AS SELECT {columns} FROM _{name}")  # noqa: S608
        con.execute("SET enable_external_access = false")
        # A query naming an extension's function (delta_scan) must not make DuckDB download and load it.
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
        # the relation runs when its rows are fetched: the clock covers planning and fetching
        clock = threading.Timer(timeout_seconds, con.interrupt)
        clock.daemon = True
        clock.start()
        try:
            # Polars' streaming engine scans the files in pieces: the tenant filter never holds a
            # whole column of tenant ids in memory.
            with pl.Config(engine_affinity="streaming"):
                relation = con.sql(query)
                if relation is None:
                    raise ValidationError(
                        "the statement returned no result",
                        hint="give a query that returns rows (SELECT ...); the read models cannot be changed",
                    )
                result: pl.DataFrame = _as_polars(relation, memory_limit)
        except duckdb.InterruptException as exc:
            raise ValidationError(
                f"the query ran longer than {timeout_seconds:g} s and was stopped",
                hint="narrow it (a WHERE on the period or the run, fewer joins), or raise the limit: "
                "SETTLER_SQL_TIMEOUT_SECONDS or sql_timeout_seconds in settler.toml",
            ) from exc
        except duckdb.OutOfMemoryException as exc:
            raise ValidationError(
                f"the query needs more memory than settler sql may use ({_bytes(memory_limit)})",
                hint="narrow it (a WHERE, fewer columns, aggregate before collecting lists), or raise the "
                "limit: SETTLER_SQL_MEMORY_LIMIT or sql_memory_limit in settler.toml",
            ) from exc
        except duckdb.Error as exc:
            unreadable = _UNREADABLE.search(str(exc))
            if unreadable is not None and unreadable.group(1) in tables:
                # a table's files failed to read as DuckDB pulled its rows: damaged data, not the query
                name, reason = unreadable.group(1), unreadable.group(2).splitlines()[0]
                shown = "the published log (table events)" if name == EVENTS else f"read model {name}"
                raise CorruptionError(
                    f"{shown} cannot be read: {reason}",
                    hint="run the query again (an update may have replaced the files meanwhile); if it "
                    "fails again, rebuild the read models: `settler project --rebuild`",
                ) from exc
            if (unavailable := unavailable_function(exc, "settler sql")) is not None:
                raise ValidationError(
                    unavailable, hint=f"query the tables: {', '.join(tables)}; see docs/read-models.md"
                ) from exc
            # DuckDB's advice to SET a limit would be refused here (the configuration is locked)
            reason = _SET_ADVICE.sub("", str(exc).splitlines()[0])
            raise ValidationError(
                f"the query failed: {reason}", hint=f"tables: {', '.join(tables)}; see docs/read-models.md"
            ) from exc
        finally:
            clock.cancel()
            clock.join()  # an interrupt already under way ends before the connection is closed
        return result
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _bytes(size: int) -> str:
    """``size`` as DuckDB shows a memory limit (``64.0 MiB``, ``4.0 GiB``)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


_RESULT_BATCH_ROWS = 100_000
_SET_ADVICE = re.compile(r"\s*Use \"SET [^\"]*\"[^.]*\.")
# how DuckDB reports a registered table whose rows could not be produced (here: its files not read)
_UNREADABLE = re.compile(r"exporting a stream from the object registered as '_([a-z_]+)' failed: (.*)", re.S)

_INSTALL = re.compile(r"^\s*(FORCE\s+)?INSTALL\b", re.IGNORECASE)
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


def _check_read_only(query: str) -> None:
    """Refuse, before anything runs, a query holding a statement other than SELECT (or EXPLAIN of
    one): :class:`ValidationError`. The sandbox alone is not enough: DuckDB creates the folder of an
    ``EXPORT DATABASE`` before it finds it may not write there, so a refused statement could still
    leave a directory inside the log."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error:
        return  # it fails when it runs, with DuckDB's own message
    refused: set[str] = set()
    for statement in statements:
        kind = statement.type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = _EXPLAIN.sub("", statement.query, count=1)
            try:
                kinds = {s.type for s in duckdb.extract_statements(inner)}
            except duckdb.Error:
                kinds = {kind}
            if kinds != {duckdb.StatementType.SELECT}:
                refused.add("EXPLAIN of " + ", ".join(sorted(k.name for k in kinds)))
            elif modifying := _modifying_ctes(inner):
                refused.add("EXPLAIN of " + ", ".join(sorted(modifying)))
        elif kind == duckdb.StatementType.MULTI:
            # DuckDB reads a PIVOT without IN (...) as two statements: one creating an ENUM type of
            # the column's values, then the SELECT. Listing the values makes it a plain SELECT.
            raise ValidationError(
                "settler sql cannot run a PIVOT without IN (...): DuckDB would first create a type "
                "of the column's values, and settler sql changes nothing",
                hint="list the values: PIVOT reconciliation_summary ON status IN ('completed', 'failed') "
                "USING count(*) GROUP BY tenant",
            )
        elif kind == duckdb.StatementType.LOAD and _INSTALL.match(statement.query):
            refused.add("INSTALL")  # DuckDB files INSTALL under LOAD: name what the user wrote
        elif kind != duckdb.StatementType.SELECT:
            refused.add(kind.name)
        else:
            refused |= _modifying_ctes(statement.query)
    if refused:
        raise ValidationError(
            f"settler sql only reads: {', '.join(sorted(refused))} is not allowed",
            hint="give SELECT queries (SHOW, DESCRIBE, SUMMARIZE and EXPLAIN of a SELECT work too); "
            "the read models are rebuilt by `settler project`, never changed by a query",
        )
    if len(statements) > 1:
        # DuckDB would run them all and return the last result only: the others' rows would be lost
        raise ValidationError(
            f"settler sql runs one query at a time; this text holds {len(statements)} statements",
            hint="run each SELECT on its own (or combine them with UNION ALL or a join)",
        )


# DuckDB 2 lets a SELECT's WITH clause hold COPY TO, INSERT, UPDATE and DELETE (with RETURNING)
_MODIFYING_NODES = {
    "COPY_QUERY_NODE": "COPY",
    "INSERT_QUERY_NODE": "INSERT",
    "UPDATE_QUERY_NODE": "UPDATE",
    "DELETE_QUERY_NODE": "DELETE",
    "MERGE_INTO_QUERY_NODE": "MERGE_INTO",
}
_NODE_TYPE = re.compile(r'"type":"([A-Z_]+_QUERY_NODE)"')


def _modifying_ctes(select: str) -> set[str]:
    """The statements other than SELECT a SELECT's CTEs hold (``WITH x AS (COPY ... TO 'f') SELECT
    ...`` is a SELECT to :func:`duckdb.extract_statements`); found in DuckDB's own parse tree, so no
    text trick (quotes, comments, case) hides one."""
    con = duckdb.connect(":memory:")
    try:
        tree = con.execute("SELECT json_serialize_sql(?)", [select]).fetchall()[0][0]
    except duckdb.Error:
        return set()  # it fails when it runs, with DuckDB's own message
    finally:
        con.close()
    return {_MODIFYING_NODES[node] for node in _NODE_TYPE.findall(str(tree)) if node in _MODIFYING_NODES}


def scoped_rows(
    data_dir: str | Path, name: str, tenant_ids: Sequence[str], tenant_names: Mapping[str, str]
) -> pl.LazyFrame:
    """Read model ``name``'s published rows of ``tenant_ids`` with the analyst columns, lazily (see
    :func:`settler_pipeline.projections.scan_read_model`)."""
    frame = projections.scan_read_model(data_dir, name, tenant_ids)
    try:
        # a read model reading rows from the log knows their currencies without a scan of them
        currencies = projections.logged_currencies(data_dir, name, tenant_ids)
        root = projections.read_models_dir(data_dir)
        declared = exponents.of_tenants(exponents.declared(root), list(tenant_ids))
        return with_analyst_columns(
            frame, tenant_names, _currencies(frame) if currencies is None else currencies, declared
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise CorruptionError(
            f"read model {name} cannot be read: {str(exc).splitlines()[0]}",
            hint="a global admin rebuilds the read models: `settler project --rebuild`",
        ) from exc


def _published(data_dir: str | Path, name: str) -> bool:
    """Whether ``events`` or ``projection_status`` has been published in ``data_dir``."""
    root = projections.read_models_dir(data_dir)
    if name == EVENTS:
        return Generations(root, EVENTS).current() is not None  # its link alone: no file is read
    return (root / f"{STATUS_NAME}.parquet").is_file()


def _scoped_table(
    data_dir: str | Path, name: str, tenant_ids: Sequence[str], tenant_names: Mapping[str, str]
) -> pl.LazyFrame:
    """Table ``name`` of a scoped query, lazily: a read model (:func:`scoped_rows`), ``events``
    (:func:`scoped_events`) or ``projection_status`` (no tenant's rows: one row per read model)."""
    if name == EVENTS:
        events = scoped_events(data_dir, tenant_ids)
        root = projections.read_models_dir(data_dir)
        declared = exponents.of_tenants(exponents.declared(root), list(tenant_ids))
        try:
            return with_analyst_columns(events, tenant_names, analyst.every_currency(declared), declared)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise CorruptionError(
                f"the published log (table events) cannot be read: {str(exc).splitlines()[0]}",
                hint="a global admin runs `settler project` (an update links the log's files again)",
            ) from exc
    if name == STATUS_NAME:
        status = projections.read_models_dir(data_dir) / f"{STATUS_NAME}.parquet"
        # ``rows`` counts every tenant's rows: a scoped reader gets null rather than other tenants'
        # volume (positions are the log's own, which the events a reader sees carry anyway)
        return (
            pl.scan_parquet(status)
            .select(c.name for c in STATUS_COLUMNS)
            .with_columns(pl.lit(None, dtype=pl.Int64).alias("rows"))
        )
    return scoped_rows(data_dir, name, tenant_ids, tenant_names)


def scoped_events(data_dir: str | Path, tenant_ids: Sequence[str]) -> pl.LazyFrame:
    """The published log's events of ``tenant_ids`` with ``event_date`` (the UTC date of the event's own
    time), the rows and columns of ``analytics.duckdb``'s ``events`` view, lazily: the files of the
    current ``read_models/events`` generation, so a query sees one published state even while an
    update links the next. Raises :class:`NotFoundError` before the log has been published."""
    generations = Generations(projections.read_models_dir(data_dir), EVENTS)
    manifest = generations.manifest()
    if manifest is None:
        raise NotFoundError(
            "the log has not been published yet", hint="a global admin runs `settler project` first"
        )
    directory = generations.dir / f"g{int(manifest['generation']):06d}"
    files = [directory / Path(name).name for name in manifest["files"]]
    # One schema for every file: a payload field first logged after a file was written is null there.
    rows = (
        pl.scan_parquet(files, hive_partitioning=False, schema=SEGMENT_SCHEMA, missing_columns="insert")
        if files
        else pl.DataFrame(schema=SEGMENT_SCHEMA).lazy()
    )
    try:
        return rows.filter(pl.col("tenant_id").is_in(list(tenant_ids))).with_columns(
            pl.col("timestamp").dt.convert_time_zone("UTC").dt.date().alias("event_date")
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise CorruptionError(
            f"the published log cannot be read: {str(exc).splitlines()[0]}",
            hint="a global admin runs `settler project` (an update links the log's files again)",
        ) from exc


def _named_tables(query: str, names: Sequence[str]) -> list[str]:
    """The read models among ``names`` that ``query`` names; all of them when it names none (a look at
    the catalogue: ``SHOW TABLES``, ``DESCRIBE``, ``information_schema``) or does not parse (the query
    then fails with DuckDB's own message)."""
    try:
        named = {table.lower() for table in duckdb.get_table_names(query, qualified=False)}
    except duckdb.Error:
        return list(names)
    return [name for name in names if name in named] or list(names)


def _currencies(frame: pl.LazyFrame) -> list[str]:
    """The currency codes in ``frame`` (none when it has no amounts in minor units)."""
    schema = frame.collect_schema()
    if "currency" not in schema or not any(c in schema for c in analyst.AMOUNT_COLUMNS):
        return []
    shown = [c for c in ("currency", "closest_currency") if c in schema]  # a closest candidate's own
    codes = frame.select(pl.concat([pl.col(c) for c in shown]).drop_nulls().unique().alias("currency"))
    return [str(code) for code in codes.collect(engine="streaming")["currency"]]


def _as_polars(relation: duckdb.DuckDBPyRelation, memory_limit: int) -> pl.DataFrame:
    """The relation's rows as Polars; INTERVAL columns (which Polars cannot import) become their text.
    Rows taking more than ``memory_limit`` bytes are a :class:`ValidationError`: the result is held
    outside DuckDB's memory limit, so without this one query could still take all of the host's."""
    intervals = {
        name for name, kind in zip(relation.columns, relation.types, strict=True) if "INTERVAL" in str(kind)
    }
    if intervals:

        def quoted(name: str) -> str:
            return '"' + name.replace('"', '""') + '"'

        relation = relation.project(
            ", ".join(
                f"CAST({quoted(n)} AS VARCHAR) AS {quoted(n)}" if n in intervals else quoted(n)
                for n in relation.columns
            )
        )
    reader = relation.to_arrow_reader(_RESULT_BATCH_ROWS)
    batches: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        size += batch.nbytes
        if size > memory_limit:
            raise ValidationError(
                f"the query's result is larger than settler sql may return ({_bytes(memory_limit)})",
                hint="aggregate, select fewer columns or add a LIMIT, or raise the limit: "
                "SETTLER_SQL_MEMORY_LIMIT or sql_memory_limit in settler.toml",
            )
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    try:
        frame = pl.from_arrow(table.rename_columns(_unique(table.column_names)))
    except pl.exceptions.PolarsError as exc:
        raise ValidationError(
            f"the query's result cannot be returned: {str(exc).splitlines()[0]}",
            hint="cast the column to VARCHAR in the query",
        ) from exc
    assert isinstance(frame, pl.DataFrame)  # a table always converts to a frame
    return frame


def _unique(names: Sequence[str]) -> list[str]:
    """``names`` with each repeat suffixed ``_1``, ``_2``... (``SELECT 1 AS a, 2 AS a`` gives ``a``,
    ``a_1``, as DuckDB's own conversion to Polars names them)."""
    taken: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, n = name, 0
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        unique.append(candidate)
    return unique
