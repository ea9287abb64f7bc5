"""A start with a run id already in use is refused with one answer, whichever tenant's run holds the
id: an operator cannot tell that another tenant's run exists, nor its status."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from settler_pipeline.errors import StateError
from settler_pipeline.ids import new_id
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 1)


def test_a_taken_run_id_gets_the_same_answer_in_every_tenant(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "in", records=20, start=DAY, days=1)
    data = tmp_path / "data"
    with Settler(data, user="alice") as alice:
        alice.access.create_tenant("acme", admin="alice")
        globex = alice.access.create_tenant("globex", admin="alice")
        alice.access.grant("eve", globex.tenant_id, "operator", by="alice")
        acme_run = alice.reconcile(spec, start=DAY, end=DAY, tenant="acme").reconciliation_id
    answers = []
    with Settler(data, user="eve") as eve:
        own = eve.reconcile(spec, start=DAY, end=DAY, tenant="globex").reconciliation_id
        for taken in (acme_run, own):
            with pytest.raises(StateError) as refused:
                eve.reconcile(spec, start=DAY, end=DAY, tenant="globex", reconciliation_id=taken)
            answers.append((refused.value.message.replace(taken, "ID"), refused.value.hint))
        unused = new_id()
        assert eve.reconcile(
            spec, start=DAY, end=DAY, tenant="globex", reconciliation_id=unused, supersede=True
        )
    assert answers[0] == answers[1]
    assert "acme" not in str(answers) and "completed" not in str(answers)
