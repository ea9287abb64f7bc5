"""Materialize every snapshot and read model of a data directory, with their checks, as a program:
``python -m dagster_project.materialize DATA_DIR RESULT_FILE``.

`settler demo` runs this in a child process (the library never imports the code location), with
``DAGSTER_HOME`` pointing at the instance it records into. The tenants become partitions of the
reconciliation assets, the event log gets an observation, the runs made through the CLI become
materialized partitions, and the checks passed / run are written to
``RESULT_FILE`` as JSON. Exit code 0 when the materialization succeeded, 1 when it did not (Dagster's
log says why).
"""

import json
import sys
from pathlib import Path

import dagster as dg

from dagster_project.assets import EVENT_LOG, observe_event_log
from dagster_project.definitions import definitions_of
from dagster_project.outside_runs import outside_materializations
from dagster_project.reconciliations import TENANT_PARTITIONS, job_spec_assets
from dagster_project.resources import EventStoreResource, ReadModelsResource
from settler_pipeline.application.access import AccessControl
from settler_pipeline.store.event_store import EventStore


def materialize(data_dir: Path) -> dg.ExecuteInProcessResult:
    """Materialize the unpartitioned assets of the code location on ``data_dir`` into the instance of
    ``DAGSTER_HOME``, after adding its tenants as partitions and observing its event log."""
    found = job_spec_assets(data_dir / "jobs")
    definitions = definitions_of(found)
    assets = [
        a for a in definitions.assets or [] if isinstance(a, dg.AssetsDefinition) and a.partitions_def is None
    ]
    with dg.DagsterInstance.get() as instance:
        tenants = [t.name for t in AccessControl(data_dir).tenants()]
        known = set(instance.get_dynamic_partitions(TENANT_PARTITIONS))
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [t for t in tenants if t not in known])
        with EventStore.open(data_dir) as store:
            head, metadata = observe_event_log(store)
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key=EVENT_LOG, metadata={**metadata, "head_position": head})
        )
        result = dg.materialize(
            assets,
            resources={
                "event_store": EventStoreResource(data_dir=str(data_dir)),
                "read_models": ReadModelsResource(data_dir=str(data_dir)),
            },
            instance=instance,
            raise_on_error=False,
        )
        # the runs the demo made through the CLI, as materialized partitions (outside_runs.py)
        for event in outside_materializations(instance, data_dir, found):
            instance.report_runless_asset_event(event)
        return result


def main(argv: list[str]) -> int:
    """Run :func:`materialize` on ``argv[0]`` and write ``{"success", "checks_passed", "checks_total"}``
    to ``argv[1]``."""
    data_dir, result_file = Path(argv[0]), Path(argv[1])
    result = materialize(data_dir)
    evaluations = result.get_asset_check_evaluations()
    result_file.write_text(
        json.dumps(
            {
                "success": result.success,
                "checks_passed": sum(1 for ev in evaluations if ev.passed),
                "checks_total": len(evaluations),
            }
        )
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
