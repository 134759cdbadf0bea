#!/usr/bin/env python3
"""What dihedral PDQ matching costs in false matches: every pair of distinct images in a set
of unrelated photos, compared as uploaded and through the eight variants.

    .venv/bin/python scripts/pdq_dihedral_cost.py DIR [DIR ...] [--limit N] [--distance 31]

Hashes every image with `dfserve hash --dihedral` (target/release/dfserve), then counts the
pairs (listed image A, uploaded image B, A != B) that match at the distance: with the upload's
own hash only, and with any of its eight variants. Byte-identical files are counted once.
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def bits(hex_hash):
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_hash), dtype=np.uint8))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=pathlib.Path)
    ap.add_argument("--limit", type=int, default=2000, help="images per folder, at most")
    ap.add_argument("--distance", type=int, default=31)
    ap.add_argument("--min-quality", type=int, default=50)
    a = ap.parse_args()
    files = []
    for d in a.dirs:
        found = sorted(p for p in d.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
        files += found[: a.limit]
    if not files:
        sys.exit("no images found: give folders of .jpg/.png/.webp files")
    rows = []
    for i in range(0, len(files), 500):
        chunk = files[i:i + 500]
        out = subprocess.run([str(ROOT / "target/release/dfserve"), "hash", "--dihedral", *map(str, chunk)],
                             capture_output=True, text=True)
        rows += [json.loads(line) for line in out.stdout.splitlines()]
        print(f"hashed {len(rows)}/{len(files)}", file=sys.stderr)
    seen, good = set(), []
    for r in rows:
        if r.get("kind") == "image" and r["quality"] >= a.min_quality and r["sha256"] not in seen:
            seen.add(r["sha256"])
            good.append(r)
    n = len(good)
    listed = np.stack([bits(r["pdq"]) for r in good]).astype(np.int16)
    variants = np.stack([np.stack([bits(h) for h in r["pdq_dihedral"]]) for r in good]).astype(np.int16)
    plain = dihedral = 0
    by_variant = [0] * 8
    for j in range(n):
        # Hamming distance of each of upload j's variants to every listed image.
        d = (variants[j][:, None, :] != listed[None, :, :]).sum(-1)
        d[:, j] = 999
        hit = d <= a.distance
        plain += int(hit[0].sum())
        dihedral += int(hit.any(0).sum())
        for k in range(8):
            by_variant[k] += int(hit[k].sum())
    pairs = n * (n - 1)
    print(json.dumps({
        "images": n, "pairs": pairs, "distance": a.distance,
        "false_matches_plain": plain, "false_matches_dihedral": dihedral,
        "rate_plain": plain / pairs, "rate_dihedral": dihedral / pairs,
        "by_variant": by_variant,
    }))


if __name__ == "__main__":
    main()
