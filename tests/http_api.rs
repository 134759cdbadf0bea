//! End-to-end tests of the HTTP API against the real binary, ONNX Runtime and models.

mod common;

use std::time::Duration;

use common::{encode, metric, run_to_failure, sample, Server};
use image::{ImageFormat, Rgb, RgbImage};
use serde_json::Value;

/// `fake_prob` for the MesoNet samples, whole image, nearest-neighbour 256x256
/// (../shared/samples/README.md).
const REFERENCE: [(&str, [f64; 4]); 4] = [
    ("mesonet/df/df00204.jpg", [0.959, 0.169, 0.974, 0.001]),
    ("mesonet/df/df01254.jpg", [0.951, 0.359, 0.999, 0.000]),
    ("mesonet/real/real00240.jpg", [0.010, 0.119, 0.000, 0.000]),
    ("mesonet/real/real00772.jpg", [0.002, 0.048, 0.000, 0.009]),
];
const CLASSIFIERS: [&str; 4] = ["meso4_df", "meso4_f2f", "mesoinception4_df", "mesoinception4_f2f"];

fn score(v: &Value) -> f64 {
    v["results"][0]["score"].as_f64().unwrap_or_else(|| panic!("no score in {v}"))
}

/// A 1024x768 gradient "photo" with a face crop pasted at (600, 300).
fn pasted_photo(face: &[u8]) -> (Vec<u8>, (u32, u32, u32, u32)) {
    let face = image::load_from_memory(face).unwrap().to_rgb8();
    let mut bg = RgbImage::from_fn(1024, 768, |x, y| Rgb([(x * 255 / 1024) as u8, (y * 255 / 768) as u8, 120]));
    image::imageops::replace(&mut bg, &face, 600, 300);
    (encode(&bg, ImageFormat::Jpeg), (600, 300, 600 + face.width(), 300 + face.height()))
}

/// The tests below that count MesoNet's runs or compare its labels name the MesoNet ensemble as
/// the default (the shipped default is the CLIP probe).
const MESO: [&str; 2] = ["--default-model", "meso4_ensemble"];

#[tokio::test]
async fn sample_scores_match_the_reference_table() {
    let s = Server::start(&[]).await;
    for (file, want) in REFERENCE {
        for (model, want) in CLASSIFIERS.iter().zip(want) {
            let (status, body) = s.detect(&format!("?mode=whole&model={model}"), sample(file)).await;
            assert_eq!(status, 200, "{body}");
            let got = score(&body);
            assert!((got - want).abs() <= 1e-3 + 5e-4, "{file} {model}: got {got:.4}, table {want:.3}");
            assert_eq!(body["model"]["name"], *model);
            let label = if got >= 0.5 { "manipulated" } else { "authentic" };
            assert_eq!(body["results"][0]["label"], label);
            assert_eq!(body["results"][0]["status"], "ok");
        }
    }
}

