"""Before timing anything, checks that dfserve and both peers compute the same thing: the same
score for each crop (whole mode, and the PyTriton model), and the same faces and scores for a
photo. Exits non-zero when they disagree, so the suite never compares different work.

    python bench/check_peers.py DFSERVE_HTTP_PORT FASTAPI_PORT PYTRITON_GRPC_PORT CROP... PHOTO
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient


def post(port, path, data):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["results"][0]


def main():
    df_port, fa_port, pyt_port = sys.argv[1:4]
    crops, photo = sys.argv[4:-1], sys.argv[-1]
    pyt = grpcclient.InferenceServerClient(f"127.0.0.1:{pyt_port}")
    worst = 0.0
    for path in crops:
        data = open(path, "rb").read()
        ours = post(df_port, "/v1/detect?mode=whole", data)["score"]
        fastapi = post(fa_port, "/v1/detect?mode=whole", data)["score"]
        inp = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[data]], dtype=np.object_))
        pytriton = float(pyt.infer("meso4_df_jpeg", [inp]).as_numpy("SCORE")[0][0])
        worst = max(worst, abs(ours - fastapi), abs(ours - pytriton))
        print(f"  {path.rsplit('/', 1)[-1]}: dfserve {ours:.4f}  fastapi {fastapi:.4f}  pytriton {pytriton:.4f}")
    if worst > 1e-3:
        sys.exit(f"crop scores differ by {worst:.4f}: the peers do not do the same work")
    data = open(photo, "rb").read()
    ours = post(df_port, "/v1/detect", data)["faces"]
    fastapi = post(fa_port, "/v1/detect", data)["faces"]
    if len(ours) != len(fastapi):
        sys.exit(f"{photo}: dfserve finds {len(ours)} faces, the FastAPI peer {len(fastapi)}")
    # Bilinear resizing differs slightly between fast_image_resize and Pillow, so the face
    # scores agree closely, not exactly.
    diff = max(abs(a["score"] - b["score"]) for a, b in zip(sorted(ours, key=lambda f: f["box"]), sorted(fastapi, key=lambda f: f["box"])))
    print(f"  {photo.rsplit('/', 1)[-1]}: {len(ours)} faces in both, largest face-score difference {diff:.4f}")
    if diff > 0.05:
        sys.exit("photo face scores differ by more than 0.05: the peers do not do the same work")


if __name__ == "__main__":
    main()
