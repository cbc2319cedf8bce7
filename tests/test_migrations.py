"""Alembic: `upgrade head` yields exactly the models' schema, on SQLite and on PostgreSQL.

Each test migrates its own throwaway database (a temporary SQLite file, or a new PostgreSQL
database `luohu_migr_<random>` on the test server), never the session's test database, which
`create_all` has already built.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import Engine, create_engine, delete, insert, inspect, make_url, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.core.audit import AuditEvent
from app.core.db import Base
from migrations.metadata import load_metadata, model_module_names

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


@pytest.fixture
def scratch_url(app: Flask) -> Iterator[str]:
    """An empty database of the same kind as the test database, dropped afterwards."""
    url = make_url(app.config["DATABASE_URL"])
    if url.get_backend_name() != "postgresql":
        with tempfile.TemporaryDirectory() as tmp_dir:
            yield f"sqlite:///{tmp_dir}/migrations.db"
        return
    name = f"luohu_migr_{secrets.token_hex(6)}"
    server = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with server.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


@pytest.fixture
def scratch_engine(scratch_url: str) -> Iterator[Engine]:
    engine = create_engine(scratch_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = url  # honoured by migrations/env.py
    config.attributes["configure_logger"] = False
    return config


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped by column
        return "; ".join(_describe(item) for item in diff)
    operation, *details = diff
    return f"{operation} " + " ".join(
        str(getattr(item, "name", item)) for item in details if item is not None
    )


def assert_schema_matches_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, load_metadata())
    assert not differences, (
        "`alembic upgrade head` does not yield the models' schema; add a migration "
        '(make migration m="what changed") and review it:\n  ' + "\n  ".join(map(_describe, differences))
    )


def test_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"several migration heads, merge them: {heads}"


def test_every_model_lives_where_migrations_look(app: Flask) -> None:
    # create_app has imported every model the application uses; env.py imports model_module_names().
    modules = {mapper.class_.__module__ for mapper in Base.registry.mappers}
    assert modules <= set(model_module_names()), (
        "models must live in app/<domain>/models.py (or a models/ package) or app/core/"
    )


def test_upgrade_head_yields_the_models_schema(scratch_url: str, scratch_engine: Engine) -> None:
    command.upgrade(alembic_config(scratch_url), "head")

    assert_schema_matches_models(scratch_engine)


def test_audit_events_are_append_only_after_upgrade(scratch_url: str, scratch_engine: Engine) -> None:
    command.upgrade(alembic_config(scratch_url), "head")
    with scratch_engine.begin() as conn:
        conn.execute(
            insert(AuditEvent).values(
                seq=1,
                occurred_at=datetime.now(UTC),
                actor_kind="system",
                object_type="test",
                action="read",
                result="allowed",
                detail={},
                prev_hash="0" * 64,
                row_hash="1" * 64,
            )
        )

    for statement in (update(AuditEvent).values(action="edited"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"), scratch_engine.begin() as conn:
            conn.execute(statement)
    with scratch_engine.connect() as conn:
        assert conn.execute(select(AuditEvent.action)).scalars().all() == ["read"]


def test_downgrade_base_then_upgrade_head(scratch_url: str, scratch_engine: Engine) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")

    assert set(inspect(scratch_engine).get_table_names()) == {"alembic_version"}
    if scratch_engine.dialect.name == "postgresql":
        with scratch_engine.connect() as conn:
            functions = conn.execute(
                text("SELECT proname FROM pg_proc WHERE proname = 'audit_events_append_only'")
            ).all()
        assert functions == []

    command.upgrade(config, "head")
    assert_schema_matches_models(scratch_engine)
