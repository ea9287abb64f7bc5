"""Readers never take the write lock and never write: they work on a read-only copy of a data directory
and beside a writer holding the lock, and a directory without Settler data is refused, not created."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from settler_pipeline.application.access import AccessControl
from settler_pipeline.errors import NotFoundError, StoreError
from settler_pipeline.session import Settler
from settler_pipeline.store import maintenance
from settler_pipeline.store.event_store import BULK_ROWS, EventStore
from settler_pipeline.store.locks import file_lock
from tests.factories import TENANT, build_event, build_frame, uid
from tests.integration.test_log_cli import json_of, settler


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log with segments, a write-ahead tail and snapshots-free metadata."""
    data_dir = tmp_path_factory.mktemp("readers") / "data"
    with EventStore.open(data_dir) as store:
        store.append_frame(build_frame(BULK_ROWS, streams=[uid(1), uid(2)], aggregate_type="Thing"))
        store.append([build_event(uid(1)) for _ in range(3)])
    # the login running the tests may read the events' tenant
    AccessControl(data_dir).create_tenant("readers", admin=getpass.getuser(), tenant_id=TENANT)
    return data_dir


@pytest.fixture
def read_only_dir(source_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the data directory behind a read-only bind mount (writes fail even for root)."""
    copy = tmp_path / "copy"
    shutil.copytree(source_dir, copy)
    mount = tmp_path / "ro"
    mount.mkdir()
    bind = subprocess.run(["mount", "--bind", str(copy), str(mount)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remount.stderr.decode().strip()}")
        with pytest.raises(OSError, match="Read-only file system"):
            (mount / "probe").write_text("x")
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_read_commands_work_on_a_read_only_copy(read_only_dir: Path) -> None:
    verify = settler("log", "verify", "--data-dir", read_only_dir, "--json")
    assert verify.returncode == 0, verify.stderr
    assert json_of(verify)["head_position"] == BULK_ROWS + 3
    stats = settler("log", "stats", "--data-dir", read_only_dir, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json_of(stats)["head_position"] == BULK_ROWS + 3
    events = settler("events", "--data-dir", read_only_dir, "--json", "--limit", "5")
    assert events.returncode == 0, events.stderr
    assert len(json_of(events)) == 5
    runs = settler("runs", "--data-dir", read_only_dir, "--json")
    assert runs.returncode == 0, runs.stderr
    assert json_of(runs) == []


@pytest.mark.parametrize(
    "command",
    [("log", "publish"), ("project",), ("snapshot",), ("access", "create-tenant", "newco")],
    ids=lambda c: " ".join(c),
)
def test_write_commands_on_a_read_only_copy_say_so(read_only_dir: Path, command: tuple[str, ...]) -> None:
    refused = settler(*command, "--data-dir", read_only_dir, "--json")
    assert refused.returncode == 1, refused.stderr  # not an internal error (2)
    error = json_of_stderr(refused)
    assert error["code"] == "not_writable" and "Read-only file system" in error["error"]
    assert "read-only" in error["hint"] and "Traceback" not in refused.stderr


def json_of_stderr(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    parsed: dict[str, str] = json.loads(result.stderr.strip().splitlines()[-1])
    return parsed


def test_the_python_api_reads_a_read_only_copy(read_only_dir: Path) -> None:
    with EventStore.open(read_only_dir, read_only=True) as store:
        assert store.read().collect().height == BULK_ROWS + 3
        assert len(store.get_events(uid(1), "Thing")) > 3
        assert store.get_latest_snapshot(uid(1), "Thing") is None
        assert maintenance.verify(store).ok
        with pytest.raises(StoreError, match="read-only"):
            store.append([build_event(uid(1))])
    with Settler(read_only_dir, user="nobody", read_only=True) as app:
        assert app.store.head_position == BULK_ROWS + 3


def test_a_reader_does_not_wait_for_a_writer_holding_the_lock(source_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(source_dir, copy)
    # a second flock in this process on another descriptor conflicts exactly as another process's would
    with (
        file_lock(copy / "log" / "write.lock", timeout_s=1),
        EventStore.open(copy, read_only=True, lock_timeout_s=0.05) as reader,
    ):
        assert reader.head_position == BULK_ROWS + 3
        assert reader.read().collect().height == BULK_ROWS + 3


@pytest.mark.parametrize(
    "command",
    [
        ("events", "--user", "nobody"),
        ("state", uid(1), "--user", "nobody"),
        ("log", "verify"),
        ("log", "stats"),
        ("stats",),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_read_command_on_a_missing_directory_fails_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "elsewhere"
    result = settler(*command, "--data-dir", missing)
    assert result.returncode == 1, result.stderr
    assert f"no Settler data at {missing}" in result.stderr
    assert "pass --data-dir or set SETTLER_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_opening_an_empty_directory_read_only_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no Settler data"):
        EventStore.open(tmp_path, read_only=True)
    assert list(tmp_path.iterdir()) == []


WRITER = """
import sys, time
from settler_pipeline.store.event_store import EventStore
from tests.factories import build_event, uid
with EventStore.open(sys.argv[1]) as store:
    print("ready", flush=True)
    deadline = time.monotonic() + float(sys.argv[2])
    k = 0
    while time.monotonic() < deadline:
        store.append([build_event(uid(5)) for _ in range(50)])
        k += 1
        if k % 2 == 0:
            store.publish()  # segment, stream copy, Delta commit, a new write-ahead file
"""


def test_verify_beside_a_working_writer_reports_a_sound_log_as_sound(
    source_dir: Path, tmp_path: Path
) -> None:
    """A writer appending and publishing in another process: every verify meanwhile is ok (files in the
    middle of a commit are not leftovers, and a commit between two of verify's reads is not damage)."""
    copy = tmp_path / "copy"
    shutil.copytree(source_dir, copy)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(copy), "20"], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        heads = []
        for _ in range(6):
            with EventStore.open(copy, read_only=True) as reader:
                report = maintenance.verify(reader)
            assert report.ok, report.problems
            heads.append(report.head_position)
        assert heads[-1] > heads[0] > BULK_ROWS + 3, "the writer was working meanwhile"
    finally:
        writer.kill()
        writer.wait()


def test_the_notebook_entry_point_reads_a_read_only_copy_without_being_told(read_only_dir: Path) -> None:
    import settler_pipeline as sp

    with sp.open(read_only_dir, user="nobody") as app:  # would take the write lock: Read-only file system
        assert app.store.head_position == BULK_ROWS + 3
        with pytest.raises(StoreError, match="read-only"):
            app.store.append([build_event(uid(1))])


def test_the_notebook_entry_point_refuses_a_directory_without_settler_data(tmp_path: Path) -> None:
    import settler_pipeline as sp

    missing = tmp_path / "typo"
    with pytest.raises(NotFoundError, match="no Settler data"):
        sp.open(missing, user="analyst")
    assert not missing.exists()


def test_the_notebook_entry_point_writes_where_it_can(source_dir: Path, tmp_path: Path) -> None:
    import settler_pipeline as sp

    copy = tmp_path / "copy"
    shutil.copytree(source_dir, copy)
    with sp.open(copy, user=getpass.getuser()) as app:
        app.store.append([build_event(uid(1))])
        assert app.store.head_position == BULK_ROWS + 4
