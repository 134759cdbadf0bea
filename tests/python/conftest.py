"""Starts the real dfserve binary for the Python (official client) tests."""
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = pathlib.Path(os.environ.get("DFSERVE_SAMPLES", ROOT.parent / "shared" / "samples"))


class Server:
    def __init__(self, *extra):
        binary = ROOT / "target" / "release" / "dfserve"
        self.data_dir = tempfile.TemporaryDirectory(prefix="dfserve-data-")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
             "--data-dir", self.data_dir.name, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "DFSERVE_LOG": "warn"},
        )
        self.http = self.grpc = None
        deadline = time.time() + 60
        while (self.http is None or self.grpc is None) and time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("dfserve: listening on http://"):
                self.http = line.strip().removeprefix("dfserve: listening on http://")
            elif line.startswith("dfserve: grpc on "):
                self.grpc = line.strip().removeprefix("dfserve: grpc on ")
        assert self.http and self.grpc, "dfserve did not report its addresses"
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"http://{self.http}/v2/health/ready").status == 200:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("dfserve not ready in 60 s")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.data_dir.cleanup()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def samples():
    return SAMPLES / "mesonet"
