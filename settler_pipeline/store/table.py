"""The log's commit point: a Delta Lake table over the segment files, read by every other engine too.

The table's root is ``log/segments`` (Hive-partitioned by ``event_date``, the UTC date of the event's
own time) and its transaction log is ``log/segments/_delta_log``. The table's files are the segment
files themselves (no copy). **One Delta commit is the commit of every segment write, flush and
compaction**: it adds the new segments (with position statistics) and removes the ones compaction
replaced, so a reader of any table version sees each event exactly once, never a file twice, never a
file being written; positions ``1..segments_head`` are exactly the table's rows.

What the table itself cannot say is carried by the same commit, in its ``commitInfo``:
``settler.state`` holds the log's state (:class:`~settler_pipeline.store.manifest.Manifest`: the
generation, the segments' head, the write-ahead file's first position, the newest commit time, the
greatest event and stream ids, recorded losses, and per segment its positions, rows, size, SHA-256 and
commit-time range) and ``settler.head_position`` the position published. The state of the log is read
from the newest commit file alone (one small read, no replay of the log); ``verify`` checks that the
table's replayed file list agrees with it.

Spark, Trino, DuckDB's delta extension, ``deltalake.DeltaTable`` and ``pl.scan_delta`` read it; an engine
without Delta support reads ``DeltaTable(uri).file_uris()`` as plain Parquet (with union-by-name: files
written before the typed payload columns lack them). Only Settler writes the table: a commit made by
anything else carries no state and the store refuses to guess it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable, PostCommitHookProperties
from deltalake import Schema as DeltaSchema
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)

from settler_pipeline.errors import CorruptionError
from settler_pipeline.files import fsync_dir
from settler_pipeline.logs import get_logger
from settler_pipeline.store.manifest import Manifest, SegmentInfo
from settler_pipeline.store.payloads import arrow_schema

PARTITION = "event_date"
LOG_FOLDER = "_delta_log"
_log = get_logger(__name__)
HEAD_KEY = "settler.head_position"
STATE_KEY = "settler.state"
CHECKPOINT_EVERY = 10  # commits between Delta checkpoints (deltalake's default is 100)
# No checkpoint and no log clean-up inside a commit: see _checkpoint and the table's configuration.
_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
# How long the transaction log remembers a file a commit removed (Delta's default: a week; a checkpoint
# drops older `remove` actions). Settler tells a file compaction replaced (kept until its own VACUUM,
# which passes its own retention) from a stray by that `remove`: once forgotten, a replaced file no
# compaction vacuumed would be moved to quarantine as unknown and `verify` would report it. Keep them.
TOMBSTONE_RETENTION = "interval 36500 days"
_CONFIGURATION = {
    "delta.checkpointInterval": str(CHECKPOINT_EVERY),
    # The log's files are its history and its time travel: never delete commit files as they age
    # (other Delta writers honour this setting; Settler's own commits also pass _HOOKS).
    "delta.enableExpiredLogCleanup": "false",
    "delta.deletedFileRetentionDuration": TOMBSTONE_RETENTION,
}
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
_REINDEX = "run `settler log reindex` to rebuild the commit point from the segment files"
# Every column nullable: the Parquet files declare them optional, and the typed payload columns
# (added to tables first published without them) read as null in files written before them.
TABLE_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=True) for f in arrow_schema()] + [pa.field(PARTITION, pa.date32())]
)


def table_uri(segments_dir: Path) -> str:
    """The table's URI (an absolute local path)."""
    return str(segments_dir.resolve())


def commit_file(segments_dir: Path, version: int) -> Path:
    """The transaction log's file of ``version``."""
    return segments_dir / LOG_FOLDER / f"{version:020d}.json"


def exists(segments_dir: Path) -> bool:
    """Whether the table exists: it has a commit file or a checkpoint (a first commit interrupted
    before its commit file was written leaves an empty ``_delta_log`` folder: not a table yet). Not
    only version 0: a Delta writer that cleans up expired log files (another engine's, or a table
    made before Settler turned that off) removes the oldest commit files once a checkpoint covers them."""
    log = segments_dir / LOG_FOLDER
    if commit_file(segments_dir, 0).is_file() or (log / "_last_checkpoint").is_file():
        return True
    return newest_version(segments_dir) is not None


