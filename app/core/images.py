"""Untrusted uploaded images (photos, on-screen signatures, scanned pages): recognise, decode, re-encode.

The type is decided by the file's first bytes, never by its name or declared type; Pillow decodes it
with decompression-bomb warnings raised as errors and only the sniffed format allowed; the image is
then re-encoded, which proves it is an image and drops metadata (EXIF positions, camera serials).
Callers turn `ImageTooLarge` / `ImageUnreadable` into their own Chinese 4xx.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from dataclasses import dataclass

from PIL import Image, ImageOps

MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"))
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


class ImageTooLarge(ValueError):
    """Wider or taller than allowed (or more pixels than allowed)."""


class ImageUnreadable(ValueError):
    """Not decodable as the sniffed format (corrupt, truncated, a bomb)."""


@dataclass(frozen=True)
class Reencoded:
    data: bytes
    kind: str  # JPEG | PNG
    content_type: str
    width: int
    height: int


def sniff(raw: bytes) -> str | None:
    """JPEG or PNG by the first bytes, or None."""
    return next((kind for magic, kind in MAGIC if raw.startswith(magic)), None)


def reencode(
    raw: bytes,
    kind: str,
    *,
    max_side: int,
    jpeg_quality: int,
    max_pixels: int | None = None,
    upright: Collection[str] = (),
    normalise_png_mode: bool = False,
) -> Reencoded:
    """Decode `raw` as `kind` and re-encode it. `upright`: the kinds turned upright by their EXIF
    orientation first; `normalise_png_mode`: unusual PNG modes are saved as RGBA."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=[kind]) as image:
                width, height = image.size
                if not (0 < width <= max_side and 0 < height <= max_side) or (
                    max_pixels is not None and width * height > max_pixels
                ):
                    raise ImageTooLarge(f"{width}×{height}")
                image.load()
                picture = ImageOps.exif_transpose(image) if kind in upright else image
                out = io.BytesIO()
                if kind == "JPEG":
                    picture.convert("RGB").save(out, format="JPEG", quality=jpeg_quality, optimize=True)
                else:
                    if normalise_png_mode and picture.mode not in PNG_MODES:
                        picture = picture.convert("RGBA")
                    picture.save(out, format="PNG", optimize=True)
    except ImageTooLarge:
        raise
    except Exception as exc:  # any decoder failure of an untrusted file is the file's fault
        raise ImageUnreadable(str(exc)) from exc
    return Reencoded(out.getvalue(), kind, CONTENT_TYPES[kind], width, height)
