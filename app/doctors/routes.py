"""Doctor registration and review (`/api/v1/doctors`) and the 医保医师库 (`/api/v1/doctor-mi-imports`).

Roles per route are in each docstring; object-level rules (own registration, review level,
centre scope) are in `app.doctors.services`. Another centre's doctor is a 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request
from werkzeug.datastructures import FileStorage

from app.core.api import Blueprint
from app.core.auth import ADMINS, ALL_STAFF, Role, require_principal
from app.core.db import commit
from app.core.pagination import Page, PageArgsSchema, page_schema
from app.doctors import services
from app.doctors.models import DoctorPhoto
from app.doctors.schemas import (
    DoctorApproveSchema,
    DoctorCapacitySchema,
    DoctorHistorySchema,
    DoctorMiCodeSchema,
    DoctorMiImportSchema,
    DoctorMiItemSchema,
    DoctorMiReportQuerySchema,
    DoctorMiUploadSchema,
    DoctorPhotoUploadSchema,
    DoctorPracticeStatusSchema,
    DoctorProfileUpdateSchema,
    DoctorQuerySchema,
    DoctorRegistrationSchema,
    DoctorRejectSchema,
    DoctorResubmitSchema,
    DoctorSchema,
    LibraryDoctorQuerySchema,
    LibraryDoctorSchema,
)
from app.doctors.services.common import SELF_REGISTERING_ROLES

blp = Blueprint(
    "doctors",
    __name__,
    url_prefix="/api/v1/doctors",
    description="家庭医生统一注册与审核、执业状态、医保医师编码、签约容量",
)
mi_blp = Blueprint(
    "doctor_mi_imports",
    __name__,
    url_prefix="/api/v1/doctor-mi-imports",
    description="医保医师库：导入社保名单并与本系统注册医生核对",
)

REGISTRANTS = SELF_REGISTERING_ROLES | ADMINS
MI_READERS = [Role.DISTRICT_ADMIN, Role.CENTRE_ADMIN]
PHOTO_RESPONSE = {
    "200": {
        "description": "The photo",
        "content": {
            kind: {"schema": {"type": "string", "format": "binary"}} for kind in ("image/jpeg", "image/png")
        },
    }
}


def photo_response(photo: DoctorPhoto, *, max_age: int) -> Response:
    response = current_app.response_class(photo.data, mimetype=photo.content_type)
    response.set_etag(photo.sha256)
    response.headers["Cache-Control"] = (
        f"private, max-age={max_age}" if max_age < 3600 else f"public, max-age={max_age}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.make_conditional(request)
    return response


# --- registration --------------------------------------------------------------------------------


@blp.route("", methods=["POST"])
@blp.auth(roles=REGISTRANTS)
@blp.idempotent()
@blp.arguments(DoctorRegistrationSchema)
@blp.response(201, DoctorSchema)
def submit_registration(args: dict[str, Any]) -> Any:
    """Submit a registration (家庭医生统一注册).

    Roles: doctor, team_leader, nurse, public_health (for themselves, own centre); centre_admin
    (for someone of their centre); district_admin (any centre, `institution_id` required).
    The photo is uploaded afterwards with `PUT /api/v1/doctors/{id}/photo`.
    """
    doctor = services.submit(require_principal(), args)
    commit()
    return doctor


@blp.route("", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(DoctorQuerySchema, location="query")
@blp.response(200, page_schema(DoctorSchema))
def list_doctors(args: dict[str, Any]) -> Page[Any]:
    """Registrations of the caller's centre (district roles: all), newest first. Roles: all staff."""
    return services.list_doctors(**args)


@blp.route("/me", methods=["GET"])
@blp.auth(roles=SELF_REGISTERING_ROLES)
@blp.response(200, DoctorSchema)
def my_registration() -> Any:
    """The caller's own registration (404 `not_registered` if none). Roles: doctor, team_leader, nurse,
    public_health."""
    return services.my_registration(require_principal())