def newest_version(segments_dir: Path, known: int | None = None) -> int | None:
    """The newest version of the table (``None`` if there is none). From a ``known`` version it probes
    the following commit files (a stat each); without one it lists the transaction log."""
    if known is not None and commit_file(segments_dir, known).is_file():
        version = known
        while commit_file(segments_dir, version + 1).is_file():
            version += 1
        return version
    try:
        names = os.listdir(segments_dir / LOG_FOLDER)
    except FileNotFoundError:
        return None
    newest = max((int(m.group(1)) for n in names if (m := _COMMIT_FILE.match(n))), default=None)
    if newest is not None and (path := commit_file(segments_dir, newest)).is_dir():
        # Nothing writes a directory there; left in place, every read and the next commit would fail
        # on it with an error that names neither the file nor the fix.
        raise CorruptionError(
            f"{path} is a directory where the table's newest commit file belongs",
            hint="move that directory out of the transaction log (it holds no commit), then run "
            "`settler log verify`",
        )
    return newest


def has_newer(segments_dir: Path, version: int) -> bool:
    """Whether a version after ``version`` was committed (one stat; every read asks, so the path is
    built as text: a Path's joins cost more than the stat)."""
    return os.path.isfile(f"{_log_folder(segments_dir)}{os.sep}{version + 1:020d}.json")


@functools.lru_cache(maxsize=64)
def _log_folder(segments_dir: Path) -> str:
    return os.fspath(segments_dir / LOG_FOLDER)


def commit_info(segments_dir: Path, version: int) -> dict[str, object]:
    """The ``commitInfo`` of ``version`` (empty if it has none)."""
    path = commit_file(segments_dir, version)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise CorruptionError(f"{path} is missing", hint=_REINDEX) from exc
    for line in text.splitlines():
        if line.startswith('{"commitInfo"'):
            try:
                info = json.loads(line)["commitInfo"]
            except (ValueError, KeyError) as exc:
                if is_torn(path):
                    raise _torn(path) from exc
                raise CorruptionError(f"{path} is unreadable: {exc}", hint=_REINDEX) from exc
            return info if isinstance(info, dict) else {}
    if is_torn(path):
        raise _torn(path)
    if any(not _is_json(line) for line in text.splitlines() if line.strip()):
        raise CorruptionError(f"{path} is unreadable", hint=_REINDEX)
    return {}


def _torn(path: Path) -> CorruptionError:
    return CorruptionError(
        f"{path} is cut short or empty: a commit interrupted by a power loss, or damaged afterwards",
        hint="open the log with a writer (`settler log repair`): a commit that was never acknowledged is "
        f"moved to the quarantine folder and the log goes on from the version before; otherwise {_REINDEX}",
    )


def is_torn(path: Path) -> bool:
    """Whether a commit file holds what a write interrupted by a power loss leaves behind: nothing, only
    zero bytes, or complete JSON lines followed by a cut one (possibly zero-padded). Damage inside a
    complete file (a changed byte between intact lines) is not a torn write."""
    blob = path.read_bytes().rstrip(b"\0")
    if not blob.strip():
        return True
    *complete, last = blob.split(b"\n")
    if any(not _is_json(line.decode("utf-8", "replace")) for line in complete if line.strip()):
        return False
    return bool(last.strip()) and not _is_json(last.decode("utf-8", "replace"))


def read_state(segments_dir: Path, version: int) -> Manifest | None:
    """The log's state committed by ``version``, or ``None`` when that commit carries none (a table
    published by a Settler that still kept its state in ``manifest.json``)."""
    state = commit_info(segments_dir, version).get(STATE_KEY)
    if state is None:
        return None
    try:
        return Manifest.from_json(str(state))
    except (ValueError, TypeError, KeyError, CorruptionError) as exc:
        raise CorruptionError(
            f"{commit_file(segments_dir, version)}: the log's state is unreadable: {exc}", hint=_REINDEX
        ) from exc


def published_head(segments_dir: Path) -> int:
    """The position the table's newest version publishes up to (0 if there is no table)."""
    version = newest_version(segments_dir)
    if version is None:
        return 0
    return int(str(commit_info(segments_dir, version).get(HEAD_KEY, 0)))


def current_files(segments_dir: Path) -> set[str]:
    """Paths (relative to the segments folder) of the table's current files, by replaying its
    transaction log with ``deltalake``; empty if there is no table."""
    if not exists(segments_dir):
        return set()
    return files_of(DeltaTable(table_uri(segments_dir)), Path(table_uri(segments_dir)))


