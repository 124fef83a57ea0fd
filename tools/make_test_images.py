"""Regenerates the default images in pipeline_test/ (deterministic; run after changing sizes).

Five product-photo-like images, JPEG and PNG, of different sizes, each under 100 KB.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "pipeline_test"

# name, size, background top/bottom colours, product colour
IMAGES = [
    ("pipeline_test_image9.jpg", (640, 640), (236, 226, 210), (190, 170, 150), (170, 40, 50)),
    ("pipeline_test_image1.png", (400, 300), (210, 230, 245), (150, 180, 210), (40, 120, 60)),
    ("pipeline_test_image16.jpg", (800, 600), (245, 240, 230), (200, 190, 175), (30, 60, 150)),
    ("pipeline_test_image10.jpg", (512, 768), (230, 240, 225), (170, 190, 160), (200, 140, 20)),
    ("pipeline_test_image11.jpg", (1024, 576), (240, 235, 245), (180, 170, 200), (90, 40, 120)),
]


def product_photo(size: tuple[int, int], top: tuple, bottom: tuple, product: tuple) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(height - 1, 1)
        draw.line([(0, y), (width, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    cx, cy, r = width // 2, height // 2, min(width, height) // 4
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse([cx - r, cy + r - r // 4, cx + r, cy + r + r // 5], fill=120)
    image.paste((60, 50, 40), mask=shadow.filter(ImageFilter.GaussianBlur(r // 6)))
    draw.rounded_rectangle([cx - r * 2 // 3, cy - r, cx + r * 2 // 3, cy + r], radius=r // 4, fill=product)
    draw.rectangle([cx - r // 4, cy - r - r // 3, cx + r // 4, cy - r], fill=tuple(c // 2 for c in product))
    draw.rectangle([cx - r // 2, cy - r // 4, cx + r // 2, cy + r // 4], fill=(250, 248, 240))
    return image


def main() -> None:
    for name, size, top, bottom, product in IMAGES:
        image = product_photo(size, top, bottom, product)
        path = OUT / name
        if name.endswith(".png"):
            image.quantize(64).save(path, optimize=True)
        else:
            image.save(path, quality=80, optimize=True)
        print(f"{path.name}: {size[0]}x{size[1]}, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
