//! API keys on HTTP and gRPC, with rotation by SIGHUP.

mod common;

use std::time::Duration;

use common::{sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest, Mode};

const KEY_A: &str = "key-a-0123456789abcdef0123";
const KEY_B: &str = "key-b-0123456789abcdef0123";

async fn status(s: &Server, path: &str, key: Option<(&str, &str)>) -> (u16, Option<String>) {
    let mut req = s.client.get(s.url(path));
    if let Some((h, v)) = key {
        req = req.header(h, v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()))
}

#[tokio::test]
async fn keys_guard_http_and_grpc_and_rotate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("# rotated by ops\n{KEY_A}\n")).unwrap();
    let s = Server::start(&["--api-key-file", file.to_str().unwrap()]).await;

    // Health probes stay open; everything else needs the key.
    assert_eq!(status(&s, "/health/ready", None).await.0, 200);
    assert_eq!(status(&s, "/v2/health/live", None).await.0, 200);
    for path in ["/v1/models", "/metrics", "/v2/models/meso4_df", "/v2"] {
        let (code, challenge) = status(&s, path, None).await;
        assert_eq!(code, 401, "{path}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"dfserve\""), "{path}");
        assert_eq!(status(&s, path, Some(("x-api-key", "wrong-key-0123456789abcdef"))).await.0, 401);
        assert_eq!(status(&s, path, Some(("authorization", &format!("Bearer {KEY_A}")))).await.0, 200, "{path}");
        assert_eq!(status(&s, path, Some(("x-api-key", KEY_A))).await.0, 200, "{path}");
    }
    let r = s.client.post(s.url("/v1/detect?mode=whole")).body(sample("mesonet/df/df00204.jpg")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");

    // gRPC: UNAUTHENTICATED without metadata, served with it.
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let req = || DetectRequest {
        image: sample("mesonet/df/df00204.jpg").into(),
        mode: Mode::Whole as i32,
        ..Default::default()
    };
    let err = c.detect(req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut with_key = tonic::Request::new(req());
    with_key.metadata_mut().insert("authorization", format!("Bearer {KEY_A}").parse().unwrap());
    assert_eq!(c.detect(with_key).await.unwrap().into_inner().label, "manipulated");

    // Rotation: B replaces A, picked up on SIGHUP without a restart.
    std::fs::write(&file, format!("{KEY_B}\n")).unwrap();
    let pid = s.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let mut rotated = false;
    for _ in 0..100 {
        if status(&s, "/v1/models", Some(("x-api-key", KEY_B))).await.0 == 200 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the new key works after SIGHUP");
    assert_eq!(status(&s, "/v1/models", Some(("x-api-key", KEY_A))).await.0, 401, "the old key no longer does");
}

#[tokio::test]
async fn public_metrics_and_bad_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{KEY_A}\n")).unwrap();
    let s = Server::start(&["--api-key-file", file.to_str().unwrap(), "--public-metrics"]).await;
    assert_eq!(status(&s, "/metrics", None).await.0, 200);
    assert_eq!(status(&s, "/v1/models", None).await.0, 401);

    std::fs::write(&file, "# no keys\n").unwrap();
    let (code, err) = common::run_to_failure(
        &["serve", "--http-port", "0", "--grpc-port", "0", "--api-key-file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("holds no keys"), "{err}");
}
