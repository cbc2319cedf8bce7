"""居民健康档案信息卡 (spec §3): generated from the record, its 个人基本信息表 and the resident, never
entered twice (填表说明 1), shown as JSON (masked, DATA-02) and printed as a two-sided card-sized PDF.

Front: 姓名, 性别, 出生日期, 健康档案编号, ABO血型 (A/B/O/AB; blank for 5 不详), Rh血型, 慢性病患病情况
and 过敏史. Back: 家庭住址, 家庭电话, 紧急情况联系人 and 联系人电话, 建档机构名称 and its phone, 责任医生或护士
and their phone, 其他说明 (`HealthRecord.card_remarks`).

慢性病患病情况 uses the spec's suggested storage codes (`CODES["card_chronic_disease"]`: 1 无,
2 高血压, 3 糖尿病, 4 脑卒中, 5 冠心病, 6 哮喘, 7 职业病, 8 其他疾病), mapped from 既往史:
2→高血压, 3→糖尿病, 7→脑卒中, 4→冠心病, 12→职业病; 哮喘 only when a 13 其他 description names it;
every other disease is listed by name under 其他疾病; 无 when 既往史 says 1 无.

Printed copies are masked like the JSON (phones and address); the centre's phone is public
directory data and is shown in full. Each read and each print writes an audit row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from reportlab.lib.units import mm
from reportlab.platypus import KeepInFrame, PageBreak
from sqlalchemy import select

from app.accounts.models import StaffUser
from app.core import audit, pdf
from app.core.auth import current_principal
from app.core.crypto import mask_address, mask_phone
from app.core.db import db
from app.core.scope import get_unscoped
from app.health_records.codes import CODES
from app.health_records.forms.personal import redact
from app.health_records.models import HealthForm, HealthRecord
from app.health_records.services.forms import current_version
from app.health_records.services.payloads import hidden_categories
from app.health_records.services.printing import Printed
from app.health_records.services.records import get_record
from app.residents.models import Resident

PERSONAL_INFO = "personal_info"
CARD_SIZE = (85.6 * mm, 54 * mm)  # ISO/IEC 7810 ID-1, the size of a bank card
CARD_TITLE = "居民健康档案信息卡"

GENDER = {"male": ("1", "男"), "female": ("2", "女")}
ABO_ON_CARD = {"1": "A", "2": "B", "3": "O", "4": "AB"}  # 5 不详 is left blank: the card has no box
RH_ON_CARD = {"1": "Rh阴性", "2": "Rh阳性", "3": "不详"}
# 既往史 code -> 信息卡 code (the diseases the card has a box for).
PAST_TO_CARD = {"2": "2", "3": "3", "7": "4", "4": "5", "12": "7"}
PAST_NONE, PAST_OTHER = "1", "13"
CARD_NONE, CARD_ASTHMA, CARD_OTHER = "1", "6", "8"
_SPLIT = re.compile(r"[、，,；;/\s]+")


@dataclass(frozen=True)
class RecordCard:
    record_id: uuid.UUID
    resident_id: uuid.UUID
    # front (正面)
    name: str
    gender: str | None
    gender_label: str | None
    birth_date: str
    record_no: str
    blood_type_abo: str | None
    blood_type_abo_label: str | None
    blood_type_rh: str | None
    blood_type_rh_label: str | None
    chronic_diseases: list[str]
    chronic_disease_labels: list[str]
    chronic_other: str | None
    allergies: str
    # back (反面)
    home_address: str | None
    home_phone: str | None
    emergency_contact: str | None
    emergency_contact_phone: str | None
    org_name: str
    org_phone: str | None
    responsible_staff: str | None
    responsible_staff_phone: str | None
    remarks: str | None

    FRONT: ClassVar[tuple[str, ...]] = (
        "name",
        "gender",
        "gender_label",
        "birth_date",
        "record_no",
        "blood_type_abo",
        "blood_type_abo_label",
        "blood_type_rh",
        "blood_type_rh_label",
        "chronic_diseases",
        "chronic_disease_labels",
        "chronic_other",
        "allergies",
    )
    BACK: ClassVar[tuple[str, ...]] = (
        "home_address",
        "home_phone",
        "emergency_contact",
        "emergency_contact_phone",
        "org_name",
        "org_phone",
        "responsible_staff",
        "responsible_staff_phone",
        "remarks",
    )

    def as_json(self) -> dict[str, Any]:
        """Clear values: the response schema masks names, phones and the address (DATA-02)."""
        values = asdict(self)
        return {
            "record_id": self.record_id,
            "resident_id": self.resident_id,
            "front": {k: values[k] for k in self.FRONT},
            "back": {k: values[k] for k in self.BACK},
        }


# --- mapping --------------------------------------------------------------------------------


def chronic_from_past(rows: Sequence[dict[str, Any]] | None) -> tuple[list[str], str | None]:
    """慢性病患病情况 (card codes, 其他疾病 names) from the 既往史 rows; ([], None) when unknown."""
    if not rows:
        return [], None
    found: set[str] = set()
    others: list[str] = []
    past = CODES["past_disease"]
    for row in rows:
        code = str(row.get("disease_code") or "")
        desc = str(row.get("disease_desc") or "").strip()
        if code == PAST_NONE or not code:
            continue
        if code in PAST_TO_CARD:
            found.add(PAST_TO_CARD[code])
        elif code == PAST_OTHER:
            for part in [p for p in _SPLIT.split(desc) if p] or [past.label(code)]:
                if "哮喘" in part:
                    found.add(CARD_ASTHMA)
                else:
                    others.append(part)
        else:
            others.append(f"{past.label(code)}（{desc}）" if desc else past.label(code))
    if others:
        found.add(CARD_OTHER)
    if not found:
        return [CARD_NONE], None
    order = CODES["card_chronic_disease"].codes
    return sorted(found, key=order.index), "、".join(dict.fromkeys(others)) or None


def allergies_text(codes: Iterable[str] | None, other: str | None) -> str:
    """过敏史 from 药物过敏史: 无, or the drugs' names (the 其他 option by its written name)."""
    chosen = list(codes or [])
    if not chosen:
        return ""
    if chosen == ["1"]:
        return "无"
    allergy = CODES["drug_allergy"]
    names = [allergy.label(c) for c in chosen if c not in allergy.other and c != allergy.none]
    if any(c in allergy.other for c in chosen):
        names.append((other or "").strip() or "其他")
    return "、".join(names)


