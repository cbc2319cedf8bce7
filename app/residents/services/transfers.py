"""管理机构变更: move a resident (or their whole household) to another managing centre.

One record is kept: the resident's `institution_id` changes and a `ResidentTransfer` row says
from where, to where, why, by whom and when. Only the current centre (its scope makes the
resident visible) or a district admin can move a resident out. Each move is a conditional
UPDATE on the current centre, so two concurrent transfers cannot both succeed.

Households stay within one centre: a member other than the head leaves the household when
moving alone; the head moves alone only from a one-person household, otherwise the whole
household moves (`include_household=True`) or the head is changed first.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Select, select, update
from sqlalchemy.engine import CursorResult

from app.core import audit
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import Conflict, NotFound
from app.residents.models import HEAD, Household, HouseholdMember, Resident, ResidentTransfer
from app.residents.services.common import (
    active_institution,
    actor_ref,
    get_resident,
    record_change,
    require_active,
)

# Other domains whose rows follow a resident to the new managing centre register here:
# listener(resident_ids, from_institution_id, to_institution_id), called inside the transfer.
TRANSFER_LISTENERS: list[Callable[[list[uuid.UUID], uuid.UUID, uuid.UUID], None]] = []


def _move(model: Any, object_id: uuid.UUID, from_id: uuid.UUID, to_id: uuid.UUID) -> None:
    result = cast(
        CursorResult[Any],
        db.session.execute(
            update(model)
            .where(model.id == object_id, model.institution_id == from_id)
            .values(institution_id=to_id)
            .execution_options(synchronize_session="fetch")
        ),
    )
    if result.rowcount != 1:
        raise Conflict("居民的管理机构已被他人变更，请刷新后重试", code="concurrent_update")


def transfer_resident(
    actor: Principal,
    resident_id: uuid.UUID,
    *,
    to_institution_id: uuid.UUID,
    reason: str,
    include_household: bool = False,
) -> ResidentTransfer:
    """Returns the transfer row of the resident asked for (members moved along get their own)."""
    resident = get_resident(resident_id, action="transfer")
    if not actor.is_district and actor.institution_id != resident.institution_id:  # pragma: no cover
        raise NotFound()  # the centre scope already hides other centres' residents
    require_active(resident, "变更管理机构")
    target = active_institution(to_institution_id, "to_institution_id")
    source_id = resident.institution_id
    if target.id == source_id:
        raise Conflict("居民已由该社康中心管理", code="same_institution")
    membership = resident.membership
    movers: list[Resident] = [resident]
    household: Household | None = None
    if membership is not None:
        household = membership.household
        if include_household or len(household.members) == 1:
            movers = [m.resident for m in household.members]
        elif membership.relationship == HEAD:
            raise Conflict(
                "该居民是户主且家中还有其他成员：请选择整户迁移，或先变更户主", code="household_head_transfer"
            )
        else:
            household.members.remove(membership)
            db.session.flush()
            db.session.expire(resident, ["membership"])
            record_change(
                resident.id,
                "household_left",
                fields=["household"],
                detail={"household_id": str(household.id)},
            )
            household = None
    elif include_household:
        raise Conflict("该居民没有加入家庭，无法整户迁移", code="no_household")
    for mover in movers:
        _move(Resident, mover.id, source_id, target.id)
    if household is not None:
        _move(Household, household.id, source_id, target.id)
        db.session.execute(
            update(HouseholdMember)
            .where(HouseholdMember.household_id == household.id)
            .values(institution_id=target.id)
            .execution_options(synchronize_session="fetch")
        )
    for listener in TRANSFER_LISTENERS:
        listener([m.id for m in movers], source_id, target.id)
    actor_id, role = actor_ref()
    rows: list[ResidentTransfer] = []
    for mover in movers:
        row = ResidentTransfer(
            id=uuid.uuid4(),
            resident_id=mover.id,
            from_institution_id=source_id,
            to_institution_id=target.id,
            household_id=household.id if household else None,
            reason=reason.strip(),
            actor=actor_id,
            actor_role=role,
        )
        db.session.add(row)
        rows.append(row)
        detail = {"from": str(source_id), "to": str(target.id)}
        record_change(mover.id, "transferred", fields=["institution_id"], detail=detail, reason=reason)
        audit.record(
            "transfer", "resident", mover.id, resident_id=mover.id, institution_id=source_id, detail=detail
        )
    db.session.flush()
    return next(r for r in rows if r.resident_id == resident.id)


def list_transfers(resident_id: uuid.UUID) -> list[ResidentTransfer]:
    resident = get_resident(resident_id)
    statement: Select[Any] = (
        select(ResidentTransfer)
        .where(ResidentTransfer.resident_id == resident.id)
        .order_by(ResidentTransfer.created_at.desc())
    )
    found = list(db.session.execute(statement).scalars())
    audit.record("read", "resident_transfers", resident.id, resident_id=resident.id)
    return found
