"""Attacks on Settler from a job spec, a claimed identity or a crafted name: each is refused with a clear
user error (CLI exit 1), and neither access.json nor the event log changes by one byte.

The setting: tenants ``alpha`` and ``beta`` with a completed run each; ``alpha-op`` is an operator of
alpha only and writes job specs in a folder of their own; a secret file lies outside every root.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml

from settler_pipeline.adapters.confinement import InputRoots
from settler_pipeline.alerts import AlertRecorder
from settler_pipeline.application.access import AccessControl
from settler_pipeline.demo import write_scheduled_spec
from settler_pipeline.errors import JobSpecError, PermissionDeniedError, UserError, ValidationError
from settler_pipeline.ids import new_id
from settler_pipeline.sample_job import write_sample_job
from settler_pipeline.session import Settler

ROOT = Path(__file__).resolve().parents[2]
SETTLER = [sys.executable, "-m", "settler_pipeline.cli"]
DAY = date(2026, 11, 3)
SECRET = "TOP-SECRET-OUTSIDE-THE-ROOTS"
SIDES = ("source", "target")


@dataclass
class World:
    base: Path
    data: Path
    specs: Path  # alpha-op's folder: their specs and exports
    secret: Path
    beta_spec: Path

    def fingerprint(self) -> dict[str, str]:
        """SHA-256 of access.json and of every file of the log (lock files aside: taking a lock is
        not a change)."""
        files = [self.data / "access.json", *sorted((self.data / "log").rglob("*"))]
        return {
            str(path.relative_to(self.data)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in files
            if path.is_file() and not path.name.endswith(".lock")
        }

    def spec(self, name: str, **sides: object) -> Path:
        """A copy of alpha's sample spec with ``sides`` (``source``/``target``) replaced."""
        body = yaml.safe_load((self.specs / "sample.yaml").read_text())
        body.update(sides, name=name)  # a job of its own: "already reconciled" must not hide a refusal
        path = self.specs / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="settler-security-"))
    try:
        data = base / "data"
        specs, _ = write_sample_job(base / "alpha-inputs", records=200, start=DAY, days=3, seed=3)
        beta_spec, _ = write_sample_job(base / "beta-inputs", records=200, start=DAY, days=3, seed=4)
        secret = base / "secret.csv"
        secret.write_text(f"id,amount,currency,date\n{SECRET},1.00,EUR,2026-11-03\n")
        with Settler(data, user="root-admin") as app:
            alpha = app.access.create_tenant("alpha", admin="alpha-admin")
            beta = app.access.create_tenant("beta", admin="beta-admin")
            app.access.grant("alpha-op", alpha.tenant_id, "operator", by="alpha-admin")
        with Settler(data, user="alpha-op") as app:
            assert app.reconcile(specs, start=DAY, end=DAY, tenant="alpha").status == "completed"
        with Settler(data, user="beta-admin") as app:
            assert app.reconcile(beta_spec, start=DAY, end=DAY, tenant=beta.tenant_id).status == "completed"
        yield World(base, data, specs.parent, secret, beta_spec)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def cli(
    world: World, *args: str, user: str | None = "alpha-op", as_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    env["SETTLER_DATA_DIR"] = str(world.data)
    if user is not None:
        env["SETTLER_USER"] = user
    return subprocess.run(
        [*SETTLER, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


def api_reconcile(world: World, spec: Path) -> None:
    with Settler(world.data, user="alpha-op") as app:
        app.reconcile(spec, start=DAY, end=DAY, tenant="alpha")


# -- job specs that reach outside their roots --------------------------------------------------------


def _log_glob(world: World) -> dict[str, object]:
    return {
        "adapter": "parquet",
        "path": str(world.data / "log" / "segments" / "**" / "*.parquet"),
        "columns": {"record_id": "event_id", "amount": "global_position", "occurred_at": "timestamp"},
        "currency": {"default": "EUR"},
    }


def _csv(path: str) -> dict[str, object]:
    return {
        "adapter": "csv",
        "path": path,
        "columns": {"record_id": "id", "amount": "amount", "currency": "currency", "occurred_at": "date"},
    }


def _sql(query: str) -> dict[str, object]:
    return {
        "adapter": "duckdb_sql",
        "query": query,
        "columns": {"record_id": "id", "amount": "amount", "occurred_at": "date"},
        "currency": {"default": "EUR"},
    }


SPEC_ATTACKS: dict[str, tuple[Callable[[World], dict[str, object]], str]] = {
    "absolute path": (lambda w: {"target": _csv(str(w.secret))}, "outside the allowed input roots"),
    "dot-dot escape": (lambda w: {"target": _csv("../secret.csv")}, "outside the allowed input roots"),
    "etc passwd": (
        lambda w: {"target": _csv("../../../../../../etc/passwd")},
        "outside the allowed input roots",
    ),
    "glob over the log": (lambda w: {"source": _log_glob(w)}, "inside the data directory"),
    "glob leaving by dot-dot": (
        lambda w: {"target": {**_log_glob(w), "path": "*/../../data/log/**/*.parquet"}},
        "'..' after a glob character",
    ),
    "access file": (
        lambda w: {"target": _csv(str(w.data / "access.json"))},
        "inside the data directory",
    ),
    "symlink out": (lambda w: {"target": _csv("link-to-secret.csv")}, "outside the allowed input roots"),
    "glob matching a symlink out": (
        lambda w: {"target": {**_csv("link-to-*.csv"), "adapter": "parquet"}},
        "outside the allowed input roots",
    ),
    "sql read_text": (lambda w: {"target": _sql(f"SELECT * FROM read_text('{w.secret}')")}, "outside"),
    "sql read_csv of the log": (
        lambda w: {"target": _sql(f"SELECT * FROM read_parquet('{w.data}/log/segments/**/*.parquet')")},
        "outside",
    ),
    "sql relative escape": (lambda w: {"target": _sql("SELECT * FROM read_csv('../secret.csv')")}, "outside"),
    "sql copy to access.json": (
        lambda w: {"target": _sql(f"COPY (SELECT 1 AS id) TO '{w.data}/access.json'; SELECT 1 AS id")},
        "only hold SELECT statements, not COPY",
    ),
    "sql attach the index": (
        lambda w: {"target": _sql(f"ATTACH '{w.data}/log/index.duckdb' AS x; SELECT 1 AS id")},
        "not ATTACH",
    ),
    "sql install": (lambda w: {"target": _sql("INSTALL httpfs; SELECT 1 AS id")}, "not LOAD"),
    "sql set": (lambda w: {"target": _sql("SET enable_external_access = true; SELECT 1 AS id")}, "not SET"),
}


@pytest.fixture(scope="module", autouse=True)
def _symlink(world: World) -> None:
    (world.specs / "link-to-secret.csv").symlink_to(world.secret)


@pytest.mark.parametrize("attack", sorted(SPEC_ATTACKS))
def test_a_spec_reaching_outside_its_roots_is_refused_through_the_cli_and_the_api(
    world: World, attack: str
) -> None:
    build, message = SPEC_ATTACKS[attack]
    spec = world.spec(attack.replace(" ", "-").replace(".", "-"), **build(world))
    before = world.fingerprint()
    result = cli(world, "reconcile", str(spec), "--from", DAY.isoformat(), "--tenant", "alpha")
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(JobSpecError, match=message):
        api_reconcile(world, spec)
    assert world.fingerprint() == before
    assert SECRET not in "".join(p.read_text(errors="replace") for p in (world.data / "log").rglob("*.json*"))


def test_nothing_in_the_log_carries_data_from_outside_the_roots(world: World) -> None:
    with Settler(world.data, user="root-admin") as app:
        events = app.store.read().collect()
    text = "\n".join(events["data"].to_list())
    assert SECRET not in text and "root:x:0:0" not in text


def test_a_yaml_alias_bomb_is_refused_before_it_expands(world: World) -> None:
    bomb = world.specs / "bomb.yaml"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    bomb.write_text("\n".join(lines) + "\nname: bomb\n")
    before = world.fingerprint()
    result = cli(world, "reconcile", str(bomb), "--from", DAY.isoformat(), "--tenant", "alpha")
    assert result.returncode == 1
    assert "anchors and aliases" in result.stderr and len(result.stderr) < 2_000
    with pytest.raises(JobSpecError, match="anchors and aliases"):
        api_reconcile(world, bomb)
    huge = world.specs / "huge.yaml"
    huge.write_text("name: huge\ndescription: " + "x" * 300_000 + "\n")
    with pytest.raises(JobSpecError, match="the limit is"):
        api_reconcile(world, huge)
    assert world.fingerprint() == before


# -- identity ---------------------------------------------------------------------------------------


def test_a_login_without_the_impersonate_right_cannot_act_as_an_admin(world: World) -> None:
    login = pwd.getpwuid(os.getuid()).pw_name
    access_file = world.data / "access.json"
    before = world.fingerprint()
    # This process's login owns access.json, which makes it a global admin; hand the file to another
    # account so the login is an ordinary user, as an operator's login would be.
    os.chown(access_file, pwd.getpwnam("nobody").pw_uid, -1)
    try:
        for args in (
            ["access", "grant", "mallory", "beta", "admin"],
            ["reconcile", str(world.beta_spec), "--from", DAY.isoformat(), "--tenant", "beta"],
            ["access", "list"],
        ):
            result = cli(world, *args, user="beta-admin")
            assert result.returncode == 1, result.stdout + result.stderr
            assert f"'{login}' (the operating-system login) may not act as 'beta-admin'" in result.stderr
        # as itself, the login holds no role: it sees no tenant
        listed = cli(world, "access", "list", "--json", user=None)
        assert listed.returncode == 0 and listed.stdout.strip() == "[]"
        with pytest.raises(PermissionDeniedError, match="may not act as 'beta-admin'"):
            Settler(world.data, user="beta-admin")
        assert world.fingerprint() == before
    finally:
        os.chown(access_file, os.getuid(), -1)


def test_an_empty_or_look_alike_user_is_refused_never_replaced(world: World) -> None:
    before = world.fingerprint()
    for claimed in ("", "alice\n", " alice", "al\u0000ice", "a" * 65):
        with pytest.raises(ValidationError, match="user id must be"):
            Settler(world.data, user=claimed)
    result = cli(world, "state", "00000000-0000-7000-8000-000000000000", user="")
    assert result.returncode == 1 and "user id must be" in result.stderr
    # NFKC: a full-width name is the same user, not a second one
    assert AccessControl(world.data).identify("ａｌｐｈａ-op", login="root") == "alpha-op"
    with pytest.raises(ValidationError, match="tenant name"):
        AccessControl(world.data).create_tenant("beta\n", admin="root")
    assert world.fingerprint() == before


def test_access_list_shows_only_the_callers_tenants(world: World) -> None:
    mine = cli(world, "access", "list", "--json", user="alpha-op")
    assert mine.returncode == 0
    assert '"beta"' not in mine.stdout and '"alpha"' in mine.stdout
    everything = cli(world, "access", "list", "--json", user=None)  # the owner of access.json: a global admin
    assert '"beta"' in everything.stdout and '"alpha"' in everything.stdout
    with Settler(world.data, user="alpha-op") as app:
        assert {g["tenant"] for g in app.access.grants(visible_to=app.user)} == {"alpha"}


@pytest.mark.parametrize(
    "command",
    [
        ["log", "stats", "--json"],
        ["log", "verify", "--json"],
        ["log", "repair", "--accept-loss"],
        ["log", "publish"],
        ["log", "compact", "--target-rows", "1000"],
        ["log", "reindex"],
        ["stats", "--json"],
        ["project", "--json"],
        ["project", "--rebuild", "--json"],
        ["snapshot", "--json"],
    ],
)
@pytest.mark.parametrize("user", ["beta-admin", "no-role"])
def test_the_logs_maintenance_and_figures_need_a_global_admin(
    world: World, command: list[str], user: str
) -> None:
    # The log holds every tenant's events: its event counts by type are no tenant's to see, and
    # repair (which may record positions as lost), compaction and reindexing rewrite the system of
    # record; the read models' update and snapshots write (and print the sizes of) every tenant's
    # data. A tenant's admin is not a global admin.
    before = world.fingerprint()
    refused = cli(world, *command, user=user)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"user {user!r} is not a global admin" in refused.stderr, refused.stderr
    assert refused.stdout == "" and "events_by_type" not in refused.stderr
    assert world.fingerprint() == before


def test_a_global_admin_reads_the_logs_figures(world: World) -> None:
    owner = cli(world, "log", "stats", "--json", user=None)  # the owner of access.json
    assert owner.returncode == 0, owner.stderr
    assert json.loads(owner.stdout)["events_by_type"]
    with AccessControl(world.data)._editing() as data:
        data["admins"] = ["ops"]  # listed in the access file as a global admin
    try:
        listed = cli(world, "log", "verify", "--json", user="ops")
        assert listed.returncode == 0 and json.loads(listed.stdout)["ok"] is True, listed.stderr
    finally:
        with AccessControl(world.data)._editing() as data:
            data["admins"] = []


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "--tenant", "alfa"],
        ["access", "grant", "eve", "alfa", "viewer"],
        ["access", "revoke", "eve", "alfa"],
        ["reconcile", "SPEC", "--from", DAY.isoformat(), "--tenant", "alfa"],
    ],
)
def test_a_mistyped_tenant_is_refused_naming_only_the_callers_tenants(
    world: World, command: list[str]
) -> None:
    # Tenant names are as private as their runs: a typo must not list every tenant of the deployment.
    args = [str(world.specs / "sample.yaml") if a == "SPEC" else a for a in command]
    before = world.fingerprint()
    mine = cli(world, *args, user="alpha-op")
    assert mine.returncode == 1 and "unknown tenant 'alfa'" in mine.stderr, mine.stderr
    assert "alpha" in mine.stderr.replace("'alfa'", "") and "beta" not in mine.stderr, mine.stderr
    if command[0] == "access":  # the owner of access.json, a global admin, sees every tenant anyway
        everything = cli(world, *args, user=None)
        assert "alpha" in everything.stderr.replace("'alfa'", "") and "beta" in everything.stderr
    assert world.fingerprint() == before


