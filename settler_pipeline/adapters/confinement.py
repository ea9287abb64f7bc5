"""Where a job spec may read: the input roots an operator allows (its own directory when none are
configured), never the data directory's own files.

A job spec is written by a tenant's operator, but the process that runs it can read and write every
file Settler owns (the event log of every tenant, ``access.json``). So every path a spec names is
resolved (``..`` and symlinks followed) and must land inside an allowed root:

* each of ``allowed_input_roots`` from the settings (an operator's choice, never the spec's). A root
  naming ``{tenant}`` is that tenant's own folder: a run of tenant ``acme`` may read
  ``/srv/exports/acme`` under the root ``/srv/exports/{tenant}`` and no other tenant's folder, which is
  how one process serves tenants whose inputs must stay apart (a root without it is shared by every
  tenant);
* the spec's own directory only when no root is configured (one team's setup, where whoever writes a
  spec may read what lies beside it). Once an operator lists roots, the spec's directory is not one:
  otherwise anyone who may run a spec could point at a spec placed in, or written into, another
  tenant's folder and read that folder's exports into their own tenant;
* but nothing inside the data directory, except below an allowed root that is itself a sub-folder of
  the data directory (``data/inputs`` in the demo) and is none of Settler's own entries.

Globs are checked twice: their fixed prefix before expansion (so ``/**`` never walks the disk) and every
matched file after it (so a symlink cannot lead out).
"""

from __future__ import annotations

import glob as globbing
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from settler_pipeline.errors import JobSpecError, NotFoundError
from settler_pipeline.settings import Settings

