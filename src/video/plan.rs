//! Which frames to sample and how to get them out of FFmpeg with the least decoding.
//!
//! A sample is "the first frame shown at or after its target time"; targets are the centres
//! of equal slices of the clip (less half a frame, so the frame nearest the centre qualifies).
//! Three ways to reach them, chosen per video from its frame rate and keyframe spacing:
//! - **sequential**: one FFmpeg run decodes from the start and stops after the last sample;
//! - **sequential, reference frames only**: the same, but FFmpeg skips decoding frames no
//!   other frame refers to (most B-frames), when samples are far enough apart (8 frames or
//!   more) that a skipped frame only moves a sample to the next decoded one;
//! - **seek**: one short FFmpeg run per sample that seeks to the keyframe before it and decodes
//!   only from there, when the keyframe index shows that this costs far less, counting what
//!   each extra run costs (long, high-resolution clips with few samples).

use super::probe::Probe;

/// Which frames to look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// This many frames spread evenly over the clip.
    Count(usize),
    /// This many frames per second of video.
    Rate(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Sequential { skip_nonref: bool },
    Seek,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Sequential { skip_nonref: false } => "sequential",
            Strategy::Sequential { skip_nonref: true } => "sequential_ref_frames",
            Strategy::Seek => "seek",
        }
    }
}

/// Samples at least this many frames apart may skip non-reference frames: encoders put at most
/// a few of those in a row, so a skipped frame cannot push a sample past the next target.
const SKIP_NONREF_SPACING: f64 = 8.0;

/// What one extra FFmpeg run costs (start, open the file, parse its index, seek), in
/// milliseconds. Measured on 2 cores: 300-400 ms per seek run on a 10-minute 720p MP4.
const RUN_COST_MS: f64 = 350.0;

/// What decoding one frame costs per megapixel, in milliseconds (measured: 0.5-0.7 ms for a
/// 720p H.264 frame, in order, on 2 cores).
const FRAME_COST_MS_PER_MPIXEL: f64 = 0.6;

/// Seek only when its estimated cost is under this share of sequential decoding's.
const SEEK_GAIN: f64 = 0.6;

fn frame_cost_ms(p: &Probe) -> f64 {
    FRAME_COST_MS_PER_MPIXEL * p.width as f64 * p.height as f64 / 1e6
}

/// Target times (seconds, the stream's clock), ascending; none for `Count(0)` (a video that is
/// only hashed).
pub fn targets(p: &Probe, sampling: Sampling, max: usize) -> Vec<f64> {
    if sampling == Sampling::Count(0) {
        return Vec::new();
    }
    let frames = p.frames.max(1);
    let duration = if p.duration > 0.0 { p.duration } else { frames as f64 / p.fps };
    let want = match sampling {
        Sampling::Count(n) => n,
        Sampling::Rate(r) => (duration * r).floor().max(1.0) as usize,
    }
    .clamp(1, max.max(1))
    .min(frames as usize);
    let half_frame = 0.5 / p.fps;
    (0..want).map(|i| (p.start + (i as f64 + 0.5) * duration / want as f64 - half_frame).max(p.start)).collect()
}

/// One sample time (the stream's clock) and what the frame there is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub t: f64,
    /// Scored by the classifier.
    pub score: bool,
    /// Hashed for vPDQ.
    pub hash: bool,
}

/// The scoring targets and the vPDQ frame times (`hash`, from the stream's start) as one
/// ascending list. Targets under half a frame apart become one target doing both jobs, at the
/// earlier time; others stay apart, and when two still land on one frame, that frame serves
/// both. vPDQ frames are exact frame times, aimed a quarter frame early so that rounding in the
/// timestamps cannot move them to the next frame.
pub fn merge(p: &Probe, score: &[f64], hash: &[f64]) -> Vec<Target> {
    let frame = 1.0 / p.fps.max(1e-3);
    let mut all: Vec<Target> = score
        .iter()
        .map(|&t| Target { t, score: true, hash: false })
        .chain(hash.iter().map(|&t| Target { t: (p.start + t - 0.25 * frame).max(p.start), score: false, hash: true }))
        .collect();
    all.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut out: Vec<Target> = Vec::with_capacity(all.len());
    for t in all {
        match out.last_mut() {
            Some(last) if t.t - last.t < 0.5 * frame => {
                last.score |= t.score;
                last.hash |= t.hash;
            }
            _ => out.push(t),
        }
    }
    out
}

