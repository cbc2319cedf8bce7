"""Centre isolation, applied in one place (API-01).

Every model that belongs to a centre mixes in `CentreScoped`. While a centre-bound staff member
is the principal of the request, every ORM SELECT, UPDATE and DELETE of such a model (including
lazy loads of relationships) gets `institution_id = <the principal's centre>` added by a session
event; the scope never comes from request parameters. District-wide staff see every centre.

`get_or_404` is how routes fetch an object by id: a miss that exists in another centre is
answered exactly like a miss that does not exist (404, existence does not leak) and is audited
as a denied access. `get_unscoped` reads a row by id ignoring the scope, for callers that have
already decided access another way (a form's record after the resident moved; the parties of a
contract a resident may see).
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import ForeignKey, event, select
from sqlalchemy.orm import (
    Mapped,
    ORMExecuteState,
    Session,
    declared_attr,
    mapped_column,
    with_loader_criteria,
)

from app.core import audit
from app.core.auth import current_principal
from app.core.db import db
from app.core.errors import NotFound

SKIP_SCOPE = "skip_centre_scope"


class CentreScoped:
    """Mixin: the row belongs to one 社康中心 (institution)."""

    @declared_attr
    def institution_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("institutions.id"), index=True)


def scoped_institution_id() -> uuid.UUID | None:
    """The centre the current principal is confined to, or None when unconfined."""
    principal = current_principal()
    if principal is None or principal.kind != "staff" or principal.is_district:
        return None
    return principal.institution_id


@event.listens_for(Session, "do_orm_execute")
def _apply_centre_scope(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get(SKIP_SCOPE):
        return
    institution_id = scoped_institution_id()
    if institution_id is None:
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            CentreScoped,
            lambda cls: cls.institution_id == institution_id,
            include_aliases=True,
        )
    )


M = TypeVar("M")


def get_unscoped(model: type[M], object_id: Any) -> M | None:
    """The row of `model` with this primary key whatever the caller's centre, or None. The caller
    has decided access already; never use it to answer for an id taken from the request alone."""
    if object_id is None:
        return None
    pk = model.id  # type: ignore[attr-defined]
    found: M | None = db.session.execute(
        select(model).where(pk == object_id).execution_options(**{SKIP_SCOPE: True})
    ).scalar_one_or_none()
    return found


def get_or_404(model: type[M], object_id: Any, *, object_type: str | None = None, action: str = "read") -> M:
    """Fetch by primary key within the caller's scope; audit cross-centre attempts as denied."""
    pk = model.id  # type: ignore[attr-defined]
    found = db.session.execute(select(model).where(pk == object_id)).scalar_one_or_none()
    if found is not None:
        return found
    if issubclass(model, CentreScoped) and scoped_institution_id() is not None:
        owner = model.institution_id
        elsewhere = db.session.execute(
            select(owner).where(pk == object_id).execution_options(**{SKIP_SCOPE: True})
        ).first()
        if elsewhere is not None:
            # Filed under the caller's centre; the centre that owns the object is in the detail, so
            # its auditors find the attempt too (app/audit/services.py searches both).
            audit.record(
                action,
                str(object_type or getattr(model, "__tablename__", model.__name__)),
                object_id,
                result=audit.DENIED,
                purpose="cross_centre_access",
                detail={"target_institution_id": str(elsewhere[0])},
                durable=True,
            )
    raise NotFound()
