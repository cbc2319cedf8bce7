"""Reading the social-security doctor list (医保医师名单): CSV or XLSX to checked rows.

The columns are documented in `app.doctors.services.mi_library`. Files are bounded (10 MB,
50,000 rows, an XLSX may not unpack to more than 200 MB); numbers that Excel stored as floating
point (18-digit ID numbers lose their last digits) make the row invalid rather than silently wrong.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from stdnum.cn import ric

from app.core.errors import BusinessRuleViolation, DomainError
from app.doctors.models import mi_code_problem

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 50_000
_MAX_XLSX_UNPACKED = 200 * 1024 * 1024
_HEADER_SEARCH_LINES = 10

COLUMNS: dict[str, tuple[str, ...]] = {
    "mi_code": ("医保医师编码", "医保医师代码", "医师编码", "医保编码", "mi_code"),
    "name": ("姓名", "医师姓名", "name"),
    "id_number": ("身份证号", "身份证号码", "证件号码", "id_number"),
    "licence_no": ("执业证书编号", "执业证书编码", "医师执业证书编号", "licence_no"),
    "institution_code": ("机构编码", "医疗机构编码", "定点医药机构编码", "institution_code"),
    "institution_name": ("机构名称", "医疗机构名称", "定点医药机构名称", "执业机构", "institution_name"),
}
_ALIASES = {alias.lower(): key for key, aliases in COLUMNS.items() for alias in aliases}


class ImportFileTooLarge(DomainError):
    status = 413
    code = "mi_file_too_large"
    message = "医保医师名单文件不能超过 10 MB"


def _bad_file(message: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(message, code="mi_file_invalid", errors={"file": [message]})


@dataclass
class ListRow:
    line_no: int
    values: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _header_key(raw: Any) -> str | None:
    text = unicodedata.normalize("NFKC", str(raw or "")).strip().lstrip("\ufeff")
    text = re.sub(r"[(（][^)）]*[)）]", "", text).replace("*", "").replace(" ", "").lower()
    return _ALIASES.get(text)


def _cell_text(value: Any) -> tuple[str, str | None]:
    """(text, problem): numbers that Excel may have rounded are a problem, not a silent change."""
    if value is None:
        return "", None
    if isinstance(value, bool):
        return str(value), None
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value)), None
        return "", "数字列被 Excel 存成了科学计数法（精度丢失），请将该列设为文本格式后重新导出"
    if isinstance(value, datetime | date):
        return value.isoformat(), None
    return unicodedata.normalize("NFKC", str(value)).strip(), None


def _rows_of_csv(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise _bad_file("无法识别文件编码，请另存为 UTF-8 或 GBK 编码的 CSV")
    try:
        for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            yield line_no, list(row)
    except csv.Error as exc:
        raise _bad_file(f"CSV 格式有误：{exc}") from exc


def _rows_of_xlsx(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > _MAX_XLSX_UNPACKED or len(archive.infolist()) > 10_000:
                raise _bad_file("Excel 文件解压后过大，请拆分后再导入")
    except zipfile.BadZipFile as exc:
        raise _bad_file("Excel 文件已损坏，请重新导出为 .xlsx") from exc
    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl's style/extension notices are not our concern
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                if not workbook.worksheets:
                    raise _bad_file("Excel 文件中没有工作表")
                sheet = workbook.worksheets[0]
                for line_no, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                    yield line_no, list(values)
            finally:
                workbook.close()
    except DomainError:
        raise
    except Exception as exc:  # openpyxl raises many types for malformed files
        raise _bad_file("无法读取 Excel 文件，请确认是 .xlsx 格式") from exc


def detect_format(filename: str, data: bytes) -> str:
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _bad_file("不支持旧版 .xls 文件，请另存为 .xlsx 或 .csv 后导入")
    if filename.lower().endswith((".xlsx", ".xlsm")):
        raise _bad_file("文件扩展名为 .xlsx，但内容不是 Excel 文件")
    return "csv"


def read_list(filename: str, data: bytes) -> tuple[str, list[ListRow]]:
    """The file's format and its data rows (header mapped, cells as text, per-row problems)."""
    if len(data) > MAX_FILE_BYTES:
        raise ImportFileTooLarge()
    if not data.strip():
        raise _bad_file("文件为空")
    file_format = detect_format(filename, data)
    source = _rows_of_xlsx(data) if file_format == "xlsx" else _rows_of_csv(data)
    header: dict[int, str] | None = None
    first: dict[int, str] | None = None
    rows: list[ListRow] = []
    for line_no, cells in source:
        if not any(_cell_text(c)[0] for c in cells):
            continue
        if header is None:
            # The header is the first line naming at least two known columns (title lines may precede it).
            found = {i: key for i, cell in enumerate(cells) if (key := _header_key(cell)) is not None}
            first = first if first is not None else found
            if len(set(found.values())) >= 2:
                header = found
                _check_header(set(header.values()))
            elif line_no >= _HEADER_SEARCH_LINES:
                _check_header(set(first.values()))
            continue
        row = ListRow(line_no)
        for index, key in header.items():
            text, problem = _cell_text(cells[index] if index < len(cells) else None)
            row.values[key] = text
            if problem and row.error is None:
                row.error = f"{_label(key)}：{problem}"
        rows.append(row)
        if len(rows) > MAX_ROWS:
            raise _bad_file(f"名单超过 {MAX_ROWS} 行，请拆分后再导入")
    if header is None:
        _check_header(set((first or {}).values()))
        raise _bad_file("文件中没有表头")
    return file_format, rows


def _label(key: str) -> str:
    return COLUMNS[key][0]


def _check_header(keys: set[str]) -> None:
    missing = [_label(k) for k in ("mi_code", "name") if k not in keys]
    if not keys & {"id_number", "licence_no"}:
        missing.append("身份证号 或 执业证书编号")
    if not keys & {"institution_code", "institution_name"}:
        missing.append("机构编码 或 机构名称")
    if missing:
        raise _bad_file("名单缺少列：" + "、".join(missing))


def normalise_row(row: ListRow, seen_codes: dict[str, int]) -> None:
    values = row.values
    values["mi_code"] = values.get("mi_code", "").replace(" ", "").upper()
    values["id_number"] = values.get("id_number", "").replace(" ", "").upper()
    values["licence_no"] = values.get("licence_no", "").replace(" ", "")
    values["name"] = re.sub(r"\s+", "", values.get("name", ""))
    if row.error:
        return
    problem = mi_code_problem(values["mi_code"])
    if problem:
        row.error = problem
    elif not values["name"]:
        row.error = "缺少姓名"
    elif values["id_number"] and not ric.is_valid(values["id_number"]):
        row.error = "身份证号校验不通过"
    elif not values["id_number"] and not values["licence_no"]:
        row.error = "缺少身份证号和执业证书编号"
    elif values["mi_code"] in seen_codes:
        row.error = f"与第 {seen_codes[values['mi_code']]} 行的医保医师编码重复"
    if row.error is None:
        seen_codes[values["mi_code"]] = row.line_no
