"""Printing a national form the way the paper form looks: the title, the header (姓名 and the
8-digit 编号 □□□-□□□□□), then sections of rows "label | printed options … with the chosen code in
a box", as on the paper where the code is written into □.

Most forms print straight from their `FormSpec`: the form module lists its sections (title and
field names, in printed order) and `render_form` lays them out. Forms with their own shape (the
self-care scoring table, the record card) use the same pieces (`styles`, `header_table`,
`code_cell`, `value_text`) for the parts they share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import PageBreak, Spacer

from app.core import pdf
from app.health_records.codes import CODES
from app.health_records.forms import PrintContext
from app.health_records.spec import Code, Field, FormSpec, MultiCode, Number, Rows

BOX_EMPTY = "□"
CONTENT_WIDTH = 174 * mm  # A4 minus 18 mm margins
LABEL_WIDTHS = (22 * mm, 34 * mm)  # section title, field title
VALUE_WIDTH = CONTENT_WIDTH - sum(LABEL_WIDTHS)


def box(code: str | None) -> str:
    """The code written in its box, or an empty box."""
    return f"[{code}]" if code else BOX_EMPTY


def _options(field: Code) -> str:
    return "  ".join(f"{code} {label}" for code, label in field.code_list.options)


def code_cell(field: Code, payload: dict[str, Any]) -> str:
    """ "1 无 2 有 …    [2]：说明" for a single code; multi codes show one box per selection (and
    the empty boxes left, up to the printed number)."""
    value = payload.get(field.name)
    companion = field.companions()[0].name if field.companions() else None
    if isinstance(field, MultiCode):
        chosen = list(value or [])
        slots = max(field.max_selections or len(chosen) or 1, len(chosen))
        boxes = "/".join([box(c) for c in chosen] + [BOX_EMPTY] * (slots - len(chosen)))
    else:
        boxes = box(value)
    text = f"{_options(field)}    {boxes}"
    if companion and payload.get(companion):
        text += f"  {payload[companion]}"
    return text


def value_text(field: Field, payload: dict[str, Any]) -> str:
    value = payload.get(field.name)
    if value is None or value == "":
        return "" if not isinstance(field, Number) else f"      {field.unit}"
    if isinstance(field, Code):
        return code_cell(field, payload)
    if isinstance(field, Number):
        return f"{value} {field.unit}".strip()
    return str(value)


def rows_table(field: Rows, payload: dict[str, Any], styles: pdf.CJKStyles) -> Any:
    rows = list(payload.get(field.name) or [])
    columns = [f for f in field.fields]
    header = [c.title for c in columns]
    body = []
    for row in rows + [{}] * max(0, field.max_rows - len(rows)):
        cells = []
        for column in columns:
            value = row.get(column.name)
            if isinstance(column, Code) and value is not None:
                label = (
                    "、".join(column.code_list.labels(value))
                    if isinstance(value, list)
                    else column.code_list.label(value)
                )
                companion = column.companions()[0].name if column.companions() else None
                extra = row.get(companion) if companion else None
                cells.append(f"{label}{'：' + extra if extra else ''}")
            else:
                cells.append("" if value is None else str(value))
        body.append(cells)
    width = (VALUE_WIDTH - 4 * mm) / max(1, len(columns))
    return pdf.table([header, *body], [width] * len(columns), styles=styles, header=True)


@dataclass(frozen=True)
class Section:
    title: str
    fields: Sequence[str]


def styles() -> pdf.CJKStyles:
    return pdf.cjk_styles(9)


def header_table(ctx: PrintContext, st: pdf.CJKStyles, extra: Sequence[tuple[str, str]] = ()) -> Any:
    cells = [f"姓名：{ctx.resident.name}", f"编号：{ctx.record.short_no}", *[f"{k}：{v}" for k, v in extra]]
    return pdf.table([cells], [CONTENT_WIDTH / len(cells)] * len(cells), styles=st, grid=False)


def section_rows(
    spec: FormSpec, section: Section, payload: dict[str, Any], st: pdf.CJKStyles
) -> list[list[Any]]:
    out: list[list[Any]] = []
    for index, name in enumerate(section.fields):
        field = spec.field(name)
        label = section.title if index == 0 else ""
        content: Any = (
            rows_table(field, payload, st) if isinstance(field, Rows) else value_text(field, payload)
        )
        out.append([label, field.title, content])
    return out


def render_form(
    ctx: PrintContext,
    spec: FormSpec,
    sections: Sequence[Section],
    *,
    header_extra: Sequence[tuple[str, str]] = (),
    footer: Sequence[str] = (),
    notes: Sequence[str] = (),
    notes_on_reverse: bool = False,
) -> bytes:
    """A4 PDF of a form: title, header, one table of sections, signature/footer lines, 填表说明
    (on a page of their own with `notes_on_reverse`, as forms that print them on the back)."""
    st = styles()
    story: list[Any] = [
        pdf.para(spec.title, st.title),
        header_table(ctx, st, header_extra),
        Spacer(1, 2 * mm),
    ]
    rows: list[list[Any]] = []
    spans: list[tuple[Any, ...]] = []
    for section in sections:
        start = len(rows)
        rows.extend(section_rows(spec, section, ctx.payload, st))
        if len(rows) - start > 1:
            spans.append(("SPAN", (0, start), (0, len(rows) - 1)))
    if rows:
        story.append(pdf.table(rows, [*LABEL_WIDTHS, VALUE_WIDTH], styles=st, extra=spans))
    for line in footer:
        story.append(pdf.para(line, st.body))
    if notes:
        story.append(PageBreak() if notes_on_reverse else Spacer(1, 3 * mm))
        story.append(pdf.para("填表说明：", st.heading))
        for index, note in enumerate(notes, start=1):
            story.append(pdf.para(f"{index}. {note}", st.small))
    story.append(Spacer(1, 2 * mm))
    story.append(pdf.para(f"第 {ctx.version} 版  打印机构：{ctx.institution_name}", st.small))
    return pdf.build_pdf(story, title=spec.title, subject=ctx.record.record_no)


def label_of(list_name: str, code: str | None) -> str:
    return "" if code is None else CODES[list_name].label(code)
