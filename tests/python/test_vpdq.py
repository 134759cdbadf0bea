"""vPDQ against the reference: `dfserve hash` on generated clips gives the frames, times and PDQ
hashes that Meta's `vpdq` package gives, and a video whose vPDQ is on a list is found again after
re-encoding and resizing, while other videos are not."""
import json
import pathlib
import subprocess

import pytest
import vpdq

from conftest import ADMIN, ROOT, post

BIN = ROOT / "target" / "release" / "dfserve"

# (name, lavfi source, seconds, extra output options)
CLIPS = [
    ("testsrc_30fps", "testsrc2=size=320x240:rate=30", 5, []),
    ("mandelbrot_25fps", "mandelbrot=size=256x192:rate=25", 4, []),
    ("ntsc_29_97", "testsrc=size=352x288:rate=30000/1001", 6, []),
    ("cellauto_12fps_odd", "cellauto=size=330x202:rate=12", 5, []),
    ("life_0_5fps", "life=size=320x240:rate=1/2:mold=10", 8, []),
    ("mandelbrot_vp9", "mandelbrot=size=320x240:rate=24", 3, ["-c:v", "libvpx-vp9", "-b:v", "400k"]),
    # Over --video-max-side (1280): dfserve hashes frames scaled down, the reference full size.
    ("testsrc_1080p", "testsrc2=size=1920x1080:rate=30", 2, []),
]


def make(path, source, seconds, extra, filters=None):
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", str(seconds)]
    if filters:
        cmd += ["-vf", filters]
    cmd += extra or ["-c:v", "libx264", "-preset", "veryfast"]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def reference(path):
    return [(f.hex, f.quality, round(f.timestamp, 3)) for f in vpdq.computeHash(str(path))]


def ours(paths):
    out = subprocess.run([str(BIN), "hash", *map(str, paths)], cwd=ROOT, capture_output=True, text=True, check=True)
    rows = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    parsed = {}
    for p in paths:
        r = rows[str(p)]
        assert r["kind"] == "video", r
        parsed[p] = [(h, int(q), float(t)) for h, q, t in (s.split(",") for s in r["vpdq"])]
    return parsed


def distance(a, b):
    return bin(int(a, 16) ^ int(b, 16)).count("1")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {name: make(d / f"{name}.{'webm' if 'vp9' in name else 'mp4'}", src, secs, extra)
            for name, src, secs, extra in CLIPS}


def test_frames_times_and_hashes_agree_with_the_reference(clips):
    got = ours(list(clips.values()))
    for name, path in clips.items():
        want = reference(path)
        mine = got[path]
        assert len(mine) == len(want), (name, len(mine), len(want))
        for (h, q, t), (wh, wq, wt) in zip(mine, want):
            assert abs(t - wt) < 2e-3, (name, t, wt)
            if "1080p" in name:
                # Scaled to 1280x720 first: PDQ downsamples to 64x64 anyway, a few bits move.
                assert distance(h, wh) <= 16 and abs(q - wq) <= 10, (name, t, distance(h, wh), q, wq)
            else:
                # The same frame, converted to RGB by the same FFmpeg: the same bits.
                assert (h, q) == (wh, wq), (name, t, distance(h, wh))
        exact = sum(h == wh for (h, _, _), (wh, _, _) in zip(mine, want))
        print(f"{name}: {len(mine)} frames, {exact} bit-equal to the reference")


def test_a_listed_video_is_found_after_reencoding_and_others_are_not(admin_server, tmp_path):
    src = "testsrc2=size=480x360:rate=30"
    listed = make(tmp_path / "listed.mp4", src, 6, [])
    other = make(tmp_path / "other.mp4", "mandelbrot=size=480x360:rate=30", 6, [])
    # The list holds the reference package's vPDQ, in ThreatExchange's form.
    frames = [f"{h},{q},{t:.3f}" for h, q, t in reference(listed)]
    entry = {"kind": "vpdq", "hash": frames, "id": "clip-1", "label": "known"}
    post(admin_server, "/v1/hashlists/videos", json.dumps(entry).encode(), ADMIN)
    changed = {
        "listed": listed,
        "crf40": make(tmp_path / "crf40.mp4", src, 6, ["-c:v", "libx264", "-crf", "40"]),
        "half_size": make(tmp_path / "half.mp4", src, 6, [], filters="scale=240:180"),
        "double_size": make(tmp_path / "double.mp4", src, 6, [], filters="scale=960:720"),
        "to_25fps_mkv": make(tmp_path / "fps25.mkv", src, 6, [], filters="fps=25"),
        "first_half": make(tmp_path / "cut.mp4", src, 3, []),
    }
    for name, path in changed.items():
        r = post(admin_server, "/v1/detect?frames=2", path.read_bytes(), ADMIN)["results"][0]
        m = [x for x in r["matches"] if x["kind"] == "vpdq"]
        assert [x["id"] for x in m] == ["clip-1"], (name, r["matches"])
        assert m[0]["query_match_pct"] >= 80.0 and m[0]["distance"] <= 31, (name, m)
        print(f"{name}: query {m[0]['query_match_pct']:.0f}%, list {m[0]['list_match_pct']:.0f}%")
    r = post(admin_server, "/v1/detect?frames=2", other.read_bytes(), ADMIN)["results"][0]
    assert r["matches"] == [], r["matches"]
    assert r["frames_sampled"] == 2


def test_score_rows_carry_matches_from_the_lists(tmp_path):
    """`dfserve score --hash-lists DIR` matches each file, video and image, like the server."""
    src = "testsrc2=size=320x240:rate=30"
    listed = make(tmp_path / "listed.mp4", src, 4, [])
    smaller = make(tmp_path / "smaller.mp4", src, 4, [], filters="scale=240:180")
    other = make(tmp_path / "other.mp4", "mandelbrot=size=320x240:rate=30", 4, [])
    hashed = ours([listed])[listed]
    entries = tmp_path / "list.jsonl"
    entries.write_text(json.dumps({"kind": "vpdq", "hash": [f"{h},{q},{t:.3f}" for h, q, t in hashed],
                                   "id": "v1"}) + "\n")
    data = tmp_path / "data"
    subprocess.run([str(BIN), "hashes", "--data-dir", str(data), "import", "--list", "known", str(entries)],
                   cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "rows.jsonl"
    subprocess.run([str(BIN), "score", "--hash-lists", str(data), "--output", str(out),
                    str(smaller), str(other)], cwd=ROOT, check=True, capture_output=True)
    rows = {pathlib.Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    (outcome,) = rows["smaller.mp4"]["models"].values()
    assert [(m["list"], m["id"], m["kind"]) for m in outcome["matches"]] == [("known", "v1", "vpdq")]
    (outcome,) = rows["other.mp4"]["models"].values()
    assert "matches" not in outcome
