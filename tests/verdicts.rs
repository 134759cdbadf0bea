//! Ensembles, calibration and verdicts end to end: the combined score against its members,
//! a calibrated classifier's served score against its raw one, the verdict reasons, and the
//! same answer from HTTP and from `dfserve score`.

mod common;

use std::process::Command;

use common::{encode, sample, Server};
use serde_json::Value;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// These tests are about the ensemble rules, so they run with `meso4_ensemble` as the default
/// classifier (the shipped default is the CLIP probe): every server and CLI they start inherits
/// DFSERVE_DEFAULT_MODEL. All of them set the same value, so running side by side is safe.
fn pin_default() {
    std::env::set_var("DFSERVE_DEFAULT_MODEL", "meso4_ensemble");
}

/// A copy of the model directory, with `extra` appended to the default ensemble's config.
fn model_dir(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml" || e == "onnx") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let cfg = dir.path().join("meso4_ensemble.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n{extra}")).unwrap();
    dir
}

async fn whole(s: &Server, query: &str, body: Vec<u8>) -> Value {
    let (status, json) = s.detect(&format!("?mode=whole{query}"), body).await;
    assert_eq!(status, 200, "{json}");
    json["results"][0].clone()
}

#[tokio::test]
async fn the_default_ensemble_is_the_mean_of_its_members() {
    pin_default();
    let s = Server::start(&[]).await;
    for file in ["mesonet/df/df00204.jpg", "mesonet/real/real00240.jpg"] {
        let r = whole(&s, "", sample(file)).await;
        let face = &r["faces"][0];
        let members = face["members"].as_array().unwrap();
        assert_eq!(members.len(), 2);
        // Each member's score is what that model alone serves.
        for m in members {
            let alone = whole(&s, &format!("&model={}", m["model"].as_str().unwrap()), sample(file)).await;
            assert!((alone["score"].as_f64().unwrap() - m["score"].as_f64().unwrap()).abs() < 1e-6, "{m} {alone}");
        }
        let mean = members.iter().map(|m| m["score"].as_f64().unwrap()).sum::<f64>() / 2.0;
        assert!((face["score"].as_f64().unwrap() - mean).abs() < 1e-6, "{face}");
        assert!(face.get("raw_score").is_none(), "no calibration, no raw score: {face}");
    }
}

