//! Video input: probe and decode with FFmpeg in a separate process and sample frames; link faces
//! into tracks and aggregate them (`track`). Scoring the frames is the detect layer's job
//! (`crate::detect::video`): this module knows nothing of models.
//!
//! FFmpeg runs as a child process (not linked in): a hostile file that crashes or hangs the
//! decoder takes down only that process. Each run has a wall-clock limit, an address-space
//! limit and a thread cap, and is killed when the request goes away. The upload is written to
//! a private temporary file (MP4 needs a seekable input) that is deleted when the request ends.

pub mod track;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::RgbImage;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::error::CoreError;
pub use track::Aggregation;

/// Limits and defaults for video requests (`--max-video-*`, `--video-*`).
#[derive(Debug, Clone)]
pub struct VideoSettings {
    pub default_frames: usize,
    pub max_frames: usize,
    pub max_duration: Duration,
    pub max_pixels: u64,
    pub decode_timeout: Duration,
    /// Address-space limit for each FFmpeg process, in bytes.
    pub ffmpeg_memory: u64,
}

/// Which frames to look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// This many frames spread evenly over the clip.
    Count(usize),
    /// This many frames per second of video.
    Rate(f64),
}

/// True when the bytes look like a container dfserve decodes as video (MP4/MOV, WebM/MKV, AVI).
pub fn is_video(b: &[u8]) -> bool {
    let mp4 = b.len() >= 12 && &b[4..8] == b"ftyp";
    let mov = b.len() >= 8 && matches!(&b[4..8], b"moov" | b"mdat" | b"wide" | b"free");
    let ebml = b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]);
    let avi = b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"AVI ";
    mp4 || mov || ebml || avi
}

#[derive(Debug, Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Debug, Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// What ffprobe says about the video stream, with the frame size as FFmpeg outputs it (upright).
#[derive(Debug, Clone)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration: f64,
    /// Frames in the stream (counted, or duration x fps).
    pub frames: u64,
    pub codec: String,
}

fn rate(s: &Option<String>) -> Option<f64> {
    let s = s.as_deref()?;
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

fn unprocessable(msg: impl Into<String>) -> CoreError {
    CoreError::UndecodableImage(msg.into())
}

/// Runs an FFmpeg tool with the time, memory and thread limits; returns its stdout.
async fn run_limited(
    program: &str,
    args: &[&str],
    timeout: Duration,
    memory: u64,
    what: &str,
) -> Result<(Vec<u8>, String), CoreError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: memory as libc::rlim_t, rlim_max: memory as libc::rlim_t };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            let core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        CoreError::Unavailable(format!(
            "cannot run {program} ({e}); install FFmpeg (scripts/setup.sh does) to score videos"
        ))
    })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).map_err(|e| unprocessable(format!("reading {what} output: {e}")))?;
        let status = child.wait().await.map_err(|e| unprocessable(format!("{what}: {e}")))?;
        Ok::<_, CoreError>((status, out, String::from_utf8_lossy(&err).into_owned()))
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(unprocessable(format!(
            "{what} did not finish within {timeout:?} (--video-decode-timeout); the file is too long or malformed"
        ))),
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, out, err))) if status.success() => Ok((out, err)),
        Ok(Ok((_, _, err))) => {
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
            Err(unprocessable(format!("cannot decode video: {last}")))
        }
    }
}

async fn probe(path: &Path, s: &VideoSettings) -> Result<Probe, CoreError> {
    let p = path.to_string_lossy();
    let (out, _) = run_limited(
        "ffprobe",
        &["-v", "error", "-print_format", "json", "-show_format", "-show_streams", &p],
        s.decode_timeout,
        s.ffmpeg_memory,
        "ffprobe",
    )
    .await?;
    let parsed: ProbeOutput =
        serde_json::from_slice(&out).map_err(|e| unprocessable(format!("cannot read the video's metadata: {e}")))?;
    let v = parsed
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.width.is_some())
        .ok_or_else(|| unprocessable("the file has no video stream"))?;
    let (mut width, mut height) = (v.width.unwrap_or(0), v.height.unwrap_or(0));
    // FFmpeg rotates frames upright on output; report and allocate for the rotated size.
    let rotation = v
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(|r| r.as_f64()))
        .or_else(|| v.tags.get("rotate").and_then(|r| r.as_str()).and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    if (rotation.abs() as i64) % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = rate(&v.avg_frame_rate).or_else(|| rate(&v.r_frame_rate)).unwrap_or(25.0);
    let duration = v
        .duration
        .as_deref()
        .or(parsed.format.as_ref().and_then(|f| f.duration.as_deref()))
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(0.0);
    let frames = v
        .nb_frames
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| (duration * fps).round().max(1.0) as u64);
    if width == 0 || height == 0 {
        return Err(unprocessable("the video stream has no size"));
    }
    Ok(Probe { width, height, fps, duration, frames, codec: v.codec_name.clone().unwrap_or_default() })
}

