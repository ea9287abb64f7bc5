"""Bringing read models up to date: ``update`` (events after each checkpoint), ``rebuild`` (from
position 0), ``as_of`` (any read model at a past position, computed in memory) and ``status``.

The log is read in chunks of positions; each chunk is decoded once and applied to every read model
whose checkpoint is before its end, so memory stays bounded by the chunk size whatever the log's size.
A read model's rows and checkpoint are then published together in one atomic step (``checkpoint.py``,
``parts.py``). One updater runs at a time (``read_models/.lock``); readers never wait for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import polars as pl

from settler_pipeline.errors import CorruptionError, NotFoundError, ValidationError
from settler_pipeline.projections import publisher
from settler_pipeline.projections.batch import EventBatch
from settler_pipeline.projections.checkpoint import Checkpoint, Staged, publish_staged, read_table
from settler_pipeline.projections.exceptions import ReconciliationExceptions
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.hotspots import ErrorHotspots
from settler_pipeline.projections.logrows import (
    ATTEMPTS,
    EVENTS,
    LogFiles,
    filter_file,
    publish_events,
    scan_matches,
)
from settler_pipeline.projections.matches import ReconciliationMatches
from settler_pipeline.projections.projection import ReadModel, TableReadModel
from settler_pipeline.projections.status import STATUS_COLUMNS, STATUS_NAME, stage_status, status_rows
from settler_pipeline.projections.summary import ReconciliationSummary
from settler_pipeline.projections.targets import PartedTarget, Target, target
from settler_pipeline.projections.usage import TenantUsage
from settler_pipeline.store.batch import as_of_limit
from settler_pipeline.store.event_store import EventStore
from settler_pipeline.store.locks import file_lock

CHUNK_EVENTS: Final = 5_000_000
"""Positions read and applied at a time. Two chunks are in memory at once (one applied, the next being
decoded), but a chunk holds few rows: the matches served from the log (nine events in ten) arrive
as sums. Each chunk costs its joins with the stored state: on 10M run-shaped events, chunks of 5M
took ~1 s less CPU than chunks of 1M (7.4-7.9 s against 8.7-9.7 s, load average ~4.4)."""

_THREADS: Final = 3  # read models worked on at once (the machine has 2 cores; I/O fills the gaps)
T = TypeVar("T")
R = TypeVar("R")

READ_MODELS: Final[tuple[ReadModel, ...]] = (
    ReconciliationSummary(),
    TenantUsage(),
    ErrorHotspots(),
    ReconciliationExceptions(),
    ReconciliationMatches(),
)
NAMES: Final = tuple(m.name for m in READ_MODELS)


def read_models_dir(data_dir: str | Path) -> Path:
    """Where the read models of a data directory are published."""
    return Path(data_dir) / "read_models"


def model(name: str) -> ReadModel:
    """The read model called ``name``."""
    for candidate in READ_MODELS:
        if candidate.name == name:
            return candidate
    raise ValidationError(f"unknown read model {name!r}", hint=f"one of: {', '.join(NAMES)}")


def _models(names: Sequence[str] | None) -> list[ReadModel]:
    return list(READ_MODELS) if names is None else [model(n) for n in names]


def _each(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` over ``items`` on a few threads: the read models are independent of each other and
    their work (Polars, DuckDB, Parquet I/O) releases the GIL."""
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(
        max_workers=min(len(items), _THREADS), thread_name_prefix="settler-model"
    ) as pool:
        return list(pool.map(function, items))