def personal_info_of(record: HealthRecord) -> dict[str, Any]:
    """The current 个人基本信息表 payload of the record ({} before it is filled)."""
    form = db.session.execute(
        select(HealthForm).where(
            HealthForm.record_id == record.id,
            HealthForm.form_type == PERSONAL_INFO,
            HealthForm.status == "active",
        )
    ).scalar_one_or_none()
    return {} if form is None else current_version(form).payload


def build_card(record: HealthRecord, hidden: frozenset[str] = frozenset()) -> RecordCard:
    """The card of a record; the 既往史 of categories in `hidden` (DATA-05) is left out."""
    resident = db.session.get(Resident, record.resident_id)
    assert resident is not None
    info = redact(personal_info_of(record), hidden)
    gender, gender_label = GENDER.get(resident.sex, (None, None))
    abo, rh = info.get("blood_type_abo"), info.get("blood_type_rh")
    chronic, chronic_other = chronic_from_past(info.get("past_diseases"))
    staff: StaffUser | None = get_unscoped(StaffUser, record.responsible_doctor_id)  # wherever they work now
    org = record.created_institution
    return RecordCard(
        record_id=record.id,
        resident_id=resident.id,
        name=resident.name,
        gender=gender,
        gender_label=gender_label,
        birth_date=resident.birth_date.isoformat(),
        record_no=record.record_no,
        blood_type_abo=abo if abo in ABO_ON_CARD else None,
        blood_type_abo_label=ABO_ON_CARD.get(abo or ""),
        blood_type_rh=rh if rh in RH_ON_CARD else None,
        blood_type_rh_label=RH_ON_CARD.get(rh or ""),
        chronic_diseases=chronic,
        chronic_disease_labels=CODES["card_chronic_disease"].labels(chronic),
        chronic_other=chronic_other,
        allergies=allergies_text(info.get("drug_allergies"), info.get("drug_allergy_other")),
        home_address=resident.current_address,
        home_phone=resident.phone,
        emergency_contact=info.get("contact_name"),
        emergency_contact_phone=info.get("contact_phone"),
        org_name=org.name,
        org_phone=org.phone,
        responsible_staff=staff.name if staff else None,
        responsible_staff_phone=staff.phone if staff else None,
        remarks=record.card_remarks,
    )


# --- use cases ------------------------------------------------------------------------------


