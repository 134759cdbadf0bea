"""Makes the full-photo benchmark inputs: 1280x720 JPEGs holding 1 to 5 faces each.

The only faces we may use are the four MesoNet sample crops, so each photo pastes some of them,
scaled to 150-260 px, at non-overlapping places on a busy synthetic background (gradients,
shapes and noise, so JPEG size and decode cost resemble a photo more than a flat fill would).
A layout is kept only if the UltraFace detector, run through the same code as the Python
peers, finds exactly the pasted number of faces, so every path does the same work per photo.

    python bench/make_photos.py SAMPLES_DIR OUT_DIR [COUNT]
"""

import pathlib
import random
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(pathlib.Path(__file__).parent / "peers"))
from common import Pipeline  # noqa: E402

W, H = 1280, 720


def background(rng):
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([x / W * 180 + 40, y / H * 160 + 60, (x + y) / (W + H) * 120 + 80], axis=-1)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x0, y0 = rng.randrange(W), rng.randrange(H)
        x1, y1 = x0 + rng.randrange(20, 300), y0 + rng.randrange(20, 200)
        color = tuple(rng.randrange(256) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=color)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = np.asarray(img, np.int16) + np.asarray(rng.choices(range(-12, 13), k=W * H * 3), np.int16).reshape(H, W, 3)
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


def layout(rng, n):
    """n non-overlapping squares (x, y, side) with a gap between them."""
    placed = []
    while len(placed) < n:
        side = rng.randrange(150, 261)
        x, y = rng.randrange(0, W - side), rng.randrange(0, H - side)
        if all(x + side + 20 < px or px + ps + 20 < x or y + side + 20 < py or py + ps + 20 < y for px, py, ps in placed):
            placed.append((x, y, side))
    return placed


def main():
    samples, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    faces = [Image.open(p).convert("RGB") for p in sorted(samples.glob("*/*.jpg"))]
    out.mkdir(parents=True, exist_ok=True)
    detector = Pipeline()
    rng = random.Random(20261129)
    made = 0
    while made < count:
        n = made % 5 + 1
        img = background(rng)
        for x, y, side in layout(rng, n):
            img.paste(rng.choice(faces).resize((side, side), Image.BILINEAR), (x, y))
        found = len(detector.faces(img))
        if found != n:
            continue
        path = out / f"photo{made:02d}_{n}faces.jpg"
        img.save(path, quality=90)
        made += 1
        print(f"{path.name}: {n} faces, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
