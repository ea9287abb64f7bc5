"""Minor-unit exponents runs declared: the codes a run's job spec names under ``currency.exponents``
with digits other than the built-in table's (``XTS: 3``), per run, so that the analyst columns show
each run's amounts with the exponents it read them with.

They are read from the ``ReconciliationStarted`` events (which carry the spec as run) of the published
log's files (the ``read_models/events`` generation). The log's files never change (new content is a
new file), so what each file declares is remembered in ``read_models/currency_exponents.json`` and an
update reads only the files published since the previous one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import polars as pl

from settler_pipeline.adapters.amounts import declared_exponents
from settler_pipeline.domain import events as e
from settler_pipeline.projections.generations import Generations
from settler_pipeline.projections.logrows import EVENTS

REMEMBERED: Final = "currency_exponents.json"

RunExponents = dict[str, tuple[str, dict[str, int]]]
"""Per run id: its tenant and the exponents its spec declares that differ from the built-in table."""


def declared(root: Path, *, remember: bool = False) -> RunExponents:
    """The runs of the published log (under the read-models folder ``root``) whose job spec declares
    exponents that differ from the built-in table (nearly always none). With ``remember`` (the one
    updating the read models), files read are remembered for the next call; a reader only reads
    what is not remembered yet."""
    manifest = Generations(root, EVENTS).manifest()
    if manifest is None:
        return {}
    names = [Path(str(f)).name for f in manifest.get("files", [])]
    memory = root / REMEMBERED
    try:
        known: dict[str, Any] = json.loads(memory.read_text()).get("files", {})
    except (FileNotFoundError, ValueError, AttributeError):
        known = {}
    found = {name: known[name] for name in names if isinstance(known.get(name), dict)}
    fresh = [name for name in names if name not in found]
    for name in fresh:
        try:
            found[name] = _read(root / EVENTS / name)
        except FileNotFoundError:
            continue  # replaced by a newer generation meanwhile: what is remembered stands
    if remember and (fresh or set(known) != set(found)):
        staging = memory.with_name(f".{REMEMBERED}.{os.getpid()}")
        # not fsynced: a lost file only makes the next update read the files again
        staging.write_text(json.dumps({"files": found}, sort_keys=True))
        staging.replace(memory)
    runs: RunExponents = {}
    for per_file in found.values():
        for run, (tenant, exponents) in per_file.items():
            runs[str(run)] = (str(tenant), {str(c): int(x) for c, x in exponents.items()})
    return runs


def _read(file: Path) -> dict[str, tuple[str, dict[str, int]]]:
    """The runs started in ``file`` that declare exponents of their own."""
    started = (
        pl.scan_parquet(file, hive_partitioning=False)
        .filter(pl.col("event_type") == e.RECONCILIATION_STARTED)
        .select("aggregate_id", "tenant_id", "data")
        .collect()
    )
    out: dict[str, tuple[str, dict[str, int]]] = {}
    for run, tenant, text in started.iter_rows():
        if "exponents" not in text:
            continue  # the spec names none: no need to parse it
        spec = json.loads(text).get("spec") or {}
        exponents = declared_exponents(spec) if isinstance(spec, dict) else {}
        if exponents:
            out[run] = (tenant, exponents)
    return out


def of_tenants(runs: RunExponents, tenant_ids: list[str] | None) -> dict[str, dict[str, int]]:
    """``runs`` of ``tenant_ids`` (every tenant's when None), as run id -> code -> exponent."""
    wanted = None if tenant_ids is None else set(tenant_ids)
    return {run: x for run, (tenant, x) in runs.items() if wanted is None or tenant in wanted}
