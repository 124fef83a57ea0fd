"""Reading an image's header safely: format and size, without decoding a decompression bomb."""

from __future__ import annotations

import warnings
from pathlib import Path

from runner.errors import InputError

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_PIXELS = 89_478_485
"""Pillow's own warning threshold (a 0.25 GB RGBA image); a product photo is far smaller."""


def header(path: Path) -> tuple[int, int, str]:
    """Width, height and format from the header; InputError for a non-image, an odd format or a bomb."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt = image.format or "unknown"
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: the image header claims more than {MAX_PIXELS:,} pixels; refusing to "
                         "decode it (a product photo is far smaller)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: the image is damaged or truncated ({exc})") from None
    if width * height > MAX_PIXELS:
        raise InputError(f"{path}: the image is {width}x{height}, more than {MAX_PIXELS:,} pixels; refusing it")
    if fmt not in FORMATS:
        raise InputError(f"{path}: unsupported image format {fmt} (use JPEG or PNG)")
    return width, height, fmt
