//! Video input: untrusted uploads decoded by a confined FFmpeg, sampled frames streamed out one
//! at a time; face tracks and their aggregation (`track`). Scoring the frames is the detect
//! layer's job (`crate::detect::video`): this module knows nothing of models.
//!
//! An upload is admitted against a server-wide budget of FFmpeg runs (429 `busy` when full,
//! before any work), its container is sniffed and forced ([`container`]), it is written to a
//! private temporary file (MP4 needs a seekable input), probed, checked against the limits,
//! and decoded with the cheapest strategy for its samples ([`plan`]). FFmpeg scales frames
//! down to `--video-max-side` itself and writes them to a pipe that is read one frame at a time,
//! so memory per video does not grow with resolution or frame count.

pub mod container;
mod ffmpeg;
mod plan;
mod probe;
pub mod track;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::RgbImage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::CoreError;
pub use container::{sniff, Container, Sniffed};
use ffmpeg::{Confinement, FrameRun, RunError};
use plan::Target;
pub use plan::{frame_times, Sampling, Strategy};
pub use probe::Probe;
pub use track::Aggregation;

/// Limits and defaults for video requests (`--max-video-*`, `--video-*`).
#[derive(Debug, Clone)]
pub struct VideoSettings {
    pub default_frames: usize,
    pub max_frames: usize,
    pub max_duration: Duration,
    pub max_pixels: u64,
    /// Wall-clock limit of all FFmpeg work for one video.
    pub decode_timeout: Duration,
    /// Address-space limit for each FFmpeg process, in bytes.
    pub ffmpeg_memory: u64,
    /// Frames are scaled down inside FFmpeg so that their longer side is at most this.
    pub max_side: u32,
    /// FFmpeg runs (videos being probed or decoded) at once, server-wide.
    pub max_concurrent: usize,
    /// Decoded frames of one video waiting for or being scored.
    pub frames_in_flight: usize,
}

/// Largest ffprobe output accepted (JSON metadata, or one line per packet for keyframes).
const MAX_PROBE_OUTPUT: usize = 16 << 20;

/// The FFmpeg side of video requests: settings, the server-wide budget and how children run.
pub struct VideoDecoder {
    settings: VideoSettings,
    budget: Arc<Semaphore>,
    /// Wait for a budget slot instead of refusing (`dfserve score`, which has no client to
    /// tell to retry).
    wait_for_budget: bool,
    confinement: Confinement,
}

/// One sampled frame.
pub struct Frame {
    /// Frame number (presentation time x frame rate, from the start of the stream).
    pub index: u64,
    /// Seconds from the start of the stream.
    pub time_s: f64,
    /// Scaled to at most `--video-max-side`; see [`OpenVideo::scale`].
    pub image: RgbImage,
    /// Sampled for scoring (see `Sampling`).
    pub score: bool,
    /// Sampled for the video's vPDQ hash.
    pub hash: bool,
}

impl VideoDecoder {
    /// Checks once whether FFmpeg children can get their own network namespace.
    pub async fn start(settings: VideoSettings) -> VideoDecoder {
        let isolate_network = ffmpeg::network_isolation_works("ffmpeg").await;
        if isolate_network {
            tracing::info!("FFmpeg runs in its own empty network namespace");
        } else {
            tracing::warn!(
                "FFmpeg cannot be given its own network namespace here (needs root or CAP_SYS_ADMIN); it still reads only the upload (forced demuxer, protocol whitelist `file`), see SECURITY.md"
            );
        }
        VideoDecoder::new(settings, isolate_network)
    }

    pub fn new(settings: VideoSettings, isolate_network: bool) -> VideoDecoder {
        VideoDecoder {
            budget: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            wait_for_budget: false,
            confinement: Confinement { memory: settings.ffmpeg_memory, isolate_network },
            settings,
        }
    }

    /// Makes uploads wait for a budget slot rather than be refused with `busy`.
    pub fn waiting_for_budget(mut self) -> VideoDecoder {
        self.wait_for_budget = true;
        self
    }

    pub fn settings(&self) -> &VideoSettings {
        &self.settings
    }

