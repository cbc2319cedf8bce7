"""Printing the agreement (PDF in Chinese, embedded font), its QR verification, print and reprint
counts, and the scanned signed paper copy.

The PDF is read back with poppler (`pdftotext`, `pdffonts`, `pdftoppm`) and the QR code decoded
with `zbarimg`, as a person at the desk would print and scan it.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from app.contracts.models import (
    AgreementClause,
    Contract,
    ContractAttachment,
    ContractEvent,
    ContractSignature,
    ContractStatus,
    SignatureRole,
    SigningWay,
)
from app.contracts.services import printing
from app.contracts.services.core import SYSTEM, Signer, create_contract
from app.core.audit import AuditEvent
from app.core.auth import Role
from app.core.db import commit, db
from tests.contracts.factories import SigningWorld, make_package, signing_world
from tests.doctors.support import multipart
from tests.factories import make_staff

PERSONALISED_SERVICES = "每月上门随访一次，并为甲方制定个性化运动处方（个性化约定）。"


# --- helpers ------------------------------------------------------------------------------------------


def make_contract(
    world: SigningWorld,
    *,
    status: ContractStatus = ContractStatus.ACTIVE,
    signer: Signer = Signer(),
    with_fee_package: bool = True,
    values: dict[str, Any] | None = None,
) -> Contract:
    packages = list(world.packages)
    if with_fee_package:
        packages.append(
            make_package(name="老年人健康管理包", price_fen=12345, subsidy_fen=10000, self_pay_fen=2345)
        )
    contract = create_contract(
        resident=world.resident,
        team=world.team,
        doctor=world.doctor,
        packages=packages,
        status=status,
        channel="desk",
        actor=SYSTEM,
        signer=signer,
        template=world.template,
        clause_overrides={"services": PERSONALISED_SERVICES},
        values=values,
    )
    commit()
    return contract


def signature_png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (300, 100), (255, 255, 255))
    for x in range(20, 280):
        image.putpixel((x, 50 + (x % 17) - 8), colour)
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def add_signature(contract: Contract, role: str, name: str | None) -> None:
    data = signature_png((0, 0, 0))
    db.session.add(
        ContractSignature(
            id=uuid.uuid4(),
            contract_id=contract.id,
            role=role,
            signer_name=name,
            image=data,
            sha256=hashlib.sha256(data).hexdigest(),
        )
    )
    commit()


def pdftotext(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def decode_qr(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "agreement.pdf"
    path.write_bytes(data)
    subprocess.run(["pdftoppm", "-png", "-r", "150", str(path), str(tmp_path / "page")], check=True)
    found: list[str] = []
    for page in sorted(tmp_path.glob("page*.png")):
        result = subprocess.run(
            ["zbarimg", "-q", "--raw", str(page)], capture_output=True, text=True, check=False
        )
        found += [line for line in result.stdout.splitlines() if line]
    assert len(found) == 1, found
    return found[0]


def events(contract: Contract) -> list[str]:
    return list(
        db.session.execute(
            select(ContractEvent.action)
            .where(ContractEvent.contract_id == contract.id)
            .order_by(ContractEvent.id)
        ).scalars()
    )


def pdf_path(contract: Contract) -> str:
    return f"/api/v1/contracts/{contract.id}/agreement.pdf"


def a_pdf() -> bytes:
    """A real one-page PDF, as a scanner would produce."""
    from app.core import pdf

    return pdf.build_pdf([pdf.para("扫描件", pdf.cjk_styles().body)], title="scan")


def a_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (200, 280), (240, 240, 240)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def upload(api: Any, user: Any, contract: Contract, content: bytes, name: str, kind: str) -> Any:
    return api(user).post(
        f"/api/v1/contracts/{contract.id}/scanned-copy", **multipart("file", name, content, kind)
    )


# --- the PDF -----------------------------------------------------------------------------------------


def test_the_pdf_prints_the_agreement_as_signed_in_chinese_with_the_font_embedded(api, world, tmp_path):
    contract = make_contract(world)
    response = api(world.doctor_user).get(pdf_path(contract))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "private, no-store"
    data = response.get_data()
    text = pdftotext(data)
    flat = squeeze(text)

    assert "罗湖区家庭医生签约服务协议书" in text  # the template's title
    assert contract.contract_no in flat
    for name in (world.centre.name, world.team.name, world.doctor.name, world.resident.name):
        assert name in flat
    for clause in contract.clauses:
        assert f"第{clause['number']}条{clause['title']}" in flat
        assert squeeze(clause["text"]) in flat
    assert squeeze(PERSONALISED_SERVICES) in flat
    # Fees: each package and the total, exact yuan.
    assert "基础服务包" in flat and "老年人健康管理包" in flat
    assert "123.45" in flat and "100.00" in flat and "23.45" in flat
    # The ID number masked to its last 4; neither the full number nor the phone printed.
    id_number, phone = world.resident.id_number, world.resident.phone
    assert "*" * (len(id_number) - 4) + id_number[-4:] in flat
    assert id_number not in flat and id_number[:-4] not in flat
    assert phone and phone not in flat and phone[-8:] not in flat
    # Blank signature lines for signing on paper, time and place to fill in, page numbers.
    assert "签字：____" in flat and "签约地点：____" in flat
    assert "第1页共" in flat
    assert f"SHA-256）：{squeeze(printing.short_hash(contract.agreement_sha256))}" in flat
    assert "第1次打印" in flat

    path = tmp_path / "agreement.pdf"
    path.write_bytes(data)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in fonts.splitlines()[2:] if line.strip()]
    assert rows and all(row[-5] == "yes" for row in rows), fonts  # every font embedded
    assert all("WenQuanYiMicroHei" in row[0] for row in rows), fonts


def test_the_pdf_prints_the_stored_clauses_not_the_current_template(api, world):
    contract = make_contract(world)
    signed_text = next(c["text"] for c in contract.clauses if c["key"] == "privacy")
    clause = db.session.execute(
        select(AgreementClause).where(
            AgreementClause.template_id == world.template.id, AgreementClause.key == "privacy"
        )
    ).scalar_one()
    clause.text = "模板后来改成了这段新文字。"
    commit()
    flat = squeeze(pdftotext(api(world.nurse_user).get(pdf_path(contract)).get_data()))
    assert squeeze(signed_text) in flat
    assert "模板后来改成了这段新文字" not in flat


def test_captured_signatures_are_printed_with_the_proxy_and_relationship(api, world, tmp_path):
    contract = make_contract(
        world,
        signer=Signer(way=SigningWay.PROXY, name="李秀英", relationship="child"),
        values={"signed_place": "桂园街道老围社区居民家中"},
    )
    contract.signed_at = contract.created_at
    commit()
    add_signature(contract, SignatureRole.RESIDENT, "李秀英")
    add_signature(contract, SignatureRole.DOCTOR, world.doctor.name)
    data = api(world.doctor_user).get(pdf_path(contract)).get_data()
    flat = squeeze(pdftotext(data))
    assert "李秀英" in flat and "子女" in flat and "家属代签" in flat
    assert "桂园街道老围社区居民家中" in flat
    assert "签字：____" not in flat  # both signatures are images
    path = tmp_path / "signed.pdf"
    path.write_bytes(data)
    listing = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True)
    assert len(listing.stdout.splitlines()[2:]) == 2  # the two signature images


def test_the_qr_code_verifies_the_contract_without_personal_data(api, world, tmp_path, app):
    contract = make_contract(world)
    data = api(world.doctor_user).get(pdf_path(contract)).get_data()
    url = decode_qr(data, tmp_path)
    base = app.config["PAYMENT_PUBLIC_BASE_URL"].rstrip("/")
    assert url.startswith(f"{base}/api/v1/contracts/verify/")
    assert url == printing.verification_url(contract)
    assert squeeze(url) in squeeze(pdftotext(data))

    anonymous = api(None)
    answer = anonymous.get(url.removeprefix(base))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.json
    assert body["contract_no"] == contract.contract_no
    assert body["status"] == "active" and body["status_label"] == "已签约" and body["in_force"] is True
    assert body["centre_name"] == world.centre.name and body["team_name"] == world.team.name
    assert body["period_start"] == contract.period_start.isoformat()
    assert body["sha256_matches"] is None
    raw = answer.get_data(as_text=True)
    resident = world.resident
    for secret in (
        resident.name,
        resident.id_number,
        resident.phone,
        str(resident.id),
        resident.id_number[-4:],
    ):
        assert secret not in raw

    printed = printing.short_hash(contract.agreement_sha256)  # "9CDF F84E 3DE8 133D"
    path = url.removeprefix(base)
    assert anonymous.get(path, query_string={"sha256": printed}).json["sha256_matches"] is True
    assert (
        anonymous.get(path, query_string={"sha256": contract.agreement_sha256}).json["sha256_matches"] is True
    )
    assert anonymous.get(path, query_string={"sha256": "0" * 16}).json["sha256_matches"] is False
    assert anonymous.get(path, query_string={"sha256": "xyz"}).status_code == 422


def test_a_bad_or_forged_token_is_a_404(api, world):
    contract = make_contract(world)
    token = printing.verification_token(contract.id)
    anonymous = api(None)
    forged_id = printing.verification_token(uuid.uuid4())
    for bad in ("nonsense", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged_id, "a.b"):
        response = anonymous.get(f"/api/v1/contracts/verify/{bad}")
        assert response.status_code == 404, bad
        assert response.json["code"] == "contract_verification_invalid"
    # A token signed with another key (another deployment, or a guess) does not verify.
    from itsdangerous import Signer as ForeignSigner

    foreign = (
        ForeignSigner("another-secret", salt=printing.VERIFY_SALT).sign(token.split(".")[0].encode()).decode()
    )
    assert anonymous.get(f"/api/v1/contracts/verify/{foreign}").status_code == 404


def test_verification_shows_a_withdrawn_application_as_not_in_force(api, world):
    contract = make_contract(world, status=ContractStatus.PENDING_REVIEW, with_fee_package=False)
    body = api(None).get(f"/api/v1/contracts/verify/{printing.verification_token(contract.id)}").json
    assert body["status"] == "pending_review" and body["in_force"] is False


# --- print and reprint -------------------------------------------------------------------------------


def test_print_then_reprint_counts_with_history_and_audit(api, world):
    contract = make_contract(world)
    assert contract.print_count == 0
    first = api(world.doctor_user).get(pdf_path(contract))
    second = api(world.admin).get(pdf_path(contract))
    assert first.status_code == second.status_code == 200
    db.session.refresh(contract)
    assert contract.print_count == 2 and contract.last_printed_at is not None
    assert events(contract)[-2:] == ["print", "reprint"]
    assert "第2次打印" in squeeze(pdftotext(second.get_data()))
    audits = list(
        db.session.execute(
            select(AuditEvent.action, AuditEvent.subject_resident_id, AuditEvent.actor_id)
            .where(AuditEvent.object_id == str(contract.id), AuditEvent.action.like("contract.%print"))
            .order_by(AuditEvent.id)
        )
    )
    assert [a.action for a in audits] == ["contract.print", "contract.reprint"]
    assert {a.subject_resident_id for a in audits} == {str(world.resident.id)}
    assert [a.actor_id for a in audits] == [str(world.doctor_user.id), str(world.admin.id)]
    event = db.session.execute(
        select(ContractEvent).where(
            ContractEvent.contract_id == contract.id, ContractEvent.action == "reprint"
        )
    ).scalar_one()
    assert event.actor_id == world.admin.id and event.actor_role == "centre_admin"
    assert event.detail == {"print_count": 2}


def test_a_head_request_does_not_count_a_print(api, world):
    contract = make_contract(world)
    assert api(world.doctor_user).request("HEAD", pdf_path(contract)).status_code == 200
    db.session.refresh(contract)
    assert contract.print_count == 0 and "print" not in events(contract)


# --- scanned copy ------------------------------------------------------------------------------------


def test_scanned_pdf_upload_download_and_list(api, world):
    contract = make_contract(world)
    scan = a_pdf()
    response = upload(api, world.nurse_user, contract, scan, "签字协议.pdf", "application/pdf")
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.json
    assert body["kind"] == "scanned_copy" and body["content_type"] == "application/pdf"
    assert body["size"] == len(scan) and body["sha256"] == hashlib.sha256(scan).hexdigest()
    assert body["uploaded_by"] == str(world.nurse_user.id)
    assert events(contract)[-1] == "scanned_copy"

    download = api(world.doctor_user).get(f"/api/v1/contracts/{contract.id}/scanned-copy")
    assert download.status_code == 200
    assert download.mimetype == "application/pdf" and download.get_data() == scan
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"

    # The same file again (a retried upload) stores nothing new.
    again = upload(api, world.nurse_user, contract, scan, "again.pdf", "application/pdf")
    assert again.status_code == 201 and again.json["id"] == body["id"]

    listing = api(world.admin).get(f"/api/v1/contracts/{contract.id}/attachments")
    assert listing.status_code == 200
    assert [a["id"] for a in listing.json] == [body["id"]]
    assert "data" not in listing.json[0] and listing.json[0]["kind_label"] == "签字纸质协议扫描件"
    reads = db.session.execute(
        select(AuditEvent.action).where(
            AuditEvent.object_id == str(contract.id), AuditEvent.subject_resident_id == str(world.resident.id)
        )
    ).scalars()
    assert {"contract.scanned_copy.upload", "contract.scanned_copy.read", "contract.attachments.read"} <= set(
        reads
    )


def test_a_scanned_image_is_sniffed_and_re_encoded_and_becomes_the_latest(api, world):
    contract = make_contract(world)
    assert upload(api, world.doctor_user, contract, a_pdf(), "a.pdf", "application/pdf").status_code == 201
    # A JPEG named .pdf and declared as a PDF: the content decides.
    jpeg = a_jpeg()
    response = upload(api, world.doctor_user, contract, jpeg, "photo.pdf", "application/pdf")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.json["content_type"] == "image/jpeg"
    stored = db.session.get(ContractAttachment, uuid.UUID(response.json["id"]))
    assert stored is not None
    with Image.open(io.BytesIO(stored.data)) as image:
        assert image.format == "JPEG" and image.size == (200, 280)
    download = api(world.doctor_user).get(f"/api/v1/contracts/{contract.id}/scanned-copy")
    assert download.mimetype == "image/jpeg" and download.get_data() == stored.data
    assert download.headers["Content-Disposition"].endswith('-signed.jpg"')

    png = io.BytesIO()
    Image.new("L", (100, 140), 200).save(png, format="PNG")
    response = upload(api, world.doctor_user, contract, png.getvalue(), "scan.png", "image/png")
    assert response.status_code == 201 and response.json["content_type"] == "image/png"
    assert len(api(world.admin).get(f"/api/v1/contracts/{contract.id}/attachments").json) == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("这其实是一个文本文件，不是 PDF。".encode(), "text named .pdf"),
        (b"%PDF-1.4\nthis is only text pretending to be a pdf\n", "a PDF header and nothing else"),
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"broken" * 50, "a broken PNG"),
        (b"\xff\xd8\xff\xe0" + b"broken" * 50, "a broken JPEG"),
        (
            b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>"
            b" endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page >> endobj\n"
            b"trailer << /Root 1 0 R >>\n%%EOF\n",
            "a PDF with JavaScript",
        ),
    ],
    ids=["text", "fake-pdf", "empty", "broken-png", "broken-jpeg", "pdf-javascript"],
)
def test_a_file_that_is_not_a_clean_scan_is_a_422(api, world, content, reason):
    contract = make_contract(world)
    response = upload(api, world.doctor_user, contract, content, "scan.pdf", "application/pdf")
    assert response.status_code == 422, reason
    assert response.json["code"] == "invalid_scanned_copy"
    assert response.json["errors"]["file"]
    assert (
        db.session.execute(
            select(ContractAttachment).where(ContractAttachment.contract_id == contract.id)
        ).first()
        is None
    )


def test_a_scan_over_10_mb_is_a_413(api, world):
    contract = make_contract(world)
    big = b"%PDF-1.4\n" + b"0" * (printing.MAX_SCAN_BYTES - 9 + 1)
    response = upload(api, world.doctor_user, contract, big, "big.pdf", "application/pdf")
    assert response.status_code == 413
    assert response.json["code"] == "scanned_copy_too_large"


def test_no_scan_yet_and_no_signed_paper_yet(api, world):
    contract = make_contract(world, status=ContractStatus.PENDING_REVIEW, with_fee_package=False)
    response = api(world.doctor_user).get(f"/api/v1/contracts/{contract.id}/scanned-copy")
    assert response.status_code == 404 and response.json["code"] == "scanned_copy_not_found"
    response = upload(api, world.doctor_user, contract, a_pdf(), "a.pdf", "application/pdf")
    assert response.status_code == 409 and response.json["code"] == "scanned_copy_not_allowed"
    assert api(world.doctor_user).get(f"/api/v1/contracts/{contract.id}/attachments").json == []


def test_a_missing_file_field_is_a_422(api, world):
    contract = make_contract(world)
    response = api(world.doctor_user).post(
        f"/api/v1/contracts/{contract.id}/scanned-copy", **multipart("other", "a.pdf", a_pdf())
    )
    assert response.status_code == 422


# --- who may ----------------------------------------------------------------------------------------


def test_another_centre_gets_404_and_is_audited(api, world):
    contract = make_contract(world)
    assert upload(api, world.doctor_user, contract, a_pdf(), "a.pdf", "application/pdf").status_code == 201
    elsewhere = signing_world()
    http = api(elsewhere.doctor_user)
    paths = [
        ("GET", pdf_path(contract)),
        ("GET", f"/api/v1/contracts/{contract.id}/scanned-copy"),
        ("GET", f"/api/v1/contracts/{contract.id}/attachments"),
    ]
    for method, path in paths:
        assert http.request(method, path).status_code == 404, path
    response = upload(api, elsewhere.doctor_user, contract, a_pdf(), "b.pdf", "application/pdf")
    assert response.status_code == 404
    db.session.refresh(contract)
    assert contract.print_count == 0
    denied = db.session.execute(
        select(AuditEvent).where(
            AuditEvent.actor_id == str(elsewhere.doctor_user.id), AuditEvent.result == "denied"
        )
    ).scalars()
    assert {(d.object_type, d.object_id) for d in denied} == {("contract", str(contract.id))}


def test_anonymous_is_401_and_roles_without_the_right_are_403(api, world):
    contract = make_contract(world)
    anonymous = api(None)
    assert anonymous.get(pdf_path(contract)).status_code == 401
    assert anonymous.get(f"/api/v1/contracts/{contract.id}/attachments").status_code == 401
    assert upload(api, None, contract, a_pdf(), "a.pdf", "application/pdf").status_code == 401
    cashier = make_staff(Role.CASHIER, world.centre)
    assert api(cashier).get(pdf_path(contract)).status_code == 403
    assert api(cashier).get(f"/api/v1/contracts/{contract.id}/scanned-copy").status_code == 403
    assert upload(api, cashier, contract, a_pdf(), "a.pdf", "application/pdf").status_code == 403
    # The district admin reads the stored paper of any centre but does not print or upload.
    district = make_staff(Role.DISTRICT_ADMIN, None)
    assert api(district).get(pdf_path(contract)).status_code == 403
    assert api(district).get(f"/api/v1/contracts/{contract.id}/attachments").status_code == 200
    assert upload(api, district, contract, a_pdf(), "a.pdf", "application/pdf").status_code == 403


def test_the_mini_program_can_render_the_same_pdf(world):
    """`render_agreement_pdf` is what the resident's "my family doctor" download serves."""
    contract = make_contract(world, with_fee_package=False)
    flat = squeeze(pdftotext(printing.render_agreement_pdf(contract)))
    assert contract.contract_no in flat and "次打印" not in flat
    db.session.refresh(contract)
    assert contract.print_count == 0
