"""Doctor photos: uploaded bytes only (never a URL we would fetch: no SSRF surface), validated.

A photo must be a JPEG or PNG of at most 2 MB and 4096×4096 pixels. It is decoded and re-encoded
with Pillow, which proves it is an image and drops metadata (EXIF GPS positions, camera serials).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from app.core import clock, images
from app.core.auth import Principal
from app.core.db import db
from app.core.errors import BusinessRuleViolation, DomainError, NotFound
from app.core.scope import get_or_404
from app.doctors.models import Doctor, DoctorPhoto, PracticeStatus, ReviewStatus
from app.doctors.services import library_cache
from app.doctors.services.common import UNSCOPED, check_editor, write_history

MAX_PHOTO_BYTES = 2 * 1024 * 1024
MAX_PHOTO_SIDE = 4096


class PhotoTooLarge(DomainError):
    status = 413
    code = "photo_too_large"
    message = "照片不能超过 2 MB"


def _invalid(message: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(message, code="invalid_photo", errors={"photo": [message]})


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    content_type: str
    width: int
    height: int


def clean_image(raw: bytes) -> CleanImage:
    """Check size, type (by content, not by the declared type) and dimensions; re-encode."""
    if len(raw) > MAX_PHOTO_BYTES:
        raise PhotoTooLarge()
    if not raw:
        raise _invalid("照片文件为空")
    kind = images.sniff(raw)
    if kind is None:
        raise _invalid("照片须为 JPEG 或 PNG 格式")
    try:
        image = images.reencode(raw, kind, max_side=MAX_PHOTO_SIDE, jpeg_quality=88)
    except images.ImageTooLarge as exc:
        raise _invalid(f"照片尺寸不能超过 {MAX_PHOTO_SIDE}×{MAX_PHOTO_SIDE} 像素") from exc
    except images.ImageUnreadable as exc:
        raise _invalid("照片文件已损坏或无法识别") from exc
    return CleanImage(image.data, image.content_type, image.width, image.height)


def set_photo(actor: Principal, doctor_id: uuid.UUID, raw: bytes) -> Doctor:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor", action="update")
    check_editor(actor, doctor)
    image = clean_image(raw)
    digest = hashlib.sha256(image.data).hexdigest()
    photo = db.session.get(DoctorPhoto, doctor.id)
    if photo is None:
        photo = DoctorPhoto(doctor_id=doctor.id)
        db.session.add(photo)
    photo.content_type, photo.data, photo.size = image.content_type, image.data, len(image.data)
    photo.width, photo.height, photo.sha256 = image.width, image.height, digest
    photo.uploaded_by, photo.uploaded_at = actor.id, clock.now()
    doctor.photo_sha256 = digest
    write_history(doctor, actor, "photo_changed", detail={"size": len(image.data)})
    library_cache.invalidate()
    return doctor


def staff_photo(doctor_id: uuid.UUID) -> DoctorPhoto:
    doctor = get_or_404(Doctor, doctor_id, object_type="doctor")
    photo = db.session.get(DoctorPhoto, doctor.id)
    if photo is None:
        raise NotFound("该医生还没有上传照片", code="photo_not_found")
    return photo


def public_photo(doctor_id: uuid.UUID) -> DoctorPhoto:
    """The photo of a doctor shown in the public library (approved and not left), else 404."""
    photo = db.session.execute(
        select(DoctorPhoto)
        .join(Doctor, Doctor.id == DoctorPhoto.doctor_id)
        .where(
            DoctorPhoto.doctor_id == doctor_id,
            Doctor.status == ReviewStatus.APPROVED,
            Doctor.practice_status != PracticeStatus.LEFT,
        )
        .execution_options(**UNSCOPED)
    ).scalar_one_or_none()
    if photo is None:
        raise NotFound("未找到该医生的照片", code="photo_not_found")
    return photo