def files_of(table: DeltaTable, root: Path) -> set[str]:
    """Paths (relative to ``root``, the table's folder) of ``table``'s current files. ``file_uris``
    percent-encodes the folder (a data directory under ``My Documents`` or ``Données`` comes back as
    ``My%20Documents``, ``Donn%C3%A9es``), so each is decoded before it is made relative."""
    return {Path(unquote(uri)).relative_to(root).as_posix() for uri in table.file_uris()}


def replay_problem(segments_dir: Path) -> str | None:
    """Why ``deltalake`` cannot replay the table's transaction log (a commit file missing from its
    middle, a damaged checkpoint), or ``None`` when it can (or there is no table)."""
    if not exists(segments_dir):
        return None
    try:
        DeltaTable(table_uri(segments_dir))
    except Exception as exc:  # deltalake raises several types; any of them means unreadable
        return str(exc).splitlines()[0][:300]
    return None


def commit(segments_dir: Path, state: Manifest) -> int:
    """Commit ``state`` in one Delta commit: the table's files become exactly ``state.segments``
    (added ones with position statistics; segments at or below the previous head rearrange data
    without changing it, as compaction does) and the commit carries the state. The commit file is made
    durable before this returns. Returns the new version."""
    uri = table_uri(segments_dir)
    properties = _properties(state)
    if not exists(segments_dir):
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(TABLE_SCHEMA),
            [_add(segments_dir, seg, data_change=True) for seg in state.segments],
            mode="error",
            partition_by=[PARTITION],
            name="settler_events",
            description="The Settler event log: one row per committed event, positions 1..head.",
            # a writer replays the log since the last checkpoint for every commit: 60 commits without
            # one cost 42 ms to load, 6.5 ms after a checkpoint (which takes ~45 ms to write)
            configuration=_CONFIGURATION,
            commit_properties=properties,
            post_commithook_properties=_HOOKS,
        )
        _sync_commit(segments_dir, 0)
        return 0
    try:
        table = DeltaTable(uri)
    except Exception as exc:  # deltalake raises several types; any of them means unreadable
        raise CorruptionError(
            f"the Delta transaction log of {uri} cannot be replayed: {str(exc).splitlines()[0][:300]}",
            hint=_REINDEX,
        ) from exc
    previous = table.version()
    info = commit_info(segments_dir, previous)
    previous_head = int(str(info.get(HEAD_KEY, 0)))
    kept = {key: info[key] for key in (HEAD_KEY, STATE_KEY) if key in info}
    if _add_new_columns(table, CommitProperties(custom_metadata=kept)):
        previous += 1
    if _set_missing_properties(table, CommitProperties(custom_metadata=kept)):
        previous += 1
    current = files_of(table, Path(uri))
    live = {seg.path: seg for seg in state.segments}
    added = [
        _add(segments_dir, live[path], data_change=live[path].last_position > previous_head)
        for path in sorted(live.keys() - current)
    ]
    now = int(time.time() * 1000)
    removed = [
        RemoveAction(path, False, now, None, {PARTITION: _partition_of(path)})
        for path in sorted(current - live.keys())
    ]
    table.create_write_transaction(
        [*added, *removed],
        mode="append",
        schema=TABLE_SCHEMA,
        partition_by=[PARTITION],
        commit_properties=properties,
        post_commithook_properties=_HOOKS,
    )
    version = newest_version(segments_dir, previous)
    if version is None or version <= previous:
        raise CorruptionError(f"the Delta commit after version {previous} of {uri} cannot be found")
    _sync_commit(segments_dir, version)
    if (version + 1) % CHECKPOINT_EVERY == 0:  # where deltalake's own hook put them: versions 9, 19, ...
        _checkpoint(table, uri, version)
    return version


def removed_files(segments_dir: Path) -> set[str]:
    """Paths (relative to the segments folder) that earlier versions hold and a later one removed
    (compaction replaced them) and that no vacuum has deleted yet: they stay in place so that readers of
    those versions can finish. Empty if there is no table or it cannot be replayed."""
    if not exists(segments_dir):
        return set()
    try:
        table = DeltaTable(table_uri(segments_dir))
        return set(table.vacuum(retention_hours=0, dry_run=True, enforce_retention_duration=False))
    except Exception:  # deltalake raises several types; an unreadable log is reported by its readers
        return set()


