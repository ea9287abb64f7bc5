"""Tenants, users and tenant-scoped roles, kept in a small local file (``<data dir>/access.json``).

Roles, each including the ones before it: ``viewer`` reads a tenant's runs and read models;
``operator`` also starts, retries and cancels runs and resolves exceptions; ``admin`` also grants and
revokes roles. Creating a tenant makes the creating user its admin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from settler_pipeline.domain.commands import validate_user
from settler_pipeline.errors import NotFoundError, PermissionDeniedError, ValidationError
from settler_pipeline.files import write_atomic
from settler_pipeline.ids import new_id, validate_uuid
from settler_pipeline.store.locks import file_lock

Role = Literal["viewer", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")
_RANK: Final = {role: i for i, role in enumerate(ROLES)}
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str


class AccessControl:
    """Who may do what, per tenant. Every mutation is atomic (file replaced under a lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "access.json"
        self._lock = data_dir / "access.json.lock"
        data_dir.mkdir(parents=True, exist_ok=True)

    # -- reading --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"tenants": {}, "grants": {}}
        return data

    def tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        return sorted(
            (Tenant(tid, t["name"]) for tid, t in self._load()["tenants"].items()), key=lambda t: t.name
        )

    def resolve_tenant(self, name_or_id: str) -> Tenant:
        """A tenant by name or id; :class:`NotFoundError` naming the known tenants otherwise."""
        for tenant in self.tenants():
            if name_or_id in (tenant.name, tenant.tenant_id):
                return tenant
        known = ", ".join(t.name for t in self.tenants()) or "none yet"
        raise NotFoundError(
            f"unknown tenant {name_or_id!r} (known: {known})",
            hint="create it with `settler access create-tenant NAME --user YOU`",
        )

    def role_of(self, user_id: str, tenant_id: str) -> Role | None:
        """The user's role in the tenant, or ``None``."""
        role = self._load()["grants"].get(tenant_id, {}).get(user_id)
        return role if role in ROLES else None

    def grants(self) -> list[dict[str, str]]:
        """Every (tenant, user, role) grant."""
        data = self._load()
        names = {tid: t["name"] for tid, t in data["tenants"].items()}
        return [
            {"tenant": names.get(tid, tid), "tenant_id": tid, "user_id": user, "role": role}
            for tid, users in sorted(data["grants"].items())
            for user, role in sorted(users.items())
        ]

    def tenants_of(self, user_id: str, minimum: Role = "viewer") -> list[str]:
        """Tenant ids in which ``user_id`` holds at least ``minimum``."""
        return sorted(
            tid
            for tid, users in self._load()["grants"].items()
            if users.get(user_id) in _RANK and _RANK[users[user_id]] >= _RANK[minimum]
        )

    def require(self, user_id: str, tenant_id: str, minimum: Role, action: str) -> None:
        """Raise :class:`PermissionDeniedError` unless the user holds ``minimum`` in the tenant."""
        role = self.role_of(user_id, tenant_id)
        if role is None or _RANK[role] < _RANK[minimum]:
            has = f"has role {role}" if role else "has no role"
            raise PermissionDeniedError(
                f"user {user_id!r} {has} in tenant {self._name(tenant_id)}; {action} needs {minimum}",
                hint=f"an admin of the tenant can run `settler access grant {user_id} "
                f"{self._name(tenant_id)} {minimum} --user ADMIN`",
            )

    def _name(self, tenant_id: str) -> str:
        tenant = self._load()["tenants"].get(tenant_id)
        return tenant["name"] if tenant else tenant_id

    # -- changing -------------------------------------------------------------------------------

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        with file_lock(self._lock):
            data = self._load()
            yield data
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def create_tenant(self, name: str, *, admin: str, tenant_id: str | None = None) -> Tenant:
        """Create a tenant (name: lower-case letters, digits, '_', '-') with ``admin`` as its admin.
        Creating an existing tenant again with the same admin returns it unchanged."""
        if not _TENANT_NAME.match(name):
            raise ValidationError(
                f"tenant name must be lower-case letters, digits, '_' or '-' (max 63), got {name!r}"
            )
        admin = validate_user(admin)
        with self._editing() as data:
            for tid, tenant in data["tenants"].items():
                if tenant["name"] == name:
                    if data["grants"].get(tid, {}).get(admin) != "admin":
                        raise PermissionDeniedError(
                            f"tenant {name!r} already exists and {admin!r} is not its admin",
                            hint="ask an admin of the tenant to grant you a role",
                        )
                    return Tenant(tid, name)
            tid = validate_uuid("tenant_id", tenant_id) if tenant_id else new_id()
            data["tenants"][tid] = {"name": name}
            data["grants"].setdefault(tid, {})[admin] = "admin"
        return Tenant(tid, name)

    def grant(self, user_id: str, tenant_id: str, role: str, *, by: str) -> None:
        """Give ``user_id`` ``role`` in the tenant; ``by`` must be an admin of it."""
        if role not in ROLES:
            raise ValidationError(f"unknown role {role!r}", hint=f"roles are {', '.join(ROLES)}")
        user_id = validate_user(user_id)
        self.require(by, tenant_id, "admin", "granting roles")
        with self._editing() as data:
            data["grants"].setdefault(tenant_id, {})[user_id] = role

    def revoke(self, user_id: str, tenant_id: str, *, by: str) -> None:
        """Remove the user's role in the tenant; ``by`` must be an admin; the last admin cannot go."""
        self.require(by, tenant_id, "admin", "revoking roles")
        with self._editing() as data:
            users = data["grants"].setdefault(tenant_id, {})
            if user_id not in users:
                raise NotFoundError(f"user {user_id!r} has no role in tenant {self._name(tenant_id)}")
            if users[user_id] == "admin" and sum(r == "admin" for r in users.values()) == 1:
                raise ValidationError(
                    "cannot revoke the last admin of a tenant", hint="grant another admin first"
                )
            del users[user_id]