def _run(
    store: EventStore,
    targets: Sequence[Target],
    upto: int,
    chunk_events: int,
    tenant_id: str | None,
    logged_upto: int = 0,
) -> None:
    """Apply positions ``(min checkpoint, upto]`` to every target, a chunk at a time.

    The next chunk is read and decoded on a worker thread while the current one is applied: reading,
    DuckDB's JSON decoding and Parquet writing all release the GIL, so the two overlap."""
    if not targets:
        return
    if chunk_events < 1:
        raise ValidationError("chunk_events must be at least 1")
    start = min(t.checkpoint.position for t in targets)
    # Every target's checkpoint ends a chunk: a chunk's logged matches are sums, which cannot be cut
    # inside it (EventBatch.since). The other cuts fall between segments: each is read whole.
    every = {store.segment_cut(p) for p in range(start + chunk_events, upto, chunk_events)}
    checkpoints = {t.checkpoint.position for t in targets if start < t.checkpoint.position}
    cuts = sorted(p for p in {start} | every | checkpoints if p < upto)
    bounds = list(itertools.pairwise([*cuts, upto]))
    if not bounds:
        return

    def load(after: int, end: int) -> EventBatch:
        batch = EventBatch.read(store, after, end, tenant_id=tenant_id, logged_upto=logged_upto)
        batch.decode()
        return batch

    def apply(batch: EventBatch, end: int) -> None:
        _each(lambda target: target.advance(batch), [t for t in targets if t.checkpoint.position < end])

    if len(bounds) == 1:  # the usual update: nothing to overlap, so no thread to start
        apply(load(*bounds[0]), bounds[0][1])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settler-read") as reader:
        pending = reader.submit(load, *bounds[0])
        for index, (_, end) in enumerate(bounds):
            batch = pending.result()
            if index + 1 < len(bounds):
                pending = reader.submit(load, *bounds[index + 1])
            apply(batch, end)
            del batch  # before the next chunk arrives: at most two chunks in memory


# -- public API -------------------------------------------------------------------------------------


def update(
    store: EventStore,
    data_dir: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
    chunk_events: int = CHUNK_EVENTS,
    tenant_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Apply the events after each read model's checkpoint (up to the log's head at the start) and
    publish every read model that changed, rows and checkpoint in one atomic step each. A read model
    stored with another definition version is rebuilt from position 0. Idempotent: with no new events
    nothing is rewritten. ``tenant_names`` (id to name) give the analyst views their ``tenant`` column
    (without them, the names of the previous update stay). Returns :func:`status`."""
    return _bring_forward(store, data_dir, names, chunk_events, tenant_names, fresh=False)


def rebuild(
    store: EventStore,
    data_dir: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
    chunk_events: int = CHUNK_EVENTS,
    tenant_names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Recompute read models from position 0 and publish them (same rows as :func:`update` would
    give). Readers keep seeing the previous rows until each new table is swapped in. Returns
    :func:`status`."""
    return _bring_forward(store, data_dir, names, chunk_events, tenant_names, fresh=True)


