"""Declarative field specifications of the national forms and the one engine that checks them.

A form is a `FormSpec`: a tuple of fields (single code, multi code, text, integer, decimal, date,
year-month, repeated rows) plus form-level rules (`Rule`) for what one field alone cannot say
(SBP > DBP, "rows required when 有", ages in order). `FormSpec.validate(payload, ctx)` returns the
clean payload or raises one `FormInvalid` (422, code `form_invalid`) whose `errors` map each
offending field path (`surgeries[1].name`) to a Chinese message naming the field as printed.

Conventions enforced for every form (spec §0):
- codes are checked against the printed list (`app.health_records.codes`), kept as printed strings;
- in a multi-code field the "none" option (无 / 未发现 …) is exclusive, and the number of
  selections is at most the printed number of boxes;
- an option that has a free-text companion (其他 / 有 / 异常 …) requires it, and a companion given
  without its option is refused (it would be silently lost);
- numbers must lie in the plausible range the spec suggests, dates may not lie in the future;
- unknown fields are refused; empty strings count as absent.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from app.core.errors import BusinessRuleViolation
from app.health_records.codes import CODES, CodeList

Payload = dict[str, Any]


class FormInvalid(BusinessRuleViolation):
    code = "form_invalid"
    message = "表单填写有误"

    def __init__(self, errors: Mapping[str, str]) -> None:
        first = next(iter(errors.values()), type(self).message)
        super().__init__(first, errors=dict(errors))


@dataclass(frozen=True)
class FormContext:
    """What the rules need to know besides the payload."""

    today: date
    birth_date: date | None = None
    sex: str | None = None  # "male" | "female" (the resident's)

    def age_on(self, on: date) -> int | None:
        if self.birth_date is None:
            return None
        before_birthday = (on.month, on.day) < (self.birth_date.month, self.birth_date.day)
        return on.year - self.birth_date.year - int(before_birthday)


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, message)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


# --- fields -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """What every field has. A field holds one value (`ValueField`) or repeated rows (`Rows`)."""

    name: str
    title: str
    required: bool = False

    kind = "field"

    def companions(self) -> tuple[Field, ...]:
        return ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "type": self.kind, "required": self.required}


@dataclass(frozen=True)
class ValueField(Field, ABC):
    """A field holding one value (a code, a code list, text, a number, a date)."""

    @abstractmethod
    def clean(self, value: Any, ctx: FormContext) -> Any:
        """Return the clean value or raise ValueError(message without the title)."""


@dataclass(frozen=True)
class Text(ValueField):
    max_length: int = 200
    kind = "text"

    def clean(self, value: Any, ctx: FormContext) -> str:
        if not isinstance(value, str):
            raise ValueError("须为文字")
        text = value.strip()
        if len(text) > self.max_length:
            raise ValueError(f"不能超过 {self.max_length} 个字")
        if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
            raise ValueError("不能包含控制字符")
        return text

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_length": self.max_length}


def _companion_name(field_name: str, companion: str | None) -> str:
    return companion or f"{field_name}_other"


@dataclass(frozen=True)
class Code(ValueField):
    """A single choice (one □). `codes` names the list in `app.health_records.codes`."""

    codes: str = ""
    companion: str | None = None  # defaults to "<name>_other" when the list has other-options
    companion_title: str | None = None
    kind = "code"

    @property
    def code_list(self) -> CodeList:
        return CODES[self.codes or self.name]

    def clean(self, value: Any, ctx: FormContext) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or value not in self.code_list.codes:
            raise ValueError(f"代码“{value}”不在可选范围内（{_choices(self.code_list)}）")
        return value

    def companions(self) -> tuple[Field, ...]:
        if not self.code_list.other:
            return ()
        return (
            Text(
                _companion_name(self.name, self.companion),
                self.companion_title or f"{self.title}（具体内容）",
            ),
        )

    def describe(self) -> dict[str, Any]:
        out = {**super().describe(), "codes": self.code_list.name}
        if self.code_list.other:
            out["companion"] = _companion_name(self.name, self.companion)
            out["companion_when"] = sorted(self.code_list.other)
        return out


@dataclass(frozen=True)
class MultiCode(Code):
    """Several choices (□/□/□); at most `max_selections`; the list's `none` option is exclusive."""

    max_selections: int | None = None
    kind = "multi_code"

    def clean(self, value: Any, ctx: FormContext) -> list[str]:  # type: ignore[override]
        if not isinstance(value, list):
            raise ValueError("须为代码列表")
        chosen: list[str] = []
        for item in value:
            code = Code.clean(self, item, ctx)
            if code in chosen:
                raise ValueError(f"代码“{code}”重复选择")
            chosen.append(code)
        none = self.code_list.none
        if none is not None and none in chosen and len(chosen) > 1:
            raise ValueError(f"“{self.code_list.label(none)}”不能与其他选项同时选择")
        if self.max_selections is not None and len(chosen) > self.max_selections:
            raise ValueError(f"最多选择 {self.max_selections} 项")
        order = self.code_list.codes
        return sorted(chosen, key=order.index)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_selections": self.max_selections, "exclusive": self.code_list.none}


