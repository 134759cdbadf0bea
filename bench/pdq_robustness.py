#!/usr/bin/env python3
"""How often PDQ still matches (Hamming distance <= 31) after the edits a re-upload goes
through, measured with `dfserve hash`; and the distances between different images.

    .venv/bin/python bench/pdq_robustness.py IMAGE_OR_DIR [...]

Edits: JPEG re-encoding at quality 50/75/95, resizing 0.5-2x, brightness +-20%, and crops of
1, 2 and 5% off every side. Prints one row per edit: match rate, median and worst distance.
"""
import io
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

from PIL import Image, ImageEnhance, ImageOps

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "dfserve"


def edits(img):
    w, h = img.size
    for q in (50, 75, 95):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        yield f"JPEG quality {q}", Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    for s in (0.5, 0.75, 1.5, 2.0):
        yield f"resize {s}x", img.resize((max(8, int(w * s)), max(8, int(h * s))), Image.BILINEAR)
    for b in (0.8, 1.2):
        yield f"brightness {b:+.0%}".replace("+80%", "-20%").replace("+120%", "+20%"), ImageEnhance.Brightness(img).enhance(b)
    for c in (0.01, 0.02, 0.05):
        dx, dy = int(round(w * c)), int(round(h * c))
        yield f"crop {c:.0%} each side", img.crop((dx, dy, w - dx, h - dy))


def hashes(paths):
    out = subprocess.run([str(BIN), "hash", *map(str, paths)], capture_output=True, text=True, check=True)
    return {r["path"]: (int(r["pdq"], 16), r["quality"]) for r in map(json.loads, out.stdout.splitlines())}


def main():
    files = []
    for a in sys.argv[1:]:
        p = pathlib.Path(a)
        files += sorted(x for x in p.rglob("*") if x.suffix.lower() in (".jpg", ".jpeg", ".png")) if p.is_dir() else [p]
    if not files:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        rows, originals = {}, {}
        for i, f in enumerate(files):
            img = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
            o = pathlib.Path(tmp, f"{i}_orig.png")
            img.save(o)
            originals[i] = str(o)
            for j, (name, edited) in enumerate(edits(img)):
                p = pathlib.Path(tmp, f"{i}_{j}.png")
                edited.save(p)
                rows.setdefault(name, []).append((i, str(p)))
        h = hashes(list(originals.values()) + [p for v in rows.values() for _, p in v])
    dist = lambda a, b: bin(a ^ b).count("1")
    print(f"{len(files)} images; median quality {statistics.median(h[o][1] for o in originals.values())}")
    print(f"{'edit':<24}{'matched':>10}{'median d':>10}{'worst d':>9}")
    for name, items in rows.items():
        d = [dist(h[originals[i]][0], h[p][0]) for i, p in items]
        print(f"{name:<24}{sum(x <= 31 for x in d):>5}/{len(d):<4}{statistics.median(d):>10}{max(d):>9}")
    others = [dist(h[originals[a]][0], h[originals[b]][0]) for a in originals for b in originals if a < b]
    if others:
        print(f"{'different images':<24}{sum(x <= 31 for x in others):>5}/{len(others):<4}{statistics.median(others):>10}{min(others):>9} (min)")


if __name__ == "__main__":
    main()
