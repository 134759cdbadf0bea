//! Video end to end: clips built with FFmpeg from the MesoNet samples (a face crop moving over
//! a background), sent to the real server.

mod common;

use common::{clip, metric, sample, Server};
use serde_json::Value;

async fn post(s: &Server, query: &str, body: Vec<u8>) -> (u16, Value) {
    let r = s.client.post(s.url(&format!("/v1/detect{query}"))).body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn frame_scores(result: &Value) -> Vec<f64> {
    result["tracks"][0]["frames"].as_array().unwrap().iter().map(|f| f["score"].as_f64().unwrap()).collect()
}

/// The clips are made from the MesoNet sample crops, which MesoNet scores as their labels say;
/// these tests are about tracks and timelines, so they name the MesoNet ensemble as the default.
const MESO: [&str; 2] = ["--default-model", "meso4_ensemble"];

#[tokio::test]
async fn h264_fake_clip_is_one_moving_track_above_threshold() {
    let s = Server::start(&MESO).await;
    let (status, body) = post(&s, "?frames=8", clip("fake.mp4")).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["results"][0];
    assert_eq!(r["kind"], "video");
    assert_eq!(r["codec"], "h264");
    assert_eq!(r["frames_sampled"], 8);
    assert!((r["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.1, "{r}");
    let tracks = r["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 1, "{r}");
    let frames = tracks[0]["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 8);
    let centres: Vec<f64> =
        frames.iter().map(|f| (f["box"][0].as_f64().unwrap() + f["box"][2].as_f64().unwrap()) / 2.0).collect();
    assert!(centres.windows(2).all(|w| w[1] > w[0]), "the face moves right: {centres:?}");
    let times: Vec<f64> = frames.iter().map(|f| f["time_s"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[1] > w[0]) && times[7] < 3.0, "{times:?}");
    assert!(r["score"].as_f64().unwrap() > 0.5, "{r}");
    assert_eq!(r["label"], "manipulated");
    let m = s.metrics().await;
    assert_eq!(metric(&m, "dfserve_videos_total{label=\"manipulated\"}"), Some(1.0));
    assert_eq!(metric(&m, "dfserve_video_frames_total"), Some(8.0));
    assert!(m.contains("dfserve_stage_duration_seconds_count{stage=\"video_decode\"} 1"));
}

#[tokio::test]
async fn vp9_real_clip_scores_below_threshold_with_default_sampling() {
    let s = Server::start(&MESO).await;
    let (status, body) = post(&s, "", clip("real.webm")).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["results"][0];
    assert_eq!(r["codec"], "vp9");
    assert_eq!(r["frames_sampled"], 32, "default 32 frames");
    assert_eq!(r["tracks"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["score"].as_f64().unwrap() < 0.5, "{r}");
    assert_eq!(r["label"], "authentic");
    let (_, body) = post(&s, "?fps=2", clip("real.webm")).await;
    assert_eq!(body["results"][0]["frames_sampled"], 6, "2 frames per second of a 3 s clip");
}

/// The DFDC winner's rule, written independently of the server's implementation.
fn confident(v: &[f64]) -> f64 {
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let hi: Vec<f64> = v.iter().copied().filter(|s| *s > 0.8).collect();
    let lo: Vec<f64> = v.iter().copied().filter(|s| *s < 0.2).collect();
    if hi.len() > 11 && hi.len() as f64 > v.len() as f64 / 2.5 {
        mean(&hi)
    } else if lo.len() as f64 > 0.9 * v.len() as f64 {
        mean(&lo)
    } else {
        mean(v)
    }
}

#[tokio::test]
async fn each_aggregation_strategy_matches_a_hand_computation() {
    let s = Server::start(&MESO).await;
    for (name, clip_name) in
        [("max", "fake.mp4"), ("mean", "fake.mp4"), ("confident", "fake.mp4"), ("confident", "real.webm")]
    {
        let (status, body) = post(&s, &format!("?frames=24&aggregation={name}"), clip(clip_name)).await;
        assert_eq!(status, 200, "{body}");
        let r = &body["results"][0];
        assert_eq!(r["aggregation"], name);
        let v = frame_scores(r);
        let want = match name {
            "max" => v.iter().copied().fold(f64::MIN, f64::max),
            "mean" => v.iter().sum::<f64>() / v.len() as f64,
            _ => confident(&v),
        };
        let got = r["tracks"][0]["score"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-5, "{name} on {clip_name}: got {got}, want {want}");
        assert!((r["score"].as_f64().unwrap() - got).abs() < 1e-9, "one track: the video score is its score");
    }
    let (status, _) = post(&s, "?aggregation=median", clip("fake.mp4")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn broken_videos_get_clear_4xx_and_the_server_keeps_serving() {
    let s = Server::start(&[MESO[0], MESO[1], "--max-video-duration", "2s"]).await;
    let good = clip("fake.mp4");
    let mut garbage = good[..32].to_vec();
    garbage.extend(std::iter::repeat_n(0xAB, 4000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 3].to_vec(), "cannot decode video"),
        ("garbage after an MP4 header", garbage, "video"),
        ("audio only", clip("audio.m4a"), "no video stream"),
        ("over-long", good.clone(), "--max-video-duration"),
    ];
    for (what, bytes, needle) in cases {
        let (status, body) = post(&s, "", bytes).await;
        assert_eq!(status, 422, "{what}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{what}: {body}");
        let (ok, _) = post(&s, "?mode=whole", sample("mesonet/df/df00204.jpg")).await;
        assert_eq!(ok, 200, "still serving after {what}");
    }
    let m = s.metrics().await;
    assert_eq!(metric(&m, "dfserve_videos_total{label=\"error\"}"), Some(4.0));
}

#[tokio::test]
async fn multipart_mixes_images_and_videos_and_grpc_takes_videos() {
    let s = Server::start(&MESO).await;
    let form = reqwest::multipart::Form::new()
        .part("a", reqwest::multipart::Part::bytes(sample("mesonet/df/df00204.jpg")).file_name("a.jpg"))
        .part("b", reqwest::multipart::Part::bytes(clip("fake.mp4")).file_name("b.mp4"));
    let body: Value =
        s.client.post(s.url("/v1/detect?frames=4")).multipart(form).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["results"][0]["kind"], "image");
    assert_eq!(body["results"][1]["kind"], "video");
    assert_eq!(body["results"][1]["frames_sampled"], 4);

    use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
    let mut c = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    let r = c
        .detect(DetectRequest {
            image: clip("fake.mp4").into(),
            video_frames: 6,
            aggregation: "max".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.kind, "video");
    let v = r.video.unwrap();
    assert_eq!(v.frames_sampled, 6);
    assert_eq!(v.tracks.len(), 1);
    assert_eq!(v.aggregation, "max");
    assert_eq!(r.label, "manipulated");
}