def _choices(code_list: CodeList) -> str:
    shown = [f"{code} {label}" for code, label in code_list.options]
    return "、".join(shown) if len(shown) <= 6 else "、".join(shown[:6]) + " 等"


@dataclass(frozen=True)
class Number(ValueField):
    """A measured value. `places=0` makes it an integer. `low`/`high` are the plausible range."""

    unit: str = ""
    low: Decimal | int | None = None
    high: Decimal | int | None = None
    places: int = 0
    kind = "number"

    def clean(self, value: Any, ctx: FormContext) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("须为数值")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("须为数值") from None
        if not number.is_finite():
            raise ValueError("须为数值")
        if self.places == 0:
            if number != number.to_integral_value():
                raise ValueError("须为整数")
        elif number.as_tuple().exponent < -self.places:  # type: ignore[operator]
            raise ValueError(f"最多保留 {self.places} 位小数")
        unit = self.unit
        if self.low is not None and number < Decimal(self.low):
            raise ValueError(f"不能小于 {self.low}{unit}，请核对")
        if self.high is not None and number > Decimal(self.high):
            raise ValueError(f"不能大于 {self.high}{unit}，请核对")
        return int(number) if self.places == 0 else float(number)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "unit": self.unit,
            "min": None if self.low is None else str(self.low),
            "max": None if self.high is None else str(self.high),
            "places": self.places,
        }


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YM = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Date(ValueField):
    """A full date (年月日), ISO `YYYY-MM-DD`; not in the future unless `future_ok`."""

    future_ok: bool = False
    kind = "date"

    def clean(self, value: Any, ctx: FormContext) -> str:
        if not isinstance(value, str) or not _DATE.match(value):
            raise ValueError("日期格式应为 YYYY-MM-DD")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError("不是有效的日期") from None
        if day.year < 1900:
            raise ValueError("日期过早，请核对")
        if not self.future_ok and day > ctx.today:
            raise ValueError("不能晚于今天")
        return value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "future_ok": self.future_ok}


@dataclass(frozen=True)
class YearMonth(ValueField):
    """年月 (`YYYY-MM`), not in the future."""

    kind = "year_month"

    def clean(self, value: Any, ctx: FormContext) -> str:
        match = _YM.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError("年月格式应为 YYYY-MM")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or year < 1900:
            raise ValueError("不是有效的年月")
        if (year, month) > (ctx.today.year, ctx.today.month):
            raise ValueError("不能晚于本月")
        return str(value)


@dataclass(frozen=True)
class Rows(Field):
    """A repeated block printed as `max_rows` lines (住院史, 用药情况 …)."""

    fields: tuple[Field, ...] = ()
    max_rows: int = 1
    rules: tuple[Rule, ...] = ()
    kind = "rows"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "max_rows": self.max_rows,
            "fields": [f.describe() for f in _expanded(self.fields)],
        }


# --- rules ------------------------------------------------------------------------------------

Check = Callable[[Payload, FormContext], "Iterable[tuple[str, str]]"]


@dataclass(frozen=True)
class Rule:
    """A form-level rule: `check(payload, ctx)` yields `(field_path, message)` for each violation.
    It sees the clean payload (fields that failed their own checks are absent)."""

    check: Check
    doc: str = ""


def required_when(target: str, title: str, condition: Callable[[Payload], bool], why: str) -> Rule:
    """`target` is required when `condition` holds, and must stay empty otherwise."""

    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        present = not _blank(payload.get(target))
        if condition(payload) and not present:
            yield target, f"{title}：{why}时必须填写"
        elif not condition(payload) and present:
            yield target, f"{title}：仅在{why}时填写"

    return Rule(check, f"{target} required when {why}")


def selected(payload: Payload, name: str, code: str) -> bool:
    value = payload.get(name)
    return value == code or (isinstance(value, list) and code in value)


def greater_than(high: str, high_title: str, low: str, low_title: str) -> Rule:
    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        a, b = payload.get(high), payload.get(low)
        if a is not None and b is not None and not a > b:
            yield high, f"{high_title}应大于{low_title}，请核对"

    return Rule(check, f"{high} > {low}")


def not_before(later: str, later_title: str, earlier: str, earlier_title: str) -> Rule:
    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        a, b = payload.get(later), payload.get(earlier)
        if a is not None and b is not None and a < b:
            yield later, f"{later_title}不能早于{earlier_title}"

    return Rule(check, f"{later} >= {earlier}")


