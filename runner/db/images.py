"""The image a job is seeded with: found, read with Pillow, stored under a content-hash name."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from runner import imagefile
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
    width, height, fmt = inspect(source)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise InputError(f"{source}: cannot read the image: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    name = f"{digest[:32]}.{fmt.lower().replace('jpeg', 'jpg')}"
    target = asset_dir / name
    try:
        asset_dir.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _write_atomically(target, data)
    except OSError as exc:
        raise InputError(f"cannot store the image in the asset directory {asset_dir} (--asset-dir, "
                         f"YE_ASSET_DIR): {exc.strerror or exc}") from None
    url = f"{base_url.rstrip('/')}/{name}" if base_url else target.resolve().as_uri()
    return StoredImage(source, target, url, width, height, fmt, digest)


def inspect(path: Path) -> tuple[int, int, str]:
    """Width, height and format; InputError for a file that is not a whole, supported, sane-sized image."""
    width, height, fmt = imagefile.header(path)
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: the image is damaged or truncated ({exc})") from None
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
