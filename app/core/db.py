"""Database plumbing: the declarative Base, the request-scoped session, commit and on_commit.

Rules of the house:
- Services never commit. Entry points (routes, callback views, CLI commands, jobs) call
  `commit()` from this module; it is the only place in the code base that commits.
- Side effects that must only happen once the data is durable are registered with
  `on_commit(fn)`; they run after a successful commit and are dropped on rollback.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask
from flask.globals import app_ctx
from sqlalchemy import DateTime, Engine, MetaData, String, TypeDecorator, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool

from app.core import clock

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime on the database path; use app.core.clock.now()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), str: String()}  # noqa: RUF012 - SQLAlchemy's API


class UUIDPrimaryKey:
    """Random UUID primary keys: ids in URLs reveal nothing and cannot be enumerated."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


@dataclass
class _BoundDatabase:
    engine: Engine
    sessionmaker: sessionmaker[Session]


def _scope() -> int:
    # One session per application context (a request, a CLI command, a job).
    try:
        return id(cast(Any, app_ctx)._get_current_object())
    except RuntimeError:  # pragma: no cover - outside an app context
        import threading

        return threading.get_ident()


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide where transactions begin (needed for SAVEPOINTs).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    if url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            options["poolclass"] = StaticPool
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )


class Database:
    def __init__(self) -> None:
        # Any callable returning a Session will do as the factory; this one resolves the app lazily.
        self.session: scoped_session[Session] = scoped_session(
            cast("sessionmaker[Session]", self._new_session), scopefunc=_scope
        )

    def init_app(self, app: Flask) -> None:
        engine = make_engine(
            app.config["DATABASE_URL"],
            pool_size=app.config["DB_POOL_SIZE"],
            max_overflow=app.config["DB_MAX_OVERFLOW"],
        )
        app.extensions["db"] = _BoundDatabase(engine, sessionmaker(bind=engine, expire_on_commit=False))

        @app.teardown_appcontext
        def _remove_session(_exc: BaseException | None) -> None:
            self.session.remove()

    @staticmethod
    def bound(app: Flask | None = None) -> _BoundDatabase:
        from flask import current_app

        bound: _BoundDatabase = (app or current_app).extensions["db"]
        return bound

    def _new_session(self) -> Session:
        return self.bound().sessionmaker()

    @property
    def engine(self) -> Engine:
        return self.bound().engine

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name


db = Database()

_ON_COMMIT = "on_commit_hooks"


def on_commit(hook: Callable[[], None]) -> None:
    """Run `hook` after the current transaction commits; drop it if the transaction rolls back."""
    session = db.session()
    if not session.in_transaction():
        # Begin the transaction the hook belongs to: rolling back a session that never began one
        # fires no rollback event, and the hook would run at the next, unrelated commit.
        session.begin()
    session.info.setdefault(_ON_COMMIT, []).append(hook)


def commit() -> None:
    """Commit the current session, then run the hooks registered with `on_commit`."""
    session = db.session()
    session.commit()
    hooks: list[Callable[[], None]] = session.info.pop(_ON_COMMIT, [])
    for hook in hooks:
        hook()


def rollback() -> None:
    db.session.rollback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_hooks_on_rollback(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction, not a savepoint
        session.info.pop(_ON_COMMIT, None)


@contextmanager
def transaction() -> Iterator[Session]:
    """For CLI commands and jobs: a unit of work that commits on success and rolls back on error."""
    try:
        yield db.session()
        commit()
    except BaseException:
        rollback()
        raise