#[tokio::test]
async fn a_calibrated_ensemble_serves_the_calibrated_probability_and_bands_it() {
    pin_default();
    let dir = model_dir("[calibration]\nmethod = \"platt\"\na = 2.0\nb = -1.0\n");
    let s = Server::start(&["--model-dir", dir.path().to_str().unwrap()]).await;
    let r = whole(&s, "", sample("mesonet/df/df00204.jpg")).await;
    let face = &r["faces"][0];
    let raw = face["raw_score"].as_f64().unwrap();
    let mean = face["members"].as_array().unwrap().iter().map(|m| m["score"].as_f64().unwrap()).sum::<f64>() / 2.0;
    assert!((raw - mean).abs() < 1e-6, "{face}");
    let want = sigmoid(2.0 * logit(raw) - 1.0);
    let score = face["score"].as_f64().unwrap();
    assert!((score - want).abs() < 1e-5, "served {score}, want {want}");
    // The verdict bands the served (calibrated) score: edges 0.2 and 0.8.
    let band = if score >= 0.8 {
        "likely_manipulated"
    } else if score < 0.2 {
        "likely_authentic"
    } else {
        "uncertain"
    };
    assert_eq!(face["verdict"], band, "{face}");
    assert_eq!(r["verdict"], band, "one face: the image takes its band");
    let models: Value = s.client.get(s.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ens = models["classifiers"].as_array().unwrap().iter().find(|c| c["name"] == "meso4_ensemble").unwrap();
    assert_eq!(ens["calibration"]["a"], 2.0);
    assert_eq!(ens["default"], true);
}

#[tokio::test]
async fn results_that_cannot_be_judged_say_why() {
    pin_default();
    let s = Server::start(&[]).await;
    // A crop smaller than --min-face-size (64 px) in whole mode.
    let small = image::load_from_memory(&sample("mesonet/df/df00204.jpg")).unwrap().resize_exact(
        48,
        48,
        image::imageops::FilterType::Triangle,
    );
    let r = whole(&s, "", encode(&small.to_rgb8(), image::ImageFormat::Png)).await;
    assert_eq!(r["verdict"], "not_applicable", "{r}");
    assert_eq!(r["verdict_reason"], "image_too_small", "{r}");
    assert_eq!(r["faces"][0]["verdict_reason"], "image_too_small");
    assert!(r["score"].as_f64().is_some(), "still scored: {r}");
    // No face at all.
    let grey = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let (_, body) = s.detect("", encode(&grey, image::ImageFormat::Png)).await;
    let r = &body["results"][0];
    assert_eq!((r["verdict"].as_str(), r["verdict_reason"].as_str()), (Some("not_applicable"), Some("no_face")));
    // A large enough face is judged; the same threshold rule still gives the label.
    let r = whole(&s, "", sample("mesonet/real/real00240.jpg")).await;
    assert_ne!(r["verdict"], "not_applicable", "{r}");
    assert!(r.get("verdict_reason").is_none());
}

#[tokio::test]
async fn the_cli_gives_what_the_server_gives() {
    pin_default();
    let s = Server::start(&[]).await;
    let data = tempfile::tempdir().unwrap();
    for (dir, file) in [("fake", "mesonet/df/df00204.jpg"), ("real", "mesonet/real/real00240.jpg")] {
        std::fs::create_dir_all(data.path().join(dir)).unwrap();
        std::fs::write(data.path().join(dir).join("a.jpg"), sample(file)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dfserve"))
        .current_dir(common::root())
        .args(["score", "--mode", "whole", "--labels", "dirs", "--by-folder"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let path = row["path"].as_str().unwrap();
        let r = whole(&s, "", std::fs::read(path).unwrap()).await;
        let o = &row["models"]["meso4_ensemble"];
        assert!((o["score"].as_f64().unwrap() - r["score"].as_f64().unwrap()).abs() < 1e-6, "{o} {r}");
        assert_eq!(o["verdict"], r["verdict"]);
        assert_eq!(o["label"], r["label"]);
    }
    // Rows on stdout, so the summary goes to stderr.
    assert!(stdout.lines().all(|l| l.starts_with('{')), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("by folder"), "{stderr}");
    assert!(stderr.contains("not applicable"), "{stderr}");
}

#[tokio::test]
async fn an_audit_record_names_the_upload_and_every_model_that_ran() {
    pin_default();
    use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
    use sha2::{Digest, Sha256};
    let s = Server::start(&[]).await;
    let img = sample("mesonet/df/df00204.jpg");
    let (_, plain) = s.detect("", img.clone()).await;
    assert!(plain["results"][0].get("audit").is_none(), "off unless asked");
    let (status, body) = s.detect("?audit=true", img.clone()).await;
    assert_eq!(status, 200);
    let a = &body["results"][0]["audit"];
    assert_eq!(a["upload_sha256"], hex::encode(Sha256::digest(&img)));
    assert_eq!(a["dfserve_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((a["classifier"].as_str(), a["classifier_kind"].as_str()), (Some("meso4_ensemble"), Some("ensemble")));
    assert_eq!(a["combine"], "mean");
    let file_sha = |name: &str| {
        let text = std::fs::read_to_string(common::root().join(format!("models/{name}.toml"))).unwrap();
        let cfg: toml::Table = toml::from_str(&text).unwrap();
        cfg["sha256"].as_str().unwrap().to_string()
    };
    let models: Vec<(String, String, String)> = a["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
                m["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> =
        [("meso4_df", "classifier"), ("meso4_f2f", "classifier"), ("ultraface_rfb320", "detector")]
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string(), file_sha(n)))
            .collect();
    assert_eq!(models, want);
    assert_eq!((a["bands"]["authentic_below"].as_f64(), a["min_face_size"].as_u64()), (Some(0.2f32 as f64), Some(64)));

    // The same record over gRPC.
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let r =
        c.detect(DetectRequest { image: img.into(), audit: true, ..Default::default() }).await.unwrap().into_inner();
    let g = r.audit.unwrap();
    assert_eq!(g.upload_sha256, a["upload_sha256"].as_str().unwrap());
    assert_eq!(
        g.models.iter().map(|m| m.sha256.clone()).collect::<Vec<_>>(),
        want.iter().map(|w| w.2.clone()).collect::<Vec<_>>()
    );
    assert_eq!((g.combine.as_str(), g.min_face_size), ("mean", 64));

    // The KServe pipeline model, with parameter `audit`: one JSON record per row.
    let header = format!(
        r#"{{"inputs":[{{"name":"IMAGE","shape":[1],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}}],"parameters":{{"audit":true}}}}"#,
        sample("mesonet/df/df00204.jpg").len() + 4
    );
    let mut body = header.clone().into_bytes();
    let jpeg = sample("mesonet/df/df00204.jpg");
    body.extend_from_slice(&(jpeg.len() as u32).to_le_bytes());
    body.extend_from_slice(&jpeg);
    let r = s
        .client
        .post(s.url("/v2/models/dfserve/infer"))
        .header("inference-header-content-length", header.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let out = v["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "AUDIT").expect("an AUDIT output");
    let record: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(record["upload_sha256"], a["upload_sha256"]);

    // And in `dfserve score --audit` rows.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jpg"), &jpeg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dfserve"))
        .current_dir(common::root())
        .args(["score", "--audit"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let cli = &row["models"]["meso4_ensemble"]["audit"];
    assert_eq!(cli["upload_sha256"], a["upload_sha256"]);
    assert_eq!(cli["models"], a["models"]);
}

#[tokio::test]
async fn an_ensemble_is_also_a_kserve_tensor_model() {
    pin_default();
    let s = Server::start(&[]).await;
    let infer = |model: &str| {
        let body = serde_json::json!({"inputs": [{"name": "input", "shape": [2, 256, 256, 3], "datatype": "FP32",
            "data": (0..2 * 256 * 256 * 3).map(|i| if i < 256 * 256 * 3 { 0.5 } else { (i % 255) as f64 / 255.0 }).collect::<Vec<f64>>()}]});
        s.client.post(s.url(&format!("/v2/models/{model}/infer"))).json(&body).send()
    };
    let r = infer("meso4_ensemble").await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let out = |name: &str| -> Vec<f64> {
        let o = v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {v}"));
        o["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let (score, df, f2f) = (out("SCORE"), out("SCORE_meso4_df"), out("SCORE_meso4_f2f"));
    assert_eq!(score.len(), 2);
    for i in 0..2 {
        assert!((score[i] - (df[i] + f2f[i]) / 2.0).abs() < 1e-6, "{score:?} {df:?} {f2f:?}");
    }
    // A member's score is what that model serves on its own.
    let alone: Value = infer("meso4_df").await.unwrap().json().await.unwrap();
    let fake = alone["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "fake_prob").unwrap();
    for i in 0..2 {
        assert!((fake["data"][i].as_f64().unwrap() - df[i]).abs() < 1e-6);
    }
    let meta: Value = s.client.get(s.url("/v2/models/meso4_ensemble")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["platform"], "dfserve_ensemble");
    assert_eq!(meta["outputs"].as_array().unwrap().len(), 3);
}