/// Whether the keyframe index is worth reading (it costs a pass over the packets): only when
/// seeking could win even with a keyframe right before every sample.
pub fn worth_seeking(p: &Probe, targets: &[f64]) -> bool {
    p.frames as f64 * frame_cost_ms(p) * SEEK_GAIN > targets.len() as f64 * RUN_COST_MS
}

/// The strategy that decodes the fewest frames. `keyframes` (sorted times) is `None` when it
/// was not read.
pub fn choose(p: &Probe, targets: &[f64], keyframes: Option<&[f64]>) -> Strategy {
    let (fps, frame_ms) = (p.fps.max(1e-3), frame_cost_ms(p));
    let last = targets.last().copied().unwrap_or(p.start);
    let sequential = ((last - p.start) * fps + 1.0) * frame_ms;
    if let Some(kf) = keyframes.filter(|k| !k.is_empty()) {
        let seek: f64 = targets
            .iter()
            .map(|t| {
                let before = kf.iter().rev().find(|k| **k <= *t + 1e-6).copied().unwrap_or(p.start);
                ((t - before) * fps + 1.0) * frame_ms + RUN_COST_MS
            })
            .sum();
        if seek < SEEK_GAIN * sequential {
            return Strategy::Seek;
        }
    }
    let spacing =
        if targets.len() > 1 { (last - targets[0]) * fps / (targets.len() - 1) as f64 } else { f64::INFINITY };
    Strategy::Sequential { skip_nonref: spacing >= SKIP_NONREF_SPACING }
}

/// FFmpeg's `select` expression taking, for each target, the first frame at or after it. The
/// terms are summed as a balanced tree: FFmpeg's expression parser refuses a flat sum of more
/// than about 64 such terms (its recursion guard), and the tree keeps the depth at log2(n).
pub fn select_expr(targets: &[f64]) -> String {
    match targets {
        [] => "0".into(),
        [t] => format!("gte(t\\,{t:.6})*(isnan(prev_selected_t)+lt(prev_selected_t\\,{t:.6}))"),
        _ => {
            let (a, b) = targets.split_at(targets.len() / 2);
            format!("({})+({})", select_expr(a), select_expr(b))
        }
    }
}

