//! One hash-list entry: its kinds of hash, how it is checked, and the import formats.

use anyhow::{bail, Context};
use serde::{Deserialize, Deserializer, Serialize};

use crate::hashing::vpdq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    Pdq,
    Vpdq,
    Md5,
    Sha256,
}

impl HashKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HashKind::Pdq => "pdq",
            HashKind::Vpdq => "vpdq",
            HashKind::Md5 => "md5",
            HashKind::Sha256 => "sha256",
        }
    }

    /// Hex digits of a hash of this kind (vPDQ hashes are lists of PDQ hashes).
    fn hex_len(self) -> Option<usize> {
        match self {
            HashKind::Md5 => Some(32),
            HashKind::Pdq | HashKind::Sha256 => Some(64),
            HashKind::Vpdq => None,
        }
    }
}

/// One known item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: HashKind,
    /// Lowercase hex; for `vpdq`, ThreatExchange's serialised form (see `hashing::vpdq`), which
    /// JSON Lines may also give as the array itself.
    #[serde(deserialize_with = "string_or_array")]
    pub hash: String,
    /// Unique within its list; adding an entry with an existing id replaces it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Entry {
    pub fn normalise(mut self) -> anyhow::Result<Entry> {
        self.hash = self.hash.trim().to_ascii_lowercase();
        match self.kind.hex_len() {
            Some(n) if self.hash.len() != n || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                bail!("entry '{}': a {} hash is {n} hex digits, got '{}'", self.id, self.kind.as_str(), self.hash)
            }
            Some(_) => {}
            None => {
                let frames = vpdq::parse(&self.hash).with_context(|| format!("entry '{}': bad vpdq hash", self.id))?;
                self.hash = vpdq::to_json(&frames);
            }
        }
        if self.id.is_empty() || self.id.len() > 256 || self.id.contains('\0') {
            bail!("entry ids must be 1 to 256 characters without NUL, got '{}'", self.id.escape_debug());
        }
        for (what, text) in [("label", &self.label), ("source", &self.source)] {
            let text = text.as_deref().unwrap_or_default();
            if text.chars().count() > MAX_NOTE_CHARS {
                bail!("entry '{}': its {what} is over {MAX_NOTE_CHARS} characters", self.id);
            }
            if text.chars().any(char::is_control) {
                bail!("entry '{}': its {what} holds control characters", self.id);
            }
        }
        // An empty label or source is no label or source.
        self.label = self.label.filter(|s| !s.is_empty());
        self.source = self.source.filter(|s| !s.is_empty());
        Ok(self)
    }
}

/// A CSV record: every field text (CSV's own type guessing would read an all-digit hash as a
/// number).
#[derive(Deserialize)]
struct CsvEntry {
    kind: HashKind,
    hash: String,
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// A hash given as a string, or (vPDQ) as a JSON array kept in its text form.
fn string_or_array<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Hash {
        Text(String),
        Frames(Vec<String>),
    }
    Ok(match Hash::deserialize(d)? {
        Hash::Text(s) => s,
        Hash::Frames(v) => serde_json::to_string(&v).map_err(serde::de::Error::custom)?,
    })
}

/// A list name: 1 to 64 letters, digits, `_`, `-` or `.`.
pub fn check_list_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        bail!("list names are 1 to 64 letters, digits, '_', '-' or '.', got '{}'", name.escape_debug());
    }
    Ok(())
}

/// Longest label or source kept with an entry (they are sent back with every match).
pub const MAX_NOTE_CHARS: usize = 1000;

/// Reads entries from JSON Lines (`{"kind","hash","id","label"?,"source"?}` a line) or CSV
/// with a header naming the same columns, one at a time (an import of a million entries never
/// holds them all parsed). A UTF-8 byte-order mark is skipped. A body with no entries, or CSV
/// without its header, is refused here; a bad line fails the iteration, naming it.
pub fn read_entries(text: &str) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Entry>> + '_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        bail!("there are no entries: send JSON Lines, or CSV with a kind,hash,id[,label,source] header line");
    };
    if first.trim_start().starts_with('{') {
        let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        return Ok(Box::new(lines.map(|(i, l)| {
            serde_json::from_str::<Entry>(l)
                .map_err(anyhow::Error::from)
                .and_then(Entry::normalise)
                .with_context(|| format!("line {}", i + 1))
        })));
    }
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let header: Vec<String> = rdr.headers()?.iter().map(|h| h.to_ascii_lowercase()).collect();
    let known = ["kind", "hash", "id", "label", "source"];
    let is_header = ["kind", "hash", "id"].iter().all(|c| header.iter().any(|h| h == c));
    if !is_header {
        bail!(
            "the CSV has no header line (its first line is '{}'): the first line must name the columns kind,hash,id[,label,source]",
            first.chars().take(80).collect::<String>()
        );
    }
    if let Some(other) = header.iter().find(|h| !known.contains(&h.as_str())) {
        bail!("unknown CSV column '{other}': the columns are kind,hash,id[,label,source]");
    }
    Ok(Box::new(rdr.into_deserialize::<CsvEntry>().enumerate().map(|(i, r)| {
        let r = r.with_context(|| format!("CSV record {} (columns: kind,hash,id[,label,source])", i + 1))?;
        Entry { kind: r.kind, hash: r.hash, id: r.id, label: r.label, source: r.source }
            .normalise()
            .with_context(|| format!("CSV record {}", i + 1))
    })))
}

/// All of [`read_entries`] at once.
pub fn parse_entries(text: &str) -> anyhow::Result<Vec<Entry>> {
    read_entries(text)?.collect()
}
