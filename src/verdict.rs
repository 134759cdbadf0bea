//! What a score means: the labels and statuses dfserve reports, and the one rule that turns a
//! score and a threshold into a label.
//!
//! Every result (image, face, video, track frame) and every rendering of it (JSON, gRPC, the
//! KServe `LABEL` output, metrics) takes its words from here, so a label cannot mean one thing
//! on one front end and another elsewhere.

use serde::Serialize;

use crate::models::scoring::Bands;

/// The verdict on one scored face, image or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Manipulated,
    Authentic,
}

impl Label {
    /// The decision rule: a score at or above the threshold is `manipulated`.
    pub fn for_score(score: f32, threshold: f32) -> Label {
        if score >= threshold {
            Label::Manipulated
        } else {
            Label::Authentic
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Manipulated => "manipulated",
            Label::Authentic => "authentic",
        }
    }
}

/// Whether there was anything to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NoFace,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoFace => "no_face",
        }
    }
}

/// The status, score and label of a whole item (image or video) from its best-scoring part
/// (face or track): no part means `no_face` and no score.
pub fn outcome(score: Option<f32>, threshold: f32) -> (Status, Option<f32>, Option<Label>) {
    match score {
        Some(s) => (Status::Ok, Some(s), Some(Label::for_score(s, threshold))),
        None => (Status::NoFace, None, None),
    }
}

/// One word for an outcome: `manipulated`, `authentic` or `no_face`. Used for metrics and the
/// KServe `LABEL` output alike.
pub fn word(status: Status, label: Option<Label>) -> &'static str {
    match (status, label) {
        (Status::NoFace, _) | (_, None) => "no_face",
        (_, Some(l)) => l.as_str(),
    }
}

/// What a moderator acts on: a band of the served score, or why there is nothing to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    LikelyManipulated,
    Uncertain,
    LikelyAuthentic,
    NotApplicable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::LikelyManipulated => "likely_manipulated",
            Verdict::Uncertain => "uncertain",
            Verdict::LikelyAuthentic => "likely_authentic",
            Verdict::NotApplicable => "not_applicable",
        }
    }
}

/// Why a result is `not_applicable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No face was found.
    NoFace,
    /// Faces were found, but every one is smaller than `--min-face-size`: the models were not
    /// trained on faces that small and flag them far too often.
    FaceTooSmall,
    /// In `whole` mode, the image itself is smaller than `--min-face-size`.
    ImageTooSmall,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoFace => "no_face",
            Reason::FaceTooSmall => "face_too_small",
            Reason::ImageTooSmall => "image_too_small",
        }
    }
}

/// A verdict and, for `not_applicable`, its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    #[serde(rename = "verdict_reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

impl Judgement {
    pub fn not_applicable(reason: Reason) -> Judgement {
        Judgement { verdict: Verdict::NotApplicable, reason: Some(reason) }
    }

    /// The band of one score.
    pub fn band(score: f32, bands: &Bands) -> Judgement {
        let verdict = if score >= bands.manipulated_from {
            Verdict::LikelyManipulated
        } else if score < bands.authentic_below {
            Verdict::LikelyAuthentic
        } else {
            Verdict::Uncertain
        };
        Judgement { verdict, reason: None }
    }

    /// One face: `not_applicable` because of `too_small` (`face_too_small`, or in `whole`
    /// mode `image_too_small`) when its longer side is under `min_size` pixels, else the band
    /// of its score.
    pub fn face(score: f32, longer_side: f32, min_size: u32, too_small: Reason, bands: &Bands) -> Judgement {
        if longer_side < min_size as f32 {
            return Judgement::not_applicable(too_small);
        }
        Judgement::band(score, bands)
    }

    /// A whole image (or video) from the scores of its judged faces (or tracks): the ones not
    /// `not_applicable`. With `k` judged faces, the top score must clear an edge raised for `k`
    /// (Bonferroni on `1 - score`): `1 - top <= (1 - manipulated_from) / k`. So each extra face
    /// does not add another chance for an authentic photo to be flagged: if one authentic face
    /// reaches the edge with probability `f`, a photo of `k` authentic faces is flagged with
    /// probability about `k * f(k)`, where `f(k) <= f` is the chance of reaching the raised edge.
    /// `likely_authentic` needs every judged face below `authentic_below`; anything else is
    /// `uncertain`. No judged face: `not_applicable`, because of `unjudged` (`no_face` when
    /// there were no faces at all).
    pub fn image(judged: &[f32], unjudged: Option<Reason>, bands: &Bands) -> Judgement {
        let Some(top) = judged.iter().copied().reduce(f32::max) else {
            return Judgement::not_applicable(unjudged.unwrap_or(Reason::NoFace));
        };
        let k = judged.len() as f32;
        let edge = 1.0 - (1.0 - bands.manipulated_from) / k;
        let verdict = if top >= edge {
            Verdict::LikelyManipulated
        } else if top < bands.authentic_below {
            Verdict::LikelyAuthentic
        } else {
            Verdict::Uncertain
        };
        Judgement { verdict, reason: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_reasons_and_the_face_count_rule() {
        let b = Bands { authentic_below: 0.2, manipulated_from: 0.8 };
        assert_eq!(Judgement::band(0.8, &b).verdict, Verdict::LikelyManipulated);
        assert_eq!(Judgement::band(0.5, &b).verdict, Verdict::Uncertain);
        assert_eq!(Judgement::band(0.2, &b).verdict, Verdict::Uncertain);
        assert_eq!(Judgement::band(0.19, &b).verdict, Verdict::LikelyAuthentic);
        assert_eq!(
            Judgement::face(0.99, 63.0, 64, Reason::FaceTooSmall, &b),
            Judgement::not_applicable(Reason::FaceTooSmall)
        );
        assert_eq!(Judgement::face(0.99, 64.0, 64, Reason::FaceTooSmall, &b).verdict, Verdict::LikelyManipulated);
        // One face: the band. Four faces: the top one must reach 1 - 0.2 / 4 = 0.95.
        assert_eq!(Judgement::image(&[0.85], None, &b).verdict, Verdict::LikelyManipulated);
        assert_eq!(Judgement::image(&[0.85, 0.1, 0.1, 0.1], None, &b).verdict, Verdict::Uncertain);
        assert_eq!(Judgement::image(&[0.96, 0.1, 0.1, 0.1], None, &b).verdict, Verdict::LikelyManipulated);
        assert_eq!(Judgement::image(&[0.1, 0.15], None, &b).verdict, Verdict::LikelyAuthentic);
        assert_eq!(
            Judgement::image(&[], Some(Reason::FaceTooSmall), &b),
            Judgement::not_applicable(Reason::FaceTooSmall)
        );
        assert_eq!(Judgement::image(&[], None, &b), Judgement::not_applicable(Reason::NoFace));
        let json = serde_json::to_value(Judgement::not_applicable(Reason::NoFace)).unwrap();
        assert_eq!(json, serde_json::json!({"verdict": "not_applicable", "verdict_reason": "no_face"}));
    }

    #[test]
    fn the_threshold_itself_counts_as_manipulated() {
        assert_eq!(Label::for_score(0.5, 0.5), Label::Manipulated);
        assert_eq!(Label::for_score(0.4999, 0.5), Label::Authentic);
        assert_eq!(outcome(None, 0.5), (Status::NoFace, None, None));
        assert_eq!(outcome(Some(0.9), 0.5), (Status::Ok, Some(0.9), Some(Label::Manipulated)));
        assert_eq!(word(Status::Ok, Some(Label::Authentic)), "authentic");
        assert_eq!(word(Status::NoFace, None), "no_face");
    }
}
