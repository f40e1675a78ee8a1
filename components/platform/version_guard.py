"""VersionGuard: refuses a database version change its server cannot make on the data it has,
before anything changes.

Creates one `pulumi.dynamic.Resource` per database holding the applied version. Its provider's
`check` sees the version in the state (the last `up`) and the configured one, and answers a
forbidden change with a check failure: `pulumi preview` and `pulumi up` stop there, with the key,
the rule and the way through, before any step runs (the database's StatefulSet also depends on
it, so an `up --skip-preview` cannot reach the server first). Allowed changes (a new minor or
patch release) update it in place. The offline plan has no state and refuses nothing.

The rules, from the servers' own documentation:
- PostgreSQL: a major release (16 -> 17, or back) cannot start on the old data directory
  (`PG_VERSION`); it needs `pg_upgrade` or a dump and restore. Minor releases share the on-disk
  format, both ways ("Upgrading a PostgreSQL Cluster", postgresql.org/docs/current/upgrading.html).
- MySQL: in place only within a release series or to the next LTS series (5.7 -> 8.0 -> 8.4 ->
  9.7), never skipping one, never down to an older series ("Upgrade Paths" and "Downgrading
  MySQL", dev.mysql.com/doc/refman/8.4/en/upgrade-paths.html).
- Redis: a newer server reads an older RDB file; an older one refuses a newer RDB version, so no
  step down to an older major.minor (redis.io/docs/latest/operate/oss_and_stack/install/upgrade).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dynamic

MYSQL_SERIES = ("5.7", "8.0", "8.4", "9.7")
"""MySQL's release series in upgrade order (each LTS; 9.7 is the LTS after 8.4)."""

WAY_THROUGH = "docs/restore.md#changing-a-database-major-version"


def _parts(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def refusal(kind: str, old: str, new: str) -> str | None:
    """Why `old` -> `new` cannot be applied in place to `kind`'s data (pure), or None."""
    if old == new:
        return None
    o, n = _parts(old), _parts(new)
    key = f"rack.databases.{kind}.version"
    if kind == "postgres":
        if o[0] != n[0]:
            return (
                f"{key}: {old} -> {new} changes PostgreSQL's major version, and PostgreSQL {n[0]} does not start "
                f"on a data directory of {o[0]}; keep {o[0]}.x, or dump and restore into a new volume ({WAY_THROUGH})"
            )
        return None
    if kind == "mysql":
        so, sn = ".".join(map(str, o[:2])), ".".join(map(str, n[:2]))
        if so == sn:
            return None
        if so in MYSQL_SERIES and sn in MYSQL_SERIES and MYSQL_SERIES.index(sn) == MYSQL_SERIES.index(so) + 1:
            return None
        why = "a downgrade to an older series" if n < o else "not the next series MySQL upgrades to in place"
        return (
            f"{key}: {old} -> {new} is {why} (in place only {' -> '.join(MYSQL_SERIES)}, one step at a time); "
            f"dump and restore into a new volume ({WAY_THROUGH})"
        )
    if kind == "redis":
        if n[:2] < o[:2]:
            return (
                f"{key}: {old} -> {new} steps Redis down, and an older Redis refuses the newer RDB file it would "
                f"find; keep {o[0]}.{o[1]} or newer, or restore an older dump into a new volume ({WAY_THROUGH})"
            )
        return None
    return None


class _VersionGuardProvider(dynamic.ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        applied = (olds or {}).get("version")
        failures = []
        if applied:
            reason = refusal(str(news["kind"]), str(applied), str(news["version"]))
            if reason is not None:
                failures.append(dynamic.CheckFailure("version", reason))
        return dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=str(props["kind"]), outs=dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [k for k in ("kind", "version") if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=dict(news))


class VersionGuard(dynamic.Resource):
    """The applied version of one database (see the module docstring)."""

    version: pulumi.Output[str]

    def __init__(self, name: str, kind: str, version: str, opts: pulumi.ResourceOptions):
        super().__init__(_VersionGuardProvider(), name, {"kind": kind, "version": version}, opts)
