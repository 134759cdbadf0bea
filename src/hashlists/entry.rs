//! One hash-list entry: its kinds of hash, how it is checked, and the import formats.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    Pdq,
    Md5,
    Sha256,
}

impl HashKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HashKind::Pdq => "pdq",
            HashKind::Md5 => "md5",
            HashKind::Sha256 => "sha256",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            HashKind::Md5 => 32,
            HashKind::Pdq | HashKind::Sha256 => 64,
        }
    }
}

/// One known item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: HashKind,
    /// Lowercase hex.
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
        if self.hash.len() != self.kind.hex_len() || !self.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "entry '{}': a {} hash is {} hex digits, got '{}'",
                self.id,
                self.kind.as_str(),
                self.kind.hex_len(),
                self.hash
            );
        }
        if self.id.is_empty() || self.id.len() > 256 || self.id.contains('\0') {
            bail!("entry ids must be 1 to 256 characters without NUL, got '{}'", self.id.escape_debug());
        }
        Ok(self)
    }
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

/// Parses entries from JSON Lines (`{"kind","hash","id","label"?,"source"?}` a line) or CSV
/// with a header naming the same columns. Fails on the first bad line, naming it.
pub fn parse_entries(text: &str) -> anyhow::Result<Vec<Entry>> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim_start();
    let entries: Vec<Entry> = if first.starts_with('{') {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
            .collect::<anyhow::Result<_>>()?
    } else {
        let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        rdr.deserialize()
            .enumerate()
            .map(|(i, r)| r.with_context(|| format!("CSV record {} (columns: kind,hash,id[,label,source])", i + 1)))
            .collect::<anyhow::Result<_>>()?
    };
    entries.into_iter().map(Entry::normalise).collect()
}
