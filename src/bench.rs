//! In-process baselines that every serving path is measured against (`bench/run.sh`).
//!
//! - `dfserve bench-model`: raw ONNX Runtime throughput of one model, the throughput ceiling.
//!   Random input, no image work, no queue: just `Session::run`.
//! - `dfserve bench-pipeline`: the whole image pipeline (decode, detect, crop, classify) done
//!   in-process one image at a time with the same functions the server uses, but called
//!   directly: no HTTP, no queue, no thread hand-offs. Its latency is the floor for the server's
//!   concurrency-1 latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::config::{BenchModelArgs, BenchPipelineArgs};
use crate::core::Mode;
use crate::models::ModelConfig;
use crate::pipeline::decode::{decode_rgb, DecodeLimits};
use crate::pipeline::preprocess::{model_input, Region};
use crate::pipeline::{detected_faces, face_rows};
use crate::runtime::{Backend, OrtBackend};

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub model: String,
    pub instances: usize,
    pub intra_threads: usize,
    pub batch_size: usize,
    pub runs: usize,
    /// Total over all instances.
    pub images_per_s: f64,
    pub p50_ms_per_batch: f64,
    pub p99_ms_per_batch: f64,
}

pub fn run(args: &BenchModelArgs) -> anyhow::Result<Vec<BenchRow>> {
    let env = crate::runtime::init_environment(&args.runtime.ort_lib)?;
    let configs = crate::models::load_dir(&args.runtime.model_dir)?;
    let cfg = configs
        .get(&args.model)
        .with_context(|| format!("no config for model '{}' in {}", args.model, args.runtime.model_dir.display()))?;
    let path = args.runtime.model_dir.join(&cfg.file);
    let instances = args.instances.max(1);
    let mut backends = (0..instances)
        .map(|_| OrtBackend::load(&env, &path, cfg, &args.runtime.session()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let item_shape = cfg.input.item_shape();
    let item_len = cfg.input.item_len();
    let mut rows = Vec::new();
    // A fixed pseudo-random fill, so runs are comparable.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let max_batch = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let input: Vec<f32> = (0..item_len * max_batch)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let run_for = Duration::from_secs_f64(args.seconds);
    for &bs in &args.batch_sizes {
        let data = &input[..item_len * bs];
        // Every instance runs the same loop on its own thread; all start together.
        let barrier = std::sync::Barrier::new(instances);
        let per_instance: Vec<anyhow::Result<(Vec<f64>, f64)>> = std::thread::scope(|s| {
            let handles: Vec<_> = backends
                .iter_mut()
                .map(|backend| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        backend.run(data, bs, &item_shape)?; // warm-up
                        barrier.wait();
                        let mut times = Vec::new();
                        let started = Instant::now();
                        while started.elapsed() < run_for || times.len() < 3 {
                            let t = Instant::now();
                            backend.run(data, bs, &item_shape)?;
                            times.push(t.elapsed().as_secs_f64());
                        }
                        Ok((times, started.elapsed().as_secs_f64()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
        });
        let mut times = Vec::new();
        let mut images_per_s = 0.0;
        for r in per_instance {
            let (t, elapsed) = r?;
            images_per_s += (bs * t.len()) as f64 / elapsed;
            times.extend(t);
        }
        rows.push(BenchRow {
            model: args.model.clone(),
            instances,
            intra_threads: args.runtime.intra_threads,
            batch_size: bs,
            runs: times.len(),
            images_per_s,
            p50_ms_per_batch: percentile(&mut times, 0.5) * 1e3,
            p99_ms_per_batch: percentile(&mut times, 0.99) * 1e3,
        });
    }
    Ok(rows)
}

#[derive(Debug, Serialize)]
pub struct PipelineRow {
    pub mode: String,
    pub model: String,
    pub images: usize,
    pub runs: usize,
    pub images_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub faces_per_image: f64,
    /// Median milliseconds per image in each stage: decode, detect (detector input, run and box
    /// decoding), crop (crops resized and normalised into classifier rows), classify (the run).
    pub stages_ms: BTreeMap<&'static str, f64>,
}

fn load_backend(
    env: &ort::environment::Environment,
    args: &BenchPipelineArgs,
    name: &str,
) -> anyhow::Result<(ModelConfig, OrtBackend)> {
    let configs = crate::models::load_dir(&args.runtime.model_dir)?;
    let cfg = configs
        .get(name)
        .with_context(|| format!("no config for model '{name}' in {}", args.runtime.model_dir.display()))?
        .clone();
    let backend = OrtBackend::load(env, &args.runtime.model_dir.join(&cfg.file), &cfg, &args.runtime.session())?;
    Ok((cfg, backend))
}

pub fn run_pipeline(args: &BenchPipelineArgs) -> anyhow::Result<PipelineRow> {
    let env = crate::runtime::init_environment(&args.runtime.ort_lib)?;
    let (cls_cfg, mut cls) = load_backend(&env, args, &args.model)?;
    let (det_cfg, mut det) = load_backend(&env, args, &args.detector)?;
    let det_outputs = det_cfg.detector.clone().with_context(|| format!("'{}' is not a detector", args.detector))?;
    let position = |name: &str| det.outputs().iter().position(|o| o.name == name).expect("checked at load");
    let (scores_at, boxes_at) = (position(&det_outputs.scores), position(&det_outputs.boxes));
    let images: Vec<Vec<u8>> = args
        .images
        .iter()
        .map(|p: &std::path::PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let limits = DecodeLimits { max_pixels: u64::MAX };
    let cls_shape = cls_cfg.input.item_shape();
    let det_shape = det_cfg.input.item_shape();

    // One image through the pipeline; returns its face count and per-stage seconds.
    let mut one = |bytes: &[u8]| -> anyhow::Result<(usize, [f64; 4])> {
        let mut t = [0.0; 4];
        let t0 = Instant::now();
        let img = decode_rgb(bytes, limits)?;
        t[0] = t0.elapsed().as_secs_f64();
        let rows: Vec<Vec<f32>> = match args.mode {
            Mode::Whole => {
                let t2 = Instant::now();
                let row = model_input(&img, Region::whole(&img), &cls_cfg.input);
                t[2] = t2.elapsed().as_secs_f64();
                vec![row]
            }
            Mode::Faces => {
                let t1 = Instant::now();
                let input = model_input(&img, Region::whole(&img), &det_cfg.input);
                let out = det.run(&input, 1, &det_shape)?;
                let faces =
                    detected_faces(&det_outputs, &out[scores_at].data, &out[boxes_at].data, img.width(), img.height());
                t[1] = t1.elapsed().as_secs_f64();
                let t2 = Instant::now();
                let inputs = std::slice::from_ref(&cls_cfg.input);
                let rows = face_rows(&img, faces, inputs, args.crop.crop_margin, args.crop.crop_border);
                t[2] = t2.elapsed().as_secs_f64();
                rows.into_iter().flat_map(|(_, rows)| rows).collect()
            }
        };
        let t3 = Instant::now();
        if !rows.is_empty() {
            cls.run(&rows.concat(), rows.len(), &cls_shape)?;
        }
        t[3] = t3.elapsed().as_secs_f64();
        Ok((rows.len(), t))
    };
    for b in &images {
        one(b)?; // warm-up
    }
    let mut totals = Vec::new();
    let mut stages: [Vec<f64>; 4] = Default::default();
    let mut faces = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(args.seconds) || totals.len() < images.len() {
        let bytes = &images[totals.len() % images.len()];
        let t = Instant::now();
        let (n, st) = one(bytes)?;
        totals.push(t.elapsed().as_secs_f64());
        faces += n;
        for (all, v) in stages.iter_mut().zip(st) {
            all.push(v);
        }
    }
    let runs = totals.len();
    let sum: f64 = totals.iter().sum();
    let names = ["decode", "detect", "crop", "classify"];
    let stages_ms = names
        .iter()
        .zip(stages.iter_mut())
        .filter(|(name, _)| args.mode == Mode::Faces || **name != "detect")
        .map(|(name, v)| (*name, percentile(v, 0.5) * 1e3))
        .collect();
    Ok(PipelineRow {
        mode: args.mode.as_str().to_string(),
        model: args.model.clone(),
        images: images.len(),
        runs,
        images_per_s: runs as f64 / sum,
        p50_ms: percentile(&mut totals, 0.5) * 1e3,
        p99_ms: percentile(&mut totals, 0.99) * 1e3,
        faces_per_image: faces as f64 / runs as f64,
        stages_ms,
    })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `dfserve bench-model`: runs and prints a table (or JSON lines).
pub fn bench_model(args: &BenchModelArgs) -> anyhow::Result<()> {
    let rows = run(args)?;
    if args.json {
        for r in rows {
            println!("{}", serde_json::to_string(&r)?);
        }
    } else {
        println!(
            "{:<20} {:>9} {:>6} {:>8} {:>10} {:>10} {:>10}",
            "model", "sessions", "batch", "runs", "images/s", "p50 ms", "p99 ms"
        );
        for r in rows {
            println!(
                "{:<20} {:>9} {:>6} {:>8} {:>10.1} {:>10.3} {:>10.3}",
                r.model,
                format!("{}x{}", r.instances, r.intra_threads),
                r.batch_size,
                r.runs,
                r.images_per_s,
                r.p50_ms_per_batch,
                r.p99_ms_per_batch
            );
        }
    }
    Ok(())
}

/// `dfserve bench-pipeline`: runs and prints a summary (or one JSON object).
pub fn bench_pipeline(args: &BenchPipelineArgs) -> anyhow::Result<()> {
    let row = run_pipeline(args)?;
    if args.json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        println!(
            "{} mode, {} ({} images, {:.2} faces each): {:.1} images/s, p50 {:.3} ms, p99 {:.3} ms",
            row.mode, row.model, row.images, row.faces_per_image, row.images_per_s, row.p50_ms, row.p99_ms
        );
        for stage in ["decode", "detect", "crop", "classify"] {
            if let Some(ms) = row.stages_ms.get(stage) {
                println!("  {stage:<10} {ms:>8.3} ms (median)");
            }
        }
    }
    Ok(())
}
