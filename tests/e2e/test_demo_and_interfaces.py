"""End to end on a fresh demo data directory: the demo (twice), every CLI command, user errors, the
executed notebook, and the Dagster webserver's GraphQL API."""

from __future__ import annotations

import json
import os
import shlex
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
    *args: str, data: Path, user: str | None = "demo", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``settler ARGS`` as ``user``, or with ``None`` as this process's login (the owner of the demo's
    access file: a global admin, as the log's maintenance needs)."""
    env = {k: v for k, v in os.environ.items() if k != "SETTLER_USER"}
    env["SETTLER_DATA_DIR"] = str(data)
    if user is not None:
        env["SETTLER_USER"] = user
    result = subprocess.run([*SETTLER, *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


HIJACK = "import pathlib; pathlib.Path({marker!r}).write_text('imported'); raise SystemExit(7)\n"


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """The demo as an operator starts it: the installed ``settler`` script, from a directory of their
    own that happens to hold folders named like Settler's packages (which must never be imported).
    Returns the data directory, the demo's output and that directory."""
    cwd = tmp_path_factory.mktemp("operator")
    marker = cwd / "hijacked"
    for package in ("dagster_project", "settler_pipeline"):
        (cwd / package).mkdir()
        for module in ("__init__.py", "materialize.py"):
            (cwd / package / module).write_text(HIJACK.format(marker=str(marker)))
    data = tmp_path_factory.mktemp("demo") / "data"
    env = {**os.environ, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": "demo", "COLUMNS": "250"}
    script = Path(sys.executable).parent / "settler"
    first = subprocess.run(
        [str(script), "demo", "-d", str(data)], capture_output=True, text=True, env=env, timeout=600, cwd=cwd
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert not marker.exists(), "the demo imported a package from the working directory"
    assert "reconciliation runs" in first.stdout and "failed" in first.stdout and "cancelled" in first.stdout
    return data, first.stdout, cwd


@pytest.fixture(scope="module")
def demo(first_demo: tuple[Path, str, Path]) -> Path:
    return first_demo[0]


def test_the_demos_next_steps_run_as_printed_from_another_directory(
    first_demo: tuple[Path, str, Path], tmp_path: Path
) -> None:
    data, output, _ = first_demo
    steps = output.split("\nNext:\n", 1)[1].splitlines()
    commands = [line.strip() for line in steps if line.startswith("  ") and "notebooks/" not in line]
    assert len(commands) == 5, output
    env = {k: v for k, v in os.environ.items() if k not in ("SETTLER_DATA_DIR", "SETTLER_USER")}
    for line in commands[:4]:
        assert not line.startswith(".venv"), line
        done = subprocess.run(
            ["bash", "-c", line], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}{done.stdout}"
        assert "Traceback" not in done.stderr
    dagster = commands[4]
    assert dagster.startswith("make -C ") and f"DATA_DIR={data}" in dagster, dagster
    dry = subprocess.run(
        ["bash", "-c", dagster.replace("make -C", "make -n -C", 1)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    # the recipe takes the folder's absolute path in the shell (test_makefile runs it)
    assert f'cd "{data}" && pwd' in dry.stdout and 'DAGSTER_HOME="$data/.dagster"' in dry.stdout, dry.stdout


def test_the_demo_runs_twice_without_adding_anything(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = json.loads(settler("log", "stats", "--json", data=demo, user=None).stdout)["head_position"]
    monkeypatch.setenv("COLUMNS", "250")  # the whole table on one line per run
    second = settler("demo", data=demo)
    assert "checks passed: 12/12" in second.stdout.replace("\n", " ")
    assert json.loads(settler("log", "stats", "--json", data=demo, user=None).stdout)["head_position"] == head
    # its table counts matches as `state` does, the demo's own review decisions included (the first
    # run's confirmed proposal is a match)
    lines = second.stdout.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("┃")).split("┃")[1:-1]]
    rows = [
        dict(zip(header, (c.strip() for c in line.split("│")[1:-1]), strict=True))
        for line in lines
        if line.startswith("│") and line.split("│")[1].strip()  # a wrapped note continues without a run
    ]
    assert len(rows) >= 12, second.stdout
    for row in rows:
        if row["status"] == "completed":
            state = json.loads(settler("state", row["run"], "--json", data=demo).stdout)
            assert int(row["matches"]) == state["counts"]["matched"], row


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
    assert items and {"id", "kind", "reason", "source", "target"} <= set(items[0])
    assert any(i.get("closest") for i in items if i["kind"] in ("unmatched", "ambiguous"))
    unmatched = next(i["id"] for i in items if i["kind"] == "unmatched")
    dismissed = json.loads(
        settler("review", "dismiss", done, unmatched, "--reason", "known fee", "--json", data=demo).stdout
    )
    assert dismissed["events_appended"] == 1 + _shared_with(dismissed)
    assert (
        json.loads(settler("retry", runs["cancelled"], "--json", data=demo).stdout)["status"] == "completed"
    )
    assert json.loads(settler("access", "list", "--json", data=demo).stdout)
    # the demo's user administers the demo's tenants, not the log: its maintenance, the read models'
    # update and the snapshots (every tenant's) are the login's
    for refused in (["log", "stats"], ["project"], ["snapshot"]):
        assert "not a global admin" in settler(*refused, data=demo, check=False).stderr
    project = json.loads(settler("project", "--json", data=demo, user=None).stdout)
    assert {p["lag"] for p in project} == {0}
    assert json.loads(settler("project", "--rebuild", "--json", data=demo, user=None).stdout)
    assert "snapshots_total" in json.loads(settler("snapshot", "--json", data=demo, user=None).stdout)
    stats = json.loads(settler("stats", "--json", data=demo, user=None).stdout)
    assert stats["event_store"]["head_position"] > 0 and stats["read_models"]
    assert json.loads(settler("log", "verify", "--json", data=demo, user=None).stdout)["ok"] is True
    assert json.loads(settler("log", "compact", "--json", data=demo, user=None).stdout)["segments_after"] >= 1
    assert json.loads(settler("log", "reindex", "--json", data=demo, user=None).stdout)["events"] > 0
    assert json.loads(settler("log", "verify", "--json", data=demo, user=None).stdout)["ok"] is True
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


# Every user mistake is checked in process (tests/integration/test_cli_contract.py); these prove the same
# contract of a real process: exit code 1, one error line and a hint on stderr, no traceback.
@pytest.mark.parametrize(
    ("args", "user", "message"),
    [
        (["state", "not-a-uuid"], "demo", "must be a UUID"),
        (["reconcile", "missing.yaml", "--from", "2026-11-02"], "demo", "job spec not found"),
        (["reconcile", "{spec}", "--from", "2026-11-02", "--tenant", "acme"], "analyst", "needs operator"),
        (["log", "verify", "--data-dir", "{file}"], "demo", "is a file"),
        # `access` commands have no --json, so the in-process table (text and JSON) leaves them here
        (["access", "grant", "eve", "acme", "admin"], "analyst", "needs admin"),
        (["access", "grant", "eve", "nowhere", "viewer"], "demo", "unknown tenant"),
    ],
)
def test_a_user_error_gets_one_line_with_a_hint_and_exit_code_1(
    demo: Path, tmp_path: Path, args: list[str], user: str, message: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    spec = demo / "inputs" / "acme" / "acme-stripe-bank.yaml"
    filled = [a.format(spec=spec, file=a_file) for a in args]
    result = settler(*filled, data=demo, user=user, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and message in lines[0], result.stderr
    assert any(line.startswith("hint:") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr


def test_every_hint_the_demo_prints_works_as_printed(demo: Path) -> None:
    report = settler("demo", data=demo).stdout
    # started here as `python -m settler_pipeline.cli`: the hints start this interpreter the same way
    hints = [line.strip() for line in report.split("Next:", 1)[1].splitlines() if " --user " in line]
    assert len(hints) >= 4, report
    for hint in hints:
        words = shlex.split(hint)
        assert words[:3] == [sys.executable, "-P", "-m"] and words[3] == "settler_pipeline", hint
        args = words[4:]
        result = settler(*args, data=demo, user="nobody-else")
        assert result.returncode == 0, (hint, result.stderr)
        assert "0 rows" not in result.stdout and "nothing to review" not in result.stdout, (
            hint,
            result.stdout,
        )


def review_items(demo: Path, run: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(settler("review", "list", run, "--json", data=demo).stdout)
    return items


def _shared_with(outcome: dict[str, object]) -> int:
    """How many other runs a decision was also recorded in (an item of two daily runs)."""
    details = outcome.get("details") or {}
    assert isinstance(details, dict)
    return len(str(details["also_decided_in"]).split(", ")) if "also_decided_in" in details else 0


def _matched_in_another_run(demo: Path, run: dict[str, object], item: dict[str, object]) -> bool:
    """Whether a record of review ``item`` is already matched in another completed run of ``run``'s
    tenant, as an analyst
    finds it with `settler sql`: daily runs read a margin of days around their own, so a record may be
    open in one run and matched in the next; review refuses to match it twice."""
    ids = [str(r["id"]) for r in [*item["source"], *item["target"]]]  # type: ignore[misc]
    listed = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    query = (
        "SELECT count(*) AS n FROM reconciliation_matches WHERE reconciliation_id <> "
        f"'{run['reconciliation_id']}' AND tenant = '{run['tenant']}' "
        "AND status IN ('matched', 'confirmed', 'manual') AND reconciliation_id IN (SELECT"
        " reconciliation_id FROM reconciliation_summary WHERE status = 'completed') AND "
        f"(list_has_any(source_ids, [{listed}]) OR list_has_any(target_ids, [{listed}]))"
    )
    rows: list[dict[str, int]] = json.loads(settler("sql", query, "--json", data=demo).stdout)
    return rows[0]["n"] > 0


def test_a_reviewers_day_on_the_demo_data_using_only_what_the_cli_prints(demo: Path) -> None:
    listed = json.loads(settler("runs", "--json", data=demo).stdout)
    assert [r["started_at"] for r in listed] == sorted((r["started_at"] for r in listed), reverse=True)
    assert {
        "reconciliation_id",
        "short_id",
        "tenant",
        "job_id",
        "status",
        "match_rate",
        "open_exceptions",
    } <= set(listed[0])
    chosen = max(
        (r for r in listed if r["status"] == "completed"),
        key=lambda r: (r["open_proposals"], r["open_exceptions"]),
    )
    assert chosen["open_proposals"] >= 2, listed
    run = chosen["short_id"]  # a prefix, as `settler runs` prints it
    assert len(run) < len(chosen["reconciliation_id"])
    table = settler("review", "list", run, data=demo).stdout
    items = review_items(demo, run)
    assert len(items) == chosen["open_exceptions"]
    for item in items:
        assert {"id", "kind", "reason", "source", "target"} <= set(item)
        assert str(item["id"]) in table.replace("\n", "") or len(str(item["id"])) > 40
    proposals = [i for i in items if i["kind"] == "proposed"]
    for proposal in proposals:
        assert proposal["rule"] and 0 <= float(proposal["confidence"]) <= 1  # type: ignore[arg-type]
        assert proposal["amount_difference"] is not None and proposal["source"] and proposal["target"]
        for record in [*proposal["source"], *proposal["target"]]:  # type: ignore[misc]
            assert {"id", "date", "amount", "currency", "reference", "description"} <= set(record)
            assert "." in record["amount"] or record["currency"] in ("JPY", "KRW")  # major units, as text
    duplicates = [i for i in items if i["kind"] == "duplicate"]
    for duplicate in duplicates:
        assert duplicate["duplicate_of"]["line_number"] and duplicate["duplicate_of"]["record_id"]  # type: ignore[index]

    # confirm one proposal and reject another (of records no other run matched), by the ids as printed
    proposals = [p for p in proposals if not _matched_in_another_run(demo, chosen, p)]
    confirmed = json.loads(
        settler("review", "confirm", run, str(proposals[0]["id"]), "--json", data=demo).stdout
    )
    assert confirmed["events_appended"] == 1 + _shared_with(confirmed)
    rejected_item = proposals[1]
    rejected = json.loads(
        settler(
            "review", "reject", run, str(rejected_item["id"]), "--reason", "wrong payer", "--json", data=demo
        ).stdout
    )
    assert rejected["events_appended"] == 1 + _shared_with(rejected)
    items = review_items(demo, run)
    ids = {i["id"] for i in items}
    assert proposals[0]["id"] not in ids and rejected_item["id"] not in ids
    records = {str(r["id"]) for r in [*rejected_item["source"], *rejected_item["target"]]}  # type: ignore[misc]
    reopened = [i for i in items if i["reason"] == "proposal_rejected" and i["id"].split(":")[-1] in records]
    sources = [i for i in reopened if i["source"]]
    targets = [i for i in reopened if i["target"]]
    assert sources and targets

    # match them again by hand: the same amounts, within the job's tolerance
    by_hand = json.loads(
        settler(
            "review",
            "match",
            run,
            *[a for i in sources for a in ("--source", str(i["id"]))],
            *[a for i in targets for a in ("--target", str(i["id"]))],
            "--note",
            "same payer after all",
            "--json",
            data=demo,
        ).stdout
    )
    assert by_hand["events_appended"] == 1 + _shared_with(by_hand)
    event = json.loads(
        settler("events", "--stream", run, "--type", "RecordsManuallyMatched", "--json", data=demo).stdout
    )[-1]
    assert isinstance(event["data"], dict)
    assert {"amount", "target_amount", "amount_difference", "currency"} <= set(event["data"])
    assert event["data"]["difference_accepted"] is False

    # two records far apart are refused without --accept-difference, and accepted with it and a note
    items = review_items(demo, run)
    unmatched = [i for i in items if i["kind"] == "unmatched" and (i["source"] or i["target"])]
    unmatched = [i for i in unmatched if not _matched_in_another_run(demo, chosen, i)]
    pair = next(
        (s, t)
        for s in unmatched
        if s["source"]
        for t in unmatched
        if t["target"]
        and t["target"][0]["currency"] == s["source"][0]["currency"]  # type: ignore[index]
        and abs(float(t["target"][0]["amount"]) - float(s["source"][0]["amount"]))
        > 0.5  # type: ignore[index]
        * abs(float(s["source"][0]["amount"]))  # type: ignore[index]
    )
    args = ["review", "match", run, "--source", str(pair[0]["id"]), "--target", str(pair[1]["id"])]
    refused = settler(*args, "--note", "looks right", data=demo, check=False)
    assert refused.returncode == 1 and "--accept-difference" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 2
    refused_json = settler(*args, "--json", data=demo, check=False)
    assert refused_json.returncode == 1 and json.loads(refused_json.stderr)["code"] == "state"
    accepted = json.loads(
        settler(*args, "--accept-difference", "--note", "partial payment agreed", "--json", data=demo).stdout
    )
    assert accepted["events_appended"] == 1 + _shared_with(accepted)
    event = json.loads(
        settler("events", "--stream", run, "--type", "RecordsManuallyMatched", "--json", data=demo).stdout
    )[-1]
    assert event["data"]["difference_accepted"] is True and event["data"]["amount_difference"] != 0

    # dismiss an exception by its printed id
    items = review_items(demo, run)
    left = next(i for i in items if i["kind"] in ("unmatched", "duplicate", "quarantined", "ambiguous"))
    dismissed = json.loads(
        settler("review", "dismiss", run, str(left["id"]), "--reason", "bank fee", "--json", data=demo).stdout
    )
    assert dismissed["events_appended"] == 1 + _shared_with(dismissed)
    after = json.loads(settler("runs", "--json", data=demo).stdout)
    mine = next(r for r in after if r["reconciliation_id"] == chosen["reconciliation_id"])
    assert mine["open_exceptions"] == len(review_items(demo, run)) == chosen["open_exceptions"] - 5


def test_the_notebook_runs_top_to_bottom_on_the_demo_data(demo: Path) -> None:
    import nbclient
    import nbformat

    notebook = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    # Every figure the notebook shows is recorded with its title and axis labels as it is shown.
    notebook.cells.insert(0, nbformat.v4.new_code_cell(_RECORD_FIGURES))
    notebook.cells.append(nbformat.v4.new_code_cell("print(json.dumps(_figures))"))
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
    images = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})
    ]
    assert len(images) >= 2, "the notebook's plots must render as images"
    figures = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert len(figures) == len(images)
    for axes in figures:
        for title, xlabel, ylabel in axes:
            assert title and xlabel and ylabel, f"a plot without a title or an axis label: {figures}"


_RECORD_FIGURES = """\
import json
import matplotlib.pyplot as _plt
_figures, _show = [], _plt.show
def _recording_show(*args, **kwargs):
    _figures.append([(a.get_title(), a.get_xlabel(), a.get_ylabel()) for a in _plt.gcf().axes])
    return _show(*args, **kwargs)
_plt.show = _recording_show
"""


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
        # the demo's runs, made through the CLI, reported as materialized partitions
        "reconciliation_acme_stripe_bank",
        "reconciliation_globex_stripe_bank",
        "reconciliation_initech_stripe_bank",
    } <= materialized
