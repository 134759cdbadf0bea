//! The evaluation summary: printed as a table, and with `--report DIR` written as JSON plus a
//! ROC curve and per-class score histograms (PNG) for each model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use super::calibrate::{Fit, Quality};
use super::eval::{self, RocPoint, Summary};
use super::row::Row;

#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub model: String,
    /// Labelled images with a score (status ok).
    #[serde(flatten)]
    pub summary: Summary,
    /// Labelled images without a score: no face found, or an error.
    pub unscored: usize,
    /// Labelled images whose verdict is `not_applicable` (no face, or faces too small to
    /// judge); they still count in the threshold metrics above when they have a score.
    pub not_applicable: usize,
    /// Verdicts by truth: `{"fake": {"likely_manipulated": n, ...}, "real": {...}}`.
    pub verdicts: BTreeMap<String, BTreeMap<String, usize>>,
    #[serde(skip)]
    pub roc: Vec<RocPoint>,
}

/// (score, is_fake) pairs of one model, and how many labelled rows had no score.
fn samples(rows: &[Row], model: &str) -> (Vec<(f32, bool)>, usize) {
    let mut out = Vec::new();
    let mut unscored = 0;
    for r in rows {
        let Some(truth) = r.truth.as_deref() else { continue };
        match r.models.get(model).and_then(|o| o.score) {
            Some(s) => out.push((s, truth == "fake")),
            None => unscored += 1,
        }
    }
    (out, unscored)
}

