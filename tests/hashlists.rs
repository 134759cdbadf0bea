//! Known-content matching end to end: lists changed over HTTP by admin keys only, kept across a
//! restart and a killed process, and uploads matched by PDQ after the edits a re-upload goes
//! through, by exact digest, and not at all when they are not on a list.

mod common;

use common::{encode, sample, Server};
use dfserve::hashing::pdq::{pdq, Pdq};
use image::{ImageFormat, RgbImage};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ADMIN: &str = "admin-key-0123456789abcdef";
const SCORER: &str = "score-key-0123456789abcdef";

fn key_file(dir: &std::path::Path) -> String {
    let f = dir.join("keys");
    std::fs::write(&f, format!("admin:{ADMIN}\n{SCORER}\n")).unwrap();
    f.to_str().unwrap().to_string()
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).encode_image(img).unwrap();
    out
}

async fn post_list(s: &Server, key: Option<&str>, list: &str, body: String) -> (u16, Value) {
    let mut req = s.client.post(s.url(&format!("/v1/hashlists/{list}"))).body(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn matches(s: &Server, body: Vec<u8>) -> Vec<(String, String, String, u64)> {
    let r = s.client.post(s.url("/v1/detect")).header("x-api-key", SCORER).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["results"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["list"].as_str().unwrap().into(),
                m["id"].as_str().unwrap().into(),
                m["kind"].as_str().unwrap().into(),
                m["distance"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn only_admin_keys_change_lists_and_changes_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let original = image::load_from_memory(&sample("mesonet/df/df00204.jpg")).unwrap().to_rgb8();
    let h = pdq(&original);
    let upload = sample("mesonet/df/df00204.jpg");
    let lines = [
        json!({"kind": "pdq", "hash": h.hex(), "id": "case-17", "label": "named by regulator"}),
        json!({"kind": "sha256", "hash": hex::encode(Sha256::digest(&upload)), "id": "file-17"}),
    ]
    .iter()
    .map(|l| l.to_string() + "\n")
    .collect::<String>();

    let mut s = Server::start(&["--api-key-file", &keys, "--data-dir", data]).await;
    assert_eq!(post_list(&s, None, "ncii", lines.clone()).await.0, 401);
    let (status, body) = post_list(&s, Some(SCORER), "ncii", lines.clone()).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = post_list(&s, Some(ADMIN), "ncii", lines.clone()).await;
    assert_eq!((status, body["added"].as_u64()), (200, Some(2)), "{body}");
    let (status, body) =
        post_list(&s, Some(ADMIN), "ncii", "{\"kind\":\"pdq\",\"hash\":\"12\",\"id\":\"x\"}\n".into()).await;
    assert_eq!(status, 400, "{body}");

    // Applied at once: the upload matches by PDQ (distance 0) and by SHA-256.
    let want = vec![
        ("ncii".to_string(), "case-17".to_string(), "pdq".to_string(), 0),
        ("ncii".to_string(), "file-17".to_string(), "sha256".to_string(), 0),
    ];
    let mut got = matches(&s, upload.clone()).await;
    got.sort();
    assert_eq!(got, want);

    // Killed outright (SIGKILL), restarted on the same data: the list is still there.
    s.kill();
    let s = Server::start(&["--api-key-file", &keys, "--data-dir", data]).await;
    let mut got = matches(&s, upload.clone()).await;
    got.sort();
    assert_eq!(got, want);
    let listed: Value =
        s.client.get(s.url("/v1/hashlists")).header("x-api-key", SCORER).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["lists"][0]["entries"], 2, "{listed}");
    let export = s
        .client
        .get(s.url("/v1/hashlists/ncii"))
        .header("x-api-key", SCORER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(export.lines().count(), 2);

    // Deleting needs the admin key too, and also lasts.
    let del = |key: &'static str| {
        s.client.delete(s.url("/v1/hashlists/ncii/entries/file-17")).header("x-api-key", key).send()
    };
    assert_eq!(del(SCORER).await.unwrap().status(), 403);
    assert_eq!(del(ADMIN).await.unwrap().status(), 200);
    assert_eq!(del(ADMIN).await.unwrap().status(), 404);
    drop(s);
    let s = Server::start(&["--api-key-file", &keys, "--data-dir", data]).await;
    assert_eq!(matches(&s, upload).await.len(), 1);
}

#[tokio::test]
async fn without_a_key_file_lists_cannot_be_changed() {
    let s = Server::start(&[]).await;
    let (status, body) = post_list(&s, None, "x", String::new()).await;
    assert_eq!(status, 403);
    assert!(body["error"].as_str().unwrap().contains("--api-key-file"), "{body}");
}

/// The edits a re-upload goes through, as named in the README's robustness table.
fn variants(img: &RgbImage) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for q in [50u8, 75, 95] {
        out.push((format!("jpeg q{q}"), jpeg(img, q)));
    }
    for scale in [0.5f32, 2.0] {
        let (w, h) = ((img.width() as f32 * scale) as u32, (img.height() as f32 * scale) as u32);
        let resized = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
        out.push((format!("resize {scale}x"), encode(&resized, ImageFormat::Png)));
    }
    for factor in [0.8f32, 1.2] {
        let mut b = img.clone();
        for p in b.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (*c as f32 * factor).round().clamp(0.0, 255.0) as u8;
            }
        }
        out.push((format!("brightness {factor}"), encode(&b, ImageFormat::Png)));
    }
    out
}

/// JSON Lines entries listing each sample by its PDQ, with the sample's path as the id.
fn pdq_entries(files: &[&str]) -> String {
    files
        .iter()
        .map(|f| {
            let h: Pdq = pdq(&image::load_from_memory(&sample(f)).unwrap().to_rgb8());
            json!({"kind": "pdq", "hash": h.hex(), "id": f}).to_string() + "\n"
        })
        .collect()
}

