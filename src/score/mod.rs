//! `dfserve score`: score whole datasets from the command line, in-process or against a
//! running server, with resumable output and evaluation against labels.
//!
//! Files stream through a bounded number of in-flight tasks (`--jobs`): reading and decoding
//! run in parallel on the blocking pool while the batchers keep the models busy, exactly as
//! concurrent HTTP requests would. Rows are written as they complete, one line each and
//! flushed, so an interrupted run leaves a valid file that `--resume` continues.

mod calibrate;
pub mod embed;
pub mod eval;
mod labels;
mod output;
mod report;
mod row;

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::config::{OutputFormat, ScoreArgs};
use crate::core::{InferCore, Mode};
use crate::detect::{DetectParams, Detector};
use crate::metrics::Metrics;
use labels::Labels;
pub use row::{FaceOut, Outcome, Row};

const EXTENSIONS: [&str; 13] =
    ["jpg", "jpeg", "png", "webp", "bmp", "gif", "jfif", "mp4", "mov", "m4v", "webm", "mkv", "avi"];

enum Scorer {
    Local(Arc<Detector>),
    Remote { client: reqwest::Client, base: String },
}

impl Scorer {
    async fn score(&self, bytes: Bytes, model: &str, mode: Mode, threshold: Option<f32>, audit: bool) -> Outcome {
        let result = match self {
            Scorer::Local(detector) => {
                let params = DetectParams {
                    model: Some(model.to_string()),
                    threshold,
                    mode: Some(mode.as_str().to_string()),
                    audit,
                    ..Default::default()
                };
                let detect = async {
                    let opts = detector.options(&params)?;
                    let record = audit.then(|| crate::detect::audit::record(&bytes, &opts, detector.core()));
                    let d = detector.detect(bytes, &opts, detector.core().request_deadline()).await?;
                    let mut outcome = Outcome::from_detection(d);
                    outcome.audit = record.and_then(|r| serde_json::to_value(r).ok());
                    Ok::<_, crate::error::CoreError>(outcome)
                };
                detect.await.map_err(|e| e.to_string())
            }
            Scorer::Remote { client, base } => remote(client, base, bytes, model, mode, threshold, audit).await,
        };
        result.unwrap_or_else(Outcome::error)
    }
}

/// The HTTP client for `--server`: its API key on every request, and a timeout per request.
fn server_client(args: &ScoreArgs) -> anyhow::Result<reqwest::Client> {
    let key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => Some(k.trim().to_string()),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --api-key-file {}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_string()).filter(|k| !k.is_empty())
        }
        (None, None) => None,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = key {
        let mut value =
            reqwest::header::HeaderValue::from_str(&k).context("the API key has characters a header cannot carry")?;
        value.set_sensitive(true);
        headers.insert("x-api-key", value);
    }
    Ok(reqwest::Client::builder().default_headers(headers).timeout(args.server_timeout).build()?)
}

/// Fails the run at once, saying what to do, when the server cannot be reached or refuses the
/// key, rather than recording the same error on every row.
async fn check_server(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/models", base.trim_end_matches('/'));
    let resp = client.get(&url).send().await.with_context(|| format!("cannot reach the server at {base}"))?;
    match resp.status().as_u16() {
        401 => bail!("{base} wants an API key: pass --api-key KEY or --api-key-file FILE (or set DFSERVE_API_KEY)"),
        403 => bail!("{base} refused this API key (403)"),
        s if !(200..300).contains(&s) => bail!("{url} answered {s}; is --server the address of a dfserve?"),
        _ => Ok(()),
    }
}

async fn remote(
    client: &reqwest::Client,
    base: &str,
    bytes: Bytes,
    model: &str,
    mode: Mode,
    threshold: Option<f32>,
    audit: bool,
) -> Result<Outcome, String> {
    let mut url = format!("{}/v1/detect?model={model}&mode={}", base.trim_end_matches('/'), mode.as_str());
    if let Some(t) = threshold {
        url.push_str(&format!("&threshold={t}"));
    }
    if audit {
        url.push_str("&audit=true");
    }
    // Overload is transient: back off and retry instead of recording an error.
    for attempt in 0.. {
        let resp = client
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .await
            .map_err(|e| format!("request to {base} failed: {e}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| format!("bad response from {base}: {e}"))?;
        if (status == 429 || status == 503) && attempt < 50 {
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1).min(20))).await;
            continue;
        }
        if !status.is_success() {
            return Err(body["error"].as_str().unwrap_or("request failed").to_string());
        }
        let r = &body["results"][0];
        let faces: Vec<FaceOut> = serde_json::from_value(r["faces"].clone()).unwrap_or_default();
        let face_count = if r["kind"] == "video" { r["tracks"].as_array().map_or(0, |t| t.len()) } else { faces.len() };
        let raw_score = row::top_raw(&faces);
        return Ok(Outcome {
            status: r["status"].as_str().unwrap_or("error").to_string(),
            score: r["score"].as_f64().map(|s| s as f32),
            label: r["label"].as_str().map(str::to_string),
            face_count,
            faces,
            error: None,
            verdict: r["verdict"].as_str().map(str::to_string),
            verdict_reason: r["verdict_reason"].as_str().map(str::to_string),
            raw_score,
            matches: serde_json::from_value(r["matches"].clone()).unwrap_or_default(),
            provenance: serde_json::from_value(r["provenance"].clone()).ok(),
            audit: body["results"][0].get("audit").cloned(),
        });
    }
    unreachable!("the retry loop returns")
}

