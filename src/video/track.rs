//! Face tracks across sampled frames, and the strategies that turn a track's per-frame scores
//! into one score.

use std::str::FromStr;

use serde::Serialize;

use crate::pipeline::detect::FaceBox;

/// How per-frame scores of a track become the track's score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The most manipulated frame decides (sensitive; one bad frame flags the video).
    Max,
    /// The average over frames.
    Mean,
    /// The rule of the DFDC 2020 winning pipeline (Seferbekov): if more than 11 frames and
    /// more than 1/2.5 of all frames score above 0.8, the mean of those confident frames; else
    /// if more than 90% of frames score below 0.2, the mean of those; else the plain mean.
    #[default]
    Confident,
}

impl FromStr for Aggregation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "max" => Ok(Aggregation::Max),
            "mean" => Ok(Aggregation::Mean),
            "confident" => Ok(Aggregation::Confident),
            _ => Err(format!("unknown aggregation '{s}' (expected max, mean or confident)")),
        }
    }
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Max => "max",
            Aggregation::Mean => "mean",
            Aggregation::Confident => "confident",
        }
    }

    pub fn apply(self, scores: &[f32]) -> Option<f32> {
        if scores.is_empty() {
            return None;
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        Some(match self {
            Aggregation::Max => scores.iter().copied().fold(f32::MIN, f32::max),
            Aggregation::Mean => mean(scores),
            Aggregation::Confident => {
                let n = scores.len();
                let fakes: Vec<f32> = scores.iter().copied().filter(|s| *s > 0.8).collect();
                let reals: Vec<f32> = scores.iter().copied().filter(|s| *s < 0.2).collect();
                if fakes.len() > 11 && fakes.len() as f32 > n as f32 / 2.5 {
                    mean(&fakes)
                } else if reals.len() as f32 > 0.9 * n as f32 {
                    mean(&reals)
                } else {
                    mean(scores)
                }
            }
        })
    }
}

/// The faces seen in one sampled frame: (box, detector confidence, manipulation score).
#[derive(Debug, Clone)]
pub struct FrameFaces {
    pub frame: u64,
    pub time_s: f64,
    pub faces: Vec<([f32; 4], f32, f32)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrackFrame {
    pub frame: u64,
    pub time_s: f64,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub confidence: f32,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Track {
    pub id: usize,
    pub score: f32,
    pub frames: Vec<TrackFrame>,
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let fa = FaceBox { x1: a[0], y1: a[1], x2: a[2], y2: a[3], confidence: 0.0 };
    let fb = FaceBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3], confidence: 0.0 };
    fa.iou(&fb)
}

/// Distance between box centres, in units of the larger box side.
fn centre_distance(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax, ay) = ((a[0] + a[2]) / 2.0, (a[1] + a[3]) / 2.0);
    let (bx, by) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let side = (a[2] - a[0]).max(a[3] - a[1]).max(b[2] - b[0]).max(b[3] - b[1]).max(1.0);
    ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt() / side
}