def test_a_tenant_cannot_be_named_like_another_tenants_id_nor_take_its_runs(tmp_path: Path) -> None:
    # Anyone may create a tenant. One named like acme's id (sorted before "acme") took commands and
    # job specs naming acme by id: a spec's `tenant_id: <acme>` then reconciled acme's exports into the
    # impostor tenant, whose admin had granted acme's operator a role there.
    access = AccessControl(tmp_path / "data")
    acme = access.create_tenant("acme", admin="acme-admin")
    with pytest.raises(ValidationError, match="shape of a tenant id"):
        access.create_tenant(acme.tenant_id, admin="mallory")
    with pytest.raises(ValidationError, match="shape of a tenant id"):
        access.create_tenant(new_id(), admin="mallory")
    # an access file written before such names were refused: the id still names acme
    impostor = access.create_tenant("impostor", admin="mallory")
    raw = json.loads(access.path.read_text())
    raw["tenants"][impostor.tenant_id]["name"] = acme.tenant_id
    access.path.write_text(json.dumps(raw))
    assert access.resolve_tenant(acme.tenant_id) == acme
    assert access.resolve_tenant(acme.tenant_id.upper()) == acme
    assert access.resolve_tenant("acme") == acme
    assert access.resolve_tenant(impostor.tenant_id).tenant_id == impostor.tenant_id