    /// Admits, stores, probes and checks one upload, and starts decoding its samples: those
    /// `sampling` asks for (the server's default count when `None`), and with `hash_every`
    /// the frames vPDQ hashes, one every that many seconds. FFmpeg work ends by
    /// `min(deadline, now + --video-decode-timeout)`.
    pub async fn open(
        &self,
        bytes: Bytes,
        container: Container,
        sampling: Option<Sampling>,
        hash_every: Option<f64>,
        deadline: Instant,
    ) -> Result<OpenVideo, CoreError> {
        let permit = if self.wait_for_budget {
            self.budget.clone().acquire_owned().await.expect("the budget is never closed")
        } else {
            self.budget.clone().try_acquire_owned().map_err(|_| {
                CoreError::Busy(format!(
                    "{} videos are being decoded already (--max-ffmpeg-processes); retry shortly",
                    self.settings.max_concurrent
                ))
            })?
        };
        let started = Instant::now();
        let s = &self.settings;
        let ffmpeg_deadline = deadline.min(started + s.decode_timeout);
        // Private temporary file (mode 0600), removed when the `OpenVideo` drops.
        let file = tokio::task::spawn_blocking(move || {
            let mut f = tempfile::Builder::new().prefix("dfserve-video-").tempfile()?;
            std::io::Write::write_all(&mut f, &bytes)?;
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(|e| CoreError::Inference(format!("writing the upload: {e}")))?
        .map_err(|e| CoreError::Unavailable(format!("cannot store the upload for decoding: {e}")))?;
        let input = format!("file:{}", file.path().display());

        let json = self
            .ffprobe(container, &input, &["-print_format", "json", "-show_format", "-show_streams"], ffmpeg_deadline)
            .await?;
        let p = probe::parse(&json).map_err(|m| CoreError::UndecodableVideo(m.into()))?;
        if p.duration > s.max_duration.as_secs_f64() {
            return Err(CoreError::VideoTooLong(format!(
                "video lasts {:.1} s, over the limit of {:.0} s (--max-video-duration)",
                p.duration,
                s.max_duration.as_secs_f64()
            )));
        }
        let pixels = p.width as u64 * p.height as u64;
        if pixels > s.max_pixels {
            return Err(CoreError::VideoTooLarge(format!(
                "video is {}x{} = {pixels} pixels per frame, over the limit of {} (--max-video-pixels)",
                p.width, p.height, s.max_pixels
            )));
        }
        let scored = plan::targets(&p, sampling.unwrap_or(Sampling::Count(s.default_frames)), s.max_frames);
        let duration = if p.duration > 0.0 { p.duration } else { p.frames as f64 / p.fps.max(1e-3) };
        let hashed = hash_every.map(|every| plan::frame_times(p.fps, duration, every));
        let plan = plan::merge(&p, &scored, hashed.as_deref().unwrap_or_default());
        if plan.is_empty() {
            return Err(CoreError::UndecodableVideo("the video has no frames to sample".into()));
        }
        let targets: Vec<f64> = plan.iter().map(|t| t.t).collect();
        let keyframes = if plan::worth_seeking(&p, &targets) {
            let csv = self
                .ffprobe(
                    container,
                    &input,
                    &["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"],
                    ffmpeg_deadline,
                )
                .await?;
            Some(probe::parse_keyframes(&csv))
        } else {
            None
        };
        let mut strategy = plan::choose(&p, &targets, keyframes.as_deref());
        if hashed.is_some() {
            // vPDQ hashes exact frames: none may move to the next decoded one.
            if let Strategy::Sequential { skip_nonref } = &mut strategy {
                *skip_nonref = false;
            }
        }
        let (w, h) = scaled_size(p.width, p.height, s.max_side);
        let runs = decode_runs(container, &input, &targets, strategy, (w, h));
        Ok(OpenVideo {
            scale: (p.width as f32 / w as f32, p.height as f32 / h as f32),
            probe: p,
            strategy,
            probe_time: started.elapsed(),
            runs,
            current: None,
            frame_size: (w, h),
            targets: plan.into(),
            confinement: self.confinement.clone(),
            deadline: ffmpeg_deadline,
            decode_started: Instant::now(),
            _file: file,
            _permit: permit,
        })
    }

    async fn ffprobe(
        &self,
        container: Container,
        input: &str,
        what: &[&str],
        deadline: Instant,
    ) -> Result<Vec<u8>, CoreError> {
        let mut args = strings(&["-v", "error", "-select_streams", "v:0"]);
        args.extend(input_args(container, input));
        args.extend(strings(what));
        ffmpeg::run("ffprobe", &args, &self.confinement, deadline, MAX_PROBE_OUTPUT)
            .await
            .map_err(|e| run_error(e, self.settings.decode_timeout))
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The input side of every FFmpeg and ffprobe run: the demuxer forced to the sniffed
/// container, only the `file` protocol, the path given as a `file:` URL (so no name in it can
/// be read as another protocol), external references off.
fn input_args(container: Container, input: &str) -> Vec<String> {
    let mut args = strings(&["-protocol_whitelist", "file", "-f", container.demuxer()]);
    if container == Container::Mp4 {
        args.extend(strings(&["-enable_drefs", "0"]));
    }
    args.extend(strings(&["-i", input]));
    args
}

/// `(w, h)` scaled so that the longer side is at most `max_side`, rounded to even numbers.
fn scaled_size(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let longer = w.max(h);
    if longer <= max_side.max(2) {
        return (w, h);
    }
    let f = max_side as f64 / longer as f64;
    let even = |v: u32| (((v as f64 * f) / 2.0).round() as u32 * 2).max(2);
    (even(w), even(h))
}

/// The FFmpeg argument lists that produce the samples, in order: one run for sequential
/// decoding, one per sample when seeking.
fn decode_runs(
    container: Container,
    input: &str,
    targets: &[f64],
    strategy: Strategy,
    (w, h): (u32, u32),
) -> VecDeque<Vec<String>> {
    let run = |seek: Option<f64>, select: Option<String>, frames: usize, skip_nonref: bool| {
        let mut args = strings(&["-nostdin", "-hide_banner", "-nostats", "-v", "info", "-threads", "2"]);
        args.extend(strings(&["-filter_threads", "1", "-copyts"]));
        if let Some(t) = seek {
            args.extend(["-ss".to_string(), format!("{t:.6}")]);
        }
        if skip_nonref {
            args.extend(strings(&["-skip_frame", "noref"]));
        }
        args.extend(input_args(container, input));
        let mut filters = select.map(|e| vec![format!("select='{e}'")]).unwrap_or_default();
        filters.push("showinfo".into());
        filters.push(format!("scale={w}:{h}:flags=bilinear"));
        args.extend(strings(&["-map", "0:v:0", "-an", "-sn", "-dn", "-vf"]));
        args.push(filters.join(","));
        args.extend(strings(&["-fps_mode", "passthrough", "-frames:v"]));
        args.push(frames.to_string());
        args.extend(strings(&["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]));
        args
    };
    match strategy {
        Strategy::Sequential { skip_nonref } => {
            VecDeque::from([run(None, Some(plan::select_expr(targets)), targets.len(), skip_nonref)])
        }
        Strategy::Seek => targets.iter().map(|t| run(Some(*t), None, 1, false)).collect(),
    }
}

/// A probed upload whose samples are being decoded. Dropping it kills FFmpeg, deletes the
/// temporary file and returns the budget slot.
pub struct OpenVideo {
    pub probe: Probe,
    /// Original pixels per decoded pixel, horizontally and vertically.
    pub scale: (f32, f32),
    pub strategy: Strategy,
    /// Storing and probing the upload.
    pub probe_time: Duration,
    /// When decoding started (after the probe).
    pub decode_started: Instant,
    runs: VecDeque<Vec<String>>,
    /// Targets not yet reached, to tell what each frame is for.
    targets: VecDeque<Target>,
    current: Option<FrameRun>,
    frame_size: (u32, u32),
    confinement: Confinement,
    deadline: Instant,
    _file: tempfile::NamedTempFile,
    _permit: OwnedSemaphorePermit,
}

impl OpenVideo {
    /// The next sample, or `None` when every run has finished.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, CoreError> {
        let (w, h) = self.frame_size;
        let timeout = self.deadline.saturating_duration_since(self.decode_started);
        loop {
            if self.current.is_none() {
                let Some(args) = self.runs.pop_front() else { return Ok(None) };
                let run =
                    FrameRun::spawn("ffmpeg", &args, &self.confinement, w as usize * h as usize * 3, self.deadline)
                        .map_err(|e| run_error(e, timeout))?;
                self.current = Some(run);
            }
            let run = self.current.as_mut().expect("set above");
            match run.next().await.map_err(|e| run_error(e, timeout))? {
                Some((pixels, pts)) => {
                    let p = &self.probe;
                    let time_s = if pts.is_finite() { (pts - p.start).max(0.0) } else { 0.0 };
                    let image = RgbImage::from_raw(w, h, pixels).expect("buffer is exactly one frame");
                    // The frame serves every target at or before it.
                    let (mut score, mut hash) = (false, false);
                    let at = if pts.is_finite() { pts } else { self.targets.front().map_or(0.0, |t| t.t) };
                    while let Some(t) = self.targets.front().filter(|t| t.t <= at + 1e-6) {
                        (score, hash) = (score | t.score, hash | t.hash);
                        self.targets.pop_front();
                    }
                    if !(score || hash) {
                        score = true;
                    }
                    let index = (time_s * p.fps).round() as u64;
                    return Ok(Some(Frame { index, time_s, image, score, hash }));
                }
                None => self.current = None,
            }
        }
    }
}

/// The client-facing error for a failed FFmpeg run; the details go to the log only.
fn run_error(e: RunError, timeout: Duration) -> CoreError {
    match e {
        RunError::Spawn(m) => {
            tracing::error!(error = %m, "cannot start FFmpeg");
            CoreError::Unavailable("the video decoder cannot be started; install FFmpeg (scripts/setup.sh does)".into())
        }
        RunError::TimedOut => CoreError::Unavailable(format!(
            "decoding the video did not finish within {:.0} s (--video-decode-timeout); the server may be busy, retry later",
            timeout.as_secs_f64()
        )),
        RunError::Failed { signal: Some(libc::SIGKILL), log } => {
            tracing::warn!(log = %log, "FFmpeg was killed");
            CoreError::Unavailable("the video decoder was stopped; retry later".into())
        }
        RunError::Failed { signal, log } => {
            tracing::info!(signal = ?signal, log = %log, "FFmpeg could not decode an upload");
            CoreError::UndecodableVideo(
                "the video cannot be decoded (corrupt, truncated, or a codec FFmpeg does not support)".into(),
            )
        }
        RunError::TooMuchOutput => CoreError::UndecodableVideo("the video's metadata is too large".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_scale_to_the_longer_side_and_stay_even() {
        assert_eq!(scaled_size(640, 360, 1280), (640, 360));
        assert_eq!(scaled_size(3840, 2160, 1280), (1280, 720));
        assert_eq!(scaled_size(1080, 1920, 1280), (720, 1280));
        assert_eq!(scaled_size(1001, 3, 100), (100, 2));
    }

    #[test]
    fn every_run_forces_the_demuxer_and_the_file_protocol() {
        let runs = decode_runs(Container::Mp4, "file:/tmp/x", &[0.5, 1.5], Strategy::Seek, (64, 36));
        assert_eq!(runs.len(), 2);
        for args in &runs {
            let joined = args.join(" ");
            assert!(joined.contains("-protocol_whitelist file -f mov -enable_drefs 0 -i file:/tmp/x"), "{joined}");
            assert!(joined.contains("-frames:v 1"), "{joined}");
            assert!(joined.ends_with("-f rawvideo -pix_fmt rgb24 pipe:1"), "{joined}");
        }
        let runs = decode_runs(
            Container::Matroska,
            "file:/tmp/y",
            &[0.5, 1.5],
            Strategy::Sequential { skip_nonref: true },
            (64, 36),
        );
        let joined = runs[0].join(" ");
        assert!(joined.contains("-skip_frame noref -protocol_whitelist file -f matroska -i file:/tmp/y"), "{joined}");
        assert!(joined.contains("showinfo,scale=64:36"), "{joined}");
        assert!(joined.contains("-frames:v 2"), "{joined}");
    }
}
