"""Tenants, users and tenant-scoped roles, kept in a small local file (``<data dir>/access.json``).

Roles, each including the ones before it: ``viewer`` reads a tenant's runs and read models;
``operator`` also starts, retries and cancels runs and resolves exceptions; ``admin`` also grants and
revokes roles. Creating a tenant makes the creating user its admin; the last admin of a tenant cannot
leave or step down.

Identity is established, not claimed: a process acts as its operating-system login (the real user id,
not ``$USER``). Acting as someone else (``--user``, ``SETTLER_USER``, a service identity) needs the
``impersonate`` right, which a *global admin* grants. Global admins are the users listed as such in the
file plus the operating-system owner of ``access.json`` (who can rewrite the file anyway).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from settler_pipeline.domain.commands import validate_user
from settler_pipeline.errors import CorruptionError, NotFoundError, PermissionDeniedError, ValidationError
from settler_pipeline.files import write_atomic
from settler_pipeline.ids import UUID_PATTERN, new_id, validate_uuid
from settler_pipeline.store.event_store import refuse_unaddressable
from settler_pipeline.store.locks import file_lock

Role = Literal["viewer", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")
_RANK: Final = {role: i for i, role in enumerate(ROLES)}
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_UUID = re.compile(UUID_PATTERN)


def os_login() -> str:
    """The operating-system account of this process, from its real user id (environment variables
    such as ``USER`` are claims anyone can set, so they are not consulted)."""
    uid = os.getuid()
    try:
        return validate_user(pwd.getpwuid(uid).pw_name)
    except (KeyError, ValidationError):
        return f"uid-{uid}"


def _owner(path: Path) -> str | None:
    try:
        uid = path.stat().st_uid
    except FileNotFoundError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str


class AccessControl:
    """Who may do what, per tenant. Every mutation is atomic (file replaced under a lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "access.json"
        self._lock = data_dir / "access.json.lock"

    # -- reading --------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {"tenants": {}, "grants": {}}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptionError(
                f"the access file {self.path} is damaged ({exc}); nobody's roles can be read",
                hint="restore access.json from a backup, or repair its JSON by hand",
            ) from None
        if not isinstance(data, dict) or not {"tenants", "grants"} <= set(data):
            raise CorruptionError(
                f"the access file {self.path} is damaged (it lacks tenants or grants)",
                hint="restore access.json from a backup, or repair its JSON by hand",
            )
        data.setdefault("admins", [])
        data.setdefault("impersonators", [])
        return data

    # -- identity -------------------------------------------------------------------------------

    def global_admins(self) -> set[str]:
        """Users who may grant the impersonate right and see every tenant: those listed, plus the
        operating-system owner of the access file (before the file exists: the current login)."""
        owner = _owner(self.path) if self.path.exists() else os_login()
        return set(self._load()["admins"]) | ({owner} if owner else set())

    def may_impersonate(self, login: str) -> bool:
        """Whether ``login`` may act as another user."""
        return login in self.global_admins() or login in self._load()["impersonators"]

    def identify(self, requested: str | None, *, login: str | None = None) -> str:
        """Who acts: ``login`` (default: this process's operating-system login) unless ``requested``
        names someone else, which needs the impersonate right. Raises :class:`PermissionDeniedError`
        (never falls back silently) and :class:`ValidationError` for a malformed name."""
        login = login if login is not None else os_login()
        if requested is None:
            return login
        user = validate_user(requested)
        if user == login or self.may_impersonate(login):
            return user
        raise PermissionDeniedError(
            f"{login!r} (the operating-system login) may not act as {user!r}",
            hint=f"drop --user / SETTLER_USER to act as {login}, or ask a global admin to run "
            f"`settler access allow-impersonate {login}`",
        )

    def allow_impersonate(self, user_id: str, *, by: str) -> None:
        """Give ``user_id`` the impersonate right; ``by`` must be a global admin."""
        user_id = validate_user(user_id)
        self.require_global_admin(by, "granting the impersonate right")
        with self._editing() as data:
            if user_id not in data["impersonators"]:
                data["impersonators"].append(user_id)

    def forbid_impersonate(self, user_id: str, *, by: str) -> None:
        """Take the impersonate right away from ``user_id``; ``by`` must be a global admin."""
        self.require_global_admin(by, "revoking the impersonate right")
        with self._editing() as data:
            if user_id not in data["impersonators"]:
                raise NotFoundError(f"user {user_id!r} has no impersonate right")
            data["impersonators"].remove(user_id)

    def require_global_admin(self, user_id: str, action: str) -> None:
        """Raise :class:`PermissionDeniedError` unless ``user_id`` is a global admin. The owner of the
        access file passes without the file being read, so a damaged access file does not lock its
        owner out of the log's maintenance."""
        if user_id == (_owner(self.path) if self.path.exists() else os_login()):
            return
        if user_id not in self.global_admins():
            raise PermissionDeniedError(
                f"user {user_id!r} is not a global admin; {action} needs one",
                hint="global admins are the owner of access.json and the users it lists as admins",
            )

    def tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        return sorted(
            (Tenant(tid, t["name"]) for tid, t in self._load()["tenants"].items()), key=lambda t: t.name
        )

    def tenant_names(self) -> dict[str, str]:
        """Every tenant's name by id (what the analyst views show as ``tenant``)."""
        return {t.tenant_id: t.name for t in self.tenants()}

    def resolve_tenant(self, name_or_id: str, *, visible_to: str | None = None) -> Tenant:
        """A tenant by name or id; :class:`NotFoundError` otherwise, naming the tenants ``visible_to``
        holds a role in (every tenant for a global admin, or when ``visible_to`` is ``None``): a
        mistyped name must not list other tenants, whose names are as private as their runs."""
        tenants = self.tenants()
        # An id before a name: a tenant named like another tenant's id (created before such names
        # were refused) must never take that tenant's runs, which a job spec names by id.
        by_id = [t for t in tenants if t.tenant_id == name_or_id.lower()]
        found = by_id or [t for t in tenants if t.name == name_or_id]
        if found:
            return found[0]
        shown = tenants
        if visible_to is not None and visible_to not in self.global_admins():
            mine = set(self.tenants_of(visible_to))
            shown = [t for t in shown if t.tenant_id in mine]
        known = ", ".join(t.name for t in shown) or "none yet"
        raise NotFoundError(
            f"unknown tenant {name_or_id!r} ({'known' if visible_to is None else 'yours'}: {known})",
            hint="create it with `settler access create-tenant NAME --user YOU`",
        )

    def role_of(self, user_id: str, tenant_id: str) -> Role | None:
        """The user's role in the tenant, or ``None``."""
        role = self._load()["grants"].get(tenant_id, {}).get(user_id)
        return role if role in ROLES else None

    def grants(self, *, visible_to: str | None = None) -> list[dict[str, str]]:
        """Every (tenant, user, role) grant; with ``visible_to``, only those of tenants where that user
        holds a role (every tenant for a global admin)."""
        data = self._load()
        names = {tid: t["name"] for tid, t in data["tenants"].items()}
        shown = set(data["grants"])
        if visible_to is not None and visible_to not in self.global_admins():
            shown = set(self.tenants_of(visible_to))
        return [
            {"tenant": names.get(tid, tid), "tenant_id": tid, "user_id": user, "role": role}
            for tid, users in sorted(data["grants"].items())
            if tid in shown
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
        refuse_unaddressable(self.path.parent)  # a tenant there could never run
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock):
            data = self._load()
            yield data
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True).encode())

    def create_tenant(self, name: str, *, admin: str, tenant_id: str | None = None) -> Tenant:
        """Create a tenant (name: lower-case letters, digits, '_', '-') with ``admin`` as its admin.
        Creating an existing tenant again with the same admin returns it unchanged."""
        name = unicodedata.normalize("NFKC", name)
        if not _TENANT_NAME.fullmatch(name):
            raise ValidationError(
                f"tenant name must be lower-case letters, digits, '_' or '-' (max 63), got {name!r}"
            )
        if _UUID.fullmatch(name):
            # commands and job specs name a tenant by name or by id: a name shaped like an id could
            # pass for another tenant's
            raise ValidationError(
                f"tenant name {name!r} has the shape of a tenant id",
                hint="choose a name, such as acme or acme-eu",
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
            users = data["grants"].setdefault(tenant_id, {})
            if users.get(user_id) == "admin" and role != "admin":
                _keep_an_admin(users, user_id)
            users[user_id] = role

    def revoke(self, user_id: str, tenant_id: str, *, by: str) -> None:
        """Remove the user's role in the tenant; ``by`` must be an admin; the last admin cannot go."""
        self.require(by, tenant_id, "admin", "revoking roles")
        with self._editing() as data:
            users = data["grants"].setdefault(tenant_id, {})
            if user_id not in users:
                raise NotFoundError(f"user {user_id!r} has no role in tenant {self._name(tenant_id)}")
            if users[user_id] == "admin":
                _keep_an_admin(users, user_id)
            del users[user_id]


def _keep_an_admin(users: dict[str, str], leaving: str) -> None:
    if sum(role == "admin" for user, role in users.items() if user != leaving) == 0:
        raise ValidationError(
            f"{leaving!r} is the last admin of the tenant and cannot be removed or demoted",
            hint="grant another admin first",
        )
