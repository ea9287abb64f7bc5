"""Options shared by CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="SETTLER_DATA_DIR",
        help="Settler data directory (event log, read models). Env: SETTLER_DATA_DIR.",
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
