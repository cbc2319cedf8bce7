"""PDF building blocks for printable Chinese documents (ReportLab platypus).

The Chinese font is **embedded**: WenQuanYi Micro Hei (Debian package `fonts-wqy-microhei`),
registered as a TrueType font so every PDF carries the subset of glyphs it uses and prints the
same on any machine. ReportLab's built-in CID fonts (`STSong-Light`) are not embedded and print
blank where no CJK font is installed, so they are never used here.

    from app.core import pdf

    styles = pdf.cjk_styles()
    story = [pdf.para("家庭医生签约服务协议书", styles.title), pdf.para(user_text, styles.body)]
    data = pdf.build_pdf(story, title="家庭医生签约服务协议书")   # A4, "第 x 页 共 y 页" footer

Paragraph text is ReportLab markup: `para()` escapes what it is given (user text may hold `<` or
`&`) and keeps line breaks; pass `markup=True` only for markup you wrote yourself. Every style
breaks lines between CJK characters (`wordWrap="CJK"`).

Where the font is found: `fc-match` for the family, then the known Debian paths, then a search
of the usual font folders. Without it, `register_cjk_font()` raises `CJKFontMissing` (a
RuntimeError naming the package to install). No setting is needed.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Table, TableStyle

FONT_NAME = "CJK"
FONT_FAMILY = "WenQuanYi Micro Hei"
FONT_PACKAGE = "fonts-wqy-microhei"
FONT_FILE_NAMES = ("wqy-microhei.ttc",)
KNOWN_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian / Ubuntu
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",  # Fedora / RHEL
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",  # Arch
)
SEARCH_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")

PAGE_LABEL = "第 {page} 页 共 {pages} 页"

_lock = threading.Lock()
_registered: str | None = None  # the font file registered in this process


class CJKFontMissing(RuntimeError):
    """The embedded Chinese font is not installed on this machine."""


# --- the font -----------------------------------------------------------------------------------------


def _from_fontconfig() -> Path | None:
    """The file fontconfig gives for the family, if it really is that family (fc-match always
    answers with *some* font)."""
    try:
        found = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["fc-match", "-f", "%{family}\n%{file}", FONT_FAMILY],  # noqa: S607 - fontconfig's tool on PATH
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    family, _, file = found.stdout.partition("\n")
    if found.returncode != 0 or FONT_FAMILY.lower() not in family.lower():
        return None
    path = Path(file.strip())
    return path if path.is_file() else None


def _search_font_dirs() -> Path | None:
    for folder in SEARCH_DIRS:
        base = Path(os.path.expanduser(folder))
        if not base.is_dir():
            continue
        for root, _dirs, files in os.walk(base):
            for name in FONT_FILE_NAMES:
                if name in files:
                    return Path(root) / name
    return None


def find_cjk_font() -> Path:
    """The WenQuanYi Micro Hei font file (see the module doc), or `CJKFontMissing`."""
    found = _from_fontconfig()
    if found is None:
        found = next((Path(p) for p in KNOWN_FONT_PATHS if Path(p).is_file()), None)
    if found is None:
        found = _search_font_dirs()
    if found is None:
        raise CJKFontMissing(
            f"the Chinese font {FONT_FAMILY!r} is not installed: install the Debian package "
            f"{FONT_PACKAGE} (apt-get install -y {FONT_PACKAGE}) to print PDFs with Chinese text"
        )
    return found


def register_cjk_font() -> str:
    """Register the embedded Chinese font with ReportLab (once per process); its font name."""
    global _registered
    with _lock:
        if _registered is None:
            path = find_cjk_font()
            # A .ttc collection: face 0 is the regular (proportional) WenQuanYi Micro Hei.
            font = TTFont(FONT_NAME, str(path), subfontIndex=0)
            pdfmetrics.registerFont(font)
            # One face for every variant, so <b>/<i> in markup never looks for a missing font.
            pdfmetrics.registerFontFamily(
                FONT_NAME, normal=FONT_NAME, bold=FONT_NAME, italic=FONT_NAME, boldItalic=FONT_NAME
            )
            _registered = str(path)
    return FONT_NAME


# --- styles and flowables --------------------------------------------------------------------------


@dataclass(frozen=True)
class CJKStyles:
    """Paragraph styles of a printed document, all in the embedded font with CJK line breaking."""

    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    small: ParagraphStyle
    cell: ParagraphStyle
    right: ParagraphStyle
    centre: ParagraphStyle


def cjk_styles(size: float = 10.5) -> CJKStyles:
    """Styles at a body size of `size` points (10.5 pt = 五号字)."""
    font = register_cjk_font()

    def style(name: str, **kw: Any) -> ParagraphStyle:
        values: dict[str, Any] = {
            "fontName": font,
            "fontSize": size,
            "leading": size * 1.6,
            "wordWrap": "CJK",
            "alignment": TA_LEFT,
        }
        values.update(kw)
        return ParagraphStyle(name, **values)

    return CJKStyles(
        title=style("cjk-title", fontSize=size * 2, leading=size * 2.8, alignment=TA_CENTER, spaceAfter=size),
        subtitle=style("cjk-subtitle", fontSize=size * 1.15, alignment=TA_CENTER, spaceAfter=size * 0.6),
        heading=style(
            "cjk-heading", fontSize=size * 1.2, leading=size * 1.9, spaceBefore=size * 0.8, spaceAfter=2
        ),
        body=style("cjk-body", firstLineIndent=0, spaceAfter=size * 0.3),
        small=style(
            "cjk-small", fontSize=size * 0.8, leading=size * 1.25, textColor=colors.HexColor("#444444")
        ),
        cell=style("cjk-cell", leading=size * 1.35),
        right=style("cjk-right", alignment=TA_RIGHT),
        centre=style("cjk-centre", alignment=TA_CENTER),
    )


def markup(text: str) -> str:
    """Plain text as paragraph markup: `<`, `>` and `&` escaped, line breaks kept."""
    return escape(text).replace("\r\n", "\n").replace("\n", "<br/>")


def para(text: str, style: ParagraphStyle, *, raw_markup: bool = False) -> Paragraph:
    """A paragraph of plain `text` (escaped), or of trusted markup with `raw_markup=True`."""
    return Paragraph(text if raw_markup else markup(text), style)


def qr_code(content: str, *, size: float = 30 * mm, level: str = "M") -> Drawing:
    """A vector QR code of `content`, `size` points square (error correction M by default)."""
    widget = QrCodeWidget(content, barLevel=level)
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(
        size,
        size,
        transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0],
        initialFontName=register_cjk_font(),  # not Helvetica: no unembedded font in the file
    )
    drawing.add(widget)
    return drawing


def image(data: bytes, *, max_width: float, max_height: float) -> Image:
    """An image (PNG/JPEG bytes) scaled to fit the box, keeping its aspect ratio.
    Raises ValueError when the bytes are not a readable image."""
    try:
        reader = ImageReader(io.BytesIO(data))
        width, height = reader.getSize()
    except Exception as exc:  # ReportLab wraps Pillow's many errors in its own
        raise ValueError("not a readable image") from exc
    if width <= 0 or height <= 0:
        raise ValueError("empty image")
    scale = min(max_width / width, max_height / height)
    return Image(io.BytesIO(data), width=width * scale, height=height * scale)


def table(
    rows: Sequence[Sequence[Any]],
    col_widths: Sequence[float] | None = None,
    *,
    styles: CJKStyles | None = None,
    grid: bool = True,
    header: bool = False,
    extra: Sequence[tuple[Any, ...]] = (),
    amounts: Sequence[int] = (),
) -> Table:
    """A table whose string cells become wrapping CJK paragraphs; other cells (flowables) are kept.
    `header` shades the first row; `amounts` are column indexes aligned right (figures, except in
    the header row); `extra` adds TableStyle commands."""
    chosen = styles or cjk_styles()
    right = ParagraphStyle("cjk-cell-right", parent=chosen.cell, alignment=TA_RIGHT)

    def cell(row: int, column: int, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        aligned = column in amounts and not (header and row == 0)
        return para(value, right if aligned else chosen.cell)

    data = [[cell(r, c, value) for c, value in enumerate(row)] for r, row in enumerate(rows)]
    commands: list[tuple[Any, ...]] = [
        ("FONTNAME", (0, 0), (-1, -1), register_cjk_font()),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if grid:
        commands.append(("GRID", (0, 0), (-1, -1), 0.5, colors.black))
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")))
    commands.extend(extra)
    result = Table(data, colWidths=list(col_widths) if col_widths else None, repeatRows=1 if header else 0)
    result.setStyle(TableStyle(commands))
    return result


# --- the document --------------------------------------------------------------------------------------


def _numbered_canvas(label: str, font_size: float) -> Callable[..., Canvas]:
    """A canvas class that writes `label` (with {page} and {pages}) at the foot of every page once
    the total is known, and starts in the embedded font (no unembedded Helvetica in the file)."""

    class NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # The document template passes None for both: start in the embedded font.
            kwargs["initialFontName"] = kwargs.get("initialFontName") or FONT_NAME
            kwargs["initialFontSize"] = kwargs.get("initialFontSize") or font_size
            super().__init__(*args, **kwargs)
            self._page_states: list[dict[str, Any]] = []

        def showPage(self) -> None:  # ReportLab's name
            self._page_states.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            pages = len(self._page_states)
            for state in self._page_states:
                self.__dict__.update(state)
                width, _height = self._pagesize
                if label:
                    self.setFont(FONT_NAME, font_size)
                    self.drawCentredString(
                        width / 2, 10 * mm, label.format(page=self._pageNumber, pages=pages)
                    )
                super().showPage()
            super().save()

    return NumberedCanvas


def build_pdf(
    story: Sequence[Any],
    *,
    title: str,
    subject: str = "",
    author: str = "",
    pagesize: tuple[float, float] = A4,
    margins: tuple[float, float, float, float] = (18 * mm, 18 * mm, 18 * mm, 20 * mm),
    page_label: str | None = PAGE_LABEL,
    on_page: Callable[[Canvas, Any], None] | None = None,
) -> bytes:
    """Lay out `story` (flowables) and return the PDF. Margins are (left, right, top, bottom) in
    points; `page_label` (with `{page}`, `{pages}`) is written at the foot of every page, None for
    none; `on_page(canvas, doc)` may draw a header or a watermark on every page."""
    register_cjk_font()
    buffer = io.BytesIO()
    left, right, top, bottom = margins
    doc = SimpleDocTemplate(
        buffer,
        pagesize=pagesize,
        leftMargin=left,
        rightMargin=right,
        topMargin=top,
        bottomMargin=bottom,
        title=title,
        subject=subject,
        author=author,
        creator="罗湖区社区健康服务系统",
        initialFontName=FONT_NAME,
        lang="zh-CN",
    )
    callback = on_page or (lambda canvas, document: None)
    canvasmaker = _numbered_canvas(page_label or "", 9)
    doc.build(list(story), onFirstPage=callback, onLaterPages=callback, canvasmaker=canvasmaker)
    return buffer.getvalue()
