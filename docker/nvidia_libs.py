"""Copies the shared libraries out of NVIDIA's wheels (nvidia/<part>/lib/*.so*) into one
directory, for an image that has no Python packages: `python3 nvidia_libs.py WHEEL_DIR OUT_DIR`.
Each wheel's licence file goes to OUT_DIR/licenses/<wheel name>/."""
import os
import pathlib
import shutil
import sys
import zipfile

wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
count = 0
for whl in sorted(wheels.glob("nvidia_*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            parts = pathlib.PurePosixPath(name).parts
            base = parts[-1]
            if len(parts) >= 3 and parts[0] == "nvidia" and parts[-2] == "lib" and ".so" in base:
                with z.open(name) as src, open(out / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(out / base, 0o644)
                count += 1
            elif base.upper().startswith("LICENSE") and ".dist-info/" in name:
                lic = out / "licenses" / whl.name.split("-")[0]
                lic.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(lic / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
if count == 0:
    sys.exit(f"nvidia_libs.py: no libraries found in {wheels}")
print(f"nvidia_libs.py: {count} libraries into {out}")