def both_or_neither(first: str, second: str, title: str) -> Rule:
    def check(payload: Payload, ctx: FormContext) -> Iterable[tuple[str, str]]:
        a, b = _blank(payload.get(first)), _blank(payload.get(second))
        if a != b:
            yield (first if a else second), f"{title}须成对填写"

    return Rule(check, f"{first} and {second} together")


# --- the form ---------------------------------------------------------------------------------


def _expanded(fields: Iterable[Field]) -> list[Field]:
    out: list[Field] = []
    for f in fields:
        out.append(f)
        out.extend(f.companions())
    return out


@dataclass(frozen=True)
class FormSpec:
    title: str
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    _index: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Field] = {}
        for f in _expanded(self.fields):
            assert f.name not in index, f"duplicate field {f.name} in {self.title}"
            index[f.name] = f
        object.__setattr__(self, "_index", index)

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self._index)

    def field(self, name: str) -> Field:
        return self._index[name]

    def title_of(self, path: str) -> str:
        top = path.split("[", 1)[0].split(".", 1)[0]
        found = self._index.get(top)
        return found.title if found else path

    def describe(self) -> list[dict[str, Any]]:
        return [f.describe() for f in _expanded(self.fields)]

    def labels(self, payload: Payload) -> dict[str, Any]:
        """The printed label of every chosen code (rows give one dict per row)."""
        return _labels(_expanded(self.fields), payload)

    def validate(self, payload: Any, ctx: FormContext) -> Payload:
        if not isinstance(payload, dict):
            raise FormInvalid({"_form": "表单内容须为对象"})
        errors = _Errors()
        clean = _clean_fields(_expanded(self.fields), payload, ctx, errors, prefix="")
        for rule in self.rules:
            for path, message in rule.check(clean, ctx):
                errors.add(path, message)
        if errors.items:
            raise FormInvalid(errors.items)
        return clean


def _clean_fields(
    fields: list[Field], payload: Mapping[str, Any], ctx: FormContext, errors: _Errors, *, prefix: str
) -> Payload:
    known = {f.name for f in fields}
    for name in payload:
        if name not in known:
            errors.add(f"{prefix}{name}", f"未知字段“{name}”，请按表单填写")
    clean: Payload = {}
    for f in fields:
        path = f"{prefix}{f.name}"
        value = payload.get(f.name)
        if _blank(value):
            if f.required:
                errors.add(path, f"{f.title}：必须填写")
            continue
        if isinstance(f, Rows):
            rows = _clean_rows(f, value, ctx, errors, path)
            if rows is not None:
                clean[f.name] = rows
        elif isinstance(f, ValueField):
            try:
                clean[f.name] = f.clean(value, ctx)
            except ValueError as exc:
                errors.add(path, f"{f.title}：{exc}")
    _check_companions(fields, clean, errors, prefix)
    return clean


def _clean_rows(f: Rows, value: Any, ctx: FormContext, errors: _Errors, path: str) -> list[Payload] | None:
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        errors.add(path, f"{f.title}：须为列表")
        return None
    if len(value) > f.max_rows:
        errors.add(path, f"{f.title}：最多填写 {f.max_rows} 行")
        return None
    rows = []
    for i, row in enumerate(value):
        row_path = f"{path}[{i}]."
        clean_row = _clean_fields(_expanded(f.fields), row, ctx, errors, prefix=row_path)
        for rule in f.rules:
            for sub, message in rule.check(clean_row, ctx):
                errors.add(f"{row_path}{sub}", f"{f.title}第 {i + 1} 行：{message}")
        rows.append(clean_row)
    return rows


def _check_companions(fields: list[Field], clean: Payload, errors: _Errors, prefix: str) -> None:
    for f in fields:
        if not isinstance(f, Code) or not f.code_list.other:
            continue
        companion = _companion_name(f.name, f.companion)
        chosen = clean.get(f.name)
        chosen_codes = chosen if isinstance(chosen, list) else ([chosen] if chosen is not None else [])
        needing = [code for code in chosen_codes if code in f.code_list.other]
        has_text = not _blank(clean.get(companion))
        if needing and not has_text:
            labels = "、".join(f"“{f.code_list.label(code)}”" for code in needing)
            errors.add(f"{prefix}{companion}", f"{f.title}：选择{labels}时须填写具体内容")
        elif has_text and not needing:
            errors.add(f"{prefix}{companion}", f"{f.title}：未选择需要说明的选项，不应填写具体内容")


def _labels(fields: list[Field], payload: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        value = payload.get(f.name)
        if value is None:
            continue
        if isinstance(f, Rows) and isinstance(value, list):
            out[f.name] = [_labels(_expanded(f.fields), row) for row in value]
        elif isinstance(f, MultiCode) and isinstance(value, list):
            out[f.name] = f.code_list.labels(value)
        elif isinstance(f, Code) and isinstance(value, str):
            out[f.name] = f.code_list.label(value)
    return out
