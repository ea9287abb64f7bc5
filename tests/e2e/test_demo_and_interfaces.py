"""End to end on a fresh demo data directory: the demo (twice), every CLI command, user errors, the
executed notebook, and the Dagster webserver's GraphQL API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTLER = [sys.executable, "-m", "settler_pipeline.cli"]


def settler(
    *args: str, data: Path, user: str = "demo", check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": user}
    result = subprocess.run([*SETTLER, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("demo") / "data"
    first = settler("demo", data=data)
    assert "reconciliation runs" in first.stdout and "failed" in first.stdout and "cancelled" in first.stdout
    return data


def test_the_demo_runs_twice_without_adding_anything(demo: Path) -> None:
    head = json.loads(settler("log", "stats", "--json", data=demo).stdout)["head_position"]
    second = settler("demo", data=demo)
    assert "checks passed: 12/12" in second.stdout.replace("\n", " ")
    assert json.loads(settler("log", "stats", "--json", data=demo).stdout)["head_position"] == head


def run_ids(demo: Path) -> dict[str, str]:
    rows = json.loads(
        settler(
            "sql", "SELECT reconciliation_id, status FROM reconciliation_summary", "--json", data=demo
        ).stdout
    )
    return {r["status"]: r["reconciliation_id"] for r in rows}


def test_every_cli_command_works_on_the_demo_data(demo: Path) -> None:
    runs = run_ids(demo)
    assert {"completed", "failed", "cancelled"} <= set(runs)
    done = runs["completed"]
    state = json.loads(settler("state", done, "--json", data=demo).stdout)
    assert state["status"] == "completed"
    past = json.loads(
        settler("state", done, "--at-position", "1", "--json", data=demo, check=False).stdout or "{}"
    )
    del past  # the run may start after position 1; the command itself is exercised below with its own run
    first = json.loads(settler("events", "--stream", done, "--limit", "3", "--json", data=demo).stdout)
    assert [e["aggregate_version"] for e in first] == [1, 2, 3]
    then = json.loads(
        settler("state", done, "--at-position", str(first[2]["global_position"]), "--json", data=demo).stdout
    )
    assert then["version"] == 3
    assert (
        json.loads(
            settler("state", done, "--as-of", "2000-01-01", "--json", data=demo, check=False).stdout or "{}"
        )
        == {}
    )
    by_type = json.loads(settler("events", "--type", "ReconciliationFailed", "--json", data=demo).stdout)
    assert by_type and all(e["event_type"] == "ReconciliationFailed" for e in by_type)
    correlation = json.loads(settler("state", done, "--json", data=demo).stdout)["correlation_id"]
    flow = json.loads(
        settler("events", "--correlation-id", correlation, "--limit", "5", "--json", data=demo).stdout
    )
    assert len(flow) == 5
    assert (
        json.loads(settler("events", "--from-position", "10", "--limit", "2", "--json", data=demo).stdout)[0][
            "global_position"
        ]
        == 11
    )
    items = json.loads(settler("review", "list", done, "--json", data=demo).stdout)
    assert items and {"exception_id", "kind", "reason", "closest"} <= set(items[0])
    assert any(i["closest"] for i in items if i["kind"] in ("unmatched", "ambiguous"))
    unmatched = next(i["exception_id"] for i in items if i["kind"] == "unmatched")
    dismissed = json.loads(
        settler("review", "dismiss", done, unmatched, "--reason", "known fee", "--json", data=demo).stdout
    )
    assert dismissed["events_appended"] == 1
    assert (
        json.loads(settler("retry", runs["cancelled"], "--json", data=demo).stdout)["status"] == "completed"
    )
    assert json.loads(settler("access", "list", "--json", data=demo).stdout)
    project = json.loads(settler("project", "--json", data=demo).stdout)
    assert {p["lag"] for p in project} == {0}
    assert json.loads(settler("project", "--rebuild", "--json", data=demo).stdout)
    assert "snapshots_total" in json.loads(settler("snapshot", "--json", data=demo).stdout)
    stats = json.loads(settler("stats", "--json", data=demo).stdout)
    assert stats["event_store"]["head_position"] > 0 and stats["read_models"]
    assert json.loads(settler("log", "verify", "--json", data=demo).stdout)["ok"] is True
    assert json.loads(settler("log", "compact", "--json", data=demo).stdout)["segments_after"] >= 1
    assert json.loads(settler("log", "reindex", "--json", data=demo).stdout)["events"] > 0
    assert json.loads(settler("log", "verify", "--json", data=demo).stdout)["ok"] is True
    spec = demo / "inputs" / "acme" / "acme-stripe-bank.yaml"
    run = json.loads(
        settler(
            "reconcile", str(spec), "--from", "2026-11-06", "--tenant", "acme", "--json", data=demo
        ).stdout
    )
    assert run["status"] == "completed" and run["summary"]["matched_count"] > 0
    sample = json.loads(
        settler("sample", str(demo.parent / "extra"), "--records", "50", "--json", data=demo).stdout
    )
    assert Path(sample["job_spec"]).exists()


@pytest.mark.parametrize(
    ("args", "user", "message"),
    [
        (["state", "not-a-uuid"], "demo", "must be a UUID"),
        (["reconcile", "missing.yaml", "--from", "2026-11-02"], "demo", "job spec not found"),
        (["reconcile", "{spec}", "--from", "2026-11-02", "--tenant", "acme"], "analyst", "needs operator"),
        (["reconcile", "{bad_spec}", "--from", "2026-11-02", "--tenant", "acme"], "demo", "bad.yaml"),
        (["reconcile", "{spec}", "--from", "2026-13-45"], "demo", "--from must be a date"),
        (["state", "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"], "demo", "does not exist"),
        (
            ["review", "dismiss", "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162", "x", "--reason", "r"],
            "demo",
            "not visible",
        ),
        (["access", "grant", "eve", "acme", "admin"], "analyst", "needs admin"),
        (["access", "grant", "eve", "nowhere", "viewer"], "demo", "unknown tenant"),
        (["sql", "SELECT * FROM no_such_table"], "demo", "the query failed"),
        (["events", "--stream", "../../etc/passwd"], "demo", "must be a UUID"),
        (["log", "verify", "--data-dir", "{file}"], "demo", "is a file"),
    ],
)
def test_a_user_error_gets_one_line_with_a_hint_and_exit_code_1(
    demo: Path, tmp_path: Path, args: list[str], user: str, message: str
) -> None:
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("name: bad\nsource: {adapter: csv}\nunknown_key: 1\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    spec = demo / "inputs" / "acme" / "acme-stripe-bank.yaml"
    filled = [a.format(spec=spec, bad_spec=bad_spec, file=a_file) for a in args]
    result = settler(*filled, data=demo, user=user, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and message in lines[0], result.stderr
    assert any(line.startswith("hint:") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr


def test_the_notebook_runs_top_to_bottom_on_the_demo_data(demo: Path) -> None:
    import nbclient
    import nbformat

    notebook = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    os.environ["SETTLER_DATA_DIR"] = str(demo)
    try:
        nbclient.NotebookClient(
            notebook,
            timeout=180,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        ).execute()
    finally:
        os.environ.pop("SETTLER_DATA_DIR", None)
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def webserver(demo: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "SETTLER_DATA_DIR": str(demo), "DAGSTER_HOME": str(demo / ".dagster")}
    binary = Path(sys.executable).parent / "dagster-webserver"
    process = subprocess.Popen(
        [str(binary), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the Dagster webserver did not start within 120 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def graphql(url: str, query: str) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    body: dict[str, object] = json.loads(urllib.request.urlopen(request, timeout=60).read())
    return body


def test_the_dagster_webserver_loads_the_code_location_with_materialized_read_models(webserver: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        body = graphql(
            webserver,
            "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }",
        )
        entries = body["data"]["workspaceOrError"]["locationEntries"]  # type: ignore[index]
        kinds = {
            e["name"]: e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] for e in entries
        }
        if kinds.get("settler") == "RepositoryLocation" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert kinds.get("settler") == "RepositoryLocation", kinds
    nodes = graphql(
        webserver, "{ assetNodes { assetKey { path } assetMaterializations(limit: 1) { timestamp } } }"
    )["data"]["assetNodes"]  # type: ignore[index]
    materialized = {"/".join(n["assetKey"]["path"]) for n in nodes if n["assetMaterializations"]}
    assert {
        "reconciliation_summary",
        "tenant_usage_view",
        "error_hotspots_view",
        "reconciliation_exceptions",
        "reconciliation_matches",
        "aggregate_snapshots",
    } <= materialized
