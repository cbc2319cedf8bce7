"""个人基本信息表 (spec §1, 3rd edition): filled once per record at 建档, amended by new versions.

Identity (姓名, 性别, 出生日期, 身份证号, 本人电话, 现住址) is not part of the payload: it belongs to the
`Resident` and is never entered twice; `derive` copies the gender code (GB/T 2261.1: male "1",
female "2") and the birth date into the derived values, and the printer reads them from the
resident, masked as every printed copy is (DATA-02).

Third-edition points implemented: 文化程度 with 10 levels; 职业 with 8 无职业 and 0 a real value;
医疗费用支付方式 其他 with `payment_other`; 既往史 as rows (疾病 + 确诊时间, with the name required for
6 恶性肿瘤, 12 职业病 and 13 其他); 残疾情况 8 其他残疾 with its text; 禽畜栏 with 1 无; RH as
1 阴性 2 阳性 3 不详; 民族 01/99 with the name of the 少数民族.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from app.core.crypto import mask_address, mask_id_number, mask_phone
from app.core.fields import CN_MOBILE
from app.health_records.forms import FormDefinition, PrintContext, SaveContext, register
from app.health_records.models import Category
from app.health_records.printing.layout import Section, render_form
from app.health_records.spec import (
    Code,
    Date,
    FormContext,
    FormSpec,
    MultiCode,
    Payload,
    Rows,
    Rule,
    Text,
    YearMonth,
    both_or_neither,
)

FORM_TYPE = "personal_info"
NONE, HAVE = "1", "2"  # 无 / 有 (手术, 外伤, 输血, 遗传病史) and the 既往史 "1 无"
GENDER_CODES = {"male": "1", "female": "2"}  # GB/T 2261.1
FAMILY_RELATIVES = (("father", "父亲"), ("mother", "母亲"), ("siblings", "兄弟姐妹"), ("children", "子女"))

# A fixed-line number with its area code (0755-12345678, 075512345678, 010-1234567-123).
_LANDLINE = re.compile(r"0\d{2,3}-?[1-9]\d{6,7}(?:-\d{1,6})?")


@dataclass(frozen=True)
class Phone(Text):
    """A mainland mobile (13812345678; spaces, dashes and +86 removed) or a fixed line with its
    area code (0755-12345678). Described to the tablet as text with `format: phone`."""

    max_length: int = 20

    def clean(self, value: Any, ctx: FormContext) -> str:
        text = re.sub(r"\s", "", super().clean(value, ctx))
        mobile = re.sub(r"-", "", text).removeprefix("+86")
        if CN_MOBILE.fullmatch(mobile):
            return mobile
        if _LANDLINE.fullmatch(text):
            return text
        raise ValueError("格式不正确，应为 11 位手机号或带区号的固定电话（如 0755-12345678）")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "format": "phone"}


# --- rules -----------------------------------------------------------------------------------


def _ym_of_birth(ctx: FormContext) -> str | None:
    return None if ctx.birth_date is None else ctx.birth_date.strftime("%Y-%m")


def _past_disease_row(row: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    """One 既往史 row: a disease carries its 确诊时间 (not before birth); "无" carries nothing."""
    code, ym = row.get("disease_code"), row.get("diagnosed_ym")
    if code == NONE:
        if ym is not None:
            yield "diagnosed_ym", "选择“无”时不填写确诊时间"
        return
    if code is not None and ym is None:
        yield "diagnosed_ym", "须填写确诊时间"
    born = _ym_of_birth(ctx)
    if ym is not None and born is not None and ym < born:
        yield "diagnosed_ym", "确诊时间不能早于出生日期"


def _past_diseases(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    rows = payload.get("past_diseases") or []
    codes = [row.get("disease_code") for row in rows]
    if NONE in codes and len(rows) > 1:
        yield "past_diseases", "既往史·疾病：“无”不能与其他疾病同时填写"
    seen: set[str] = set()
    for index, code in enumerate(codes):
        if code is None:
            continue
        if code in seen:
            yield (
                f"past_diseases[{index}].disease_code",
                f"既往史·疾病第 {index + 1} 行：该疾病已填写，请勿重复",
            )
        seen.add(code)


def _history_row(row: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
    day = row.get("date")
    if day is not None and ctx.birth_date is not None and day < ctx.birth_date.isoformat():
        yield "date", "时间不能早于出生日期"


def _rows_follow_flag(flag: str, rows: str, title: str, what: str) -> Rule:
    """手术/外伤/输血: rows are required when 2 有 and forbidden when 1 无."""

    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        chosen, filled = payload.get(flag), bool(payload.get(rows))
        if chosen == HAVE and not filled:
            yield rows, f"{title}：选择“有”时须填写{what}"
        elif chosen == NONE and filled:
            yield rows, f"{title}：选择“无”时不应填写{what}"

    return Rule(check, f"{rows} required when {flag} = 2, empty when 1")


def _history(flag: str, rows: str, short: str, first: Text) -> tuple[Code, Rows]:
    """既往史 手术/外伤/输血: the 无/有 flag and up to 2 printed lines (名称或原因, 时间)."""
    return (
        Code(flag, f"既往史·{short}", required=True, codes="history_flag"),
        Rows(
            rows,
            f"既往史·{short}记录",
            fields=(first, Date("date", f"{short}时间", required=True)),
            max_rows=2,
            rules=(Rule(_history_row, "not before birth"),),
        ),
    )


# --- the form --------------------------------------------------------------------------------

SPEC = FormSpec(
    "个人基本信息表",
    (
        Date("filled_on", "填表日期", required=True),
        Text("work_unit", "工作单位", max_length=100),
        Text("contact_name", "联系人姓名", max_length=50),
        Phone("contact_phone", "联系人电话"),
        Code("residence_type", "常住类型", required=True),
        Code(
            "ethnicity",
            "民族",
            required=True,
            companion="ethnicity_name",
            companion_title="民族（少数民族名称）",
        ),
        Code("blood_type_abo", "血型", required=True),
        Code("blood_type_rh", "RH血型", required=True),
        Code("education", "文化程度", required=True),
        Code("occupation", "职业", required=True),
        Code("marital_status", "婚姻状况", required=True),
        MultiCode(
            "payment_methods",
            "医疗费用支付方式",
            required=True,
            codes="payment_method",
            max_selections=3,
            companion="payment_other",
            companion_title="医疗费用支付方式（其他）",
        ),
        MultiCode(
            "drug_allergies",
            "药物过敏史",
            required=True,
            codes="drug_allergy",
            max_selections=4,
            companion="drug_allergy_other",
            companion_title="药物过敏史（其他）",
        ),
        MultiCode("exposures", "暴露史", required=True, codes="exposure", max_selections=3),
        Rows(
            "past_diseases",
            "既往史·疾病",
            required=True,
            fields=(
                Code(
                    "disease_code",
                    "既往史·疾病",
                    required=True,
                    codes="past_disease",
                    companion="disease_desc",
                    companion_title="既往史·疾病（名称或部位）",
                ),
                YearMonth("diagnosed_ym", "确诊时间"),
            ),
            max_rows=6,
            rules=(Rule(_past_disease_row, "确诊时间 with each disease, not before birth"),),
        ),
        *_history(
            "surgery_flag", "surgeries", "手术", Text("name", "手术名称", required=True, max_length=100)
        ),
        *_history("trauma_flag", "traumas", "外伤", Text("name", "外伤名称", required=True, max_length=100)),
        *_history(
            "transfusion_flag",
            "transfusions",
            "输血",
            Text("reason", "输血原因", required=True, max_length=100),
        ),
        *(
            MultiCode(
                f"family_history_{key}",
                f"家族史·{title}",
                required=True,
                codes="family_disease",
                max_selections=6,
                companion=f"family_history_{key}_other",
                companion_title=f"家族史·{title}（其他）",
            )
            for key, title in FAMILY_RELATIVES
        ),
        Code(
            "hereditary_flag",
            "遗传病史",
            required=True,
            codes="none_have",
            companion="hereditary_disease_name",
            companion_title="遗传病史（疾病名称）",
        ),
        MultiCode(
            "disabilities",
            "残疾情况",
            required=True,
            codes="disability",
            max_selections=6,
            companion="disability_other",
            companion_title="残疾情况（其他残疾）",
        ),
        # 生活环境* (marked `*` on the printed form; optional in fully urban Luohu)
        Code("kitchen_exhaust", "厨房排风设施"),
        Code("fuel_type", "燃料类型"),
        Code("drinking_water", "饮水"),
        Code("toilet", "厕所"),
        Code("livestock_pen", "禽畜栏"),
    ),
    (
        Rule(_past_diseases, "既往史: 1 无 alone, no duplicate disease"),
        _rows_follow_flag("surgery_flag", "surgeries", "既往史·手术", "手术名称和时间"),
        _rows_follow_flag("trauma_flag", "traumas", "既往史·外伤", "外伤名称和时间"),
        _rows_follow_flag("transfusion_flag", "transfusions", "既往史·输血", "输血原因和时间"),
        both_or_neither("contact_name", "contact_phone", "联系人姓名和联系人电话"),
    ),
)


# 既往史 codes that name a DATA-05 special category: 8 严重精神障碍, 9 结核病.
PAST_DISEASE_OF_CATEGORY: dict[str, str] = {Category.SMD.value: "8", Category.TB.value: "9"}
NONE_DISEASE = "1"


def _hidden_codes(hidden: frozenset[str]) -> set[str]:
    return {PAST_DISEASE_OF_CATEGORY[c] for c in hidden if c in PAST_DISEASE_OF_CATEGORY}


def redact(payload: Payload, hidden: frozenset[str]) -> Payload:
    """The form without the 既往史 rows naming a hidden category (the rest unchanged)."""
    codes = _hidden_codes(hidden)
    rows = payload.get("past_diseases")
    if not codes or not isinstance(rows, list):
        return payload
    return {
        **payload,
        "past_diseases": [r for r in rows if not (isinstance(r, dict) and r.get("disease_code") in codes)],
    }


def unredact(sent: Any, stored: Payload, hidden: frozenset[str]) -> Any:
    """An edit by someone who did not see the hidden 既往史 rows keeps them (and a "1 无" sent
    beside them is dropped: the editor could not know of the rows)."""
    codes = _hidden_codes(hidden)
    kept = [
        r for r in stored.get("past_diseases") or [] if isinstance(r, dict) and r.get("disease_code") in codes
    ]
    if not kept or not isinstance(sent, dict):
        return sent
    rows = sent.get("past_diseases")
    rows = (
        [r for r in rows if not (isinstance(r, dict) and r.get("disease_code") == NONE_DISEASE)]
        if isinstance(rows, list)
        else []
    )
    return {**sent, "past_diseases": [*rows, *kept]}


def derive(payload: Payload, ctx: SaveContext) -> dict[str, Any]:
    """The identity items the form prints, taken from the resident (never typed on the form)."""
    resident = ctx.resident
    return {
        "gender": GENDER_CODES.get(resident.sex, "0"),
        "birth_date": resident.birth_date.isoformat(),
    }


# --- printing ----------------------------------------------------------------------------------

# The printed form with the identity rows the resident supplies (masked: DATA-02).
PRINT_SPEC = FormSpec(
    SPEC.title,
    (
        Code("gender", "性别"),
        Text("birth_date", "出生日期"),
        Text("id_card_no", "身份证号"),
        Text("phone", "本人电话"),
        Text("current_address", "现住址"),
        *SPEC.fields,
    ),
)

SECTIONS = (
    Section(
        "基本情况",
        (
            "gender",
            "birth_date",
            "id_card_no",
            "work_unit",
            "phone",
            "contact_name",
            "contact_phone",
            "current_address",
            "residence_type",
            "ethnicity",
        ),
    ),
    Section("血型", ("blood_type_abo", "blood_type_rh")),
    Section("社会情况", ("education", "occupation", "marital_status", "payment_methods")),
    Section("过敏与暴露", ("drug_allergies", "exposures")),
    Section(
        "既往史",
        (
            "past_diseases",
            "surgery_flag",
            "surgeries",
            "trauma_flag",
            "traumas",
            "transfusion_flag",
            "transfusions",
        ),
    ),
    Section("家族史", tuple(f"family_history_{key}" for key, _ in FAMILY_RELATIVES)),
    Section("遗传病史", ("hereditary_flag",)),
    Section("残疾情况", ("disabilities",)),
    Section("生活环境*", ("kitchen_exhaust", "fuel_type", "drinking_water", "toilet", "livestock_pen")),
)

NOTES = (
    "性别、出生日期、身份证号、本人电话、现住址取自居民信息，打印件按规定隐去部分内容。",
    "工作单位：填写目前所在工作单位的全称；离退休者填写最后工作单位的全称；下岗待业或无工作经历者须具体注明。",
    "既往史：填写曾经诊断的疾病及确诊时间；恶性肿瘤写明部位或名称，职业病写明名称；健康体检发现的慢性病应补填于此。",
    "药物过敏史：表中药物过敏主要列出青霉素、磺胺或者链霉素过敏，如有其他药物过敏，请在其他栏中写明名称。",
    "个人信息变更时，在原表上修改并注明修改日期（系统保留每一版本）。",
)


def print_payload(ctx: PrintContext) -> Payload:
    resident = ctx.resident
    return {
        **ctx.payload,
        "gender": ctx.derived.get("gender") or GENDER_CODES.get(resident.sex, "0"),
        "birth_date": resident.birth_date.isoformat(),
        "id_card_no": mask_id_number(resident.id_number) or "",
        "phone": mask_phone(resident.phone) or "",
        "contact_phone": ctx.payload.get("contact_phone") or "",  # masked by print_context
        "current_address": mask_address(resident.current_address) or "",
    }


def render(ctx: PrintContext) -> bytes:
    return render_form(
        replace(ctx, payload=print_payload(ctx)),
        PRINT_SPEC,
        SECTIONS,
        header_extra=[("填表日期", str(ctx.payload.get("filled_on", "")))],
        footer=[
            f"建档日期：{ctx.record.created_on.isoformat()}    建档机构：{ctx.record.created_institution.name}"
            f"    责任医生：{ctx.doctor_name or ''}",
        ],
        notes=NOTES,
    )


DEFINITION = register(
    FormDefinition(
        type=FORM_TYPE,
        title=SPEC.title,
        category=Category.GENERAL,
        spec=SPEC,
        date_field="filled_on",
        service_type="health_record",
        once_per="record",
        derive=derive,
        render_pdf=render,
        masked={"contact_phone": "phone", "contact_name": "name"},
        redact=redact,
        unredact=unredact,
    )
)
