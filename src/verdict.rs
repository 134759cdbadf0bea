//! What a score means: the labels and statuses dfserve reports, and the one rule that turns a
//! score and a threshold into a label.
//!
//! Every result (image, face, video, track frame) and every rendering of it (JSON, gRPC, the
//! KServe `LABEL` output, metrics) takes its words from here, so a label cannot mean one thing
//! on one front end and another elsewhere.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
