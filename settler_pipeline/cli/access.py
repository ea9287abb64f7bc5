"""`settler access ...`: tenants, users and roles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption
from settler_pipeline.cli.output import command, console, emit_json, emit_table

if TYPE_CHECKING:
    from settler_pipeline.application.access import AccessControl


def _access(data_dir: Path) -> AccessControl:
    """The access file of ``data_dir`` (imported on use: the CLI starts without the data stack)."""
    from settler_pipeline.application.access import AccessControl

    return AccessControl(data_dir)


app = typer.Typer(help="Manage tenants, users and roles (viewer, operator, admin).", no_args_is_help=True)


@app.command("create-tenant")
@command
def create_tenant(
    name: Annotated[str, typer.Argument(help="Tenant name (lower-case letters, digits, '_', '-').")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
    json: JsonOption = False,
) -> None:
    """Create a tenant; the acting user becomes its admin."""
    access = _access(data_dir)
    tenant = access.create_tenant(name, admin=access.identify(user))
    if json:
        emit_json({"tenant_id": tenant.tenant_id, "name": tenant.name})
    else:
        console.print(f"tenant {tenant.name} ({tenant.tenant_id})", markup=False)


@app.command("grant")
@command
def grant(
    grantee: Annotated[str, typer.Argument(help="User to grant the role to.")],
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Give a user a role in a tenant (you must be its admin)."""
    access = _access(data_dir)
    found = access.resolve_tenant(tenant)
    access.grant(grantee, found.tenant_id, role, by=access.identify(user))
    console.print(f"{grantee} is now {role} in {found.name}", markup=False)


@app.command("revoke")
@command
def revoke(
    grantee: Annotated[str, typer.Argument(help="User to remove.")],
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Remove a user's role in a tenant (you must be its admin)."""
    access = _access(data_dir)
    found = access.resolve_tenant(tenant)
    access.revoke(grantee, found.tenant_id, by=access.identify(user))
    console.print(f"{grantee} has no role in {found.name} any more", markup=False)


@app.command("allow-impersonate")
@command
def allow_impersonate(
    grantee: Annotated[str, typer.Argument(help="User (an operating-system login) to trust.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Let a user act as others (--user, services); you must be a global admin."""
    access = _access(data_dir)
    access.allow_impersonate(grantee, by=access.identify(user))
    console.print(f"{grantee} may now act as other users", markup=False)


@app.command("forbid-impersonate")
@command
def forbid_impersonate(
    grantee: Annotated[str, typer.Argument(help="User to stop trusting.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Take the impersonate right away from a user; you must be a global admin."""
    access = _access(data_dir)
    access.forbid_impersonate(grantee, by=access.identify(user))
    console.print(f"{grantee} may no longer act as other users", markup=False)


@app.command("list")
@command
def list_grants(
    user: UserOption = None, data_dir: DataDirOption = Path("data"), json: JsonOption = False
) -> None:
    """The tenants you hold a role in (every tenant for a global admin) and who holds which role."""
    access = _access(data_dir)
    grants = access.grants(visible_to=access.identify(user))
    if json:
        emit_json(grants)
    else:
        emit_table("access", grants, ["tenant", "user_id", "role", "tenant_id"])
