"""The printed agreement (签约协议打印), its public verification, and the scanned signed paper copy.

- `render_agreement_pdf(contract)`: the agreement as an A4 PDF in Chinese with the embedded font
  (`app.core.pdf`): parties, period, packages and fees, every clause of the contract's stored
  snapshot in order (never re-rendered from the template: the PDF prints exactly what was
  signed), the captured signature images or blank lines for signing on paper, time and place,
  the agreement's SHA-256 (short form) and a QR code to the verification URL. The resident's ID
  number is masked (last 4 characters) and the phone is never printed.
- `print_agreement(contract_id, actor)`: the staff print: `print_count` incremented by one
  conditional UPDATE (the returned count says print or reprint, whatever the concurrency),
  history (`print` / `reprint`) and audit.
- `verify(token, sha256)`: what the QR code answers to anyone: contract number, status, period,
  centre and team — nothing personal — and whether a hash matches the stored agreement.
- `attach_scanned_copy(...)`: the signed paper (PDF, JPEG or PNG ≤ 10 MB), type sniffed from the
  content, images re-encoded with Pillow (metadata dropped), PDFs with active content refused.

Nothing here commits; routes do.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import current_app
from itsdangerous import BadData, Signer
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, Spacer
from sqlalchemy import select, update
from sqlalchemy.orm import defer

from app.contracts.models import (
    Contract,
    ContractAttachment,
    ContractSignature,
    ContractStatus,
    SignatureRole,
    SigningChannel,
    SigningWay,
)
from app.contracts.models.contracts import STATUS_LABELS
from app.contracts.services.core import record_event
from app.core import audit, clock, images, pdf
from app.core.auth import Actor
from app.core.crypto import mask_id_number
from app.core.db import db
from app.core.errors import BusinessRuleViolation, Conflict, DomainError, NotFound
from app.core.scope import SKIP_SCOPE, get_or_404, get_unscoped
from app.doctors.models import Doctor
from app.institutions.models import Institution
from app.residents.models import Resident
from app.residents.models.codes import GUARDIAN_RELATIONSHIPS, HOUSEHOLD_RELATIONSHIPS, ID_TYPE_LABELS, IdType
from app.teams.models import Team
from payments.base import fen_to_yuan

log = logging.getLogger(__name__)

DEFAULT_TITLE = "家庭医生签约服务协议书"
VERIFY_SALT = "luohu.contract.verify"
VERIFY_PATH = "/api/v1/contracts/verify/"
SHORT_HASH_LENGTH = 16  # hex characters printed (64 bits); verification accepts 16..64
UNSCOPED = {SKIP_SCOPE: True}

CHANNEL_LABELS: Mapping[str, str] = {
    SigningChannel.MINI_PROGRAM: "小程序网络预申请",
    SigningChannel.PARTNER_APP: "健康罗湖网络预申请",
    SigningChannel.DESK: "诊间签约",
    SigningChannel.HOME_VISIT: "上门签约",
    SigningChannel.IMPORT: "历史数据导入",
}
SIGNING_WAY_LABELS: Mapping[str, str] = {
    SigningWay.SELF: "本人签署",
    SigningWay.PROXY: "家属代签",
    SigningWay.GUARDIAN: "监护人代签",
    SigningWay.HOUSEHOLD: "家庭签约（户代表签署）",
}
PACKAGE_KIND_LABELS: Mapping[str, str] = {"basic": "基础包", "personalised": "个性化服务包"}
_RELATIONSHIP_LABELS: Mapping[str, str] = {
    **HOUSEHOLD_RELATIONSHIPS,
    **GUARDIAN_RELATIONSHIPS,
    "parent": "父母",
    "guardian": "监护人",
    "self": "本人",
}


def relationship_label(code: str | None) -> str:
    if not code:
        return ""
    return _RELATIONSHIP_LABELS.get(code, code)


# --- verification token and URL -----------------------------------------------------------------------


def _signer() -> Signer:
    return Signer(current_app.config["SECRET_KEY"], salt=VERIFY_SALT)


def verification_token(contract_id: uuid.UUID) -> str:
    """The contract id (base64url of its 16 bytes) signed with SECRET_KEY: short enough for a
    robust printed QR code, and without expiry (the paper lives for years)."""
    encoded = base64.urlsafe_b64encode(contract_id.bytes).rstrip(b"=")
    return _signer().sign(encoded).decode("ascii")


def contract_id_from_token(token: str) -> uuid.UUID | None:
    try:
        encoded = _signer().unsign(token.encode("utf-8"))
        return uuid.UUID(bytes=base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
    except (BadData, ValueError):  # bad signature, bad base64 (binascii.Error), not 16 bytes
        return None


def verification_url(contract: Contract) -> str:
    base = str(current_app.config["PAYMENT_PUBLIC_BASE_URL"]).rstrip("/")
    return f"{base}{VERIFY_PATH}{verification_token(contract.id)}"


def short_hash(sha256: str) -> str:
    """The printed form: the first 16 hex characters in groups of four."""
    head = sha256[:SHORT_HASH_LENGTH].upper()
    return " ".join(head[i : i + 4] for i in range(0, len(head), 4))


# --- the PDF -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementParties:
    centre: Institution | None
    team: Team | None
    doctor: Doctor | None
    resident: Resident | None
    signatures: dict[str, ContractSignature]


def load_parties(contract: Contract) -> AgreementParties:
    """The rows the agreement names. Access to the contract was checked by the caller; the resident
    may be managed by another centre than the signing team's, so these reads are not centre-scoped."""
    signatures = {
        s.role: s
        for s in db.session.execute(
            select(ContractSignature).where(ContractSignature.contract_id == contract.id)
        ).scalars()
    }
    return AgreementParties(
        centre=get_unscoped(Institution, contract.institution_id),
        team=get_unscoped(Team, contract.team_id),
        doctor=get_unscoped(Doctor, contract.doctor_id),
        resident=get_unscoped(Resident, contract.resident_id),
        signatures=signatures,
    )