pub fn summarize(rows: &[Row], models: &[String], thresholds: &BTreeMap<String, f32>) -> Vec<ModelSummary> {
    models
        .iter()
        .map(|m| {
            let (s, unscored) = samples(rows, m);
            let mut verdicts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
            let mut not_applicable = 0;
            for r in rows {
                let (Some(truth), Some(o)) = (r.truth.as_deref(), r.models.get(m)) else { continue };
                not_applicable += usize::from(o.is_not_applicable() || o.status == "no_face");
                if let Some(v) = &o.verdict {
                    *verdicts.entry(truth.to_string()).or_default().entry(v.clone()).or_default() += 1;
                }
            }
            ModelSummary {
                model: m.clone(),
                summary: eval::summarize(&s, thresholds.get(m).copied().unwrap_or(0.5)),
                unscored,
                not_applicable,
                verdicts,
                roc: eval::roc_curve(&s),
            }
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

pub fn print(out: &mut dyn Write, summaries: &[ModelSummary]) -> std::io::Result<()> {
    for m in summaries {
        let s = &m.summary;
        let c = s.confusion;
        writeln!(out, "== {} (threshold {})", m.model, s.threshold)?;
        writeln!(
            out,
            "   images: {} scored ({} fake, {} real), {} unscored (no face or error)",
            s.count, s.fake, s.real, m.unscored
        )?;
        writeln!(out, "   not applicable (no face, or faces too small to judge): {}", m.not_applicable)?;
        for (truth, counts) in &m.verdicts {
            let list: Vec<String> = counts.iter().map(|(v, n)| format!("{v} {n}")).collect();
            writeln!(out, "   verdicts on {truth}: {}", list.join(", "))?;
        }
        writeln!(
            out,
            "   accuracy {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}",
            s.accuracy, s.precision, s.recall, s.f1
        )?;
        writeln!(
            out,
            "   ROC-AUC {}  average precision {}  EER {} at threshold {}",
            opt(s.roc_auc),
            opt(s.average_precision),
            opt(s.eer),
            s.eer_threshold.map(|t| format!("{t:.4}")).unwrap_or_else(|| "n/a".into())
        )?;
        writeln!(out, "   confusion (rows: truth, cols: predicted)   pred fake  pred real")?;
        writeln!(out, "                                   fake     {:>9}  {:>9}", c.tp, c.fn_)?;
        writeln!(out, "                                   real     {:>9}  {:>9}", c.fp, c.tn)?;
    }
    Ok(())
}

/// `(uncalibrated score, is_fake)` of one model's labelled, scored rows that are not
/// `not_applicable`: what a calibration is fitted on.
pub fn uncalibrated_samples(rows: &[Row], model: &str) -> Vec<(f32, bool)> {
    rows.iter()
        .filter_map(|r| {
            let truth = r.truth.as_deref()?;
            let o = r.models.get(model).filter(|o| !o.is_not_applicable())?;
            Some((o.uncalibrated()?, truth == "fake"))
        })
        .collect()
}

/// Metrics of one sub-folder.
#[derive(Debug, Serialize)]
pub struct FolderSummary {
    pub folder: String,
    /// For a folder of fakes: its fakes against every real in the run.
    #[serde(flatten)]
    pub summary: Summary,
    pub fakes: usize,
    pub reals: usize,
}

/// Each sub-folder (the file's parent directory) on its own: a folder holding fakes is scored
/// against all the run's reals (so each manipulation method gets its own ROC-AUC); a folder of
/// reals only gets its own counts (false flags at the threshold).
pub fn by_folder(rows: &[Row], model: &str, threshold: f32) -> Vec<FolderSummary> {
    let mut groups: BTreeMap<String, Vec<(f32, bool)>> = BTreeMap::new();
    for r in rows {
        let (Some(truth), Some(score)) = (r.truth.as_deref(), r.models.get(model).and_then(|o| o.score)) else {
            continue;
        };
        let folder = Path::new(&r.path)
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| ".".to_string(), |n| n.to_string_lossy().into_owned());
        groups.entry(folder).or_default().push((score, truth == "fake"));
    }
    let reals: Vec<(f32, bool)> = groups.values().flatten().filter(|(_, fake)| !fake).copied().collect();
    groups
        .into_iter()
        .map(|(folder, items)| {
            let fakes: Vec<(f32, bool)> = items.iter().filter(|(_, f)| *f).copied().collect();
            let set: Vec<(f32, bool)> =
                if fakes.is_empty() { items } else { fakes.iter().chain(&reals).copied().collect() };
            FolderSummary {
                folder,
                fakes: fakes.len(),
                reals: set.len() - fakes.len(),
                summary: eval::summarize(&set, threshold),
            }
        })
        .collect()
}

pub fn print_folders(out: &mut dyn Write, model: &str, folders: &[FolderSummary]) -> std::io::Result<()> {
    writeln!(out, "== {model} by folder (a folder of fakes is measured against all reals)")?;
    writeln!(
        out,
        "   {:<28} {:>6} {:>6} {:>9} {:>9} {:>9}",
        "folder", "fakes", "reals", "ROC-AUC", "accuracy", "flagged"
    )?;
    for f in folders {
        let c = f.summary.confusion;
        let flagged = if f.fakes > 0 { c.tp } else { c.fp };
        writeln!(
            out,
            "   {:<28} {:>6} {:>6} {:>9} {:>9.4} {:>9}",
            f.folder,
            f.fakes,
            f.reals,
            opt(f.summary.roc_auc),
            f.summary.accuracy,
            flagged
        )?;
    }
    Ok(())
}

pub fn write(
    dir: &Path,
    rows: &[Row],
    models: &[String],
    summaries: &[ModelSummary],
    fits: &[Fit],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::json!({ "models": summaries, "calibrations": fits });
    std::fs::write(dir.join("summary.json"), serde_json::to_vec_pretty(&json)?)?;
    let font = load_font();
    if font.is_none() {
        eprintln!(
            "dfserve score: no DejaVu Sans font found (Debian package fonts-dejavu-core); plots are drawn without text"
        );
    }
    for (m, summary) in models.iter().zip(summaries) {
        let (s, _) = samples(rows, m);
        plot_roc(&dir.join(format!("roc_{m}.png")), m, summary, font.is_some())?;
        plot_histogram(&dir.join(format!("hist_{m}.png")), m, &s, font.is_some())?;
    }
    for fit in fits {
        let path = dir.join(format!("reliability_{}.png", fit.model));
        plot_reliability(&path, &fit.model, &fit.before, &fit.after, font.is_some())?;
    }
    Ok(())
}

/// A reliability diagram: mean predicted probability against the fraction of fakes per bin,
/// before (red) and after (blue) calibration, with the diagonal of perfect calibration.
fn plot_reliability(path: &Path, model: &str, before: &Quality, after: &Quality, text: bool) -> anyhow::Result<()> {
    let (w, h) = (640u32, 640u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root);
        chart.margin(20).x_label_area_size(40).y_label_area_size(50);
        if text {
            chart.caption(format!("reliability: {model}"), ("sans-serif", 20));
        }
        let mut chart = chart.build_cartesian_2d(0f64..1f64, 0f64..1f64).map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("mean predicted probability").y_desc("fraction manipulated");
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw().map_err(plot_err)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4))).map_err(plot_err)?;
        for (q, colour) in [(before, RED), (after, BLUE)] {
            let points: Vec<(f64, f64)> = q.bins.iter().map(|b| (b.mean_predicted, b.fraction_fake)).collect();
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))).map_err(plot_err)?;
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled()))).map_err(plot_err)?;
        }
    }
    save(path, buf, w, h)
}

