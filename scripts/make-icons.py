#!/usr/bin/env python3
"""Generate Sparklio Desk's icons: app icons for Tauri (icons/), tray state icons, and the
dashboard favicon (ui/favicon.png).

Design: a rounded square with a violet-to-blue gradient and a white lightning spark.
Everything is drawn at 1024 px and downscaled (LANCZOS) so small sizes stay smooth.
Tray variants add a coloured status dot (ok / warn / down) in the lower right corner.

Usage: python3 scripts/make-icons.py   (needs Pillow: pip install Pillow)
"""
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "icons"
UI = ROOT / "ui"
BASE = 1024

TOP = (124, 58, 237)  # violet
BOTTOM = (37, 99, 235)  # blue
STATE_COLOURS = {
    "ok": (34, 197, 94),  # green: everything up
    "warn": (245, 158, 11),  # amber: something degraded
    "down": (239, 68, 68),  # red: something down or failed
}


def gradient(size: int) -> Image.Image:
    """A vertical gradient from TOP to BOTTOM."""
    img = Image.new("RGBA", (size, size))
    draw = ImageDraw.Draw(img)
    for y in range(size):
        t = y / (size - 1)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM))
        draw.line([(0, y), (size, y)], fill=colour + (255,))
    return img


def base_icon() -> Image.Image:
    """Rounded square + lightning spark at BASE px."""
    margin = BASE * 0.06
    radius = BASE * 0.22
    mask = Image.new("L", (BASE, BASE), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        [margin, margin, BASE - margin, BASE - margin], radius=radius, fill=255
    )
    icon = Image.new("RGBA", (BASE, BASE), (0, 0, 0, 0))
    icon.paste(gradient(BASE), (0, 0), mask)

    # The lightning bolt, as fractions of the canvas (a classic two-segment zig-zag).
    bolt = [
        (0.58, 0.16),
        (0.28, 0.56),
        (0.48, 0.56),
        (0.40, 0.86),
        (0.74, 0.42),
        (0.53, 0.42),
        (0.62, 0.16),
    ]
    points = [(x * BASE, y * BASE) for x, y in bolt]
    draw = ImageDraw.Draw(icon)
    # A soft shadow under the bolt keeps it readable on light tray bars.
    shadow = [(x + BASE * 0.012, y + BASE * 0.018) for x, y in points]
    draw.polygon(shadow, fill=(20, 20, 60, 110))
    draw.polygon(points, fill=(255, 255, 255, 255))
    # Small sparkle top-left: the "spark" in Sparklio.
    cx, cy, r = BASE * 0.27, BASE * 0.29, BASE * 0.075
    sparkle = [
        (cx, cy - r),
        (cx + r * 0.28, cy - r * 0.28),
        (cx + r, cy),
        (cx + r * 0.28, cy + r * 0.28),
        (cx, cy + r),
        (cx - r * 0.28, cy + r * 0.28),
        (cx - r, cy),
        (cx - r * 0.28, cy - r * 0.28),
    ]
    draw.polygon(sparkle, fill=(255, 236, 153, 255))
    return icon


def with_state_dot(icon: Image.Image, colour) -> Image.Image:
    """The icon with a status dot (white ring) in the lower right corner."""
    out = icon.copy()
    draw = ImageDraw.Draw(out)
    r = BASE * 0.21
    cx, cy = BASE - r - BASE * 0.02, BASE - r - BASE * 0.02
    ring = BASE * 0.045
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 255, 255, 255))
    draw.ellipse(
        [cx - r + ring, cy - r + ring, cx + r - ring, cy + r - ring], fill=colour + (255,)
    )
    return out


def resized(icon: Image.Image, size: int) -> Image.Image:
    return icon.resize((size, size), Image.LANCZOS)


def main() -> None:
    ICONS.mkdir(exist_ok=True)
    icon = base_icon()
    for name, size in [("32x32.png", 32), ("128x128.png", 128), ("128x128@2x.png", 256), ("icon.png", 512)]:
        resized(icon, size).save(ICONS / name, optimize=True)
    # Multi-size ICO: tauri-build embeds it as the Windows executable's icon resource.
    resized(icon, 256).save(
        ICONS / "icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]
    )
    # Tray icons: 64 px is crisp on HiDPI trays and scaled down cleanly elsewhere.
    for state, colour in STATE_COLOURS.items():
        resized(with_state_dot(icon, colour), 64).save(ICONS / f"tray-{state}.png", optimize=True)
    UI.mkdir(exist_ok=True)
    resized(icon, 32).save(UI / "favicon.png", optimize=True)
    print(f"icons written to {ICONS} and {UI / 'favicon.png'}")


if __name__ == "__main__":
    main()
