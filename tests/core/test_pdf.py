"""app.core.pdf: the embedded Chinese font, CJK paragraphs, tables, QR codes, page numbers.

Checked with poppler's own tools: `pdffonts` (every font embedded), `pdftotext` (the Chinese text
reads back), `pdftoppm` + `zbarimg` (the QR code decodes).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from reportlab.platypus import PageBreak

from app.core import pdf


def pdftotext(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode("utf-8")


def pdffonts(path: Path) -> list[list[str]]:
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()[2:] if line.strip()]


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_font_is_found_and_registered_once():
    path = pdf.find_cjk_font()
    assert path.is_file() and path.name in pdf.FONT_FILE_NAMES
    assert pdf.register_cjk_font() == pdf.FONT_NAME
    assert pdf.register_cjk_font() == pdf.FONT_NAME


def test_without_fontconfig_or_known_paths_the_font_folders_are_searched(monkeypatch, tmp_path):
    nested = tmp_path / "truetype" / "somewhere"
    nested.mkdir(parents=True)
    copy = nested / "wqy-microhei.ttc"
    shutil.copyfile(pdf.find_cjk_font(), copy)
    # fc-match answers with *some* font for an unknown family: it must not be taken for ours.
    monkeypatch.setattr(pdf, "FONT_FAMILY", "No Such Family Luohu")
    monkeypatch.setattr(pdf, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(pdf, "SEARCH_DIRS", (str(tmp_path),))
    assert pdf.find_cjk_font() == copy


def test_a_missing_font_is_a_clear_error_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(pdf, "FONT_FAMILY", "No Such Family Luohu")
    monkeypatch.setattr(pdf, "KNOWN_FONT_PATHS", (str(tmp_path / "missing.ttc"),))
    monkeypatch.setattr(pdf, "SEARCH_DIRS", (str(tmp_path),))
    with pytest.raises(pdf.CJKFontMissing, match="fonts-wqy-microhei") as caught:
        pdf.find_cjk_font()
    assert isinstance(caught.value, RuntimeError)


def test_a_document_embeds_the_font_and_reads_back_in_chinese(tmp_path):
    styles = pdf.cjk_styles()
    long_text = "社区家庭医生为签约居民提供基本医疗和基本公共卫生服务。" * 12
    png = io.BytesIO()
    Image.new("RGB", (120, 40), (20, 20, 20)).save(png, format="PNG")
    story = [
        pdf.para("家庭医生签约服务协议书", styles.title),
        pdf.para(long_text, styles.body),
        pdf.para("用户输入：<b>不是标记</b> & 1 < 2\n第二行", styles.body),
        pdf.table(
            [["项目", "金额（元）"], ["基础包", "0.00"], ["高血压包", "120.00"]], header=True, amounts=(1,)
        ),
        pdf.image(png.getvalue(), max_width=60, max_height=60),
        PageBreak(),
        pdf.para("第二页的内容", styles.heading),
        pdf.qr_code("https://example.invalid/verify/abc", size=120),
    ]
    data = pdf.build_pdf(story, title="测试文档")
    assert data.startswith(b"%PDF-")
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)

    fonts = pdffonts(path)
    assert fonts, "no font in the document"
    # name type encoding emb sub uni ...: every font embedded, ours among them (no Helvetica).
    assert all(row[-5] == "yes" for row in fonts), fonts
    assert any("WenQuanYiMicroHei" in row[0] for row in fonts), fonts

    text = pdftotext(data)
    flat = squeeze(text)
    assert "家庭医生签约服务协议书" in text
    assert squeeze(long_text) in flat  # wrapped between CJK characters, nothing lost
    assert "用户输入：<b>不是标记</b>&1<2" in flat  # escaped, not interpreted
    assert "第二行" in text
    assert "高血压包" in text and "120.00" in text
    assert "第1页共2页" in flat and "第2页共2页" in flat

    subprocess.run(
        ["pdftoppm", "-png", "-r", "150", "-f", "2", "-l", "2", str(path), str(tmp_path / "p")], check=True
    )
    page = next(tmp_path.glob("p*.png"))
    decoded = subprocess.run(
        ["zbarimg", "-q", "--raw", str(page)], capture_output=True, text=True, check=True
    )
    assert decoded.stdout.strip() == "https://example.invalid/verify/abc"


def test_an_unreadable_image_is_a_value_error():
    with pytest.raises(ValueError):
        pdf.image(b"not an image", max_width=10, max_height=10)


def test_no_page_label_when_asked():
    styles = pdf.cjk_styles()
    data = pdf.build_pdf([pdf.para("只有一页", styles.body)], title="t", page_label=None)
    text = pdftotext(data)
    assert "只有一页" in text and "第1页" not in squeeze(text)
