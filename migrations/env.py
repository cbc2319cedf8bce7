"""Alembic environment: the URL comes from the application's settings, never from alembic.ini.

Where the URL comes from, first match wins:
1. `config.attributes["connection"]`: an open SQLAlchemy Connection (tools, tests);
2. `config.attributes["database_url"]`: a URL string (tests migrating a throwaway database);
3. `app.config.load_settings()["DATABASE_URL"]`: the environment, as the app itself reads it.

Pass `config.attributes["configure_logger"] = False` to keep the caller's logging untouched.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.pool import NullPool

from app.config import load_settings
from app.core.crypto import EncryptedString
from app.core.db import UTCDateTime
from migrations.metadata import load_metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = load_metadata()


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the app's column types as their storage types: migrations need no runtime keys."""
    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, EncryptedString):
            return "sa.Text()"
    return False


def configure_options(dialect_name: str) -> dict[str, Any]:
    """Options shared by online migrations and offline (`--sql`) ones."""
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",  # SQLite has no real ALTER TABLE
        "render_item": render_item,
    }


def database_url() -> str:
    url = config.attributes.get("database_url") or load_settings()["DATABASE_URL"]
    return str(url)


def make_migration_engine(url: str) -> Engine:
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name != "sqlite":
        return engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not pysqlite, begins the transaction: DDL is transactional on SQLite too,
        # so a failed migration leaves nothing half done.
        dbapi_connection.isolation_level = None
        # Batch mode recreates tables (copy, drop, rename): foreign keys must not fire meanwhile.
        # They are checked once the migration has run (see `_check_sqlite_foreign_keys`).
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _check_sqlite_foreign_keys(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration left rows that violate foreign keys: {problems[:10]}")


def run_migrations(connection: Connection, *, transactional_ddl: bool | None = None) -> None:
    context.configure(
        connection=connection,
        transactional_ddl=transactional_ddl,
        **configure_options(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()
        _check_sqlite_foreign_keys(connection)


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_migration_engine(database_url())
    try:
        with engine.connect() as connection:
            # With the explicit BEGIN of make_migration_engine, SQLite runs the whole upgrade in
            # one transaction too (Alembic assumes non-transactional DDL on SQLite).
            run_migrations(connection, transactional_ddl=True)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