const FONT_PATHS: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

/// Registers a system font with plotters (which bundles none).
fn load_font() -> Option<()> {
    let bytes = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok())?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).ok()
}

fn save(path: &Path, buf: Vec<u8>, w: u32, h: u32) -> anyhow::Result<()> {
    let img = image::RgbImage::from_raw(w, h, buf).context("plot buffer size")?;
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e:?}")
}

fn plot_roc(path: &Path, model: &str, m: &ModelSummary, text: bool) -> anyhow::Result<()> {
    let (w, h) = (640u32, 640u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let caption = format!("ROC {model}  AUC {}", opt(m.summary.roc_auc));
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 50 } else { 5 });
        if text {
            builder.caption(caption, ("sans-serif", 22));
        }
        let mut chart = builder.build_cartesian_2d(0f64..1f64, 0f64..1f64).map_err(plot_err)?;
        if text {
            chart
                .configure_mesh()
                .x_desc("false positive rate")
                .y_desc("true positive rate")
                .draw()
                .map_err(plot_err)?;
        }
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], &RGBColor(180, 180, 180))).map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                m.roc.iter().map(|p| (p.fpr, p.tpr)).chain([(1.0, 1.0)]),
                BLUE.stroke_width(2),
            ))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    save(path, buf, w, h)
}

fn plot_histogram(path: &Path, model: &str, samples: &[(f32, bool)], text: bool) -> anyhow::Result<()> {
    const BINS: usize = 20;
    let mut counts = [[0u32; BINS]; 2];
    for &(s, fake) in samples {
        let b = ((s.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
        counts[fake as usize][b] += 1;
    }
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let (w, h) = (800u32, 480u32);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 50 } else { 5 });
        if text {
            builder.caption(format!("{model} scores: real (green), fake (red)"), ("sans-serif", 22));
        }
        let mut chart = builder.build_cartesian_2d(0f64..1f64, 0u32..max + max / 10 + 1).map_err(plot_err)?;
        if text {
            chart.configure_mesh().x_desc("manipulation score").y_desc("images").draw().map_err(plot_err)?;
        }
        let width = 1.0 / BINS as f64;
        for (class, color) in [(0usize, RGBAColor(0, 150, 0, 0.5)), (1usize, RGBAColor(200, 0, 0, 0.5))] {
            chart
                .draw_series(counts[class].iter().enumerate().map(|(i, c)| {
                    let x0 = i as f64 * width;
                    Rectangle::new([(x0, 0), (x0 + width, *c)], color.filled())
                }))
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    save(path, buf, w, h)
}
