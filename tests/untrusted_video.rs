//! Hostile video uploads: manifests that point FFmpeg at server files or URLs, a 4K clip at the
//! frame cap (server memory sampled), several at once, raw `video/*` bodies, and every video
//! error code.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{clip, clips, sample, Server};
use dfserve::api::grpc::pb::dfserve_v1::{detector_client::DetectorClient, DetectRequest};
use serde_json::Value;

async fn post(s: &Server, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value, Option<String>) {
    let r = s
        .client
        .post(s.url(&format!("/v1/detect{query}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap(), retry)
}

/// A named pipe that records whether anything opened it for reading.
struct Canary {
    path: PathBuf,
    opened: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Canary {
    fn new(name: &str) -> Canary {
        let path = std::env::temp_dir().join(format!("dfserve-canary-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(Command::new("mkfifo").arg(&path).status().unwrap().success());
        let opened = Arc::new(AtomicBool::new(false));
        let (p, flag) = (path.clone(), opened.clone());
        // Opening a FIFO for writing blocks until a reader opens it.
        let watcher = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&p);
            flag.store(true, Ordering::SeqCst);
            drop(f);
        });
        Canary { path, opened, watcher: Some(watcher) }
    }

    /// Whether anything but this check opened the pipe; releases the watcher.
    fn was_opened(mut self) -> bool {
        let opened = self.opened.load(Ordering::SeqCst);
        let _ = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&self.path);
        self.watcher.take().unwrap().join().unwrap();
        let _ = std::fs::remove_file(&self.path);
        opened
    }
}

fn dash(base_url: &str) -> Vec<u8> {
    // `<!--` then `free` at bytes 4..8: passes a sniff that only looks at the box type.
    format!(
        "<!--free--><?xml version=\"1.0\"?><MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\" \
         mediaPresentationDuration=\"PT3S\" minBufferTime=\"PT1S\" profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\">\
         <Period><AdaptationSet mimeType=\"video/mp4\"><Representation id=\"1\" bandwidth=\"100000\" width=\"640\" height=\"360\">\
         <BaseURL>{base_url}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>"
    )
    .into_bytes()
}

#[tokio::test]
async fn manifests_are_refused_and_what_they_name_is_never_opened() {
    let s = Server::start(&[]).await;
    let canary = Canary::new("manifest");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/clip.mp4", listener.local_addr().unwrap());
    let path = canary.path.display().to_string();
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("DASH, local path", dash(&path)),
        ("DASH, file URL", dash(&format!("file://{path}"))),
        ("DASH, http URL", dash(&url)),
        (
            "HLS",
            format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:3,\nfile://{path}\n#EXTINF:3,\n{url}\n#EXT-X-ENDLIST\n")
                .into_bytes(),
        ),
        ("ffconcat", format!("ffconcat version 1.0\nfile '{path}'\n").into_bytes()),
        ("SMIL", format!("<smil><body><video src=\"{url}\"/></body></smil>").into_bytes()),
    ];
    let mut grpc = DetectorClient::connect(s.grpc.clone()).await.unwrap();
    for (what, body) in payloads {
        for ct in ["video/mp4", "application/octet-stream"] {
            let (status, b, _) = post(&s, "", ct, body.clone()).await;
            assert_eq!(status, 422, "{what}: {b}");
            assert_eq!(b["code"], "undecodable_video", "{what}: {b}");
            assert!(!b["error"].as_str().unwrap().contains("/tmp"), "{what}: a server path leaked: {b}");
        }
        let form = reqwest::multipart::Form::new()
            .part("m", reqwest::multipart::Part::bytes(body.clone()).file_name("clip.mpd"));
        let r: Value = s.client.post(s.url("/v1/detect")).multipart(form).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["results"][0]["code"], "undecodable_video", "{what} (multipart): {r}");
        let err = grpc.detect(DetectRequest { image: body.into(), ..Default::default() }).await.unwrap_err();
        assert_eq!(err.metadata().get("dfserve-error-code").unwrap(), "undecodable_video", "{what} (gRPC)");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!canary.was_opened(), "a manifest made the server open the file it names");
    assert!(listener.accept().is_err(), "a manifest made the server connect to the URL it names");
}

