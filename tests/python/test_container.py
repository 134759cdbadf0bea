"""The container images, built and run with podman (scripts/image.sh builds them; podman's store
is the script's own). The CPU image runs as its non-root user with a read-only root filesystem
and the data dir on a named volume: its HEALTHCHECK turns healthy, the MesoNet samples score
over HTTP and gRPC with the official Triton clients, a hash list written through the API is
still there after a restart, and SIGTERM stops it cleanly within podman's 10 s before SIGKILL.
The CUDA image is built and lists its providers; without a GPU, CUDA must fail for want of a
device, never for a missing library.

CI runs these (DFSERVE_REQUIRE_CONTAINERS=1 in scripts/test.sh); elsewhere they are skipped
when podman cannot run (not root and no podman installed)."""
import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from conftest import ROOT

REQUIRED = os.environ.get("DFSERVE_REQUIRE_CONTAINERS") == "1"
ADMIN = "admin-key-for-container-tests-0123"
# df00204.jpg's PDQ hash (README, "Hash lists").
DF00204_PDQ = "07237c01f27c89f21383f40370fccb72328fd42fb1d60fd2db0734bf432cb4c9"


def usable():
    return os.geteuid() == 0 or shutil.which("podman") is not None


pytestmark = pytest.mark.skipif(not REQUIRED and not usable(),
                                reason="podman is not installed and cannot be (not root)")


def podman_env():
    """The environment scripts/image.sh gives podman: its own storage and configuration."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh"), "env"], capture_output=True, text=True,
                         check=True).stdout
    env = dict(os.environ)
    for word in shlex.split(out.removeprefix("export ")):
        k, v = word.split("=", 1)
        env[k] = v
    return env


ENV = podman_env()


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=ENV, check=check, timeout=timeout)


def build(which):
    """Builds one image with scripts/image.sh; returns seconds taken (cached layers make a rerun quick)."""
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "image.sh"), which], capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, f"scripts/image.sh {which} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    took = time.monotonic() - t0
    print(f"image {which}: built in {took:.0f} s")
    return took


class Container:
    """One run of localhost/dfserve:cpu: read-only root, data on a volume, random host ports."""

    def __init__(self, name, volume, keys):
        self.name = name
        self.volume = volume
        self.keys = keys
        self.http = self.grpc = None

    def start(self):
        podman("rm", "-f", self.name, check=False)
        t0 = time.monotonic()
        podman("run", "-d", "--name", self.name, "--read-only",
               "-v", f"{self.volume}:/var/lib/dfserve",
               "-v", f"{self.keys}:/etc/dfserve/keys.txt:ro", "-e", "DFSERVE_API_KEY_FILE=/etc/dfserve/keys.txt",
               "-p", "127.0.0.1::8000", "-p", "127.0.0.1::8001", "localhost/dfserve:cpu")
        self.http = podman("port", self.name, "8000/tcp").stdout.strip().splitlines()[0]
        self.grpc = podman("port", self.name, "8001/tcp").stdout.strip().splitlines()[0]
        # The image's HEALTHCHECK (`dfserve health`), run as the engine runs it.
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if podman("healthcheck", "run", self.name, check=False).returncode == 0:
                break
            state = podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()
            assert state == "running", f"container {state}:\n{self.logs()}"
            time.sleep(0.25)
        else:
            raise AssertionError(f"not healthy in 120 s:\n{self.logs()}")
        ready = time.monotonic() - t0
        print(f"container {self.name}: start to healthy {ready:.1f} s")
        return ready

    def logs(self):
        r = podman("logs", self.name, check=False)
        return (r.stdout + r.stderr)[-4000:]

    def stop(self):
        """SIGTERM (the image's STOPSIGNAL); podman sends SIGKILL after 10 s. Returns seconds and exit code."""
        t0 = time.monotonic()
        podman("stop", "-t", "10", self.name, timeout=60)
        took = time.monotonic() - t0
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())
        return took, code

    def call(self, path, body=None, method=None, key=ADMIN):
        req = urllib.request.Request(f"http://{self.http}{path}", data=body, method=method,
                                     headers={"x-api-key": key})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def cpu_container(tmp_path_factory):
    build("cpu")
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"admin:{ADMIN}\n")
    keys.chmod(0o644)
    tag = f"dfserve-test-{os.getpid()}"
    podman("volume", "rm", "-f", f"{tag}-data", check=False)
    podman("volume", "create", f"{tag}-data")
    c = Container(tag, f"{tag}-data", keys)
    c.start()
    yield c
    podman("rm", "-f", tag, check=False)
    podman("volume", "rm", "-f", f"{tag}-data", check=False)