GLOB_CHARS: Final = frozenset("*?[")
TENANT: Final = "{tenant}"  # in a root: the folder of the tenant whose run reads
_TENANT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # as access control allows them
# Entries of the data directory that belong to Settler itself; no input root may lie in them: a
# ``{tenant}`` root directly in the data directory would otherwise give a tenant named ``work`` every
# tenant's spilled run inputs, or one named ``alerts`` every tenant's failure reports.
INTERNAL_ENTRIES: Final = frozenset(
    {
        "log",
        "access.json",
        "access.json.lock",
        "read_models",
        "analytics.duckdb",
        ".dagster",
        "leases",
        "locks",
        "work",
        "alerts",
        "settler.toml",
    }
)
ROOTS_HINT: Final = (
    "inputs must lie under a directory listed in the allowed_input_roots setting "
    "(SETTLER_ALLOWED_INPUT_ROOTS or settler.toml in the data directory; a {tenant} entry is each "
    "tenant's own folder), or under the job spec's directory when that setting is empty; "
    "see docs/configuration.md"
)


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or lies under it (both resolved)."""
    return path == root or root in path.parents


@dataclass(frozen=True)
class InputRoots:
    """The directories a job spec may read (all absolute and resolved).

    ``data_dir`` is the Settler data directory whose files a spec must never reach; ``None`` only for
    reading outside any data directory (tests, tools). ``allowed`` roots naming ``{tenant}`` count only
    for a run of a known tenant (:meth:`for_tenant`), as that tenant's folder."""

    allowed: tuple[Path, ...] = ()
    data_dir: Path | None = None
    tenant: str | None = None
    _roots: tuple[Path, ...] = field(default=(), init=False, repr=False, compare=False)
    _resolved_data_dir: Path | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tenant is not None and not _TENANT_NAME.fullmatch(self.tenant):
            # it becomes a path component: never a separator, never ``..``
            raise JobSpecError(f"tenant name {self.tenant!r} cannot name an input folder")
        roots = []
        for root in self.allowed:
            if TENANT in str(root):
                if self.tenant is None:
                    continue
                root = Path(str(root).replace(TENANT, self.tenant))
            roots.append(root.expanduser().resolve())
        object.__setattr__(self, "_roots", tuple(roots))
        if self.data_dir is not None:
            object.__setattr__(self, "_resolved_data_dir", self.data_dir.resolve())

    def for_tenant(self, name: str) -> InputRoots:
        """These roots as a run of tenant ``name`` has them (``{tenant}`` replaced by ``name``)."""
        return replace(self, tenant=name)

    @classmethod
    def of(cls, settings: Settings) -> InputRoots:
        """The roots the settings allow, guarding their data directory."""
        return cls(settings.allowed_input_roots, data_dir=settings.data_dir)

    def roots_for(self, spec_dir: Path) -> tuple[Path, ...]:
        """Every root a spec in ``spec_dir`` may read under: the configured roots (for this run's
        tenant), or the spec's own directory when none is configured. A configured ``{tenant}`` root
        with no tenant to fill in gives no root at all, never the spec's directory instead."""
        if self.allowed:
            return self._roots
        return (spec_dir.resolve(),)

    def permits(self, path: Path, spec_dir: Path) -> bool:
        """Whether the resolved ``path`` lies inside a root and outside Settler's own files."""
        data = self._resolved_data_dir
        if data is not None and inside(path, data):
            return any(
                inside(path, root)
                and data in root.parents
                and root.relative_to(data).parts[0] not in INTERNAL_ENTRIES
                for root in self._roots
            )
        return any(inside(path, root) for root in self.roots_for(spec_dir))

    def check(self, path: Path, spec_dir: Path, *, what: str) -> Path:
        """``path`` (relative ones against ``spec_dir``) resolved, or a :class:`JobSpecError` saying it
        is outside the allowed roots."""
        candidate = path if path.is_absolute() else spec_dir / path
        resolved = candidate.resolve()
        if not self.permits(resolved, spec_dir):
            data = self._resolved_data_dir
            if (
                data is not None
                and data in resolved.parents
                and resolved.relative_to(data).parts[0] in INTERNAL_ENTRIES
            ):
                # said first: no input root, not even "/", opens Settler's own files
                raise JobSpecError(
                    f"{what} {path} is inside the data directory {data}: Settler's own files there are "
                    "never an input",
                    hint="point the job spec at the exported files, outside the data directory or below "
                    "an input root in it (such as data/inputs)",
                )
            raise self._refusal(path, resolved, spec_dir, what=what)
        return resolved

    def _refusal(self, path: Path, resolved: Path, spec_dir: Path, *, what: str) -> JobSpecError:
        """Why ``resolved`` may not be read, naming the roots in force and where they are set, so
        the user knows what to add and where."""
        data = self._resolved_data_dir
        settings = f"{data}/settler.toml" if data is not None else "settler.toml in the data directory"
        if (other := self._other_tenant(resolved)) is not None:
            name, template, own = other
            # Listing the folder as a root would open it to every tenant: the fix is the spec's path.
            return JobSpecError(
                f"{what} {path} is outside the allowed input roots: it is in tenant {name!r}'s folder "
                f"under the root {template}, and a run of tenant {self.tenant!r} reads only its own "
                f"folder {own}",
                hint=f"point the job spec at this tenant's export in {own} (copy it there if it is this "
                "tenant's); another tenant's folder is never an input",
            )
        if data is not None and inside(resolved, data):
            return JobSpecError(
                f"{what} {path} is inside the data directory {data}, where only a sub-folder listed in "
                "allowed_input_roots is readable",
                hint=f"list its folder in allowed_input_roots ({settings}), or keep inputs outside the "
                "data directory",
            )
        if not self.allowed:
            return JobSpecError(
                f"{what} {path} is outside the allowed input roots: none is configured, so a spec reads "
                f"under its own directory {spec_dir.resolve()} only",
                hint=f"move the file beside the spec, or list its folder in allowed_input_roots "
                f"({settings} or SETTLER_ALLOWED_INPUT_ROOTS); see docs/configuration.md",
            )
        roots = ", ".join(str(root) for root in self._roots) or "none for this tenant"
        return JobSpecError(
            f"{what} {path} is outside the allowed input roots ({roots}); the spec's own directory is no "
            "root once allowed_input_roots lists any",
            hint=f"move the file under one of them, or add its folder to allowed_input_roots ({settings} "
            "or SETTLER_ALLOWED_INPUT_ROOTS; a {tenant} entry is each tenant's own folder); "
            "see docs/configuration.md",
        )

    def _other_tenant(self, resolved: Path) -> tuple[str, str, Path] | None:
        """The tenant whose folder under a ``{tenant}`` root holds ``resolved``, that root as configured
        and this run's own folder under it, when the folder is another tenant's (``None`` otherwise)."""
        if self.tenant is None:
            return None
        for root in self.allowed:
            template = str(root)
            if template.count(TENANT) != 1:
                continue
            before, _, after = template.partition(TENANT)
            if not before.endswith("/") or (after and not after.startswith("/")):
                continue  # the placeholder is part of a folder name: no folder of its own to name
            base = Path(before).expanduser().resolve()  # as __post_init__ resolves the roots
            if not inside(resolved, base) or resolved == base:
                continue
            name = resolved.relative_to(base).parts[0]
            if name != self.tenant:
                return name, template, Path(template.replace(TENANT, self.tenant)).expanduser().resolve()
        return None

    def expand(self, path: Path, spec_dir: Path, *, what: str) -> list[Path]:
        """The files ``path`` names: itself, or for a glob every matching file (sorted), each checked.

        Raises :class:`JobSpecError` for a path or match outside the roots, or a ``..`` after a glob
        character; :class:`NotFoundError` when nothing matches."""
        candidate = path if path.is_absolute() else spec_dir / path
        parts = candidate.parts
        first_glob = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), None)
        if first_glob is None:
            return [self.check(candidate, spec_dir, what=what)]
        if ".." in parts[first_glob:]:
            raise JobSpecError(f"{what} {path} has '..' after a glob character", hint=ROOTS_HINT)
        self.check(Path(*parts[:first_glob]), spec_dir, what=what)
        matches = sorted(Path(p) for p in globbing.glob(str(candidate), recursive=True) if Path(p).is_file())
        if not matches:
            raise NotFoundError(
                f"input file not found: no file matches {path}",
                hint="check the glob pattern: relative paths resolve against the job spec's directory",
            )
        return [self.check(match, spec_dir, what=what) for match in matches]

    def sandbox_directories(self, spec_dir: Path) -> list[str]:
        """The directories a ``duckdb_sql`` query may read (DuckDB's ``allowed_directories``).

        DuckDB can only allow whole directories, so a root that contains the data directory cannot be
        offered to a query: :class:`JobSpecError` then."""
        data = self._resolved_data_dir
        roots = self.roots_for(spec_dir)
        for root in roots:
            if data is not None and inside(data, root):
                raise JobSpecError(
                    f"a duckdb_sql query cannot run from {root}: it contains the data directory {data}",
                    hint="keep job specs that use duckdb_sql, and their inputs, outside the data directory",
                )
            if data is not None and inside(root, data) and not self.permits(root, spec_dir):
                raise JobSpecError(
                    f"a duckdb_sql query cannot run from {root}: it is inside the data directory",
                    hint=ROOTS_HINT,
                )
        return [f"{root}/" for root in roots]