def read_card(record_id: uuid.UUID) -> dict[str, Any]:
    """The card as JSON (values in clear; the response schema masks them). Audited."""
    record = get_record(record_id)
    card = build_card(record, hidden_categories(current_principal()))
    audit.record("read", "health_record_card", record.id, resident_id=record.resident_id)
    return card.as_json()


def print_card(record_id: uuid.UUID) -> Printed:
    """The card-sized PDF, page 1 the front and page 2 the back, masked. Audited."""
    record = get_record(record_id, action="print")
    card = build_card(record, hidden_categories(current_principal()))
    data = render_card(card)
    audit.record("print", "health_record_card", record.id, resident_id=record.resident_id)
    return Printed(data, f"card-{record.record_no}.pdf")


# --- printing -------------------------------------------------------------------------------

CHECKED, UNCHECKED = "■", "□"


def _boxes(options: Sequence[tuple[str, str]], chosen: Iterable[str]) -> str:
    picked = set(chosen)
    return " ".join(f"{CHECKED if code in picked else UNCHECKED}{label}" for code, label in options)


def _grid(
    rows: list[list[Any]],
    st: pdf.CJKStyles,
    spans: Sequence[tuple[int, int, int]],
    shares: tuple[float, float, float, float],
) -> Any:
    """A 4-column label/value grid; `spans` are (row, first column, last column), `shares` the
    columns' parts of the width."""
    width = CARD_SIZE[0] - 2 * 2.5 * mm - 12  # the frame's 6 pt paddings
    widths = [width * share for share in shares]
    extra: list[tuple[Any, ...]] = [
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("LEFTPADDING", (0, 0), (-1, -1), 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), 2),
    ]
    extra += [("SPAN", (first, row), (last, row)) for row, first, last in spans]
    return pdf.table(rows, widths, styles=st, extra=extra)


def _masked(value: str | None, masker: Any) -> str:
    return str(masker(value) or "") if value else ""


def _front(card: RecordCard, st: pdf.CJKStyles) -> list[Any]:
    chronic = _boxes(CODES["card_chronic_disease"].options, card.chronic_diseases)
    if card.chronic_other:
        chronic += f"：{card.chronic_other}"
    rows = [
        ["姓名", card.name, "性别", card.gender_label or ""],
        ["出生日期", card.birth_date, "健康档案编号", card.record_no],
        ["ABO血型", _boxes(list(ABO_ON_CARD.items()), [card.blood_type_abo or ""]), "", ""],
        ["Rh血型", _boxes(list(RH_ON_CARD.items()), [card.blood_type_rh or ""]), "", ""],
        ["慢性病患病情况", chronic, "", ""],
        ["过敏史", card.allergies, "", ""],
    ]
    return [
        pdf.para(CARD_TITLE, st.title),
        _grid(rows, st, [(row, 1, 3) for row in range(2, 6)], (0.255, 0.21, 0.215, 0.32)),
    ]


def _back(card: RecordCard, st: pdf.CJKStyles) -> list[Any]:
    rows = [
        ["家庭住址", _masked(card.home_address, mask_address), "", ""],
        ["家庭电话", _masked(card.home_phone, mask_phone), "", ""],
        [
            "紧急情况联系人",
            card.emergency_contact or "",
            "联系人电话",
            _masked(card.emergency_contact_phone, mask_phone),
        ],
        ["建档机构名称", card.org_name, "联系电话", card.org_phone or ""],
        [
            "责任医生或护士",
            card.responsible_staff or "",
            "联系电话",
            _masked(card.responsible_staff_phone, mask_phone),
        ],
        ["其他说明", card.remarks or "", "", ""],
    ]
    return [
        pdf.para(f"{CARD_TITLE}（反面）", st.subtitle),
        _grid(rows, st, [(0, 1, 3), (1, 1, 3), (5, 1, 3)], (0.255, 0.315, 0.18, 0.25)),
    ]


def render_card(card: RecordCard) -> bytes:
    st = pdf.cjk_styles(6.5)
    story = [
        KeepInFrame(0, 0, _front(card, st), mode="shrink"),
        PageBreak(),
        KeepInFrame(0, 0, _back(card, st), mode="shrink"),
    ]
    return pdf.build_pdf(
        story,
        title=CARD_TITLE,
        subject=card.record_no,
        pagesize=CARD_SIZE,
        margins=(2.5 * mm, 2.5 * mm, 2.5 * mm, 2.5 * mm),
        page_label=None,
    )
