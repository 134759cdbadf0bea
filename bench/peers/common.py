"""The image work both Python peers do, written the way a team would in Python: Pillow to
decode and resize, NumPy to normalise, one ONNX Runtime session per model. It follows the same
model configs as dfserve (models/*.toml), so both sides compute the same thing."""

import io
import os
import tomllib

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL_DIR = os.environ.get("DFSERVE_MODEL_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "models"))
INTRA_THREADS = int(os.environ.get("PEER_INTRA_THREADS", "2"))


def _config(name):
    with open(os.path.join(MODEL_DIR, name + ".toml"), "rb") as f:
        return tomllib.load(f)


def _session(cfg):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = INTRA_THREADS
    opts.inter_op_num_threads = 1
    # The same choice dfserve makes: no busy-waiting between ops on a shared 2-core machine.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(os.path.join(MODEL_DIR, cfg["file"]), opts, providers=["CPUExecutionProvider"])


class Pipeline:
    def __init__(self, classifier="meso4_df", detector="ultraface_rfb320"):
        self.cls_cfg = _config(classifier)
        self.det_cfg = _config(detector)
        self.cls = _session(self.cls_cfg)
        self.det = _session(self.det_cfg)

    @staticmethod
    def decode(data):
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")

    @staticmethod
    def _tensor(img, inp):
        resample = Image.NEAREST if inp["resize"] == "nearest" else Image.BILINEAR
        if img.size != (inp["width"], inp["height"]):
            img = img.resize((inp["width"], inp["height"]), resample)
        x = np.asarray(img, dtype=np.float32)
        x = (x * inp["scale"] - np.array(inp["mean"], np.float32)) / np.array(inp["std"], np.float32)
        if inp["layout"] == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x)

    def classify(self, crops):
        """Scores a list of RGB face crops in one run; returns manipulation scores."""
        inp = self.cls_cfg["input"]
        batch = np.stack([self._tensor(c, inp) for c in crops])
        outs = self.cls.run([self.cls_cfg["output"]["score"]], {inp["name"]: batch})[0]
        return outs.reshape(len(crops), -1)[:, 0].tolist()

    def faces(self, img):
        """UltraFace boxes (x1, y1, x2, y2, confidence) in pixels, after NMS."""
        inp, det = self.det_cfg["input"], self.det_cfg["detector"]
        x = self._tensor(img, inp)[None]
        scores, boxes = self.det.run([det["scores"], det["boxes"]], {inp["name"]: x})
        scores, boxes = scores[0][:, 1], boxes[0]
        keep = scores > det["score_threshold"]
        w, h = img.size
        b = boxes[keep] * np.array([w, h, w, h], np.float32)
        b = np.clip(b, 0, [w, h, w, h])
        s = scores[keep]
        order = np.argsort(-s)
        kept = []
        for i in order:
            if all(_iou(b[i], b[k]) <= det["nms_iou"] for k in kept):
                kept.append(i)
        return [(*b[i].tolist(), float(s[i])) for i in kept]

    @staticmethod
    def square_crop(img, box):
        x1, y1, x2, y2, _ = box
        w, h = img.size
        side = min(max(x2 - x1, y2 - y1, 1.0), w, h)
        x = min(max((x1 + x2) / 2 - side / 2, 0), w - side)
        y = min(max((y1 + y2) / 2 - side / 2, 0), h - side)
        return img.crop((round(x), round(y), round(x + side), round(y + side)))

    def detect(self, data, mode):
        img = self.decode(data)
        if mode == "whole":
            boxes = [(0.0, 0.0, float(img.width), float(img.height), 1.0)]
            crops = [img]
        else:
            boxes = self.faces(img)
            crops = [self.square_crop(img, b) for b in boxes]
        scores = self.classify(crops) if crops else []
        return {
            "width": img.width,
            "height": img.height,
            "score": max(scores) if scores else None,
            "faces": [{"box": list(b[:4]), "confidence": b[4], "score": s} for b, s in zip(boxes, scores)],
        }


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
