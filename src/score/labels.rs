//! Ground truth for `dfserve score --labels`: from folder names (`dirs`), or from a CSV.
//!
//! The CSV is either headerless `path,label` rows, or has a header naming its columns: `label`,
//! and `path` and/or `sha256`. A row with a `sha256` labels the file with those bytes wherever
//! it lies and whatever it is called, which is how the reviewer page's export
//! (`GET /v1/decisions?format=csv`) labels a dataset: reviewers saw uploads, not paths. A path
//! matches a file by equality or as a suffix of its path. Labels `unsure` and empty give no
//! truth (the file is scored but not evaluated); when one item has several rows, the last wins
//! (the export is oldest first, so the latest decision).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::ScoreArgs;

/// Where ground truth comes from.
pub enum Labels {
    None,
    Dirs { real: HashSet<String>, fake: HashSet<String> },
    File { by_path: HashMap<String, bool>, by_sha256: HashMap<String, bool> },
}

fn parse_truth(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "fake" | "1" | "manipulated" | "deepfake" | "df" => Some(true),
        "real" | "0" | "authentic" | "original" => Some(false),
        _ => None,
    }
}

/// Labels that mean "no ground truth for this one".
fn is_unlabelled(s: &str) -> bool {
    matches!(s.trim().to_lowercase().as_str(), "" | "unsure" | "unknown")
}

/// Column positions: path, label, sha256.
struct Columns {
    path: Option<usize>,
    label: usize,
    sha256: Option<usize>,
}

impl Columns {
    /// From a header row, if `rec` is one (it names a `label` column and a `path` or `sha256`).
    fn from_header(rec: &csv::StringRecord) -> Option<Columns> {
        let find = |name: &str| rec.iter().position(|c| c.trim().eq_ignore_ascii_case(name));
        let cols = Columns { path: find("path"), label: find("label")?, sha256: find("sha256") };
        (cols.path.is_some() || cols.sha256.is_some()).then_some(cols)
    }
}

fn read_file(file: &str) -> anyhow::Result<Labels> {
    let (mut by_path, mut by_sha256) = (HashMap::new(), HashMap::new());
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("reading --labels {file} (expected `dirs` or a CSV of path,label)"))?;
    let mut cols = Columns { path: Some(0), label: 1, sha256: None };
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{file}: line {}", i + 1))?;
        if i == 0 {
            if let Some(c) = Columns::from_header(&rec) {
                cols = c;
                continue;
            }
        }
        // Cells as the decisions export wrote them (a formula-like cell has a leading `'`).
        let cell = |c: usize| rec.get(c).map(crate::decisions::csv_uncell);
        let Some(label) = cell(cols.label) else { continue };
        let fake = match parse_truth(label) {
            Some(fake) => fake,
            None if is_unlabelled(label) => continue,
            None if i == 0 => continue, // a header line of other names
            None => bail!("{file}: line {}: label '{label}' is not fake/real/1/0 (or unsure)", i + 1),
        };
        let sha = cols.sha256.and_then(cell).map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty());
        match (sha, cols.path.and_then(cell).map(str::trim).filter(|p| !p.is_empty())) {
            (Some(sha), _) => {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("{file}: line {}: sha256 '{sha}' is not 64 hex digits", i + 1);
                }
                by_sha256.insert(sha, fake);
            }
            (None, Some(path)) => {
                by_path.insert(path.to_string(), fake);
            }
            (None, None) => bail!("{file}: line {}: neither a path nor a sha256", i + 1),
        }
    }
    Ok(Labels::File { by_path, by_sha256 })
}

