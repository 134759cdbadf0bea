//! Reviewers' decisions: what a person concluded about one upload after seeing dfserve's
//! scores, kept so that moderation can be audited and reviewed items become evaluation and
//! calibration data (`dfserve score --labels` reads the CSV export).
//!
//! A decision names the media by its SHA-256 (never by file name, which proves nothing), and
//! carries what the reviewer was shown (model, scores, verdict band, matches, provenance), the
//! reviewer's key id (the public id of the API key, never the key; `anonymous` when the server
//! has no keys) and the time. One reviewer has one current decision per item: deciding again
//! replaces it, while other reviewers' decisions stand beside it.
//!
//! The scores are as the page reported them: the server does not re-run the models to check
//! them. A reviewer with a key could write anything there; the record says what that reviewer
//! saw and decided, which is what an audit asks.

mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use store::Store;

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
const MAX_TEXT: usize = 1000;
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

/// The decisions and their table; shared by the front ends.
pub struct Decisions {
    store: Store,
}

impl Decisions {
    pub fn from_db(db: Arc<redb::Database>) -> anyhow::Result<Decisions> {
        Ok(Decisions { store: Store::new(db)? })
    }

    /// Records `d` (already validated), replacing this reviewer's earlier decision on the same
    /// item; durable when it returns.
    pub fn record(&self, d: &Decision) -> anyhow::Result<()> {
        self.store.put(&d.sha256, &d.reviewer, &serde_json::to_vec(d)?)
    }

    /// Every reviewer's decision on one item.
    pub fn of(&self, sha256: &str) -> anyhow::Result<Vec<Decision>> {
        self.store.of(sha256)?.iter().map(|v| parse(v)).collect()
    }

    /// All decisions, oldest first.
    pub fn all(&self) -> anyhow::Result<Vec<Decision>> {
        let mut all: Vec<Decision> = self.store.all()?.iter().map(|v| parse(v)).collect::<anyhow::Result<_>>()?;
        all.sort_by(|a, b| (&a.decided_at, &a.sha256).cmp(&(&b.decided_at, &b.sha256)));
        Ok(all)
    }
}

/// Counts of the stored decisions, for a reviewer's running tally.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub by_decision: BTreeMap<&'static str, usize>,
    /// Distinct items (SHA-256s) and reviewers.
    pub items: usize,
    pub reviewers: usize,
}

impl Decisions {
    /// Counts, without sending every decision to the caller.
    pub fn summary(&self) -> anyhow::Result<Summary> {
        let all = self.store.all()?;
        let mut out = Summary { total: all.len(), ..Default::default() };
        let (mut items, mut reviewers) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for v in &all {
            let d = parse(v)?;
            *out.by_decision.entry(d.decision.as_str()).or_default() += 1;
            items.insert(d.sha256);
            reviewers.insert(d.reviewer);
        }
        (out.items, out.reviewers) = (items.len(), reviewers.len());
        Ok(out)
    }
}

fn parse(stored: &[u8]) -> anyhow::Result<Decision> {
    serde_json::from_slice(stored).context("a stored decision is not valid JSON")
}

/// The CSV export: `path,label` first, so `dfserve score --labels` reads it (by column name;
/// rows are matched to files by `sha256`, else by `path`), then the rest of the record.
pub fn to_csv(decisions: &[Decision]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "path",
        "label",
        "sha256",
        "decision",
        "reviewer",
        "decided_at",
        "kind",
        "model",
        "score",
        "verdict",
        "face_scores",
        "matches",
        "c2pa",
        "added_to_list",
        "note",
    ])?;
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    for d in decisions {
        let faces: Vec<String> =
            d.shown.faces.iter().map(|f| f.score.map(|s| format!("{s:.4}")).unwrap_or_default()).collect();
        w.write_record([
            d.filename.clone().unwrap_or_else(|| d.sha256.clone()),
            d.decision.label().to_string(),
            d.sha256.clone(),
            d.decision.as_str().to_string(),
            d.reviewer.clone(),
            d.decided_at.clone(),
            opt(&d.kind),
            opt(&d.shown.model),
            d.shown.score.map(|s| format!("{s:.4}")).unwrap_or_default(),
            opt(&d.shown.verdict),
            faces.join(";"),
            d.shown.matches.join(";"),
            opt(&d.shown.c2pa),
            opt(&d.added_to_list),
            opt(&d.note),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// Now, as stored in `decided_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(sha: &str, call: Call, reviewer: &str, at: &str) -> Decision {
        Decision {
            sha256: sha.to_string(),
            decision: call,
            reviewer: reviewer.into(),
            decided_at: at.into(),
            filename: Some("a,b.jpg".into()),
            kind: Some("image".into()),
            note: None,
            shown: Shown {
                score: Some(0.9),
                faces: vec![ShownFace {
                    score: Some(0.9),
                    verdict: None,
                    members: BTreeMap::from([("m".to_string(), 0.8)]),
                }],
                ..Default::default()
            },
            added_to_list: None,
        }
    }

    #[test]
    fn decisions_persist_replace_per_reviewer_and_export() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        {
            let d = Decisions::from_db(crate::datastore::open(dir.path()).unwrap()).unwrap();
            d.record(&decision(&a, Call::Manipulated, "k1", "2026-01-01T00:00:01.000Z").validate().unwrap()).unwrap();
            d.record(&decision(&a, Call::Authentic, "k2", "2026-01-01T00:00:02.000Z").validate().unwrap()).unwrap();
            // The same reviewer again: replaces.
            d.record(&decision(&a, Call::Unsure, "k1", "2026-01-01T00:00:03.000Z").validate().unwrap()).unwrap();
            d.record(&decision(&b, Call::Manipulated, "k1", "2026-01-01T00:00:00.000Z").validate().unwrap()).unwrap();
        }
        let d = Decisions::from_db(crate::datastore::open(dir.path()).unwrap()).unwrap();
        let on_a = d.of(&a).unwrap();
        assert_eq!(on_a.len(), 2);
        assert!(on_a.iter().any(|x| x.reviewer == "k1" && x.decision == Call::Unsure));
        let all = d.all().unwrap();
        assert_eq!(
            all.iter().map(|x| x.decision).collect::<Vec<_>>(),
            vec![Call::Manipulated, Call::Authentic, Call::Unsure]
        );
        assert_eq!(all[0].sha256, "b".repeat(64));
        let csv = String::from_utf8(to_csv(&all).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("path,label,sha256,decision,reviewer"));
        assert!(lines[1].starts_with(&format!("\"a,b.jpg\",fake,{}", "b".repeat(64))), "{}", lines[1]);
        assert_eq!(lines.len(), 4);
        let sum = d.summary().unwrap();
        assert_eq!((sum.total, sum.items, sum.reviewers), (3, 2, 2));
        assert_eq!(sum.by_decision, BTreeMap::from([("authentic", 1), ("manipulated", 1), ("unsure", 1)]));
    }

    #[test]
    fn bad_decisions_are_refused_with_reasons() {
        let ok = decision(&"c".repeat(64), Call::Authentic, "k", "t");
        assert!(ok.clone().validate().is_ok());
        let mut bad = ok.clone();
        bad.sha256 = "xyz".into();
        assert!(format!("{}", bad.validate().unwrap_err()).contains("64 hex digits"));
        let mut bad = ok.clone();
        bad.shown.score = Some(1.5);
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.shown.faces[0].members.insert("n".into(), f32::NAN);
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.note = Some("x".repeat(MAX_TEXT + 1));
        assert!(bad.validate().is_err());
    }
}
