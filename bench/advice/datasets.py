"""Makes the bench's extra datasets as zips of PNGs with the standard library only (no downloads):

  shapes  32x32 colour: circle, square, triangle in random colours, sizes and places (easy, colour)
  bars    12x12 greyscale: horizontal, vertical, diagonal, anti-diagonal bars under heavy noise
          (small, hard)

    python3 datasets.py OUT_DIR    -> OUT_DIR/shapes.zip, OUT_DIR/bars.zip
"""

import io
import random
import struct
import sys
import zipfile
import zlib


def png(width, height, rows, colour):
    """rows: list of bytes per row (RGB or grey)."""
    raw = b"".join(b"\x00" + r for r in rows)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def shape_image(rng, kind, n=32):
    bg = [rng.randrange(0, 90) for _ in range(3)]
    fg = [rng.randrange(120, 256) for _ in range(3)]
    r = rng.uniform(5, 11)
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    rows = []
    for y in range(n):
        row = bytearray()
        for x in range(n):
            dx, dy = x + 0.5 - cx, y + 0.5 - cy
            if kind == "circle":
                inside = dx * dx + dy * dy <= r * r
            elif kind == "square":
                inside = abs(dx) <= r * 0.85 and abs(dy) <= r * 0.85
            else:  # triangle pointing up
                inside = -r <= dy <= r and abs(dx) <= (dy + r) / 2
            c = fg if inside else bg
            row += bytes(max(0, min(255, v + rng.randrange(-20, 21))) for v in c)
        rows.append(bytes(row))
    return png(n, n, rows, True)


def bar_image(rng, kind, n=12):
    off = rng.randrange(-3, 4)
    rows = []
    for y in range(n):
        row = bytearray()
        for x in range(n):
            on = {
                "horizontal": y == n // 2 + off,
                "vertical": x == n // 2 + off,
                "diagonal": x - y == off,
                "antidiagonal": x + y == n - 1 + off,
            }[kind]
            v = (170 if on else 60) + rng.gauss(0, 55)
            row.append(max(0, min(255, int(v))))
        rows.append(bytes(row))
    return png(n, n, rows, False)


def write(path, classes, per_class, make, seed):
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for c in classes:
            for i in range(per_class):
                z.writestr(f"{c}/{i:04d}.png", make(rng, c))


if __name__ == "__main__":
    out = sys.argv[1]
    write(f"{out}/shapes.zip", ["circle", "square", "triangle"], 200, shape_image, 1)
    write(f"{out}/bars.zip", ["horizontal", "vertical", "diagonal", "antidiagonal"], 150, bar_image, 2)
