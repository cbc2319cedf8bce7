"""老年人生活自理能力评估表 (spec §5): five items, each level with its printed score, the total and
its band (0–3 可自理, 4–8 轻度依赖, 9–18 中度依赖, ≥19 不能自理).

The level is stored and the score derived from it, never the reverse; options are keyed by level,
not by position (进餐 and 穿衣 have no 轻度依赖 level: the printed cell is "—").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from app.core import pdf
from app.health_records.codes import CODES
from app.health_records.forms import FormDefinition, PrintContext, SaveContext, register
from app.health_records.models import Category
from app.health_records.printing.layout import CONTENT_WIDTH, header_table, styles
from app.health_records.spec import Code, Date, FormContext, FormSpec, Payload, Rule

INDEPENDENT, MILD, MODERATE, DEPENDENT = "1", "2", "3", "4"


@dataclass(frozen=True)
class Item:
    name: str  # field prefix: <name>_level
    title: str  # 评估事项
    content: str  # 评估内容
    # level code -> (printed description, score); a missing level is printed "—" and not allowed
    levels: dict[str, tuple[str, int]]


ITEMS: tuple[Item, ...] = (
    Item(
        "meal",
        "进餐",
        "使用餐具将饭菜送入口、咀嚼、吞咽等活动",
        {
            INDEPENDENT: ("独立完成", 0),
            MODERATE: ("需要协助，如切碎、搅拌食物等", 3),
            DEPENDENT: ("完全需要帮助", 5),
        },
    ),
    Item(
        "grooming",
        "梳洗",
        "梳头、洗脸、刷牙、剃须、洗澡等活动",
        {
            INDEPENDENT: ("独立完成", 0),
            MILD: ("能独立地洗头、梳头、洗脸、刷牙、剃须等；洗澡需要协助", 1),
            MODERATE: ("在协助下和适当的时间内，能完成部分梳洗活动", 3),
            DEPENDENT: ("完全需要帮助", 7),
        },
    ),
    Item(
        "dressing",
        "穿衣",
        "穿衣裤、袜子、鞋子等活动",
        {
            INDEPENDENT: ("独立完成", 0),
            MODERATE: ("需要协助，在适当的时间内完成部分穿衣", 3),
            DEPENDENT: ("完全需要帮助", 5),
        },
    ),
    Item(
        "toileting",
        "如厕",
        "小便、大便等活动及自控",
        {
            INDEPENDENT: ("不需协助，可自控", 0),
            MILD: ("偶尔失禁，但基本上能如厕或使用便具", 1),
            MODERATE: ("经常失禁，在很多提示和协助下尚能如厕或使用便具", 5),
            DEPENDENT: ("完全失禁，完全需要帮助", 10),
        },
    ),
    Item(
        "activity",
        "活动",
        "站立、室内行走、上下楼梯、户外活动",
        {
            INDEPENDENT: ("独立完成所有活动", 0),
            MILD: ("借助较小的外力或辅助装置能完成站立、行走、上下楼梯等", 1),
            MODERATE: ("借助较大的外力才能完成站立、行走，不能上下楼梯", 5),
            DEPENDENT: ("卧床不起，活动完全需要帮助", 10),
        },
    ),
)

# (lowest total, band code): 0–3 可自理, 4–8 轻度依赖, 9–18 中度依赖, ≥19 不能自理.
BANDS: tuple[tuple[int, str], ...] = ((19, DEPENDENT), (9, MODERATE), (4, MILD), (0, INDEPENDENT))


def band_of(total: int) -> str:
    """The band code (= 健康体检表 老年人生活自理能力自我评估 code) of a total score."""
    for lowest, code in BANDS:
        if total >= lowest:
            return code
    raise ValueError(total)


def score(item: Item, level: str) -> int:
    return item.levels[level][1]


def _levels_exist(payload: Payload, ctx: FormContext) -> Any:
    for item in ITEMS:
        level = payload.get(f"{item.name}_level")
        if level is not None and level not in item.levels:
            yield f"{item.name}_level", f"{item.title}：该项没有“{CODES['selfcare_grade'].label(level)}”一档"


SPEC = FormSpec(
    "老年人生活自理能力评估表",
    (
        Date("assessed_at", "评估时间", required=True),
        *(
            Code(f"{item.name}_level", f"{item.title}", required=True, codes="selfcare_grade")
            for item in ITEMS
        ),
    ),
    (Rule(_levels_exist, "进餐/穿衣 have no 轻度依赖 level"),),
)


def derive(payload: Payload, ctx: SaveContext | None = None) -> dict[str, Any]:
    scores = {f"{item.name}_score": score(item, payload[f"{item.name}_level"]) for item in ITEMS}
    total = sum(scores.values())
    band = band_of(total)
    return {
        **scores,
        "total_score": total,
        "selfcare_level": band,
        "selfcare_label": CODES["selfcare_grade"].label(band),
    }


def render(ctx: PrintContext) -> bytes:
    st = styles()
    derived = ctx.derived
    story: list[Any] = [
        pdf.para(SPEC.title, st.title),
        header_table(ctx, st, [("评估时间", str(ctx.payload.get("assessed_at", "")))]),
        Spacer(1, 2 * mm),
        pdf.para(
            "该表为自评表，根据下表中 5 个方面进行评估，将各方面判断评分汇总后，0～3 分者为可自理；"
            "4～8 分者为轻度依赖；9～18 分者为中度依赖；≥19 分者为不能自理。",
            st.small,
        ),
    ]
    head = ["评估事项、内容与评分", "可自理", "轻度依赖", "中度依赖", "不能自理", "判断评分"]
    rows: list[list[Any]] = [head]
    marks: list[tuple[Any, ...]] = []
    for r, item in enumerate(ITEMS, start=1):
        level = ctx.payload.get(f"{item.name}_level")
        row: list[Any] = [f"（{r}）{item.title}：{item.content}"]
        for c, code in enumerate((INDEPENDENT, MILD, MODERATE, DEPENDENT), start=1):
            if code in item.levels:
                text, points = item.levels[code]
                row.append(f"{text}\n评分 {points}")
            else:
                row.append("—\n评分 0")
            if code == level:
                marks.append(("BACKGROUND", (c, r), (c, r), colors.HexColor("#DDDDDD")))
        row.append(str(derived.get(f"{item.name}_score", "")))
        rows.append(row)
    rows.append(
        ["总评分", "", "", "", "", f"{derived.get('total_score', '')}（{derived.get('selfcare_label', '')}）"]
    )
    widths = [40 * mm, 27 * mm, 31 * mm, 31 * mm, 27 * mm, CONTENT_WIDTH - 156 * mm]
    story.append(pdf.table(rows, widths, styles=st, header=True, extra=[*marks, ("SPAN", (0, 6), (4, 6))]))
    story.append(Spacer(1, 3 * mm))
    story.append(pdf.para("灰底为本次评估所选等级。", st.small))
    story.append(pdf.para(f"第 {ctx.version} 版  打印机构：{ctx.institution_name}", st.small))
    return pdf.build_pdf(story, title=SPEC.title, subject=ctx.record.record_no)


DEFINITION = register(
    FormDefinition(
        type="elderly_selfcare",
        title=SPEC.title,
        category=Category.GENERAL,
        spec=SPEC,
        date_field="assessed_at",
        service_type="self_care_assessment",
        derive=derive,
        result_code=lambda payload, derived: derived.get("selfcare_level"),
        result_label=lambda code: CODES["selfcare_grade"].label(code),
        render_pdf=render,
    )
)