#[tokio::test]
async fn a_face_pasted_into_a_photo_is_found_and_scored_like_the_crop() {
    let s = Server::start(&MESO).await;
    for file in ["mesonet/df/df01254.jpg", "mesonet/real/real00240.jpg"] {
        let crop = sample(file);
        let (_, own) = s.detect("", crop.clone()).await;
        let own_score = score(&own);
        let (photo, (px1, py1, px2, py2)) = pasted_photo(&crop);
        let (status, body) = s.detect("", photo).await;
        assert_eq!(status, 200, "{body}");
        let r = &body["results"][0];
        assert_eq!(r["width"], 1024);
        assert_eq!(r["height"], 768);
        let faces = r["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{file}: {body}");
        let b: Vec<f64> = faces[0]["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        assert!(cx > px1 as f64 && cx < px2 as f64 && cy > py1 as f64 && cy < py2 as f64, "{file}: box {b:?}");
        assert!(faces[0]["confidence"].as_f64().unwrap() > 0.7);
        let got = score(&body);
        assert!((got - own_score).abs() < 0.2, "{file}: pasted {got:.3} vs crop {own_score:.3}");
        assert_eq!(r["label"], own["results"][0]["label"], "{file}");
        // Timings are spans of this request, stage after stage: each is positive and together
        // they fit inside the total.
        let t = |k: &str| r["timings"][k].as_f64().unwrap_or_else(|| panic!("timing {k} missing: {r}"));
        let stages = ["decode_ms", "detect_ms", "crop_ms", "classify_ms"];
        for k in stages {
            assert!(t(k) > 0.0, "{file}: {k} is not positive: {r}");
        }
        let sum: f64 = stages.iter().map(|k| t(k)).sum();
        assert!(sum <= t("total_ms") + 0.01, "{file}: stages add up to {sum} ms, over total_ms: {r}");
    }
}

#[tokio::test]
async fn an_image_without_faces_is_no_face() {
    let s = Server::start(&[]).await;
    let img = RgbImage::from_fn(320, 240, |x, _| Rgb([(x % 256) as u8, 40, 40]));
    let (status, body) = s.detect("", encode(&img, ImageFormat::Png)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "no_face");
    assert!(body["results"][0]["score"].is_null());
    assert_eq!(body["results"][0]["faces"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn multipart_answers_each_file_in_order_and_a_bad_file_fails_alone() {
    let s = Server::start(&[]).await;
    let png =
        encode(&image::load_from_memory(&sample("mesonet/real/real00240.jpg")).unwrap().to_rgb8(), ImageFormat::Png);
    let form = reqwest::multipart::Form::new()
        .part("a", reqwest::multipart::Part::bytes(sample("mesonet/df/df00204.jpg")).file_name("fake.jpg"))
        .part("b", reqwest::multipart::Part::bytes(b"not an image at all".to_vec()).file_name("junk.jpg"))
        .part("c", reqwest::multipart::Part::bytes(png).file_name("real.png"));
    let r = s.client.post(s.url("/v1/detect?mode=whole&model=meso4_df")).multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["filename"], "fake.jpg");
    assert_eq!(results[0]["label"], "manipulated");
    assert_eq!(results[1]["filename"], "junk.jpg");
    assert_eq!(results[1]["status"], "error");
    assert_eq!(results[1]["code"], "undecodable_image");
    assert_eq!(results[1]["http_status"], 422);
    assert_eq!(results[2]["filename"], "real.png");
    assert_eq!(results[2]["label"], "authentic");
    // PNG of the same pixels scores like the JPEG it came from.
    assert!((results[2]["score"].as_f64().unwrap() - 0.010).abs() < 2e-3, "{}", results[2]);
}

async fn expect_error(s: &Server, req: reqwest::RequestBuilder, status: u16, code: &str) {
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{status} {code}: body is not JSON: {e}"));
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    // The server keeps serving.
    let (ok, _) = s.detect("?mode=whole", sample("mesonet/real/real00772.jpg")).await;
    assert_eq!(ok, 200);
}

#[tokio::test]
async fn client_errors_get_the_right_status_and_a_json_body() {
    let s = Server::start(&["--max-body-bytes", "200000", "--max-image-pixels", "1000000"]).await;
    let jpeg = sample("mesonet/df/df00204.jpg");
    let post = |q: &str| s.client.post(s.url(&format!("/v1/detect{q}")));
    // 400: empty body, bad option values, unknown option.
    expect_error(&s, post(""), 400, "bad_request").await;
    expect_error(&s, post("?threshold=1.5").body(jpeg.clone()), 400, "bad_request").await;
    expect_error(&s, post("?mode=sideways").body(jpeg.clone()), 400, "bad_request").await;
    expect_error(&s, post("?colour=1").body(jpeg.clone()), 400, "bad_request").await;
    expect_error(
        &s,
        post("").header("content-type", "multipart/form-data; boundary=XYZ").body("garbage"),
        400,
        "bad_request",
    )
    .await;
    // 404: unknown model, or a detector named as classifier.
    expect_error(&s, post("?model=nope").body(jpeg.clone()), 404, "model_not_found").await;
    expect_error(&s, post("?model=ultraface_rfb320").body(jpeg.clone()), 404, "model_not_found").await;
    // 413: body over --max-body-bytes, raw and multipart.
    expect_error(&s, post("").body(vec![0u8; 300_000]), 413, "payload_too_large").await;
    let big = reqwest::multipart::Form::new()
        .part("a", reqwest::multipart::Part::bytes(vec![0u8; 300_000]).file_name("a.jpg"));
    expect_error(&s, post("").multipart(big), 413, "payload_too_large").await;
    // 415: a JSON body.
    expect_error(&s, post("").header("content-type", "application/json").body("{}"), 415, "unsupported_media_type")
        .await;
    // 422: not an image; truncated; over --max-image-pixels (checked from the header).
    expect_error(&s, post("").body("definitely not an image"), 422, "undecodable_image").await;
    expect_error(&s, post("").body(jpeg[..jpeg.len() / 3].to_vec()), 422, "undecodable_image").await;
    let huge = encode(&RgbImage::new(1200, 1000), ImageFormat::Png);
    expect_error(&s, post("").body(huge), 422, "image_too_large").await;
    // Unknown route: JSON 404 too.
    expect_error(&s, s.client.get(s.url("/v1/nothing")), 404, "not_found").await;
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let s = Server::start(&["--request-timeout", "1ms"]).await;
    let (photo, _) = pasted_photo(&sample("mesonet/df/df01254.jpg"));
    let r = s.client.post(s.url("/v1/detect")).body(photo).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "deadline_exceeded");
}

#[tokio::test]
async fn a_full_queue_answers_429_at_once_and_the_server_recovers() {
    let s = Server::start(&["--max-queue-size", "1", "--max-batch-size", "1"]).await;
    let (photo, _) = pasted_photo(&sample("mesonet/df/df01254.jpg"));
    let reqs = (0..48).map(|_| s.client.post(s.url("/v1/detect")).body(photo.clone()).send());
    let responses = futures::future::join_all(reqs).await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut saw_retry_after = false;
    for r in responses {
        let r = r.unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
        if r.status() == 429 {
            saw_retry_after |= r.headers().contains_key("retry-after");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "queue_full");
        }
    }
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert_eq!(statuses.keys().filter(|k| **k != 200 && **k != 429).count(), 0, "{statuses:?}");
    assert!(saw_retry_after);
    let (status, _) = s.detect("", photo).await;
    assert_eq!(status, 200, "recovers once load drops");
}

#[tokio::test]
async fn concurrent_requests_are_batched_together() {
    let s = Server::start(&[MESO[0], MESO[1], "--max-queue-delay-us", "5000", "--max-batch-size", "16"]).await;
    let jpeg = sample("mesonet/df/df00204.jpg");
    let reqs = (0..32).map(|_| s.detect("?mode=whole", jpeg.clone()));
    for (status, body) in futures::future::join_all(reqs).await {
        assert_eq!(status, 200, "{body}");
    }
    let m = s.metrics().await;
    let sum = metric(&m, "dfserve_batch_size_sum{model=\"meso4_df\"}").unwrap();
    let count = metric(&m, "dfserve_batch_size_count{model=\"meso4_df\"}").unwrap();
    // 33 entries (32 + the warm-up) in fewer runs than entries means batches above 1.
    assert_eq!(sum, 33.0, "{m}");
    assert!(count < sum / 2.0, "mean batch size should exceed 2: {count} runs for {sum} entries");
    let over_one = metric(&m, "dfserve_batch_size_bucket{model=\"meso4_df\",le=\"1\"}").unwrap();
    assert!(over_one < count, "some batches must be larger than 1");
}

#[tokio::test]
async fn models_health_and_metrics_endpoints() {
    let s = Server::start(&[]).await;
    let live = s.client.get(s.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = s.client.get(s.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let models: Value = s.client.get(s.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["clip_vitb16", "meso4_df", "meso4_f2f", "mesoinception4_df", "mesoinception4_f2f", "ultraface_rfb320"]
    );
    assert_eq!(models["models"][0]["kind"], "encoder");
    assert_eq!(models["models"][1]["input"]["layout"], "NHWC");
    assert_eq!(models["models"][1]["output"]["score"], "fake_prob");
    let (status, _) = s.detect("", sample("mesonet/df/df00204.jpg")).await;
    assert_eq!(status, 200);
    let m = s.metrics().await;
    for needle in [
        "dfserve_requests_total{endpoint=\"/v1/detect\",status=\"200\"} 1",
        "dfserve_request_duration_seconds_count{endpoint=\"/v1/detect\"} 1",
        "dfserve_queue_duration_seconds_count{model=\"ultraface_rfb320\"}",
        "dfserve_inference_duration_seconds_count{model=\"meso4_df\"}",
        "dfserve_batch_size_count{model=\"meso4_df\"}",
        "dfserve_queue_depth{model=\"meso4_df\"}",
        "dfserve_images_total{label=\"manipulated\"} 1",
        "dfserve_faces_detected_total 1",
        "dfserve_stage_duration_seconds_count{stage=\"decode\"} 1",
        "dfserve_model_info{",
        // The process collector.
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
    let rid = s.client.get(s.url("/health/live")).send().await.unwrap();
    assert!(rid.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let mut s = Server::start(&["--instances", "1", "--max-batch-size", "1"]).await;
    let (photo, _) = pasted_photo(&sample("mesonet/df/df01254.jpg"));
    let reqs: Vec<_> =
        (0..12).map(|_| tokio::spawn(s.client.post(s.url("/v1/detect")).body(photo.clone()).send())).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let pid = s.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for r in reqs {
        let r = r.await.unwrap().expect("in-flight request must complete");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.wait_exit(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn while_draining_new_requests_get_503_and_in_flight_ones_finish() {
    let mut s = Server::start(&["--instances", "1", "--max-batch-size", "1", "--shutdown-grace", "1500ms"]).await;
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let channel = tonic::transport::Channel::from_shared(s.grpc.clone()).unwrap().connect().await.unwrap();
    let health = HealthClient::new(channel);
    let grpc_status = |service: &str| {
        let mut health = health.clone();
        let req = HealthCheckRequest { service: service.into() };
        async move { health.check(req).await.unwrap().into_inner().status() }
    };
    assert_eq!(grpc_status("").await, ServingStatus::Serving);
    let (photo, _) = pasted_photo(&sample("mesonet/df/df01254.jpg"));
    let reqs: Vec<_> =
        (0..12).map(|_| tokio::spawn(s.client.post(s.url("/v1/detect")).body(photo.clone()).send())).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let pid = s.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A fresh client (new connection) during the grace period.
    let fresh = reqwest::Client::new();
    let r = fresh.post(s.url("/v1/detect?mode=whole")).body(sample("mesonet/df/df00204.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    assert_eq!(fresh.get(s.url("/health/ready")).send().await.unwrap().status(), 503);
    // gRPC health follows readiness as soon as it changes.
    for service in ["", "dfserve.v1.Detector", "inference.GRPCInferenceService"] {
        assert_eq!(grpc_status(service).await, ServingStatus::NotServing, "{service}");
    }
    // The client's connection must be able to answer the server's goodbye (this test's
    // runtime is blocked in wait_exit below), so close it now.
    drop(health);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in reqs {
        assert_eq!(r.await.unwrap().expect("in-flight request completes").status(), 200);
    }
    assert_eq!(s.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn startup_errors_are_clear_and_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("dfserve-bad-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(common::root().join("models/meso4_df.onnx"), dir.join("meso4_df.onnx")).unwrap();
    let good = std::fs::read_to_string(common::root().join("models/meso4_df.toml")).unwrap();
    let det = std::fs::read_to_string(common::root().join("models/ultraface_rfb320.toml")).unwrap();
    std::fs::copy(common::root().join("models/ultraface_rfb320.onnx"), dir.join("ultraface_rfb320.onnx")).unwrap();
    std::fs::write(dir.join("ultraface_rfb320.toml"), &det).unwrap();
    let d = dir.to_str().unwrap();
    // Only meso4_df is in this directory, so it must be the default.
    const ENV: [(&str, &str); 1] = [("DFSERVE_DEFAULT_MODEL", "meso4_df")];

    // Input name that is not in the ONNX file: the error names both sides.
    std::fs::write(dir.join("meso4_df.toml"), good.replace("name = \"input\"", "name = \"pixels\"")).unwrap();
    let (code, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d], &ENV);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("config input 'pixels'") && err.contains("input [-1, 256, 256, 3]"), "{err}");

    // Layout that disagrees with the file's shape.
    std::fs::write(dir.join("meso4_df.toml"), good.replace("layout = \"NHWC\"", "layout = \"NCHW\"")).unwrap();
    let (code, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d], &ENV);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[-1, 256, 256, 3]") && err.contains("[-1, 3, 256, 256]"), "{err}");

    // Output that does not exist.
    std::fs::write(dir.join("meso4_df.toml"), good.replace("score = \"fake_prob\"", "score = \"prob\"")).unwrap();
    let (_, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d], &ENV);
    assert!(err.contains("config output 'prob'") && err.contains("fake_prob"), "{err}");

    // Checksum mismatch.
    std::fs::write(dir.join("meso4_df.toml"), good.replace("sha256 = \"11cf", "sha256 = \"00cf")).unwrap();
    let (code, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d], &ENV);
    assert_eq!(code, Some(1));
    assert!(err.contains("sha256"), "{err}");

    // Missing ONNX Runtime library.
    std::fs::write(dir.join("meso4_df.toml"), &good).unwrap();
    let (code, err) = run_to_failure(
        &["serve", "--http-port", "0", "--model-dir", d, "--ort-lib", "/nonexistent/libonnxruntime.so"],
        &ENV,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("ONNX Runtime library not found"), "{err}");

    // A GPU device without a GPU build (or without a GPU) is an error, never a CPU fall-back.
    let (code, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d, "--device", "cuda"], &ENV);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.to_lowercase().contains("cuda"), "{err}");

    // Missing model file.
    std::fs::remove_file(dir.join("meso4_df.onnx")).unwrap();
    let (code, err) = run_to_failure(&["serve", "--http-port", "0", "--model-dir", d], &ENV);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing") && err.contains("scripts/setup.sh"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn lone_requests_take_the_solo_session_and_concurrent_ones_the_workers() {
    let s = Server::start(&[MESO[0], MESO[1], "--instances", "2", "--intra-threads", "1", "--solo-threads", "2"]).await;
    let jpeg = sample("mesonet/df/df00204.jpg");
    let counts = |m: &str| {
        (
            metric(m, "dfserve_solo_runs_total{model=\"meso4_df\"}").unwrap_or(0.0),
            metric(m, "dfserve_batch_size_count{model=\"meso4_df\"}").unwrap(),
        )
    };
    // One request at a time: every classifier run is a lone entry on idle workers.
    for _ in 0..5 {
        let (status, body) = s.detect("?mode=whole", jpeg.clone()).await;
        assert_eq!(status, 200, "{body}");
    }
    let (solo, runs) = counts(&s.metrics().await);
    assert_eq!(solo, runs, "sequential requests should all run on the solo session");
    // 64 at once keep the queue full, so the workers' own sessions take most of them, and the
    // scores are the same whichever session ran them.
    let reqs = (0..64).map(|_| s.detect("?mode=whole", jpeg.clone()));
    let mut scores = Vec::new();
    for (status, body) in futures::future::join_all(reqs).await {
        assert_eq!(status, 200, "{body}");
        scores.push(body["results"][0]["score"].as_f64().unwrap());
    }
    let (solo2, runs2) = counts(&s.metrics().await);
    assert_eq!(runs2 - runs, 64.0);
    assert!(solo2 - solo < 64.0, "concurrent load should use the worker sessions: {} of 64 ran solo", solo2 - solo);
    assert!(scores.iter().all(|x| (x - scores[0]).abs() < 1e-5), "{scores:?}");
}
