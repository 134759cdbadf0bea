#!/usr/bin/env python3
"""Peak memory of hash-list imports: one 1 M-entry import, then four at once.

Starts the release build with an admin key on a fresh data dir, sends 1,000,000-entry CSV
imports of MD5 entries (about 46 MB each, the size in the issue that measured 835 -> 2,538 MB),
and reads the server's resident memory from /proc: the peak (VmHWM, reset before each phase
through /proc/PID/clear_refs) and the resident size once the lists are deleted again. Clients
that get 429 `busy` (the import budget) back off and retry, as a client should.

    python3 bench/import_memory.py [--entries 1000000] [--budget BYTES] [--kind md5|pdq] [--one-only]
                                   [--database-url 'host=127.0.0.1 port=5432 user=u dbname=d']

With --database-url the lists go to PostgreSQL (the same figures, and the import's entries/s on
that store; the database should be empty).

Prints one JSON object. Linux only (reads /proc).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN = "admin-key-bench-0123456789"


def status_mib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def body(n, tag, kind="md5"):
    lines = ["kind,hash,id"]
    for i in range(n):
        h = hashlib.md5(f"{tag}{i}".encode()).hexdigest()
        lines.append(f"{kind},{h if kind == 'md5' else h + hashlib.md5(h.encode()).hexdigest()},{tag}{i:07d}")
    return ("\n".join(lines) + "\n").encode()


def call(base, method, path, data=None):
    req = urllib.request.Request(base + path, data=data, method=method, headers={"x-api-key": ADMIN})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def import_until_admitted(base, name, data, out):
    started, refused = time.time(), 0
    while True:
        status, answer = call(base, "POST", f"/v1/hashlists/{name}", data)
        if status != 429:
            break
        refused += 1
        time.sleep(0.5)
    out[name] = {"status": status, "entries": (answer or {}).get("entries"), "refused_429": refused,
                 "seconds": round(time.time() - started, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--budget", type=int, default=None, help="--max-import-memory-bytes (default: the server's)")
    ap.add_argument("--kind", choices=["md5", "pdq"], default="md5", help="entries' kind (pdq: random 256-bit hashes)")
    ap.add_argument("--one-only", action="store_true", help="only the single import")
    ap.add_argument("--database-url", default=None, help="keep the lists in PostgreSQL (the server's --database-url)")
    args = ap.parse_args()
    binary = os.path.join(ROOT, "target", "release", "dfserve")
    tmp = tempfile.mkdtemp(prefix="dfserve-import-mem-")
    keys = os.path.join(tmp, "keys")
    with open(keys, "w") as f:
        f.write(f"admin:{ADMIN}\n")
    cmd = [binary, "serve", "--http-port", "0", "--grpc-port", "0", "--host", "127.0.0.1",
           "--data-dir", os.path.join(tmp, "data"), "--api-key-file", keys, "--max-body-bytes", str(256 << 20)]
    if args.budget:
        cmd += ["--max-import-memory-bytes", str(args.budget)]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    env = dict(os.environ, DFSERVE_LOG="warn")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    base = None
    for line in proc.stdout:
        if line.startswith("dfserve: listening on "):
            base = line.split()[-1]
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    for _ in range(600):
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=5) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.5)
    pid = proc.pid
    bodies = [body(args.entries, f"l{k}-", args.kind) for k in range(1 if args.one_only else 4)]
    result = {"entries": args.entries, "body_mb": round(len(bodies[0]) / 1e6, 1),
              "idle_rss_mib": round(status_mib(pid, "VmRSS"))}
    try:
        # One import.
        reset_peak(pid)
        before = status_mib(pid, "VmRSS")
        out = {}
        import_until_admitted(base, "one", bodies[0], out)
        result["one"] = dict(out["one"], peak_rss_mib=round(status_mib(pid, "VmHWM")),
                             peak_over_start_mib=round(status_mib(pid, "VmHWM") - before))
        result["one"]["rss_with_list_mib"] = round(status_mib(pid, "VmRSS"))
        result["one"]["entries_per_s"] = round(args.entries / max(out["one"]["seconds"], 0.1))
        result["store"] = "postgres" if args.database_url else "data dir"
        call(base, "DELETE", "/v1/hashlists/one")
        result["one"]["rss_after_delete_mib"] = round(status_mib(pid, "VmRSS"))
        if args.one_only:
            return print(json.dumps(result, indent=1))
        # Four at once.
        reset_peak(pid)
        before = status_mib(pid, "VmRSS")
        out = {}
        threads = [threading.Thread(target=import_until_admitted, args=(base, f"four{k}", bodies[k], out))
                   for k in range(4)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result["four"] = {"imports": out, "seconds": round(time.time() - started, 1),
                          "peak_rss_mib": round(status_mib(pid, "VmHWM")),
                          "peak_over_start_mib": round(status_mib(pid, "VmHWM") - before),
                          "rss_with_lists_mib": round(status_mib(pid, "VmRSS"))}
        for k in range(4):
            call(base, "DELETE", f"/v1/hashlists/four{k}")
        result["four"]["rss_after_delete_mib"] = round(status_mib(pid, "VmRSS"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