/// Links faces of neighbouring sampled frames into tracks. Sampled frames are far apart
/// (0.1-1 s), so a face may move more than its own width between them and plain box overlap
/// is not enough: a face may join a track when it overlaps the track's last box by more than
/// `min_iou` or when its centre lies within one face-width of it. Pairs are taken closest
/// first; a face that joins no track starts a new one. A track stays open across frames where
/// its face was missed, matched against its last box.
pub fn build_tracks(frames: &[FrameFaces], min_iou: f32, aggregation: Aggregation) -> Vec<Track> {
    let mut tracks: Vec<Vec<TrackFrame>> = Vec::new();
    let mut sorted: Vec<&FrameFaces> = frames.iter().collect();
    sorted.sort_by_key(|f| f.frame);
    for f in sorted {
        // Candidate pairs (centre distance, track, face), closest first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, t) in tracks.iter().enumerate() {
            let last = &t.last().expect("tracks are never empty").bbox;
            for (fi, face) in f.faces.iter().enumerate() {
                let d = centre_distance(last, &face.0);
                if iou(last, &face.0) > min_iou || d < 1.0 {
                    pairs.push((d, ti, fi));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track_used = vec![false; tracks.len()];
        let mut face_used = vec![false; f.faces.len()];
        for (_, ti, fi) in pairs {
            if track_used[ti] || face_used[fi] {
                continue;
            }
            track_used[ti] = true;
            face_used[fi] = true;
            let (bbox, confidence, score) = f.faces[fi];
            tracks[ti].push(TrackFrame { frame: f.frame, time_s: f.time_s, bbox, confidence, score });
        }
        for (fi, used) in face_used.iter().enumerate() {
            if !used {
                let (bbox, confidence, score) = f.faces[fi];
                tracks.push(vec![TrackFrame { frame: f.frame, time_s: f.time_s, bbox, confidence, score }]);
            }
        }
    }
    tracks
        .into_iter()
        .enumerate()
        .map(|(id, frames)| {
            let scores: Vec<f32> = frames.iter().map(|f| f.score).collect();
            Track { id, score: aggregation.apply(&scores).expect("tracks are never empty"), frames }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_by_hand() {
        let s = [0.1, 0.9, 0.5];
        assert_eq!(Aggregation::Max.apply(&s), Some(0.9));
        assert!((Aggregation::Mean.apply(&s).unwrap() - 0.5).abs() < 1e-6);
        // Not enough confident frames either way: plain mean.
        assert!((Aggregation::Confident.apply(&s).unwrap() - 0.5).abs() < 1e-6);
        // 12 of 20 frames above 0.8 (> 11 and > 20/2.5 = 8): mean of those 12.
        let mut v = vec![0.9f32; 12];
        v.extend([0.3f32; 8]);
        assert!((Aggregation::Confident.apply(&v).unwrap() - 0.9).abs() < 1e-6);
        // 19 of 20 below 0.2 (> 90%): mean of those.
        let mut v = vec![0.1f32; 19];
        v.push(0.95);
        assert!((Aggregation::Confident.apply(&v).unwrap() - 0.1).abs() < 1e-6);
        assert_eq!(Aggregation::Max.apply(&[]), None);
        assert!("median".parse::<Aggregation>().is_err());
    }

    #[test]
    fn moving_face_is_one_track_and_a_second_face_another() {
        let frames: Vec<FrameFaces> = (0..5)
            .map(|i| {
                let x = i as f32 * 10.0;
                let mut faces = vec![([x, 0.0, x + 50.0, 50.0], 0.99, 0.8)];
                if i >= 2 {
                    faces.push(([300.0, 300.0, 350.0, 350.0], 0.95, 0.1));
                }
                FrameFaces { frame: i * 10, time_s: i as f64, faces }
            })
            .collect();
        let tracks = build_tracks(&frames, 0.3, Aggregation::Mean);
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].frames.len(), 5);
        assert_eq!(tracks[0].frames.iter().map(|f| f.frame).collect::<Vec<_>>(), vec![0, 10, 20, 30, 40]);
        assert_eq!(tracks[1].frames.len(), 3);
        assert!((tracks[0].score - 0.8).abs() < 1e-6 && (tracks[1].score - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_face_that_moved_more_than_its_width_apart_of_overlap_still_links() {
        // 80 px boxes 60 px apart: IoU 0.14, centre distance 0.75 face-widths.
        let f = |frame, x: f32| FrameFaces {
            frame,
            time_s: frame as f64,
            faces: vec![([x, 0.0, x + 80.0, 80.0], 1.0, 0.5)],
        };
        let tracks = build_tracks(&[f(0, 0.0), f(1, 60.0), f(2, 120.0)], 0.3, Aggregation::Max);
        assert_eq!(tracks.len(), 1);
        // 200 px away is another person.
        let tracks = build_tracks(&[f(0, 0.0), f(1, 200.0)], 0.3, Aggregation::Max);
        assert_eq!(tracks.len(), 2);
    }

    #[test]
    fn a_missed_frame_does_not_break_the_track() {
        let f = |frame, faces| FrameFaces { frame, time_s: frame as f64, faces };
        let b = ([0.0, 0.0, 10.0, 10.0], 1.0, 0.5);
        let tracks = build_tracks(&[f(0, vec![b]), f(1, vec![]), f(2, vec![b])], 0.3, Aggregation::Max);
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].frames.len(), 2);
    }
}
