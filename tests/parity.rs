//! HTTP `/v1/detect` and the dfserve gRPC API go through one detect layer, so the same option
//! set must give the same result (all but timings) or the same error code on both, for images
//! and videos alike. Each case is sent over both protocols to one real server.

mod common;

use common::{clip, sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest, DetectResponse};
use dfserve::api::grpc::ERROR_CODE_KEY;
use serde_json::{json, Value};
use tonic::Code;

/// One option set, spelled for both wires.
struct Case {
    name: &'static str,
    query: &'static str,
    grpc: DetectRequest,
    body: Vec<u8>,
    /// `None` for success, else the stable error code both must answer with.
    error: Option<&'static str>,
}

fn case(
    name: &'static str,
    query: &'static str,
    body: Vec<u8>,
    grpc: DetectRequest,
    error: Option<&'static str>,
) -> Case {
    let grpc = DetectRequest { image: body.clone().into(), ..grpc };
    Case { name, query, grpc, body, error }
}

fn cases() -> Vec<Case> {
    let img = sample("mesonet/df/df00204.jpg");
    let real = sample("mesonet/real/real00772.jpg");
    let video = clip("fake.mp4");
    let d = DetectRequest::default;
    vec![
        case("defaults", "", img.clone(), d(), None),
        case("whole", "?mode=whole", img.clone(), DetectRequest { mode: 1, ..d() }, None),
        case("threshold", "?threshold=0.99", real.clone(), DetectRequest { threshold: Some(0.99), ..d() }, None),
        case("other model", "?model=meso4_f2f", img.clone(), DetectRequest { model: "meso4_f2f".into(), ..d() }, None),
        case("probe", "?model=clip_probe", img.clone(), DetectRequest { model: "clip_probe".into(), ..d() }, None),
        case(
            "probe, whole",
            "?model=clip_probe&mode=whole",
            real.clone(),
            DetectRequest { model: "clip_probe".into(), mode: 1, ..d() },
            None,
        ),
        case(
            "unknown model",
            "?model=nope",
            img.clone(),
            DetectRequest { model: "nope".into(), ..d() },
            Some("model_not_found"),
        ),
        case(
            "detector as classifier",
            "?model=ultraface_rfb320",
            img.clone(),
            DetectRequest { model: "ultraface_rfb320".into(), ..d() },
            Some("model_not_found"),
        ),
        case(
            "bad threshold",
            "?threshold=1.5",
            img.clone(),
            DetectRequest { threshold: Some(1.5), ..d() },
            Some("bad_request"),
        ),
        case("bad mode", "?mode=7", img.clone(), DetectRequest { mode: 7, ..d() }, Some("bad_request")),
        case(
            "frames and fps",
            "?frames=4&fps=1",
            video.clone(),
            DetectRequest { video_frames: 4, video_fps: Some(1.0), ..d() },
            Some("bad_request"),
        ),
        case("bad fps", "?fps=-1", video.clone(), DetectRequest { video_fps: Some(-1.0), ..d() }, Some("bad_request")),
        case(
            "bad aggregation",
            "?aggregation=median",
            video.clone(),
            DetectRequest { aggregation: "median".into(), ..d() },
            Some("bad_request"),
        ),
        case(
            "bad option on an image",
            "?aggregation=median",
            img.clone(),
            DetectRequest { aggregation: "median".into(), ..d() },
            Some("bad_request"),
        ),
        case("undecodable", "", b"not an image".to_vec(), d(), Some("undecodable_image")),
        case(
            "video frames",
            "?frames=4&aggregation=max",
            video.clone(),
            DetectRequest { video_frames: 4, aggregation: "max".into(), ..d() },
            None,
        ),
        case(
            "video fps",
            "?fps=2&threshold=0.7",
            video,
            DetectRequest { video_fps: Some(2.0), threshold: Some(0.7), ..d() },
            None,
        ),
    ]
}

fn face(f: &dfserve::api::grpc::pb::dfserve_v1::Face) -> Value {
    let mut v =
        json!({ "box": [f.x1, f.y1, f.x2, f.y2], "confidence": f.confidence, "score": f.score, "label": f.label });
    verdict_fields(&mut v, &f.verdict, &f.verdict_reason);
    if !f.members.is_empty() {
        v["members"] = f.members.iter().map(|m| json!({ "model": m.model, "score": m.score })).collect();
    }
    if let Some(raw) = f.raw_score {
        v["raw_score"] = json!(raw);
    }
    v
}

/// HTTP leaves out an empty verdict (video track frames) and a missing reason.
fn verdict_fields(v: &mut Value, verdict: &str, reason: &str) {
    if !verdict.is_empty() {
        v["verdict"] = json!(verdict);
    }
    if !reason.is_empty() {
        v["verdict_reason"] = json!(reason);
    }
}