impl Labels {
    pub fn from_args(args: &ScoreArgs) -> anyhow::Result<Labels> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<HashSet<_>>();
        match args.labels.as_deref() {
            None => Ok(Labels::None),
            Some("dirs") => Ok(Labels::Dirs { real: lower(&args.real_names), fake: lower(&args.fake_names) }),
            Some(file) => read_file(file),
        }
    }

    /// Whether some labels name files by content: then [`truth`](Self::truth) needs each
    /// file's SHA-256.
    pub fn by_content(&self) -> bool {
        matches!(self, Labels::File { by_sha256, .. } if !by_sha256.is_empty())
    }

    /// `Some(true)` for fake, `Some(false)` for real. `sha256` is the file's digest (lowercase
    /// hex), when read and [`by_content`](Self::by_content).
    pub fn truth(&self, path: &Path, sha256: Option<&str>) -> Option<bool> {
        match self {
            Labels::None => None,
            Labels::Dirs { real, fake } => path.parent()?.components().rev().find_map(|c| {
                let name = c.as_os_str().to_string_lossy().to_lowercase();
                if fake.contains(&name) {
                    Some(true)
                } else if real.contains(&name) {
                    Some(false)
                } else {
                    None
                }
            }),
            Labels::File { by_path, by_sha256 } => {
                let by_content = sha256.and_then(|d| by_sha256.get(d)).copied();
                let s = path.to_string_lossy();
                by_content.or_else(|| by_path.get(s.as_ref()).copied()).or_else(|| {
                    by_path
                        .iter()
                        .find(|(k, _)| s.ends_with(k.as_str()) || Path::new(k.as_str()) == path)
                        .map(|(_, v)| *v)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn labels(csv: &str) -> anyhow::Result<Labels> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("labels.csv");
        std::fs::write(&f, csv).unwrap();
        read_file(f.to_str().unwrap())
    }

    #[test]
    fn headerless_rows_and_named_columns_with_sha256() {
        let l = labels("path,label\ndata/a.jpg,fake\nb.jpg,0\n").unwrap();
        assert_eq!(l.truth(Path::new("/x/data/a.jpg"), None), Some(true));
        assert_eq!(l.truth(Path::new("b.jpg"), None), Some(false));
        assert_eq!(l.truth(Path::new("c.jpg"), None), None);
        let l = labels("a.jpg,real\n").unwrap();
        assert_eq!(l.truth(Path::new("a.jpg"), None), Some(false));
        // The reviewer export: columns by name, content by SHA-256, `unsure` skipped, last wins.
        let sha = hex::encode(Sha256::digest(b"pixels"));
        let other = hex::encode(Sha256::digest(b"other"));
        let csv = format!(
            "path,label,sha256,decision\nupload.jpg,real,{sha},authentic\nupload.jpg,fake,{sha},manipulated\nx.jpg,unsure,{other},unsure\n"
        );
        let l = labels(&csv).unwrap();
        let digest = |b: &[u8]| hex::encode(Sha256::digest(b));
        assert!(l.by_content());
        assert_eq!(l.truth(Path::new("renamed/anything.png"), Some(&digest(b"pixels"))), Some(true));
        assert_eq!(l.truth(Path::new("x.jpg"), Some(&digest(b"other"))), None);
        assert_eq!(l.truth(Path::new("upload.jpg"), Some(&digest(b"different bytes"))), None);
        let err = labels("path,label\na.jpg,maybe\n").err().unwrap();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(labels("label,sha256\nfake,abc\n").is_err());
    }

    #[test]
    fn the_decisions_export_reads_back_with_its_formula_cells_neutralised() {
        use crate::decisions::{to_csv, Call, Decision, Shown};
        let d = |name: &str, call: Call| Decision {
            sha256: hex::encode(Sha256::digest(name.as_bytes())),
            decision: call,
            reviewer: "k".into(),
            decided_at: "2026-01-01T00:00:00.000Z".into(),
            filename: Some(name.into()),
            kind: Some("image".into()),
            note: Some("=HYPERLINK(\"http://x.example/\")".into()),
            shown: Shown::default(),
            added_to_list: None,
        };
        let csv = to_csv(&[d("=cmd.jpg", Call::Manipulated), d("-2+3.jpg", Call::Authentic)]).unwrap();
        assert!(!String::from_utf8_lossy(&csv).contains(",\"=cmd"), "not neutralised");
        let l = labels(std::str::from_utf8(&csv).unwrap()).unwrap();
        // By content, and by the path as the reviewer named it.
        assert_eq!(l.truth(Path::new("x"), Some(&hex::encode(Sha256::digest(b"=cmd.jpg")))), Some(true));
        let Labels::File { by_sha256, .. } = &l else { panic!() };
        assert_eq!(by_sha256.len(), 2);
        let paths =
            labels(&String::from_utf8(csv).unwrap().replace(&hex::encode(Sha256::digest(b"-2+3.jpg")), "")).unwrap();
        assert_eq!(paths.truth(Path::new("data/-2+3.jpg"), None), Some(false));
    }
}