/// A 20 s static 4K H.264 clip with a face, 8 frames per second (160 frames).
fn static_4k() -> &'static Path {
    static CLIP: OnceLock<PathBuf> = OnceLock::new();
    CLIP.get_or_init(|| {
        let out = clips().join("static4k.mp4");
        let face = common::samples().join("mesonet/df/df01254.jpg");
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=3840x2160:r=8:d=20", "-loop", "1", "-i"])
            .arg(face)
            .args(["-filter_complex", "[1:v]scale=600:600[f];[0:v][f]overlay=x=1500:y=700:shortest=1"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-t", "20"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        out
    })
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 =
        status.lines().find(|l| l.starts_with("VmRSS")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// Runs `n` requests for the 4K clip at the frame cap at once, sampling the server's resident
/// memory; returns the responses and the peak growth over the idle server.
async fn at_once(s: &Server, n: usize) -> (Vec<(u16, Value)>, u64) {
    let body = std::fs::read(static_4k()).unwrap();
    let idle = rss_mib(s.pid());
    let reqs: Vec<_> =
        (0..n).map(|_| tokio::spawn(s.client.post(s.url("/v1/detect?frames=128")).body(body.clone()).send())).collect();
    let mut peak = idle;
    while !reqs.iter().all(|r| r.is_finished()) {
        peak = peak.max(rss_mib(s.pid()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut out = Vec::new();
    for r in reqs {
        let r = r.await.unwrap().unwrap();
        out.push((r.status().as_u16(), r.json::<Value>().await.unwrap()));
    }
    (out, peak - idle)
}

/// The documented bound (SECURITY.md): decoding adds at most this much to the server's
/// resident memory per video in flight, whatever the resolution and frame count.
const GROWTH_PER_VIDEO_MIB: u64 = 80;

#[tokio::test]
async fn a_4k_clip_at_the_frame_cap_stays_within_the_memory_bound_alone_and_three_at_once() {
    let s =
        Server::start(&["--max-ffmpeg-processes", "3", "--request-timeout", "120s", "--video-decode-timeout", "100s"])
            .await;
    // One small clip first, so that every model's sessions have run on real faces and hold
    // their working memory: what is measured below is then what the videos themselves add.
    let r = s.client.post(s.url("/v1/detect")).body(clip("fake.mp4")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for n in [1, 3] {
        let (results, growth) = at_once(&s, n).await;
        for (status, body) in &results {
            assert_eq!(*status, 200, "{body}");
            let r = &body["results"][0];
            assert_eq!(r["frames_sampled"], 128, "{r}");
            assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(3840), Some(2160)));
            // Boxes come back in pixels of the 4K frame (the face is at 1500..2100, 700..1300).
            let b = &r["tracks"][0]["frames"][0]["box"];
            assert!(b[0].as_f64().unwrap() > 1300.0 && b[2].as_f64().unwrap() < 2300.0, "{b}");
        }
        eprintln!("{n} x 4K at 128 frames: server RSS grew by {growth} MiB at most");
        assert!(growth < GROWTH_PER_VIDEO_MIB * n as u64, "{n} videos grew the server by {growth} MiB");
    }
}

#[tokio::test]
async fn raw_video_bodies_are_accepted_with_video_content_types() {
    let s = Server::start(&[]).await;
    let mov = clips().join("fake.mov");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(clips().join("fake.mp4"))
        .args(["-c", "copy", "-f", "mov"])
        .arg(&mov)
        .status()
        .unwrap();
    assert!(status.success());
    for (ct, body) in [
        ("video/mp4", clip("fake.mp4")),
        ("video/webm", clip("real.webm")),
        ("video/quicktime", std::fs::read(&mov).unwrap()),
    ] {
        let (status, b, _) = post(&s, "?frames=4", ct, body).await;
        assert_eq!(status, 200, "{ct}: {b}");
        assert_eq!(b["results"][0]["kind"], "video", "{ct}");
        assert_eq!(b["results"][0]["frames_sampled"], 4, "{ct}");
    }
}

#[tokio::test]
async fn every_video_error_has_its_code_and_no_server_detail() {
    let good = clip("fake.mp4");
    let s = Server::start(&["--max-video-duration", "2s"]).await;
    let (status, b, _) = post(&s, "", "video/mp4", good[..good.len() / 3].to_vec()).await;
    assert_eq!((status, b["code"].as_str()), (422, Some("undecodable_video")), "{b}");
    let msg = b["error"].as_str().unwrap();
    assert!(!msg.contains("/tmp") && !msg.contains("dfserve-video") && !msg.to_lowercase().contains("stream #"), "{b}");
    let (status, b, _) = post(&s, "", "video/mp4", good.clone()).await;
    assert_eq!((status, b["code"].as_str()), (422, Some("video_too_long")), "{b}");
    drop(s);

    let s = Server::start(&["--max-video-pixels", "10000"]).await;
    let (status, b, _) = post(&s, "", "video/mp4", good.clone()).await;
    assert_eq!((status, b["code"].as_str()), (422, Some("video_too_large")), "{b}");
    drop(s);

    // One FFmpeg slot: a second video while the first decodes is refused at once.
    let s =
        Server::start(&["--max-ffmpeg-processes", "1", "--request-timeout", "120s", "--video-decode-timeout", "100s"])
            .await;
    let body = std::fs::read(static_4k()).unwrap();
    let first = tokio::spawn(s.client.post(s.url("/v1/detect?frames=128")).body(body.clone()).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = std::time::Instant::now();
    let (status, b, retry) = post(&s, "", "video/mp4", good.clone()).await;
    assert_eq!((status, b["code"].as_str()), (429, Some("busy")), "{b}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    // The slot is free again.
    let (status, _, _) = post(&s, "?frames=2", "video/mp4", good.clone()).await;
    assert_eq!(status, 200);
    drop(s);

    // Decoding that runs out of time is the server's trouble, not the file's: 503, retry.
    let s = Server::start(&["--video-decode-timeout", "1ms"]).await;
    let (status, b, retry) = post(&s, "", "video/mp4", good).await;
    assert_eq!((status, b["code"].as_str()), (503, Some("unavailable")), "{b}");
    assert!(retry.is_some());
    let (ok, _, _) = post(&s, "?mode=whole", "image/jpeg", sample("mesonet/df/df00204.jpg")).await;
    assert_eq!(ok, 200);
}
