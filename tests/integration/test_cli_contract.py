"""The command line's error contract, table-driven over every user mistake the issue tracker lists: exit
code 1, one ``error:`` line and one ``hint:`` line (one JSON object under ``--json``), never a traceback.
In process through Typer's CliRunner; the process-level behaviour is covered by the end-to-end tests."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from settler_pipeline import projections
from settler_pipeline.cli.main import app
from settler_pipeline.errors import ValidationError
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

DAY = date(2026, 11, 2)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("contract")
    data_dir = root / "data"
    spec, _ = write_sample_job(root / "inputs", records=120, start=DAY, days=2, seed=3, name="contract")
    with Settler(data_dir, user="olivia") as settler:
        acme = settler.access.create_tenant("acme", admin="olivia")
        settler.access.grant("victor", acme.tenant_id, "viewer", by="olivia")
        settler.reconcile(spec, start=DAY, end=DAY, tenant="acme")
        projections.update(settler.store, data_dir)
    yield data_dir


def invoke(data: Path, *args: str, user: str = "olivia") -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(app, list(args), env={"SETTLER_DATA_DIR": str(data), "SETTLER_USER": user})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: raised {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def run_id(data: Path) -> str:
    with Settler(data, user="olivia") as settler:
        return settler.run_ids()[0]


SPEC = "{spec}"
RUN = "{run}"
UNKNOWN_RUN = "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"
MISTAKES: list[tuple[str, list[str], str, str]] = [
    # (case, arguments, user, a part of the message)
    (
        "--from after --to",
        ["reconcile", SPEC, "--from", "2026-11-03", "--to", "2026-11-01"],
        "olivia",
        "after",
    ),
    ("empty sql", ["sql", ""], "olivia", "the query is empty"),
    ("blank sql", ["sql", "   "], "olivia", "the query is empty"),
    ("sql that sets", ["sql", "SET threads = 1"], "olivia", "SET is not allowed"),
    ("sql that exports", ["sql", "EXPORT DATABASE 'somewhere'"], "olivia", "EXPORT is not allowed"),
    ("sql that copies", ["sql", "COPY (SELECT 1) TO 'x.csv'"], "olivia", "COPY is not allowed"),
    ("sql that creates", ["sql", "CREATE TABLE t AS SELECT 1"], "olivia", "CREATE is not allowed"),
    ("sql that attaches", ["sql", "SELECT 1; ATTACH 'x.duckdb'"], "olivia", "ATTACH is not allowed"),
    ("two sql statements", ["sql", "SELECT 1; SELECT 2"], "olivia", "one query at a time"),
    ("sql that installs", ["sql", "FORCE INSTALL httpfs"], "olivia", "INSTALL is not allowed"),
    ("sql explain analyze copy", ["sql", "EXPLAIN ANALYZE COPY (SELECT 1) TO 'x'"], "olivia", "of COPY"),
    (
        "sql copy in a CTE",
        ["sql", "WITH x AS (COPY (SELECT 1 AS a) TO 'x.csv') SELECT * FROM x"],
        "olivia",
        "COPY is not allowed",
    ),
    (
        "sql delete in a CTE",
        ["sql", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"],
        "olivia",
        "DELETE is not allowed",
    ),
    (
        "sql explain analyze of a copy in a CTE",
        ["sql", "EXPLAIN ANALYZE WITH x AS (COPY (SELECT 1 AS a) TO 'x.csv') SELECT * FROM x"],
        "olivia",
        "EXPLAIN of COPY is not allowed",
    ),
    ("empty --reason", ["cancel", RUN, "--reason", ""], "olivia", "reason must not be empty"),
    ("empty --reason on dismiss", ["review", "dismiss", RUN, "x", "--reason", ""], "olivia", "reason"),
    ("blank --reason", ["cancel", RUN, "--reason", "  \t "], "olivia", "reason must not be empty"),
    (
        "blank --reason on reject",
        ["review", "reject", RUN, "m1", "--reason", "   "],
        "olivia",
        "reason must not be empty",
    ),
    ("--as-of in year 1", ["state", RUN, "--as-of", "0001-01-01T00:00:00+05:00"], "olivia", "--as-of"),
    ("--as-of in year 9999", ["state", RUN, "--as-of", "9999-12-31T23:00:00-05:00"], "olivia", "--as-of"),
    ("--as-of not a time", ["state", RUN, "--as-of", "yesterday"], "olivia", "--as-of"),
    ("unknown event type", ["events", "--type", "ReconcilationFailed"], "olivia", "ReconcilationFailed"),
    (
        "unknown stream",
        ["events", "--stream", "0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"],
        "olivia",
        "not visible",
    ),
    ("no role: events", ["events"], "mallory", "no role in any tenant"),
    ("no role: sql", ["sql", "SELECT 1"], "mallory", "no role in any tenant"),
    ("no role: runs", ["runs"], "mallory", "no role in any tenant"),
    ("run id not an id", ["state", "not-a-uuid"], "olivia", "must be a UUID"),
    ("unknown run prefix", ["state", "ffffffff"], "olivia", "starting with 'ffffffff'"),
    (
        "markup in a message",
        ["reconcile", "{bad_name}", "--from", "2026-11-02"],
        "olivia",
        "[a-z0-9_-]{0,62}$",
    ),
    ("bad tenant name", ["access", "create-tenant", "Bad Name"], "olivia", "tenant name"),
    ("usage: unknown command", ["reconcil"], "olivia", "No such command"),
    ("usage: unknown option", ["runs", "--colour"], "olivia", "--colour"),
    ("usage: missing argument", ["state"], "olivia", "Missing argument"),
    ("usage: bad integer", ["events", "--limit", "many"], "olivia", "--limit"),
    ("usage: missing option value", ["events", "--limit"], "olivia", "--limit"),
    ("bad --status", ["runs", "--status", "done"], "olivia", "--status must be one of"),
    ("bad --day", ["runs", "--day", "2026-02-30"], "olivia", "--day must be a date"),
    ("bad --from", ["reconcile", SPEC, "--from", "2026-13-45"], "olivia", "--from must be a date"),
    ("operator only", ["reconcile", SPEC, "--from", "2026-11-02", "--supersede"], "vera", "no role"),
    (
        "viewer reconciles",
        ["reconcile", SPEC, "--from", "2026-11-02", "--tenant", "acme"],
        "victor",
        "needs operator",
    ),
    ("spec with an unknown key", ["reconcile", "{bad_spec}", "--from", "2026-11-02"], "olivia", "bad.yaml"),
    ("unknown run", ["state", UNKNOWN_RUN], "olivia", "does not exist"),
    (
        "review of an unknown run",
        ["review", "dismiss", UNKNOWN_RUN, "x", "--reason", "r"],
        "olivia",
        "not visible",
    ),
    ("unknown table", ["sql", "SELECT * FROM no_such_table"], "olivia", "the query failed"),
    ("stream id as a path", ["events", "--stream", "../../etc/passwd"], "olivia", "must be a UUID"),
    (
        "sql pivot without IN",
        ["sql", "PIVOT reconciliation_summary ON status USING count(*)"],
        "olivia",
        "IN (...)",
    ),
    ("sample of 10^20 records", ["sample", "{sample}", "--records", str(10**20)], "olivia", "--records"),
]


@pytest.mark.parametrize(("case", "args", "user", "message"), MISTAKES, ids=[m[0] for m in MISTAKES])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_every_user_mistake_exits_1_with_one_line_and_a_hint(
    data: Path, case: str, args: list[str], user: str, message: str, as_json: bool
) -> None:
    spec = next((data.parent / "inputs").glob("contract.yaml"))
    bad_name = data.parent / "bad-name.yaml"
    bad_name.write_text(spec.read_text().replace("name: contract", "name: Bad Name"))
    bad_spec = data.parent / "bad.yaml"
    bad_spec.write_text("name: bad\nsource: {adapter: csv}\nunknown_key: 1\n")
    sample = data.parent / "sample"
    filled = [
        a.format(spec=spec, run=run_id(data), bad_name=bad_name, bad_spec=bad_spec, sample=sample)
        for a in args
    ]
    if as_json:
        filled.append("--json")
    code, out, err = invoke(data, *filled, user=user)
    assert code == 1, (case, code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    if as_json:
        assert len(lines) == 1, lines
        error = json.loads(lines[0])
        assert set(error) == {"error", "hint", "code"}
        assert message in error["error"] and error["hint"] and error["code"], error
    else:
        assert len(lines) == 2, lines
        assert lines[0].startswith("error: ") and message in lines[0], lines
        assert lines[1].startswith("hint: ") and len(lines[1]) > len("hint: "), lines


@pytest.mark.parametrize("limit", [2**32, 2**63 - 1, 10**20])
def test_a_limit_beyond_any_log_lists_every_event(data: Path, limit: int) -> None:
    code, out, err = invoke(data, "events", "--limit", str(limit), "--json")
    assert code == 0, err
    everything = json.loads(invoke(data, "events", "--limit", "1000000", "--json")[1])
    assert len(json.loads(out)) == len(everything) > 50


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda app: app.runs(status="complete"), "status must be one of"),
        (lambda app: app.runs(limit=0), "limit must be"),
        (lambda app: app.runs(limit=-1), "limit must be"),
        (lambda app: app.events(limit=-1), "limit must be"),
        (lambda app: app.events(limit=0), "limit must be"),
    ],
)
def test_the_python_api_refuses_what_the_command_line_refuses(
    data: Path, call: Callable[[Settler], object], message: str
) -> None:
    # a mistyped status is an error, as `settler runs --status` says, not an empty list of runs
    with Settler(data, user="olivia", read_only=True) as app:
        with pytest.raises(ValidationError, match=message):
            call(app)
        assert len(app.runs(status="completed", limit=1)) == 1 and app.events(limit=2).height == 2


@pytest.mark.parametrize(
    "args",
    [
        ["review", "confirm", RUN, "proposed:0192f0c4-5d3e-7a10-8b2c-1d2e3f405162"],
        ["review", "dismiss", RUN, "unmatched:source:no-such-record", "--reason", "r"],
        ["review", "match", RUN, "--source", "no-such-record", "--target", "no-such-either"],
    ],
)
def test_a_review_of_an_item_not_open_hints_at_a_review_list_that_runs_as_printed(
    data: Path, args: list[str]
) -> None:
    code, _, err = invoke(data, *[a.format(run=run_id(data)) for a in args])
    assert code == 1, err
    hint = err.split("hint: ", 1)[1]
    command = hint.split("`")[1]
    assert command.startswith("settler review list "), hint
    listed, out, listing_err = invoke(data, *command.split()[1:])
    assert listed == 0 and "open items of run" in out, listing_err


def test_cancelling_a_completed_run_hints_at_a_state_command_that_runs_as_printed(data: Path) -> None:
    code, _, err = invoke(data, "cancel", run_id(data), "--reason", "r")
    assert code == 1 and "already completed" in err, err
    command = err.split("hint: ", 1)[1].split("`")[1]
    assert command == f"settler state {run_id(data)}", err
    shown, out, shown_err = invoke(data, *command.split()[1:])
    assert shown == 0 and run_id(data) in out, shown_err


@pytest.mark.parametrize("field", ["--reason", "--idempotency-key"])
def test_a_malformed_field_names_the_command_whose_help_documents_it(data: Path, field: str) -> None:
    spec = next((data.parent / "inputs").glob("contract.yaml"))
    command, args = (
        ("settler cancel", ["cancel", run_id(data), "--reason", ""])
        if field == "--reason"
        else ("settler reconcile", ["reconcile", str(spec), "--from", "2026-11-02", "--idempotency-key", ""])
    )
    env = {**os.environ, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "settler"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"(see `{command} --help`)" in done.stderr and "COMMAND" not in done.stderr, done.stderr


def test_sql_never_installs_an_extension_and_names_the_function_that_is_not_available(data: Path) -> None:
    env = {**os.environ, "SETTLER_DATA_DIR": str(data), "SETTLER_USER": "olivia"}
    for name, query in (
        ("delta_scan", "SELECT count(*) FROM delta_scan('x')"),
        ("st_point", "SELECT st_point(1, 2)"),
    ):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "settler"), "sql", query],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"error: {name} is not available in settler sql" in done.stderr, done.stderr
        assert "install" not in done.stderr.replace("never installs", ""), done.stderr


def test_a_sql_error_never_advises_a_set_that_settler_sql_refuses(data: Path) -> None:
    deep = "SELECT " + "(" * 1100 + "1" + ")" * 1100
    code, _, err = invoke(data, "sql", deep)
    assert code == 1 and "Max expression depth limit of 1000 exceeded" in err, err
    assert "SET" not in err, err


def test_a_refused_statement_creates_nothing_anywhere(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB makes an EXPORT's folder before it checks it may write there: inside the Delta log, such
    # a folder made every later command fail. A refused statement must run nothing at all.
    target = tmp_path / "exported"
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    for query in (
        f"EXPORT DATABASE '{target}'",
        "COPY (SELECT 1 AS x) TO '.tmp/x.csv'",
        f"WITH c AS (COPY (SELECT 1 AS x) TO '{target}' (FORMAT csv, PARTITION_BY x)) SELECT * FROM c",
    ):
        code, _, err = invoke(data, "sql", query)
        assert code == 1 and "is not allowed" in err, err
    assert not target.exists() and not (tmp_path / ".tmp").exists()
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    # reading still works, EXPLAIN of a read included
    for query in ("SELECT count(*) AS n FROM reconciliation_summary", "EXPLAIN SELECT 1", "SHOW TABLES"):
        code, out, err = invoke(data, "sql", query, "--json")
        assert code == 0 and json.loads(out), (query, err)
    assert not (tmp_path / ".tmp").exists()


def test_a_damaged_access_file_is_damaged_data_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "access.json").write_text('{"tenants": {"x": ')
    for args in (["runs"], ["access", "list"], ["runs", "--json"]):
        code, _, err = invoke(data, *args)
        assert code == 3 and "access.json" in err and "Traceback" not in err, (args, err)


def test_sql_json_serialises_time_blob_interval_and_decimal(data: Path) -> None:
    query = (
        "SELECT TIME '12:30:00' AS t, 'ab'::BLOB AS b, INTERVAL 90 MINUTE AS i, 12.50::DECIMAL(10,2) AS d, "
        "DATE '2026-11-02' AS day"
    )
    code, out, err = invoke(data, "sql", query, "--json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row == {"t": "12:30:00", "b": "6162", "i": "01:30:00", "d": "12.50", "day": "2026-11-02"}


def test_user_text_is_shown_verbatim_not_as_markup(data: Path) -> None:
    code, out, _ = invoke(data, "sql", "SELECT '[bold]x[/bold] [red]' AS text")
    assert code == 0 and "[bold]x[/bold] [red]" in out


def test_a_run_is_found_by_a_unique_prefix_and_an_ambiguous_one_names_the_runs(data: Path) -> None:
    run = run_id(data)
    code, out, err = invoke(data, "state", run[:13], "--json")
    assert code == 0, err
    assert json.loads(out)["reconciliation_id"] == run
    code, _, err = invoke(data, "state", run[:4])
    with Settler(data, user="olivia") as settler:
        several = len([r for r in settler.run_ids() if r.startswith(run[:4])]) > 1
    if several:
        assert code == 1 and "ambiguous" in err


def test_runs_lists_newest_first_with_short_ids_the_commands_accept(data: Path) -> None:
    code, out, err = invoke(data, "runs", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows and {"reconciliation_id", "short_id", "tenant", "status", "open_exceptions"} <= set(rows[0])
    assert rows[0]["tenant"] == "acme"
    code, out, err = invoke(data, "state", rows[0]["short_id"], "--json")
    assert code == 0 and json.loads(out)["open_exception_count"] == rows[0]["open_exceptions"], err
    state = json.loads(out)
    code, out, err = invoke(data, "state", rows[0]["short_id"])  # for people: a line per count
    assert code == 0, err
    lines = [" ".join(line.strip("│ ").split()) for line in out.splitlines()]
    assert f"days │ {state['date_range'][0]}" in lines, out
    assert f"matched │ {state['counts']['matched']}" in lines, out
    assert f"open exceptions │ {state['open_exception_count']}" in lines, out
    code, out, _ = invoke(data, "runs", "--status", "failed", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = invoke(data, "runs", "--day", "2026-11-02", "--job", "contract", "--json")
    assert code == 0 and len(json.loads(out)) == len(rows)
    code, out, _ = invoke(data, "runs")  # the table: one line per run, its start in UTC on that line
    assert code == 0
    for row in rows:
        started = datetime.fromisoformat(row["started_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert any(row["short_id"] in line and started in line for line in out.splitlines()), out


def test_the_events_table_shows_each_stream_id_whole_on_its_events_line(data: Path) -> None:
    code, out, err = invoke(data, "events", "--limit", "5", "--json")
    assert code == 0, err
    events = json.loads(out)
    code, out, err = invoke(data, "events", "--limit", "5")
    assert code == 0, err
    for event in events:  # the id --stream takes, copyable as printed, beside its type and position
        line = next(x for x in out.splitlines() if x.startswith(f"│ {event['global_position']} "))
        assert event["aggregate_id"] in line and event["event_type"] in line, out


def test_help_exits_0_and_no_arguments_show_the_help(data: Path) -> None:
    code, out, _ = invoke(data, "--help")
    assert code == 0 and "reconcile" in out


def test_an_empty_run_has_no_match_rate_and_is_reported_as_empty(data: Path) -> None:
    spec = next((data.parent / "inputs").glob("contract.yaml"))
    code, out, err = invoke(data, "reconcile", str(spec), "--from", "2030-01-01", "--json")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["total_source_records"] == 0 and summary["match_rate"] is None
    code, out, _ = invoke(data, "runs", "--day", "2030-01-01")
    assert code == 0 and "empty run" in out and "0.00%" not in out
    code, out, _ = invoke(data, "runs", "--day", "2030-01-01", "--json")
    assert json.loads(out)[0]["match_rate"] is None


def test_reconcile_without_from_says_which_day_it_reconciles(data: Path) -> None:
    spec = next((data.parent / "inputs").glob("contract.yaml"))
    code, _, err = invoke(data, "reconcile", str(spec))
    assert code == 0, err
    assert "(yesterday, UTC): pass --from to choose the day" in err


def test_a_reused_idempotency_key_with_other_days_names_the_earlier_run(data: Path) -> None:
    spec = next((data.parent / "inputs").glob("contract.yaml"))
    first = invoke(data, "reconcile", str(spec), "--from", "2031-01-01", "--idempotency-key", "k1", "--json")
    assert first[0] == 0, first[2]
    again = invoke(data, "reconcile", str(spec), "--from", "2031-01-01", "--idempotency-key", "k1", "--json")
    assert again[0] == 0 and json.loads(again[1])["repeated_command"] is True
    code, _, err = invoke(data, "reconcile", str(spec), "--from", "2031-01-02", "--idempotency-key", "k1")
    assert code == 1 and json.loads(first[1])["reconciliation_id"] in err and "different days" in err


def test_retry_reads_the_fixed_job_spec_again(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "inputs", records=60, start=DAY, days=1, seed=4, name="fixme")
    good = spec.read_text()
    spec.write_text(good.replace("path: target.csv", "path: missing.csv"))
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
    code, out, _ = invoke(data, "reconcile", str(spec), "--from", "2026-11-02", "--json")
    assert code == 1 and json.loads(out)["status"] == "failed"
    run = json.loads(out)["reconciliation_id"]
    spec.write_text(good)
    code, out, err = invoke(data, "retry", run[:13], "--json")
    assert code == 0, err
    retried = json.loads(out)
    assert retried["status"] == "completed"
    assert "read again from" in retried["details"]["job_spec"] and "changed" in retried["details"]["job_spec"]


def test_read_models_carry_tenant_names_and_exact_major_unit_amounts(data: Path) -> None:
    from decimal import Decimal

    code, out, err = invoke(
        data,
        "sql",
        "SELECT tenant_id, tenant, currency, amount, amount_major FROM reconciliation_exceptions "
        "WHERE amount IS NOT NULL",
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert rows and {r["tenant"] for r in rows} == {"acme"}
    for row in rows:
        exponent = 0 if row["currency"] in ("JPY", "KRW") else 2
        assert Decimal(row["amount_major"]) == Decimal(row["amount"]).scaleb(-exponent)
    with Settler(data, user="olivia") as settler:
        matches = settler.read_model("reconciliation_matches")
    assert matches.columns.index("tenant") == matches.columns.index("tenant_id") + 1
    assert str(matches.schema["amount_major"]).startswith("Decimal")


def test_every_documented_example_query_runs_as_written_with_settler_sql(data: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "read-models.md").read_text()
    section = doc.split("## Example queries", 1)[1].split("\n## ", 1)[0]
    examples = [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]
    assert len(examples) >= 7
    for query in examples:
        code, out, err = invoke(data, "sql", query, "--json")
        assert code == 0, (query, err)
        # (the fixture's runs had no errors and no decisions: those two examples return no rows)
        read = ("events", "projection_status", "reconciliation_summary", "reconciliation_exceptions")
        if any(f"FROM {table}" in query for table in read):
            assert json.loads(out), query


def test_sql_shows_only_the_users_tenants_events_and_opens_only_the_tables_named(
    data: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy, symlinks=True)
    with Settler(copy, user="zoe") as settler:
        settler.access.create_tenant("zeta", admin="zoe")
    count = "SELECT count(*) AS n, count(DISTINCT tenant_id) AS tenants FROM events"
    code, out, err = invoke(copy, "sql", count, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["n"] > 0 and json.loads(out)[0]["tenants"] == 1
    code, out, err = invoke(copy, "sql", count, "--json", user="zoe")
    assert code == 0, err
    assert json.loads(out) == [{"n": 0, "tenants": 0}]
    # projection_status counts every tenant's rows: a scoped reader sees its freshness, not the volume
    status = "SELECT name, checkpoint, rows FROM projection_status ORDER BY name"
    code, out, err = invoke(copy, "sql", status, "--json", user="zoe")
    assert code == 0, err
    assert json.loads(out) and all(r["rows"] is None and r["checkpoint"] > 0 for r in json.loads(out))
    # the events' files are not opened for a query over a read model (an unreadable file would fail it)
    for linked in (copy / "read_models" / "events").glob("*.parquet"):
        linked.unlink()
        linked.write_bytes(b"not parquet")
    code, out, err = invoke(copy, "sql", "SELECT count(*) AS n FROM reconciliation_summary", "--json")
    assert code == 0, err
    code, out, err = invoke(copy, "sql", count, "--json")
    assert code == 3 and "(table events) cannot be read" in err, (out, err)  # damaged files: corruption
    # the automatic matches are read from the same files: damaged data too, not a mistake in the query
    code, out, err = invoke(copy, "sql", "SELECT count(*) AS n FROM reconciliation_matches", "--json")
    assert code == 3 and "read model reconciliation_matches cannot be read" in err, (out, err)


@pytest.mark.parametrize(
    "args",
    [
        ["project"],
        ["snapshot"],
        ["log", "compact"],
        ["log", "publish"],
        ["log", "reindex"],
        ["log", "repair"],
        ["access", "list"],
        ["access", "grant", "bob", "acme", "viewer"],
        ["access", "revoke", "bob", "acme"],
        ["access", "allow-impersonate", "bob"],
        ["retry", UNKNOWN_RUN],
        ["cancel", UNKNOWN_RUN, "--reason", "x"],
        ["review", "confirm", UNKNOWN_RUN, "m1"],
        ["review", "dismiss", UNKNOWN_RUN, "x1", "--reason", "x"],
    ],
)
def test_a_mistyped_data_dir_is_refused_and_nothing_is_created_there(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "typo"
    code, out, err = invoke(missing, *args)
    assert code == 1 and f"no Settler data at {missing}" in err and "--data-dir" in err, (out, err)
    assert not missing.exists()


def test_the_commands_that_start_a_store_still_create_it(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    code, _, err = invoke(fresh, "access", "create-tenant", "acme")
    assert code == 0, err
    code, out, err = invoke(fresh, "access", "list", "--json")  # the access file alone is Settler data
    assert code == 0 and [g["tenant"] for g in json.loads(out)] == ["acme"], err


HOSTILE = "\x1b[31mRED\x1b[0m\r\n\u202eX \x1b]8;;http://evil.example\x1b\\clickme\x1b]8;;\x1b\\"


def test_control_characters_from_input_data_are_shown_escaped_never_sent_to_the_terminal(
    tmp_path: Path,
) -> None:
    spec, _ = write_sample_job(tmp_path / "in", records=20, start=DAY, days=1, seed=3, name="hostile")
    source = spec.parent / "source.csv"
    with source.open("a", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(
            [
                ["ch_hostile", "2026-11-02 01:00:00", "12.34", "usd", HOSTILE, "charge", "Eve", "", ""],
                ["ch_nul", "2026-11-02 01:00:00", "12.34", "u\x00d", "nul", "charge", "Eve", "", ""],
            ]
        )
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
        run = settler.reconcile(spec, start=DAY, end=DAY, tenant="acme").reconciliation_id
    code, out, err = invoke(data, "review", "list", run)
    assert code == 0, err
    unsafe = [c for c in out if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 or c == "\u202e"]
    assert not unsafe, unsafe
    rows = [row.split("│") for row in out.splitlines() if row.count("│") == 7]
    assert "\\x1b[31mRED\\x1b[0m\\x0d\\x0a\\u202eX" in "".join(row[4].strip() for row in rows)
    assert "'u\\x00d' is not an ISO 4217 code" in " ".join(row[3].strip() for row in rows)
    code, out, err = invoke(data, "review", "list", run, "--json")
    assert code == 0, err
    items = json.loads(out)
    hostile = next(r for i in items for r in i["source"] if r["id"] == "ch_hostile")
    assert hostile["description"] == HOSTILE
    assert any(i["reason"].startswith("currency: 'u\x00d'") for i in items)


def test_an_id_holding_a_backslash_escape_prints_apart_from_the_character_it_names(tmp_path: Path) -> None:
    # "ch_a\\x0ab" (a backslash, then x0a) and "ch_a" + line feed + "b" must not print alike, and
    # each printed id, copied back, must decide that record and not the other one
    spec, _ = write_sample_job(tmp_path / "in", records=20, start=DAY, days=1, seed=3, name="twins")
    literal, real = "ch_a\\x0ab", "ch_a\nb"
    with (spec.parent / "source.csv").open("a", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(
            [
                [literal, "2026-11-02 01:00:00", "91.17", "usd", "lit", "charge", "Eve", "", ""],
                [real, "2026-11-02 01:00:00", "92.17", "usd", "real", "charge", "Eve", "", ""],
            ]
        )
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
        run = settler.reconcile(spec, start=DAY, end=DAY, tenant="acme").reconciliation_id
    code, out, err = invoke(data, "review", "list", run, "--kind", "unmatched")
    assert code == 0, err
    assert "ch_a\\x5cx0ab" in out and "ch_a\\x0ab" in out.replace("ch_a\\x5cx0ab", ""), out
    shown = "unmatched:source:ch_a\\x5cx0ab"  # as the id column prints it
    code, out, err = invoke(data, "review", "dismiss", run, shown, "--reason", "copied", "--json")
    assert code == 0, err
    with Settler(data, user="olivia") as settler:
        still_open = {i["source"][0]["id"] for i in settler.review_items(run)[1] if i["source"]}
    assert real in still_open and literal not in still_open


@pytest.mark.parametrize("roots", [None, 'allowed_input_roots = ["inputs/{tenant}"]\n'])
def test_the_commands_sample_prints_run_as_printed_in_a_fresh_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, roots: str | None
) -> None:
    # also where ./data (a demo's) confines inputs to roots that do not hold the sample's folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SETTLER_DATA_DIR", raising=False)
    monkeypatch.delenv("SETTLER_ALLOWED_INPUT_ROOTS", raising=False)
    if roots is not None:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "settler.toml").write_text(roots)
    code, out, err = invoke(tmp_path / "data", "sample", "s", "--records", "30", "--days", "2")
    assert code == 0, err
    steps = [line.split("#")[0].split() for line in out.splitlines() if line.startswith("  settler ")]
    assert [step[1] for step in steps] == ["access", "reconcile"]
    assert "--to 2026-11-02" in out, "the sample's last day"
    runner = CliRunner()
    for step in steps:
        result = runner.invoke(app, step[1:], env={"SETTLER_USER": "olivia"})
        assert result.exit_code == 0, (step, result.stdout, result.stderr)
    with Settler(tmp_path / ("data" if roots is None else "s/data"), user="olivia") as settler:
        assert len(settler.run_ids()) == 1


def test_a_failed_run_under_json_writes_no_plain_text_log_line_to_stderr(tmp_path: Path) -> None:
    spec, _ = write_sample_job(tmp_path / "in", records=20, start=DAY, days=1, seed=3, name="broken")
    with (spec.parent / "source.csv").open("ab") as out:
        out.write(b"\xff\xfe not utf-8\n")  # the run starts, then fails reading its source
    data = tmp_path / "data"
    with Settler(data, user="olivia") as settler:
        settler.access.create_tenant("acme", admin="olivia")
    code, out, err = invoke(data, "reconcile", str(spec), "--from", DAY.isoformat(), "--json")
    assert code == 1 and json.loads(out)["status"] == "failed"
    assert err == ""
    # asked for, log lines under --json are JSON lines
    code, out, err = invoke(
        data, "--log-level", "INFO", "reconcile", str(spec), "--from", "2026-11-03", "--json"
    )
    assert code == 1 and json.loads(out)["status"] == "failed"
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(line["message"].startswith("run failed") for line in lines), err
