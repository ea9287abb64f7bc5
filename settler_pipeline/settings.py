"""Settler's settings: one object read from the environment, a file in the data directory, and overrides.

Precedence, highest first: explicit overrides (CLI options, keyword arguments of the Python API),
``SETTLER_*`` environment variables, the optional ``settler.toml`` in the data directory, defaults.
The data directory itself comes from an override or ``SETTLER_DATA_DIR`` only (the file lives in it).

Settings that widen what a job spec may touch (``allowed_input_roots``) or who a service acts as
(``service_user``) are an operator's choice: they live here, never in a job spec.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import ByteSize, Field, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from settler_pipeline.errors import ValidationError

SETTINGS_FILE = "settler.toml"
ENV_PREFIX = "SETTLER_"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_SQL_TIMEOUT_SECONDS = 300.0
DEFAULT_SQL_MEMORY_LIMIT = 4 * 1024**3


class Settings(BaseSettings):
    """Everything an operator can configure; see ``docs/configuration.md`` for each setting."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR, description="Data directory: event log, access file, read models."
    )
    user: str | None = Field(
        default=None,
        description="User to act as instead of the operating-system login; needs the impersonate right.",
    )
    service_user: str = Field(
        default="dagster",
        description="Identity scheduled work (the Dagster code location) acts as; needs roles like anyone.",
    )
    allowed_input_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description=(
            "Directories job specs may read besides their own directory. Environment: paths separated "
            "by the OS path separator (':' on POSIX); file: a list of strings, relative to the data dir."
        ),
    )
    job_specs: Path | None = Field(
        default=None, description="Folder of job specs that get a daily schedule (default <data dir>/jobs)."
    )
    run_lease_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A started run whose process has not renewed its lease for this long is abandoned.",
    )
    max_memory: ByteSize | None = Field(
        default=None,
        description=(
            "Most resident memory a run may use (bytes, or with a unit: 6GiB, 512MB). A run expected to "
            "need more fails at its start with a recorded error instead of being killed."
        ),
    )
    sql_timeout_seconds: float = Field(
        default=DEFAULT_SQL_TIMEOUT_SECONDS,
        gt=0,
        description="A `settler sql` / `Settler.sql()` query running longer is stopped with an error.",
    )
    sql_memory_limit: ByteSize = Field(
        default=ByteSize(DEFAULT_SQL_MEMORY_LIMIT),
        gt=0,
        description=(
            "Most memory a `settler sql` / `Settler.sql()` query may use (bytes, or with a unit: 4GiB), "
            "and most it may spill to a temporary folder; a query needing more fails with an error."
        ),
    )
    debug: bool = Field(default=False, description="Show tracebacks of internal errors.")

    @field_validator("allowed_input_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("allowed_input_roots")
    @classmethod
    def _absolute_roots(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        # resolved once here so a later chdir cannot move a root
        return tuple(root.expanduser().resolve() for root in roots)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        data_dir = _data_dir_of(init_settings, env_settings)
        return init_settings, env_settings, _DataDirFileSource(settings_cls, data_dir)

    @property
    def access_file(self) -> Path:
        return self.data_dir / "access.json"

    @property
    def job_specs_dir(self) -> Path:
        return self.job_specs if self.job_specs is not None else self.data_dir / "jobs"


def _data_dir_of(init: PydanticBaseSettingsSource, env: PydanticBaseSettingsSource) -> Path:
    if isinstance(init, InitSettingsSource) and init.init_kwargs.get("data_dir") is not None:
        return Path(init.init_kwargs["data_dir"])
    if isinstance(env, EnvSettingsSource):
        found = env.env_vars.get(f"{ENV_PREFIX}data_dir".lower())
        if found:
            return Path(found)
    return DEFAULT_DATA_DIR


class _DataDirFileSource(PydanticBaseSettingsSource):
    """``<data dir>/settler.toml``, if present: a flat table of settings (``data_dir`` excluded)."""

    def __init__(self, settings_cls: type[BaseSettings], data_dir: Path) -> None:
        super().__init__(settings_cls)
        self.path = data_dir / SETTINGS_FILE
        self.values = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as handle:
                values = tomllib.load(handle)
        except FileNotFoundError:
            return {}
        except NotADirectoryError:
            raise ValidationError(
                f"data directory {self.path.parent} is a file", hint="pass a directory path"
            ) from None
        except OSError as exc:
            raise ValidationError(
                f"settings file {self.path} cannot be read: {exc}",
                hint="check the file's permissions, or remove it",
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(
                f"settings file {self.path} cannot be read: {exc}",
                hint="fix the TOML syntax or remove the file",
            ) from exc
        if "data_dir" in values:
            raise ValidationError(
                f"settings file {self.path} sets data_dir",
                hint="choose the data directory with --data-dir or SETTLER_DATA_DIR, not a file inside it",
            )
        roots = values.get("allowed_input_roots")
        if isinstance(roots, list):
            # relative roots in the file are relative to the data directory, wherever the process runs
            values["allowed_input_roots"] = [
                str(self.path.parent / root) if isinstance(root, str) else root for root in roots
            ]
        return values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def load_settings(**overrides: Any) -> Settings:
    """The effective settings: ``overrides`` (``None`` values mean "not given") over ``SETTLER_*``
    environment variables over ``<data dir>/settler.toml`` over defaults.

    Raises :class:`ValidationError` naming the setting when a value is malformed."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValidationError(
            f"invalid Settler settings: {problems}",
            hint=f"check the SETTLER_* environment variables and {SETTINGS_FILE} in the data directory",
        ) from None
