"""Peer 2: PyTriton, a real tritonserver with its dynamic batcher in front of a Python model.
The model takes JPEG bytes (KServe BYTES input IMAGE, as dfserve's `dfserve` pipeline model
does), decodes them with Pillow and scores the batch with one ONNX Runtime session.

    python bench/peers/pytriton_peer.py HTTP_PORT GRPC_PORT

Needs the interpreter's own lib directory first in LD_LIBRARY_PATH (bench/run.sh sets it).
"""

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

from common import Pipeline

pipeline = Pipeline()


@batch
def infer(IMAGE):
    crops = [pipeline.decode(bytes(row[0])) for row in IMAGE]
    scores = np.array(pipeline.classify(crops), dtype=np.float32).reshape(-1, 1)
    return {"SCORE": scores}


def main():
    http_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http_port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        metrics_port=grpc_port + 1,
        log_verbose=0,
    )
    # perf_analyzer reads the statistics endpoint, which PyTriton guards with a generated token
    # by default; this peer listens on loopback only, so nothing is restricted.
    with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as triton:
        triton.bind(
            model_name="meso4_df_jpeg",
            infer_func=infer,
            inputs=[Tensor(name="IMAGE", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name="SCORE", dtype=np.float32, shape=(1,))],
            # The same batch cap as dfserve's default, and no added queue delay.
            config=ModelConfig(max_batch_size=4, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
