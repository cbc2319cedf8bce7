"""QR rendering of what a payer scans (WeChat NATIVE `code_url`, Alipay precreate `qr_code`).

PNG through Pillow (`qrcode[pil]`), SVG as one path (`SvgPathImage`, no Pillow needed). Error
correction M: a phone reads it off a screen or a slightly worn print at the desk.
"""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathImage

PNG_MIMETYPE = "image/png"
SVG_MIMETYPE = "image/svg+xml"
MAX_CONTENT = 512  # code_url / qr_code are short URLs; anything longer is not ours


def _qr(content: str) -> qrcode.QRCode:
    if not content or len(content) > MAX_CONTENT:
        raise ValueError("QR content must be 1-512 characters")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=8, border=4)
    code.add_data(content)
    code.make(fit=True)
    return code


def render_png(content: str, *, box_size: int = 8) -> bytes:
    code = _qr(content)
    code.box_size = box_size
    buffer = io.BytesIO()
    code.make_image(image_factory=PilImage).save(buffer)
    return buffer.getvalue()


def render_svg(content: str) -> bytes:
    buffer = io.BytesIO()
    _qr(content).make_image(image_factory=SvgPathImage).save(buffer)
    return buffer.getvalue()
