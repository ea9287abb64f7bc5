"""The domain stays free of infrastructure, and the package root stays cheap to import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "duckdb",
    "pyarrow",
    "dagster",
    "deltalake",
    "settler_pipeline.store",
    "settler_pipeline.application",
)


def _loaded_after(statement: str) -> list[str]:
    probe = (
        f"import sys, json; {statement}; "
        f"print(json.dumps(sorted({{m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m.startswith({HEAVY!r})}})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import settler_pipeline.domain",
        "import settler_pipeline.domain.reconciliation, settler_pipeline.domain.commands",
        "import settler_pipeline.domain.matching",
        "import settler_pipeline",
    ],
)
def test_importing_the_domain_or_the_package_root_loads_no_storage_or_orchestration(statement: str) -> None:
    assert _loaded_after(statement) == []


def test_the_package_root_still_offers_its_public_names_on_first_use() -> None:
    loaded = _loaded_after("import settler_pipeline as sp; sp.EventStore")
    assert "settler_pipeline.store" in loaded
    assert "duckdb" in loaded


def test_an_unknown_name_on_the_package_root_is_an_attribute_error() -> None:
    import settler_pipeline

    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = settler_pipeline.no_such_thing  # type: ignore[attr-defined]
