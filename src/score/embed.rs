//! `dfserve embed`: each face's embedding from an encoder model, as JSON Lines, for fitting probe
//! heads (`scripts/train_probe.py`). The crops come from the served pipeline itself (decode,
//! EXIF rotation, face detection, square crop with the server's margin and border, the
//! encoder's preprocessing), so a head learns from exactly what it will be served.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use super::{collect_files, Progress};
use crate::config::EmbedArgs;
use crate::core::{InferCore, Picture};
use crate::metrics::Metrics;

pub async fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let files = collect_files(&args.paths);
    if files.is_empty() {
        bail!("no files found under {:?}", args.paths);
    }
    let mut settings = args.engine.core_settings();
    settings.default_model = String::new();
    settings.models = vec![args.encoder.clone(), settings.detector.clone()];
    let core = tokio::task::spawn_blocking(move || InferCore::load(settings, Arc::new(Metrics::new()))).await??;
    let encoder = core.model(&args.encoder).context("the encoder was loaded above")?;
    if encoder.config.encoder.is_none() {
        bail!(
            "--encoder '{}' is a {}, not an encoder (kind = \"encoder\")",
            args.encoder,
            encoder.config.kind.as_str()
        );
    }
    core.warm_up().await?;

    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut progress = Progress::new("dfserve embed", files.len() as u64);
    let (core, name, mode) = (&core, args.encoder.as_str(), args.mode);
    let mut rows = futures::stream::iter(files)
        .map(|path| async move {
            match tokio::fs::read(&path).await {
                Err(e) => json!({"path": path, "error": format!("cannot read file: {e}")}),
                Ok(bytes) => {
                    let picture = Picture::Encoded(Bytes::from(bytes));
                    match core.embed_picture(picture, name, mode, core.request_deadline()).await {
                        Err(e) => json!({"path": path, "error": e.to_string()}),
                        Ok(e) => json!({
                            "path": path,
                            "width": e.width,
                            "height": e.height,
                            "faces": e.faces.iter().map(|(b, v)| json!({
                                "box": [b.x1, b.y1, b.x2, b.y2],
                                "confidence": b.confidence,
                                "embedding": v,
                            })).collect::<Vec<_>>(),
                        }),
                    }
                }
            }
        })
        .buffer_unordered(args.jobs.max(1));
    let mut errors = 0usize;
    while let Some(row) = rows.next().await {
        if let Some(e) = row.get("error") {
            errors += 1;
            eprintln!(
                "dfserve embed: {}: {}",
                row["path"].as_str().unwrap_or_default(),
                e.as_str().unwrap_or_default()
            );
        }
        writeln!(out, "{row}")?;
        progress.inc();
    }
    progress.finish();
    out.flush()?;
    if errors > 0 {
        eprintln!("dfserve embed: {errors} files could not be embedded (see the rows' \"error\")");
    }
    Ok(())
}