def test_the_last_admin_of_a_tenant_cannot_demote_or_remove_themselves(world: World) -> None:
    before = world.fingerprint()
    for args in (
        ["access", "grant", "beta-admin", "beta", "viewer"],
        ["access", "revoke", "beta-admin", "beta"],
    ):
        result = cli(world, *args, user="beta-admin")
        assert result.returncode == 1 and "last admin of the tenant" in result.stderr
    access = AccessControl(world.data)
    beta = access.resolve_tenant("beta").tenant_id
    with pytest.raises(UserError, match="last admin"):
        access.grant("beta-admin", beta, "operator", by="beta-admin")
    assert world.fingerprint() == before


def test_only_a_global_admin_grants_the_impersonate_right_and_it_lets_a_login_act_as_others(
    tmp_path: Path,
) -> None:
    access = AccessControl(tmp_path / "data")
    owner = pwd.getpwuid(os.getuid()).pw_name
    access.create_tenant("acme", admin="alice")
    assert access.global_admins() == {owner}  # the owner of access.json
    with pytest.raises(PermissionDeniedError, match="may not act as 'alice'"):
        access.identify("alice", login="scheduler")
    with pytest.raises(PermissionDeniedError, match="not a global admin"):
        access.allow_impersonate("scheduler", by="alice")
    access.allow_impersonate("scheduler", by=owner)
    assert access.identify("alice", login="scheduler") == "alice"
    assert access.identify(None, login="scheduler") == "scheduler"
    access.forbid_impersonate("scheduler", by=owner)
    with pytest.raises(PermissionDeniedError):
        access.identify("alice", login="scheduler")


