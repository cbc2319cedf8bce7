"""居民健康档案: creating a record (with its 个人基本信息表 and 17-digit number), reading it, the code
dictionary of every form.

    GET   /api/v1/health-records/codes                 every code list and form field, for the tablet
    POST  /api/v1/health-records                       建档: the record and its 个人基本信息表
    GET   /api/v1/health-records/{id}                  the record and its forms (visible ones)
    PATCH /api/v1/health-records/{id}                  责任医生, 信息卡 其他说明
    GET   /api/v1/residents/{resident_id}/health-record
"""

from __future__ import annotations

import uuid
from typing import Any

from app.core.api import Blueprint
from app.core.db import commit
from app.health_records.schemas.forms import (
    HealthCodeDictionarySchema,
    HealthRecordCreateSchema,
    HealthRecordSchema,
    HealthRecordUpdateSchema,
)
from app.health_records.services import access, records, views

blp = Blueprint("health_records", __name__, url_prefix="/api/v1", description="居民健康档案")

READERS = sorted(access.READER_ROLES)
WRITERS = sorted(access.WRITER_ROLES)


@blp.route("/health-records/codes", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, HealthCodeDictionarySchema)
def codes() -> dict[str, Any]:
    """Every code list (codes as printed, labels) and every form's fields with their rules."""
    return views.code_dictionary()


@blp.route("/health-records", methods=["POST"])
@blp.auth(roles=WRITERS)
@blp.idempotent()
@blp.arguments(HealthRecordCreateSchema)
@blp.response(201, HealthRecordSchema)
@blp.alt_response(409, response="DEFAULT_ERROR", description="该居民已建立健康档案")
@blp.alt_response(422, response="DEFAULT_ERROR", description="个人基本信息表填写有误（errors 指明字段）")
def create_record(args: dict[str, Any]) -> dict[str, Any]:
    """建档: number the record (区划+街道+居委会+顺序号) and save its 个人基本信息表 (version 1)."""
    record = records.create_record_with_personal_info(
        args["resident_id"],
        args["personal_info"],
        responsible_doctor_id=args["responsible_doctor_id"],
        card_remarks=args["card_remarks"],
    )
    commit()
    return views.record_view(record)


@blp.route("/health-records/<uuid:record_id>", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, HealthRecordSchema)
def get_record(record_id: uuid.UUID) -> dict[str, Any]:
    """The record and its forms (严重精神障碍/肺结核 forms only for holders of that permission)."""
    shown = views.show_record(record_id)
    commit()
    return shown


@blp.route("/health-records/<uuid:record_id>", methods=["PATCH"])
@blp.auth(roles=WRITERS)
@blp.arguments(HealthRecordUpdateSchema)
@blp.response(200, HealthRecordSchema)
def update_record(args: dict[str, Any], record_id: uuid.UUID) -> dict[str, Any]:
    """Change the 责任医生 or the card's 其他说明."""
    record = records.update_record(record_id, **args)
    commit()
    return views.record_view(record)


@blp.route("/residents/<uuid:resident_id>/health-record", methods=["GET"])
@blp.auth(roles=READERS)
@blp.response(200, HealthRecordSchema)
def record_of_resident(resident_id: uuid.UUID) -> dict[str, Any]:
    """The resident's record (404 `health_record_not_found` before 建档)."""
    shown = views.show_record_of_resident(resident_id)
    commit()
    return shown
