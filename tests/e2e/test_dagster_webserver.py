"""After `make demo`, the Dagster webserver (`dagster dev`, as `make dagster` starts it) materializes the
read models with every check green and reconciles a tenant-day partition, driven through its GraphQL API
the way the UI drives it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from settler_pipeline import projections

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
LOCATION = {"repositoryLocationName": "settler", "repositoryName": "__repository__"}

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status startTime endTime tags { key value } }
  }
}
"""
EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on AssetCheckEvaluationEvent { evaluation { success checkName severity } }
        ... on MaterializationEvent {
          assetKey { path }
          metadataEntries { label ... on FloatMetadataEntry { floatValue } }
        }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("webserver") / "data"
    subprocess.run(
        [sys.executable, "-m", "settler_pipeline.cli", "demo", "--data-dir", str(data)],
        check=True,
        capture_output=True,
        timeout=600,
        cwd=ROOT,
    )
    return data


@pytest.fixture(scope="module")
def webserver(demo: Path) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(demo / ".dagster"), "SETTLER_DATA_DIR": str(demo)}
    log = (demo.parent / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", "workspace.yaml", "--port", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # dagster dev starts the webserver and the daemon: stop them together
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                data = graphql(
                    port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
                )
                if data["repositoriesOrError"].get("nodes"):
                    break
            except OSError:
                pass
            assert server.poll() is None, (demo.parent / "dagster-dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the webserver did not load the code location in 240 s"
            time.sleep(2)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def launch(port: int, job: str, tags: dict[str, str] | None = None) -> str:
    params = {
        "selector": {**LOCATION, "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    result = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def finished(port: int, run_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = graphql(port, RUN, {"runId": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(2)


def events(port: int, run_id: str) -> list[dict[str, Any]]:
    return list(graphql(port, EVENTS, {"runId": run_id})["logsForRun"]["events"])


@pytest.mark.slow
def test_materializing_everything_from_the_webserver_passes_every_check(demo: Path, webserver: int) -> None:
    run_id = launch(webserver, "read_models_job")
    run = finished(webserver, run_id)
    failures = [e["error"]["message"] for e in events(webserver, run_id) if e.get("error")]
    assert run["status"] == "SUCCESS", failures
    checks = [
        e["evaluation"] for e in events(webserver, run_id) if e["__typename"] == "AssetCheckEvaluationEvent"
    ]
    assert len(checks) == 12 and all(c["success"] for c in checks), checks
    materialized = {
        "/".join(e["assetKey"]["path"])
        for e in events(webserver, run_id)
        if e["__typename"] == "MaterializationEvent"
    }
    assert materialized == {"aggregate_snapshots", *projections.NAMES}
    update_ms = next(
        m["floatValue"]
        for e in events(webserver, run_id)
        if e["__typename"] == "MaterializationEvent" and e["assetKey"]["path"] == ["reconciliation_summary"]
        for m in e["metadataEntries"]
        if m["label"] == "duration_ms"
    )
    took = run["endTime"] - run["startTime"]
    print(f"read_models_job from the webserver: run {took:.1f} s, update {update_ms} ms")


@pytest.mark.slow
def test_a_daily_partition_launched_from_the_webserver_succeeds_and_supersedes(
    demo: Path, webserver: int
) -> None:
    partition = {"dagster/partition": "2026-11-03|acme", "dagster/partition/day": "2026-11-03"}
    partition["dagster/partition/tenant"] = "acme"
    run_id = launch(webserver, "reconciliation_acme_stripe_bank_job", partition)
    run = finished(webserver, run_id)
    failures = [e["error"]["message"] for e in events(webserver, run_id) if e.get("error")]
    assert run["status"] == "SUCCESS", failures
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["settler/acting_user"] == "dagster"
    checks = [
        e["evaluation"] for e in events(webserver, run_id) if e["__typename"] == "AssetCheckEvaluationEvent"
    ]
    assert [c["checkName"] for c in checks] == ["match_rate"] and checks[0]["success"]
    update = finished(webserver, launch(webserver, "read_models_job"))
    assert update["status"] == "SUCCESS"
    summary = projections.sql(
        demo,
        "SELECT status, count(*) AS n FROM reconciliation_summary "
        "WHERE period_start = DATE '2026-11-03' AND job_id = 'acme-stripe-bank' GROUP BY 1",
    )
    assert dict(zip(summary["status"], summary["n"], strict=True)) == {"completed": 1, "superseded": 1}
