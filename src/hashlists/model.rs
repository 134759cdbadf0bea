//! What the lists' API speaks in: errors, import reports, matches, rules and summaries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::entry::HashKind;
use crate::datastore::{StorageError, TxnError};
use crate::error::CoreError;
use crate::hashing::{pdq::Pdq, vpdq};

/// Why a list change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The request itself: a bad entry, list name or body (400).
    #[error("{0}")]
    Invalid(String),
    /// Storage failed (503, retry later); nothing was applied.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TxnError for ListError {
    fn is_storage(&self) -> bool {
        matches!(self, ListError::Storage(_))
    }
}

impl From<ListError> for CoreError {
    fn from(e: ListError) -> CoreError {
        match e {
            ListError::Invalid(m) => CoreError::BadRequest(m),
            ListError::Storage(s) => s.into(),
        }
    }
}

pub(super) fn invalid(e: anyhow::Error) -> ListError {
    ListError::Invalid(format!("{e:#}"))
}

/// Ids and kinds of a list's entries, sorted.
pub type Ids = Vec<(String, HashKind)>;

/// What an import did, counted against what the list holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub list: String,
    /// Ids new to the list.
    pub added: usize,
    /// Ids the list held already, now replaced.
    pub replaced: usize,
    /// Lines whose id came earlier in the same import (the last one counts).
    pub duplicates: usize,
    /// Entries in the list after the import.
    pub entries: usize,
}

/// One match of an upload against a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub list: String,
    pub id: String,
    pub kind: HashKind,
    /// PDQ: Hamming distance in bits; vPDQ: the smallest distance between two frames; exact
    /// digests: 0.
    pub distance: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// vPDQ: percent of the upload's frames matched, and of the listed video's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_match_pct: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_match_pct: Option<f32>,
    /// PDQ: how the upload was turned or mirrored to match ([`crate::hashing::pdq::DIHEDRAL`]:
    /// `rotate_90`, `flip_horizontal`, ...) when not as uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

/// When an upload matches (`--pdq-*`, `--vpdq-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchRules {
    pub pdq_max_distance: u32,
    pub pdq_min_quality: u8,
    pub vpdq_query_pct: f32,
    pub vpdq_list_pct: f32,
    /// Whether an image also matches through its rotations and mirror images
    /// (`--pdq-dihedral`).
    pub pdq_dihedral: bool,
}

impl Default for MatchRules {
    /// Meta's and ThreatExchange's defaults.
    fn default() -> MatchRules {
        MatchRules {
            pdq_max_distance: 31,
            pdq_min_quality: 50,
            vpdq_query_pct: 80.0,
            vpdq_list_pct: 0.0,
            pdq_dihedral: true,
        }
    }
}

/// Counts of one list, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub name: String,
    pub entries: usize,
    pub by_kind: BTreeMap<HashKind, usize>,
}

/// Where a replica's index stands, for readiness and metrics (PostgreSQL only).
#[derive(Debug, Clone, Serialize)]
pub struct FeedState {
    pub store: &'static str,
    /// The sequence number of the last change applied.
    pub position: i64,
    pub connected: bool,
    /// Seconds since the replica last confirmed it had applied every change.
    pub lag_seconds: f64,
}

/// What an upload is matched on.
pub struct Probe<'a> {
    pub bytes: &'a [u8],
    /// The image's PDQ, and after it its other dihedral variants when the rules want them
    /// ([`crate::hashing::pdq::DIHEDRAL`]'s order); empty for videos and undecodable uploads.
    pub pdq: &'a [Pdq],
    /// The video's vPDQ frames (none for images).
    pub vpdq: Option<&'a [vpdq::Feature]>,
}
