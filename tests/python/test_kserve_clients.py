"""KServe v2 compatibility, proven with the official Triton clients (tritonclient 2.51.0)
over HTTP and gRPC against a running dfserve, and with ONNX Runtime in Python as the
reference for tensor outputs."""
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from conftest import ROOT


@pytest.fixture(scope="module")
def clients(server):
    return th.InferenceServerClient(server.http), tg.InferenceServerClient(server.grpc)


def test_health_and_metadata(clients):
    for c in clients:
        assert c.is_server_live()
        assert c.is_server_ready()
        assert c.is_model_ready("meso4_df")
        assert c.is_model_ready("dfserve")
        assert not c.is_model_ready("meso4_df", model_version="7")
    h, g = clients
    meta = h.get_server_metadata()
    assert meta["name"] == "dfserve"
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta["extensions"])
    m = h.get_model_metadata("meso4_df")
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 256, 256, 3]}]
    assert {o["name"] for o in m["outputs"]} == {"real_prob", "fake_prob"}
    gm = g.get_model_metadata("ultraface_rfb320")
    assert list(gm.inputs[0].shape) == [-1, 3, 240, 320]
    assert g.get_model_config("meso4_df").config.max_batch_size > 0
    assert h.get_model_config("dfserve")["input"][0]["data_type"] == "TYPE_STRING"


def reference(model, x):
    sess = ort.InferenceSession(str(ROOT / "models" / f"{model}.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model", ["meso4_df", "mesoinception4_f2f"])
def test_http_tensor_infer_matches_local_onnxruntime(clients, model, binary):
    h, _ = clients
    x = np.random.default_rng(7).random((3, 256, 256, 3), dtype=np.float32)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [th.InferRequestedOutput("real_prob", binary_data=binary), th.InferRequestedOutput("fake_prob", binary_data=binary)]
    r = h.infer(model, [inp], outputs=outs, request_id="req-1")
    want_real, want_fake = reference(model, x)
    np.testing.assert_allclose(r.as_numpy("fake_prob"), want_fake, atol=1e-5)
    np.testing.assert_allclose(r.as_numpy("real_prob"), want_real, atol=1e-5)
    assert r.get_response()["id"] == "req-1"


@pytest.mark.parametrize("typed", [False, True])
def test_grpc_tensor_infer_matches_local_onnxruntime(clients, typed):
    _, g = clients
    x = np.random.default_rng(3).random((2, 256, 256, 3), dtype=np.float32)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    if typed:
        # Move the data from raw_input_contents to the typed `contents` field.
        inp._raw_content = None
        inp._input.contents.fp32_contents.extend(x.ravel().tolist())
    r = g.infer("meso4_df", [inp], outputs=[tg.InferRequestedOutput("fake_prob")], request_id="g-1")
    np.testing.assert_allclose(r.as_numpy("fake_prob"), reference("meso4_df", x)[1], atol=1e-5)
    assert r.get_response().id == "g-1"
    assert [o.name for o in r.get_response().outputs] == ["fake_prob"]


def test_detector_tensor_model(clients):
    h, _ = clients
    x = np.random.default_rng(1).standard_normal((1, 3, 240, 320)).astype(np.float32)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    r = h.infer("ultraface_rfb320", [inp])
    assert r.as_numpy("scores").shape == (1, 4420, 2)
    assert r.as_numpy("boxes").shape == (1, 4420, 4)


def jpegs(samples):
    files = ["df/df00204.jpg", "df/df01254.jpg", "real/real00240.jpg", "real/real00772.jpg"]
    return np.array([(samples / f).read_bytes() for f in files], dtype=np.object_)


def test_pipeline_model_scores_jpeg_bytes(clients, samples):
    h, g = clients
    images = jpegs(samples)
    want = np.array([0.959, 0.951, 0.010, 0.002], dtype=np.float32)  # MesoNet sample table
    hi = th.InferInput("IMAGE", [4], "BYTES")
    hi.set_data_from_numpy(images, binary_data=True)
    gi = tg.InferInput("IMAGE", [4], "BYTES")
    gi.set_data_from_numpy(images)
    # The reference scores are meso4_df's (the default is the ensemble).
    params = {"mode": "whole", "model": "meso4_df"}
    for r in [h.infer("dfserve", [hi], parameters=params), g.infer("dfserve", [gi], parameters=params)]:
        np.testing.assert_allclose(r.as_numpy("SCORE"), want, atol=1.5e-3)
        assert list(r.as_numpy("LABEL")) == [b"manipulated", b"manipulated", b"authentic", b"authentic"]
        assert list(r.as_numpy("FACES")) == [1, 1, 1, 1]
        # Crops of 208 px and more are judged: no verdict is not_applicable.
        assert b"not_applicable" not in list(r.as_numpy("VERDICT"))
    # Face mode, with [N, 1] shape as perf_analyzer sends it.
    gi = tg.InferInput("IMAGE", [4, 1], "BYTES")
    gi.set_data_from_numpy(images.reshape(4, 1))
    r = g.infer("dfserve", [gi])
    assert r.as_numpy("SCORE").shape == (4, 1)
    assert (r.as_numpy("FACES") >= 1).all()


def test_statistics_have_real_figures(clients):
    h, g = clients
    s = h.get_inference_statistics("meso4_df")["model_stats"][0]
    assert s["inference_count"] >= 6 and s["execution_count"] >= 1
    assert s["inference_stats"]["success"]["count"] >= 6
    assert s["inference_stats"]["compute_infer"]["ns"] > 0
    assert any(b["batch_size"] >= 1 for b in s["batch_stats"])
    gs = g.get_inference_statistics("dfserve").model_stats[0]
    assert gs.inference_count >= 8 and gs.inference_stats.success.count >= 8


def test_errors(clients, samples):
    h, g = clients
    x = np.zeros((1, 2), dtype=np.float32)
    for c, mod in [(h, th), (g, tg)]:
        inp = mod.InferInput("input", [1, 2], "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as e:
            c.infer("meso4_df", [inp])
        assert "shape [N, 256, 256, 3]" in str(e.value)
        with pytest.raises(InferenceServerException) as e:
            c.infer("no_such_model", [inp])
        assert "unknown model" in str(e.value)
    bad = tg.InferInput("IMAGE", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as e:
        g.infer("dfserve", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "row 0" in str(e.value)
