"""Peer 1: the upload service a team would write in Python. FastAPI + uvicorn, one ONNX Runtime
session per model shared by all requests, the CPU work on AnyIO's worker-thread pool (ONNX
Runtime and most of Pillow release the GIL there), Pillow decoding.

    python bench/peers/fastapi_peer.py PORT

POST /v1/detect?mode=whole|faces with the image as the raw body, as the wrk script sends it.
"""

import sys

import anyio.to_thread
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from common import Pipeline

app = FastAPI()
pipeline = Pipeline()


@app.post("/v1/detect")
async def detect(request: Request, mode: str = "faces"):
    if mode not in ("whole", "faces"):
        raise HTTPException(400, "mode must be whole or faces")
    body = await request.body()
    try:
        result = await anyio.to_thread.run_sync(pipeline.detect, body, mode)
    except OSError as e:  # Pillow's "cannot identify image file"
        raise HTTPException(422, str(e))
    return {"results": [result]}


@app.get("/health/ready")
def ready():
    return {"ready": True}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