def _date(value: date) -> str:
    return f"{value:%Y年%m月%d日}"


def _time(value: datetime) -> str:
    return f"{clock.local(value):%Y年%m月%d日 %H:%M}"


def agreement_title(contract: Contract) -> str:
    """The template title the agreement was signed under (first line of the stored text)."""
    first = contract.agreement_text.split("\n", 1)[0].strip() if contract.agreement_text else ""
    return first or DEFAULT_TITLE


def _id_line(resident: Resident) -> str:
    try:
        kind = ID_TYPE_LABELS[IdType(resident.id_type)]
    except ValueError:
        kind = "证件"
    return f"{kind} {mask_id_number(resident.id_number) or ''}"


def _signature_cell(
    styles: pdf.CJKStyles,
    *,
    heading: str,
    signature: ContractSignature | None,
    name_line: str,
    signed_on: str,
) -> list[Flowable]:
    cell: list[Flowable] = [pdf.para(heading, styles.cell)]
    picture: Flowable | None = None
    if signature is not None:
        try:
            picture = pdf.image(signature.image, max_width=55 * mm, max_height=20 * mm)
        except ValueError:
            log.warning("unreadable signature image", extra={"signature_id": str(signature.id)})
    if picture is not None:
        picture.hAlign = "LEFT"
        cell.append(picture)
    else:
        cell.extend([Spacer(1, 10 * mm), pdf.para("签字：______________________", styles.cell)])
    cell.append(pdf.para(name_line, styles.cell))
    cell.append(pdf.para(f"日期：{signed_on}", styles.cell))
    return cell


