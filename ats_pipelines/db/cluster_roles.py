"""Roles of the managed cluster, made by its owner at ``ats db up``.

* ``ats_admin`` — the superuser (initdb's bootstrap role); the OS user running the server logs
  in as it by peer authentication over the 0700 socket directory, anyone else only with its
  password (0600 under the state dir; ``ats db restore`` uses it, TimescaleDB's restore
  procedure needs a superuser). It creates roles and databases, nothing else.
* ``ats`` — the platform: LOGIN, CREATEDB (test sessions and Dagster make their own
  databases), pg_checkpoint (benchmarks), no superuser; it owns the databases and therefore
  its schemas. TimescaleDB is installed in ``template1`` by the owner, so every database it
  creates has the extension.
* ``ats_reader`` — analysts and BI tools: SELECT on the platform's schemas (granted by the
  migration runner, ``db.migrate``), nothing else.

Passwords are generated into ``<state_dir>/secrets`` (0600) and travel to psql on stdin, never
on a command line. A cluster made before these roles (``ats`` as its superuser, every local
login trusted) is converted in place: ``ats_admin`` is created while the old rules still
apply, then ``ats`` loses its superuser and the new rules are loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ats_pipelines.config import ADMIN_DB_USER, DEFAULT_DB_USER, READER_DB_USER
from ats_pipelines.local_secrets import ensure_secret

if TYPE_CHECKING:
    from ats_pipelines.db.cluster import LocalCluster

# role names are this package's constants, passwords psql variables (quoted by psql)
_ROLES_SQL = f"""
SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY['{DEFAULT_DB_USER}', '{READER_DB_USER}']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \\gexec
ALTER ROLE {DEFAULT_DB_USER} LOGIN NOSUPERUSER NOCREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
ALTER ROLE {READER_DB_USER} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS
    PASSWORD :'reader_password';
ALTER ROLE {ADMIN_DB_USER} PASSWORD :'admin_password';
"""  # noqa: S608


def ensure_roles(cluster: LocalCluster) -> None:
    """Create or correct the roles and load the access rules (idempotent, a few ms)."""
    probe = "SELECT 1;\n"
    if cluster.try_run(cluster.psql(ADMIN_DB_USER), probe):
        pass
    elif cluster.hba_is_current():  # the rules are in place, the owner's name map was not
        if cluster.write_hba():
            cluster.reload()
    else:
        # a cluster from before the roles: its superuser is ats and local logins are trusted
        cluster.run(
            cluster.psql(DEFAULT_DB_USER),
            "creating the cluster's admin role",
            stdin=f"CREATE ROLE {ADMIN_DB_USER} SUPERUSER LOGIN;\n",
        )
    state = cluster.settings.state_dir
    passwords = (
        f"\\set app_password '{ensure_secret(state, DEFAULT_DB_USER)}'\n"
        f"\\set reader_password '{ensure_secret(state, READER_DB_USER)}'\n"
        f"\\set admin_password '{ensure_secret(state, ADMIN_DB_USER)}'\n"
    )
    # the benchmarks settle the disk with CHECKPOINT between runs (pg_checkpoint: PG 15+)
    checkpoint = f"GRANT pg_checkpoint TO {DEFAULT_DB_USER};\n"
    roles = passwords + _ROLES_SQL + (checkpoint if cluster.install.version >= 15 else "")
    cluster.run(cluster.psql(ADMIN_DB_USER), "setting up roles", stdin=roles)
    if cluster.preloads_timescaledb:
        # New databases (the platform's, each test session's, Dagster's) come from template1:
        # with the extension there, a non-superuser owner never has to create it. (Creating a
        # trusted extension runs as the bootstrap superuser, which a converted cluster lacks.)
        cluster.run(
            cluster.psql(ADMIN_DB_USER, "template1"),
            "installing timescaledb in template1",
            stdin="CREATE EXTENSION IF NOT EXISTS timescaledb;\n",
        )
    if cluster.write_hba():
        cluster.reload()