def _bring_forward(
    store: EventStore,
    data_dir: str | Path | None,
    names: Sequence[str] | None,
    chunk_events: int,
    tenant_names: Mapping[str, str] | None,
    *,
    fresh: bool,
) -> list[dict[str, Any]]:
    root = read_models_dir(data_dir if data_dir is not None else store.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock", timeout_s=store.lock_timeout_s):
        # Publishing first: the analysts' `events` view then holds every event the read models do,
        # and the matches they hold typed are read from the published files (logrows.py).
        log = LogFiles.published(store, None if store.read_only else store.publish())
        head = store.head_position
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settler-events") as events:
            # Published before the read models (the files hold every position they read from the
            # log), on a thread of its own: its links and fsyncs wait on the disk while the read
            # models are brought forward.
            linked = events.submit(publish_events, root, log) if log.position else None
            targets = _each(lambda m: target(m, root, fresh=fresh, log=log), _models(names))
            logged_upto = max(
                (t.log.position for t in targets if isinstance(t, PartedTarget) and t.log), default=0
            )
            _run(store, targets, head, chunk_events, None, logged_upto)
            if linked is not None:
                linked.result()

        def stage(one: Target) -> Staged | None:
            return one.stage() if one.changed or not _published_exists(root, one.model) else None

        staged = [one for one in _each(stage, targets) if one is not None]
        rows = status_rows(
            root, head, READ_MODELS, {t.model.name: (t.checkpoint, t.row_count()) for t in targets}
        )
        # Every changed read model, then the status, published in one round of fsyncs and one swap each.
        publish_staged(root, [*staged, stage_status(root, rows)])
        published = [m for m in READ_MODELS if _published_exists(root, m)]
        publisher.ensure_views(root.parent, published, STATUS_NAME, STATUS_COLUMNS, tenant_names=tenant_names)
        for parted in (m for m in published if not isinstance(m, TableReadModel)):
            # its one file of an older layout, once the views read its parts instead
            (root / f"{parted.name}.parquet").unlink(missing_ok=True)
    return rows


def as_of(
    store: EventStore,
    name: str,
    *,
    position: int | None = None,
    at: datetime | None = None,
    tenant_id: str | None = None,
    chunk_events: int = CHUNK_EVENTS,
) -> pl.DataFrame:
    """Read model ``name`` as it stood when the log ended at ``position`` (or at the newest position
    committed at or before time ``at``; the earlier of the two if both are given), computed in memory
    from the log and never stored. With ``tenant_id``, only that tenant's rows (and only its events are
    read). Same rows as :func:`read_model` after an update to that position. The result is held in
    memory: for ``reconciliation_matches`` of a big log, prefer a ``tenant_id``."""
    limit = as_of_limit(position, at, store.position_at)
    upto = store.head_position if limit is None else min(store.head_position, limit)
    one = target(model(name), None)
    _run(store, [one], upto, chunk_events, tenant_id)
    return one.published()


def fold_batches(name: str, batches: Iterable[EventBatch]) -> pl.DataFrame:
    """Read model ``name`` over consecutive batches of the log, computed in memory (no store, no files):
    the published rows, as :func:`read_model` would return them."""
    one = target(model(name), None)
    for batch in batches:
        one.advance(batch)
    return one.published()


def read_model(data_dir: str | Path, name: str) -> pl.DataFrame:
    """The published rows of read model ``name`` (published columns, sorted by its key); raises
    :class:`NotFoundError` if it has not been built yet."""
    definition = model(name)
    rows = scan_read_model(data_dir, name)
    return (
        rows.collect()
        if isinstance(definition, TableReadModel)
        else rows.sort(list(definition.key)).collect()
    )


def scan_read_model(data_dir: str | Path, name: str, tenant_ids: Sequence[str] | None = None) -> pl.LazyFrame:
    """The published rows of read model ``name`` as a lazy frame over its files: only what a query
    uses is read. Small read models come sorted by their key, large (parted) ones in storage order.
    With ``tenant_ids``, only those tenants' rows. Raises :class:`NotFoundError` if it has not been
    built yet."""
    root = read_models_dir(data_dir)
    definition = model(name)
    mine = pl.col("tenant_id").is_in(list(tenant_ids or ()))
    if isinstance(definition, TableReadModel):
        stored = read_table(root / f"{name}.parquet")
        if stored is None:
            raise NotFoundError(f"read model {name} has not been built", hint="run projections.update first")
        rows = definition.derive(stored[0], stored[1].max_event_time).lazy()
        scoped = tenant_ids is not None and "tenant_id" in definition.public_schema()
        return rows.filter(mine) if scoped else rows
    manifest = Generations(root, name).manifest()
    if manifest is None:
        raise NotFoundError(f"read model {name} has not been built", hint="run projections.update first")
    checkpoint = Checkpoint.from_dict(manifest["checkpoint"])
    directory = root / ".gens" / name / f"g{int(manifest['generation']):06d}"
    files = [directory / p["name"] for p in manifest["parts"]]
    rows = pl.scan_parquet(files) if files else definition.empty().lazy()
    if tenant_ids is not None:
        rows = rows.filter(mine)
    log = manifest.get("log")
    events = Generations(root, EVENTS).manifest() if log and log["rows"] else None
    if log and log["rows"] and events is None:
        raise CorruptionError(
            f"read model {name} reads rows from the log's files, but {root / EVENTS} is missing",
            hint="a global admin runs `settler project` (an update links the files again)",
        )
    if log and events is not None:
        auto = [directory / p["name"] for p in manifest["parts"] if p["cls"] == "auto"]
        linked = root / ".gens" / EVENTS / f"g{int(events['generation']):06d}"
        logged = scan_matches(
            [linked / Path(f).name for f in events["files"]],
            int(log["position"]),
            pl.read_parquet(filter_file(directory, ATTEMPTS, int(manifest["generation"]))),
            pl.scan_parquet(auto) if auto else None,
        )
        # The manifest names the tenants of those rows: no filter to read when all are wanted.
        tenants = log.get("currencies")
        if tenant_ids is not None and (tenants is None or not set(tenants) <= set(tenant_ids)):
            logged = logged.filter(mine)
        schema = definition.stored_schema()
        rows = pl.concat([rows, logged.cast(schema)], how="vertical")  # type: ignore[arg-type]
    return definition.published_columns(rows, checkpoint.max_event_time)


def logged_currencies(data_dir: str | Path, name: str, tenant_ids: Sequence[str]) -> list[str] | None:
    """The currencies of read model ``name``'s rows of ``tenant_ids``, when it reads rows from the
    log (without scanning those rows: their currencies are in its manifest); None otherwise."""
    root = read_models_dir(data_dir)
    definition = model(name)
    manifest = None if isinstance(definition, TableReadModel) else Generations(root, name).manifest()
    if manifest is None or "currencies" not in manifest.get("log", {}):
        return None
    wanted = set(tenant_ids)
    codes = {c for t, cs in manifest["log"].get("currencies", {}).items() if t in wanted for c in cs}
    directory = root / ".gens" / name / f"g{int(manifest['generation']):06d}"
    files = [directory / p["name"] for p in manifest["parts"]]
    if files:
        stored = pl.scan_parquet(files).filter(pl.col("tenant_id").is_in(list(wanted)))
        codes |= set(stored.select(pl.col("currency").drop_nulls().unique()).collect()["currency"])
    return sorted(codes)


def status(store: EventStore, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Per read model: ``name, checkpoint, head, lag`` (head - checkpoint: events not yet applied),
    plus ``version, as_of_time, rows, updated_at``. A read model never built has checkpoint 0."""
    root = read_models_dir(data_dir if data_dir is not None else store.data_dir)
    return status_rows(root, store.head_position, READ_MODELS, {})


def published(
    store: EventStore, data_dir: str | Path | None = None, names: Sequence[str] | None = None
) -> tuple[dict[str, pl.DataFrame], list[dict[str, Any]]]:
    """The published rows of read models ``names`` (default: every one) and their :func:`status`, all of
    one update: an update waits until they are read. (Each read model alone is always whole; read one
    after the other, they may straddle an update, and disagree with each other or with the
    checkpoints.) Raises :class:`NotFoundError` for one never built."""
    root = read_models_dir(data_dir if data_dir is not None else store.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    wanted = _models(names)
    with file_lock(root / ".lock", timeout_s=store.lock_timeout_s):
        frames = {m.name: read_model(root.parent, m.name) for m in wanted}
        return frames, status_rows(root, store.head_position, wanted, {})


def is_built(data_dir: str | Path, name: str) -> bool:
    """Whether read model ``name`` has been published in ``data_dir``."""
    return _published_exists(read_models_dir(data_dir), model(name))


def _published_exists(root: Path, read_model: ReadModel) -> bool:
    if isinstance(read_model, TableReadModel):
        return (root / f"{read_model.name}.parquet").exists()
    return Generations(root, read_model.name).current() is not None
