"""Options shared by CLI commands."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from settler_pipeline.errors import ValidationError

if TYPE_CHECKING:
    from settler_pipeline.application.access import AccessControl

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="SETTLER_DATA_DIR",
        help="Settler data directory (event log, read models). Env: SETTLER_DATA_DIR.",
        # no file_okay=False: click would refuse a file with a usage box and exit 2; the store
        # refuses it with a one-line user error instead
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
UserOption = Annotated[
    str | None, typer.Option("--user", "-u", envvar="SETTLER_USER", help="Acting user (default: login name).")
]
TenantOption = Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant name or id.")]


def existing_data(data_dir: Path, *, access_file_will_do: bool = False) -> Path:
    """``data_dir``, once it is known to hold Settler data (its event log; with
    ``access_file_will_do``, its access file is enough): commands that do not start a store refuse a
    mistyped ``--data-dir`` instead of creating a new, empty one there."""
    if not (access_file_will_do and (data_dir / "access.json").is_file()):
        from settler_pipeline.store.event_store import require_log

        require_log(data_dir)
    return data_dir


def global_admin_access(data_dir: Path, user: str | None, action: str) -> AccessControl:
    """The data directory's access control once the acting user is known to be a global admin,
    checked before the log opens. A directory without Settler data is refused as such first (a
    mistyped ``--data-dir`` is the likelier mistake). For commands that act on or show every
    tenant's data: the log's maintenance, the read models' update, snapshots and store figures."""
    from settler_pipeline.application.access import AccessControl

    access = AccessControl(existing_data(data_dir))
    access.require_global_admin(access.identify(user), action)
    return access


def parse_date(value: str, option: str) -> date:
    """A ``YYYY-MM-DD`` date, or a :class:`ValidationError` naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{option} must be a date like 2026-11-01, got {value!r}", hint="dates are YYYY-MM-DD (UTC days)"
        ) from None


def parse_time(value: str, option: str) -> datetime:
    """An ISO time (``2026-11-01T12:00:00Z``, or a date meaning its midnight UTC), as UTC."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        # the log stores microseconds since 1970 in 64 bits: keep to years it can compare against
        if not 1970 <= parsed.year <= 9999 or parsed.timestamp() >= 253_402_300_799:
            raise OverflowError
    except ValueError:
        raise ValidationError(
            f"{option} must be an ISO time like 2026-11-01T12:00:00Z, got {value!r}",
            hint="a date alone means its midnight UTC",
        ) from None
    except OverflowError:
        raise ValidationError(
            f"{option} {value!r} is outside the times the log can hold (1970 to 9999, UTC)",
            hint="give a time since 1970-01-01",
        ) from None
    return parsed
