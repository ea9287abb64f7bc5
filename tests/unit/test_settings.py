"""Settings: overrides beat SETTLER_* variables, which beat the data directory's settler.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from settler_pipeline.errors import ValidationError
from settler_pipeline.settings import SETTINGS_FILE, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "USER", "SERVICE_USER", "ALLOWED_INPUT_ROOTS", "JOB_SPECS", "DEBUG"):
        monkeypatch.delenv(f"SETTLER_{name}", raising=False)


def test_defaults_without_environment_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.data_dir == Path("data")
    assert settings.user is None
    assert settings.service_user == "dagster"
    assert settings.allowed_input_roots == ()
    assert settings.job_specs_dir == Path("data") / "jobs"


def test_file_in_data_dir_is_read_and_relative_roots_resolve_against_it(tmp_path: Path) -> None:
    (tmp_path / SETTINGS_FILE).write_text('service_user = "svc"\nallowed_input_roots = ["in", "/abs"]\n')
    settings = load_settings(data_dir=tmp_path)
    assert settings.service_user == "svc"
    assert settings.allowed_input_roots == ((tmp_path / "in").resolve(), Path("/abs"))


def test_environment_beats_file_and_overrides_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / SETTINGS_FILE).write_text('service_user = "from-file"\n')
    monkeypatch.setenv("SETTLER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SETTLER_SERVICE_USER", "from-env")
    assert load_settings().service_user == "from-env"
    assert load_settings(service_user=None).service_user == "from-env"  # None means "not given"
    assert load_settings(service_user="from-cli").service_user == "from-cli"


def test_roots_from_environment_are_split_on_the_path_separator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLER_ALLOWED_INPUT_ROOTS", "/srv/exports:/srv/bank:")
    assert load_settings().allowed_input_roots == (Path("/srv/exports"), Path("/srv/bank"))


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("bogus = 1\n", "bogus"),
        ('data_dir = "/elsewhere"\n', "data_dir"),
        ("run_lease_seconds = -1\n", "run_lease_seconds"),
        ("not toml [", "cannot be read"),
    ],
)
def test_bad_settings_file_is_a_user_error_naming_the_problem(
    tmp_path: Path, content: str, named: str
) -> None:
    (tmp_path / SETTINGS_FILE).write_text(content)
    with pytest.raises(ValidationError, match=named):
        load_settings(data_dir=tmp_path)
