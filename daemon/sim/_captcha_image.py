"""Captcha pictures like the brokers' own: five dark digits (or, for BotDetect, letters too) on a light ground with
a little noise.

They are meant to be read, by people rehearsing and by the OCR solver being measured on them, so the
digits stay large and upright; the noise is only there so a solver does not meet a perfectly clean image.
Pillow's built-in scalable font is used, so no system font has to be installed. Pillow is imported at the first
picture: the service process imports the simulator's modules with its CLI but never draws (issue 18's memory).
"""

from __future__ import annotations

import io
import random
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

WIDTH, HEIGHT = 160, 56
FONT_SIZE = 38
FORMATS = ("png", "jpeg")
_BACKGROUND = (244, 244, 238)


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=FONT_SIZE)


def render_captcha(digits: str, fmt: str, rng: random.Random) -> bytes:
    """The encoded image (PNG or JPEG) showing `digits` (ASCII digits or letters); `rng` places the noise and offsets."""
    if fmt not in FORMATS:
        raise ValueError(f"captcha format {fmt!r} is not one of {', '.join(FORMATS)}")
    if not (digits.isascii() and digits.isalnum()):
        raise ValueError("a captcha shows ASCII digits and letters only")
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    _noise(draw, rng)
    font = _font()
    step = (WIDTH - 16) / len(digits)
    for i, digit in enumerate(digits):
        left, top, right, bottom = draw.textbbox((0, 0), digit, font=font)
        x = 8 + i * step + (step - (right - left)) / 2 - left + rng.uniform(-2, 2)
        y = (HEIGHT - (bottom - top)) / 2 - top + rng.uniform(-3, 3)
        shade = rng.randint(15, 60)
        draw.text((x, y), digit, font=font, fill=(shade, shade, shade + 30))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", optimize=False)
    else:
        image.save(out, format="JPEG", quality=88)
    return out.getvalue()


def _noise(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    """A few pale lines and specks: enough to look like a captcha, never enough to hide a digit."""
    for _ in range(3):
        start = (rng.randint(0, WIDTH), rng.randint(0, HEIGHT))
        end = (rng.randint(0, WIDTH), rng.randint(0, HEIGHT))
        tone = rng.randint(170, 210)
        draw.line([start, end], fill=(tone, tone, tone), width=1)
    for _ in range(120):
        tone = rng.randint(160, 220)
        draw.point((rng.randrange(WIDTH), rng.randrange(HEIGHT)), fill=(tone, tone, tone))