def render_agreement_pdf(contract: Contract, *, copy_no: int | None = None) -> bytes:
    """The agreement as signed, as an A4 PDF (see the module doc). `copy_no` prints "第 n 次打印"."""
    parties = load_parties(contract)
    styles = pdf.cjk_styles()
    centre_name = parties.centre.name if parties.centre else ""
    team_name = parties.team.name if parties.team else ""
    doctor_name = parties.doctor.name if parties.doctor else ""
    resident = parties.resident
    title = agreement_title(contract)
    width = 174 * mm  # A4 minus the margins

    story: list[Any] = [
        pdf.para(title, styles.title),
        pdf.para(f"协议编号：{contract.contract_no}", styles.subtitle),
    ]

    # Parties and terms.
    party_a = f"{centre_name}　家庭医生团队：{team_name}　家庭医生：{doctor_name}"
    if parties.centre is not None and (parties.centre.address or parties.centre.phone):
        party_a += f"\n地址：{parties.centre.address or ''}　电话：{parties.centre.phone or ''}"
    party_b = "" if resident is None else f"{resident.name}　{_id_line(resident)}"
    rows: list[list[Any]] = [
        ["服务方", party_a],
        ["签约居民", party_b],
    ]
    if contract.signing_way != SigningWay.SELF:
        signer = contract.signer_name or ""
        if not signer and contract.signer_resident_id is not None:
            signer_row = get_unscoped(Resident, contract.signer_resident_id)
            signer = signer_row.name if signer_row is not None else ""
        relation = relationship_label(contract.signer_relationship)
        way = SIGNING_WAY_LABELS.get(contract.signing_way, contract.signing_way)
        rows.append(["签署人", f"{signer}（与居民关系：{relation or '未登记'}；{way}）"])
    rows += [
        ["服务期限", f"{_date(contract.period_start)} 至 {_date(contract.period_end)}"],
        ["签约方式", CHANNEL_LABELS.get(contract.channel, contract.channel)],
        ["协议状态", STATUS_LABELS.get(contract.status, contract.status)],
    ]
    story += [pdf.table(rows, [30 * mm, width - 30 * mm], styles=styles), Spacer(1, 4 * mm)]

    # Packages and fees (integer fen -> exact yuan strings).
    fee_rows: list[list[Any]] = [["服务包", "类型", "标准价格（元）", "财政补助（元）", "个人自付（元）"]]
    for package in sorted(contract.packages, key=lambda p: (p.kind != "basic", p.code)):
        fee_rows.append(
            [
                f"{package.name}（第{package.version}版）",
                PACKAGE_KIND_LABELS.get(package.kind, package.kind),
                fen_to_yuan(package.price_fen),
                fen_to_yuan(package.subsidy_fen),
                fen_to_yuan(package.self_pay_fen),
            ]
        )
    fee_rows.append(
        [
            "合计",
            "",
            fen_to_yuan(contract.price_fen),
            fen_to_yuan(contract.subsidy_fen),
            fen_to_yuan(contract.self_pay_fen),
        ]
    )
    story += [
        pdf.para("服务包及费用", styles.heading),
        pdf.table(
            fee_rows,
            [62 * mm, 28 * mm, 28 * mm, 28 * mm, 28 * mm],
            styles=styles,
            header=True,
            amounts=(2, 3, 4),
        ),
    ]

    # The clauses exactly as stored at signing.
    story.append(pdf.para("协议条款", styles.heading))
    if not contract.clauses:
        story.append(pdf.para("（本签约未附协议条款。）", styles.body))
    for clause in contract.clauses:
        number = clause.get("number")
        heading = f"第{number}条 {clause.get('title', '')}" if number else str(clause.get("title", ""))
        story.append(pdf.para(heading, styles.heading))
        story.append(pdf.para(str(clause.get("text", "")), styles.body))

    # Signatures: the captured images, else lines to sign on paper.
    signed_on = (
        _date(clock.local(contract.signed_at).date()) if contract.signed_at else "______年____月____日"
    )
    resident_signature = parties.signatures.get(SignatureRole.RESIDENT)
    resident_name = resident.name if resident is not None else ""
    if contract.signing_way == SigningWay.SELF:
        resident_line = f"居民：{resident_name}"
    else:
        signer_name = (resident_signature.signer_name if resident_signature else None) or contract.signer_name
        relation = relationship_label(contract.signer_relationship)
        resident_line = (
            f"居民：{resident_name}　签署人：{signer_name or '__________'}"
            f"（关系：{relation or '__________'}）"
        )
    doctor_signature = parties.signatures.get(SignatureRole.DOCTOR)
    signature_table = pdf.table(
        [
            [
                _signature_cell(
                    styles,
                    heading="签约居民（或代签人）签字",
                    signature=resident_signature,
                    name_line=resident_line,
                    signed_on=signed_on,
                ),
                _signature_cell(
                    styles,
                    heading="家庭医生签字",
                    signature=doctor_signature,
                    name_line=f"家庭医生：{doctor_name}",
                    signed_on=signed_on,
                ),
            ]
        ],
        [width / 2, width / 2],
        styles=styles,
        extra=[("VALIGN", (0, 0), (-1, -1), "TOP")],
    )
    signed_at = _time(contract.signed_at) if contract.signed_at else "______年____月____日 ____:____"
    place = contract.signed_place or "________________________"
    story.append(
        KeepTogether(
            [
                pdf.para("签字确认", styles.heading),
                signature_table,
                Spacer(1, 2 * mm),
                pdf.para(f"签约时间：{signed_at}　　签约地点：{place}", styles.body),
            ]
        )
    )

    # Verification: hash and QR code.
    url = verification_url(contract)
    lines = [
        f"协议校验码（SHA-256）：{short_hash(contract.agreement_sha256)}"
        if contract.agreement_sha256
        else "协议校验码：无（未附协议条款）",
        "扫描右侧二维码可核验本协议的真实性和当前状态（不显示个人信息）。",
        f"打印时间：{_time(clock.now())}" + (f"　第 {copy_no} 次打印" if copy_no else ""),
    ]
    info = [pdf.para(line, styles.small) for line in lines]
    info.append(pdf.para(url, styles.small))
    story += [
        Spacer(1, 4 * mm),
        pdf.table(
            [[info, pdf.qr_code(url, size=30 * mm)]],
            [width - 36 * mm, 36 * mm],
            styles=styles,
            grid=False,
            extra=[("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("ALIGN", (1, 0), (1, 0), "RIGHT")],
        ),
    ]
    return pdf.build_pdf(story, title=f"{title} {contract.contract_no}", subject=title, author=centre_name)


# --- printing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrintedAgreement:
    contract: Contract
    data: bytes
    print_count: int
    reprint: bool

    @property
    def filename(self) -> str:
        return f"agreement-{self.contract.contract_no}.pdf"


def check_printable(contract_id: uuid.UUID) -> Contract:
    """The contract the caller may print (404 across centres), without counting a print."""
    return get_or_404(Contract, contract_id, object_type="contract", action="print")


def print_agreement(contract_id: uuid.UUID, actor: Actor) -> PrintedAgreement:
    """Count one print (conditional UPDATE; the returned count decides print vs reprint), write
    history and audit, and render the PDF with the copy number."""
    contract = get_or_404(Contract, contract_id, object_type="contract", action="print")
    now = clock.now()
    count = db.session.execute(
        update(Contract)
        .where(Contract.id == contract.id)
        .values(print_count=Contract.print_count + 1, last_printed_at=now)
        .returning(Contract.print_count)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    db.session.refresh(contract)
    action = "print" if count == 1 else "reprint"
    record_event(contract, action, actor=actor, channel=contract.channel, detail={"print_count": count})
    audit.record(
        f"contract.{action}",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"print_count": count},
    )
    data = render_agreement_pdf(contract, copy_no=count)
    return PrintedAgreement(contract, data, count, action == "reprint")


# --- public verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    contract_no: str
    status: str
    status_label: str
    in_force: bool
    period_start: date
    period_end: date
    centre_name: str
    team_name: str
    sha256_matches: bool | None
    checked_at: datetime


def _verify_not_found() -> NotFound:
    return NotFound("未找到该签约协议，二维码无效或已被篡改", code="contract_verification_invalid")


def verify(token: str, sha256: str | None = None) -> Verification:
    """Answer the QR code: the contract's number, status, period, centre and team (no personal
    data), and whether `sha256` (the printed short form or the full hash) matches the agreement."""
    contract_id = contract_id_from_token(token)
    if contract_id is None:
        raise _verify_not_found()
    contract = get_unscoped(Contract, contract_id)
    if contract is None:
        raise _verify_not_found()
    centre = get_unscoped(Institution, contract.institution_id)
    team = get_unscoped(Team, contract.team_id)
    matches: bool | None = None
    if sha256 is not None:
        given = re.sub(r"[\s-]", "", sha256).lower()
        stored = contract.agreement_sha256.lower()
        matches = bool(stored) and len(given) >= SHORT_HASH_LENGTH and stored.startswith(given)
    today = clock.today_local()
    return Verification(
        contract_no=contract.contract_no,
        status=contract.status,
        status_label=STATUS_LABELS.get(contract.status, contract.status),
        in_force=contract.status == ContractStatus.ACTIVE
        and contract.period_start <= today <= contract.period_end,
        period_start=contract.period_start,
        period_end=contract.period_end,
        centre_name=centre.name if centre else "",
        team_name=team.name if team else "",
        sha256_matches=matches,
        checked_at=clock.now(),
    )


# --- the scanned signed paper -------------------------------------------------------------------------

MAX_SCAN_BYTES = 10 * 1024 * 1024
MAX_SCAN_SIDE = 12000  # pixels: an A4 page at 1200 dpi
SCAN_STATUSES = frozenset(
    {
        ContractStatus.AWAITING_PAYMENT,
        ContractStatus.ACTIVE,
        ContractStatus.EXPIRED,
        ContractStatus.TERMINATED,
    }
)
PDF_MIMETYPE = "application/pdf"
_PDF_HEADER = re.compile(rb"\A%PDF-[12]\.\d")
# Active content a scanned page never needs (best effort: compressed object streams can hide names).
_PDF_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|EmbeddedFiles?|RichMedia|XFA)(?![A-Za-z0-9])")
EXTENSIONS = {PDF_MIMETYPE: "pdf", "image/jpeg": "jpg", "image/png": "png"}


class ScanTooLarge(DomainError):
    status = 413
    code = "scanned_copy_too_large"
    message = "扫描件不能超过 10 MB"


def _invalid_scan(message: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(message, code="invalid_scanned_copy", errors={"file": [message]})


@dataclass(frozen=True)
class CleanScan:
    data: bytes
    content_type: str


def _clean_pdf(raw: bytes) -> CleanScan:
    if b"%%EOF" not in raw[-2048:] or b"/Page" not in raw:
        raise _invalid_scan("PDF 文件不完整或已损坏")
    if _PDF_ACTIVE.search(raw):
        raise _invalid_scan("PDF 含有脚本、附件等活动内容，请直接上传扫描生成的 PDF 或图片")
    return CleanScan(raw, PDF_MIMETYPE)


def _clean_image(raw: bytes, kind: str) -> CleanScan:
    try:
        image = images.reencode(
            raw,
            kind,
            max_side=MAX_SCAN_SIDE,
            jpeg_quality=90,
            upright={"JPEG", "PNG"},  # phone photos: turn the page upright
            normalise_png_mode=True,
        )
    except images.ImageTooLarge as exc:
        raise _invalid_scan(f"图片尺寸不能超过 {MAX_SCAN_SIDE}×{MAX_SCAN_SIDE} 像素") from exc
    except images.ImageUnreadable as exc:
        raise _invalid_scan("图片文件已损坏或无法识别") from exc
    return CleanScan(image.data, image.content_type)


def clean_scan(raw: bytes) -> CleanScan:
    """Size and type (by content, never by name or declared type); images re-encoded."""
    if len(raw) > MAX_SCAN_BYTES:
        raise ScanTooLarge()
    if not raw:
        raise _invalid_scan("扫描件文件为空")
    if _PDF_HEADER.match(raw):
        return _clean_pdf(raw)
    kind = images.sniff(raw)
    if kind is not None:
        return _clean_image(raw, kind)
    raise _invalid_scan("扫描件须为 PDF、JPEG 或 PNG 文件")


def attach_scanned_copy(contract_id: uuid.UUID, raw: bytes, actor: Actor) -> ContractAttachment:
    """Store the scanned signed paper. The same file uploaded again returns the stored one."""
    contract = get_or_404(Contract, contract_id, object_type="contract", action="update")
    if contract.status not in SCAN_STATUSES:
        raise Conflict(
            f"签约当前状态为“{STATUS_LABELS.get(contract.status, contract.status)}”，尚无签字纸质协议可上传",
            code="scanned_copy_not_allowed",
            errors={"status": [contract.status]},
        )
    scan = clean_scan(raw)
    digest = hashlib.sha256(scan.data).hexdigest()
    latest = _latest_scan(contract.id)
    if latest is not None and latest.sha256 == digest:  # a retried upload: nothing new
        return latest
    attachment = ContractAttachment(
        id=uuid.uuid4(),
        contract_id=contract.id,
        kind="scanned_copy",
        content_type=scan.content_type,
        data=scan.data,
        size=len(scan.data),
        sha256=digest,
        uploaded_by=actor.id,
        uploaded_at=clock.now(),
    )
    db.session.add(attachment)
    db.session.flush()
    detail = {
        "attachment_id": str(attachment.id),
        "content_type": scan.content_type,
        "size": attachment.size,
        "sha256": digest,
    }
    record_event(contract, "scanned_copy", actor=actor, channel=contract.channel, detail=detail)
    audit.record(
        "contract.scanned_copy.upload",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail=detail,
    )
    return attachment


def _latest_scan(contract_id: uuid.UUID) -> ContractAttachment | None:
    return db.session.execute(
        select(ContractAttachment)
        .where(ContractAttachment.contract_id == contract_id, ContractAttachment.kind == "scanned_copy")
        .order_by(ContractAttachment.uploaded_at.desc(), ContractAttachment.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def latest_scanned_copy(contract_id: uuid.UUID) -> tuple[Contract, ContractAttachment]:
    contract = get_or_404(Contract, contract_id, object_type="contract")
    attachment = _latest_scan(contract.id)
    if attachment is None:
        raise NotFound("该签约尚未上传签字纸质协议的扫描件", code="scanned_copy_not_found")
    audit.record(
        "contract.scanned_copy.read",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"attachment_id": str(attachment.id)},
    )
    return contract, attachment


def list_attachments(contract_id: uuid.UUID) -> list[ContractAttachment]:
    """The contract's photos and scanned copies, newest first (metadata only is served)."""
    contract = get_or_404(Contract, contract_id, object_type="contract")
    rows = list(
        db.session.execute(
            select(ContractAttachment)
            .options(defer(ContractAttachment.data))
            .where(ContractAttachment.contract_id == contract.id)
            .order_by(ContractAttachment.uploaded_at.desc(), ContractAttachment.id.desc())
        ).scalars()
    )
    audit.record(
        "contract.attachments.read",
        "contract",
        contract.id,
        resident_id=contract.resident_id,
        institution_id=contract.institution_id,
        detail={"count": len(rows)},
    )
    return rows
