"""Doctor photos: uploaded bytes only, type/size checks, metadata stripped, staff and public serving."""

from __future__ import annotations

import io

from PIL import Image

from app.core.auth import Role
from app.core.db import db
from app.doctors.models import DoctorPhoto
from tests.doctors.support import image_bytes, multipart
from tests.factories import make_staff
from tests.factories_doctors import make_doctor

URL = "/api/v1/doctors"


def _upload(client, doctor_id, data: bytes, name: str = "me.png"):
    return client.put(f"{URL}/{doctor_id}/photo", **multipart("photo", name, data))


def test_upload_png_and_jpeg_and_serve(api, centre):
    user = make_staff(Role.DOCTOR, centre)
    doctor = make_doctor(centre, staff_user=user)
    client = api(user)
    response = _upload(client, doctor.id, image_bytes("PNG"))
    assert response.status_code == 200, response.json
    assert response.json["has_photo"] is True and response.json["photo_url"] == f"{URL}/{doctor.id}/photo"
    served = client.get(f"{URL}/{doctor.id}/photo")
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(served.data)).size == (64, 80)
    again = client.get(f"{URL}/{doctor.id}/photo", headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304
    jpeg = _upload(client, doctor.id, image_bytes("JPEG", exif=True), "me.jpg")
    assert jpeg.status_code == 200
    stored = db.session.get(DoctorPhoto, doctor.id)
    assert stored.content_type == "image/jpeg"
    assert not Image.open(io.BytesIO(stored.data)).getexif(), "EXIF metadata must be stripped"
    public = api().get(f"/mp/v1/doctors/{doctor.id}/photo")
    assert public.status_code == 200 and public.mimetype == "image/jpeg"
    assert "public" in public.headers["Cache-Control"]


def test_photo_limits(api, centre):
    doctor = make_doctor(centre)
    admin = api(make_staff(Role.CENTRE_ADMIN, centre))
    too_big = _upload(admin, doctor.id, b"\x89PNG\r\n\x1a\n" + b"0" * (2 * 1024 * 1024))
    assert too_big.status_code == 413 and too_big.json["code"] == "photo_too_large"
    not_image = _upload(admin, doctor.id, b"<svg onload=alert(1)>", "x.png")
    assert not_image.status_code == 422 and not_image.json["errors"]["photo"] == ["照片须为 JPEG 或 PNG 格式"]
    gif = _upload(admin, doctor.id, image_bytes("GIF"), "x.gif")
    assert gif.status_code == 422
    broken = _upload(admin, doctor.id, image_bytes("PNG")[:60])
    assert broken.status_code == 422 and broken.json["errors"]["photo"] == ["照片文件已损坏或无法识别"]
    huge = _upload(admin, doctor.id, image_bytes("PNG", size=(5000, 10)))
    assert huge.status_code == 422 and "4096" in huge.json["errors"]["photo"][0]
    missing = admin.put(f"{URL}/{doctor.id}/photo", data={}, content_type="multipart/form-data")
    assert missing.status_code == 422 and missing.json["errors"]["photo"] == ["此项必填"]
    assert db.session.get(DoctorPhoto, doctor.id) is None


def test_photo_permissions(api, centre, other_centre):
    doctor = make_doctor(centre)
    assert _upload(api(), doctor.id, image_bytes()).status_code == 401
    assert _upload(api(make_staff(Role.DOCTOR, centre)), doctor.id, image_bytes()).status_code == 403
    assert (
        _upload(api(make_staff(Role.CENTRE_ADMIN, other_centre)), doctor.id, image_bytes()).status_code == 404
    )
    assert _upload(api(make_staff(Role.CASHIER, centre)), doctor.id, image_bytes()).status_code == 403
    assert (
        api(make_staff(Role.NURSE, centre)).get(f"{URL}/{doctor.id}/photo").json["code"] == "photo_not_found"
    )


def test_public_photo_only_for_approved_doctors(api, centre):
    pending = make_doctor(centre, approved=False)
    _upload(api(make_staff(Role.CENTRE_ADMIN, centre)), pending.id, image_bytes())
    assert db.session.get(DoctorPhoto, pending.id) is not None
    assert api().get(f"/mp/v1/doctors/{pending.id}/photo").status_code == 404