#[tokio::test]
async fn listed_images_are_found_after_re_encoding_resizing_and_brightness_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    let s = Server::start(&["--api-key-file", &keys]).await;
    let listed = ["mesonet/df/df00204.jpg", "mesonet/real/real00240.jpg"];
    let lines = pdq_entries(&listed);
    assert_eq!(post_list(&s, Some(ADMIN), "known", lines).await.0, 200);
    for f in listed {
        let img = image::load_from_memory(&sample(f)).unwrap().to_rgb8();
        for (edit, bytes) in variants(&img) {
            let got = matches(&s, bytes).await;
            assert!(got.iter().any(|m| m.1 == f && m.3 <= 31), "{f} after {edit}: {got:?}");
        }
    }
    // Not listed: no match, edited or not.
    for f in ["mesonet/df/df01254.jpg", "mesonet/real/real00772.jpg"] {
        assert_eq!(matches(&s, sample(f)).await, vec![], "{f}");
        let img = image::load_from_memory(&sample(f)).unwrap().to_rgb8();
        for (edit, bytes) in variants(&img) {
            assert_eq!(matches(&s, bytes).await, vec![], "{f} after {edit}");
        }
    }
    // The same matches over gRPC.
    use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(DetectRequest { image: sample(listed[0]).into(), ..Default::default() });
    req.metadata_mut().insert("x-api-key", SCORER.parse().unwrap());
    let r = c.detect(req).await.unwrap().into_inner();
    assert_eq!(r.matches.len(), 1);
    assert_eq!((r.matches[0].id.as_str(), r.matches[0].kind.as_str(), r.matches[0].distance), (listed[0], "pdq", 0));
}

/// The seven turned and mirrored copies of an image, each named by the transform that turns it
/// back, as matches name it: `image`'s rotate90 turns clockwise, so undoing it is "rotate_90"
/// (counter-clockwise, Pillow's ROTATE_90); mirrors are their own inverses.
fn turned(img: &RgbImage) -> Vec<(&'static str, RgbImage)> {
    use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
    vec![
        ("rotate_90", rotate90(img)),
        ("rotate_180", rotate180(img)),
        ("rotate_270", rotate270(img)),
        ("flip_vertical", flip_vertical(img)),
        ("flip_horizontal", flip_horizontal(img)),
        // Mirrored across the main diagonal, and across the other one.
        ("transpose", rotate270(&flip_horizontal(img))),
        ("transverse", rotate90(&flip_horizontal(img))),
    ]
}

async fn detect_json(s: &Server, body: Vec<u8>) -> Value {
    let r = s.client.post(s.url("/v1/detect")).header("x-api-key", SCORER).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn turned_and_mirrored_copies_match_through_the_dihedral_variants_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path());
    // Both 342 and 264 pixels square: at those sizes PDQ's sampling grid is symmetric, so each
    // variant equals the turned copy's own hash. At 256 and 208 it is not, and the variants land
    // 14 to 52 bits from the turned copies' hashes, in the reference (pdqhash) as here.
    let listed = ["mesonet/df/df00204.jpg", "mesonet/df/df01254.jpg"];
    let lines = pdq_entries(&listed);
    let s = Server::start(&["--api-key-file", &keys, "--data-dir", dir.path().to_str().unwrap()]).await;
    assert_eq!(post_list(&s, Some(ADMIN), "known", lines).await.0, 200);
    for f in listed {
        let img = image::load_from_memory(&sample(f)).unwrap().to_rgb8();
        // As uploaded: no transform named.
        let v = detect_json(&s, encode(&img, ImageFormat::Png)).await;
        let m = &v["results"][0]["matches"];
        assert_eq!((m[0]["id"].as_str(), m[0]["distance"].as_u64()), (Some(f), Some(0)), "{v}");
        assert!(m[0].get("transform").is_none(), "{v}");
        for (name, copy) in turned(&img) {
            let v = detect_json(&s, jpeg(&copy, 90)).await;
            let m = v["results"][0]["matches"].as_array().unwrap();
            assert_eq!(m.len(), 1, "{f} {name}: {v}");
            assert_eq!(m[0]["id"], f, "{f} {name}: {v}");
            assert_eq!(m[0]["transform"], name, "{f} {name}: {v}");
            assert!(m[0]["distance"].as_u64().unwrap() <= 31, "{f} {name}: {v}");
        }
    }
    // Over gRPC the match names its transform too.
    use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
    let img = image::load_from_memory(&sample(listed[0])).unwrap().to_rgb8();
    let flipped = encode(&image::imageops::flip_horizontal(&img), ImageFormat::Png);
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(DetectRequest { image: flipped.clone().into(), ..Default::default() });
    req.metadata_mut().insert("x-api-key", SCORER.parse().unwrap());
    let r = c.detect(req).await.unwrap().into_inner();
    assert_eq!(r.matches.len(), 1);
    assert_eq!((r.matches[0].id.as_str(), r.matches[0].transform.as_deref()), (listed[0], Some("flip_horizontal")));
    drop(s);
    // Turned off, the same copies match no more, and the original still does.
    let s = Server::start(&[
        "--api-key-file",
        &keys,
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--pdq-dihedral",
        "false",
    ])
    .await;
    assert_eq!(matches(&s, encode(&img, ImageFormat::Png)).await.len(), 1);
    for (name, copy) in turned(&img) {
        assert_eq!(matches(&s, encode(&copy, ImageFormat::Png)).await, vec![], "{name}");
    }
}
