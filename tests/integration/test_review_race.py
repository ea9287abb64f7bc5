"""Review decisions from several processes at once: reviewers deciding different items of one run all
succeed (a decision whose read of the run went stale is decided again on the run as it is now), and
reviewers deciding the same item decide it once, the others told why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
SETTLER = str(Path(sys.executable).parent / "settler")
DAY = date(2026, 11, 3)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """One completed run for the module (each test decides its own items of it) and its open items:
    proposals first, then unmatched records."""
    tmp_path = tmp_path_factory.mktemp("review-race")
    spec, _ = write_sample_job(tmp_path / "inputs", records=1_500, start=date(2026, 11, 1), days=5, seed=8)
    data = tmp_path / "data"
    with Settler(data, user="olivia") as app:
        app.access.create_tenant("acme", admin="olivia")
        outcome = app.reconcile(spec, start=DAY, end=DAY)
        _, items = app.review_items(outcome.reconciliation_id)
    proposals = [i["id"] for i in items if i["kind"] == "proposed"]
    unmatched = [i["id"] for i in items if i["kind"] == "unmatched"]
    assert len(proposals) >= 5 and len(unmatched) >= 4, items
    return data, outcome.reconciliation_id, proposals + unmatched


def _at_once(data: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    env = {**env, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"}
    procs = [
        subprocess.Popen(
            [SETTLER, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for args in commands
    ]
    done = []
    for proc, args in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def _decisions(data: Path, run_id: str) -> list[str]:
    with Settler(data, user="olivia") as app:
        events = app.events(stream=run_id, event_types=["MatchConfirmed", "MatchRejected"])
        return [json.loads(d)["match_id"] for d in events["data"].to_list()]


def test_reviewers_deciding_different_items_of_one_run_at_once_all_succeed(
    run: tuple[Path, str, list[str]],
) -> None:
    data, run_id, proposals = run
    confirmed, dismissed = proposals[:4], proposals[-4:]
    commands = [["review", "confirm", run_id, item] for item in confirmed]
    commands += [["review", "dismiss", run_id, item, "--reason", "known"] for item in dismissed]
    results = _at_once(data, commands)
    assert [r.returncode for r in results] == [0] * len(commands), [r.stderr for r in results]
    decided = _decisions(data, run_id)
    assert all(decided.count(item.split(":", 1)[1]) == 1 for item in confirmed), decided
    with Settler(data, user="olivia") as app:
        assert app.events(stream=run_id, event_types=["ExceptionDismissed"]).height == len(dismissed)


def test_reviewers_deciding_the_same_item_at_once_decide_it_once(run: tuple[Path, str, list[str]]) -> None:
    data, run_id, proposals = run
    item = proposals[4]
    commands = [["review", "confirm", run_id, item]] * 2 + [
        ["review", "reject", run_id, item, "--reason", "no"]
    ]
    results = _at_once(data, commands)
    assert sorted(r.returncode for r in results) == [0, 1, 1], [r.stderr for r in results]
    for refused in (r for r in results if r.returncode):
        error = json.loads(refused.stderr.strip().splitlines()[-1])["error"]
        assert "expected version" not in error and item.split(":", 1)[1] in error, error
    assert _decisions(data, run_id).count(item.split(":", 1)[1]) == 1
