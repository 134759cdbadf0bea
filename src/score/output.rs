//! Output rows as JSON Lines or CSV, flushed one row at a time so an interrupted run leaves a
//! valid file, and read back for `--resume`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::Context;

use super::row::{Outcome, Row};
use crate::config::OutputFormat;

pub enum Writer {
    Jsonl(Box<dyn Write>),
    /// The writer and the model column order.
    Csv(Box<csv::Writer<Box<dyn Write>>>, Vec<String>),
}

/// CSV columns per model, in order.
const COLUMNS: [&str; 10] =
    ["score", "label", "status", "faces", "error", "verdict", "raw_score", "matches", "c2pa", "c2pa_source_types"];

fn csv_header(models: &[String]) -> Vec<String> {
    let mut h = vec!["path".to_string(), "truth".to_string()];
    for m in models {
        for col in COLUMNS {
            h.push(format!("{m}.{col}"));
        }
    }
    h
}

/// Drops a trailing partial line (a run killed mid-write) so appended rows start clean.
fn trim_partial_line(path: &Path) -> anyhow::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    if data.is_empty() || data.ends_with(b"\n") {
        return Ok(());
    }
    let keep = data.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    f.set_len(keep as u64)?;
    f.seek(SeekFrom::End(0))?;
    Ok(())
}

impl Writer {
    pub fn open(path: Option<&Path>, format: OutputFormat, models: &[String], resume: bool) -> anyhow::Result<Writer> {
        let (sink, fresh): (Box<dyn Write>, bool) = match path {
            None => (Box::new(std::io::stdout()), true),
            Some(p) => {
                let existing = resume && p.exists() && std::fs::metadata(p)?.len() > 0;
                if existing {
                    trim_partial_line(p)?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(existing)
                    .truncate(!existing)
                    .open(p)
                    .with_context(|| format!("opening {} for writing", p.display()))?;
                (Box::new(f), !existing)
            }
        };
        Ok(match format {
            OutputFormat::Jsonl => Writer::Jsonl(sink),
            OutputFormat::Csv => {
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(sink);
                if fresh {
                    w.write_record(csv_header(models))?;
                    w.flush()?;
                }
                Writer::Csv(Box::new(w), models.to_vec())
            }
        })
    }

    pub fn write(&mut self, row: &Row) -> anyhow::Result<()> {
        match self {
            Writer::Jsonl(w) => {
                let mut line = serde_json::to_vec(row)?;
                line.push(b'\n');
                w.write_all(&line)?;
                w.flush()?;
            }
            Writer::Csv(w, models) => {
                let mut rec = vec![row.path.clone(), row.truth.clone().unwrap_or_default()];
                for o in models.iter().filter_map(|m| row.models.get(m)) {
                    rec.push(o.score.map(|s| s.to_string()).unwrap_or_default());
                    rec.push(o.label.clone().unwrap_or_default());
                    rec.push(o.status.clone());
                    rec.push(o.face_count.to_string());
                    rec.push(o.error.clone().unwrap_or_default());
                    rec.push(o.verdict.clone().unwrap_or_default());
                    rec.push(o.raw_score.map(|s| s.to_string()).unwrap_or_default());
                    // Matches as a JSON array in one cell; empty when none.
                    rec.push(if o.matches.is_empty() { String::new() } else { serde_json::to_string(&o.matches)? });
                    // C2PA: the state (empty when there is no manifest) and the declared source types.
                    let c2pa = o.provenance.as_ref().map(|p| &p.c2pa);
                    rec.push(c2pa.and_then(|c| c.state.clone()).unwrap_or_default());
                    rec.push(c2pa.map(|c| c.digital_source_types.join(";")).unwrap_or_default());
                }
                w.write_record(rec)?;
                w.flush()?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            Writer::Jsonl(mut w) => w.flush()?,
            Writer::Csv(mut w, _) => w.flush()?,
        }
        Ok(())
    }
}

/// Rows of an earlier (possibly interrupted) run. A trailing partial line is ignored.
pub fn read_rows(path: &Path, format: OutputFormat, models: &[String]) -> anyhow::Result<Vec<Row>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {} to resume", path.display()))?;
    let mut rows = Vec::new();
    match format {
        OutputFormat::Jsonl => {
            for line in BufReader::new(file).lines() {
                let line = line?;
                match serde_json::from_str::<Row>(&line) {
                    Ok(r) => rows.push(r),
                    Err(_) if line.trim().is_empty() => {}
                    Err(_) => break, // the partial last line of an interrupted run
                }
            }
        }
        OutputFormat::Csv => {
            let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(file);
            let header: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
            if header != csv_header(models) {
                anyhow::bail!(
                    "{} has columns {:?}, which do not match this run's models; resume with the same --model list",
                    path.display(),
                    header
                );
            }
            for rec in rdr.records() {
                let Ok(rec) = rec else { break };
                if rec.len() != header.len() {
                    break;
                }
                let mut outcomes = std::collections::BTreeMap::new();
                for (i, m) in models.iter().enumerate() {
                    let c = |k: usize| rec.get(2 + i * COLUMNS.len() + k).unwrap_or("").to_string();
                    let opt = |s: String| if s.is_empty() { None } else { Some(s) };
                    outcomes.insert(
                        m.clone(),
                        Outcome {
                            score: c(0).parse().ok(),
                            label: opt(c(1)),
                            status: c(2),
                            face_count: c(3).parse().unwrap_or(0),
                            faces: vec![],
                            error: opt(c(4)),
                            verdict: opt(c(5)),
                            verdict_reason: None,
                            raw_score: c(6).parse().ok(),
                            matches: serde_json::from_str(&c(7)).unwrap_or_default(),
                            provenance: None,
                            audit: None,
                        },
                    );
                }
                rows.push(Row {
                    path: rec.get(0).unwrap_or("").to_string(),
                    truth: rec.get(1).filter(|s| !s.is_empty()).map(str::to_string),
                    models: outcomes,
                });
            }
        }
    }
    Ok(rows)
}