/// Frame numbers to decode: `count` spread evenly (centre of each equal slice), or one every
/// `1/rate` seconds; never more than `max`.
pub fn sample_indices(total_frames: u64, fps: f64, sampling: Sampling, max: usize) -> Vec<u64> {
    let total = total_frames.max(1);
    let want = match sampling {
        Sampling::Count(n) => n,
        Sampling::Rate(r) => ((total as f64 / fps.max(1e-6)) * r).floor().max(1.0) as usize,
    }
    .clamp(1, max.max(1));
    let n = want.min(total as usize);
    let mut out: Vec<u64> =
        (0..n).map(|i| (((i as f64 + 0.5) * total as f64 / n as f64).floor() as u64).min(total - 1)).collect();
    out.dedup();
    out
}

async fn decode_frames(
    path: &Path,
    p: &Probe,
    indices: &[u64],
    s: &VideoSettings,
) -> Result<Vec<(u64, RgbImage)>, CoreError> {
    let select = indices.iter().map(|i| format!("eq(n\\,{i})")).collect::<Vec<_>>().join("+");
    let filter = format!("select='{select}'");
    let path = path.to_string_lossy();
    let (out, _) = run_limited(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-nostdin",
            "-threads",
            "2",
            "-i",
            &path,
            "-map",
            "0:v:0",
            "-vf",
            &filter,
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        s.decode_timeout,
        s.ffmpeg_memory,
        "ffmpeg",
    )
    .await?;
    let frame_len = p.width as usize * p.height as usize * 3;
    if out.len() < frame_len {
        return Err(unprocessable("no frame could be decoded from the video"));
    }
    Ok(out
        .chunks_exact(frame_len)
        .zip(indices)
        .map(|(px, idx)| (*idx, RgbImage::from_raw(p.width, p.height, px.to_vec()).expect("exact frame size")))
        .collect())
}

/// A probed video and the frames sampled from it, in frame order.
pub struct SampledVideo {
    pub probe: Probe,
    /// (frame number, pixels).
    pub frames: Vec<(u64, RgbImage)>,
    pub probe_time: Duration,
    pub decode_time: Duration,
}

/// Probes an uploaded video, checks it against the limits and decodes the frames `sampling`
/// picks (the settings' default count when `None`).
pub async fn sample_frames(
    bytes: Bytes,
    sampling: Option<Sampling>,
    s: &VideoSettings,
) -> Result<SampledVideo, CoreError> {
    let started = Instant::now();
    // Private temporary file, removed when `file` drops (end of this request).
    let file = tokio::task::spawn_blocking(move || {
        let mut f = tempfile::Builder::new().prefix("dfserve-video-").tempfile()?;
        std::io::Write::write_all(&mut f, &bytes)?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| CoreError::Inference(format!("writing the upload: {e}")))?
    .map_err(|e| CoreError::Inference(format!("writing the upload to a temporary file: {e}")))?;

    let p = probe(file.path(), s).await?;
    let probe_time = started.elapsed();
    if p.duration > s.max_duration.as_secs_f64() {
        return Err(unprocessable(format!(
            "video lasts {:.1} s, over the limit of {:.0} s (--max-video-duration)",
            p.duration,
            s.max_duration.as_secs_f64()
        )));
    }
    let pixels = p.width as u64 * p.height as u64;
    if pixels > s.max_pixels {
        return Err(unprocessable(format!(
            "video is {}x{} = {pixels} pixels per frame, over the limit of {} (--max-video-pixels)",
            p.width, p.height, s.max_pixels
        )));
    }
    let sampling = sampling.unwrap_or(Sampling::Count(s.default_frames));
    let indices = sample_indices(p.frames, p.fps, sampling, s.max_frames);
    let t0 = Instant::now();
    let frames = decode_frames(file.path(), &p, &indices, s).await?;
    Ok(SampledVideo { probe: p, frames, probe_time, decode_time: t0.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_containers() {
        assert!(is_video(b"\x00\x00\x00\x20ftypisom\x00\x00"));
        assert!(is_video(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]));
        assert!(is_video(b"RIFF\x00\x00\x00\x00AVI LIST"));
        assert!(!is_video(b"RIFF\x00\x00\x00\x00WEBPVP8 "));
        assert!(!is_video(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"));
        assert!(!is_video(b""));
    }

    #[test]
    fn samples_spread_evenly_and_respect_caps() {
        assert_eq!(sample_indices(100, 25.0, Sampling::Count(4), 32), vec![12, 37, 62, 87]);
        assert_eq!(sample_indices(3, 25.0, Sampling::Count(32), 32), vec![0, 1, 2]);
        assert_eq!(sample_indices(1000, 25.0, Sampling::Count(64), 10).len(), 10);
        // 10 s at 25 fps, 2 frames per second -> 20 frames.
        assert_eq!(sample_indices(250, 25.0, Sampling::Rate(2.0), 128).len(), 20);
        assert_eq!(sample_indices(0, 25.0, Sampling::Count(5), 32), vec![0]);
    }

    #[test]
    fn parses_rates() {
        assert_eq!(rate(&Some("30000/1001".into())).map(|r| (r * 1000.0).round()), Some(29970.0));
        assert_eq!(rate(&Some("0/0".into())), None);
        assert_eq!(rate(&None), None);
    }
}