/// The frame times vPDQ's reference hashes (`hashing::vpdq`), for a stream of `fps` frames a second lasting
/// `duration` seconds: every `trunc(fps * every_s)`-th frame (at least every frame).
pub fn frame_times(fps: f64, duration: f64, every_s: f64) -> Vec<f64> {
    if !(fps > 0.0 && fps.is_finite() && duration > 0.0) {
        return Vec::new();
    }
    let step = ((every_s * fps) as u64).max(1);
    let frames = (duration * fps).round().max(1.0) as u64;
    (0..frames).step_by(step as usize).map(|n| n as f64 / fps).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(frames: u64, fps: f64) -> Probe {
        Probe { width: 1280, height: 720, fps, duration: frames as f64 / fps, start: 0.0, frames, codec: "h264".into() }
    }

    #[test]
    fn targets_are_slice_centres_and_respect_caps() {
        let t = targets(&clip(100, 25.0), Sampling::Count(4), 32);
        let frames: Vec<f64> = t.iter().map(|t| (t * 25.0).ceil()).collect();
        assert_eq!(frames, vec![12.0, 37.0, 62.0, 87.0]);
        assert_eq!(targets(&clip(3, 25.0), Sampling::Count(32), 32).len(), 3);
        assert_eq!(targets(&clip(1000, 25.0), Sampling::Count(64), 10).len(), 10);
        // 10 s, 2 frames per second -> 20 frames.
        assert_eq!(targets(&clip(250, 25.0), Sampling::Rate(2.0), 128).len(), 20);
        assert!(targets(&clip(250, 25.0), Sampling::Rate(2.0), 128).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn strategy_follows_the_cost_of_decoding() {
        // 10 s at 30 fps, one keyframe every 250 frames: decode in order, skipping
        // non-reference frames (samples ~9 frames apart).
        let short = clip(300, 30.0);
        let t = targets(&short, Sampling::Count(32), 128);
        assert!(!worth_seeking(&short, &t));
        assert_eq!(choose(&short, &t, None), Strategy::Sequential { skip_nonref: true });
        // Dense samples keep every frame.
        let t = targets(&short, Sampling::Count(128), 128);
        assert_eq!(choose(&short, &t, None), Strategy::Sequential { skip_nonref: false });
        // 10 minutes of 720p: 32 seek runs cost more than decoding in order.
        let long = clip(18_000, 30.0);
        let t = targets(&long, Sampling::Count(32), 128);
        assert!(!worth_seeking(&long, &t));
        // 10 minutes of 1080p with a keyframe every 2 s: seek.
        let long = Probe { width: 1920, height: 1080, ..long };
        assert!(worth_seeking(&long, &t));
        let kf: Vec<f64> = (0..300).map(|i| i as f64 * 2.0).collect();
        assert_eq!(choose(&long, &t, Some(&kf)), Strategy::Seek);
        // ... but not with one keyframe at the start.
        assert_eq!(choose(&long, &t, Some(&[0.0])), Strategy::Sequential { skip_nonref: true });
    }

    #[test]
    fn scoring_and_hashing_targets_merge_when_a_frame_apart() {
        let p = clip(90, 30.0);
        let m = merge(&p, &[0.5, 1.49, 2.9], &[0.0, 1.0, 2.0]);
        let brief: Vec<(bool, bool)> = m.iter().map(|t| (t.score, t.hash)).collect();
        assert_eq!(
            brief,
            vec![(false, true), (true, false), (false, true), (true, false), (false, true), (true, false)]
        );
        assert!((m[2].t - (1.0 - 0.25 / 30.0)).abs() < 1e-9);
        // 0.99 is within half a frame of the hash frame at 1.0: one target for both.
        let m = merge(&p, &[0.99], &[1.0]);
        assert_eq!(m.len(), 1);
        assert!(m[0].score && m[0].hash);
    }

    #[test]
    fn select_expression_names_every_target() {
        let e = select_expr(&[0.5, 1.25]);
        assert_eq!(
            e,
            "(gte(t\\,0.500000)*(isnan(prev_selected_t)+lt(prev_selected_t\\,0.500000)))+(gte(t\\,1.250000)*(isnan(prev_selected_t)+lt(prev_selected_t\\,1.250000)))"
        );
        // 128 targets nest 7 levels deep, not 128.
        let targets: Vec<f64> = (0..128).map(|i| i as f64).collect();
        let e = select_expr(&targets);
        let depth = e.chars().scan(0i32, |d, c| {
            *d += (c == '(') as i32 - (c == ')') as i32;
            Some(*d)
        });
        assert!(depth.max().unwrap() <= 7 + 3, "{e}");
    }

    #[test]
    fn frame_times_follow_the_reference_frame_numbers() {
        // 30 fps: frames 0, 30, 60 of a 2.5 s clip.
        assert_eq!(frame_times(30.0, 2.5, 1.0), vec![0.0, 1.0, 2.0]);
        // 29.97 fps: every 29th frame, as the reference truncates.
        let t = frame_times(29.97, 2.0, 1.0);
        assert_eq!(t.len(), 3);
        assert!((t[1] - 29.0 / 29.97).abs() < 1e-9);
        // Under 1 fps: every frame.
        assert_eq!(frame_times(0.5, 4.0, 1.0), vec![0.0, 2.0]);
        assert!(frame_times(0.0, 4.0, 1.0).is_empty());
    }
}