@blp.route("/public-search", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.arguments(LibraryDoctorQuerySchema, location="query")
@blp.response(200, page_schema(LibraryDoctorSchema))
def public_search(args: dict[str, Any]) -> dict[str, Any]:
    """The residents' doctor library, district-wide, for desk staff helping a resident. Roles: all staff."""
    return services.search_public(**args)


@blp.route("/<uuid:doctor_id>", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, DoctorSchema)
def get_doctor(doctor_id: uuid.UUID) -> Any:
    """One registration (404 outside the caller's centre). Roles: all staff."""
    return services.get_doctor(doctor_id)


@blp.route("/<uuid:doctor_id>/resubmit", methods=["POST"])
@blp.auth(roles=REGISTRANTS)
@blp.arguments(DoctorResubmitSchema)
@blp.response(200, DoctorSchema)
def resubmit(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Correct and resubmit a rejected registration (409 `invalid_transition` otherwise).

    Roles: the registered person themselves; centre_admin and district_admin.
    """
    doctor = services.resubmit(require_principal(), doctor_id, args)
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/profile", methods=["PATCH"])
@blp.auth(roles=REGISTRANTS)
@blp.arguments(DoctorProfileUpdateSchema)
@blp.response(200, DoctorSchema)
def update_profile(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Update phone, specialties (擅长) or introduction, in any review state, without re-review.

    Roles: the registered person themselves; centre_admin and district_admin.
    """
    doctor = services.update_profile(require_principal(), doctor_id, args)
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/photo", methods=["PUT"])
@blp.auth(roles=REGISTRANTS)
@blp.arguments(DoctorPhotoUploadSchema, location="files")
@blp.response(200, DoctorSchema)
@blp.alt_response(413, response="DEFAULT_ERROR", description="照片超过 2 MB")
def upload_photo(args: dict[str, FileStorage], doctor_id: uuid.UUID) -> Any:
    """Upload the photo (multipart field `photo`: JPEG/PNG ≤ 2 MB). Metadata is stripped.

    Roles: the registered person themselves; centre_admin and district_admin.
    """
    doctor = services.set_photo(require_principal(), doctor_id, args["photo"].read(2 * 1024 * 1024 + 1))
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/photo", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.doc(responses=PHOTO_RESPONSE)
@blp.alt_response(404, response="DEFAULT_ERROR", description="没有照片")
def get_photo(doctor_id: uuid.UUID) -> Response:
    """The doctor's photo, in any review state. Roles: all staff (own centre)."""
    return photo_response(services.staff_photo(doctor_id), max_age=60)


@blp.route("/<uuid:doctor_id>/history", methods=["GET"])
@blp.auth(roles=ALL_STAFF)
@blp.response(200, DoctorHistorySchema(many=True))
def history(doctor_id: uuid.UUID) -> Any:
    """Every change of the registration, oldest first. Roles: all staff (own centre)."""
    return services.doctor_history(doctor_id)


# --- review and administration -------------------------------------------------------------------


@blp.route("/<uuid:doctor_id>/approve", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(DoctorApproveSchema)
@blp.response(200, DoctorSchema)
def approve(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Approve at the current level (`DOCTOR_REVIEW_LEVELS`).

    One level: centre_admin of the doctor's centre or district_admin: submitted -> approved.
    Two levels: centre_admin: submitted -> centre_approved; district_admin: centre_approved ->
    approved. Another level's reviewer gets 403 `review_level_not_permitted`.
    """
    doctor = services.approve(require_principal(), doctor_id, reason=args.get("reason"))
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/reject", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(DoctorRejectSchema)
@blp.response(200, DoctorSchema)
def reject(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Reject with a reason at the current level (district_admin may reject at either level).
    Roles: centre_admin, district_admin."""
    doctor = services.reject(require_principal(), doctor_id, reason=args["reason"])
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/practice-status", methods=["POST"])
@blp.auth(roles=ADMINS)
@blp.arguments(DoctorPracticeStatusSchema)
@blp.response(200, DoctorSchema)
def set_practice_status(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """在岗 / 停诊 / 离岗. Leaving is 409 `doctor_has_residents` while `signed_count` > 0.
    Roles: centre_admin, district_admin."""
    doctor = services.set_practice_status(require_principal(), doctor_id, **args)
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/mi-code", methods=["PUT"])
@blp.auth(roles=ADMINS)
@blp.arguments(DoctorMiCodeSchema)
@blp.response(200, DoctorSchema)
def set_mi_code(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Set the 医保医师编码 (409 `mi_code_taken` if another doctor holds it). Roles: centre_admin,
    district_admin."""
    doctor = services.set_mi_code(
        require_principal(), doctor_id, code=args["mi_doctor_code"], reason=args.get("reason")
    )
    commit()
    return doctor


@blp.route("/<uuid:doctor_id>/capacity", methods=["PUT"])
@blp.auth(roles=ADMINS)
@blp.arguments(DoctorCapacitySchema)
@blp.response(200, DoctorSchema)
def set_capacity(args: dict[str, Any], doctor_id: uuid.UUID) -> Any:
    """Set this doctor's cap (null: `DOCTOR_CAPACITY_DEFAULT`). Roles: centre_admin, district_admin."""
    doctor = services.set_capacity(
        require_principal(), doctor_id, capacity_override=args["capacity_override"]
    )
    commit()
    return doctor


# --- 医保医师库 ------------------------------------------------------------------------------------


@mi_blp.route("", methods=["POST"])
@mi_blp.auth(roles=[Role.DISTRICT_ADMIN])
@mi_blp.arguments(DoctorMiUploadSchema, location="files")
@mi_blp.response(201, DoctorMiImportSchema)
@mi_blp.alt_response(413, response="DEFAULT_ERROR", description="文件超过 10 MB")
def upload_mi_list(args: dict[str, FileStorage]) -> Any:
    """Import the social-security doctor list (CSV or XLSX, multipart field `file`) and reconcile it.

    Columns (Chinese or English header): 医保医师编码 (mi_code), 姓名 (name), 身份证号 (id_number)
    and/or 执业证书编号 (licence_no), 机构编码 (institution_code, = the centre's HIS 机构编码) and/or
    机构名称 (institution_name). Roles: district_admin.
    """
    upload = args["file"]
    batch = services.import_list(
        require_principal(), filename=upload.filename or "upload", data=upload.read(10 * 1024 * 1024 + 1)
    )
    commit()
    return batch


@mi_blp.route("", methods=["GET"])
@mi_blp.auth(roles=MI_READERS)
@mi_blp.arguments(PageArgsSchema, location="query")
@mi_blp.response(200, page_schema(DoctorMiImportSchema))
def list_mi_imports(args: dict[str, Any]) -> Page[Any]:
    """Imports, newest first, with their summary counts. Roles: district_admin, centre_admin."""
    return services.list_batches(page=args["page"], size=args["size"])


@mi_blp.route("/<uuid:import_id>", methods=["GET"])
@mi_blp.auth(roles=MI_READERS)
@mi_blp.response(200, DoctorMiImportSchema)
def get_mi_import(import_id: uuid.UUID) -> Any:
    """One import and its summary counts per category. Roles: district_admin, centre_admin."""
    return services.get_batch(import_id)


@mi_blp.route("/<uuid:import_id>/items", methods=["GET"])
@mi_blp.auth(roles=MI_READERS)
@mi_blp.arguments(DoctorMiReportQuerySchema, location="query")
@mi_blp.response(200, page_schema(DoctorMiItemSchema))
def mi_report(args: dict[str, Any], import_id: uuid.UUID) -> Page[Any]:
    """The reconciliation report, paged, optionally one `category`. Centre admins see their centre's
    findings only. Roles: district_admin, centre_admin."""
    return services.report(import_id, **args)


@mi_blp.route("/<uuid:import_id>/apply", methods=["POST"])
@mi_blp.auth(roles=[Role.DISTRICT_ADMIN])
@mi_blp.response(200, DoctorMiImportSchema)
def apply_mi_codes(import_id: uuid.UUID) -> Any:
    """Write the list's codes onto doctors that lack one and otherwise agree with the list (newest
    import only, once: 409 `stale_import` / `already_applied`). Roles: district_admin."""
    batch = services.apply_codes(require_principal(), import_id)
    commit()
    return batch