# -- tenants whose inputs must stay apart ------------------------------------------------------------


def test_a_tenant_input_root_lets_a_run_read_its_own_tenants_folder_only(tmp_path: Path) -> None:
    # One process serves both tenants; `inputs/{tenant}` gives each tenant's runs its own folder. An
    # operator of alpha must not reach beta's exports, by `..`, by an absolute path, by a spec placed
    # in beta's folder, or through the SQL sandbox.
    data = tmp_path / "data"
    alpha_spec, _ = write_sample_job(data / "inputs" / "alpha", records=150, start=DAY, days=2, seed=3)
    write_sample_job(data / "inputs" / "beta", records=150, start=DAY, days=2, seed=4)
    (data / "settler.toml").write_text('allowed_input_roots = ["inputs/{tenant}"]\n')
    beta_file = data / "inputs" / "beta" / "source.csv"
    assert beta_file.is_file() and alpha_spec.parent == data / "inputs" / "alpha"
    with Settler(data, user="root-admin") as app:
        alpha = app.access.create_tenant("alpha", admin="alpha-admin")
        app.access.create_tenant("beta", admin="beta-admin")
        app.access.grant("alpha-op", alpha.tenant_id, "operator", by="alpha-admin")
    body = yaml.safe_load(alpha_spec.read_text())
    elsewhere = tmp_path / "specs"
    elsewhere.mkdir()
    attacks = {
        alpha_spec.parent / "dotdot.yaml": {**body["source"], "path": "../beta/source.csv"},
        elsewhere / "absolute.yaml": {**body["source"], "path": str(beta_file)},
        beta_file.parent / "placed.yaml": {**body["source"], "path": "source.csv"},
        alpha_spec.parent / "sql.yaml": _sql("SELECT * FROM read_csv('../beta/source.csv')"),
    }
    for path, source in attacks.items():
        path.write_text(yaml.safe_dump({**body, "name": path.stem, "source": source}, sort_keys=False))
        before = hashlib.sha256((data / "access.json").read_bytes()).hexdigest()
        done = _reconcile_as_alpha_op(data, path)
        assert done.returncode == 1 and "outside" in done.stderr, (path.name, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if path.name != "sql.yaml":  # the hint says whose folder it is, never to list it as a root
            assert "tenant 'beta''s folder" in done.stderr and "its own folder" in done.stderr, done.stderr
            assert "list its folder" not in done.stderr and "add its folder" not in done.stderr, done.stderr
        assert hashlib.sha256((data / "access.json").read_bytes()).hexdigest() == before
    with Settler(data, user="alpha-op") as app:
        assert app.run_ids() == []  # nothing was started by a refused spec
        # the same operator's own spec, and an absolute path into their own folder, run
        assert app.reconcile(alpha_spec, start=DAY, end=DAY, tenant="alpha").status == "completed"
        own = elsewhere / "own.yaml"
        sides = {side: {**body[side], "path": str(alpha_spec.parent / body[side]["path"])} for side in SIDES}
        own.write_text(yaml.safe_dump({**body, "name": "own", **sides}, sort_keys=False))
        assert app.reconcile(own, start=DAY, end=DAY, tenant="alpha").status == "completed"


def test_a_spec_outside_the_callers_roots_is_never_quoted_in_its_errors(tmp_path: Path) -> None:
    # Under a service account a spec is read with the service's rights: `settler reconcile
    # /root/secret.yaml` must not hand back the file's text as the "bad values" of a job spec.
    data = tmp_path / "data"
    alpha_spec, _ = write_sample_job(data / "inputs" / "alpha", records=20, start=DAY, days=1, seed=3)
    write_sample_job(data / "inputs" / "beta", records=20, start=DAY, days=1, seed=4)
    (data / "settler.toml").write_text('allowed_input_roots = ["inputs/{tenant}"]\n')
    with Settler(data, user="root-admin") as app:
        alpha = app.access.create_tenant("alpha", admin="alpha-admin")
        app.access.create_tenant("beta", admin="beta-admin")
        app.access.grant("alpha-op", alpha.tenant_id, "operator", by="alpha-admin")
    bad = "name: Hunter2 is the password\nsource: 5\n"
    broken = "name: [Hunter2 is the password\n"
    secret = tmp_path / "private" / "secret.yaml"
    secret.parent.mkdir()
    withheld = {
        secret: bad,
        tmp_path / "private" / "broken.yaml": broken,
        data / "inputs" / "beta" / "theirs.yaml": bad,  # another tenant's folder
    }
    for path, text in withheld.items():
        path.write_text(text)
    with Settler(data, user="alpha-op") as app:
        for path in [*withheld, data / "access.json"]:
            with pytest.raises(JobSpecError) as refused:
                app.reconcile(path, start=DAY, end=DAY, tenant="alpha")
            message = str(refused.value)
            assert "contents are not shown" in message, message
            assert "Hunter2" not in message and "alpha-op" not in message and "tenants" not in message
        # in the caller's own folder the problems are spelled out, value and all
        mine = alpha_spec.parent / "mine.yaml"
        mine.write_text(bad)
        with pytest.raises(JobSpecError, match="got 5"):
            app.reconcile(mine, start=DAY, end=DAY, tenant="alpha")
        assert app.run_ids() == []
    done = _reconcile_as_alpha_op(data, secret)
    assert done.returncode == 1 and "contents are not shown" in done.stderr, done.stderr
    assert "Hunter2" not in done.stdout + done.stderr


def test_the_demos_scheduled_specs_run_from_a_copied_data_directory(tmp_path: Path) -> None:
    # The demo's jobs/ specs name their inputs relative to jobs/, so a copy of the data directory
    # reads its own inputs (the original still there, outside the copy's roots, is not read).
    original = tmp_path / "original"
    spec, _ = write_sample_job(original / "inputs" / "acme", records=20, start=DAY, days=1, seed=3)
    (original / "settler.toml").write_text('allowed_input_roots = ["inputs/{tenant}"]\n')
    with Settler(original, user="root-admin") as app:
        tenant = app.access.create_tenant("acme", admin="ops")
    (original / "jobs").mkdir()
    scheduled = write_scheduled_spec(spec, original / "jobs", tenant.tenant_id)
    assert yaml.safe_load(scheduled.read_text())["source"]["path"].startswith("../inputs/acme/")
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    with Settler(copy, user="ops") as app:
        outcome = app.reconcile(copy / "jobs" / scheduled.name, start=DAY, end=DAY)
        assert outcome.status == "completed", outcome.error
        assert app.state(outcome.reconciliation_id).counts.matched > 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_directory_as_an_input_path_is_refused_before_a_run_starts(tmp_path: Path, fmt: str) -> None:
    spec, _ = write_sample_job(tmp_path / "exports", records=20, start=DAY, days=1, seed=3, fmt=fmt)
    (spec.parent / "more").mkdir()
    body = yaml.safe_load(spec.read_text())
    body["target"]["path"] = "more"
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    with Settler(tmp_path / "data", user="ops") as app:
        app.access.create_tenant("acme", admin="ops")
        with pytest.raises(JobSpecError, match="more is a directory") as refused:
            app.reconcile(spec, start=DAY, end=DAY, tenant="acme")
        assert f"more/*.{fmt}" in (refused.value.hint or "")
        assert app.run_ids() == []  # refused, not started and failed


def test_with_tenant_roots_outside_the_data_directory_a_spec_placed_in_another_tenants_folder_is_refused(
    tmp_path: Path,
) -> None:
    # The exports live outside the data directory, under `exports/{tenant}`. The spec's own directory is
    # no root once roots are configured: else an operator of alpha could run a spec lying in (or written
    # into) beta's folder and read beta's exports into alpha.
    data, exports = tmp_path / "data", tmp_path / "exports"
    alpha_spec, _ = write_sample_job(exports / "alpha", records=150, start=DAY, days=2, seed=3)
    beta_spec, _ = write_sample_job(exports / "beta", records=150, start=DAY, days=2, seed=4)
    data.mkdir()
    (data / "settler.toml").write_text(f'allowed_input_roots = ["{exports}/{{tenant}}"]\n')
    with Settler(data, user="root-admin") as app:
        alpha = app.access.create_tenant("alpha", admin="alpha-admin")
        app.access.create_tenant("beta", admin="beta-admin")
        app.access.grant("alpha-op", alpha.tenant_id, "operator", by="alpha-admin")
    with Settler(data, user="alpha-op") as app:
        for spec in (beta_spec, exports / "beta" / "placed.yaml"):
            if not spec.exists():
                spec.write_text(beta_spec.read_text())
            with pytest.raises(JobSpecError, match="outside the allowed input roots"):
                app.reconcile(spec, start=DAY, end=DAY, tenant="alpha")
        assert app.run_ids() == []  # nothing was started, nothing of beta's read
        assert app.reconcile(alpha_spec, start=DAY, end=DAY, tenant="alpha").status == "completed"


def test_with_every_directory_an_input_root_settlers_own_files_are_refused_as_such(world: World) -> None:
    spec = world.spec("root-wide", target=_csv(str(world.data / "access.json")))
    before = world.fingerprint()
    roots = InputRoots((Path("/"),), data_dir=world.data)
    with pytest.raises(JobSpecError, match="inside the data directory") as raised:
        roots.check(world.data / "access.json", world.specs, what="input")
    assert "outside the allowed input roots" not in raised.value.message
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    env |= {
        "SETTLER_DATA_DIR": str(world.data),
        "SETTLER_USER": "alpha-op",
        "SETTLER_ALLOWED_INPUT_ROOTS": "/",
    }
    done = subprocess.run(
        [*SETTLER, "reconcile", str(spec), "--from", DAY.isoformat(), "--tenant", "alpha"],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1 and "inside the data directory" in done.stderr, done.stderr
    assert "outside the allowed input roots" not in done.stderr
    assert world.fingerprint() == before


@pytest.mark.parametrize("entry", ["work", "locks", "alerts", "leases", "log"])
def test_a_tenant_root_in_the_data_directory_never_opens_settlers_own_folder_to_a_tenant_named_like_it(
    tmp_path: Path, entry: str
) -> None:
    # With `{tenant}` roots directly in the data directory, anyone who creates a tenant named like one
    # of Settler's folders (work: runs' spilled inputs of every tenant; alerts: every failure report)
    # must still read nothing there.
    data = tmp_path / "data"
    (data / entry).mkdir(parents=True)
    inside = data / entry / "spilled.csv"
    inside.write_text(f"id,amount,currency,date\n{SECRET},1.00,EUR,2026-11-03\n")
    (data / "tenant").mkdir()
    roots = InputRoots((data / "{tenant}",), data_dir=data)
    with pytest.raises(JobSpecError, match="inside the data directory"):
        roots.for_tenant(entry).check(inside, data / entry, what="input")
    assert (
        roots.for_tenant("tenant").check(data / "tenant" / "x.csv", data, what="input").parent
        == (data / "tenant").resolve()
    )


@pytest.mark.parametrize("run_id", ["abc\n", "..", ".", ".hidden", "a/b", "", "x" * 101])
def test_a_run_id_that_is_no_plain_file_name_names_no_alert_file(tmp_path: Path, run_id: str) -> None:
    # `$` let a trailing line feed through, and a leading dot named a hidden file or `...json`
    with pytest.raises(ValidationError, match="cannot name an alert file"):
        AlertRecorder(tmp_path / "alerts").path(run_id)
    assert AlertRecorder(tmp_path / "alerts").path("0192f0c4-5d3e_7a10.1").name == "0192f0c4-5d3e_7a10.1.json"


def _reconcile_as_alpha_op(data: Path, spec: Path) -> subprocess.CompletedProcess[str]:
    """`settler reconcile spec` for DAY in tenant alpha, as its operator, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLER_")}
    env |= {"SETTLER_DATA_DIR": str(data), "SETTLER_USER": "alpha-op"}
    return subprocess.run(
        [*SETTLER, "reconcile", str(spec), "--from", DAY.isoformat(), "--tenant", "alpha"],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_a_spec_naming_its_tenant_runs_in_that_tenant_only(tmp_path: Path) -> None:
    # a user with roles in two tenants (or a Dagster run given another tenant) once ran alpha's job,
    # reading alpha's exports, as a run of beta: a spec's tenant_id is its owner, not a default
    spec, _ = write_sample_job(tmp_path / "inputs", records=60, start=DAY, days=1, seed=5)
    with Settler(tmp_path / "data", user="both") as app:
        alpha = app.access.create_tenant("alpha", admin="both")
        app.access.create_tenant("beta", admin="both")
        spec.write_text(f"tenant_id: {alpha.tenant_id}\n" + spec.read_text())
        with pytest.raises(ValidationError, match=r"belongs to tenant 'alpha'.*not 'beta'"):
            app.reconcile(spec, start=DAY, end=DAY, tenant="beta")
        assert app.runs() == []
        run = app.reconcile(spec, start=DAY, end=DAY)  # the spec's own tenant, named or not
        assert run.status == "completed"
        again = app.reconcile(spec, start=DAY, end=DAY, tenant="alpha", supersede=True)
        assert again.status == "completed"
        other = spec.with_name("beta-job.yaml")
        other.write_text(
            spec.read_text()
            .replace(f"tenant_id: {alpha.tenant_id}\n", "")
            .replace("name: sample", "name: shared")
        )
        beta_run = app.reconcile(other, start=DAY, end=DAY, tenant="beta")
        # nor may a retry of beta's run switch to alpha's spec (refused before its status is looked at)
        with pytest.raises(ValidationError, match="belongs to tenant 'alpha'"):
            app.retry(beta_run.reconciliation_id, spec_path=spec)