def vacuum(segments_dir: Path, retention_hours: int) -> list[str]:
    """Delete the files a version removed more than ``retention_hours`` ago (Delta's VACUUM, in its
    lite mode: only files the transaction log removed, never a file it does not know, which recovery
    moves to quarantine instead). Until then every earlier version stays readable (time travel, a
    reader that planned on it). VACUUM records itself as two commits; both repeat the newest commit's
    state, so the newest commit always describes the log. Returns the deleted paths."""
    if not exists(segments_dir):
        return []
    uri = table_uri(segments_dir)
    table = DeltaTable(uri)
    expired = table.vacuum(retention_hours=retention_hours, dry_run=True, enforce_retention_duration=False)
    if not expired:
        return []  # no commits for nothing
    previous = table.version()
    info = commit_info(segments_dir, previous)
    kept = {key: info[key] for key in (HEAD_KEY, STATE_KEY) if key in info}
    deleted = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=False,
        commit_properties=CommitProperties(custom_metadata=kept),
        post_commithook_properties=_HOOKS,
    )
    version = newest_version(segments_dir, previous)
    if version is not None and version > previous:
        _sync_commit(segments_dir, version)
        if any((v + 1) % CHECKPOINT_EVERY == 0 for v in range(previous + 1, version + 1)):
            _checkpoint(DeltaTable(uri), uri, version)
    return deleted


def _checkpoint(table: DeltaTable, uri: str, version: int) -> None:
    """Write a checkpoint after the commit is durable. Inside the commit (deltalake's post-commit hook)
    a failing checkpoint raised after the commit file was in place: the caller saw an error for a
    commit that had happened, and a retry without event ids appended the batch twice. A checkpoint
    only makes loading the table faster, so a failure here is logged and the next one tries again."""
    try:
        table.update_incremental()
        table.create_checkpoint()
    except Exception as exc:  # deltalake raises several types; none of them undoes the commit
        _log.warning("the Delta checkpoint at version %s of %s failed: %s", version, uri, exc)


def _properties(state: Manifest) -> CommitProperties:
    return CommitProperties(custom_metadata={HEAD_KEY: state.segments_head, STATE_KEY: state.to_json()})


def _sync_commit(segments_dir: Path, version: int) -> None:
    """Make a commit file durable before the commit is acknowledged (the recorded head, synced after
    it, must never be ahead of a commit a power loss could take back)."""
    fd = os.open(commit_file(segments_dir, version), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(segments_dir / LOG_FOLDER)


def _add_new_columns(table: DeltaTable, properties: CommitProperties) -> bool:
    """Evolve a table published before the typed payload columns existed: add them (nullable; older
    files read them as null). The schema commit repeats the previous commit's state (``properties``), so
    the newest commit describes the table's files even if the process stops right after it. Returns
    whether it did."""
    have = {field.name for field in table.schema().fields}
    missing = [f for f in DeltaSchema.from_arrow(TABLE_SCHEMA).fields if f.name not in have]
    if not missing:
        return False
    table.alter.add_columns(missing, commit_properties=properties, post_commithook_properties=_HOOKS)
    return True


def _set_missing_properties(table: DeltaTable, properties: CommitProperties) -> bool:
    """Give a table created before one of the table properties Settler sets (``_CONFIGURATION``)
    that property, in a commit that repeats the previous commit's state (``properties``). A value a
    deployment set itself is left alone. Returns whether it committed."""
    have = table.metadata().configuration
    missing = {key: value for key, value in _CONFIGURATION.items() if key not in have}
    if not missing:
        return False
    table.alter.set_table_properties(missing, commit_properties=properties, post_commithook_properties=_HOOKS)
    return True


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _partition_of(path: str) -> str:
    return path.split("/", 1)[0].removeprefix(f"{PARTITION}=")


def _add(segments_dir: Path, seg: SegmentInfo, *, data_change: bool) -> AddAction:
    st = (segments_dir / seg.path).stat()
    # File statistics let engines skip files by position without opening them.
    stats = {
        "numRecords": seg.rows,
        "minValues": {"global_position": seg.first_position},
        "maxValues": {"global_position": seg.last_position},
        "nullCount": {"global_position": 0},
    }
    return AddAction(
        seg.path,
        st.st_size,
        {PARTITION: seg.event_date},
        int(st.st_mtime * 1000),
        data_change,
        json.dumps(stats),
    )