/// Every image file under `paths`, sorted, with the unreadable entries reported.
pub(crate) fn collect_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        for entry in walkdir::WalkDir::new(p).follow_links(true) {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    let ext = e.path().extension().map(|x| x.to_string_lossy().to_lowercase()).unwrap_or_default();
                    if EXTENSIONS.contains(&ext.as_str()) || e.depth() == 0 {
                        out.push(e.into_path());
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!(
                    "dfserve score: skipping {}: {e}",
                    e.path().map(|p| p.display().to_string()).unwrap_or_default()
                ),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Progress on a terminal as a bar; otherwise a plain line every few seconds.
pub(crate) struct Progress {
    /// The command that reports ("dfserve score").
    what: &'static str,
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub(crate) fn new(what: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
                )
                .expect("valid template"),
            );
            b
        });
        Progress { what, bar, total, done: 0, started: Instant::now(), last_line: Instant::now() }
    }

    pub(crate) fn inc(&mut self) {
        self.done += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if self.last_line.elapsed() >= Duration::from_secs(5) || self.done == self.total {
            self.last_line = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let eta = (self.total - self.done) as f64 / rate.max(1e-9);
            eprintln!("{}: {}/{} images, {rate:.1} images/s, ETA {eta:.0}s", self.what, self.done, self.total);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let labels = Labels::from_args(&args)?;
    let format = args.format.unwrap_or(match &args.output {
        Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => OutputFormat::Csv,
        _ => OutputFormat::Jsonl,
    });
    let models: Vec<String> =
        if args.score_models.is_empty() { vec![args.engine.default_model.clone()] } else { args.score_models.clone() };
    if args.resume && args.output.is_none() {
        bail!("--resume needs --output FILE (the file to continue)");
    }

    // Rows already in the output (when resuming) count towards the summary.
    let previous = match (&args.output, args.resume) {
        (Some(p), true) if p.exists() => output::read_rows(p, format, &models)?,
        _ => Vec::new(),
    };
    let done: HashSet<String> = previous.iter().map(|r| r.path.clone()).collect();
    let files: Vec<PathBuf> =
        collect_files(&args.paths).into_iter().filter(|p| !done.contains(&p.to_string_lossy().to_string())).collect();
    if files.is_empty() && previous.is_empty() {
        bail!("no image files found under {:?} (extensions: {})", args.paths, EXTENSIONS.join(", "));
    }
    if !previous.is_empty() {
        eprintln!("dfserve score: resuming: {} images already scored, {} to go", previous.len(), files.len());
    }

    let scorer = match &args.server {
        Some(base) => {
            let client = server_client(&args)?;
            check_server(&client, base).await?;
            Scorer::Remote { client, base: base.clone() }
        }
        None => {
            let mut settings = args.engine.core_settings();
            settings.default_model = models[0].clone();
            // Load only what this run uses.
            settings.models = models.clone();
            settings.models.push(settings.detector.clone());
            let core =
                tokio::task::spawn_blocking(move || InferCore::load(settings, Arc::new(Metrics::new()))).await??;
            core.warm_up().await?;
            let video = crate::video::VideoDecoder::start(args.engine.video_settings()).await.waiting_for_budget();
            let anchors = args.c2pa_trust_anchors.as_deref();
            let provenance = crate::provenance::ProvenanceReader::from_file(anchors, crate::provenance::READ_TIMEOUT)?;
            let mut detector = Detector::new(Arc::new(core), video).with_provenance(Arc::new(provenance));
            if let Some(dir) = &args.hash_lists {
                if !crate::datastore::exists(dir) {
                    bail!("--hash-lists {}: no hash lists there ({}); add some with `dfserve hashes import --data-dir {0} ...`", dir.display(), crate::datastore::FILE);
                }
                let lists = crate::hashlists::HashLists::open(dir, Default::default()).with_context(|| {
                    format!("cannot open the hash lists in {} (a server using them holds them: score with --server instead)", dir.display())
                })?;
                detector = detector.with_hashlists(Arc::new(lists));
            }
            Scorer::Local(Arc::new(detector))
        }
    };

    let mut writer = output::Writer::open(args.output.as_deref(), format, &models, args.resume)?;
    let mut progress = Progress::new("dfserve score", files.len() as u64);
    let scorer = &scorer;
    let labels = &labels;
    let models_ref = &models;
    let (mode, threshold, audit) = (args.mode, args.threshold, args.audit);
    let mut rows = futures::stream::iter(files)
        .map(|path| async move {
            let mut outcomes = BTreeMap::new();
            let mut sha256 = None;
            match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    let bytes = Bytes::from(bytes);
                    if labels.by_content() {
                        // A large video takes a while to hash: off the async workers.
                        let b = bytes.clone();
                        sha256 = tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&b))).await.ok();
                    }
                    let futs = models_ref.iter().map(|m| scorer.score(bytes.clone(), m, mode, threshold, audit));
                    for (m, o) in models_ref.iter().zip(futures::future::join_all(futs).await) {
                        outcomes.insert(m.clone(), o);
                    }
                }
                Err(e) => {
                    for m in models_ref {
                        outcomes.insert(m.clone(), Outcome::error(format!("cannot read file: {e}")));
                    }
                }
            }
            let truth = labels.truth(&path, sha256.as_deref()).map(|f| if f { "fake" } else { "real" }.to_string());
            Row { path: path.to_string_lossy().into_owned(), truth, models: outcomes }
        })
        .buffer_unordered(args.jobs.max(1));

    let started = Instant::now();
    let mut scored = Vec::new();
    let mut errors = 0usize;
    let interrupted = loop {
        tokio::select! {
            row = rows.next() => {
                let Some(row) = row else { break false };
                if let Some(e) = row.models.values().find_map(|o| o.error.as_ref()) {
                    errors += 1;
                    if progress.bar.is_none() {
                        eprintln!("dfserve score: {}: {e}", row.path);
                    } else if let Some(b) = &progress.bar {
                        b.println(format!("{}: {e}", row.path));
                    }
                }
                writer.write(&row)?;
                progress.inc();
                scored.push(row);
            }
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    writer.finish()?;
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "dfserve score: {} images in {elapsed:.1}s ({:.1} images/s), {errors} with errors",
        scored.len(),
        scored.len() as f64 / elapsed.max(1e-9)
    );
    if interrupted {
        eprintln!("dfserve score: interrupted; the output is complete up to here: rerun with --resume to continue");
    }

    if !matches!(labels, Labels::None) {
        let all: Vec<Row> = previous.into_iter().chain(scored).collect();
        let thresholds = model_thresholds(scorer, &models, args.threshold, &args.engine.runtime.model_dir);
        let summaries = report::summarize(&all, &models, &thresholds);
        // The summary goes where the rows do not: stderr when rows go to stdout, so that
        // `dfserve score ... | jq` reads rows only.
        let mut out: Box<dyn std::io::Write> =
            if args.output.is_none() { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
        report::print(&mut out, &summaries)?;
        if args.by_folder {
            for m in &models {
                report::print_folders(&mut out, m, &report::by_folder(&all, m, thresholds[m]))?;
            }
        }
        let mut fits = Vec::new();
        if args.calibrate {
            let source = args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            for m in &models {
                let fit = calibrate::fit(m, &report::uncalibrated_samples(&all, m), &source)?;
                calibrate::print(&mut out, &fit)?;
                let path = calibrate::write(&args.engine.runtime.model_dir, &fit)?;
                eprintln!(
                    "dfserve score: calibration of '{m}' written to {} (restart the server to use it)",
                    path.display()
                );
                fits.push(fit);
            }
        }
        if let Some(dir) = &args.report {
            report::write(dir, &all, &models, &summaries, &fits)?;
            eprintln!("dfserve score: report written to {}", dir.display());
        }
    }
    Ok(())
}

/// `dfserve calibrate`: a calibration fitted on the rows of an earlier labelled run.
pub fn calibrate_file(args: &crate::config::CalibrateArgs) -> anyhow::Result<()> {
    let format = if args.scores.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        OutputFormat::Csv
    } else {
        OutputFormat::Jsonl
    };
    let rows = output::read_rows(&args.scores, format, std::slice::from_ref(&args.model))?;
    let samples = report::uncalibrated_samples(&rows, &args.model);
    let fit = calibrate::fit(&args.model, &samples, &args.scores.display().to_string())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fit)?);
    } else {
        calibrate::print(&mut std::io::stdout(), &fit)?;
    }
    if args.write {
        let path = calibrate::write(&args.model_dir, &fit)?;
        eprintln!("dfserve calibrate: written to {} (restart the server to use it)", path.display());
    }
    Ok(())
}

/// The threshold each model's labels were decided with.
fn model_thresholds(scorer: &Scorer, models: &[String], cli: Option<f32>, model_dir: &Path) -> BTreeMap<String, f32> {
    let configured = |m: &str| -> Option<f32> {
        match scorer {
            Scorer::Local(detector) => detector.core().classifier(Some(m)).ok().map(|c| c.threshold),
            Scorer::Remote { .. } => {
                let dir = crate::models::read_dir(model_dir).ok()?;
                dir.models
                    .get(m)
                    .and_then(|c| c.output.as_ref().map(|o| o.threshold))
                    .or_else(|| dir.ensembles.get(m).map(|e| e.threshold))
            }
        }
    };
    models.iter().map(|m| (m.clone(), cli.or_else(|| configured(m)).unwrap_or(0.5))).collect()
}