/// The gRPC response in the HTTP result's JSON shape (timings left out).
fn grpc_as_json(r: &DetectResponse) -> Value {
    let label = if r.label.is_empty() { Value::Null } else { json!(r.label) };
    let mut v = json!({
        "kind": r.kind, "width": r.width, "height": r.height, "status": r.status, "score": r.score,
        "label": label, "threshold": r.threshold,
    });
    verdict_fields(&mut v, &r.verdict, &r.verdict_reason);
    v["matches"] = r
        .matches
        .iter()
        .map(|m| {
            let mut j = json!({ "list": m.list, "id": m.id, "kind": m.kind, "distance": m.distance });
            if !m.label.is_empty() {
                j["label"] = json!(m.label);
            }
            j
        })
        .collect();
    if let Some(c) = &r.c2pa {
        // Empty strings and lists are the JSON's absent fields.
        let mut j = json!({ "present": c.present, "generative_ai": c.generative_ai });
        let text = [
            ("state", &c.state),
            ("signed_at", &c.signed_at),
            ("claim_generator", &c.claim_generator),
            ("title", &c.title),
        ];
        for (k, t) in text.into_iter().filter(|(_, t)| !t.is_empty()) {
            j[k] = json!(t);
        }
        if !c.signer_issuer.is_empty() || !c.signer_common_name.is_empty() {
            j["signer"] = json!({ "issuer": c.signer_issuer, "common_name": c.signer_common_name });
        }
        for (k, l) in [("digital_source_types", &c.digital_source_types), ("errors", &c.errors)] {
            if !l.is_empty() {
                j[k] = json!(l);
            }
        }
        v["provenance"] = json!({ "c2pa": j });
    }
    match &r.video {
        None => v["faces"] = r.faces.iter().map(face).collect(),
        Some(video) => {
            for (k, val) in [
                ("duration_s", json!(video.duration_s)),
                ("fps", json!(video.fps)),
                ("codec", json!(video.codec)),
                ("frames_sampled", json!(video.frames_sampled)),
                ("frames_with_faces", json!(video.frames_with_faces)),
                ("aggregation", json!(video.aggregation)),
                ("sampling", json!(video.sampling)),
            ] {
                v[k] = val;
            }
            v["tracks"] = video
                .tracks
                .iter()
                .map(|t| {
                    let frames: Vec<Value> = t
                        .frames
                        .iter()
                        .map(|f| {
                            let mut face = face(f.face.as_ref().unwrap());
                            face.as_object_mut().unwrap().remove("label");
                            face["frame"] = json!(f.frame);
                            face["time_s"] = json!(f.time_s);
                            face
                        })
                        .collect();
                    json!({ "id": t.id, "score": t.score, "frames": frames })
                })
                .collect();
        }
    }
    v
}

/// Equal, with floats compared to 1e-5 (scores are f32 on both wires).
fn same(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() <= 1e-5 * x.abs().max(1.0) {
                Ok(())
            } else {
                Err(format!("{at}: {x} vs {y}"))
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]")))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().try_for_each(|k| {
                same(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))
            })
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{at}: {a} vs {b}")),
    }
}

#[tokio::test]
async fn the_same_options_give_the_same_answer_over_http_and_grpc() {
    let s = Server::start(&[]).await;
    let mut grpc = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    for c in cases() {
        let r = s.client.post(s.url(&format!("/v1/detect{}", c.query))).body(c.body.clone()).send().await.unwrap();
        let http_status = r.status().as_u16();
        let http: Value = r.json().await.unwrap();
        let g = grpc.detect(c.grpc.clone()).await;
        match (c.error, g) {
            (None, Ok(g)) => {
                assert_eq!(http_status, 200, "{}: {http}", c.name);
                let g = g.into_inner();
                let mut want = http["results"][0].clone();
                let obj = want.as_object_mut().unwrap();
                for k in ["timings", "index"] {
                    obj.remove(k);
                }
                if let Err(e) = same(&want, &grpc_as_json(&g), c.name) {
                    panic!("{}: HTTP and gRPC differ: {e}\nHTTP {want}\ngRPC {g:?}", c.name);
                }
                assert_eq!(http["model"]["name"], g.model, "{}", c.name);
                assert_eq!(http["model"]["version"], g.model_version, "{}", c.name);
                assert_eq!(http["mode"], g.mode, "{}", c.name);
                assert!(g.timings.unwrap().total_ms > 0.0, "{}", c.name);
            }
            (Some(code), Err(status)) => {
                assert_eq!(http["code"], code, "{}: HTTP {http_status} {http}", c.name);
                let grpc_code = status.metadata().get(ERROR_CODE_KEY).map(|v| v.to_str().unwrap().to_string());
                assert_eq!(grpc_code.as_deref(), Some(code), "{}: gRPC {status:?}", c.name);
                assert_eq!(http["error"], status.message(), "{}: the messages differ", c.name);
                let want = match http_status {
                    400 | 422 => Code::InvalidArgument,
                    404 => Code::NotFound,
                    other => panic!("{}: unexpected HTTP status {other}", c.name),
                };
                assert_eq!(status.code(), want, "{}", c.name);
            }
            (want, got) => panic!("{}: expected {want:?}, gRPC answered {got:?}; HTTP {http_status} {http}", c.name),
        }
    }
}
