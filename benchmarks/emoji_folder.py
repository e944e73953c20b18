"""Render a small RGB image folder from a colour emoji font, for the "your own images" walk-through.

    apt-get install -y fonts-noto-color-emoji
    python benchmarks/emoji_folder.py --out data/emoji          # ~1,400 PNGs, 64x64 RGBA

Every single code point the font maps to a colour glyph (letters, digits, joiners, variation
selectors, tags and private-use glyphs left out) is drawn at the font's bitmap size, centred on
a transparent square and resized to ``--size`` px; ``gankd train-teacher --data folder:data/emoji``
then composites the transparency onto white, as for any folder (no class sub-folders: an
unconditional model). The folder is a plain stand-in for a user's own small data set: nothing in
gankd knows about emoji. Writes ``index.json`` (font path and SHA-256, code points, size) beside
the images; an existing folder is refused unless it is this script's own output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
BITMAP_SIZE = 109  # the one strike size of Noto Color Emoji's CBDT bitmaps
SKIP_CATEGORIES = ("Cf", "Mn", "Me", "Co", "Cs", "Cc", "Zs", "Lu", "Ll", "Nd")


def code_points(font_path: str) -> list[int]:
    from fontTools import ttLib

    cmap = ttLib.TTFont(font_path, lazy=True).getBestCmap()
    return [c for c in sorted(cmap) if c >= 0x80 and unicodedata.category(chr(c)) not in SKIP_CATEGORIES]


def render(font, cp: int, size: int):
    """The glyph of ``cp`` centred on a transparent ``size`` px square, or None if it draws nothing."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (2 * BITMAP_SIZE, 2 * BITMAP_SIZE), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((BITMAP_SIZE // 2, BITMAP_SIZE // 2), chr(cp), font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    square.paste(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return square.resize((size, size), Image.LANCZOS)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder to write the PNGs into")
    ap.add_argument("--font", default=FONT, help="a colour emoji font (CBDT bitmaps)")
    ap.add_argument("--size", type=int, default=64, help="image size in px (default 64)")
    args = ap.parse_args(argv)
    from PIL import ImageFont

    font_path = Path(args.font)
    if not font_path.is_file():
        print(f"error: no font at {font_path}: apt-get install -y fonts-noto-color-emoji, or pass --font",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not (out / "index.json").is_file():
        print(f"error: {out} exists and is not this script's output: pass another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(str(font_path), BITMAP_SIZE)
    written = []
    for cp in code_points(str(font_path)):
        img = render(font, cp, args.size)
        if img is not None:
            img.save(out / f"u{cp:05x}.png")
            written.append(cp)
    index = {"font": str(font_path), "font_sha256": hashlib.sha256(font_path.read_bytes()).hexdigest(),
             "size": args.size, "images": len(written), "code_points": [f"U+{c:04X}" for c in written],
             "command": "python benchmarks/emoji_folder.py " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{len(written)} emoji written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
