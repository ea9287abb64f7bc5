"""`settler sample`: generate realistic exports with ground truth and a job spec that reads them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from settler_pipeline.cli.options import JsonOption, parse_date
from settler_pipeline.cli.output import console, emit_json


def sample_command(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write source, target, truth and the job spec.")
    ],
    records: Annotated[
        int, typer.Option("--records", help="Source records.", min=1, max=100_000_000)
    ] = 2_000,
    start: Annotated[str, typer.Option("--start", help="First day (YYYY-MM-DD).")] = "2026-11-01",
    days: Annotated[int, typer.Option("--days", help="Days of activity.", min=1, max=366)] = 7,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 0,
    name: Annotated[str, typer.Option("--name", help="Job name (also the spec's file name).")] = "sample",
    fmt: Annotated[str, typer.Option("--format", help="csv, parquet or jsonl.")] = "csv",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite sample files already in the folder.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Generate a processor export and a bank statement with the hard cases mixed in (reference noise,
    fees, settlement lag, payouts, duplicates, ambiguous twins, currency mismatches, orphans).
    A folder already holding any of these files is refused unless ``--force`` is given."""
    from settler_pipeline.errors import ValidationError
    from settler_pipeline.sample_job import write_sample_job

    if fmt not in ("csv", "parquet", "jsonl"):
        raise ValidationError(f"--format must be csv, parquet or jsonl, got {fmt!r}")
    chosen: Literal["csv", "parquet", "jsonl"] = fmt  # type: ignore[assignment]
    first = parse_date(start, "--start")
    spec, sample = write_sample_job(
        directory,
        records=records,
        start=first,
        days=days,
        seed=seed,
        name=name,
        fmt=chosen,
        overwrite=force,
    )
    result = {
        "job_spec": str(spec),
        "source_records": sample.source.height,
        "target_records": sample.target.height,
        "true_links": sample.truth.height,
    }
    if json:
        emit_json(result)
    else:
        # A run needs a tenant the user holds a role in: a fresh data directory has none, so the first
        # step creates one named like the job (the same name rules), of which the user becomes admin.
        last = first + timedelta(days=days - 1)
        where, elsewhere = "the log goes to ./data, or to --data-dir", ""
        if not _readable_from_default(directory, name):
            # ./data (a demo's, say) confines inputs to its roots, which do not hold this folder: the
            # printed steps use a data directory of the sample's own, so they work as printed
            where = "./data's allowed_input_roots do not hold this folder, so the log goes beside it"
            elsewhere = f" --data-dir {directory / 'data'}"
        console.print(
            f"wrote {sample.source.height} source and {sample.target.height} target records to {directory}\n"
            f"run it ({where}):\n"
            f"  settler access create-tenant {name}{elsewhere}   # once; skip it if you have a tenant, "
            "and name yours\n"
            f"  settler reconcile {spec} --tenant {name} --from {first} --to {last}{elsewhere}",
            markup=False,
        )


def _readable_from_default(directory: Path, tenant: str) -> bool:
    """Whether a run in the default data directory may read the sample in ``directory`` (its
    ``allowed_input_roots``, for a tenant named ``tenant``)."""
    from settler_pipeline.adapters.confinement import InputRoots
    from settler_pipeline.errors import SettlerError
    from settler_pipeline.settings import load_settings

    try:
        roots = InputRoots.of(load_settings()).for_tenant(tenant)
    except SettlerError:
        return True  # a broken settings file is reported by the commands that use it
    folder = directory.resolve()
    return roots.permits(folder, folder)
