"""Generates a small MNIST-like digits zip (train/<d>/*.png, test/<d>/*.png; 500 + 100 per class,
28x28 grayscale) for the benchmark when ../shared/datasets/mnist-digits.zip is not there: each image is
the digit drawn with PIL's default font at a random offset and scale, plus noise. Deterministic."""

import io
import random
import sys
import zipfile

from PIL import Image, ImageDraw, ImageFont


def digit(d, rng):
    img = Image.new("L", (28, 28), 0)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=rng.randint(16, 22))
    draw.text((rng.randint(3, 11), rng.randint(0, 6)), str(d), fill=rng.randint(180, 255), font=font)
    img = img.rotate(rng.uniform(-15, 15))
    px = img.load()
    for _ in range(30):
        px[rng.randrange(28), rng.randrange(28)] = rng.randint(0, 120)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def main():
    rng = random.Random(0)
    with zipfile.ZipFile(sys.argv[1], "w") as z:
        for split, n in (("train", 500), ("test", 100)):
            for d in range(10):
                for i in range(n):
                    z.writestr(f"{split}/{d}/{i:05d}.png", digit(d, rng))


if __name__ == "__main__":
    main()
