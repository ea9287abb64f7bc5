"""`settler access ...`: tenants, users and roles."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from settler_pipeline.cli.options import DataDirOption, JsonOption, UserOption, existing_data
from settler_pipeline.cli.output import command, console, emit_json, emit_table

if TYPE_CHECKING:
    from settler_pipeline.application.access import AccessControl


def _access(data_dir: Path, *, create: bool = False) -> AccessControl:
    """The access file of ``data_dir`` (imported on use: the CLI starts without the data stack);
    unless ``create``, ``data_dir`` must hold Settler data already."""
    from settler_pipeline.application.access import AccessControl

    return AccessControl(data_dir if create else existing_data(data_dir, access_file_will_do=True))


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
    access = _access(data_dir, create=True)
    tenant = access.create_tenant(name, admin=access.identify(user))
    if json:
        emit_json({"tenant_id": tenant.tenant_id, "name": tenant.name})
    else:
        console.print(f"tenant {tenant.name} ({tenant.tenant_id})", markup=False)


Grantee = Annotated[str, typer.Argument(help="The user whose rights change (a login or a service).")]
TenantArgument = Annotated[str, typer.Argument(help="Tenant name or id.")]


@app.command("grant")
@command
def grant(
    grantee: Grantee,
    tenant: TenantArgument,
    role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
    user: UserOption = None,
    data_dir: DataDirOption = Path("data"),
) -> None:
    """Give a user a role in a tenant (you must be its admin)."""
    access = _access(data_dir)
    acting = access.identify(user)
    found = access.resolve_tenant(tenant, visible_to=acting)
    access.grant(grantee, found.tenant_id, role, by=acting)
    console.print(f"{grantee} is now {role} in {found.name}", markup=False)


@app.command("revoke")
@command
def revoke(
    grantee: Grantee, tenant: TenantArgument, user: UserOption = None, data_dir: DataDirOption = Path("data")
) -> None:
    """Remove a user's role in a tenant (you must be its admin)."""
    access = _access(data_dir)
    acting = access.identify(user)
    found = access.resolve_tenant(tenant, visible_to=acting)
    access.revoke(grantee, found.tenant_id, by=acting)
    console.print(f"{grantee} has no role in {found.name} any more", markup=False)


def _impersonate_command(name: str, *, allowed: bool, help: str, done: str) -> None:
    """Register ``settler access <name>``: give (``allowed``) or take away the impersonate right."""

    def change(grantee: Grantee, user: UserOption = None, data_dir: DataDirOption = Path("data")) -> None:
        access = _access(data_dir)
        by = access.identify(user)
        if allowed:
            access.allow_impersonate(grantee, by=by)
        else:
            access.forbid_impersonate(grantee, by=by)
        console.print(f"{grantee} {done}", markup=False)

    app.command(name, help=help)(command(change))


_impersonate_command(
    "allow-impersonate",
    allowed=True,
    help="Let a user act as others (--user, services); you must be a global admin.",
    done="may now act as other users",
)
_impersonate_command(
    "forbid-impersonate",
    allowed=False,
    help="Take the impersonate right away from a user; you must be a global admin.",
    done="may no longer act as other users",
)


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
