//! TLS on both listeners, with a certificate made for the test.

mod common;

use common::{sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest, Mode};

#[tokio::test]
async fn https_and_grpc_over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    let c = dir.path().join("cert.pem");
    let k = dir.path().join("key.pem");
    let s =
        Server::start_tls(&["--tls-cert", c.to_str().unwrap(), "--tls-key", k.to_str().unwrap()], cert_pem.as_bytes())
            .await;
    assert!(s.base.starts_with("https://"));
    let (status, body) = s.detect("?mode=whole", sample("mesonet/df/df00204.jpg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["label"], "manipulated");
    // `dfserve health` (the image's health check) speaks TLS when DFSERVE_TLS_CERT is set.
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let health = |tls: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dfserve"));
        cmd.args(["health", "--http-port", &port]).env_remove("DFSERVE_TLS_CERT");
        if tls {
            cmd.env("DFSERVE_TLS_CERT", &c);
        }
        cmd.output().unwrap()
    };
    assert!(health(true).status.success(), "{}", String::from_utf8_lossy(&health(true).stderr));
    assert!(!health(false).status.success());
    // Plain HTTP to the TLS port is not served.
    let plain = s.base.replace("https://localhost", "http://127.0.0.1");
    let r = reqwest::Client::new().get(format!("{plain}/health/live")).send().await;
    assert!(r.is_err() || !r.unwrap().status().is_success());

    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(s.grpc.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = DetectorClient::new(channel)
        .detect(DetectRequest {
            image: sample("mesonet/df/df00204.jpg").into(),
            mode: Mode::Whole as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.label, "manipulated");
}
