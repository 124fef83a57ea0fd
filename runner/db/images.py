"""The image a job is seeded with: found, read with Pillow, stored under a content-hash name."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from runner.errors import InputError

MISSING_IMAGE = "이미지 파일을 찾을 수 없습니다"
"""The original tool's message for a missing image (image file not found)."""


@dataclass(frozen=True, slots=True)
class StoredImage:
    source: Path
    stored: Path
    url: str
    width: int
    height: int
    format: str
    sha256: str


def first_existing(candidates: tuple[Path, ...] | list[Path], where: str) -> Path:
    """The first candidate that is a file; InputError with every path tried otherwise."""
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise InputError(f"{where}: {MISSING_IMAGE} (image file not found); tried: {tried}")


def store(source: Path, asset_dir: Path, base_url: str | None = None) -> StoredImage:
    """Read the image's size and format, and copy it into `asset_dir` under its content hash."""
    data = source.read_bytes()
    width, height, fmt = inspect(source)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{digest[:32]}.{fmt.lower().replace('jpeg', 'jpg')}"
    asset_dir.mkdir(parents=True, exist_ok=True)
    target = asset_dir / name
    if not target.exists():
        _write_atomically(target, data)
    url = f"{base_url.rstrip('/')}/{name}" if base_url else target.resolve().as_uri()
    return StoredImage(source, target, url, width, height, fmt, digest)


def inspect(path: Path) -> tuple[int, int, str]:
    """Width, height and format; InputError for a file that is not a whole, supported image."""
    try:
        with Image.open(path) as image:
            fmt = image.format or "unknown"
            width, height = image.size
            image.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: the image is damaged or truncated ({exc})") from None
    if fmt not in ("JPEG", "PNG", "WEBP", "GIF", "BMP"):
        raise InputError(f"{path}: unsupported image format {fmt} (use JPEG or PNG)")
    return width, height, fmt


def _write_atomically(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
