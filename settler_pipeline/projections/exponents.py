"""Minor-unit exponents runs declared: the codes a run's job spec names under ``currency.exponents``
with digits other than the built-in table's (``XTS: 3``), per run, so that the analyst columns show
each run's amounts with the exponents it read them with.

They are read from the ``ReconciliationStarted`` events (which carry the spec as run) and the
``ReconciliationRetried`` events that bring a spec read again (the run's later attempts use it) of the
published log's files (the ``read_models/events`` generation). The log's files never change (new content is a
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
    found = {name: known[name] for name in names if _current(known.get(name))}
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
    latest: dict[str, tuple[int, str, dict[str, int]]] = {}
    for per_file in found.values():
        for run, (tenant, exponents, position) in per_file.items():
            if run not in latest or position > latest[run][0]:
                latest[str(run)] = (
                    int(position),
                    str(tenant),
                    {str(c): int(x) for c, x in exponents.items()},
                )
    # the spec a run last ran with counts: a retry's spec that declares none puts the table back
    return {run: (tenant, exponents) for run, (_, tenant, exponents) in latest.items() if exponents}


def _read(file: Path) -> dict[str, tuple[str, dict[str, int], int]]:
    """The runs whose spec, as started or as a retry read it again, is in ``file``: for each, its
    tenant, the exponents of its own it declares and the event's position (a started run declaring
    none is left out: the built-in table holds for it)."""
    specs = (
        pl.scan_parquet(file, hive_partitioning=False)
        .filter(pl.col("event_type").is_in([e.RECONCILIATION_STARTED, e.RECONCILIATION_RETRIED]))
        .select("global_position", "event_type", "aggregate_id", "tenant_id", "data")
        .collect()
    )
    out: dict[str, tuple[str, dict[str, int], int]] = {}
    for position, kind, run, tenant, text in specs.sort("global_position").iter_rows():
        retried = kind == e.RECONCILIATION_RETRIED
        if "exponents" not in text and not (retried and '"spec"' in text):
            continue  # no spec of its own, or one naming no exponents: no need to parse it
        spec = json.loads(text).get("spec")
        if not isinstance(spec, dict):
            continue  # a retry that runs the spec the run had
        exponents = declared_exponents(spec)
        if exponents or retried:
            out[run] = (tenant, exponents, int(position))
    return out


def _current(entry: Any) -> bool:
    """Whether a remembered file's entry has the current layout (run -> tenant, exponents, position)."""
    return isinstance(entry, dict) and all(isinstance(v, list) and len(v) == 3 for v in entry.values())


def of_tenants(runs: RunExponents, tenant_ids: list[str] | None) -> dict[str, dict[str, int]]:
    """``runs`` of ``tenant_ids`` (every tenant's when None), as run id -> code -> exponent."""
    wanted = None if tenant_ids is None else set(tenant_ids)
    return {run: x for run, (tenant, x) in runs.items() if wanted is None or tenant in wanted}
