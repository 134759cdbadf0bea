//! The dfserve gRPC API (unary and streaming) and KServe gRPC errors, with a tonic client,
//! against the real binary.

mod common;

use common::{metric, sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest, Mode};
use dfserve::api::grpc::pb::inference::{
    grpc_inference_service_client::GrpcInferenceServiceClient, model_infer_request::InferInputTensor, ModelInferRequest,
};
use tonic::Code;

async fn detector(s: &Server) -> DetectorClient<tonic::transport::Channel> {
    DetectorClient::connect(s.grpc.clone()).await.expect("connecting to the gRPC port")
}

#[tokio::test]
async fn unary_detect_matches_the_http_api() {
    let s = Server::start(&[]).await;
    let mut c = detector(&s).await;
    for (file, mode) in [("mesonet/df/df00204.jpg", Mode::Whole), ("mesonet/real/real00240.jpg", Mode::Faces)] {
        let img = sample(file);
        let r = c
            .detect(DetectRequest {
                image: img.clone().into(),
                mode: mode as i32,
                id: "a1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let q = if mode == Mode::Whole { "?mode=whole" } else { "" };
        let (_, http) = s.detect(q, img).await;
        let want = http["results"][0]["score"].as_f64().unwrap();
        assert_eq!(r.id, "a1");
        assert_eq!(r.model, "clip_probe");
        assert_eq!(r.status, "ok");
        assert!((r.score.unwrap() as f64 - want).abs() < 1e-6, "{file}: grpc {:?} http {want}", r.score);
        assert_eq!(r.label, http["results"][0]["label"].as_str().unwrap());
        assert_eq!(r.verdict, http["results"][0]["verdict"].as_str().unwrap());
        let faces = http["results"][0]["faces"].as_array().unwrap();
        assert_eq!(r.faces.len(), faces.len());
        for (g, h) in r.faces.iter().zip(faces) {
            assert_eq!(g.verdict, h["verdict"].as_str().unwrap());
            // A single classifier (the default probe) lists no members.
            let members: Vec<(String, f64)> = h["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| (m["model"].as_str().unwrap().to_string(), m["score"].as_f64().unwrap()))
                .collect();
            assert_eq!(g.members.len(), members.len());
            for (gm, (name, score)) in g.members.iter().zip(&members) {
                assert_eq!(&gm.model, name);
                assert!((gm.score as f64 - score).abs() < 1e-6);
            }
        }
        assert!(r.timings.unwrap().total_ms > 0.0);
    }
    let err =
        c.detect(DetectRequest { image: b"not an image".to_vec().into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = c
        .detect(DetectRequest {
            image: sample("mesonet/df/df00204.jpg").into(),
            model: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

#[tokio::test]
async fn stream_keeps_order_tags_ids_and_survives_a_bad_image() {
    let s = Server::start(&[]).await;
    let mut c = detector(&s).await;
    let files = [
        "mesonet/df/df00204.jpg",
        "mesonet/real/real00240.jpg",
        "mesonet/df/df01254.jpg",
        "mesonet/real/real00772.jpg",
    ];
    let mut reqs: Vec<DetectRequest> = (0..24)
        .map(|i| DetectRequest {
            image: sample(files[i % 4]).into(),
            mode: Mode::Whole as i32,
            id: format!("img-{i}"),
            // MesoNet gets all four FaceForensics++-style samples right; the order is what is
            // tested here.
            model: "meso4_df".into(),
            ..Default::default()
        })
        .collect();
    reqs[5].image = b"garbage".to_vec().into();
    let started = std::time::Instant::now();
    let mut stream = c.detect_stream(futures::stream::iter(reqs)).await.unwrap().into_inner();
    let mut got = vec![stream.message().await.unwrap().unwrap()];
    // A stream is counted when it ends, not when it starts.
    let stream_ok = "dfserve_requests_total{endpoint=\"/dfserve.v1.Detector/DetectStream\",status=\"Ok\"}";
    assert_eq!(metric(&s.metrics().await, stream_ok), None);
    while let Some(r) = stream.message().await.unwrap() {
        got.push(r);
    }
    let took = started.elapsed().as_secs_f64();
    // The server records the call once its trailers are out; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let m = s.metrics().await;
    assert_eq!(metric(&m, stream_ok), Some(1.0), "{m}");
    let latency = "dfserve_request_duration_seconds_sum{endpoint=\"/dfserve.v1.Detector/DetectStream\"}";
    let latency = metric(&m, latency).unwrap();
    assert!(latency > 0.0 && latency <= took, "stream latency {latency} s, client saw {took} s");
    assert_eq!(got.len(), 24);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.id, format!("img-{i}"), "responses come back in request order");
        if i == 5 {
            assert_eq!(r.status, "error");
            assert_eq!(r.error_code, "undecodable_image");
        } else {
            assert_eq!(r.status, "ok");
            let fake = files[i % 4].contains("/df/");
            assert_eq!(r.label, if fake { "manipulated" } else { "authentic" }, "{i}");
        }
    }
}

#[tokio::test]
async fn kserve_grpc_errors_use_the_right_codes() {
    let s = Server::start(&["--grpc-max-message-bytes", "1000000"]).await;
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap();
    let infer = |model: &str, dt: &str, shape: Vec<i64>, raw: Vec<u8>| ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor { name: "input".into(), datatype: dt.into(), shape, ..Default::default() }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    };
    let cases = [
        (infer("nope", "FP32", vec![1, 256, 256, 3], vec![]), Code::NotFound),
        (infer("meso4_df", "FP32", vec![1, 2], vec![0; 8]), Code::InvalidArgument),
        (infer("meso4_df", "INT64", vec![1, 256, 256, 3], vec![]), Code::InvalidArgument),
        (infer("meso4_df", "FP32", vec![1, 256, 256, 3], vec![0; 12]), Code::InvalidArgument),
        (infer("meso4_df", "FP32", vec![1, 256, 256, 3], vec![0; 256 * 256 * 3 * 4]), Code::Ok),
        (infer("meso4_df", "FP32", vec![2, 256, 256, 3], vec![0; 2 * 256 * 256 * 3 * 4]), Code::ResourceExhausted),
    ];
    for (req, code) in cases {
        let got = match c.model_infer(req).await {
            Ok(_) => Code::Ok,
            Err(e) => {
                assert!(!e.message().is_empty());
                e.code()
            }
        };
        assert_eq!(got, code);
    }
    let m = s.metrics().await;
    assert!(
        m.contains(
            "dfserve_requests_total{endpoint=\"/inference.GRPCInferenceService/ModelInfer\",status=\"NotFound\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains("dfserve_requests_total{endpoint=\"/inference.GRPCInferenceService/ModelInfer\",status=\"Ok\"} 1"),
        "{m}"
    );
    // A message over the size limit is refused by tonic before any handler runs; the layer
    // still counts it, with the status the client got.
    let too_large =
        "dfserve_requests_total{endpoint=\"/inference.GRPCInferenceService/ModelInfer\",status=\"ResourceExhausted\"}";
    assert_eq!(metric(&m, too_large), Some(1.0), "{m}");
}
