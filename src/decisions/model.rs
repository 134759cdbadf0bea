//! What a decision is: the reviewer's call, what they were shown, and the checks a client's
//! decision must pass before it is stored.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// A reviewer's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Call {
    Manipulated,
    Authentic,
    Unsure,
}

impl Call {
    /// The `--labels` word: `fake`, `real`, or `unsure` (which scoring skips).
    pub fn label(self) -> &'static str {
        match self {
            Call::Manipulated => "fake",
            Call::Authentic => "real",
            Call::Unsure => "unsure",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Call::Manipulated => "manipulated",
            Call::Authentic => "authentic",
            Call::Unsure => "unsure",
        }
    }
}

/// One face (image) or face track (video) as shown: its score and its ensemble members'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShownFace {
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Ensemble member scores, by model name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, f32>,
}

/// What the reviewer was shown when deciding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shown {
    /// `name` or `name@version` of the classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// `manipulated` / `authentic` at the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The verdict band (`likely_manipulated`, `uncertain`, `likely_authentic`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faces: Vec<ShownFace>,
    /// Hash-list matches as `list/id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<String>,
    /// The C2PA state (`absent`, `invalid`, `valid`, `trusted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c2pa: Option<String>,
}

/// A decision as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// SHA-256 of the media's bytes, lowercase hex.
    pub sha256: String,
    pub decision: Call,
    /// The reviewer's key id, or `anonymous`.
    pub reviewer: String,
    /// RFC 3339, UTC, milliseconds.
    pub decided_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// `image` or `video`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub shown: Shown,
    /// The hash list the item was added to with this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_to_list: Option<String>,
}

/// Longest free text accepted in a decision (file name, note, model, labels).
pub const MAX_TEXT: usize = 1000;
/// Most faces or tracks recorded with one decision.
const MAX_FACES: usize = 1000;

fn check_text(what: &str, s: &str) -> anyhow::Result<()> {
    if s.chars().count() > MAX_TEXT {
        bail!("{what} is over {MAX_TEXT} characters");
    }
    if s.chars().any(|c| c.is_control() && c != '\t') {
        bail!("{what} holds control characters");
    }
    Ok(())
}

fn check_score(what: &str, s: Option<f32>) -> anyhow::Result<()> {
    match s {
        Some(v) if !(0.0..=1.0).contains(&v) => bail!("{what} {v} is not a score between 0 and 1"),
        _ => Ok(()),
    }
}

/// Checks a SHA-256 hex digest and returns it lowercased.
pub fn check_sha256(s: &str) -> anyhow::Result<String> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("sha256 must be 64 hex digits, got '{s}'");
    }
    Ok(s)
}

impl Decision {
    /// Checks what a client sent; the store keeps only decisions that pass.
    pub fn validate(mut self) -> anyhow::Result<Decision> {
        self.sha256 = check_sha256(&self.sha256)?;
        let s = &self.shown;
        for (what, text) in [
            ("filename", self.filename.as_deref()),
            ("note", self.note.as_deref()),
            ("kind", self.kind.as_deref()),
            ("shown.model", s.model.as_deref()),
            ("shown.label", s.label.as_deref()),
            ("shown.verdict", s.verdict.as_deref()),
            ("shown.c2pa", s.c2pa.as_deref()),
        ] {
            check_text(what, text.unwrap_or_default())?;
        }
        if s.faces.len() > MAX_FACES || s.matches.len() > MAX_FACES {
            bail!("shown.faces and shown.matches hold at most {MAX_FACES} entries each");
        }
        check_score("shown.score", s.score)?;
        for f in &s.faces {
            check_score("a face's score", f.score)?;
            check_text("a face's verdict", f.verdict.as_deref().unwrap_or_default())?;
            for (m, v) in &f.members {
                check_text("a member's name", m)?;
                check_score("a member's score", Some(*v))?;
            }
        }
        for m in &s.matches {
            check_text("a match", m)?;
        }
        Ok(self)
    }
}
