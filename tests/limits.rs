//! Per-request caps, access logs, API-key ids and SIGHUP, against the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{sample, Server};
use dfserve::api::grpc::pb::inference::{
    grpc_inference_service_client::GrpcInferenceServiceClient, model_infer_request::InferInputTensor, ModelInferRequest,
};
use serde_json::Value;

#[tokio::test]
async fn requests_over_the_client_batch_cap_are_refused_before_any_work() {
    let s = Server::start(&[]).await;
    let img = sample("mesonet/df/df00204.jpg");

    // 200 multipart parts: refused at the 33rd, before it is read. The body is sent in one
    // piece with a length (small parts), so the client has written it all before the server
    // answers and closes the connection.
    let mut body = Vec::new();
    for i in 0..200 {
        body.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"{i}.jpg\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&[0u8; 64]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(s.url("/v1/detect?mode=whole"))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_items", "{body}");
    assert!(body["error"].as_str().unwrap().contains("--max-client-batch-size"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // 32 are fine.
    let mut form = reqwest::multipart::Form::new();
    for i in 0..32 {
        form = form.part(format!("f{i}"), reqwest::multipart::Part::bytes(img.clone()).file_name(format!("{i}.jpg")));
    }
    let r = reqwest::Client::new().post(s.url("/v1/detect?mode=whole")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A KServe REST request declaring 300,000 one-byte rows: refused from its header.
    let rows = 300_000usize;
    let header = format!(
        r#"{{"inputs":[{{"name":"IMAGE","shape":[{rows}],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}}]}}"#,
        rows * 5
    );
    let mut body = header.clone().into_bytes();
    for _ in 0..rows {
        body.extend_from_slice(&[1, 0, 0, 0, b'x']);
    }
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(s.url("/v2/models/dfserve/infer"))
        .header("inference-header-content-length", header.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "{:?}", r.text().await);
    assert!(started.elapsed() < Duration::from_secs(2));

    // The same cap over KServe gRPC, for the pipeline and a tensor model.
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap();
    let raw: Vec<u8> = (0..40).flat_map(|_| (img.len() as u32).to_le_bytes().into_iter().chain(img.clone())).collect();
    let req = ModelInferRequest {
        model_name: "dfserve".into(),
        inputs: vec![InferInputTensor {
            name: "IMAGE".into(),
            datatype: "BYTES".into(),
            shape: vec![40],
            ..Default::default()
        }],
        raw_input_contents: vec![raw.into()],
        ..Default::default()
    };
    let err = c.model_infer(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(err.metadata().get("dfserve-error-code").unwrap(), "too_many_items");
    let req = ModelInferRequest {
        model_name: "meso4_df".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![33, 256, 256, 3],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; 33 * 256 * 256 * 3 * 4].into()],
        ..Default::default()
    };
    let err = c.model_infer(req).await.unwrap_err();
    assert_eq!(err.metadata().get("dfserve-error-code").unwrap(), "too_many_items", "{err}");
    // Triton's model config advertises the cap.
    let cfg: Value = s.client.get(s.url("/v2/models/meso4_df/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cfg["max_batch_size"], 32);
}

fn access_lines(s: &Server) -> Vec<Value> {
    s.log().into_iter().filter(|l| l["target"] == "dfserve::access").map(|l| l["fields"].clone()).collect()
}

#[tokio::test]
async fn every_request_gets_one_access_log_line_with_its_id_and_key_id_never_the_key() {
    let dir = std::env::temp_dir().join(format!("dfserve-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    let key = "access-log-key-0123456789";
    std::fs::write(&keys, format!("{key}\n")).unwrap();
    let s = Server::start_logged(&["--api-key-file", keys.to_str().unwrap()]).await;

    let r = s
        .client
        .post(s.url("/v1/detect?mode=whole"))
        .header("x-api-key", key)
        .header("x-request-id", "req-ok-1")
        .body(sample("mesonet/df/df00204.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-ok-1");
    let r = s.client.post(s.url("/v1/detect")).header("x-api-key", "wrong-key-0123456789").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();

    let channel = tonic::transport::Channel::from_shared(s.grpc.clone()).unwrap().connect().await.unwrap();
    let mut c = GrpcInferenceServiceClient::new(channel);
    let mut req = tonic::Request::new(dfserve::api::grpc::pb::inference::ServerReadyRequest {});
    req.metadata_mut().insert("x-api-key", key.parse().unwrap());
    req.metadata_mut().insert("x-request-id", "grpc-1".parse().unwrap());
    let resp = c.server_ready(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "grpc-1");
    let err = c.server_ready(dfserve::api::grpc::pb::inference::ServerReadyRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = access_lines(&s);
    let find = |id: &str| {
        lines.iter().find(|l| l["request_id"] == id).cloned().unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
    };
    let ok = find("req-ok-1");
    assert_eq!((ok["protocol"].as_str(), ok["method"].as_str()), (Some("http"), Some("POST")));
    assert_eq!((ok["route"].as_str(), ok["status"].as_u64()), (Some("/v1/detect"), Some(200)));
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    let key_id = ok["key"].as_str().unwrap().to_string();
    assert_eq!(key_id.len(), 8, "{ok}");
    let refused = find(&generated);
    assert_eq!((refused["status"].as_u64(), refused["key"].as_str()), (Some(401), Some("-")));
    let g = find("grpc-1");
    assert_eq!(g["protocol"], "grpc");
    assert_eq!(g["method"], "/inference.GRPCInferenceService/ServerReady");
    assert_eq!((g["status"].as_str(), g["key"].as_str()), (Some("Ok"), Some(key_id.as_str())));
    assert!(
        lines.iter().any(|l| l["protocol"] == "grpc" && l["status"] == "Unauthenticated" && l["key"] == "-"),
        "{lines:?}"
    );
    // The key itself is never written anywhere in the log, and every line is JSON.
    let raw = std::fs::read_to_string(s.log_file.as_ref().unwrap()).unwrap();
    assert!(!raw.contains(key));
    assert!(raw.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{raw}");
}

#[tokio::test]
async fn sighup_without_keys_does_not_stop_the_server() {
    let s = Server::start_logged(&[]).await;
    let pid = s.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.client.get(s.url("/health/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(s.log().iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("nothing to reload"))));
}

#[tokio::test]
async fn decoding_is_admitted_against_a_pixel_budget_and_scan_bombs_are_refused() {
    let s = Server::start(&["--max-decoding-megapixels", "40"]).await;
    // A 36-megapixel photo: one fits the budget, a second at the same time does not.
    let big = image::RgbImage::from_fn(6000, 6000, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let big = common::encode(&big, image::ImageFormat::Jpeg);
    let reqs: Vec<_> =
        (0..4).map(|_| tokio::spawn(s.client.post(s.url("/v1/detect?mode=whole")).body(big.clone()).send())).collect();
    let mut statuses = Vec::new();
    for r in reqs {
        let r = r.await.unwrap().unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "busy", "{body}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // The budget is released: one at a time always goes through.
    let r = s.client.post(s.url("/v1/detect?mode=whole")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A progressive JPEG with 5,000 repeated scans: refused before decoding.
    let img = turbojpeg::Image::mandelbrot(256, 256, turbojpeg::PixelFormat::RGB);
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_progressive(true).unwrap();
    let jpeg = c.compress_to_vec(img.as_deref()).unwrap();
    let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let mut bomb = jpeg[..jpeg.len() - 2].to_vec();
    for _ in 0..5000 {
        bomb.extend_from_slice(&jpeg[last..jpeg.len() - 2]);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    let started = Instant::now();
    let r = s.client.post(s.url("/v1/detect")).body(bomb).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("scans"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let r = s.client.post(s.url("/v1/detect")).body(jpeg).send().await.unwrap();
    assert_eq!(r.status(), 200, "an ordinary progressive JPEG still decodes");
}

#[tokio::test]
async fn a_stuck_upload_cannot_hold_shutdown_past_its_timeout() {
    let mut s = Server::start_logged(&["--shutdown-timeout", "500ms"]).await;
    // A client that sends headers and 10 of the 1,000 body bytes it announced, then stalls.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    tcp.write_all(b"POST /v1/detect HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &s.pid().to_string()]).status().unwrap().success());
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "exited after {took:?}");
    assert!(s.log().iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("shutdown timeout"))));
    drop(tcp);
}

#[tokio::test]
async fn an_idle_detect_stream_is_closed() {
    use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
    let s = Server::start(&["--grpc-stream-idle-timeout", "1s"]).await;
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DetectRequest { image: sample("mesonet/df/df00204.jpg").into(), mode: 1, ..Default::default() })
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = c.detect_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    assert_eq!(out.message().await.unwrap().unwrap().status, "ok");
    // Then nothing more is sent, and the stream is not closed by the client.
    let err = out.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tx);
}

#[tokio::test]
async fn slow_headers_and_stalled_bodies_do_not_hold_connections() {
    use std::io::{Read, Write};
    let s = Server::start(&["--http-header-timeout", "1s", "--http-body-idle-timeout", "1s"]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // Headers started and never finished: the connection is closed.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/detect HTTP/1.1\r\nhost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    // A body that stops arriving: answered with an error and the connection freed.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled.write_all(b"POST /v1/detect HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789").unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = stalled.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server kept serving. (A fresh client: idle keep-alive connections are closed by the
    // same header timeout.)
    let r = reqwest::Client::new()
        .post(s.url("/v1/detect?mode=whole"))
        .body(sample("mesonet/df/df00204.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_json_tensor_with_a_huge_data_array_is_refused_without_building_it() {
    let s = Server::start(&[]).await;
    // 20 million zeros (40 MB) for a tensor whose shape holds 196,608 values.
    let mut body = br#"{"inputs":[{"name":"input","shape":[1,256,256,3],"datatype":"FP32","data":["#.to_vec();
    body.extend(std::iter::repeat_n(*b"0,", 20_000_000).flatten());
    body.extend_from_slice(b"0]}]}");
    let idle = s.rss_mib();
    let client = reqwest::Client::new();
    let req = tokio::spawn(client.post(s.url("/v2/models/meso4_df/infer")).body(body).send());
    let mut peak = idle;
    while !req.is_finished() {
        peak = peak.max(s.rss_mib());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = req.await.unwrap().unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("more than the 196608 elements"), "{err}");
    // The 40 MB body itself is in memory; a JSON value tree of it would be some 600 MB more.
    assert!(peak - idle < 200, "the server grew by {} MiB", peak - idle);
}

/// Sends `wire` as one gRPC message to `method`, bypassing any client-side encoding, and
/// decodes the answer as `R`.
async fn raw_grpc_call<R: prost::Message + Default + Send + 'static>(
    endpoint: String,
    method: &'static str,
    wire: Vec<u8>,
) -> Result<R, tonic::Status> {
    #[derive(Default)]
    struct Raw<R>(std::marker::PhantomData<R>);
    struct RawEncoder;
    impl tonic::codec::Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
            bytes::BufMut::put_slice(buf, &item);
            Ok(())
        }
    }
    impl<R: prost::Message + Default + Send + 'static> tonic::codec::Codec for Raw<R> {
        type Encode = Vec<u8>;
        type Decode = R;
        type Encoder = RawEncoder;
        type Decoder = <tonic_prost::ProstCodec<R, R> as tonic::codec::Codec>::Decoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> Self::Decoder {
            tonic_prost::ProstCodec::<R, R>::raw_decoder(Default::default())
        }
    }
    let channel = tonic::transport::Endpoint::from_shared(endpoint).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(wire), path, Raw::<R>::default()).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_grpc_message_packed_with_empty_tensors_is_refused_before_decoding() {
    let s = Server::start(&[]).await;
    // Five million empty `inputs` (field 5, length 0): 10 MB on the wire, which prost would
    // turn into some 1.5 GB of InferInputTensor structs.
    let mut wire = Vec::with_capacity(10_000_100);
    prost::encoding::string::encode(1, &"meso4_df".to_string(), &mut wire);
    wire.extend(std::iter::repeat_n([0x2a_u8, 0x00], 5_000_000).flatten());
    let idle = s.rss_mib();
    let started = Instant::now();
    let call = tokio::spawn(raw_grpc_call::<dfserve::api::grpc::pb::inference::ModelInferResponse>(
        s.grpc.clone(),
        "/inference.GRPCInferenceService/ModelInfer",
        wire,
    ));
    let mut peak = idle;
    while !call.is_finished() {
        peak = peak.max(s.rss_mib());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("would decode to about"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(peak - idle < 100, "the server grew by {} MiB", peak - idle);

    // The same packing, a little of it, still decodes (and fails on its own merits).
    let mut wire = Vec::new();
    prost::encoding::string::encode(1, &"meso4_df".to_string(), &mut wire);
    wire.extend(std::iter::repeat_n([0x2a_u8, 0x00], 100).flatten());
    let status = raw_grpc_call::<dfserve::api::grpc::pb::inference::ModelInferResponse>(
        s.grpc.clone(),
        "/inference.GRPCInferenceService/ModelInfer",
        wire,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn bodies_share_one_budget_and_must_arrive_in_time() {
    use std::io::{Read, Write};
    let s = Server::start(&[
        "--max-body-bytes",
        "1000000",
        "--grpc-max-message-bytes",
        "1000000",
        "--max-inflight-body-bytes",
        "1500000",
        "--body-timeout",
        "3s",
        "--http-body-idle-timeout",
        "10s",
    ])
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    // One upload holds 900 KB of the 1.5 MB budget and keeps trickling (never idle long).
    let mut holder = std::net::TcpStream::connect(&addr).unwrap();
    holder.write_all(b"POST /v1/detect HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n").unwrap();
    holder.write_all(&vec![0u8; 900_000]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another 800 KB body does not fit next to it: 429 busy, over HTTP and over gRPC.
    let r = reqwest::Client::new().post(s.url("/v1/detect")).body(vec![0u8; 800_000]).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["code"], "busy", "{err}");
    assert!(err["error"].as_str().unwrap().contains("--max-inflight-body-bytes"), "{err}");
    let mut c = GrpcInferenceServiceClient::connect(s.grpc.clone()).await.unwrap();
    let status = c
        .model_infer(ModelInferRequest {
            model_name: "meso4_df".into(),
            raw_input_contents: vec![vec![0u8; 800_000].into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.metadata().get("dfserve-error-code").unwrap(), "busy");

    // The holder keeps sending a little at a time; at --body-timeout it is answered 408.
    let started = Instant::now();
    let mut head = String::new();
    holder.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while started.elapsed() < Duration::from_secs(8) {
        let _ = holder.write_all(b"xx");
        let mut buf = [0u8; 512];
        if let Ok(n) = holder.read(&mut buf) {
            head = String::from_utf8_lossy(&buf[..n]).to_string();
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 408"), "{head:?}");
    assert!(head.contains("body_timeout"), "{head}");
    drop(holder);

    // Its bytes are back in the budget: a small image goes through.
    let r = reqwest::Client::new()
        .post(s.url("/v1/detect?mode=whole"))
        .body(sample("mesonet/df/df00204.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
