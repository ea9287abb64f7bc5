"""The Makefile's targets that take a data directory work for one whose path holds a space (a data
directory under "My Documents"), as `settler demo` prints them."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_dagster_passes_a_data_directory_with_a_space_whole(tmp_path: Path) -> None:
    data = tmp_path / "My Documents" / "settler data"
    data.mkdir(parents=True)
    # A stand-in for the venv's dagster that reports what it was given; the stamp is newer than
    # pyproject.toml, so nothing is installed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dagster"
    fake.write_text('#!/bin/sh\nprintf "%s\\n%s\\n%s\\n" "$DAGSTER_HOME" "$SETTLER_DATA_DIR" "$*"\n')
    fake.chmod(0o755)
    stamp = tmp_path / "stamp"
    stamp.touch()
    command = f"make -s -C {shlex.quote(str(ROOT))} dagster DATA_DIR={shlex.quote(str(data))}"
    done = subprocess.run(
        ["bash", "-c", f"{command} BIN={shlex.quote(str(bin_dir))} STAMP={shlex.quote(str(stamp))}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SETTLER_", "DAGSTER_", "MAKE"))},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{data}/.dagster", str(data), "dev -w workspace.yaml"]
    assert (data / ".dagster" / "dagster.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["My Documents", "bin", "stamp"]  # nothing beside
