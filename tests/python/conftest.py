"""Starts the real dfserve binary for the Python (official client) tests."""
import json
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


ADMIN = "admin-key-for-list-tests-0123456789"


def post(server, path, body, key, method="POST"):
    """A request to `server`'s HTTP port with an API key; the JSON answer."""
    req = urllib.request.Request(f"http://{server.http}{path}", data=body, method=method,
                                 headers={"x-api-key": key})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory):
    """A server whose key file holds one admin key (`ADMIN`), to change hash lists."""
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"admin:{ADMIN}\n")
    s = Server("--api-key-file", str(keys))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def samples():
    return SAMPLES / "mesonet"
