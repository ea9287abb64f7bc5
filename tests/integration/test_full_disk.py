"""A full disk, a used-up quota or a read-only mount met inside Polars, DuckDB or deltalake (which wrap
the OSError in their own exception types) is the machine's state: exit 1 with what to do, never an
internal error; a segment write that failed leaves no staging file behind."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pytest
import typer
from deltalake.exceptions import DeltaError

from settler_pipeline.cli.output import user_errors
from settler_pipeline.errors import StoreError

SETTLER = Path(sys.executable).parent / "settler"


def _store_error_from_oserror() -> StoreError:
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as cause:
        try:
            raise StoreError("cannot write the segment") from cause
        except StoreError as wrapped:
            return wrapped


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            pl.exceptions.ComputeError(
                "parquet: File out of specification: underlying IO error: "
                "No space left on device (os error 28)"
            ),
            "free some space",
        ),
        (
            duckdb.IOException(
                'IO Error: Could not write file "log/snapshots.duckdb.wal": Disk quota exceeded'
            ),
            "disk quota",
        ),
        (DeltaError("Generic error: Read-only file system (os error 30)"), "read-only"),
        (_store_error_from_oserror(), "free some space"),
    ],
)
def test_a_wrapped_disk_error_exits_1_with_a_hint(
    error: Exception, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as stopped, user_errors():
        raise error
    assert stopped.value.exit_code == 1
    err = capsys.readouterr().err
    assert said in err and "internal error" not in err, err


def test_an_unrelated_library_error_stays_an_internal_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as stopped, user_errors(data_dir=Path.cwd()):
        raise pl.exceptions.ComputeError("unable to add a column of length 3 to a frame of height 2")
    assert stopped.value.exit_code == 2
    assert "internal error" in capsys.readouterr().err


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


SCRIPT = """
set -u
mount -t tmpfs -o size=40m tmpfs "$M"
export SETTLER_USER=rev
"$S" sample "$M/in" --records 300 --days 2 > /dev/null
"$S" access create-tenant sample -d "$M/data" > /dev/null
for day in 2026-11-01 2026-11-02; do
  "$S" reconcile "$M/in/sample.yaml" --tenant sample --from $day --to $day -d "$M/data" > /dev/null || exit 9
done
dd if=/dev/zero of="$M/filler" bs=64k 2> /dev/null
for c in project snapshot "log compact"; do
  # each acts on every tenant and needs a global admin: the login that owns the access file
  env -u SETTLER_USER "$S" $c -d "$M/data" > "$OUT/$c.out" 2> "$OUT/$c.err"; echo $? > "$OUT/$c.rc"
done
find "$M/data/log/.staging" -type f > "$OUT/staging"
rm "$M/filler"
env -u SETTLER_USER "$S" project -d "$M/data" > /dev/null 2> "$OUT/after.err"; echo $? > "$OUT/after.rc"
env -u SETTLER_USER "$S" log verify -d "$M/data" > /dev/null 2>&1; echo $? > "$OUT/verify.rc"
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and a tmpfs mount")
def test_commands_on_a_full_disk_exit_1_and_work_once_space_is_freed(tmp_path: Path) -> None:
    mount, out = tmp_path / "mnt", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", "bash", "-c", textwrap.dedent(SCRIPT)],
        env={"M": str(mount), "S": str(SETTLER), "OUT": str(out), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for c in ("project", "snapshot", "log compact"):
        err = (out / f"{c}.err").read_text()
        assert (out / f"{c}.rc").read_text().strip() == "1", (c, err)
        assert "No space left on device" in err and "free some space" in err, (c, err)
        assert "internal error" not in err and "Traceback" not in err, (c, err)
    assert (out / "staging").read_text() == "", "a failed segment write leaves no staging file"
    assert (out / "after.rc").read_text().strip() == "0", (out / "after.err").read_text()
    assert (out / "verify.rc").read_text().strip() == "0"