def test_runs_as_the_non_root_user_on_a_read_only_root(cpu_container):
    c = cpu_container
    assert podman("exec", c.name, "id", "-u").stdout.strip() == "10001"
    assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", c.name).stdout.strip() == "true"
    r = podman("exec", c.name, "sh", "-c", "touch /opt/dfserve/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    # The data dir is the volume, writable by the user.
    podman("exec", c.name, "sh", "-c", "touch /var/lib/dfserve/.probe && rm /var/lib/dfserve/.probe")


def test_scores_the_mesonet_samples_over_http_and_grpc(cpu_container, samples):
    c = cpu_container
    files = ["df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "real/real00772.jpg"]
    images = np.array([(samples / f).read_bytes() for f in files], dtype=np.object_)
    want = np.array([0.959, 0.951, 0.010, 0.002], dtype=np.float32)  # MesoNet sample table
    h = th.InferenceServerClient(c.http)
    g = tg.InferenceServerClient(c.grpc)
    hi = th.InferInput("IMAGE", [4], "BYTES")
    hi.set_data_from_numpy(images, binary_data=True)
    gi = tg.InferInput("IMAGE", [4], "BYTES")
    gi.set_data_from_numpy(images)
    params = {"mode": "whole", "model": "meso4_df"}
    # A dict each: the HTTP client adds its own headers to the one it is given.
    for r in [h.infer("dfserve", [hi], parameters=params, headers={"x-api-key": ADMIN}),
              g.infer("dfserve", [gi], parameters=params, headers={"x-api-key": ADMIN})]:
        np.testing.assert_allclose(r.as_numpy("SCORE"), want, atol=1.5e-3)
        assert list(r.as_numpy("LABEL")) == [b"manipulated", b"manipulated", b"authentic", b"authentic"]
    # The default model (the CLIP probe ensemble) over the dfserve API, too.
    out = c.call("/v1/detect", (samples / "df" / "df00204.jpg").read_bytes(), "POST")
    assert out["results"][0]["faces"], out


def test_a_hash_list_outlives_a_restart_and_sigterm_stops_it_cleanly(cpu_container, samples):
    c = cpu_container
    entry = {"kind": "pdq", "hash": DF00204_PDQ, "id": "case-17"}
    assert c.call("/v1/hashlists/ncii", json.dumps(entry).encode(), "POST")["added"] == 1

    took, code = c.stop()
    print(f"SIGTERM to exit: {took:.1f} s, exit code {code}")
    assert code == 0, f"exit code {code} (137 would be SIGKILL after the 10 s):\n{c.logs()}"
    assert took < 10

    # The same volume, a new container.
    podman("rm", c.name)
    c.start()
    lists = c.call("/v1/hashlists")["lists"]
    assert [(l.get("list", l.get("name")), l["entries"]) for l in lists] == [("ncii", 1)], lists
    out = c.call("/v1/detect", (samples / "df" / "df00204.jpg").read_bytes(), "POST")
    assert [(m["list"], m["id"]) for m in out["results"][0]["matches"]] == [("ncii", "case-17")]

    took, code = c.stop()
    assert code == 0 and took < 10, (took, code)


def test_the_cuda_image_builds_and_lists_its_providers():
    build("cuda")
    r = podman("run", "--rm", "--read-only", "localhost/dfserve:cuda", "providers", timeout=300)
    rows = {row["provider"]: row for row in map(json.loads, r.stdout.splitlines())}
    print("providers:", json.dumps(rows))
    cpu, cuda, trt = rows["CPUExecutionProvider"], rows["CUDAExecutionProvider"], rows["TensorrtExecutionProvider"]
    assert cpu["loads"] is True
    assert cuda["in_library"] and cuda["in_build"] and trt["in_library"] and trt["in_build"]
    # Without the NVIDIA toolkit there is no driver (libcuda.so.1, the host's): CUDA stops there.
    if not cuda["loads"]:
        assert "libcuda.so.1" in cuda["error"] or "CUDA" in cuda["error"], cuda["error"]
    # So the loader is asked directly: every library the image ships (ONNX Runtime's providers,
    # CUDA, cuBLAS, cuFFT, cuRAND, cuDNN and the engines cuDNN opens at run time) must find all
    # it needs in the image, but the driver and TensorRT's.
    r = podman("run", "--rm", "--read-only", "--entrypoint", "sh", "localhost/dfserve:cuda", "-c",
               'for f in /opt/dfserve/lib/dfserve/*.so* /opt/dfserve/lib/cuda/*.so*; do '
               'ldd "$f" | sed -n "s/^[[:space:]]*\\([^ ]*\\) => not found.*/\\1/p"; done | sort -u', timeout=300)
    missing = set(r.stdout.split())
    assert missing == {"libcuda.so.1", "libnvinfer.so.10", "libnvonnxparser.so.10"}, missing
    libs = podman("run", "--rm", "--entrypoint", "ls", "localhost/dfserve:cuda", "/opt/dfserve/lib/cuda").stdout.split()
    for lib in ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcufft.so.12", "libcurand.so.10",
                "libcudnn.so.9", "libnvrtc.so.13"]:
        assert lib in libs, (lib, libs)
    # TensorRT's libraries could not be obtained: it must say so, not fall back to the CPU.
    assert trt["loads"] is False and "libnvinfer" in trt["error"], trt
