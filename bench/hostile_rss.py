#!/usr/bin/env python3
"""Peak resident memory of dfserve under the hostile corpus, for one or more builds.

    .venv/bin/python bench/hostile_rss.py BINARY [BINARY ...]

For each binary: start `BINARY serve` with default flags on free ports, run every case of the
corpus one after another (each case may send several requests at once), sample the server's
RSS every 10 ms while a case runs, and print per case the answers it got, how long it took and
the peak RSS, then the kernel's high-water mark (VmHWM) for the whole run. Run from the repo
root (the binary reads `.dfserve/lib` and `models/` relative to it). Needs ffmpeg for the
video case. Each build gets the same inputs, so the figures compare side by side.
"""

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import aiohttp
import grpc
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.environ.get("DFSERVE_SAMPLES", os.path.join(ROOT, "..", "shared", "samples"))
CROP = open(os.path.join(SAMPLES, "mesonet", "df", "df00204.jpg"), "rb").read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return 0


# ---- inputs, built once ----------------------------------------------------------------------

def jpeg(w, h, progressive=False, quality=90):
    # A gradient, so the encoder cannot collapse it to nothing.
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, progressive=progressive)
    return buf.getvalue()


def scan_bomb():
    base = jpeg(256, 256, progressive=True)
    last = base.rfind(b"\xff\xda")
    return base[:-2] + base[last:-2] * 5000 + b"\xff\xd9"


def bytes_rows(rows):
    header = json.dumps({"inputs": [{"name": "IMAGE", "shape": [rows], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": rows * 5}}]}).encode()
    return header, header + b"\x01\x00\x00\x00x" * rows


def video_4k(path):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=30:duration=6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path], check=True)
    return open(path, "rb").read()


# ---- cases -----------------------------------------------------------------------------------

async def post_many(url, bodies, headers=None):
    """POSTs the bodies at once; returns a sorted list of statuses ('err' for broken ones)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one(body):
            try:
                async with session.post(url, data=body, headers=headers or {}) as r:
                    await r.read()
                    return r.status
            except Exception:
                return "err"
        return sorted(await asyncio.gather(*[one(b) for b in bodies]), key=str)


async def multipart(base):
    form = aiohttp.FormData()
    for i in range(500):
        form.add_field(f"f{i}", CROP, filename=f"{i}.jpg", content_type="image/jpeg")
    return await post_many(f"{base}/v1/detect?mode=whole", [form])


async def kserve_rows(base):
    header, body = bytes_rows(300_000)
    return await post_many(f"{base}/v2/models/dfserve/infer", [body],
                           {"inference-header-content-length": str(len(header))})


async def json_data(base):
    body = (b'{"inputs":[{"name":"input","shape":[1,256,256,3],"datatype":"FP32","data":['
            + b"0," * 20_000_000 + b"0]}]}")
    return await post_many(f"{base}/v2/models/meso4_df/infer", [body])


async def grpc_empty_tensors(grpc_addr):
    wire = b"\x0a\x08meso4_df" + b"\x2a\x00" * 5_000_000
    channel = grpc.aio.insecure_channel(grpc_addr, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        await call(wire, timeout=120)
        code = "OK"
    except grpc.aio.AioRpcError as e:
        code = e.code().name
    await channel.close()
    return [code]


async def scan_bombs(base):
    return await post_many(f"{base}/v1/detect", [scan_bomb()] * 4)


async def slow_headers(base):
    host, port = base.removeprefix("http://").split(":")
    socks = []
    for _ in range(200):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nhost: x\r\n")
        socks.append(s)
    await asyncio.sleep(3)
    for s in socks:
        s.close()
    return ["200 held 3 s"]


async def big_images(base, big):
    return await post_many(f"{base}/v1/detect?mode=whole", [big] * 8)


async def big_bodies(base):
    return await post_many(f"{base}/v1/detect", [os.urandom(60 << 20)] * 24)


async def videos(base, clip):
    return await post_many(f"{base}/v1/detect?frames=128", [clip] * 4)


# ---- driver ----------------------------------------------------------------------------------

def run(binary, inputs):
    http, grpc_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="hostile_rss_", suffix=".log", delete=False)
    server = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--http-port", str(http),
                               "--grpc-port", str(grpc_port)], cwd=ROOT, stdout=log, stderr=log,
                              env={**os.environ, "DFSERVE_DATA_DIR": tempfile.mkdtemp(prefix="hostile_rss_")})
    base = f"http://127.0.0.1:{http}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{base}/health/ready", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    else:
        sys.exit(f"{binary} did not become ready; see {log.name}")
    idle = rss_mib(server.pid)
    print(f"\n== {binary}: idle RSS {idle} MiB")
    print(f"{'case':<46} {'answers':<34} {'secs':>6} {'peak RSS MiB':>13}")
    cases = [
        ("multipart with 500 parts", lambda: multipart(base)),
        ("KServe REST, 300,000 one-byte rows", lambda: kserve_rows(base)),
        ("JSON tensor, 20 M elements (40 MB)", lambda: json_data(base)),
        ("gRPC, 5 M empty tensors (10 MB)", lambda: grpc_empty_tensors(f"127.0.0.1:{grpc_port}")),
        ("progressive JPEG, 5,000 scans, x4", lambda: scan_bombs(base)),
        ("200 slow-header clients", lambda: slow_headers(base)),
        ("40 MP JPEG, x8 at once", lambda: big_images(base, inputs["big"])),
        ("60 MB bodies, x24 at once", lambda: big_bodies(base)),
        ("4K video, 128 frames, x4 at once", lambda: videos(base, inputs["clip"])),
    ]
    for name, case in cases:
        peak = [rss_mib(server.pid)]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], rss_mib(server.pid))
                except FileNotFoundError:
                    return
                time.sleep(0.01)

        t = threading.Thread(target=sample)
        t.start()
        started = time.time()
        answers = asyncio.run(case())
        secs = time.time() - started
        done.set()
        t.join()
        summary = ", ".join(f"{a}x{answers.count(a)}" if answers.count(a) > 1 else str(a)
                            for a in sorted(set(answers), key=str))
        print(f"{name:<46} {summary:<34} {secs:6.1f} {peak[0]:13d}", flush=True)
        if server.poll() is not None:
            print(f"server exited with {server.returncode}; see {log.name}")
            return
    print(f"{'whole corpus: VmHWM (kernel high-water mark)':<88} {rss_mib(server.pid, 'VmHWM'):13d}")
    server.terminate()
    server.wait()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {"big": jpeg(7300, 5470, quality=95), "clip": video_4k(os.path.join(tmp, "4k.mp4"))}
        for binary in sys.argv[1:]:
            run(binary, inputs)


if __name__ == "__main__":
    main()
